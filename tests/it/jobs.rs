//! Jobs through RabbitMQ to worker processes and simulated hosts: the host slot, crash
//! recovery, broker restarts and bad input.

use crate::harness::*;
use aetherv_broker::{Broker, PublishError};
use aetherv_core::{JobEnvelope, JobId, JobKind, Target};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn noop(host: &str, n: usize) -> JobEnvelope {
    let mut spec = serde_json::Map::new();
    spec.insert("n".into(), json!(n));
    job_envelope(JobKind::Noop, Target::Host(host.into()), spec, "e2e")
}

/// Publishes `rounds` rounds of one noop per host (job `n` in round `n`): the job ids per host
/// in submission order, and all of them.
async fn publish_rounds(
    broker: &Broker,
    hosts: &[String],
    rounds: usize,
) -> (HashMap<String, Vec<JobId>>, HashSet<JobId>) {
    let mut order: HashMap<String, Vec<JobId>> = HashMap::new();
    let mut ids = HashSet::new();
    for n in 0..rounds {
        for h in hosts {
            let j = noop(h, n);
            order.entry(h.clone()).or_default().push(j.job_id);
            ids.insert(j.job_id);
            broker.publish_job(&j).await.expect("publish");
        }
    }
    (order, ids)
}

fn assert_all_succeeded(events: &HashMap<JobId, Vec<aetherv_core::Event>>) {
    let failed: Vec<_> = events.iter().filter(|(_, e)| !succeeded(e)).collect();
    assert!(failed.is_empty(), "jobs failed: {failed:?}");
}

/// A standby is not counted by RabbitMQ on single-active-consumer queues; give it a moment
/// (correctness does not depend on it: a late standby just subscribes later).
async fn standby_moment() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn host_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("hv{i:02}")).collect()
}

/// Publishes one warm-up job per host and waits for all of them: proves every host has an
/// active consumer before timing starts.
async fn warm_up(broker: &Broker, hosts: &[String]) -> HashSet<JobId> {
    let mut ids = HashSet::new();
    for h in hosts {
        let j = noop(h, 0);
        ids.insert(j.job_id);
        broker.publish_job(&j).await.expect("publish warm-up");
    }
    let events = collect_until_done(broker, &ids, Duration::from_secs(60)).await;
    assert!(
        events.values().all(|e| succeeded(e)),
        "warm-up jobs failed: {events:?}"
    );
    ids
}

