//! Managed deployments end to end: a job through RabbitMQ to an `aetherv worker` process, which
//! builds the VM on an `aetherv sim` host over WinRM and initializes its guest over KVP with
//! real crypto. The sim's guest shows secrets only as `sha256:<hex>` at `/sim/hosts/<host>`, so
//! the applied configuration is compared field by field and secrets by digest.

use crate::harness::*;
use aetherv_broker::Broker;
use aetherv_core::{Event, EventBody, JobEnvelope, JobId, JobKind, Platform, Requester, Target};
use aetherv_sim::guest::secret_digest;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

const LA_PW: &str = "E2e-Local-Adm1n!";
const DJ_PW: &str = "E2e-Domain-J0in!";

fn managed(name: &str, extra: Value) -> JobEnvelope {
    let mut spec = json!({
        "vm_name": name, "gb_ram": 4, "cpu_cores": 2, "network": "prod",
        "image_name": "Windows Server 2022",
        "guest_la_uid": "admin", "guest_la_pw": LA_PW,
        "guest_v4_ip_addr": "10.1.2.3", "guest_v4_cidr_prefix": 24,
        "guest_v4_default_gw": "10.1.2.1", "guest_v4_dns1": "10.1.2.2",
        "guest_domain_join_target": "corp.example.com", "guest_domain_join_uid": "joiner",
        "guest_domain_join_pw": DJ_PW, "guest_domain_join_ou": "OU=Servers,DC=corp,DC=example,DC=com",
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    let mut job = job_envelope(
        JobKind::DeploymentManaged,
        Target::Host("hv01".into()),
        spec.as_object().cloned().unwrap_or_default(),
        "e2e",
    );
    seal_for_workers(&mut job);
    job
}

async fn run_jobs(broker: &Broker, jobs: &[&JobEnvelope]) -> Vec<Vec<Event>> {
    let ids: HashSet<JobId> = jobs.iter().map(|j| j.job_id).collect();
    // The worker may still be starting: declare the host queue so the job waits in it.
    broker.declare_host("hv01").await.expect("declare host");
    for j in jobs {
        broker.publish_job(j).await.expect("publish");
    }
    let mut by_job = collect_until_done(broker, &ids, Duration::from_secs(60)).await;
    jobs.iter()
        .map(|j| by_job.remove(&j.job_id).unwrap_or_default())
        .collect()
}

fn failure(events: &[Event]) -> Option<(Option<String>, String)> {
    events.iter().find_map(|e| match &e.body {
        EventBody::JobFailed { step, code, .. } => Some((step.clone(), code.clone())),
        _ => None,
    })
}

/// The steps of `events` that started (`started`) or else succeeded, in order.
fn step_names(events: &[Event], started: bool) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::StepStarted { step, .. } if started => Some(step.as_str()),
            EventBody::StepSucceeded { step, .. } if !started => Some(step.as_str()),
            _ => None,
        })
        .collect()
}

fn host_view(sim: &SimProc) -> Value {
    let body = http_get(&sim.addr, "/sim/hosts/hv01").expect("host view");
    serde_json::from_str(&body).expect("json")
}

/// The VMs of a host view named `name`.
fn vms_named<'v>(view: &'v Value, name: &str) -> Vec<&'v Value> {
    view["vms"]
        .as_array()
        .map(|v| v.iter().filter(|vm| vm["vm_name"] == name).collect())
        .unwrap_or_default()
}

/// The workers that started a job, in order (one per attempt).
fn started_by(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|ev| match &ev.body {
            EventBody::JobStarted { worker, .. } => Some(worker.clone()),
            _ => None,
        })
        .collect()
}

/// One job's events from the start of the stream until it ended.
async fn events_of(broker: &Broker, job: JobId) -> Vec<Event> {
    collect_until_done(
        broker,
        &[job].into_iter().collect(),
        Duration::from_secs(60),
    )
    .await
    .remove(&job)
    .unwrap_or_default()
}

