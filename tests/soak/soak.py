#!/usr/bin/env python3
"""The chaos soak (issue 16): real processes on a three-node RabbitMQ cluster, faults at seeded
random moments, and the figures counted afterwards from the simulated hosts' records, the event
stream and the bots' output. Run by scripts/soak.sh, which starts and removes the cluster.

Processes: the simulated hosts (`aetherv sim --hosts H`), two workers (`aetherv worker`), two
console bots (`aetherv bot`, one leads, one stands by), and producers (`aetherv submit` through
the bot's gate, several at a time). Every client is given the three nodes' URLs.

Jobs: `vm.create` with a unique VM name per job (the host records each creation with the job
id and refuses a second VM of the same name), and every tenth job a `deployment.managed` whose
local admin password is a secret the bots and events must never show.

Faults, each at a random moment drawn from the seed: a RabbitMQ node killed (`kill -9`) and
restarted, a worker killed (`kill -9`) and restarted, the leading bot killed (`kill -9`; the
standby takes over) and restarted, a host made unreachable (WinRM refused) for a while.

Figures (all must be 0, else exit 1): jobs lost (accepted, and no final event or no VM on its
host), jobs run twice (operations the hosts re-ran for the same job and idempotency key, a VM
created twice, a job with two different outcomes), slot violations (two jobs at once on a host),
threads missing their final message (no bot printed the job's final line), events with a
secret (every event of the stream scanned for every secret value used).
"""

import argparse
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pika

FINAL_TYPES = {"job.succeeded", "job.failed", "job.cancelled"}


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _epoch(rfc3339):
    """Seconds since the epoch of an RFC 3339 time (`2026-12-06T21:30:00.123456Z`)."""
    from datetime import datetime
    text = rfc3339.replace("Z", "+00:00")
    # Python before 3.11 takes at most 6 fraction digits.
    m = re.match(r"^(.*?\.\d{1,6})\d*(.*)$", text)
    if m:
        text = m.group(1) + m.group(2)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def http_post(url, timeout=5):
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status