/// Checks the sim's per-host stats: slot respected, no duplicate executions, and the jobs of
/// `order` appear in that order on their host.
fn assert_slot_stats(stats: &Value, order: &HashMap<String, Vec<JobId>>) {
    for (host, expected) in order {
        let h = &stats["hosts"][host];
        assert_eq!(h["max_concurrent_jobs"], 1, "{host}: slot violated: {h}");
        assert_eq!(
            h["duplicate_executions"], 0,
            "{host}: duplicate executions: {h}"
        );
        let seen: Vec<String> = h["jobs"]
            .as_array()
            .expect("jobs list")
            .iter()
            .filter_map(|j| j.as_str().map(str::to_string))
            .collect();
        let expected: Vec<String> = expected.iter().map(|j| j.to_string()).collect();
        let seen_ours: Vec<String> = seen.into_iter().filter(|j| expected.contains(j)).collect();
        assert_eq!(
            seen_ours, expected,
            "{host}: execution order differs from submission order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_jobs_on_twenty_hosts_respect_the_host_slot() {
    let url = amqp_url();
    let prefix = prefix();
    let hosts = host_names(20);
    // One second per operation, the low end of real Hyper-V operations; the per-job overhead
    // (events with confirms, WinRM shell set-up) is measured against it. Under CPU contention
    // (CI beside a build) that overhead grows, and 300 ms latencies made the ratio flaky.
    let latency = Duration::from_millis(1000);
    let sim = start_sim(hosts.len(), latency.as_millis() as u64);
    let broker = test_broker(&url, &prefix).await;
    let w1 = start_worker(&sim.worker_config, &prefix, &url, "w1");
    let w2 = start_worker(&sim.worker_config, &prefix, &url, "w2");
    standby_moment().await;
    warm_up(&broker, &hosts).await;

    let per_host = 10;
    let start = Instant::now();
    let (order, ids) = publish_rounds(&broker, &hosts, per_host).await;
    let events = collect_until_done(&broker, &ids, Duration::from_secs(120)).await;
    let wall = start.elapsed();
    assert_all_succeeded(&events);
    assert_slot_stats(&sim.stats(), &order);
    let ideal = latency * per_host as u32;
    let ratio = wall.as_secs_f64() / ideal.as_secs_f64();
    println!("200 jobs / 20 hosts / 2 workers: wall {wall:?}, ideal {ideal:?}, ratio {ratio:.3}");
    assert!(
        ratio <= 1.3,
        "wall time {wall:?} is {ratio:.2}× the ideal {ideal:?}"
    );
    finish(&broker, (w1, w2), &url, &prefix, &hosts).await;
}

/// Starts worker `id` and waits until it consumes every host queue.
async fn serving_worker(
    sim: &SimProc,
    broker: &Broker,
    hosts: &[String],
    (url, prefix): (&str, &str),
    id: &str,
) -> Proc {
    let w = start_worker(&sim.worker_config, prefix, url, id);
    wait_for_consumers(broker, hosts, 1).await;
    w
}

/// Waits until every host queue has at least `consumers` consumers (workers subscribed).
async fn wait_for_consumers(broker: &Broker, hosts: &[String], consumers: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for h in hosts {
        loop {
            match broker.queue_depth(h).await {
                Ok(d) if d.consumers >= consumers => break,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                other => panic!("host queue {h} never got {consumers} consumer(s): {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_mid_run_loses_and_duplicates_nothing() {
    let hosts = host_names(8);
    let (url, prefix, sim, broker) = e2e(hosts.len(), 250).await;
    let mut w1 = serving_worker(&sim, &broker, &hosts, (&url, &prefix), "w1").await;
    warm_up(&broker, &hosts).await;
    // The second worker subscribes after the first owns every queue: it is the standby.
    let w2 = start_worker(&sim.worker_config, &prefix, &url, "w2");
    standby_moment().await;

    let (order, ids) = publish_rounds(&broker, &hosts, 8).await;
    // Kill the active worker while operations are in flight on every host.
    tokio::time::sleep(Duration::from_millis(900)).await;
    w1.kill9();
    let events = collect_until_done(&broker, &ids, Duration::from_secs(120)).await;
    assert_all_succeeded(&events);
    let resumed = events
        .values()
        .filter(|evs| evs.iter().any(|e| e.type_name() == "job.resumed"))
        .count();
    assert!(
        resumed >= 1,
        "no job was redelivered; the kill came too late to test anything"
    );
    assert_slot_stats(&sim.stats(), &order);
    finish(&broker, (w1, w2), &url, &prefix, &hosts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_mid_run_loses_no_job() {
    let mut rabbit = OwnRabbit::start();
    let url = rabbit.url();
    let prefix = prefix();
    let hosts = host_names(6);
    let sim = start_sim(hosts.len(), 150);
    let broker = test_broker(&url, &prefix).await;
    let w1 = start_worker(&sim.worker_config, &prefix, &url, "w1");
    let w2 = start_worker(&sim.worker_config, &prefix, &url, "w2");
    standby_moment().await;
    warm_up(&broker, &hosts).await;

    let (order, ids) = publish_rounds(&broker, &hosts, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rabbit.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbit.restart();
    let events = collect_until_done(&broker, &ids, Duration::from_secs(180)).await;
    assert_all_succeeded(&events);
    assert_slot_stats(&sim.stats(), &order);
    broker.close().await;
    drop((w1, w2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_with_reasons_and_nothing_stops() {
    let hosts = host_names(2);
    let (url, prefix, sim, broker) = e2e(hosts.len(), 0).await;
    let w = serving_worker(&sim, &broker, &hosts, (&url, &prefix), "w1").await;

    broker
        .publish_raw("hv01", b"this is not json".to_vec())
        .await
        .expect("publish");
    let mut v2: Value = serde_json::from_slice(&noop("hv01", 0).to_vec()).expect("json");
    v2["v"] = json!(2);
    broker
        .publish_raw("hv01", serde_json::to_vec(&v2).expect("ser"))
        .await
        .expect("publish");
    let unknown = broker.publish_job(&noop("hv99", 0)).await;
    assert!(
        matches!(&unknown, Err(PublishError::Unroutable { routing_key }) if routing_key == "hv99"),
        "unknown host was not an error: {unknown:?}"
    );
    let good = noop("hv01", 1);
    broker.publish_job(&good).await.expect("publish");
    let ids: HashSet<JobId> = [good.job_id].into();
    let events = collect_until_done(&broker, &ids, Duration::from_secs(30)).await;
    assert!(
        succeeded(&events[&good.job_id]),
        "the valid job after the bad ones failed"
    );

    let dead = broker
        .dead_letters(2, Duration::from_secs(10))
        .await
        .expect("dlq");
    let reasons: Vec<_> = dead
        .iter()
        .map(|d| d.reason.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        reasons,
        ["malformed_json", "unsupported_version"],
        "{dead:?}"
    );
    assert!(dead[1]
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("unsupported contract version 2"));
    finish(&broker, w, &url, &prefix, &hosts).await;
}

/// Issue 16, findings 2 and 10: a job whose target is another host than its queue's, and a
/// valid envelope of 10 MB, are dead-lettered with their own reasons (`target_mismatch`,
/// `too_large`) and never reach a host; the host keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misrouted_and_oversized_jobs_are_dead_lettered_before_any_host_call() {
    let hosts = host_names(2);
    let (url, prefix, sim, broker) = e2e(hosts.len(), 0).await;
    let w = serving_worker(&sim, &broker, &hosts, (&url, &prefix), "w1").await;

    let misrouted = vm_create(Target::Host("hv02".into()), "misrouted", 2);
    broker
        .publish_raw("hv01", misrouted.to_vec())
        .await
        .expect("publish");
    let mut big = vm_create(Target::Host("hv01".into()), "big", 2);
    big.spec
        .insert("notes".into(), json!("x".repeat(10 * 1024 * 1024)));
    broker
        .publish_raw("hv01", big.to_vec())
        .await
        .expect("publish");
    let good = noop("hv01", 1);
    broker.publish_job(&good).await.expect("publish");
    let ids: HashSet<JobId> = [good.job_id].into();
    let events = collect_until_done(&broker, &ids, Duration::from_secs(30)).await;
    assert!(succeeded(&events[&good.job_id]), "hv01 stopped serving");

    let dead = broker
        .dead_letters(2, Duration::from_secs(10))
        .await
        .expect("dlq");
    let mut reasons: Vec<_> = dead
        .iter()
        .map(|d| d.reason.clone().unwrap_or_default())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["target_mismatch", "too_large"]);
    assert!(
        vm_names(&sim, "hv01").is_empty(),
        "a VM was created on hv01"
    );
    assert!(
        vm_names(&sim, "hv02").is_empty(),
        "a VM was created on hv02"
    );
    finish(&broker, w, &url, &prefix, &hosts).await;
}

#[test]
fn submit_follow_runs_a_job_and_reports_unknown_hosts() {
    let url = amqp_url();
    let prefix = prefix();
    let hosts = host_names(1);
    let sim = start_sim(1, 50);
    let w = start_worker(&sim.worker_config, &prefix, &url, "w1");
    let dir = tempfile::tempdir().expect("tempdir");
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, "kind: noop\ntarget: hv01\nspec:\n  sleep_ms: 10\n").expect("write");
    let mut ok = false;
    // The worker declares the host queue at start; retry until it exists.
    for _ in 0..100 {
        let (st, out, err) = run_cmd(
            std::process::Command::new(bin())
                .args(["submit", "--direct", "--follow", "--timeout", "60"])
                .arg(&job)
                .env("AETHERV_AMQP_URL", &url)
                .env("AETHERV_PREFIX", &prefix),
        );
        if err.contains("no worker queue") {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert!(st.success(), "submit --follow failed: {out}\n{err}");
        assert!(out.contains("job.started"), "{out}");
        assert!(out.contains("job.succeeded"), "{out}");
        let last = out.split_whitespace().last().unwrap_or("");
        assert!(
            last.parse::<JobId>().is_ok(),
            "last word is not a job id: {out}"
        );
        ok = true;
        break;
    }
    assert!(ok, "host queue never appeared");
    drop(w);
    std::fs::write(&job, "kind: noop\ntarget: nosuchhost\n").expect("write");
    let (st, _out, err) = run_cmd(
        std::process::Command::new(bin())
            .args(["submit", "--direct"])
            .arg(&job)
            .env("AETHERV_AMQP_URL", &url)
            .env("AETHERV_PREFIX", &prefix),
    );
    assert!(!st.success());
    assert!(err.contains("nosuchhost"), "{err}");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(cleanup(&url, &prefix, &hosts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_running_job_and_leaves_the_rest_queued() {
    let hosts = host_names(1);
    let (url, prefix, sim, broker) = e2e(1, 1500).await;
    let mut w1 = serving_worker(&sim, &broker, &hosts, (&url, &prefix), "w1").await;
    let (first, second) = (noop("hv01", 1), noop("hv01", 2));
    broker.publish_job(&first).await.expect("publish");
    broker.publish_job(&second).await.expect("publish");
    // Wait until the first job runs, then ask the worker to stop.
    let mut stream = broker
        .replay_events(aetherv_broker::StreamOffset::First)
        .await
        .expect("stream");
    while let Some((_, ev)) = stream.next().await {
        if ev.job_id == Some(first.job_id) && ev.type_name() == "step.started" {
            break;
        }
    }
    let status = w1
        .terminate(Duration::from_secs(20))
        .expect("worker exits after SIGTERM");
    assert!(status.success(), "worker exit status {status:?}");
    let ids: HashSet<JobId> = [first.job_id].into();
    let events = collect_until_done(&broker, &ids, Duration::from_secs(5)).await;
    assert!(
        succeeded(&events[&first.job_id]),
        "in-flight job did not finish"
    );
    let depth = broker.queue_depth("hv01").await.expect("depth");
    assert_eq!(depth.ready, 1, "the second job should still be queued");
    assert_eq!(
        sim.stats()["hosts"]["hv01"]["jobs"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Another worker picks it up.
    let w2 = start_worker(&sim.worker_config, &prefix, &url, "w2");
    let ids: HashSet<JobId> = [second.job_id].into();
    let events = collect_until_done(&broker, &ids, Duration::from_secs(30)).await;
    assert!(succeeded(&events[&second.job_id]));
    finish(&broker, w2, &url, &prefix, &hosts).await;
}

fn vm_create(target: Target, name: &str, gb: u64) -> JobEnvelope {
    let mut j = noop("hv01", 0);
    j.kind = JobKind::VmCreate;
    j.target = target;
    j.spec = json!({"vm_name": name, "gb_ram": gb, "cpu_cores": 2})
        .as_object()
        .cloned()
        .unwrap_or_default();
    j
}

fn vm_names(sim: &SimProc, host: &str) -> Vec<String> {
    let view: Value =
        serde_json::from_str(&http_get(&sim.addr, &format!("/sim/hosts/{host}")).expect("view"))
            .expect("json");
    view["vms"]
        .as_array()
        .map(|vms| {
            vms.iter()
                .filter_map(|v| v["vm_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reference §10 case 8 through the broker: an AMQP producer targets the cluster by name only;
/// the worker places the job on the connected member with the most free memory that fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_jobs_are_placed_on_the_member_with_the_most_free_memory() {
    let hosts = host_names(3);
    let (url, prefix, sim, broker) = e2e(hosts.len(), 0).await;
    let worker = serving_worker(&sim, &broker, &hosts, (&url, &prefix), "w-place").await;
    // Fill the members unevenly (256 GB each): free 56 / 156 / 106 GB.
    let fill: Vec<JobEnvelope> = [("hv01", 200), ("hv02", 100), ("hv03", 150)]
        .iter()
        .map(|(h, gb)| vm_create(Target::Host((*h).into()), &format!("fill-{h}"), *gb))
        .collect();
    let ids: HashSet<JobId> = fill.iter().map(|j| j.job_id).collect();
    for j in &fill {
        broker.publish_job(j).await.expect("publish fill");
    }
    let events = collect_until_done(&broker, &ids, Duration::from_secs(60)).await;
    assert!(events.values().all(|e| succeeded(e)), "{events:?}");

    let placed = vm_create(Target::Cluster("CLU01".into()), "placed-16", 16);
    let bigger = vm_create(Target::Cluster("clu01".into()), "placed-120", 120);
    let too_big = vm_create(Target::Cluster("clu01".into()), "placed-200", 200);
    let ids: HashSet<JobId> = [&placed, &bigger, &too_big]
        .iter()
        .map(|j| j.job_id)
        .collect();
    for j in [&placed, &bigger, &too_big] {
        broker.publish_job(j).await.expect("publish to the cluster");
    }
    let events = collect_until_done(&broker, &ids, Duration::from_secs(60)).await;
    assert!(
        succeeded(&events[&placed.job_id]),
        "{:?}",
        events[&placed.job_id]
    );
    assert!(
        succeeded(&events[&bigger.job_id]),
        "{:?}",
        events[&bigger.job_id]
    );
    assert!(vm_names(&sim, "hv02").contains(&"placed-16".to_string()));
    // After 16 GB more on hv02 (140 free), 120 GB still fits there best.
    assert!(vm_names(&sim, "hv02").contains(&"placed-120".to_string()));
    let log = serde_json::to_string(&events[&placed.job_id]).expect("json");
    assert!(log.contains("placed on hv02"), "{log}");
    let failed = events[&too_big.job_id]
        .iter()
        .find_map(|e| match &e.body {
            aetherv_core::EventBody::JobFailed { code, message, .. } => {
                Some((code.clone(), message.clone()))
            }
            _ => None,
        })
        .expect("the 200 GB job failed");
    assert_eq!(failed.0, "placement_failed", "{failed:?}");
    assert!(failed.1.contains("insufficient memory"), "{failed:?}");
    for h in &hosts {
        assert!(!vm_names(&sim, h).contains(&"placed-200".to_string()));
    }
    // An unknown cluster is an error to the producer, not a lost job.
    let nowhere = vm_create(Target::Cluster("nosuch".into()), "x", 1);
    assert!(matches!(
        broker.publish_job(&nowhere).await,
        Err(PublishError::Unroutable { .. })
    ));
    broker.close().await;
    drop(worker);
    let mut queues = hosts.clone();
    queues.push("cluster.clu01".into());
    cleanup(&url, &prefix, &queues).await;
}