fn assert_no_secret_anywhere(events: &[Vec<Event>], view: &Value) {
    for ev in events.iter().flatten() {
        let text = String::from_utf8(ev.to_vec()).expect("utf-8");
        assert!(
            !text.contains(LA_PW) && !text.contains(DJ_PW),
            "secret in event {text}"
        );
    }
    let view = view.to_string();
    assert!(!view.contains(LA_PW) && !view.contains(DJ_PW));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_deployment_applies_the_requested_guest_configuration() {
    let (url, prefix, sim, broker) = e2e(1, 0).await;
    let worker = start_worker(&sim.worker_config, &prefix, &url, "w-deploy");
    let job = managed("web-e2e", json!({}));
    let events = run_jobs(&broker, &[&job]).await;
    assert!(succeeded(&events[0]), "{:?}", failure(&events[0]));
    let steps = step_names(&events[0], false);
    assert_eq!(
        steps,
        ["vm.create", "disk.create", "nic.create", "guest.initialize"]
    );
    let view = host_view(&sim);
    let vm = &view["vms"][0];
    assert_eq!(vm["vm_name"], "web-e2e");
    assert_eq!(vm["state"], "Running");
    assert_eq!(vm["nics"][0]["network"], "prod");
    assert_eq!(
        vm["guest_kvp"]["hlvmm.meta.guest_provisioning_system_state"],
        "provisioningapplied"
    );
    assert_eq!(
        vm["applied_config"],
        json!({
            "guest_host_name": "web-e2e",
            "guest_la_uid": "admin",
            "guest_la_pw": secret_digest(LA_PW),
            "guest_v4_ip_addr": "10.1.2.3",
            "guest_v4_cidr_prefix": "24",
            "guest_v4_default_gw": "10.1.2.1",
            "guest_v4_dns1": "10.1.2.2",
            "guest_domain_join_target": "corp.example.com",
            "guest_domain_join_uid": "joiner",
            "guest_domain_join_pw": secret_digest(DJ_PW),
            "guest_domain_join_ou": "OU=Servers,DC=corp,DC=example,DC=com",
        })
    );
    // The host only ever saw ciphertext.
    let host_kvp = vm["host_kvp"].to_string();
    assert!(!host_kvp.contains("corp.example.com") && !host_kvp.contains("10.1.2.3"));
    assert_no_secret_anywhere(&events, &view);
    finish(&broker, worker, &url, &prefix, &["hv01".to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_each_step_fails_naming_it_and_rollback_leaves_nothing() {
    let (url, prefix, sim, broker) = e2e(1, 0).await;
    let worker = start_worker(&sim.worker_config, &prefix, &url, "w-faults");
    let mut all = Vec::new();
    for (fault, step, code) in [
        ("vm.create", "vm.create", "injected"),
        ("disk.create", "disk.create", "injected"),
        ("nic.create", "nic.create", "injected"),
        (
            "guest.apply_failed",
            "guest.initialize",
            "guest_provisioning_failed",
        ),
        ("cluster.add", "cluster.add", "injected"),
    ] {
        for rollback in [false, true] {
            let status = http_post_json(
                &sim.addr,
                "/sim/hosts/hv01/faults",
                &json!({"operation": fault}).to_string(),
            )
            .expect("inject fault");
            assert_eq!(status, 204);
            let name = format!("f-{}", &job_suffix());
            let job = managed(&name, json!({"rollback": rollback, "vm_clustered": true}));
            let events = run_jobs(&broker, &[&job]).await;
            assert_eq!(
                failure(&events[0]),
                Some((Some(step.to_string()), code.to_string())),
                "fault {fault}: {:?}",
                events[0].iter().map(Event::type_name).collect::<Vec<_>>()
            );
            let view = host_view(&sim);
            let left = vms_named(&view, &name);
            if rollback {
                assert!(left.is_empty(), "rollback after {fault} left {left:?}");
            } else if step != "vm.create" {
                // Without rollback the half-built VM stays for inspection, tagged with the job.
                assert_eq!(left.len(), 1, "after {fault}: {view}");
                let notes = left[0]["notes"].as_str().unwrap_or_default();
                assert!(notes.contains(&job.job_id.to_string()), "{notes}");
            }
            all.extend(events);
        }
    }
    assert_no_secret_anywhere(&all, &host_view(&sim));
    finish(&broker, worker, &url, &prefix, &["hv01".to_string()]).await;
}

/// Follows one job's events live until `until` holds for one of them; returns them all.
async fn follow_until(
    stream: &mut aetherv_broker::EventStream,
    job: JobId,
    seen: &mut Vec<Event>,
    until: impl Fn(&Event) -> bool,
) {
    let wait = async {
        while let Some((_, ev)) = stream.next().await {
            if ev.job_id != Some(job) {
                continue;
            }
            let hit = until(&ev);
            seen.push(ev);
            if hit {
                return;
            }
        }
        panic!("the event stream ended");
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out; saw {:?}",
                seen.iter().map(Event::type_name).collect::<Vec<_>>()
            )
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_each_step_is_resumed_by_the_other_with_one_vm_and_no_secret_leaks()
{
    let (url, prefix, sim, broker) = e2e(1, 400).await;
    broker.declare_host("hv01").await.expect("declare host");
    let logs = tempfile::tempdir().expect("log dir");
    let mut workers: std::collections::HashMap<String, Proc> = Default::default();
    let mut spawned = 0;
    let mut spawn = |workers: &mut std::collections::HashMap<String, Proc>| {
        spawned += 1;
        let id = format!("wk-{spawned}");
        let log = logs.path().join(format!("{id}.log"));
        workers.insert(
            id.clone(),
            start_worker_logged(&sim.worker_config, &prefix, &url, &id, &log),
        );
    };
    spawn(&mut workers);
    spawn(&mut workers);
    let mut stream = broker
        .replay_events(aetherv_broker::StreamOffset::First)
        .await
        .expect("stream");
    for step in [
        "vm.create",
        "disk.create",
        "nic.create",
        "guest.initialize",
        "cluster.add",
    ] {
        let name = format!("k-{}", &job_suffix());
        let job = managed(&name, json!({"vm_clustered": true}));
        broker.publish_job(&job).await.expect("publish");
        let mut seen = Vec::new();
        follow_until(
            &mut stream,
            job.job_id,
            &mut seen,
            |ev| matches!(&ev.body, EventBody::StepStarted { step: s, .. } if s == step),
        )
        .await;
        let victim = started_by(&seen)
            .pop()
            .expect("job.started names its worker");
        // Mid-operation: each operation takes 400 ms on the sim.
        tokio::time::sleep(Duration::from_millis(150)).await;
        workers
            .get_mut(&victim)
            .unwrap_or_else(|| panic!("unknown worker {victim}"))
            .kill9();
        workers.remove(&victim);
        spawn(&mut workers);
        follow_until(&mut stream, job.job_id, &mut seen, Event::is_terminal).await;
        assert!(
            succeeded(&seen),
            "killed during {step}: {:?}",
            failure(&seen)
        );
        let workers_run = started_by(&seen);
        assert!(
            workers_run.len() >= 2 && workers_run.last() != Some(&victim),
            "killed during {step}: not resumed by another worker: {workers_run:?}"
        );
        assert!(seen.iter().any(|e| e.type_name() == "job.resumed"));
        let view = host_view(&sim);
        let vms = vms_named(&view, &name);
        assert_eq!(vms.len(), 1, "killed during {step}: {view}");
        assert_eq!(vms[0]["disks"].as_array().map(Vec::len), Some(1), "{view}");
        assert_eq!(vms[0]["nics"].as_array().map(Vec::len), Some(1), "{view}");
        assert_eq!(
            vms[0]["guest_kvp"]["hlvmm.meta.guest_provisioning_system_state"],
            "provisioningapplied"
        );
        assert_eq!(vms[0]["clustered"], true, "killed during {step}: {view}");
    }
    let stats = sim.stats();
    assert_eq!(stats["hosts"]["hv01"]["duplicate_executions"], 0, "{stats}");

    // The secret scan: a job left on a queue no worker serves (a broker message as stored),
    // a job with plaintext secrets (refused without echo), the dead letters, every event of
    // the run, every worker's debug log, and the host's operation log and view.
    let mut parked = managed("parked", json!({}));
    parked.target = Target::Host("hv09".into());
    broker.declare_host("hv09").await.expect("declare");
    broker.publish_job(&parked).await.expect("publish parked");
    let stored = get_raw_message(&url, &format!("{prefix}.host.hv09")).await;
    assert!(
        stored.contains("BEGIN AGE ENCRYPTED FILE"),
        "the parked job has no sealed secrets"
    );
    let mut plain = managed("plain", json!({}));
    plain.secrets = None;
    plain.spec.insert("guest_la_pw".into(), json!(LA_PW));
    let events = run_jobs(&broker, &[&plain]).await;
    assert_eq!(
        failure(&events[0]),
        Some((None, "plaintext_secret".to_string()))
    );
    broker
        .publish_raw(
            "hv01",
            format!("{{\"v\": 1, \"oops\": \"{}\"", "x").into_bytes(),
        )
        .await
        .expect("publish malformed");
    let dead = broker
        .dead_letters(100, Duration::from_secs(5))
        .await
        .expect("dead letters");
    assert!(
        !dead.is_empty(),
        "the malformed message was not dead-lettered"
    );
    let mut haystacks: Vec<(String, String)> = vec![("parked job message".into(), stored)];
    for d in &dead {
        haystacks.push((
            format!("dead letter {:?}", d.reason),
            String::from_utf8_lossy(&d.body).into_owned(),
        ));
    }
    let mut all = broker
        .replay_events(aetherv_broker::StreamOffset::First)
        .await
        .expect("stream");
    let mut n_events = 0;
    while let Ok(Some((_, ev))) = tokio::time::timeout(Duration::from_millis(500), all.next()).await
    {
        n_events += 1;
        haystacks.push((
            ev.type_name().into(),
            String::from_utf8_lossy(&ev.to_vec()).into_owned(),
        ));
    }
    assert!(n_events > 50, "only {n_events} events");
    drop(workers);
    let mut in_jobs = 0;
    for entry in std::fs::read_dir(logs.path()).expect("logs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("log");
        assert!(
            text.contains("\"DEBUG\""),
            "{} holds no debug log",
            path.display()
        );
        // JSON logs: every line parses; every line logged within a job names it, and its
        // steps' lines their step.
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", path.display()));
            if v["span"]["name"] == "job" {
                in_jobs += 1;
                assert!(v["span"]["job_id"].is_string(), "{line}");
                assert!(v["span"]["host"] == "hv01", "{line}");
            }
            if v["message"] == "step started" {
                assert!(v["span"]["step"].is_string(), "{line}");
            }
        }

        haystacks.push((path.display().to_string(), text));
    }
    assert!(in_jobs > 0, "no log line of a job");
    let records = http_get(&sim.addr, "/sim/hosts/hv01/records").expect("records");
    assert!(
        records.contains("kvp.write"),
        "no kvp.write in the host's operation log"
    );
    haystacks.push(("sim operation log".into(), records));
    haystacks.push(("sim host view".into(), host_view(&sim).to_string()));
    for (what, text) in &haystacks {
        for secret in [LA_PW, DJ_PW] {
            assert!(!text.contains(secret), "{secret} in plain text in {what}");
        }
    }
    broker.close().await;
    cleanup(&url, &prefix, &["hv01".to_string(), "hv09".to_string()]).await;
}

/// Receives one message from `queue` (left unacked) and returns its body as text.
async fn get_raw_message(url: &str, queue: &str) -> String {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    // basic.get is refused on single-active-consumer quorum queues: consume one message.
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "secret-scan".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let delivery = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut consumer),
    )
    .await
    .expect("a message in time")
    .expect("a message")
    .expect("a delivery");
    let body = String::from_utf8_lossy(&delivery.data).into_owned();
    let _ = conn.close(200, "done".into()).await;
    body
}

fn job_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}

/// `cancel`: a queued job is dropped when its slot reaches it (no `job.started`), a running one
/// stops at its next step boundary and, with `rollback: true`, removes what it built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_jobs_are_dropped_when_queued_and_stop_at_a_step_boundary_when_running() {
    let (url, prefix, sim, broker) = e2e(1, 700).await;
    broker.declare_host("hv01").await.expect("declare");
    let worker = start_worker(&sim.worker_config, &prefix, &url, "w-cancel");
    let running = managed("cx-run", json!({"rollback": true}));
    let queued = managed("cx-queued", json!({}));
    let mut stream = broker
        .replay_events(aetherv_broker::StreamOffset::First)
        .await
        .expect("stream");
    broker.publish_job(&running).await.expect("publish");
    broker.publish_job(&queued).await.expect("publish");
    let by = Requester {
        platform: Platform::Console,
        user_id: "alice".into(),
    };
    let ask = |job: JobId| Event::for_job(job, 0, EventBody::JobCancelRequested { by: by.clone() });
    broker
        .publish_event(&ask(queued.job_id))
        .await
        .expect("cancel queued");
    let mut seen = Vec::new();
    follow_until(
        &mut stream,
        running.job_id,
        &mut seen,
        |ev| matches!(&ev.body, EventBody::StepStarted { step, .. } if step == "disk.create"),
    )
    .await;
    broker
        .publish_event(&ask(running.job_id))
        .await
        .expect("cancel running");
    follow_until(&mut stream, running.job_id, &mut seen, Event::is_terminal).await;
    let last = seen.last().expect("events");
    assert!(
        matches!(&last.body, EventBody::JobCancelled { by: Some(b) } if b.user_id == "alice"),
        "{:?}",
        seen.iter().map(Event::type_name).collect::<Vec<_>>()
    );
    let started = step_names(&seen, true);
    assert_eq!(
        started,
        ["vm.create", "disk.create"],
        "it ran past the boundary"
    );
    let queued_events = events_of(&broker, queued.job_id).await;
    let names: Vec<&str> = queued_events.iter().map(Event::type_name).collect();
    assert!(!names.contains(&"job.started"), "{names:?}");
    assert_eq!(names.last(), Some(&"job.cancelled"), "{names:?}");
    // Rollback removed what the running job built; the queued one never built anything.
    assert_eq!(host_view(&sim)["vms"], json!([]), "{}", host_view(&sim));
    // The slot is free again.
    let after = managed("cx-after", json!({}));
    let events = run_jobs(&broker, &[&after]).await;
    assert!(succeeded(&events[0]), "{:?}", failure(&events[0]));
    finish(&broker, worker, &url, &prefix, &["hv01".to_string()]).await;
}

