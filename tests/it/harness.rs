//! Test harness: the `aetherv` binary as real processes (sim, workers), RabbitMQ (the machine's
//! or a throwaway one the test owns), a minimal HTTP client for the sim's stats, and clean-up of
//! every AMQP object a test declared under its unique prefix.

use aetherv_broker::{Broker, StreamOffset, Topology};
use aetherv_core::{Event, EventBody, JobEnvelope, JobId, JobKind, Platform, Requester, Target};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aetherv"))
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The broker URL for tests; panics (never skips) when nothing answers there.
pub fn amqp_url() -> String {
    let url = std::env::var("AETHERV_AMQP_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let hostport = url
        .split('@')
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or("127.0.0.1:5672")
        .to_string();
    let reachable = hostport
        .parse::<SocketAddr>()
        .ok()
        .map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        .unwrap_or(false);
    assert!(
        reachable,
        "RabbitMQ is not reachable at {hostport}: run `scripts/test.sh` (it starts a throwaway broker) or set AETHERV_AMQP_URL"
    );
    url
}

/// The Python of the test peers (`.venv`, made by `scripts/test.sh`).
pub fn python() -> String {
    let p = std::env::var("AETHERV_PYTHON")
        .unwrap_or_else(|_| root().join(".venv/bin/python").display().to_string());
    assert!(
        std::path::Path::new(&p).exists(),
        "python test peers missing at {p}: run `scripts/test.sh` (it creates .venv)"
    );
    p
}

/// A job envelope as an AMQP producer `user` sends it (no secrets, no approval).
pub fn job_envelope(
    kind: JobKind,
    target: Target,
    spec: serde_json::Map<String, Value>,
    user: &str,
) -> JobEnvelope {
    JobEnvelope {
        v: 1,
        job_id: JobId::new(),
        kind,
        target,
        spec,
        secrets: None,
        requested_by: Requester {
            platform: Platform::Amqp,
            user_id: user.into(),
        },
        origin: None,
        created_at: chrono::Utc::now(),
        approval: None,
    }
}

/// The test's broker: RabbitMQ at `url` under the test's `prefix`.
pub async fn test_broker(url: &str, prefix: &str) -> Broker {
    Broker::connect(url, Topology::new(prefix))
        .await
        .expect("broker")
}

/// The usual start of an end-to-end test: (the broker URL, a unique prefix, an `aetherv sim`
/// with `hosts` hosts and `latency_ms` per operation, the test's broker). Panics (never skips)
/// when RabbitMQ is not reachable.
pub async fn e2e(hosts: usize, latency_ms: u64) -> (String, String, SimProc, Broker) {
    let url = amqp_url();
    let prefix = prefix();
    let sim = start_sim(hosts, latency_ms);
    let broker = test_broker(&url, &prefix).await;
    (url, prefix, sim, broker)
}

/// The end of a test: closes its broker, then stops `workers` (dropped here), then deletes what
/// it declared for `hosts`.
pub async fn finish<W>(broker: &Broker, workers: W, url: &str, prefix: &str, hosts: &[String]) {
    broker.close().await;
    drop(workers);
    cleanup(url, prefix, hosts).await;
}

/// A unique name prefix so test runs never collide.
pub fn prefix() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// SIGKILL now (the crash case).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `timeout` for exit; returns the exit status if it exited.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            if !status.success() && !std::thread::panicking() {
                eprintln!("note: {} had exited early with {status}", self.name);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `aetherv sim`.
pub struct SimProc {
    /// The process (killed on drop).
    pub _proc: Proc,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Worker configuration it wrote.
    pub worker_config: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `aetherv sim` with `hosts` hosts and per-operation latency; waits until it serves.
pub fn start_sim(hosts: usize, latency_ms: u64) -> SimProc {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let worker_config = dir.path().join("worker.yaml");
    let child = Command::new(bin())
        .args(["sim", "--hosts", &hosts.to_string(), "--listen", &addr])
        .args(["--latency-ms", &latency_ms.to_string()])
        .arg("--write-worker-config")
        .arg(&worker_config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn aetherv sim");
    let proc = Proc {
        child,
        name: "sim".into(),
    };
    wait_until(Duration::from_secs(20), "sim to serve /sim/stats", || {
        http_get(&addr, "/sim/stats").is_ok() && worker_config.exists()
    });
    SimProc {
        _proc: proc,
        addr,
        worker_config,
        _dir: dir,
    }
}

impl SimProc {
    /// `GET /sim/stats`.
    pub fn stats(&self) -> Value {
        let body = http_get(&self.addr, "/sim/stats").expect("sim stats");
        serde_json::from_str(&body).expect("stats are json")
    }
}

/// The age identity every test worker gets (through `AETHERV_AGE_IDENTITY`).
pub fn worker_identity() -> &'static aetherv_core::secrets::Identity {
    static ID: std::sync::OnceLock<aetherv_core::secrets::Identity> = std::sync::OnceLock::new();
    ID.get_or_init(aetherv_core::secrets::generate_identity)
}

/// Seals the secret fields of `job` for the test workers, as a producer must.
pub fn seal_for_workers(job: &mut aetherv_core::JobEnvelope) {
    let ids = aetherv_core::schema::Forms::builtin()
        .expect("forms")
        .secret_fields();
    job.secrets = aetherv_core::secrets::seal_spec(
        &mut job.spec,
        ids.iter().map(String::as_str),
        &[worker_identity().to_public()],
    )
    .expect("sealed");
}

/// Starts `aetherv worker` against a config, with the test's prefix and broker.
pub fn start_worker(config: &Path, prefix: &str, url: &str, id: &str) -> Proc {
    spawn_worker(config, prefix, url, id, "warn", Stdio::inherit(), true)
}

/// Starts `aetherv worker` with only its config: the age identity comes from the config's
/// `age_identity_file` (as `aetherv sim` writes it), not from the test's shared identity.
pub fn start_worker_own_identity(config: &Path, prefix: &str, url: &str, id: &str) -> Proc {
    spawn_worker(config, prefix, url, id, "warn", Stdio::inherit(), false)
}

/// Starts `aetherv worker` with debug logging written to `log` (for scans of what it logs).
pub fn start_worker_logged(config: &Path, prefix: &str, url: &str, id: &str, log: &Path) -> Proc {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("worker log file");
    spawn_worker(config, prefix, url, id, "debug", Stdio::from(file), true)
}

fn spawn_worker(
    config: &Path,
    prefix: &str,
    url: &str,
    id: &str,
    level: &str,
    stderr: Stdio,
    shared_identity: bool,
) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.arg("worker").arg("--config").arg(config);
    if shared_identity {
        let identity = aetherv_core::secrets::identity_text(worker_identity());
        cmd.env("AETHERV_AGE_IDENTITY", identity.as_str());
    } else {
        cmd.env_remove("AETHERV_AGE_IDENTITY");
    }
    cmd.env("AETHERV_PREFIX", prefix)
        .env("AETHERV_AMQP_URL", url)
        .env("AETHERV_WORKER_ID", id)
        .env("AETHERV_LOG", level)
        // A worker logging to a file logs JSON (`--log-format json`), which tests parse.
        .env(
            "AETHERV_LOG_FORMAT",
            if level == "debug" { "json" } else { "text" },
        )
        .stdout(Stdio::null())
        .stderr(stderr);
    Proc {
        child: cmd.spawn().expect("spawn aetherv worker"),
        name: id.to_string(),
    }
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write_in(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A minimal HTTP/1.1 GET; returns the body of a 200 response.
pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no http body")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Reads events from the start of the test's stream until every job in `jobs` has ended;
/// returns each job's events. Panics after `timeout`.
pub async fn collect_until_done(
    broker: &Broker,
    jobs: &HashSet<JobId>,
    timeout: Duration,
) -> HashMap<JobId, Vec<Event>> {
    let mut stream = broker
        .replay_events(StreamOffset::First)
        .await
        .expect("event stream");
    let mut by_job: HashMap<JobId, Vec<Event>> = HashMap::new();
    let mut done: HashSet<JobId> = HashSet::new();
    let collect = async {
        while done.len() < jobs.len() {
            let Some((_, ev)) = stream.next().await else {
                break;
            };
            let Some(id) = ev.job_id else { continue };
            if !jobs.contains(&id) {
                continue;
            }
            if ev.is_terminal() {
                done.insert(id);
            }
            by_job.entry(id).or_default().push(ev);
        }
    };
    let finished = tokio::time::timeout(timeout, collect).await.is_ok();
    assert!(
        finished && done.len() == jobs.len(),
        "only {} of {} jobs ended within {timeout:?}",
        done.len(),
        jobs.len()
    );
    by_job
}

/// True when the job's events end in `job.succeeded`.
pub fn succeeded(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e.body, EventBody::JobSucceeded { .. }))
}

/// Deletes every queue and exchange a test declared under `prefix` (best effort).
pub async fn cleanup(url: &str, prefix: &str, hosts: &[String]) {
    let mut names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    // Workers serving the sim's hosts also declare the placement queue of its cluster.
    names.push("cluster.clu01");
    aetherv_broker::delete_topology(
        url,
        &Topology::new(prefix),
        &names,
        &[aetherv_bot::LEADER_ROLE],
    )
    .await;
}

/// Runs a command to completion and returns (status, stdout, stderr).
pub fn run_cmd(cmd: &mut Command) -> (std::process::ExitStatus, String, String) {
    let out = cmd.output().expect("run command");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A throwaway RabbitMQ owned by one test (for restart tests): state in a temp dir, free ports,
/// stoppable and restartable on the same port with its data.
pub struct OwnRabbit {
    dir: tempfile::TempDir,
    /// AMQP port.
    pub port: u16,
    dist: u16,
    epmd: u16,
    child: Option<Child>,
}

impl OwnRabbit {
    /// Starts one; panics when Debian's rabbitmq-server is not installed.
    pub fn start() -> OwnRabbit {
        assert!(
            Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
            "rabbitmq-server is not installed: run `scripts/test.sh` (it installs it) or `apt-get install rabbitmq-server`"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = OwnRabbit {
            port: free_port(),
            dist: free_port(),
            epmd: free_port(),
            dir,
            child: None,
        };
        std::fs::write(r.dir.path().join("enabled_plugins"), "[].\n").expect("write");
        std::fs::write(
            r.dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{}\n", r.port),
        )
        .expect("write");
        std::fs::write(r.dir.path().join("rabbitmq-env.conf"), "").expect("write");
        r.boot();
        r
    }

    /// The AMQP URL.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn boot(&mut self) {
        let d = self.dir.path();
        std::fs::create_dir_all(d.join("home")).ok();
        let log = std::fs::File::create(d.join("server.out")).expect("log file");
        let child = Command::new("setsid")
            .arg("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("HOME", d.join("home"))
            .env(
                "RABBITMQ_NODENAME",
                format!("aetherv-test-{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist.to_string())
            .env("ERL_EPMD_PORT", self.epmd.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("spawn rabbitmq-server");
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        wait_until(
            Duration::from_secs(60),
            "throwaway RabbitMQ to accept connections",
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        );
    }

    /// Stops the broker, keeping its data: SIGTERM to every process of its session (it was
    /// started under `setsid`), by session id, never by name and never by process group.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let sid = c.id().to_string();
            let _ = Command::new("pkill").args(["-TERM", "-s", &sid]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("pkill").args(["-KILL", "-s", &sid]).status();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.boot();
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        self.stop();
        // epmd daemonizes; find ours by its port in the environment.
        if let Ok(out) = Command::new("pgrep").args(["-x", "epmd"]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let needle = format!("ERL_EPMD_PORT={}", self.epmd);
                if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                    let _ = Command::new("kill").arg(pid).status();
                }
            }
        }
    }
}

/// A minimal HTTP/1.1 POST of a JSON body; returns the status line's code.
pub fn http_post_json(addr: &str, path: &str, body: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no http status in {text:?}"))
}

/// A chat bot command (`aetherv slack|discord --simulated 2`) checked from outside by a Python
/// peer that records the platform API calls: the roles and policy files (one operator,
/// `member`; no approvals), the bot's configuration (`config` given their paths), then the
/// peer (`peer`, started first so its recorder is up) and the bot with `env`. Returns the
/// peer's JSON report and whether the peer saw what it waited for.
pub struct ChatCheck<'a> {
    /// `slack` or `discord`.
    pub command: &'a str,
    /// The operator's principal (`slack:U…`, `discord:…`).
    pub member: &'a str,
    /// The bot's configuration, given the roles and policy file paths.
    pub config: &'a dyn Fn(&Path, &Path) -> String,
    /// The peer's command line (without the interpreter).
    pub peer: Vec<std::ffi::OsString>,
    /// The bot's environment (tokens, secrets).
    pub env: Vec<(&'a str, &'a str)>,
}

impl ChatCheck<'_> {
    /// Runs the check.
    pub fn run(&self) -> (Value, bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| write_in(dir.path(), name, text);
        let roles = write(
            "roles.yaml",
            &format!(
                "groups:\n  - name: ops\n    roles: [operator]\n    members: [\"{}\"]\n",
                self.member
            ),
        );
        let policy = write("policy.yaml", "rules:\n  - name: free\n    approvals: 0\n");
        let config = write("bot.yaml", &(self.config)(&roles, &policy));
        let check = Command::new(python())
            .args(&self.peer)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python peer");
        let mut bot = Command::new(bin());
        bot.args([self.command, "--config"])
            .arg(&config)
            .args(["--simulated", "2"])
            .env("AETHERV_PREFIX", prefix())
            .env_remove("AETHERV_AMQP_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            bot.env(k, v);
        }
        let _bot = Proc {
            child: bot.spawn().expect("chat bot"),
            name: format!("aetherv {}", self.command),
        };
        let out = check.wait_with_output().expect("python peer output");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "peer report ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (report, out.status.success())
    }
}
