//! What an SRE watches: a worker's `/healthz`, `/readyz` and `/metrics` (read with the
//! Prometheus client library's own parser), against a RabbitMQ node the test stops and starts.

use crate::harness::*;
use aetherv_core::{JobKind, Target};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `/metrics` at `addr`, parsed by `prometheus_client`: sample (`name{k=v,…}`) → value.
fn scrape(addr: &str) -> Map<String, Value> {
    let text = http_get(addr, "/metrics").expect("/metrics answers 200");
    let mut child = Command::new(python())
        .arg(root().join("tests/peers/metrics_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python metrics parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "/metrics did not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser JSON")
}

fn sample(m: &Map<String, Value>, key: &str) -> f64 {
    m.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Waits until `/readyz` answers `want` (200 = ready); returns how long that took.
fn wait_ready(addr: &str, want: bool, within: Duration) -> Duration {
    let start = Instant::now();
    wait_until(within, if want { "ready" } else { "unready" }, || {
        http_get(addr, "/readyz").is_ok() == want
    });
    start.elapsed()
}

/// The simulated site's worker configuration as an `aetherv.yaml` (next to it): its keys under
/// `worker`, the prefix under `broker`, and the health endpoints' address under `health`.
fn unified_config(
    worker_config: &std::path::Path,
    prefix: &str,
    health: &str,
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(worker_config).expect("worker config");
    let mut worker: Map<String, Value> = serde_saphyr::from_str(&text).expect("worker yaml");
    worker.remove("amqp_url");
    worker.remove("prefix");
    let doc = serde_json::json!({
        "broker": {"prefix": prefix},
        "health": {"listen": health},
        "log": {"level": "warn"},
        "worker": worker,
    });
    let path = worker_config.with_file_name("aetherv.yaml");
    std::fs::write(&path, doc.to_string()).expect("write aetherv.yaml");
    path
}

/// The worker runs from one `aetherv.yaml` (its health address comes from the file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_health_follows_the_broker_and_metrics_count_each_job() {
    let mut rabbit = OwnRabbit::start();
    let url = rabbit.url();
    let prefix = prefix();
    let hosts = vec!["hv01".to_string()];
    let sim = start_sim(1, 20);
    let broker = test_broker(&url, &prefix).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let config = unified_config(&sim.worker_config, &prefix, &addr);
    let worker = start_worker(&config, &prefix, &url, "w1");

    wait_until(Duration::from_secs(30), "/healthz", || {
        http_get(&addr, "/healthz").is_ok()
    });
    wait_ready(&addr, true, Duration::from_secs(30));

    let key = "aetherv_jobs_total{kind=noop,outcome=succeeded}";
    let before = scrape(&addr);
    let job = job_envelope(
        JobKind::Noop,
        Target::Host("hv01".into()),
        Map::new(),
        "ops",
    );
    broker.publish_job(&job).await.expect("publish");
    let events = collect_until_done(
        &broker,
        &HashSet::from([job.job_id]),
        Duration::from_secs(60),
    )
    .await;
    assert!(events.values().all(|e| succeeded(e)), "{events:?}");
    // The job's count moves when its last event is confirmed; give the scrape a moment.
    wait_until(Duration::from_secs(5), "the job counted", || {
        sample(&scrape(&addr), key) >= sample(&before, key) + 1.0
    });
    let after = scrape(&addr);
    assert_eq!(sample(&after, key), sample(&before, key) + 1.0, "{after:?}");
    let count = "aetherv_job_duration_seconds_count{kind=noop}";
    assert_eq!(sample(&after, count), sample(&before, count) + 1.0);
    assert!(sample(&after, "aetherv_winrm_calls_total{outcome=ok}") > 0.0);
    assert_eq!(sample(&after, "aetherv_slot_busy{host=hv01}"), 0.0);

    rabbit.stop();
    let unready = wait_ready(&addr, false, Duration::from_secs(10));
    eprintln!("unready {unready:?} after RabbitMQ stopped");
    assert_eq!(
        http_get(&addr, "/healthz").as_deref(),
        Ok("ok\n"),
        "alive while unready"
    );
    rabbit.restart();
    let ready = wait_ready(&addr, true, Duration::from_secs(60));
    eprintln!("ready again {ready:?} after RabbitMQ restarted");
    assert!(sample(&scrape(&addr), "aetherv_broker_reconnects_total{}") >= 1.0);

    finish(&broker, worker, &url, &prefix, &hosts).await;
}