/// The check from outside the repository: `aetherv sim` writes a worker config with an age
/// identity, `aetherv worker` runs it, and `aetherv submit --direct --follow` (no bot) seals the
/// passwords with the recipient the sim wrote. The sim's view then matches the request: guest configuration,
/// disk size, the NIC on the network's switch and VLAN, and cluster registration after the
/// guest applied its configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_deployment_submitted_from_outside_matches_the_request() {
    let url = amqp_url();
    let prefix = prefix();
    let sim = start_sim(1, 0);
    let recipient_file = format!("{}.age.pub", sim.worker_config.display());
    let recipient = std::fs::read_to_string(&recipient_file).expect("the sim wrote a recipient");
    // A worker with only its config: the identity comes from `age_identity_file`.
    let worker = start_worker_own_identity(&sim.worker_config, &prefix, &url, "w-outside");
    let dir = tempfile::tempdir().expect("tempdir");
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "kind: deployment.managed\ntarget: hv01\nspec:\n  vm_name: out-01\n  gb_ram: 6\n  \
             cpu_cores: 3\n  image_name: Ubuntu 24.04\n  disk_size_gb: 60\n  network: dev\n  \
             vm_clustered: true\n  guest_la_uid: root\n  guest_la_pw: \"{LA_PW}\"\n  \
             guest_v4_ip_addr: 10.9.0.5\n  guest_v4_cidr_prefix: 16\n  \
             guest_v4_default_gw: 10.9.0.1\n  guest_v4_dns1: 10.9.0.2\n"
        ),
    )
    .expect("write job");
    let submit = |with_recipients: bool| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["submit", "--direct", "--follow", "--timeout", "120"])
            .arg(&job)
            .env("AETHERV_AMQP_URL", &url)
            .env("AETHERV_PREFIX", &prefix)
            .env_remove("AETHERV_AGE_RECIPIENTS");
        if with_recipients {
            cmd.env("AETHERV_AGE_RECIPIENTS", recipient.trim());
        }
        run_cmd(&mut cmd)
    };
    // Without recipients the password is refused before anything is published.
    let (st, _, err) = submit(false);
    assert!(!st.success());
    assert!(
        err.contains("AETHERV_AGE_RECIPIENTS") && !err.contains(LA_PW),
        "{err}"
    );
    let mut out = String::new();
    for _ in 0..100 {
        let (st, o, err) = submit(true);
        if err.contains("no worker queue") {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert!(st.success(), "submit failed: {o}\n{err}");
        out = o;
        break;
    }
    assert!(out.contains("job succeeded"), "{out}");
    assert!(!out.contains(LA_PW));
    let steps: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("step.succeeded "))
        .filter_map(|l| l.split("\"step\":\"").nth(1))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(
        steps,
        [
            "vm.create",
            "disk.create",
            "nic.create",
            "guest.initialize",
            "cluster.add"
        ]
    );
    let view = host_view(&sim);
    let vm = &view["vms"][0];
    assert_eq!(vm["vm_name"], "out-01");
    assert_eq!(vm["cpu_cores"], 3, "{vm}");
    assert_eq!(vm["memory_gb"], 6, "{vm}");
    assert_eq!(vm["disks"][0]["size_gb"], 60, "{vm}");
    assert_eq!(vm["nics"][0]["virtual_switch"], "External", "{vm}");
    assert_eq!(vm["nics"][0]["vlan_id"], 200, "{vm}");
    assert_eq!(vm["clustered"], true, "{vm}");
    assert_eq!(
        vm["applied_config"],
        json!({
            "guest_host_name": "out-01",
            "guest_la_uid": "root",
            "guest_la_pw": secret_digest(LA_PW),
            "guest_v4_ip_addr": "10.9.0.5",
            "guest_v4_cidr_prefix": "16",
            "guest_v4_default_gw": "10.9.0.1",
            "guest_v4_dns1": "10.9.0.2",
        })
    );
    // Cluster registration came after the guest reported its configuration applied.
    let records: Value =
        serde_json::from_str(&http_get(&sim.addr, "/sim/hosts/hv01/records").expect("records"))
            .expect("json");
    let ops: Vec<&str> = records
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["operation"].as_str()).collect())
        .unwrap_or_default();
    let cluster_at = ops
        .iter()
        .position(|o| *o == "cluster.add")
        .expect("cluster.add ran");
    let iso_detach = ops
        .iter()
        .rposition(|o| *o == "iso.detach")
        .expect("iso detached");
    assert!(iso_detach < cluster_at, "{ops:?}");
    drop(worker);
    cleanup(&url, &prefix, &["hv01".to_string()]).await;
}

/// A cancel request made while no worker ran is honoured by the worker that starts later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_made_before_any_worker_started_is_honoured() {
    let (url, prefix, sim, broker) = e2e(1, 0).await;
    broker.declare_host("hv01").await.expect("declare");
    let job = managed("cx-early", json!({}));
    broker.publish_job(&job).await.expect("publish");
    let by = Requester {
        platform: Platform::Console,
        user_id: "alice".into(),
    };
    broker
        .publish_event(&Event::for_job(
            job.job_id,
            0,
            EventBody::JobCancelRequested { by },
        ))
        .await
        .expect("cancel");
    let worker = start_worker(&sim.worker_config, &prefix, &url, "w-late");
    let events = events_of(&broker, job.job_id).await;
    let names: Vec<&str> = events.iter().map(Event::type_name).collect();
    assert!(!names.contains(&"job.started"), "{names:?}");
    assert_eq!(names.last(), Some(&"job.cancelled"), "{names:?}");
    assert_eq!(host_view(&sim)["vms"], json!([]));
    finish(&broker, worker, &url, &prefix, &["hv01".to_string()]).await;
}
