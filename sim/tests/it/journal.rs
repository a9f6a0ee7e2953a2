//! Latency, recording, the idempotency journal, duplicate and host-slot violation detection.

use aetherv_core::{AgentOperation, AgentRequest};
use aetherv_sim::{Sim, SimConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn req(op: AgentOperation, spec: Value, job: &str, key: Option<&str>) -> AgentRequest {
    let Value::Object(spec) = spec else {
        panic!("object spec")
    };
    let mut r = AgentRequest::new(op, spec, job);
    r.idempotency_key = key.map(str::to_string);
    r
}

fn job() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn keyed_repeat_returns_the_journaled_result_without_rerunning() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    let j = job();
    let key = format!("{j}:vm");
    let spec = json!({"vm_name": "web01"});
    let a = sim
        .run_agent(
            "hv01",
            req(AgentOperation::VmCreate, spec.clone(), &j, Some(&key)),
        )
        .await
        .expect("host");
    let b = sim
        .run_agent("hv01", req(AgentOperation::VmCreate, spec, &j, Some(&key)))
        .await
        .expect("host");
    assert!(a.result.is_ok() && b.result.is_ok());
    assert_eq!(a.result.data["vm_id"], b.result.data["vm_id"]);
    assert!(b.stdout.iter().any(|l| l.contains("already executed")));
    let s = &sim.stats().hosts["hv01"];
    assert_eq!(
        (s.operations, s.duplicate_executions, s.journal_replays),
        (1, 0, 1)
    );
    assert_eq!(sim.host_state("hv01").expect("host").vms.len(), 1);
}

#[tokio::test]
async fn keyed_repeat_while_in_flight_waits_for_the_first() {
    let sim =
        Sim::new(SimConfig::with_hosts(1).op_latency("vm.create", Duration::from_millis(200)));
    let j = job();
    let key = format!("{j}:vm");
    let spec = json!({"vm_name": "web01"});
    let (a, b) = tokio::join!(
        sim.run_agent(
            "hv01",
            req(AgentOperation::VmCreate, spec.clone(), &j, Some(&key))
        ),
        sim.run_agent("hv01", req(AgentOperation::VmCreate, spec, &j, Some(&key))),
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert!(
        a.result.is_ok() && b.result.is_ok(),
        "{:?} {:?}",
        a.result,
        b.result
    );
    assert_eq!(a.result.data["vm_id"], b.result.data["vm_id"]);
    let s = &sim.stats().hosts["hv01"];
    assert_eq!((s.operations, s.duplicate_executions), (1, 0));
}

#[tokio::test]
async fn unkeyed_repeat_of_a_jobs_op_is_a_duplicate_execution() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    let j = job();
    for _ in 0..2 {
        sim.run_agent("hv01", req(AgentOperation::Noop, json!({}), &j, None))
            .await
            .expect("host");
    }
    // Read-only ops and non-job correlation ids never count.
    for _ in 0..2 {
        sim.run_agent(
            "hv01",
            req(AgentOperation::HostInventory, json!({}), &j, None),
        )
        .await
        .expect("host");
        sim.run_agent(
            "hv01",
            req(AgentOperation::Noop, json!({}), "inventory", None),
        )
        .await
        .expect("host");
    }
    let s = &sim.stats().hosts["hv01"];
    assert_eq!(s.duplicate_executions, 1);
    assert_eq!(s.operations, 6);
    assert_eq!(s.jobs, vec![j]);
}

