//! Latency, recording, the idempotency journal, duplicate and host-slot violation detection.

use aetherv_core::{AgentOperation, AgentRequest};
use aetherv_sim::{Sim, SimConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub fn req(op: AgentOperation, spec: Value, job: &str, key: Option<&str>) -> AgentRequest {
    let Value::Object(spec) = spec else {
        panic!("object spec")
    };
    let mut r = AgentRequest::new(op, spec, job);
    r.idempotency_key = key.map(str::to_string);
    r
}

/// A keyed `vm.create` of `web01` on hv01.
async fn create_web01(sim: &Sim, job: &str, key: &str) -> aetherv_sim::AgentRun {
    sim.run_agent(
        "hv01",
        req(
            AgentOperation::VmCreate,
            json!({"vm_name": "web01"}),
            job,
            Some(key),
        ),
    )
    .await
    .expect("host")
}

pub fn job() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn keyed_repeat_returns_the_journaled_result_without_rerunning() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    let j = job();
    let key = format!("{j}:vm");
    let a = create_web01(&sim, &j, &key).await;
    let b = create_web01(&sim, &j, &key).await;
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

#[tokio::test]
async fn failures_are_not_journaled_and_retries_are_not_duplicates() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    sim.inject_fault("hv01", aetherv_sim::Fault::once("vm.create"));
    let j = job();
    let key = format!("{j}:vm");
    let first = create_web01(&sim, &j, &key).await;
    assert_eq!(first.result.code.as_deref(), Some("injected"));
    assert_eq!(first.exit_code, 1);
    let retry = create_web01(&sim, &j, &key).await;
    assert!(retry.result.is_ok());
    let replay = create_web01(&sim, &j, &key).await;
    assert_eq!(replay.result.data["vm_id"], retry.result.data["vm_id"]);
    let s = &sim.stats().hosts["hv01"];
    assert_eq!(
        (s.operations, s.duplicate_executions, s.journal_replays),
        (2, 0, 1)
    );
}

#[tokio::test]
async fn concurrent_unkeyed_repeats_are_duplicates() {
    let sim = Sim::new(SimConfig::with_hosts(1).latency(Duration::from_millis(50)));
    let j = job();
    let _ = tokio::join!(
        sim.run_agent("hv01", req(AgentOperation::Noop, json!({}), &j, None)),
        sim.run_agent("hv01", req(AgentOperation::Noop, json!({}), &j, None)),
    );
    assert_eq!(sim.stats().hosts["hv01"].duplicate_executions, 1);
}
