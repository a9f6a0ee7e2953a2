//! Managed deployments end to end: a job through RabbitMQ to an `aetherv worker` process, which
//! builds the VM on an `aetherv sim` host over WinRM and initializes its guest over KVP with
//! real crypto. The sim's guest shows secrets only as `sha256:<hex>` at `/sim/hosts/<host>`, so
//! the applied configuration is compared field by field and secrets by digest.

use crate::harness::*;
use aetherv_broker::{Broker, Topology};
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
    let mut job = JobEnvelope {
        v: 1,
        job_id: JobId::new(),
        kind: JobKind::DeploymentManaged,
        target: Target::Host("hv01".into()),
        spec: spec.as_object().cloned().unwrap_or_default(),
        secrets: None,
        requested_by: Requester {
            platform: Platform::Amqp,
            user_id: "e2e".into(),
        },
        origin: None,
        created_at: chrono::Utc::now(),
        approval: None,
    };
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

fn host_view(sim: &SimProc) -> Value {
    let body = http_get(&sim.addr, "/sim/hosts/hv01").expect("host view");
    serde_json::from_str(&body).expect("json")
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
    let url = amqp_url();
    let prefix = prefix();
    let sim = start_sim(1, 0);
    let broker = Broker::connect(&url, Topology::new(&prefix))
        .await
        .expect("broker");
    let worker = start_worker(&sim.worker_config, &prefix, &url, "w-deploy");
    let job = managed("web-e2e", json!({}));
    let events = run_jobs(&broker, &[&job]).await;
    assert!(succeeded(&events[0]), "{:?}", failure(&events[0]));
    let steps: Vec<&str> = events[0]
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::StepSucceeded { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
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
    broker.close().await;
    drop(worker);
    cleanup(&url, &prefix, &["hv01".to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_fail_their_step_and_rollback_leaves_nothing() {
    let url = amqp_url();
    let prefix = prefix();
    let sim = start_sim(1, 0);
    let broker = Broker::connect(&url, Topology::new(&prefix))
        .await
        .expect("broker");
    let worker = start_worker(&sim.worker_config, &prefix, &url, "w-faults");
    let mut all = Vec::new();
    for (fault, step, code) in [
        ("disk.create", "disk.create", "injected"),
        (
            "guest.apply_failed",
            "guest.initialize",
            "guest_provisioning_failed",
        ),
    ] {
        let status = http_post_json(
            &sim.addr,
            "/sim/hosts/hv01/faults",
            &json!({"operation": fault}).to_string(),
        )
        .expect("inject fault");
        assert_eq!(status, 204);
        let job = managed(&format!("rb-{}", &job_suffix()), json!({"rollback": true}));
        let events = run_jobs(&broker, &[&job]).await;
        assert_eq!(
            failure(&events[0]),
            Some((Some(step.to_string()), code.to_string())),
            "{:?}",
            events[0].iter().map(Event::type_name).collect::<Vec<_>>()
        );
        let view = host_view(&sim);
        assert_eq!(view["vms"], json!([]), "rollback left resources: {view}");
        all.extend(events);
    }
    assert_no_secret_anywhere(&all, &host_view(&sim));
    broker.close().await;
    drop(worker);
    cleanup(&url, &prefix, &["hv01".to_string()]).await;
}

fn job_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}
