#!/usr/bin/env python3
"""The side-by-side job benchmark (issue 17): our worker against a Celery peer, same shapes,
same machine, same broker, in one run. Run through bench/compare.sh:

  bench/compare.sh [--peer] [--quick] [--only SHAPE[,SHAPE]] [--throwaway] [--bin PATH]

Ours, per shape: `aetherv sim --hosts N --latency-ms MS` and one `aetherv worker`, noop job
envelopes published round-robin over the hosts with pika (publisher confirms, pipelined), the
events stream followed (`x-stream-offset: next`) until every job has a terminal event. The
Celery peer (--peer): one `celery -A celery_peer worker -Q <host queue> -c 1` per host (prefork,
prefetch multiplier 1, acks late, durable quorum queues), a task that sleeps MS ms; its messages
are published by the same pika publisher (Celery message protocol 2, JSON).

Shapes (--only): 20h (20 hosts x 10 jobs x 100 ms), 100h (100 x 10 x 50 ms, and RSS at 100),
10h (10 x 10 x 50 ms), rate (noop jobs/s, 20 hosts, 0 ms), latency (publish -> job.started,
serial, 20 hosts, 0 ms), 1000h (1,000 x 10 x 50 ms on a throwaway broker, worker ready time and
RSS at 1,000; skipped with --quick).

Every rig uses a fresh topology prefix `bench-xxxxxxxx` and deletes what it declared at the end
(also on failure or Ctrl-C). Exit 1 when the simulated hosts saw two jobs at once on a host, a
duplicate execution, or a job went missing.
"""

import argparse
import calendar
import json
import math
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

import pika

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TERMINAL = {"job.succeeded", "job.failed", "job.cancelled"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchFailure(Exception):
    pass


# ------------------------------------------------------------------------------------ /proc
def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return None


def proc_status(pid):
    """VmRSS and VmHWM in kB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def proc_pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def session_pids(sid):
    """Every process of session `sid` (a process we started with start_new_session)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if int(rest[3]) == sid:
                pids.append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine_ticks():
    """(busy, total) clock ticks of all CPUs from /proc/stat (busy = all but idle and iowait)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    total = sum(vals[:8])
    return total - vals[3] - vals[4], total


def cores_busy(m0, m1, wall):
    """CPUs kept busy on average between two machine_ticks() samples `wall` seconds apart."""
    return (m1[0] - m0[0]) / CLK_TCK / wall if wall > 0 else None


def rest_cores(m0, m1, c0, c1, wall):
    """CPUs used meanwhile by every process not measured (other builds on the machine)."""
    if wall <= 0 or any(c0.get(k) is None or c1.get(k) is None for k in c0):
        return None
    ours = sum(c1[k] - c0[k] for k in c0)
    return ((m1[0] - m0[0]) - ours) / CLK_TCK / wall


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def find_broker_pid(url, rmq_dir=None):
    """The beam.smp of the RabbitMQ in use: for a throwaway broker the one whose command line
    holds its directory, else the one listening on the URL's port (/proc/net/tcp inode -> fd)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    if rmq_dir:
        for pid in pids:
            c = cmdline(pid)
            if "beam.smp" in c and rmq_dir in c:
                return pid
        return None
    port = urllib.parse.urlparse(url).port or 5672
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except OSError:
            continue
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return pid
            except OSError:
                continue
    return None


# ------------------------------------------------------------------------------------ misc
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


_day_cache = {}


def epoch(rfc3339):
    """Seconds since the epoch of `2026-12-07T21:30:00.123456789Z` (UTC, as chrono writes)."""
    day = rfc3339[:10]
    base = _day_cache.get(day)
    if base is None:
        base = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
        _day_cache[day] = base
    t = rfc3339[11:].rstrip("Z")
    if "+" in t:
        t = t.split("+")[0]
    h, m, s = t.split(":")
    return base + int(h) * 3600 + int(m) * 60 + float(s)


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[max(0, math.ceil(p * len(v)) - 1)]


def new_prefix():
    return "bench-" + secrets.token_hex(4)


def params(url):
    p = pika.URLParameters(url)
    p.heartbeat = 60
    p.blocked_connection_timeout = 60
    p.socket_timeout = 30
    return p


class Proc:
    """A child process in a session of its own, output in a file; stopped by its PID."""

    def __init__(self, name, argv, env, workdir, cwd=None):
        self.name = name
        self.out_path = os.path.join(workdir, f"{name}.out")
        out = open(self.out_path, "wb")
        self.started = time.time()
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
        out.close()
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def text(self, tail=3000):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-tail:]
        except OSError:
            return ""

    def terminate(self):
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait_or_kill(self, timeout=40):
        try:
            self.p.wait(timeout=max(0.1, timeout))
        except subprocess.TimeoutExpired:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait()
        # Children left in its session (Celery's pool processes): by PID, one by one.
        for pid in session_pids(self.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self, timeout=40):
        self.terminate()
        self.wait_or_kill(timeout)