#[tokio::test]
async fn overlapping_jobs_on_one_host_are_a_slot_violation() {
    let sim = Sim::new(SimConfig::with_hosts(2).latency(Duration::from_millis(150)));
    let (j1, j2, j3) = (job(), job(), job());
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        sim.run_agent("hv01", req(AgentOperation::Noop, json!({}), &j1, None)),
        sim.run_agent("hv01", req(AgentOperation::Noop, json!({}), &j2, None)),
        sim.run_agent("hv02", req(AgentOperation::Noop, json!({}), &j3, None)),
    );
    assert!(a.is_some() && b.is_some() && c.is_some());
    assert!(started.elapsed() >= Duration::from_millis(150));
    let stats = sim.stats();
    assert_eq!(stats.hosts["hv01"].max_concurrent_jobs, 2);
    assert_eq!(stats.hosts["hv02"].max_concurrent_jobs, 1);
    // Two ops of the same job overlapping are not a violation.
    let sim = Sim::new(SimConfig::with_hosts(1).latency(Duration::from_millis(50)));
    let j = job();
    let _ = tokio::join!(
        sim.run_agent("hv01", req(AgentOperation::Noop, json!({}), &j, Some("k1"))),
        sim.run_agent("hv01", req(AgentOperation::Noop, json!({}), &j, Some("k2"))),
    );
    // Sequential jobs are fine.
    sim.run_agent("hv01", req(AgentOperation::Noop, json!({}), &job(), None))
        .await
        .expect("host");
    let s = &sim.stats().hosts["hv01"];
    assert_eq!(s.max_concurrent_jobs, 1);
    assert_eq!(s.jobs.len(), 2);
}

#[tokio::test]
async fn records_carry_job_id_and_times_and_stats_serialize() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    let j = job();
    sim.run_agent(
        "hv01",
        req(
            AgentOperation::VmCreate,
            json!({"vm_name": "a"}),
            &j,
            Some("k"),
        ),
    )
    .await
    .expect("host");
    sim.run_agent(
        "hv01",
        req(AgentOperation::VmCreate, json!({"vm_name": "a"}), &j, None),
    )
    .await
    .expect("host");
    let recs = sim.records("hv01");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].correlation_id, j);
    assert_eq!(recs[0].status.as_deref(), Some("success"));
    assert_eq!(recs[1].code.as_deref(), Some("name_conflict"));
    assert!(recs[0].ended_at.expect("ended") >= recs[0].started_at);
    let v = serde_json::to_value(sim.stats()).expect("json");
    assert_eq!(v["hosts"]["hv01"]["operations"], 2);
    assert_eq!(v["hosts"]["hv01"]["jobs"], json!([j]));
    assert_eq!(v["hosts"]["hv01"]["max_concurrent_jobs"], 1);
    assert_eq!(v["hosts"]["hv01"]["duplicate_executions"], 0);
}

#[tokio::test]
async fn noop_sleep_ms_and_unknown_host() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    let t = Instant::now();
    let r = sim
        .run_agent(
            "HV01",
            req(AgentOperation::Noop, json!({"sleep_ms": 100}), &job(), None),
        )
        .await
        .expect("host");
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(r.exit_code, 0);
    assert!(sim
        .run_agent("hv09", req(AgentOperation::Noop, json!({}), "x", None))
        .await
        .is_none());
}

#[test]
fn worker_config_lists_every_host() {
    let sim = Sim::new(SimConfig::with_hosts(2));
    let y = sim.worker_config_yaml("http://127.0.0.1:5985");
    assert!(
        y.contains("endpoint: \"http://127.0.0.1:5985/hv02/wsman\""),
        "{y}"
    );
    assert!(
        y.contains("auth: { kind: basic, username: \"aetherv\""),
        "{y}"
    );
}

mod guest {
    use super::*;
    use aetherv_core::kvp::{checksum, meta};
    use aetherv_sim::ProvisioningGuest;
    use std::sync::Arc;

    async fn kvp(sim: &Sim, op: AgentOperation, spec: Value) -> Value {
        let r = sim
            .run_agent("hv01", req(op, spec, "inventory", None))
            .await
            .expect("host");
        assert!(r.result.is_ok(), "{:?}", r.result);
        r.result.data
    }

