//! Whole jobs against an in-process simulator served over real WinRM (HTTP on loopback) and the
//! in-process broker: managed deployments, resume, name conflicts, faults with and without
//! rollback, guest failures, `vm.initialize`, and a scan of every event for the secrets.

use crate::executor::{job_ctx, run_job_with, ExecOptions, GuestTimeouts, JobOutcome};
use crate::reporter::JobReporter;
use crate::HostAgent;
use aetherv_broker::{Broker, StreamOffset, Topology};
use aetherv_core::contract::command::DEFAULT_INSTALL_DIR;
use aetherv_core::secrets;
use aetherv_core::{AgentOperation, AgentRequest, Event, EventBody, JobEnvelope, JobKind};
use aetherv_sim::guest::faults;
use aetherv_sim::{Fault, Sim, SimConfig};
use aetherv_winrm::{Auth, ClientConfig, WinrmClient};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LA_PW: &str = "Local-Adm1n-Secret!";
const DJ_PW: &str = "Domain-J0in-Secret!";

struct Env {
    sim: Sim,
    agent: HostAgent,
    broker: Broker,
    stop: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn env() -> Env {
    let sim = Sim::new(SimConfig::with_hosts(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
    let client = WinrmClient::new(ClientConfig::new(
        format!("http://{addr}/hv01/wsman"),
        Auth::Basic {
            username: aetherv_sim::config::DEFAULT_USERNAME.into(),
            password: aetherv_sim::config::DEFAULT_PASSWORD.into(),
        },
    ))
    .expect("client");
    Env {
        sim,
        agent: HostAgent::new("hv01", client, DEFAULT_INSTALL_DIR, Duration::from_secs(30)),
        broker: Broker::in_process(Topology::new("flow")),
        stop,
    }
}

fn identity() -> &'static secrets::Identity {
    static ID: std::sync::OnceLock<secrets::Identity> = std::sync::OnceLock::new();
    ID.get_or_init(secrets::generate_identity)
}

/// A job as a producer sends it: secret fields sealed to the worker's identity.
fn job(kind: JobKind, spec: Value) -> JobEnvelope {
    let mut j = plaintext_job(kind, spec);
    j.seal_secrets(&[identity().to_public()]).expect("sealed");
    j
}

/// A job with its secret fields left in the spec (a broken producer).
fn plaintext_job(kind: JobKind, spec: Value) -> JobEnvelope {
    crate::job::test_job(kind, spec)
}

fn deployment(name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "vm_name": name, "gb_ram": 4, "cpu_cores": 2, "network": "prod",
        "image_name": "Windows Server 2022",
        "guest_la_uid": "admin", "guest_la_pw": LA_PW,
        "guest_v4_ip_addr": "10.0.0.5", "guest_v4_cidr_prefix": 24,
        "guest_v4_default_gw": "10.0.0.1", "guest_v4_dns1": "10.0.0.2",
        "guest_domain_join_target": "corp.example.com", "guest_domain_join_uid": "joiner",
        "guest_domain_join_pw": DJ_PW, "guest_domain_join_ou": "OU=Servers,DC=corp,DC=example,DC=com",
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    spec
}

fn fast() -> ExecOptions {
    ExecOptions {
        guest: GuestTimeouts {
            ready: Duration::from_millis(600),
            apply: Duration::from_millis(600),
            poll: Duration::from_millis(100),
        },
        identity: Some(std::sync::Arc::new(identity().clone())),
        ..Default::default()
    }
}

async fn run(e: &Env, j: &JobEnvelope, attempt: u32) -> (JobOutcome, Vec<Event>) {
    run_with(e, j, attempt, fast()).await
}

async fn run_with(
    e: &Env,
    j: &JobEnvelope,
    attempt: u32,
    opts: ExecOptions,
) -> (JobOutcome, Vec<Event>) {
    let mut reporter = JobReporter::new(e.broker.clone(), j.job_id);
    let term = CancellationToken::new();
    let ctx = job_ctx(&mut reporter, &e.agent, j, &term, opts);
    let outcome = run_job_with(ctx, "w1", attempt, attempt > 1)
        .await
        .expect("events published");
    let mut stream = e
        .broker
        .replay_events(StreamOffset::First)
        .await
        .expect("stream");
    let mut events = Vec::new();
    let mut terminal = 0;
    while terminal < attempt {
        let (_, ev) = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event in time")
            .expect("stream open");
        if ev.job_id == Some(j.job_id) {
            terminal += u32::from(ev.is_terminal());
            events.push(ev);
        }
    }
    (outcome, events)
}

fn failed_step(events: &[Event]) -> Option<(Option<String>, String, String)> {
    events.iter().find_map(|e| match &e.body {
        EventBody::JobFailed {
            step,
            code,
            message,
        } => Some((step.clone(), code.clone(), message.clone())),
        _ => None,
    })
}

/// Every `job.log` line of `events`, one per line.
fn log_text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::JobLog { lines } => Some(lines),
            _ => None,
        })
        .flatten()
        .map(|l| format!("{}\n", l.text))
        .collect()
}