# ------------------------------------------------------------------------------------ broker
class BrokerInUse:
    def __init__(self, url, rmq_dir=None, throwaway=False):
        self.url, self.rmq_dir, self.throwaway = url, rmq_dir, throwaway
        self.pid = find_broker_pid(url, rmq_dir)

    @staticmethod
    def start_throwaway():
        script = os.path.join(ROOT, "scripts", "rabbitmq-throwaway.sh")
        r = subprocess.run([script, "start"], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise BenchFailure(f"throwaway RabbitMQ did not start:\n{r.stderr[-2000:]}")
        env = dict(re.findall(r"(\w+)='([^']*)'", r.stdout))
        b = BrokerInUse(env["AETHERV_AMQP_URL"], env["AETHERV_RMQ_DIR"], throwaway=True)
        log(f"throwaway RabbitMQ at {b.url.split('@')[-1]} (dir {b.rmq_dir}, beam.smp pid {b.pid})")
        return b

    def stop_throwaway(self):
        if self.throwaway and self.rmq_dir:
            script = os.path.join(ROOT, "scripts", "rabbitmq-throwaway.sh")
            subprocess.run([script, "stop", self.rmq_dir], check=False, timeout=120)
            log(f"throwaway RabbitMQ stopped ({self.rmq_dir})")

    def cpu(self):
        return cpu_ticks(self.pid) if self.pid else None

    def wait_consumers(self, queues, deadline, alive=lambda: True):
        """Waits until every queue has a consumer (passive declare); True when all have."""
        conn = pika.BlockingConnection(params(self.url))
        try:
            ch = conn.channel()
            pending = list(queues)
            while pending:
                q = pending[0]
                try:
                    ok = ch.queue_declare(q, passive=True)
                    if ok.method.consumer_count >= 1:
                        pending.pop(0)
                        continue
                except pika.exceptions.ChannelClosedByBroker:
                    ch = conn.channel()  # 404: not declared yet
                if time.time() > deadline or not alive():
                    return False
                time.sleep(0.01)
            return True
        finally:
            try:
                conn.close()
            except Exception:
                pass

    def delete(self, queues, exchanges):
        """Deletes queues and exchanges (missing ones are fine); returns what failed."""
        failed = []
        try:
            conn = pika.BlockingConnection(params(self.url))
        except Exception as e:
            return [f"cannot connect to delete: {e!r}"]
        try:
            ch = conn.channel()
            work = [("queue", q) for q in queues] + [("exchange", x) for x in exchanges]
            for kind, name in work:
                try:
                    getattr(ch, f"{kind}_delete")(name)
                except pika.exceptions.ChannelClosedByBroker as e:
                    if e.reply_code != 404:
                        failed.append(f"{kind} {name}: {e}")
                    ch = conn.channel()
        finally:
            try:
                conn.close()
            except Exception:
                pass
        return failed


def publish_pipelined(url, exchange, items, timeout=300):
    """Publishes every (routing key, body, properties) with mandatory and publisher confirms,
    pipelined on one channel (SelectConnection). Returns (time just before the first publish,
    time the last confirm arrived). Raises when a message is returned, nacked or unconfirmed."""
    state = {"first": None, "next": 0, "acked": 0, "nacked": 0, "returned": 0, "done": None,
             "error": None, "last": None}
    outstanding = []  # delivery tags in order
    import collections
    outstanding = collections.deque()

    def on_open(conn):
        conn.channel(on_open_callback=on_channel)

    def on_open_error(conn, err):
        state["error"] = f"cannot connect: {err!r}"
        conn.ioloop.stop()

    def on_closed(conn, reason):
        conn.ioloop.stop()

    def on_channel(ch):
        state["ch"] = ch
        ch.add_on_return_callback(on_return)
        ch.confirm_delivery(on_confirm, callback=lambda _frame: pump())

    def on_return(ch, method, props, body):
        state["returned"] += 1

    def on_confirm(frame):
        m = frame.method
        nack = isinstance(m, pika.spec.Basic.Nack)
        if m.multiple:
            while outstanding and outstanding[0] <= m.delivery_tag:
                outstanding.popleft()
                state["nacked" if nack else "acked"] += 1
        else:
            try:
                outstanding.remove(m.delivery_tag)
            except ValueError:
                pass
            state["nacked" if nack else "acked"] += 1
        if state["acked"] + state["nacked"] == len(items):
            state["last"] = time.time()
            conn.close()

    def pump():
        ch = state["ch"]
        if state["first"] is None:
            state["first"] = time.time()
        end = min(len(items), state["next"] + 200)
        for i in range(state["next"], end):
            key, body, props = items[i]
            ch.basic_publish(exchange, key, body, props, mandatory=True)
            outstanding.append(i + 1)
        state["next"] = end
        if end < len(items):
            conn.ioloop.call_later(0, pump)

    def on_timeout():
        state["error"] = f"publish timed out ({state['acked']}/{len(items)} confirmed)"
        conn.close()

    conn = pika.SelectConnection(params(url), on_open_callback=on_open,
                                 on_open_error_callback=on_open_error,
                                 on_close_callback=on_closed)
    conn.ioloop.call_later(timeout, on_timeout)
    conn.ioloop.start()
    if state["error"]:
        raise BenchFailure(state["error"])
    if state["returned"] or state["nacked"]:
        raise BenchFailure(f"{state['returned']} message(s) returned unroutable, {state['nacked']} nacked")
    return state["first"], state["last"]


class SerialPublisher:
    """One blocking confirmed channel: for the latency shape (one message at a time)."""

    def __init__(self, url):
        self.conn = pika.BlockingConnection(params(url))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()

    def publish(self, exchange, key, body, props):
        self.ch.basic_publish(exchange, key, body, props, mandatory=True)

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


# ------------------------------------------------------------------------------------ ours
def noop_envelope(host):
    job_id = str(uuid.uuid4())
    body = json.dumps({
        "v": 1, "job_id": job_id, "kind": "noop", "target": {"host": host}, "spec": {},
        "requested_by": {"platform": "amqp", "user_id": "bench"},
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }, separators=(",", ":")).encode()
    return job_id, body


OURS_PROPS = pika.BasicProperties(delivery_mode=2, content_type="application/json")


class EventFollower(threading.Thread):
    """Follows the events stream from `next`: per job id, every event (type, at, received)."""

    def __init__(self, url, stream):
        super().__init__(daemon=True)
        self.url, self.stream = url, stream
        self.lock = threading.Condition()
        self.events = {}  # job id -> [(type, at, received)]
        self.started_at = {}  # job id -> `at` of its first job.started
        self.terminal = {}  # job id -> (type, at, received) of its first terminal event
        self.count = 0
        self.stop_flag = threading.Event()
        self.ready = threading.Event()
        self.error = None

    def run(self):
        try:
            conn = pika.BlockingConnection(params(self.url))
            ch = conn.channel()
            ch.basic_qos(prefetch_count=2000)
            unacked = [0, 0]  # count, last tag

            def on_message(ch_, method, _props, body):
                now = time.time()
                unacked[0] += 1
                unacked[1] = method.delivery_tag
                if unacked[0] >= 200:
                    ch_.basic_ack(unacked[1], multiple=True)
                    unacked[0] = 0
                try:
                    ev = json.loads(body)
                except ValueError:
                    return
                job = ev.get("job_id")
                if not job:
                    return
                typ = ev.get("type")
                at = epoch(ev.get("at", "1970-01-01T00:00:00Z"))
                with self.lock:
                    self.count += 1
                    self.events.setdefault(job, []).append((typ, at, now))
                    if typ == "job.started" and job not in self.started_at:
                        self.started_at[job] = at
                        self.lock.notify_all()
                    if typ in TERMINAL and job not in self.terminal:
                        self.terminal[job] = (typ, at, now)
                        self.lock.notify_all()

            ch.basic_consume(self.stream, on_message, arguments={"x-stream-offset": "next"})
            self.ready.set()
            while not self.stop_flag.is_set():
                conn.process_data_events(time_limit=0.05)
                if unacked[0]:
                    ch.basic_ack(unacked[1], multiple=True)
                    unacked[0] = 0
            try:
                conn.close()
            except Exception:
                pass
        except Exception as e:  # reported by the waits
            self.error = e
            self.ready.set()

    def wait_terminal(self, job_ids, timeout):
        deadline = time.time() + timeout
        ids = list(job_ids)
        while True:
            with self.lock:
                missing = [j for j in ids if j not in self.terminal]
                if missing and not self.error and time.time() < deadline:
                    self.lock.wait(0.05 if len(missing) == 1 else 0.005)
            if not missing:
                return []
            if self.error:
                raise BenchFailure(f"event stream consumer failed: {self.error!r}")
            if time.time() > deadline:
                return missing
            ids = missing

    def wait_started(self, job_id, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                at = self.started_at.get(job_id)
                if at is None and not self.error:
                    self.lock.wait(0.05)
                    at = self.started_at.get(job_id)
            if at is not None:
                return at
            if self.error:
                raise BenchFailure(f"event stream consumer failed: {self.error!r}")
        return None

    def stop(self):
        self.stop_flag.set()
        self.join(10)


class OursRig:
    """`aetherv sim` + one `aetherv worker` on a fresh prefix."""

    def __init__(self, args, broker, hosts, latency_ms):
        self.args, self.broker, self.n, self.latency_ms = args, broker, hosts, latency_ms
        self.prefix = new_prefix()
        self.work = tempfile.mkdtemp(prefix=f"aetherv-bench.{self.prefix}.")
        self.sim = self.worker = self.follower = None
        self.hosts = []
        self.clusters = set()
        self.ready_s = None

    def env(self, **extra):
        e = dict(os.environ)
        e.update(AETHERV_AMQP_URL=self.broker.url, AETHERV_PREFIX=self.prefix,
                 AETHERV_LOG=os.environ.get("AETHERV_BENCH_LOG", "warn"))
        for k in ("AETHERV_AMQP_ADDRESSES", "AETHERV_HEALTH_LISTEN", "AETHERV_WORKER_CONFIG"):
            e.pop(k, None)
        e.update(extra)
        return e

    def start(self):
        port = free_port()
        self.sim_base = f"http://127.0.0.1:{port}"
        cfg = os.path.join(self.work, "worker.yaml")
        self.sim = Proc("sim", [self.args.bin, "sim", "--hosts", str(self.n), "--latency-ms",
                                str(self.latency_ms), "--listen", f"127.0.0.1:{port}",
                                "--write-worker-config", cfg], self.env(), self.work)
        deadline = time.time() + 60
        while True:
            try:
                http_get(self.sim_base + "/sim/stats", timeout=2)
                if os.path.exists(cfg):
                    break
            except Exception:
                pass
            if time.time() > deadline or not self.sim.alive():
                raise BenchFailure(f"the sim did not start:\n{self.sim.text()}")
            time.sleep(0.1)
        with open(cfg) as f:
            text = f.read()
        if self.args.worker_setting:
            # Top-level worker settings for comparisons (`keep_shells=false`).
            extra = "".join(f"{k.strip()}: {v.strip()}\n" for k, v in
                            (kv.split("=", 1) for kv in self.args.worker_setting))
            with open(cfg, "w") as f:
                f.write(extra + text)
        self.hosts = re.findall(r'^  - name: "([^"]+)"', text, re.M)
        self.clusters = set(re.findall(r'^    cluster: "([^"]+)"', text, re.M))
        if len(self.hosts) != self.n:
            raise BenchFailure(f"worker config lists {len(self.hosts)} hosts, not {self.n}")
        self.worker = Proc("worker", [self.args.bin, "worker", "--config", cfg],
                           self.env(AETHERV_WORKER_ID=f"{self.prefix}-w1"), self.work)
        queues = [self.host_queue(h) for h in self.hosts]
        ok = self.broker.wait_consumers(queues, time.time() + 300, self.worker.alive)
        if not ok:
            raise BenchFailure(f"the worker did not subscribe to every host queue:\n{self.worker.text()}")
        self.ready_s = time.time() - self.worker.started
        log(f"ours {self.n} hosts x {self.latency_ms} ms ({self.prefix}): worker ready in {self.ready_s:.2f} s")
        self.follower = EventFollower(self.broker.url, f"{self.prefix}.events.stream")
        self.follower.start()
        self.follower.ready.wait(30)
        if self.follower.error:
            raise BenchFailure(f"cannot follow the events stream: {self.follower.error!r}")
        # Warm-up: one job per host.
        jobs = [noop_envelope(h.lower()) + (h.lower(),) for h in self.hosts]
        publish_pipelined(self.broker.url, f"{self.prefix}.jobs",
                          [(h, body, OURS_PROPS) for _, body, h in jobs])
        missing = self.follower.wait_terminal([j for j, _, _ in jobs], 120 + self.n * 0.2)
        # Not fatal: the shape still runs (ready time, RSS) and the run fails at its end.
        self.warmup_missing = len(missing)
        if missing:
            log(f"warm-up: {len(missing)} job(s) without a terminal event; going on")
        self.warm = {j: h for j, _, h in jobs}

    def host_queue(self, host):
        return f"{self.prefix}.host.{host.strip().lower()}"

    def pids(self):
        return {"worker": self.worker.pid, "sim": self.sim.pid}

    def cpu(self):
        return {"worker": cpu_ticks(self.worker.pid), "sim": cpu_ticks(self.sim.pid),
                "broker": self.broker.cpu(), "driver": cpu_ticks(os.getpid())}

    def sim_check(self, batch):
        """Fails on a slot violation, a duplicate execution, or a job the hosts never ran."""
        stats = json.loads(http_get(self.sim_base + "/sim/stats", timeout=120))["hosts"]
        seen = {}
        for host, h in stats.items():
            for j in h.get("jobs", []):
                seen[j] = host.lower()
        problems = []
        over = {h: s["max_concurrent_jobs"] for h, s in stats.items() if s["max_concurrent_jobs"] > 1}
        dups = {h: s["duplicate_executions"] for h, s in stats.items() if s["duplicate_executions"] > 0}
        if over:
            problems.append(f"hosts with max_concurrent_jobs > 1: {dict(list(over.items())[:10])}")
        if dups:
            problems.append(f"hosts with duplicate_executions > 0: {dict(list(dups.items())[:10])}")
        absent = [j for j, h in batch.items() if seen.get(j) != h.lower()]
        if absent:
            problems.append(f"{len(absent)} job(s) not run on their host per the sim: {absent[:5]}")
        return {"max_concurrent_jobs": max((s["max_concurrent_jobs"] for s in stats.values()), default=0),
                "duplicate_executions": sum(s["duplicate_executions"] for s in stats.values()),
                "missing_on_hosts": len(absent), "problems": problems}

    def batch(self, jobs_per_host):
        """Publishes jobs_per_host noop jobs per host round-robin; waits for every terminal."""
        n = jobs_per_host * len(self.hosts)
        plan = []
        for i in range(n):
            h = self.hosts[i % len(self.hosts)].lower()
            j, body = noop_envelope(h)
            plan.append((j, h, body))
        batch = {j: h for j, h, _ in plan}
        load0 = loadavg()
        cpu0, m0, w0 = self.cpu(), machine_ticks(), time.time()
        first, confirmed = publish_pipelined(self.broker.url, f"{self.prefix}.jobs",
                                             [(h, body, OURS_PROPS) for _, h, body in plan])
        missing = self.follower.wait_terminal(list(batch), 120 + n * 0.02)
        cpu1, m1, w1 = self.cpu(), machine_ticks(), time.time()
        load1 = loadavg()
        with self.follower.lock:
            terms = [self.follower.terminal[j] for j in batch if j in self.follower.terminal]
            events = sum(len(self.follower.events.get(j, [])) for j in batch)
            outcomes = {}
            for t, _, _ in terms:
                outcomes[t] = outcomes.get(t, 0) + 1
        last_at = max((t[1] for t in terms), default=first)
        last_seen = max((t[2] for t in terms), default=first)
        makespan = last_at - first
        res = {
            "jobs": n, "hosts": len(self.hosts), "latency_ms": self.latency_ms,
            "makespan_s": makespan, "makespan_seen_s": last_seen - first,
            "publish_s": confirmed - first,
            "jobs_per_s": n / makespan if makespan > 0 else None,
            "events_per_job": events / n, "outcomes": outcomes, "missing_terminal": len(missing),
            "cpu_ms_per_job": per_job(cpu0, cpu1, n), "load_start": load0, "load_end": load1,
            "machine_cores_busy": cores_busy(m0, m1, w1 - w0), "prefix": self.prefix,
            "other_cores_busy": rest_cores(m0, m1, cpu0, cpu1, w1 - w0),
        }
        if self.latency_ms:
            ideal = jobs_per_host * self.latency_ms / 1000.0
            res["ideal_s"] = ideal
            res["ratio"] = makespan / ideal
        res["sim"] = self.sim_check(batch)
        res["warmup_missing_terminal"] = self.warmup_missing
        if self.warmup_missing:
            res["sim"]["problems"].append(f"warm-up: {self.warmup_missing} job(s) without a terminal event")
        if missing:
            res["sim"]["problems"].append(f"{len(missing)} job(s) without a terminal event")
        res["rss_kb"] = proc_status(self.worker.pid)
        return res

    def latency(self, samples):
        load0 = loadavg()
        cpu0, m0, w0 = self.cpu(), machine_ticks(), time.time()
        pub = SerialPublisher(self.broker.url)
        lat, batch = [], {}
        try:
            for i in range(samples):
                h = self.hosts[i % len(self.hosts)].lower()
                j, body = noop_envelope(h)
                batch[j] = h
                t0 = time.time()
                pub.publish(f"{self.prefix}.jobs", h, body, OURS_PROPS)
                at = self.follower.wait_started(j, 30)
                if at is None:
                    raise BenchFailure(f"latency sample {i}: no job.started in 30 s")
                lat.append(at - t0)
                if self.follower.wait_terminal([j], 30):
                    raise BenchFailure(f"latency sample {i}: no terminal event in 30 s")
        finally:
            pub.close()
        cpu1, m1, w1 = self.cpu(), machine_ticks(), time.time()
        with self.follower.lock:
            events = sum(len(self.follower.events.get(j, [])) for j in batch)
        res = {"machine_cores_busy": cores_busy(m0, m1, w1 - w0), "samples": samples,
               "other_cores_busy": rest_cores(m0, m1, cpu0, cpu1, w1 - w0), "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
               "max_ms": max(lat) * 1000, "events_per_job": events / samples,
               "cpu_ms_per_job": per_job(cpu0, cpu1, samples), "load_start": load0,
               "load_end": loadavg(), "prefix": self.prefix}
        res["sim"] = self.sim_check(batch)
        return res

    def stop(self):
        if self.follower:
            self.follower.stop()
        for p in (self.worker, self.sim):
            if p:
                p.terminate()
        for p in (self.worker, self.sim):
            if p:
                p.wait_or_kill(40)
        queues = [self.host_queue(h) for h in self.hosts]
        queues += [self.host_queue(f"cluster.{c}") for c in self.clusters]
        queues += [f"{self.prefix}.{q}" for q in ("dead", "requests.in", "events.stream")]
        exchanges = [f"{self.prefix}.{x}" for x in ("jobs", "events", "dlx", "requests")]
        failed = self.broker.delete(queues, exchanges)
        if failed:
            log(f"cleanup of {self.prefix}: {failed[:5]}")
        if not os.environ.get("AETHERV_BENCH_KEEP"):
            subprocess.run(["rm", "-rf", self.work], check=False)


def per_job(c0, c1, n):
    out = {}
    for k in c0:
        if c0[k] is None or c1.get(k) is None:
            out[k] = None
        else:
            out[k] = (c1[k] - c0[k]) / CLK_TCK * 1000.0 / n
    return out


# ------------------------------------------------------------------------------------ celery
class CeleryRig:
    """One `celery -A celery_peer worker -Q <queue> -c 1` per host queue."""

    def __init__(self, args, broker, hosts, latency_ms):
        self.args, self.broker, self.n, self.latency_ms = args, broker, hosts, latency_ms
        self.prefix = new_prefix()
        self.work = tempfile.mkdtemp(prefix=f"celery-bench.{self.prefix}.")
        self.recdir = os.path.join(self.work, "rec")
        os.makedirs(self.recdir)
        self.hosts = [f"hv{i:02d}" for i in range(1, hosts + 1)]
        self.procs = []
        # --celery-lean: the flags large Celery deployments often add (not the default).
        self.flags = ["--without-gossip", "--without-mingle", "--without-heartbeat"] if args.celery_lean else []
        self.offsets = {}
        self.records = {}  # task id -> [(start, end, host)]
        self.ready_s = None

    def queue(self, h):
        return f"{self.prefix}.celery.{h}"

    def start(self):
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        t0 = time.time()
        for h in self.hosts:
            env = dict(os.environ)
            env.update(CELERY_PEER_BROKER=self.broker.url, CELERY_PEER_PREFIX=self.prefix,
                       CELERY_PEER_QUEUE=h, CELERY_PEER_QUEUE_TYPE=self.args.celery_queue_type,
                       CELERY_PEER_LOG_DIR=self.recdir,
                       PYTHONPATH=HERE + os.pathsep + env.get("PYTHONPATH", ""))
            self.procs.append(Proc(f"celery-{h}", [
                celery, "-A", "celery_peer", "worker", "-Q", self.queue(h), "-c", "1",
                "-P", "prefork", "--prefetch-multiplier", "1", "-n", f"{h}@{self.prefix}",
                "--loglevel", "WARNING", *self.flags], env, self.work, cwd=HERE))
        ok = self.broker.wait_consumers([self.queue(h) for h in self.hosts], time.time() + 600,
                                        lambda: all(p.alive() for p in self.procs))
        if not ok:
            dead = [p for p in self.procs if not p.alive()]
            raise BenchFailure("celery workers did not all consume:\n" +
                               (dead[0].text() if dead else self.procs[0].text()))
        self.ready_s = time.time() - t0
        log(f"celery {self.n} queues x {self.latency_ms} ms ({self.prefix}): ready in {self.ready_s:.1f} s "
            f"({self.args.celery_queue_type} queues)")
        # Warm-up: one task per queue.
        plan = [self.message(h) for h in self.hosts]
        publish_pipelined(self.broker.url, f"{self.prefix}.celery", [(h, b, p) for _, h, b, p in plan])
        if self.wait_done([t for t, _, _, _ in plan], 120):
            raise BenchFailure("celery warm-up: tasks not done in 120 s")

    def message(self, host):
        tid = str(uuid.uuid4())
        args = [self.latency_ms, host]
        body = json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None,
                                      "chord": None}]).encode()
        headers = {"lang": "py", "task": "celery_peer.op", "id": tid, "shadow": None, "eta": None,
                   "expires": None, "group": None, "group_index": None, "retries": 0,
                   "timelimit": [None, None], "root_id": tid, "parent_id": None,
                   "argsrepr": repr(tuple(args)), "kwargsrepr": "{}", "origin": "bench",
                   "ignore_result": True}
        props = pika.BasicProperties(content_type="application/json", content_encoding="utf-8",
                                     delivery_mode=2, correlation_id=tid, headers=headers,
                                     priority=0)
        return tid, host, body, props

    def read_records(self):
        for entry in os.scandir(self.recdir):
            path = entry.path
            off = self.offsets.get(path, 0)
            try:
                if entry.stat().st_size <= off:
                    continue
                with open(path, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            if not end:
                continue
            self.offsets[path] = off + end
            for line in data[:end].decode().splitlines():
                tid, s, e, h = line.split()
                self.records.setdefault(tid, []).append((float(s), float(e), h))

    def wait_done(self, tids, timeout):
        deadline = time.time() + timeout
        pending = list(tids)
        while True:
            self.read_records()
            pending = [t for t in pending if t not in self.records]
            if not pending or time.time() > deadline:
                return pending
            time.sleep(0.001 if len(pending) == 1 else 0.005)

    def all_pids(self):
        pids = []
        for p in self.procs:
            pids += session_pids(p.pid)
        return pids

    def cpu(self):
        pids = self.all_pids()
        ticks = [cpu_ticks(p) for p in pids]
        return {"celery": sum(t for t in ticks if t is not None), "broker": self.broker.cpu(),
                "driver": cpu_ticks(os.getpid())}, pids

    def rss(self):
        pids = self.all_pids()
        rss = sum(proc_status(p).get("VmRSS", 0) for p in pids)
        pss = sum(proc_pss(p) for p in pids)
        return {"processes": len(pids), "rss_kb": rss, "pss_kb": pss}

    def check(self, tids):
        """Overlaps per host (two tasks at once on a host queue) and duplicates."""
        dups = sum(len(self.records[t]) - 1 for t in tids if t in self.records)
        by_host = {}
        for t in tids:
            for s, e, h in self.records.get(t, []):
                by_host.setdefault(h, []).append((s, e))
        overlaps = 0
        for iv in by_host.values():
            iv.sort()
            for (s0, e0), (s1, e1) in zip(iv, iv[1:]):
                if s1 < e0:
                    overlaps += 1
        return {"duplicates": dups, "overlaps": overlaps}

    def batch(self, jobs_per_host):
        n = jobs_per_host * len(self.hosts)
        plan = [self.message(self.hosts[i % len(self.hosts)]) for i in range(n)]
        tids = [t for t, _, _, _ in plan]
        load0 = loadavg()
        cpu0, _ = self.cpu()
        m0, w0 = machine_ticks(), time.time()
        first, confirmed = publish_pipelined(self.broker.url, f"{self.prefix}.celery",
                                             [(h, b, p) for _, h, b, p in plan])
        missing = self.wait_done(tids, 120 + n * 0.1)
        cpu1, _ = self.cpu()
        m1, w1 = machine_ticks(), time.time()
        load1 = loadavg()
        ends = [self.records[t][0][1] for t in tids if t in self.records]
        makespan = max(ends, default=first) - first
        ideal = jobs_per_host * self.latency_ms / 1000.0
        res = {"jobs": n, "hosts": len(self.hosts), "latency_ms": self.latency_ms,
               "makespan_s": makespan, "publish_s": confirmed - first,
               "jobs_per_s": n / makespan if makespan > 0 else None,
               "missing": len(missing), "cpu_ms_per_job": per_job(cpu0, cpu1, n),
               "load_start": load0, "load_end": load1, "prefix": self.prefix,
               "queue_type": self.args.celery_queue_type, "ready_s": self.ready_s,
               "machine_cores_busy": cores_busy(m0, m1, w1 - w0), "flags": self.flags,
               "other_cores_busy": rest_cores(m0, m1, cpu0, cpu1, w1 - w0)}
        if ideal:
            res["ideal_s"] = ideal
            res["ratio"] = makespan / ideal
        res.update(self.check(tids))
        res["rss"] = self.rss()
        return res

    def latency(self, samples):
        load0 = loadavg()
        cpu0, _ = self.cpu()
        m0, w0 = machine_ticks(), time.time()
        pub = SerialPublisher(self.broker.url)
        lat, tids = [], []
        try:
            for i in range(samples):
                tid, h, body, props = self.message(self.hosts[i % len(self.hosts)])
                tids.append(tid)
                t0 = time.time()
                pub.publish(f"{self.prefix}.celery", h, body, props)
                if self.wait_done([tid], 30):
                    raise BenchFailure(f"celery latency sample {i}: not done in 30 s")
                lat.append(self.records[tid][0][0] - t0)
        finally:
            pub.close()
        cpu1, _ = self.cpu()
        m1, w1 = machine_ticks(), time.time()
        res = {"machine_cores_busy": cores_busy(m0, m1, w1 - w0), "flags": self.flags,
               "other_cores_busy": rest_cores(m0, m1, cpu0, cpu1, w1 - w0),
               "samples": samples, "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
               "max_ms": max(lat) * 1000, "cpu_ms_per_job": per_job(cpu0, cpu1, samples),
               "load_start": load0, "load_end": loadavg(), "prefix": self.prefix,
               "queue_type": self.args.celery_queue_type}
        res.update(self.check(tids))
        return res

    def stop(self):
        for p in self.procs:
            p.terminate()
        deadline = time.time() + 30
        for p in self.procs:
            p.wait_or_kill(deadline - time.time())
        p = self.prefix
        queues = [self.queue(h) for h in self.hosts]
        # Celery's per-node control queues are auto-delete; delete them in case one stayed.
        queues += [f"{h}@{p}.{p}.ctl.pidbox" for h in self.hosts]
        exchanges = [f"{p}.celery", f"{p}.celeryev", f"{p}.ctl.pidbox", f"reply.{p}.ctl.pidbox"]
        if self.args.celery_queue_type == "quorum":
            # With quorum queues Celery 5.5+ sets up its native delayed delivery: 28 quorum
            # queues and 29 exchanges with fixed names (Celery 5.7 gives them no prefix).
            queues += [f"celery_delayed_{i}" for i in range(28)]
            exchanges += [f"celery_delayed_{i}" for i in range(28)] + ["celery_delayed_delivery"]
        failed = self.broker.delete(queues, exchanges)
        if failed:
            log(f"cleanup of {p}: {failed[:5]}")
        if not os.environ.get("AETHERV_BENCH_KEEP"):
            subprocess.run(["rm", "-rf", self.work], check=False)


# ------------------------------------------------------------------------------------ run
SHAPES = ["20h", "100h", "10h", "rate", "latency", "1000h"]


def run_rig(cls, args, broker, hosts, ms, body):
    rig = cls(args, broker, hosts, ms)
    try:
        rig.start()
        return body(rig)
    finally:
        rig.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", action="store_true", help="also run the Celery peer")
    ap.add_argument("--quick", action="store_true", help="fewer samples, no 1,000-host shape")
    ap.add_argument("--only", action="append", default=[],
                    help="run only these shapes (comma-separated or repeated): " + ", ".join(SHAPES))
    ap.add_argument("--throwaway", action="store_true", help="start a throwaway RabbitMQ for the run")
    ap.add_argument("--bin", default="target/release/aetherv")
    ap.add_argument("--worker-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="a top-level worker setting added to the worker config (keep_shells=false)")
    ap.add_argument("--celery-queue-type", choices=["quorum", "classic"], default="quorum")
    ap.add_argument("--celery-lean", action="store_true",
                    help="start the Celery workers with --without-gossip --without-mingle "
                         "--without-heartbeat (not the standard deployment; for context)")
    a = ap.parse_args()
    only = [s for o in a.only for s in o.split(",") if s]
    for s in only:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}; shapes: {', '.join(SHAPES)}")
    shapes = only or [s for s in SHAPES if not (a.quick and s == "1000h")]
    a.bin = os.path.abspath(a.bin)
    if not os.access(a.bin, os.X_OK):
        raise SystemExit(f"compare.py: no executable at {a.bin} (--bin PATH)")
    command = "bench/compare.sh " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.time()
    results = {"command": command, "started_utc": datetime.now(timezone.utc).isoformat(),
               "bin": a.bin, "quick": a.quick, "peer": a.peer, "shapes": shapes,
               "ours": {}, "celery": {}, "nproc": os.cpu_count(), "load_start": loadavg()}
    failures = []
    brokers = []
    code = 1
    try:
        if a.throwaway:
            main_broker = BrokerInUse.start_throwaway()
            brokers.append(main_broker)
        else:
            main_broker = BrokerInUse(os.environ.get("AETHERV_AMQP_URL") or DEFAULT_URL)
            log(f"broker {main_broker.url.split('@')[-1]} (beam.smp pid {main_broker.pid or 'not found'})")
        results["broker"] = {"throwaway": a.throwaway, "pid_found": main_broker.pid is not None}

        def ours(name, hosts, ms, body):
            log(f"--- ours: {name}")
            r = run_rig(OursRig, a, main_broker if name != "1000h" else big_broker(), hosts, ms, body)
            for key, v in (r.items() if isinstance(r, dict) and "sim" not in r else [(name, r)]):
                results["ours"][key] = v
                if v.get("sim", {}).get("problems"):
                    failures.extend(f"ours {key}: {p}" for p in v["sim"]["problems"])

        def celery(name, hosts, ms, body):
            if not a.peer:
                return
            log(f"--- celery: {name}")
            r = run_rig(CeleryRig, a, main_broker, hosts, ms, body)
            results["celery"][name] = r
            if r.get("missing"):
                failures.append(f"celery {name}: {r['missing']} task(s) not done")

        big = {}

        def big_broker():
            if a.throwaway:
                return main_broker
            if "b" not in big:
                big["b"] = BrokerInUse.start_throwaway()
                brokers.append(big["b"])
            return big["b"]

        def with_ready(fn):
            def body(rig):
                r = fn(rig)
                r["worker_ready_s"] = rig.ready_s
                return r
            return body

        batch10 = with_ready(lambda rig: rig.batch(10))
        if "20h" in shapes:
            ours("20h", 20, 100, batch10)
            celery("20h", 20, 100, lambda rig: rig.batch(10))
        if "100h" in shapes:
            ours("100h", 100, 50, batch10)
            celery("100h", 100, 50, lambda rig: rig.batch(10))
        if "10h" in shapes:
            ours("10h", 10, 50, batch10)
            celery("10h", 10, 50, lambda rig: rig.batch(10))
        if "rate" in shapes or "latency" in shapes:
            def rate_and_latency(rig):
                out = {}
                if "rate" in shapes:
                    n = 500 if a.quick else 2000
                    out["rate"] = rig.batch(n // len(rig.hosts))
                    out["rate"]["worker_ready_s"] = rig.ready_s
                if "latency" in shapes:
                    out["latency"] = rig.latency(100 if a.quick else 500)
                return out
            ours("rate+latency", 20, 0, rate_and_latency)
            if "latency" in shapes:
                celery("latency", 20, 0, lambda rig: rig.latency(100 if a.quick else 500))
        if "1000h" in shapes:
            ours("1000h", 1000, 50, batch10)
        code = 0 if not failures else 1
    except BenchFailure as e:
        failures.append(str(e))
        log(f"FAILED: {e}")
    except KeyboardInterrupt:
        failures.append("interrupted")
        log("interrupted; cleaning up")
    finally:
        for b in brokers:
            b.stop_throwaway()
    results["load_end"] = loadavg()
    results["duration_s"] = time.time() - started
    results["failures"] = failures
    print_report(results)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    print(f"\nraw figures: {os.path.relpath(path, ROOT)}")
    if failures:
        print("\nFAILED:")
        for f in failures:
            print(f"  - {f}")
        code = 1
    sys.exit(code)


# ------------------------------------------------------------------------------------ report
def f2(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def print_report(r):
    o, c = r["ours"], r["celery"]

    def g(d, *keys):
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    def ratio(x, y):
        return f"{x / y:.3g}" if x is not None and y else "—"

    rows = []
    for key, label, goal in [("20h", "20 hosts, 200 jobs, 100 ms each: makespan / ideal", "≤ 1.02"),
                             ("100h", "100 hosts, 1,000 jobs, 50 ms each: makespan / ideal", "≤ 1.05"),
                             ("10h", "10 hosts, 100 jobs, 50 ms each: makespan / ideal", "≤ 1.02")]:
        ours_v, cel_v = g(o, key, "ratio"), g(c, key, "ratio")
        ov, cv = f2(ours_v), f2(cel_v)
        if g(o, key, "missing_terminal"):
            ov += f" ({g(o, key, 'missing_terminal')} jobs never ended)"
        if g(c, key, "missing"):
            cv += f" ({g(c, key, 'missing')} tasks never ended)"
        rows.append((label, ov, cv, goal, ratio(ours_v, cel_v)))
    rate = g(o, "rate", "jobs_per_s")
    rn = g(o, "rate", "jobs")
    rows.append((f"noop jobs per second end to end ({rn or '—'} jobs, 20 hosts)",
                 f2(rate, 0), "—", "≥ 1,000", "—"))
    lp50, lp99 = g(o, "latency", "p50_ms"), g(o, "latency", "p99_ms")
    cp50, cp99 = g(c, "latency", "p50_ms"), g(c, "latency", "p99_ms")
    ls = g(o, "latency", "samples")
    rows.append((f"publish → `job.started` p99, unloaded (p50 / p99, {ls or '—'} serial samples)",
                 f"{f2(lp50)} / {f2(lp99)} ms" if lp99 is not None else "—",
                 f"{f2(cp50)} / {f2(cp99)} ms (serial)" if cp99 is not None else "—",
                 "≤ 1.2 ms", ratio(lp99, cp99)))
    big_missing = g(o, "1000h", "missing_terminal")
    big = f2(g(o, "1000h", "ratio"))
    if big_missing:
        big += f" ({big_missing} of {g(o, '1000h', 'jobs')} jobs never ended: a lower bound)"
    rows.append(("1,000 hosts, 10,000 jobs, 50 ms: makespan / ideal", big, "—", "≤ 1.10", "—"))
    rows.append(("worker ready with 1,000 hosts",
                 f"{f2(g(o, '1000h', 'worker_ready_s'), 1)} s" if g(o, "1000h") else "—",
                 "—", "≤ 5 s", "—"))

    def mb(kb):
        return None if kb is None else kb / 1024.0

    r100 = mb(g(o, "100h", "rss_kb", "VmRSS"))
    h100 = mb(g(o, "100h", "rss_kb", "VmHWM"))
    r1000 = mb(g(o, "1000h", "rss_kb", "VmRSS"))
    h1000 = mb(g(o, "1000h", "rss_kb", "VmHWM"))
    c20 = mb(g(c, "20h", "rss", "rss_kb"))
    c100 = mb(g(c, "100h", "rss", "rss_kb"))
    p20 = mb(g(c, "20h", "rss", "pss_kb"))
    p100 = mb(g(c, "100h", "rss", "pss_kb"))
    ours_rss = f"{f2(r100, 0)} MB / {f2(r1000, 0)} MB (VmHWM {f2(h100, 0)} / {f2(h1000, 0)})"
    cel_rss = (f"{f2(c20, 0)} MB (20 hosts), {f2(c100, 0)} MB (100 hosts); PSS {f2(p20, 0)} / {f2(p100, 0)} MB"
               if c20 is not None or c100 is not None else "—")
    rows.append(("worker RSS with 100 / 1,000 hosts", ours_rss, cel_rss, "≤ 40 MB at 1,000",
                 ratio(r100, c100) + " (at 100)" if r100 is not None and c100 else "—"))
    rows.append(("Slack HTTP-mode ack p99, 200 at once", "not measured by this benchmark", "—",
                 "≤ 25 ms in every burst", "—"))
    print()
    print("| Shape | Ours | Celery | Goal | Ours/Celery |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")

    print()
    print("| Shape | jobs/s ours | jobs/s Celery | CPU ms/job ours: worker / sim / broker | "
          "CPU ms/job Celery: celery / broker | events/job | load avg ours (start → end) | "
          "load avg Celery (start → end) | CPUs busy, machine: ours / Celery | of which others' "
          "(not worker, sim, broker, celery, driver): ours / Celery |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in ["20h", "100h", "10h", "rate", "latency", "1000h"]:
        if key not in o and key not in c:
            continue
        oo, cc = o.get(key, {}), c.get(key, {})
        ocpu = oo.get("cpu_ms_per_job", {})
        ccpu = cc.get("cpu_ms_per_job", {})
        print("| " + " | ".join([
            key,
            f2(oo.get("jobs_per_s"), 0),
            f2(cc.get("jobs_per_s"), 0),
            f"{f2(ocpu.get('worker'))} / {f2(ocpu.get('sim'))} / {f2(ocpu.get('broker')) if ocpu.get('broker') is not None else 'n/a'}" if ocpu else "—",
            f"{f2(ccpu.get('celery'))} / {f2(ccpu.get('broker')) if ccpu.get('broker') is not None else 'n/a'}" if ccpu else "—",
            f2(oo.get("events_per_job")),
            f"{oo['load_start']} → {oo['load_end']}" if oo else "—",
            f"{cc['load_start']} → {cc['load_end']}" if cc else "—",
            f"{f2(oo.get('machine_cores_busy'))} / {f2(cc.get('machine_cores_busy'))}",
            f"{f2(oo.get('other_cores_busy'))} / {f2(cc.get('other_cores_busy'))}",
        ]) + " |")
    print()
    ready = {k: v.get("worker_ready_s") for k, v in o.items() if v.get("worker_ready_s") is not None}
    cready = {k: v.get("ready_s") for k, v in c.items() if v.get("ready_s") is not None}
    print("worker ready (s), ours: " + ", ".join(f"{k} {v:.2f}" for k, v in ready.items()))
    if cready:
        print("all Celery workers consuming (s): " + ", ".join(f"{k} {v:.1f}" for k, v in cready.items()))
    qt = {v.get("queue_type") for v in c.values() if v.get("queue_type")}
    if qt:
        flags = {" ".join(v.get("flags") or []) for v in c.values()}
        print(f"Celery: {', '.join(sorted(qt))} queues, flags: {', '.join(sorted(flags)) or 'none'} (defaults otherwise); "
              "two tasks at once on a queue: " + ", ".join(f"{k} {v.get('overlaps')}" for k, v in c.items())
              + "; tasks run twice: " + ", ".join(f"{k} {v.get('duplicates')}" for k, v in c.items()))
    print("sim checks (ours): " + ", ".join(
        f"{k} max_concurrent_jobs {v['sim']['max_concurrent_jobs']}, duplicate_executions "
        f"{v['sim']['duplicate_executions']}, missing {v['sim']['missing_on_hosts']}"
        for k, v in o.items() if v.get("sim")))
    print(f"load average: run start {r['load_start']}, run end {r['load_end']}; {r['nproc']} CPUs; "
          f"run took {r['duration_s']:.0f} s")
    print(f"command: {r['command']}")


if __name__ == "__main__":
    main()
