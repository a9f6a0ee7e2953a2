//! Agent deployment and `aetherv hosts`: a fresh simulated host gets the bundle and then runs
//! agent calls; a changed script is redeployed to every host at worker start; a corrupted file
//! on one host is found by hash and repaired before any job runs there; a file removed while
//! the worker runs is redeployed by the job that finds it missing; `aetherv hosts` reports
//! reachability, authentication, agent version and currency. The simulator runs with
//! `require_agent`, so agent calls fail unless the agent is really installed.

use crate::harness::{bin, job_envelope, start_sim};
use crate::inproc::serve_sim;
use aetherv_broker::{Broker, StreamOffset, Topology};
use aetherv_core::bundle::{AgentStatus, Bundle};
use aetherv_core::contract::command::{DEFAULT_INSTALL_DIR, ENTRY_SCRIPT};
use aetherv_core::{AgentOperation, AgentRequest, EventBody, JobEnvelope, JobId, JobKind, Target};
use aetherv_sim::{Sim, SimConfig};
use aetherv_worker::agent::AgentError;
use aetherv_worker::deploy::Deployer;
use aetherv_worker::{HostAgent, Worker, WorkerConfig};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Simulated hosts that require the agent, served until the rig is dropped.
struct Rig {
    // First, so the serving stops before the rest is dropped.
    _serving: tokio_util::sync::DropGuard,
    sim: Sim,
    cfg: WorkerConfig,
}

async fn rig(hosts: usize) -> Rig {
    let sim = Sim::new(SimConfig::with_hosts(hosts).require_agent(true));
    let stop = CancellationToken::new();
    let cfg = serve_sim(&sim, &stop).await;
    Rig {
        _serving: stop.drop_guard(),
        sim,
        cfg,
    }
}

/// The worker's WinRM client for `host` of the rig's configuration.
fn host_client(rig: &Rig, host: &str) -> aetherv_winrm::WinrmClient {
    let h = rig
        .cfg
        .hosts
        .iter()
        .find(|h| h.name == host)
        .expect("host configured");
    aetherv_worker::winrm_client(h, &|_| None).expect("client")
}

fn deployer(rig: &Rig, host: &str, bundle: &Bundle) -> Deployer {
    let client = host_client(rig, host);
    Deployer::new(host, client, &rig.cfg.install_dir, Arc::new(bundle.clone()))
}

fn agent(rig: &Rig, host: &str) -> HostAgent {
    let client = host_client(rig, host);
    HostAgent::new(host, client, &rig.cfg.install_dir, Duration::from_secs(30))
}

fn noop_request() -> AgentRequest {
    AgentRequest::new(AgentOperation::Noop, Default::default(), "deploy-test")
}

/// Installs `bundle` on every host of the rig directly in the simulator.
fn install_everywhere(rig: &Rig, bundle: &Bundle) {
    for h in rig.sim.host_names() {
        assert!(rig.sim.install_bundle(&h, DEFAULT_INSTALL_DIR, bundle));
    }
}

fn installed_matches(sim: &Sim, host: &str, bundle: &Bundle) -> bool {
    let files = sim.installed_files(host, DEFAULT_INSTALL_DIR);
    bundle.files().iter().all(|f| {
        files
            .get(&f.name.to_ascii_lowercase())
            .is_some_and(|c| *c == f.content)
    }) && files.get("manifest.json").map(Vec::as_slice) == Some(bundle.manifest_json().as_bytes())
}

fn noop_job(host: &str) -> JobEnvelope {
    job_envelope(
        JobKind::Noop,
        Target::Host(host.to_string()),
        Default::default(),
        "deploy-test",
    )
}

/// A worker of the rig's configuration running in this process until `stop`.
struct RunningWorker {
    quiet: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<aetherv_worker::StopDetails>>,
}

impl RunningWorker {
    fn start(worker: Worker) -> RunningWorker {
        let quiet = CancellationToken::new();
        let q = quiet.clone();
        let handle = tokio::spawn(async move { worker.run(q).await });
        RunningWorker { quiet, handle }
    }

    async fn stop(self) {
        self.quiet.cancel();
        self.handle.await.expect("join").expect("worker stops");
    }
}

/// The job's last event is `job.succeeded`; `what` leads the failure message.
fn assert_ended_succeeded(events: &[EventBody], what: &str) {
    assert!(
        matches!(events.last(), Some(EventBody::JobSucceeded { .. })),
        "{what}{events:?}"
    );
}