fn assert_no_step(events: &[Event]) {
    assert!(
        !events
            .iter()
            .any(|ev| matches!(ev.body, EventBody::StepStarted { .. })),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_deployment_to_an_unknown_network_fails_the_preflight_and_creates_nothing() {
    let e = env().await;
    let j = job(
        JobKind::DeploymentManaged,
        deployment(
            "nonet-01",
            json!({"network": "nonet", "image_name": "Nope 1"}),
        ),
    );
    let (outcome, events) = run(&e, &j, 1).await;
    assert_eq!(outcome, JobOutcome::Failed);
    let (step, code, message) = failed_step(&events).expect("failed");
    assert_eq!((step, code.as_str()), (None, "preflight"));
    assert!(
        message.contains("network (unknown_choice): host hv01 has no network nonet")
            && message.contains("image_name (unknown_choice)"),
        "{message}"
    );
    assert_no_step(&events);
    assert_no_secrets(&events);
    assert!(e.sim.host_state("hv01").expect("host").vms.is_empty());
}

#[tokio::test]
async fn an_operation_on_a_vm_gone_from_the_host_fails_the_preflight() {
    let e = env().await;
    for (kind, spec, field) in [
        (JobKind::VmDelete, json!({"vm_name": "gone-01"}), "vm_name"),
        (
            JobKind::DiskCreate,
            json!({"vm_name": "gone-01", "disk_size_gb": 10}),
            "vm_name",
        ),
        (
            JobKind::VmPower,
            json!({"vm_id": "0000", "action": "start"}),
            "vm_id",
        ),
    ] {
        let j = job(kind, spec);
        let (outcome, events) = run(&e, &j, 1).await;
        assert_eq!(outcome, JobOutcome::Failed, "{kind}");
        let (step, code, message) = failed_step(&events).expect("failed");
        assert_eq!((step, code.as_str()), (None, "preflight"), "{kind}");
        assert!(
            message.contains(&format!("{field} (not_found)")),
            "{message}"
        );
        assert_no_step(&events);
    }
    // A redelivered delete is not checked again: its first attempt may have removed the VM,
    // and the host's journal answers its operation.
    let j = job(JobKind::VmDelete, json!({"vm_name": "gone-01"}));
    run(&e, &j, 1).await;
    let (_, events) = run(&e, &j, 2).await;
    let again: Vec<Event> = events
        .into_iter()
        .skip_while(|ev| !matches!(ev.body, EventBody::JobResumed { .. }))
        .collect();
    let (step, code, _) = failed_step(&again).expect("failed at its step");
    assert_eq!(
        (step.as_deref(), code.as_str()),
        (Some("vm.delete"), "not_found")
    );
}

fn assert_no_secrets(events: &[Event]) {
    for ev in events {
        let text = String::from_utf8(ev.to_vec()).expect("utf-8");
        assert!(
            !text.contains(LA_PW) && !text.contains(DJ_PW),
            "secret in {text}"
        );
    }
}

#[tokio::test]
async fn managed_deployment_builds_and_initializes_the_vm() {
    let e = env().await;
    let j = job(JobKind::DeploymentManaged, deployment("web-01", json!({})));
    let (outcome, events) = run(&e, &j, 1).await;
    assert_eq!(outcome, JobOutcome::Succeeded, "{:?}", failed_step(&events));
    let steps: Vec<(&str, bool)> = events
        .iter()
        .filter_map(|ev| match &ev.body {
            EventBody::StepSucceeded { step, resumed, .. } => Some((step.as_str(), *resumed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("vm.create", false),
            ("disk.create", false),
            ("nic.create", false),
            ("guest.initialize", false)
        ]
    );
    assert_no_secrets(&events);
    // The name probe (a vm.get that finds nothing) is an answer, not an error in the log.
    let log = log_text(&events);
    assert!(log.contains("Not found: "), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    let host = e.sim.host_state("hv01").expect("host");
    let vm = &host.vms[0];
    assert!(vm.notes.contains(&j.job_id.to_string()));
    assert_eq!(vm.disks.len(), 1);
    assert!(vm.disks[0].path.contains(&format!("aetherv-{}", j.job_id)));
    assert_eq!(vm.disks[0].size_gb, 127);
    assert_eq!(vm.nics[0].network.as_deref(), Some("prod"));
    assert_eq!(vm.dvd_iso, None);
    let applied = e
        .sim
        .applied_config_unredacted("hv01", "web-01")
        .expect("applied");
    assert_eq!(
        applied,
        json!({
            "guest_host_name": "web-01", "guest_la_uid": "admin", "guest_la_pw": LA_PW,
            "guest_v4_ip_addr": "10.0.0.5", "guest_v4_cidr_prefix": "24",
            "guest_v4_default_gw": "10.0.0.1", "guest_v4_dns1": "10.0.0.2",
            "guest_domain_join_target": "corp.example.com", "guest_domain_join_uid": "joiner",
            "guest_domain_join_pw": DJ_PW,
            "guest_domain_join_ou": "OU=Servers,DC=corp,DC=example,DC=com",
        })
    );

    // A redelivery of the same job resumes: every step finds its own resource.
    let (again, events) = run(&e, &j, 2).await;
    assert_eq!(again, JobOutcome::Succeeded, "{:?}", failed_step(&events));
    let resumed = events
        .iter()
        .filter(|ev| matches!(ev.body, EventBody::StepSucceeded { resumed: true, .. }))
        .count();
    assert_eq!(resumed, 4, "all 4 steps resumed on the second attempt");
    let host = e.sim.host_state("hv01").expect("host");
    assert_eq!(host.vms.len(), 1);
    assert_eq!(host.vms[0].disks.len(), 1);
    assert_eq!(host.vms[0].nics.len(), 1);
}

#[tokio::test]
async fn a_foreign_vm_of_the_same_name_fails_the_preflight() {
    let e = env().await;
    let mut req = AgentRequest::new(
        AgentOperation::VmCreate,
        json!({"vm_name": "taken"})
            .as_object()
            .cloned()
            .expect("obj"),
        "other",
    );
    req.idempotency_key = None;
    e.sim.run_agent("hv01", req).await.expect("host");
    let j = job(
        JobKind::DeploymentManaged,
        deployment("taken", json!({"rollback": true})),
    );
    let (outcome, events) = run(&e, &j, 1).await;
    assert_eq!(outcome, JobOutcome::Failed);
    // The preflight sees the foreign VM in the fresh inventory: no step runs.
    let (step, code, message) = failed_step(&events).expect("failed");
    assert_eq!((step.as_deref(), code.as_str()), (None, "preflight"));
    assert!(
        message.contains("vm_name (name_in_use): a VM named taken already exists on hv01"),
        "{message}"
    );
    assert!(!events
        .iter()
        .any(|ev| matches!(ev.body, EventBody::StepStarted { .. })));
    assert_eq!(e.sim.host_state("hv01").expect("host").vms.len(), 1);
}

#[tokio::test]
async fn a_fault_fails_its_step_and_rollback_removes_everything() {
    let e = env().await;
    e.sim.inject_fault("hv01", Fault::once("nic.create"));
    let j = job(
        JobKind::DeploymentManaged,
        deployment("rb-01", json!({"rollback": true})),
    );
    let (outcome, events) = run(&e, &j, 1).await;
    assert_eq!(outcome, JobOutcome::Failed);
    let (step, code, message) = failed_step(&events).expect("failed");
    assert_eq!(
        (step.as_deref(), code.as_str()),
        (Some("nic.create"), "injected")
    );
    assert!(message.contains("rolled back: disk"), "{message}");
    assert!(e.sim.host_state("hv01").expect("host").vms.is_empty());

    // Without rollback the VM and disk stay.
    e.sim.inject_fault("hv01", Fault::once("nic.create"));
    let j = job(JobKind::DeploymentManaged, deployment("rb-02", json!({})));
    let (outcome, _) = run(&e, &j, 1).await;
    assert_eq!(outcome, JobOutcome::Failed);
    let host = e.sim.host_state("hv01").expect("host");
    assert_eq!(host.vms.len(), 1);
    assert_eq!(host.vms[0].disks.len(), 1);
}

#[tokio::test]
async fn guest_failures_fail_guest_initialization() {
    let e = env().await;
    for (fault, code, name) in [
        (faults::NO_ANSWER, "guest_timeout", "g-silent"),
        (faults::APPLY_FAILED, "guest_provisioning_failed", "g-fail"),
        (faults::BAD_CHECKSUM, "guest_provisioning_failed", "g-sum"),
    ] {
        e.sim.inject_fault("hv01", Fault::once(fault));
        let j = job(
            JobKind::DeploymentManaged,
            deployment(name, json!({"rollback": true})),
        );
        let (outcome, events) = run(&e, &j, 1).await;
        assert_eq!(outcome, JobOutcome::Failed);
        let (step, got, message) = failed_step(&events).expect("failed");
        assert_eq!(
            (step.as_deref(), got.as_str()),
            (Some("guest.initialize"), code)
        );
        assert!(message.contains("rolled back"), "{message}");
        assert_no_secrets(&events);
    }
    assert!(e.sim.host_state("hv01").expect("host").vms.is_empty());
}

#[tokio::test]
async fn invalid_specs_fail_before_any_step() {
    let e = env().await;
    let j = job(
        JobKind::DeploymentManaged,
        deployment("bad", json!({"cpu_cores": 0, "unknown": 1})),
    );
    let (outcome, events) = run(&e, &j, 1).await;
    assert_eq!(outcome, JobOutcome::Failed);
    let (step, code, message) = failed_step(&events).expect("failed");
    assert_eq!((step, code.as_str()), (None, "invalid_request"));
    assert!(message.contains("cpu_cores (out_of_range)") && message.contains("unknown"));
    assert!(!events
        .iter()
        .any(|ev| matches!(ev.body, EventBody::StepStarted { .. })));
}

#[tokio::test]
async fn vm_initialize_runs_the_guest_steps_alone() {
    let e = env().await;
    let create = job(
        JobKind::VmCreate,
        json!({"vm_name": "lnx-01", "os_family": "linux"}),
    );
    let (outcome, _) = run(&e, &create, 1).await;
    assert_eq!(outcome, JobOutcome::Succeeded);
    // Items of an earlier exchange are removed before this one starts.
    let stale = AgentRequest::new(
        AgentOperation::KvpWrite,
        json!({"vm_name": "lnx-01", "items": {"hlvmm.data.guest_v4_ip_addr": "stale"}})
            .as_object()
            .cloned()
            .expect("obj"),
        "earlier",
    );
    e.sim.run_agent("hv01", stale).await.expect("host");
    let init = job(
        JobKind::VmInitialize,
        json!({"vm_name": "lnx-01", "os_family": "linux", "guest_la_uid": "root2",
               "guest_la_pw": LA_PW, "cnf_ansible_ssh_user": "ansible",
               "cnf_ansible_ssh_key": format!("ssh-ed25519 {}", "A".repeat(240))}),
    );
    let (outcome, events) = run(&e, &init, 1).await;
    assert_eq!(outcome, JobOutcome::Succeeded, "{:?}", failed_step(&events));
    assert_no_secrets(&events);
    let applied = e
        .sim
        .applied_config_unredacted("hv01", "lnx-01")
        .expect("applied");
    assert_eq!(applied["guest_host_name"], "lnx-01");
    assert_eq!(applied["ansible_ssh_user"], "ansible");
    assert_eq!(applied["guest_la_pw"], LA_PW);
    assert!(applied.get("guest_v4_ip_addr").is_none());
    let key_format = events.iter().find_map(|ev| match &ev.body {
        EventBody::StepSucceeded { data, .. } => data.get("guest_key_format").cloned(),
        _ => None,
    });
    assert_eq!(key_format, Some(json!("pkcs1")));
}

#[tokio::test]
async fn a_failed_job_sent_again_resumes_with_its_own_resources() {
    let e = env().await;
    e.sim.inject_fault("hv01", Fault::once("nic.create"));
    let j = job(
        JobKind::DeploymentManaged,
        deployment("again-01", json!({})),
    );
    let (outcome, _) = run(&e, &j, 1).await;
    assert_eq!(outcome, JobOutcome::Failed);
    let (outcome, events) = run(&e, &j, 2).await;
    assert_eq!(outcome, JobOutcome::Succeeded, "{:?}", failed_step(&events));
    let second: Vec<(&str, bool)> = events
        .iter()
        .skip_while(|ev| !matches!(ev.body, EventBody::JobResumed { .. }))
        .filter_map(|ev| match &ev.body {
            EventBody::StepSucceeded { step, resumed, .. } => Some((step.as_str(), *resumed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        second,
        [
            ("vm.create", true),
            ("disk.create", true),
            ("nic.create", false),
            ("guest.initialize", false)
        ]
    );
    let host = e.sim.host_state("hv01").expect("host");
    assert_eq!(host.vms.len(), 1);
    assert_eq!(host.vms[0].disks.len(), 1);
    assert_eq!(host.vms[0].nics.len(), 1);
}

#[tokio::test]
async fn clustering_happens_after_guest_initialization() {
    let e = env().await;
    let j = job(
        JobKind::DeploymentManaged,
        deployment("clu-01", json!({"vm_clustered": true})),
    );
    let (outcome, events) = run(&e, &j, 1).await;
    assert_eq!(outcome, JobOutcome::Succeeded, "{:?}", failed_step(&events));
    let order: Vec<&str> = events
        .iter()
        .filter_map(|ev| match &ev.body {
            EventBody::StepStarted { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(order.last(), Some(&"cluster.add"));
    let records = e.sim.records("hv01");
    let pos = |op: &str| records.iter().rposition(|r| r.operation == op);
    assert!(pos("cluster.add") > pos("kvp.write"));
    let host = e.sim.host_state("hv01").expect("host");
    assert!(host.vms[0].clustered);
}

fn failed_code(events: &[Event]) -> Option<String> {
    events.iter().find_map(|ev| match &ev.body {
        EventBody::JobFailed { code, step, .. } if step.is_none() => Some(code.clone()),
        _ => None,
    })
}

#[tokio::test]
async fn secrets_must_be_sealed_and_openable_by_this_worker() {
    let e = env().await;
    // Plaintext secrets in the spec: refused before any operation, values never echoed.
    let plain = plaintext_job(
        JobKind::DeploymentManaged,
        deployment("plain-01", json!({})),
    );
    let (outcome, events) = run(&e, &plain, 1).await;
    assert!(matches!(outcome, JobOutcome::Failed), "{outcome:?}");
    assert_eq!(failed_code(&events).as_deref(), Some("plaintext_secret"));
    assert_no_secrets(&events);
    let text = serde_json::to_string(&events).expect("json");
    assert!(text.contains("guest_domain_join_pw, guest_la_pw"), "{text}");
    assert!(e.sim.host_state("hv01").expect("host").vms.is_empty());

    // Sealed to someone else: undecryptable.
    let mut other = plaintext_job(
        JobKind::DeploymentManaged,
        deployment("other-01", json!({})),
    );
    other.secrets = secrets::seal_spec(
        &mut other.spec,
        ["guest_la_pw", "guest_domain_join_pw"],
        &[secrets::generate_identity().to_public()],
    )
    .expect("sealed");
    let (_, events) = run(&e, &other, 1).await;
    assert_eq!(
        failed_code(&events).as_deref(),
        Some("secrets_undecryptable")
    );

    // A worker without an identity cannot open a correctly sealed job either.
    let sealed = job(JobKind::DeploymentManaged, deployment("noid-01", json!({})));
    let no_identity = ExecOptions {
        identity: None,
        ..fast()
    };
    let (_, events) = run_with(&e, &sealed, 1, no_identity).await;
    assert_eq!(
        failed_code(&events).as_deref(),
        Some("secrets_undecryptable")
    );
    assert!(e.sim.host_state("hv01").expect("host").vms.is_empty());

    // A non-secret field smuggled into the sealed part is refused.
    let mut smuggled = plaintext_job(JobKind::DeploymentManaged, deployment("smug-01", json!({})));
    let mut values = secrets::split_secrets(
        &mut smuggled.spec,
        ["guest_la_pw", "guest_domain_join_pw", "gb_ram"],
    );
    values.insert("gb_ram".into(), json!(512));
    smuggled.secrets = Some(secrets::seal(&values, &[identity().to_public()]).expect("sealed"));
    let (_, events) = run(&e, &smuggled, 1).await;
    assert_eq!(failed_code(&events).as_deref(), Some("invalid_request"));
}