    async fn provisioned_vm(version: &str, tamper: bool) -> (Sim, Value) {
        let sim = Sim::new(SimConfig::with_hosts(1));
        sim.set_guest(Arc::new(ProvisioningGuest {
            public_key_b64: "UFVCS0VZ".into(),
            decrypt: None,
            expected_version: Some("1.2.3".into()),
        }));
        let j = job();
        let vm = sim
            .run_agent(
                "hv01",
                req(AgentOperation::VmCreate, json!({"vm_name": "g1"}), &j, None),
            )
            .await
            .expect("host");
        let id = vm.result.data["vm_id"].clone();
        kvp(&sim, AgentOperation::KvpWrite, json!({"vm_id": id, "items": {meta::VERSION: version, meta::HOST_STATE: "waitingforpublickey"}})).await;
        // The guest only answers once the VM runs.
        let before = kvp(&sim, AgentOperation::KvpRead, json!({"vm_id": id})).await;
        assert_eq!(before["items"], json!({}));
        sim.run_agent(
            "hv01",
            req(
                AgentOperation::VmPower,
                json!({"vm_id": id, "action": "start"}),
                &j,
                None,
            ),
        )
        .await
        .expect("host");
        let ready = kvp(&sim, AgentOperation::KvpRead, json!({"vm_id": id})).await;
        if version != "1.2.3" {
            assert_eq!(
                ready["items"][meta::GUEST_ERROR],
                "error validating:manifest"
            );
            return (sim, ready);
        }
        assert_eq!(ready["items"][meta::GUEST_STATE], "waitingforaeskey");
        assert_eq!(ready["items"][meta::GUEST_PUBLIC_KEY], "UFVCS0VZ");
        let long = "k".repeat(150);
        let plain: std::collections::BTreeMap<String, String> = [
            ("hlvmm.data.guest_host_name".to_string(), "g1".to_string()),
            ("hlvmm.data.guest_la_pw".to_string(), "s3cret".to_string()),
            ("hlvmm.data.ansible_ssh_key".to_string(), long.clone()),
        ]
        .into_iter()
        .collect();
        let sum = if tamper {
            "bad".to_string()
        } else {
            checksum(&plain)
        };
        kvp(
            &sim,
            AgentOperation::KvpWrite,
            json!({"vm_id": id, "items": {
                meta::CHECKSUM: sum,
                meta::SHARED_AES_KEY: "wrapped",
                "hlvmm.data.guest_host_name": "g1",
                "hlvmm.data.guest_la_pw": "s3cret",
                "hlvmm.data.ansible_ssh_key._0": &long[..100],
                "hlvmm.data.ansible_ssh_key._1": &long[100..],
            }}),
        )
        .await;
        kvp(
            &sim,
            AgentOperation::KvpWrite,
            json!({"vm_id": id, "items": {meta::HOST_STATE: "provisioningdatapublished"}}),
        )
        .await;
        let done = kvp(&sim, AgentOperation::KvpRead, json!({"vm_id": id})).await;
        (sim, done)
    }

    #[tokio::test]
    async fn provisioning_guest_plays_the_kvp_exchange() {
        let (sim, done) = provisioned_vm("1.2.3", false).await;
        assert_eq!(
            done["items"][meta::GUEST_STATE],
            "provisioningapplied",
            "{done}"
        );
        let view = sim.host_view("hv01").expect("host");
        let applied = &view["vms"][0]["applied_config"];
        assert_eq!(applied["guest_host_name"], "g1");
        assert_eq!(applied["ansible_ssh_key"].as_str().map(str::len), Some(150));
        let pw = applied["guest_la_pw"].as_str().expect("pw");
        assert!(pw.starts_with("sha256:") && !pw.contains("s3cret"));
    }

    #[tokio::test]
    async fn provisioning_guest_reports_checksum_and_manifest_failures() {
        let (_, done) = provisioned_vm("1.2.3", true).await;
        assert_eq!(done["items"][meta::GUEST_STATE], "provisioningfailed");
        assert_eq!(
            done["items"][meta::GUEST_ERROR],
            "error validating:checksum"
        );
        let (_, failed) = provisioned_vm("9.9.9", false).await;
        assert_eq!(failed["items"][meta::GUEST_STATE], "provisioningfailed");
    }
}
