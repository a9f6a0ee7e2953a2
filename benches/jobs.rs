//! Job pipeline benchmark: publish → `job.started` latency (p50, p99, unloaded), noop jobs per
//! second end to end, and makespan / ideal for slot-bound batches — for the in-process broker and
//! for RabbitMQ (`AETHERV_AMQP_URL`, default the local one). Everything else is real: the worker
//! talks WinRM over loopback to the simulated hosts.
//!
//! Run: `cargo bench --bench jobs` (add `-- --quick` for a short run).

use aetherv_broker::{Broker, EventStream, StreamOffset, Topology};
use aetherv_core::{EventBody, JobEnvelope, JobId, JobKind, Platform, Requester, Target};
use aetherv_sim::{Sim, SimConfig};
use aetherv_worker::Worker;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[path = "../tests/it/inproc.rs"]
mod inproc;
use inproc::serve_sim;

fn noop(host: String) -> JobEnvelope {
    JobEnvelope {
        v: 1,
        job_id: JobId::new(),
        kind: JobKind::Noop,
        target: Target::Host(host),
        spec: Default::default(),
        secrets: None,
        requested_by: Requester {
            platform: Platform::Amqp,
            user_id: "bench".into(),
        },
        origin: None,
        created_at: chrono::Utc::now(),
        approval: None,
    }
}