/// Publishes a noop job for `host`, waits for its end and checks it succeeded; returns its events.
async fn run_noop(broker: &Broker, host: &str) -> Vec<EventBody> {
    let mut stream = broker
        .replay_events(StreamOffset::Next)
        .await
        .expect("stream");
    let job = noop_job(host);
    broker.publish_job(&job).await.expect("publish");
    let events = events_until_done(&mut stream, job.job_id).await;
    assert_ended_succeeded(&events, "");
    events
}

/// Records the event bodies of `stream` by job while `keep_going(by_job)` holds; panics with
/// `what` at `deadline`.
async fn record_while(
    stream: &mut aetherv_broker::EventStream,
    by_job: &mut HashMap<JobId, Vec<EventBody>>,
    deadline: tokio::time::Instant,
    what: &str,
    keep_going: impl Fn(&HashMap<JobId, Vec<EventBody>>) -> bool,
) {
    while keep_going(by_job) {
        let (_, ev) = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect(what)
            .expect("stream open");
        if let Some(id) = ev.job_id {
            by_job.entry(id).or_default().push(ev.body);
        }
    }
}

/// Waits for the job's final event; returns every event body of the job.
async fn events_until_done(stream: &mut aetherv_broker::EventStream, job: JobId) -> Vec<EventBody> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("job finished in time")
            .expect("stream open");
        if next.1.job_id != Some(job) {
            continue;
        }
        let done = matches!(
            next.1.body,
            EventBody::JobSucceeded { .. } | EventBody::JobFailed { .. }
        );
        out.push(next.1.body);
        if done {
            return out;
        }
    }
}