class Proc:
    """A child process with its output in a file; restartable. Stopped by its PID only."""

    def __init__(self, name, argv, env, workdir, stdin=False):
        self.name, self.argv, self.env, self.workdir = name, argv, env, workdir
        self.stdin = stdin
        self.p = None
        self.pids = []  # every process ever started, all stopped at the end
        self.lock = threading.RLock()  # start/kill versus the supervisor
        self.held = False  # killed on purpose: the supervisor leaves it down
        self.exits = []  # unplanned exits: (exit code, last line)
        self.hangs = []  # fatal error printed, process still running
        self.incarnation = 0
        self.outputs = []

    def start(self):
        with self.lock:
            return self._start()

    def _start(self):
        self.incarnation += 1
        path = os.path.join(self.workdir, f"{self.name}.{self.incarnation}.out")
        self.outputs.append(path)
        out = open(path, "wb")
        self.p = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pids.append(self.p)
        self.held = False
        out.close()
        return self

    def say(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def kill9(self):
        with self.lock:
            self.held = True
            if self.p and self.p.poll() is None:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()

    def stop(self):
        with self.lock:
            self.held = True
            for p in self.pids:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)
                    try:
                        p.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        os.kill(p.pid, signal.SIGKILL)
                        p.wait()

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def text(self):
        out = []
        for path in self.outputs:
            with open(path, "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
        return "\n".join(out)


class Cluster:
    def __init__(self, script, cdir):
        self.script, self.cdir = script, cdir
        self.down = set()
        self.lock = threading.Lock()

    def run(self, *args):
        return subprocess.run(
            [self.script, "--dir", self.cdir, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=180,
        ).stdout


class Soak:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.work = tempfile.mkdtemp(prefix="aetherv-soak.")
        self.prefix = f"soak{a.seed % 100000}-{secrets.token_hex(3)}"
        self.urls = os.environ["AETHERV_RMQ_CLUSTER_URLS"].split()
        self.cluster = Cluster(a.cluster_script, os.environ["AETHERV_RMQ_CLUSTER_DIR"])
        self.sim_password = "simpw-" + secrets.token_hex(12)
        self.admin_password = "LaPw-" + secrets.token_hex(12) + "!"
        self.secrets = [self.sim_password, self.admin_password]
        self.hosts = [f"hv{i:02d}" for i in range(1, a.hosts + 1)]
        self.accepted = {}  # job_id -> job
        self.unaccepted = []  # jobs no submit attempt got an answer for
        self.faults = {"rabbitmq_node": 0, "worker": 0, "bot": 0, "host_unreachable": 0}
        self.fault_log = []
        self.stop_chaos = threading.Event()
        self.stop_supervisor = threading.Event()
        self.lock = threading.Lock()

    # ---------------------------------------------------------------- processes
    def env(self, **extra):
        e = dict(os.environ)
        e.update(
            AETHERV_AMQP_URL=",".join(self.urls),
            AETHERV_PREFIX=self.prefix,
            AETHERV_LOG=os.environ.get("AETHERV_SOAK_LOG", "warn"),
        )
        e.pop("AETHERV_AMQP_ADDRESSES", None)
        e.update(extra)
        return e

    def start(self):
        a = self.a
        self.sim_port = free_port()
        self.sim_base = f"http://127.0.0.1:{self.sim_port}"
        worker_yaml = os.path.join(self.work, "worker.yaml")
        self.sim = Proc(
            "sim",
            [a.bin, "sim", "--hosts", str(a.hosts), "--listen", f"127.0.0.1:{self.sim_port}",
             "--latency-ms", str(a.latency_ms), "--write-worker-config", worker_yaml],
            self.env(AETHERV_SIM_PASSWORD=self.sim_password),
            self.work,
        ).start()
        deadline = time.time() + 30
        while not os.path.exists(worker_yaml + ".age.pub"):
            if time.time() > deadline or not self.sim.alive():
                raise SystemExit(f"the sim did not start:\n{self.sim.text()}")
            time.sleep(0.2)
        self.recipient = open(worker_yaml + ".age.pub").read().strip()
        with open(os.path.join(self.work, "roles.yaml"), "w") as f:
            f.write(
                "groups:\n"
                "  - name: producers\n    roles: [operator]\n    members: [\"amqp:guest\"]\n"
                "  - name: console\n    roles: [admin]\n    members: [\"console:alice\"]\n"
            )
        with open(os.path.join(self.work, "policy.yaml"), "w") as f:
            f.write("rules: []\n")
        self.workers = [
            Proc(
                f"worker{i}",
                [a.bin, "worker", "--config", worker_yaml],
                self.env(AETHERV_WORKER_ID=f"w{i}",
                         AETHERV_HEALTH_LISTEN=f"127.0.0.1:{free_port()}"),
                self.work,
            ).start()
            for i in (1, 2)
        ]
        self.bots = []
        for i in (1, 2):
            health = f"127.0.0.1:{free_port()}"
            bot = Proc(
                f"bot{i}",
                [a.bin, "bot", "--roles", os.path.join(self.work, "roles.yaml"),
                 "--policy", os.path.join(self.work, "policy.yaml"),
                 "--hosts", ",".join(self.hosts), "--age-recipients", self.recipient],
                self.env(AETHERV_HEALTH_LISTEN=health),
                self.work,
                stdin=True,
            )
            bot.health = health
            self.bots.append(bot.start())
            if i == 1:
                # The first one started leads.
                self.wait_leader(60)

    def is_leader(self, bot):
        try:
            metrics = http_get(f"http://{bot.health}/metrics", timeout=2)
        except Exception:
            return False
        return re.search(r"^aetherv_bot_leader 1\b", metrics, re.M) is not None

    def leader(self):
        for b in self.bots:
            if b.alive() and self.is_leader(b):
                return b
        return None

    def wait_leader(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            b = self.leader()
            if b:
                return b
            time.sleep(0.25)
        raise SystemExit("no bot became the leader:\n" + "\n".join(b.text()[-3000:] for b in self.bots))

    def stop_all(self):
        for p in [*getattr(self, "bots", []), *getattr(self, "workers", []), getattr(self, "sim", None)]:
            if p:
                p.stop()

    # ---------------------------------------------------------------- producers
    def job(self, i):
        host = self.hosts[self.rng_jobs.randrange(len(self.hosts))]
        # At most 15 characters: a managed deployment's VM name is its guest's computer name.
        name = f"s{self.a.seed % 100000:05d}-{i:04d}"
        if i % 10 == 9:
            spec = {"vm_name": name, "target_host": host, "image_name": "Windows Server 2022",
                    "network": "prod", "guest_la_uid": "admin",
                    "guest_la_pw": self.admin_password, "gb_ram": 1, "cpu_cores": 1}
            kind = "deployment.managed"
        else:
            spec = {"vm_name": name, "target_host": host, "gb_ram": 1, "cpu_cores": 1}
            kind = "vm.create"
        job_id = str(__import__("uuid").UUID(int=self.rng_jobs.getrandbits(128), version=4))
        return {"job_id": job_id, "kind": kind, "target": host, "spec": spec, "name": name}

    def submit(self, job):
        path = os.path.join(self.work, f"job-{job['name']}.json")
        with open(path, "w") as f:
            json.dump({"job_id": job["job_id"], "kind": job["kind"],
                       "target": {"host": job["target"]}, "spec": job["spec"]}, f)
        for attempt in range(1, 9):
            try:
                r = subprocess.run(
                    [self.a.bin, "submit", path, "--timeout", "45"],
                    env=self.env(AETHERV_AGE_RECIPIENTS=self.recipient),
                    capture_output=True, text=True, timeout=90,
                )
                out = r.stdout + r.stderr
            except subprocess.TimeoutExpired:
                out = "timed out"
                r = None
            if r is not None and r.returncode == 0 and job["job_id"] in out:
                return True, attempt
            # A retry of a request an earlier attempt got accepted: the gate says the job
            # exists (or, once it ran, that the name is taken).
            if attempt > 1 and re.search(r'"code":\s*"(duplicate|name_in_use)"', out):
                return True, attempt
            if r is not None and r.returncode == 1 and re.search(r'"status":\s*"rejected"', out) and attempt == 1:
                # Rejected on the first try: not a fault of the soak's making.
                log(f"job {job['name']} rejected: {out.strip()[-400:]}")
                return False, attempt
            time.sleep(min(2 ** attempt * 0.25, 5))
        log(f"job {job['name']}: no answer after 8 attempts: {out.strip()[-300:]}")
        return False, 8

    def produce(self):
        self.rng_jobs = random.Random(self.a.seed * 7919 + 1)
        jobs = [self.job(i) for i in range(self.a.jobs)]
        queue = list(jobs)
        qlock = threading.Lock()
        retries = [0]
        # Spread the requests over --duration seconds.
        pace = self.a.producers * self.a.duration / max(1, self.a.jobs)

        def run():
            while True:
                with qlock:
                    if not queue:
                        return
                    job = queue.pop(0)
                ok, attempts = self.submit(job)
                with self.lock:
                    retries[0] += attempts - 1
                    if ok:
                        self.accepted[job["job_id"]] = job
                    else:
                        self.unaccepted.append(job)
                    n = len(self.accepted) + len(self.unaccepted)
                if n % 25 == 0:
                    log(f"{n}/{len(jobs)} requests answered")
                time.sleep(pace)

        threads = [threading.Thread(target=run, daemon=True) for _ in range(self.a.producers)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        self.submit_retries = retries[0]
        return jobs

    def supervise(self):
        """Restarts a bot or worker that exited on its own, as Kubernetes would
        (restartPolicy Always); and one that printed its fatal `aetherv: ...` line but is
        still running 10 s later (hung), after a kill -9. Each is counted and reported."""
        fatal_since = {}
        while not self.stop_supervisor.wait(0.5):
            for p in [*self.bots, *self.workers]:
                try:
                    with p.lock:
                        self.check_process(p, fatal_since)
                except Exception as e:
                    self.note(f"supervisor: {p.name}: {e!r}")

    def check_process(self, p, fatal_since):
        """One look at one process (under its lock): restart it when it exited or hung."""
        if p.held or p.p is None:
            return
        with open(p.outputs[-1], "rb") as f:
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        fatal = [l for l in lines if l.startswith("aetherv: ")]
        exited = p.p.poll() is not None
        hung = False
        if fatal and not exited:
            since = fatal_since.setdefault((p.name, p.incarnation), time.time())
            hung = time.time() - since > 10
        if not exited and not hung:
            return
        why = (fatal[-1] if fatal else (lines[-1] if lines else ""))[:200]
        if hung:
            p.hangs.append(why)
            self.note(f"{p.name} hung after its fatal error ({why}); kill -9 and restart")
            p.kill9()
        else:
            p.exits.append((p.p.returncode, why))
            self.note(f"{p.name} exited on its own (code {p.p.returncode}): {why}; restarting it")
        time.sleep(1)
        p._start()

    def watch_leaders(self):
        """Samples the bots' leader gauge: two leaders at one moment is a violation."""
        self.two_leaders = 0
        self.no_leader_s = 0.0
        while not self.stop_chaos.wait(0.5):
            leading = [b.name for b in self.bots if b.alive() and self.is_leader(b)]
            if len(leading) > 1:
                self.two_leaders += 1
                self.note(f"two leading bots at once: {leading}")
            elif not leading:
                self.no_leader_s += 0.5

    # ---------------------------------------------------------------- chaos
    def chaos(self):
        """Faults at random moments until the producers are done: one of each kind first (in
        a seeded order), then kinds drawn at random."""
        kinds = ["rabbitmq_node", "worker", "bot", "host_unreachable"]
        plan = list(kinds)
        self.rng.shuffle(plan)
        while True:
            kind = plan.pop(0) if plan else self.rng.choice(kinds)
            wait = self.rng.uniform(self.a.fault_gap_min, self.a.fault_gap_max)
            if self.stop_chaos.wait(wait):
                return
            try:
                getattr(self, "fault_" + kind)()
                self.faults[kind] += 1
            except BaseException as e:  # a failed injection is a failed soak
                self.fault_log.append(f"FAILED {kind}: {e}")
                log(f"fault {kind} could not be injected: {e}")

    def note(self, text):
        self.fault_log.append(f"{time.strftime('%H:%M:%S')} {text}")
        log(text)

    def fault_rabbitmq_node(self):
        node = str(self.rng.randint(1, 3))
        down = self.rng.uniform(2, 8)
        self.note(f"kill -9 RabbitMQ node {node}; back in {down:.1f} s")
        self.cluster.run("kill", node)
        time.sleep(down)
        self.cluster.run("restart", node)
        self.note(f"RabbitMQ node {node} restarted")

    def fault_worker(self):
        w = self.rng.choice(self.workers)
        down = self.rng.uniform(0.5, 4)
        self.note(f"kill -9 {w.name}; restarted in {down:.1f} s")
        w.kill9()
        time.sleep(down)
        w.start()

    def fault_bot(self):
        b = self.leader()
        deadline = time.time() + 60
        while b is None and time.time() < deadline and not self.stop_chaos.is_set():
            time.sleep(0.5)
            b = self.leader()
        if b is None:
            raise RuntimeError("no leading bot for 60 s")
        down = self.rng.uniform(1, 6)
        self.note(f"kill -9 the leading bot ({b.name}); restarted in {down:.1f} s")
        b.kill9()
        time.sleep(down)
        b.start()

    def fault_host_unreachable(self):
        # The host of a job accepted last (likely queued or running there), else any.
        with self.lock:
            recent = [j["target"] for j in list(self.accepted.values())[-3:]]
        host = self.rng.choice(recent or self.hosts)
        ms = self.rng.randint(800, 2500)
        self.note(f"host {host} unreachable for {ms} ms")
        http_post(f"{self.sim_base}/sim/hosts/{host}/unreachable?ms={ms}")

    # ---------------------------------------------------------------- counting
    def read_events(self):
        """Every event of the stream (raw bytes) up to now, read from any node that answers.
        Workers keep publishing inventory, so the end is the first event stamped after the
        read began (or the stream idle for 3 s)."""
        last_error = None
        for url in self.urls * 3:
            conn = None
            try:
                began = time.time()
                conn = pika.BlockingConnection(
                    pika.URLParameters(url + "?heartbeat=30&socket_timeout=10&blocked_connection_timeout=30"))
                ch = conn.channel()
                ch.basic_qos(prefetch_count=1000)
                events = []
                stream = f"{self.prefix}.events.stream"
                done = [False]

                def on_message(ch_, method, _props, body):
                    ch_.basic_ack(method.delivery_tag)
                    if done[0]:
                        return
                    events.append(body)
                    try:
                        at = json.loads(body).get("at", "")
                    except ValueError:
                        return
                    if at and _epoch(at) > began:
                        done[0] = True

                # A callback consumer: closing the connection returns what is in flight (a
                # generator consumer's cancel rejects it, which a stream refuses).
                ch.basic_consume(stream, on_message, arguments={"x-stream-offset": "first"})
                idle_since, seen = time.time(), 0
                while not done[0]:
                    conn.process_data_events(time_limit=0.5)
                    if len(events) != seen:
                        idle_since, seen = time.time(), len(events)
                    elif time.time() - idle_since > 3:
                        break
                    if time.time() - began > 120:
                        raise RuntimeError("reading the stream takes over 120 s")
                try:
                    # Closing cancels the consumer, which rejects deliveries not yet handed to
                    # the callback; a stream refuses that by closing the connection: harmless.
                    conn.close()
                except Exception:
                    pass
                return events
            except Exception as e:
                last_error = e
                if conn is not None and conn.is_open:
                    try:
                        conn.close()
                    except Exception:
                        pass
                time.sleep(1)
        raise SystemExit(f"cannot read the event stream: {last_error!r}")

    def finals(self):
        out = {}
        raw = self.read_events()
        for body in raw:
            try:
                ev = json.loads(body)
            except ValueError:
                continue
            if ev.get("type") in FINAL_TYPES and ev.get("job_id"):
                out.setdefault(ev["job_id"], []).append(ev["type"])
        return raw, out

    def wait_done(self, seconds):
        deadline = time.time() + seconds
        while True:
            raw, finals = self.finals()
            missing = [j for j in self.accepted if j not in finals]
            if not missing or time.time() > deadline:
                return raw, finals
            log(f"waiting for {len(missing)} job(s) to end")
            time.sleep(5)

    def count(self, raw, finals):
        stats = json.loads(http_get(f"{self.sim_base}/sim/stats", timeout=20))["hosts"]
        duplicates = sum(h["duplicate_executions"] for h in stats.values())
        violations = sum(1 for h in stats.values() if h["max_concurrent_jobs"] > 1)
        refused = 0
        vms = {}
        for host in self.hosts:
            view = json.loads(http_get(f"{self.sim_base}/sim/hosts/{host}", timeout=20))
            refused += json.loads(http_get(f"{self.sim_base}/sim/hosts/{host}/unreachable"))["refused"]
            for vm in view.get("vms", []):
                vms.setdefault(vm.get("vm_name"), []).append(host)
        lost, twice, outcomes = [], [], {}
        for job_id, job in self.accepted.items():
            types = finals.get(job_id, [])
            if not types:
                lost.append(job["name"] + " (no final event)")
                continue
            outcomes[types[-1]] = outcomes.get(types[-1], 0) + 1
            if len(set(types)) > 1:
                twice.append(job["name"] + f" (outcomes {types})")
            placed = vms.get(job["name"], [])
            if "job.succeeded" in types and job["target"] not in placed:
                lost.append(job["name"] + f" (succeeded, no VM on {job['target']})")
            if len(placed) > 1:
                twice.append(job["name"] + f" ({len(placed)} VMs)")
        bot_text = "\n".join(b.text() for b in self.bots)
        missing_final = []
        for job_id, job in self.accepted.items():
            short = job_id[:8]
            if not re.search(rf"Job {short} (succeeded|failed|was cancelled|cancelled)", bot_text):
                missing_final.append(job["name"])
        leaked = [i for i, body in enumerate(raw) if any(s.encode() in body for s in self.secrets)]
        leaked_out = [p.name for p in [*self.bots, *self.workers, self.sim]
                      if any(s in p.text() for s in [self.admin_password])]
        return {
            "stats": stats, "duplicates": duplicates, "violations": violations, "lost": lost,
            "twice": twice, "outcomes": outcomes, "missing_final": missing_final,
            "leaked": leaked, "leaked_out": leaked_out, "refused": refused,
            "ops": sum(h["operations"] for h in stats.values()),
            "replays": sum(h["journal_replays"] for h in stats.values()),
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--cluster-script", required=True)
    ap.add_argument("--jobs", type=int, default=150)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--latency-ms", type=int, default=100)
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--duration", type=float, default=110.0,
                    help="seconds the requests are spread over (faults keep coming meanwhile)")
    ap.add_argument("--fault-gap-min", type=float, default=5.0, help="least seconds between faults")
    ap.add_argument("--fault-gap-max", type=float, default=14.0, help="most seconds between faults")
    ap.add_argument("--drain-timeout", type=float, default=180.0)
    a = ap.parse_args()
    # SIGTERM (a CI time limit) ends the soak through its cleanup, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2**31)
    log(f"seed {a.seed} (rerun with --seed {a.seed}); {a.jobs} jobs over {a.hosts} hosts")
    soak = Soak(a)
    started = time.time()
    code = 1
    try:
        soak.start()
        log(f"sim, 2 workers, 2 bots up ({time.time() - started:.0f} s); workdir {soak.work}")
        chaos = threading.Thread(target=soak.chaos, daemon=True)
        watcher = threading.Thread(target=soak.watch_leaders, daemon=True)
        supervisor = threading.Thread(target=soak.supervise, daemon=True)
        supervisor.start()
        t0 = time.time()
        chaos.start()
        watcher.start()
        soak.produce()
        log(f"all requests answered in {time.time() - t0:.0f} s; no more faults; waiting for the jobs to end")
        soak.stop_chaos.set()
        chaos.join()
        watcher.join()
        raw, finals = soak.wait_done(a.drain_timeout)
        # Give the bots time to print the last final messages.
        time.sleep(3)
        soak.stop_supervisor.set()
        supervisor.join()
        duration = time.time() - t0
        r = soak.count(raw, finals)
        rows = [
            ("jobs lost", len(r["lost"])),
            ("jobs run twice (duplicate effects)", r["duplicates"] + len(r["twice"])),
            ("slot violations (hosts)", r["violations"]),
            ("threads missing their final message", len(r["missing_final"])),
            ("events with a secret", len(r["leaked"])),
            ("requests not accepted (rejected, or never answered)", len(soak.unaccepted)),
            ("samples with two leading bots", soak.two_leaders),
        ]
        print()
        print(f"seed {a.seed}: {a.jobs} jobs over {a.hosts} hosts in {duration:.0f} s")
        print(f"faults: " + ", ".join(f"{k} {v}" for k, v in soak.faults.items()))
        exits = {p.name: len(p.exits) for p in [*soak.bots, *soak.workers] if p.exits}
        hangs = {p.name: len(p.hangs) for p in [*soak.bots, *soak.workers] if p.hangs}
        print(f"processes that exited on their own and were restarted: {exits or 'none'}; "
              f"hung after a fatal error: {hangs or 'none'}")
        for p in [*soak.bots, *soak.workers]:
            for code_, line in p.exits:
                print(f"  {p.name} exit {code_}: {line}")
            for line in p.hangs:
                print(f"  {p.name} hung: {line}")
        print(f"accepted {len(soak.accepted)}; outcomes {r['outcomes']}; submit retries "
              f"{soak.submit_retries}; events {len(raw)}; host operations {r['ops']}; journal "
              f"replays {r['replays']}; WinRM requests refused while unreachable {r['refused']}; "
              f"no leading bot for {soak.no_leader_s:.1f} s")
        print()
        print("| figure | count |")
        print("|---|---|")
        for name, n in rows:
            print(f"| {name} | {n} |")
        for what, items in [("lost", r["lost"]), ("twice", r["twice"]),
                            ("missing final", r["missing_final"]), ("leaked in process output", r["leaked_out"])]:
            if items:
                print(f"{what}: {items[:20]}")
        failed = [e for e in soak.fault_log if e.startswith("FAILED")]
        if failed:
            print("fault injection failed:", failed)
        code = 0 if all(n == 0 for _, n in rows) and not failed and not r["leaked_out"] else 1
        if code:
            print(f"SOAK FAILED (seed {a.seed}); rerun: scripts/soak.sh --seed {a.seed} "
                  f"--jobs {a.jobs} --hosts {a.hosts} (AETHERV_SOAK_KEEP=1 keeps {soak.work})")
            for line in soak.fault_log:
                print("  ", line)
    finally:
        soak.stop_chaos.set()
        soak.stop_supervisor.set()
        soak.stop_all()
        if not os.environ.get("AETHERV_SOAK_KEEP"):
            subprocess.run(["rm", "-rf", soak.work], check=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