struct Rig {
    broker: Broker,
    hosts: Vec<String>,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

async fn rig(broker: Broker, hosts: usize, latency: Duration) -> Rig {
    let sim = Sim::new(SimConfig::with_hosts(hosts).latency(latency));
    let stop = CancellationToken::new();
    let cfg = serve_sim(&sim, &stop).await;
    let names: Vec<String> = cfg.hosts.iter().map(|h| h.name.clone()).collect();
    let worker = Worker::new(&cfg, broker.clone(), &|_| None).expect("worker");
    let quiet = stop.clone();
    let handle = tokio::spawn(async move {
        let _ = worker.run(quiet).await;
    });
    // The worker declares and subscribes asynchronously; wait until every host has a consumer.
    for h in &names {
        while !matches!(broker.queue_depth(h).await, Ok(d) if d.consumers >= 1) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Rig {
        broker,
        hosts: names,
        stop,
        worker: handle,
    }
}

impl Rig {
    /// The events from now on.
    async fn events(&self) -> EventStream {
        self.broker
            .replay_events(StreamOffset::Next)
            .await
            .expect("stream")
    }

    /// Stops the worker and the sim and deletes what the run declared.
    async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.worker.await;
        teardown(&self.broker).await;
    }
}

async fn wait_for(stream: &mut EventStream, ids: &HashSet<JobId>, want_started: bool) -> Instant {
    let mut left = ids.clone();
    while let Some((_, ev)) = stream.next().await {
        let Some(id) = ev.job_id else { continue };
        if !left.contains(&id) {
            continue;
        }
        let hit = match ev.body {
            EventBody::JobStarted { .. } => want_started,
            EventBody::JobSucceeded { .. } | EventBody::JobFailed { .. } => !want_started,
            _ => false,
        };
        if hit {
            left.remove(&id);
            if left.is_empty() {
                return Instant::now();
            }
        }
    }
    panic!("event stream ended");
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latency(rig: &Rig, samples: usize) -> (Duration, Duration) {
    let mut stream = rig.events().await;
    // Warm up every host once.
    for h in &rig.hosts {
        let j = noop(h.clone());
        let ids: HashSet<_> = [j.job_id].into();
        rig.broker.publish_job(&j).await.expect("publish");
        wait_for(&mut stream, &ids, false).await;
    }
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let j = noop(rig.hosts[i % rig.hosts.len()].clone());
        let ids: HashSet<_> = [j.job_id].into();
        let t0 = Instant::now();
        rig.broker.publish_job(&j).await.expect("publish");
        let started = wait_for(&mut stream, &ids, true).await;
        lat.push(started - t0);
        wait_for(&mut stream, &ids, false).await;
    }
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

async fn batch(rig: &Rig, per_host: usize) -> Duration {
    let mut stream = rig.events().await;
    let mut ids = HashSet::new();
    let mut jobs = Vec::new();
    for _ in 0..per_host {
        for h in &rig.hosts {
            let j = noop(h.clone());
            ids.insert(j.job_id);
            jobs.push(j);
        }
    }
    let t0 = Instant::now();
    let publishes = jobs.iter().map(|j| rig.broker.publish_job(j));
    for r in futures::future::join_all(publishes).await {
        r.expect("publish");
    }
    wait_for(&mut stream, &ids, false).await - t0
}

async fn run(
    name: &str,
    make: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Broker>>>,
    quick: bool,
) {
    let samples = if quick { 100 } else { 500 };
    // Latency and throughput: 20 hosts, no operation latency.
    let r = rig(make().await, 20, Duration::ZERO).await;
    let (p50, p99) = latency(&r, samples).await;
    let n_per_host = if quick { 25 } else { 100 };
    let took = batch(&r, n_per_host).await;
    let jobs = (n_per_host * r.hosts.len()) as f64;
    println!(
        "{name:>8}: publish→job.started p50 {:.2} ms, p99 {:.2} ms ({samples} samples); {:.0} noop jobs/s ({} jobs, 20 hosts)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        jobs / took.as_secs_f64(),
        jobs
    );
    r.shutdown().await;
    // Start-up with many hosts: worker start → every host queue has its consumer.
    let many = if quick { 200 } else { 1000 };
    let rss_before = rss_kib();
    let t0 = Instant::now();
    let r = rig(make().await, many, Duration::ZERO).await;
    let ready = t0.elapsed();
    println!(
        "{name:>8}: worker ready with {many} hosts in {:.2} s; process RSS (worker and sim) {} MiB, {} KiB more than before",
        ready.as_secs_f64(),
        rss_kib() / 1024,
        rss_kib().saturating_sub(rss_before)
    );
    r.shutdown().await;
    // Makespan / ideal: 200 jobs on 20 hosts at 100 ms; 1,000 jobs on 100 hosts at 50 ms.
    for (hosts, per_host, ms) in [(20usize, 10usize, 100u64), (100, 10, 50)] {
        if quick && hosts == 100 {
            continue;
        }
        let r = rig(make().await, hosts, Duration::from_millis(ms)).await;
        // Warm up (connections, consumers).
        let _ = batch(&r, 1).await;
        let took = batch(&r, per_host).await;
        let ideal = Duration::from_millis(ms * per_host as u64);
        println!(
            "{name:>8}: makespan/ideal {:.3} ({} jobs on {hosts} hosts, {ms} ms each: {:.0} ms vs {:.0} ms)",
            took.as_secs_f64() / ideal.as_secs_f64(),
            hosts * per_host,
            took.as_secs_f64() * 1e3,
            ideal.as_secs_f64() * 1e3
        );
        r.shutdown().await;
    }
}

/// This process's resident set size in KiB (0 where /proc is not there).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Deletes what a RabbitMQ run declared, so benchmarks leave nothing behind.
async fn teardown(broker: &Broker) {
    if let Broker::Amqp(b) = broker {
        if let Err(e) = b.delete_topology().await {
            eprintln!("warning: could not delete the benchmark's queues: {e}");
        }
    }
    broker.close().await;
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        run(
            "inproc",
            || Box::pin(async { Broker::in_process(Topology::new("bench")) }),
            quick,
        )
        .await;
        let url = std::env::var("AETHERV_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let make = move || {
            let url = url.clone();
            Box::pin(async move {
                let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
                Broker::connect(&url, Topology::new(prefix))
                    .await
                    .expect("RabbitMQ (set AETHERV_AMQP_URL)")
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = Broker>>>
        };
        run("rabbitmq", make, quick).await;
    });
}