fn log_text(events: &[EventBody]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            EventBody::JobLog { lines } => Some(
                lines
                    .iter()
                    .map(|l| l.text.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn fresh_host_is_deployed_and_then_runs_agent_calls() {
    let rig = rig(1).await;
    let bundle = Bundle::embedded();
    let a = agent(&rig, "hv01");
    let cancel = CancellationToken::new();
    match a.call(&noop_request(), &cancel, &mut |_| {}).await {
        Err(AgentError::AgentMissing(text)) => assert!(text.contains(ENTRY_SCRIPT), "{text}"),
        other => panic!("expected the agent to be missing, got {other:?}"),
    }
    let d = deployer(&rig, "hv01", bundle);
    assert_eq!(
        d.probe().await.status,
        Some(AgentStatus::NotInstalled),
        "fresh host"
    );
    let report = d.ensure_current().await.expect("deploys");
    assert_eq!(report.before, AgentStatus::NotInstalled);
    assert_eq!(report.written.len(), bundle.files().len() + 1);
    assert!(report.copied.is_empty());
    assert!(installed_matches(&rig.sim, "hv01", bundle));
    let r = a
        .call(&noop_request(), &cancel, &mut |_| {})
        .await
        .expect("agent runs");
    assert!(r.is_ok(), "{r:?}");
    // Current: one check call and nothing written.
    let again = d.ensure_current().await.expect("checks");
    assert_eq!(again.before, AgentStatus::Current);
    assert_eq!((again.calls, again.written.len()), (1, 0));
    let probe = d.probe().await;
    assert_eq!(probe.installed_version.as_deref(), Some(bundle.version()));
    assert_eq!(probe.status, Some(AgentStatus::Current));
}

#[tokio::test]
async fn a_kept_shell_serves_every_call_and_one_the_host_forgot_is_replaced_without_running_twice()
{
    let rig = rig(1).await;
    install_everywhere(&rig, Bundle::embedded());
    let a = agent(&rig, "hv01").keep_shell();
    let cancel = CancellationToken::new();
    let call = |n: usize| {
        AgentRequest::new(
            AgentOperation::Noop,
            Default::default(),
            format!("kept-{n}"),
        )
    };
    for n in 0..3 {
        let r = a.call(&call(n), &cancel, &mut |_| {}).await.expect("runs");
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            rig.sim.open_shells(),
            1,
            "one shell kept, reused by call {n}"
        );
    }
    // The host forgets its shells (WinRM restarted): the next call opens a new one.
    rig.sim.forget_shells();
    let r = a
        .call(&call(3), &cancel, &mut |_| {})
        .await
        .expect("runs in a new shell");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(rig.sim.open_shells(), 1);
    // Each call ran exactly once on the host.
    let ran: Vec<String> = rig
        .sim
        .records("hv01")
        .into_iter()
        .filter(|r| r.correlation_id.starts_with("kept-"))
        .map(|r| r.correlation_id)
        .collect();
    assert_eq!(ran, ["kept-0", "kept-1", "kept-2", "kept-3"]);
    // An agent that keeps no shell leaves none open.
    let plain = agent(&rig, "hv01");
    plain
        .call(&call(4), &cancel, &mut |_| {})
        .await
        .expect("runs");
    assert_eq!(rig.sim.open_shells(), 1, "only the kept one");
    a.release().await;
    assert_eq!(rig.sim.open_shells(), 0, "released");
}

#[tokio::test]
async fn changed_script_is_redeployed_to_every_host_at_worker_start() {
    let rig = rig(3).await;
    let old = Bundle::embedded();
    install_everywhere(&rig, old);
    let new = old
        .with_file(
            "AethervAgent.Vm.ps1",
            b"# A changed VM module.\nfunction Invoke-AethervVmGet { param([hashtable]$Spec) }\n",
        )
        .expect("bundle");
    let broker = Broker::in_process(Topology::new("deploy-changed"));
    let running = RunningWorker::start(
        Worker::new(&rig.cfg, broker.clone(), &|_| None)
            .expect("worker")
            .with_bundle(new.clone()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !rig
        .sim
        .host_names()
        .iter()
        .all(|h| installed_matches(&rig.sim, h, &new))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the changed bundle did not reach every host"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Jobs run against the new agent.
    run_noop(&broker, "hv03").await;
    running.stop().await;
}

#[tokio::test]
async fn corrupt_file_on_one_host_is_repaired_before_a_job_runs_there() {
    let rig = rig(2).await;
    let bundle = Bundle::embedded();
    install_everywhere(&rig, bundle);
    assert!(rig
        .sim
        .corrupt_file("hv02", DEFAULT_INSTALL_DIR, "AethervAgent.Disk.ps1"));
    let d = deployer(&rig, "hv02", bundle);
    assert_eq!(
        d.probe().await.status,
        Some(AgentStatus::Corrupt {
            files: vec!["AethervAgent.Disk.ps1".into()]
        })
    );
    // A job is already waiting for hv02 when the worker starts.
    let broker = Broker::in_process(Topology::new("deploy-corrupt"));
    broker.declare_host("hv02").await.expect("declare");
    let mut stream = broker
        .replay_events(StreamOffset::Next)
        .await
        .expect("stream");
    let job = noop_job("hv02");
    broker.publish_job(&job).await.expect("publish");
    let running =
        RunningWorker::start(Worker::new(&rig.cfg, broker.clone(), &|_| None).expect("worker"));
    let events = events_until_done(&mut stream, job.job_id).await;
    assert_ended_succeeded(&events, "");
    // Repaired at start, before the job: the job itself never had to prepare the host.
    let log = log_text(&events);
    assert!(!log.contains("being prepared"), "{log}");
    assert!(installed_matches(&rig.sim, "hv02", bundle));
    assert_eq!(d.probe().await.status, Some(AgentStatus::Current));
    running.stop().await;
}

#[tokio::test]
async fn agent_removed_while_the_worker_runs_is_redeployed_by_the_job() {
    let rig = rig(1).await;
    let bundle = Bundle::embedded();
    let broker = Broker::in_process(Topology::new("deploy-removed"));
    let running =
        RunningWorker::start(Worker::new(&rig.cfg, broker.clone(), &|_| None).expect("worker"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !installed_matches(&rig.sim, "hv01", bundle) {
        assert!(tokio::time::Instant::now() < deadline, "not deployed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entry = format!("{DEFAULT_INSTALL_DIR}\\{ENTRY_SCRIPT}");
    assert_eq!(
        rig.sim.with_host("hv01", |st| st.files.remove(&entry)),
        Some(true)
    );
    let events = run_noop(&broker, "hv01").await;
    let log = log_text(&events);
    assert!(log.contains("is being prepared"), "{log}");
    assert!(installed_matches(&rig.sim, "hv01", bundle));
    running.stop().await;
}

fn hosts_json(config: &std::path::Path) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = Command::new(bin())
        .args(["hosts", "--json", "--config"])
        .arg(config)
        .output()
        .expect("run aetherv hosts");
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect();
    (out.status.code(), rows)
}

#[tokio::test]
async fn hosts_command_reports_reachability_auth_version_and_currency() {
    let sim = start_sim(2, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    // Fresh hosts: reachable, authenticated, no agent.
    let (code, rows) = hosts_json(&sim.worker_config);
    assert_eq!(code, Some(0));
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["reachable"], true);
        assert_eq!(r["auth_ok"], true);
        assert_eq!(r["agent_version"], serde_json::Value::Null);
        assert_eq!(r["current"], false);
        assert_eq!(r["status"], "not installed");
    }
    // Deploy to hv01 through the sim process, then hv01 is current.
    let cfg = WorkerConfig::load(&sim.worker_config).expect("config");
    let h = &cfg.hosts[0];
    let d = Deployer::new(
        &h.name,
        aetherv_worker::winrm_client(h, &|_| None).expect("client"),
        &cfg.install_dir,
        Arc::new(Bundle::embedded().clone()),
    );
    d.ensure_current().await.expect("deploys");
    // Plus a host with a wrong password and one nobody listens on.
    let text = std::fs::read_to_string(&sim.worker_config).expect("read");
    let bad_auth = text.replace(
        &format!("password: \"{}\"", aetherv_sim::config::DEFAULT_PASSWORD),
        "password: \"wrong\"",
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let cfg_all = format!(
        "{text}  - name: \"hv99\"\n    endpoint: \"http://127.0.0.1:{port}/hv99/wsman\"\n    auth: {{ kind: basic, username: \"a\", password: \"b\" }}\n"
    );
    let path = dir.path().join("all.yaml");
    std::fs::write(&path, cfg_all).expect("write");
    let (code, rows) = hosts_json(&path);
    assert_eq!(code, Some(1), "an unreachable host makes the exit code 1");
    let by: HashMap<String, &serde_json::Value> = rows
        .iter()
        .map(|r| (r["host"].as_str().unwrap_or_default().to_string(), r))
        .collect();
    assert_eq!(by["hv01"]["current"], true);
    assert_eq!(by["hv01"]["agent_version"], Bundle::embedded().version());
    assert_eq!(by["hv02"]["current"], false);
    assert_eq!(by["hv99"]["reachable"], false);
    assert_eq!(by["hv99"]["auth_ok"], serde_json::Value::Null);
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad_auth).expect("write");
    let (code, rows) = hosts_json(&path);
    assert_eq!(code, Some(0), "wrong credentials are not unreachable");
    assert!(rows
        .iter()
        .all(|r| r["reachable"] == true && r["auth_ok"] == false));
    // The table form names every column.
    let out = Command::new(bin())
        .args(["hosts", "--config"])
        .arg(&sim.worker_config)
        .output()
        .expect("run");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("HOST") && table.contains("CURRENT"),
        "{table}"
    );
    let version = Bundle::embedded().version();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("hv01") && l.contains(version) && l.contains(" yes")),
        "{table}"
    );
}

#[tokio::test]
async fn two_workers_deploying_one_host_at_once_both_end_current() {
    let rig = rig(1).await;
    let bundle = Bundle::embedded();
    let a = deployer(&rig, "hv01", bundle);
    let b = deployer(&rig, "hv01", bundle);
    let (ra, rb) = tokio::join!(a.ensure_current(), b.ensure_current());
    // Each deployment stages in its own directory; both verify by hash.
    ra.expect("first deployment");
    rb.expect("second deployment");
    assert!(installed_matches(&rig.sim, "hv01", bundle));
    assert_eq!(a.probe().await.status, Some(AgentStatus::Current));
    let leftovers: Vec<String> = rig
        .sim
        .with_host("hv01", |st| st.files.paths())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.contains(".staging-") || p.contains(".previous-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Forwards TCP connections on `listener` to `to` (a host that comes back).
async fn forward(listener: tokio::net::TcpListener, to: std::net::SocketAddr) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// A wrong password fails that host's jobs at once with a clear error and one attempt each; an
/// unreachable host keeps only its own jobs waiting, with retries and backoff in their events,
/// and runs them when it comes back; the healthy host is not delayed by either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_fast_and_an_unreachable_host_delays_only_its_own_jobs() {
    let mut rig = rig(3).await;
    // hv02: wrong password. hv03: a port nobody listens on yet.
    let parked = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dark = parked.local_addr().expect("addr");
    drop(parked);
    let sim_addr: std::net::SocketAddr = rig.cfg.hosts[0]
        .endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("sim address");
    for h in &mut rig.cfg.hosts {
        match h.name.as_str() {
            "hv02" => {
                h.auth = aetherv_worker::config::AuthConfig::Basic {
                    username: "aetherv".into(),
                    password: Some("not-the-password".into()),
                    password_env: None,
                    password_file: None,
                }
            }
            "hv03" => h.endpoint = format!("http://{dark}/hv03/wsman"),
            _ => {}
        }
    }
    let broker = Broker::in_process(Topology::new("deploy-faults"));
    let mut stream = broker
        .replay_events(StreamOffset::Next)
        .await
        .expect("stream");
    for h in ["hv01", "hv02", "hv03"] {
        broker.declare_host(h).await.expect("declare");
    }
    let running =
        RunningWorker::start(Worker::new(&rig.cfg, broker.clone(), &|_| None).expect("worker"));
    let rejections_at_start = rig.sim.auth_rejections();

    let jobs: Vec<JobEnvelope> = ["hv01", "hv02", "hv03", "hv01", "hv02", "hv03"]
        .iter()
        .map(|h| noop_job(h))
        .collect();
    for j in &jobs {
        broker.publish_job(j).await.expect("publish");
    }
    // Collect until both hv01 jobs succeeded and both hv02 jobs failed.
    let mut by_job: HashMap<JobId, Vec<EventBody>> = HashMap::new();
    let done = |by_job: &HashMap<JobId, Vec<EventBody>>, j: &JobEnvelope| {
        by_job.get(&j.job_id).is_some_and(|evs| {
            evs.iter().any(|e| {
                matches!(
                    e,
                    EventBody::JobSucceeded { .. } | EventBody::JobFailed { .. }
                )
            })
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    record_while(
        &mut stream,
        &mut by_job,
        deadline,
        "hv01 and hv02 jobs ended in time",
        |by_job| !jobs[..2].iter().chain(&jobs[3..5]).all(|j| done(by_job, j)),
    )
    .await;
    for j in [&jobs[0], &jobs[3]] {
        assert_ended_succeeded(&by_job[&j.job_id], "hv01 was held up: ");
    }
    for j in [&jobs[1], &jobs[4]] {
        let failed = by_job[&j.job_id].iter().find_map(|e| match e {
            EventBody::JobFailed { code, message, .. } => Some((code.clone(), message.clone())),
            _ => None,
        });
        let (code, message) = failed.expect("hv02 job failed");
        assert_eq!(code, "host_auth_failed");
        assert!(
            message.contains("hv02 rejected the worker's credentials (HTTP 401)"),
            "{message}"
        );
        assert!(!message.contains("not-the-password"), "{message}");
    }
    // No retry storm: one rejected attempt at start and one per job, nothing more.
    let rejections = rig.sim.auth_rejections();
    assert!(
        rejections <= rejections_at_start + 3,
        "{rejections} rejected requests for 2 jobs"
    );
    // hv03's first job is still waiting, with its retries visible in its events.
    assert!(!done(&by_job, &jobs[2]) && !done(&by_job, &jobs[5]));
    let retry_lines = |by_job: &HashMap<JobId, Vec<EventBody>>| {
        log_text(
            by_job
                .get(&jobs[2].job_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        )
        .matches("unreachable while being prepared")
        .count()
    };
    record_while(
        &mut stream,
        &mut by_job,
        deadline,
        "retries visible in time",
        |by_job| retry_lines(by_job) < 2,
    )
    .await;
    let log = log_text(&by_job[&jobs[2].job_id]);
    assert!(log.contains("host hv03 is being prepared"), "{log}");
    assert!(log.contains("retrying in 1s"), "backoff grows: {log}");
    // hv03 comes back: its jobs run, in order.
    let listener = tokio::net::TcpListener::bind(dark).await.expect("rebind");
    tokio::spawn(forward(listener, sim_addr));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    record_while(
        &mut stream,
        &mut by_job,
        deadline,
        "hv03 jobs ended after it came back",
        |by_job| !(done(by_job, &jobs[2]) && done(by_job, &jobs[5])),
    )
    .await;
    for j in [&jobs[2], &jobs[5]] {
        assert_ended_succeeded(&by_job[&j.job_id], "");
    }
    assert!(log_text(&by_job[&jobs[2].job_id]).contains("host hv03 is ready"));
    running.stop().await;
}
