//! Test support: broker factories (a fresh, uniquely prefixed topology per test), fixtures, and
//! `rabbitmqctl` helpers for the AMQP-only tests.

use aetherv_broker::{Broker, EventStream, JobConsumer, JobDelivery, Topology};
use aetherv_core::{Event, EventBody, JobEnvelope, JobId, JobKind, Platform, Requester, Target};
use std::time::Duration;

/// The RabbitMQ URL under test.
pub fn amqp_url() -> String {
    std::env::var("AETHERV_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A unique topology prefix: `t-<uuid8>`.
pub fn unique_topology() -> Topology {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Topology::new(format!("t-{}", &id[..8]))
}

/// A fresh in-process broker.
pub async fn inproc() -> Broker {
    Broker::in_process(unique_topology())
}

/// A fresh RabbitMQ broker on a unique topology; panics loudly when RabbitMQ is unreachable.
pub async fn amqp() -> Broker {
    amqp_with(unique_topology()).await
}

/// A RabbitMQ broker on the given topology; panics loudly when RabbitMQ is unreachable.
pub async fn amqp_with(topology: Topology) -> Broker {
    let url = amqp_url();
    match Broker::connect(&url, topology).await {
        Ok(b) => b,
        Err(e) => panic!(
            "RabbitMQ is not reachable at {url} ({e:?}): start one (apt-get install rabbitmq-server, or docker run -p 5672:5672 rabbitmq:3) or set AETHERV_AMQP_URL"
        ),
    }
}

/// Deletes what an AMQP test declared. Uses the test's broker when it is still open (it knows
/// every host it declared); otherwise a connection of its own, deleting hosts hv01 and hv02
/// (the hosts of the contract tests).
pub async fn cleanup(broker: &Broker) {
    if let Broker::Amqp(b) = broker {
        if b.is_connected() {
            if let Err(e) = b.delete_topology().await {
                eprintln!("cleanup of {} failed: {e:?}", b.topology().prefix);
            }
        } else {
            let fresh = amqp_with(broker.topology().clone()).await;
            if let Broker::Amqp(f) = &fresh {
                for host in ["hv01", "hv02"] {
                    let _ = f.declare_host(host).await;
                }
                if let Err(e) = f.delete_topology().await {
                    eprintln!("cleanup of {} failed: {e:?}", f.topology().prefix);
                }
            }
            fresh.close().await;
        }
    }
    broker.close().await;
}

/// A valid noop job for `host`.
pub fn job(host: &str) -> JobEnvelope {
    JobEnvelope {
        v: 1,
        job_id: JobId::new(),
        kind: JobKind::Noop,
        target: Target::Host(host.to_owned()),
        spec: serde_json::Map::new(),
        secrets: None,
        requested_by: Requester {
            platform: Platform::Amqp,
            user_id: "tester".to_owned(),
        },
        origin: None,
        created_at: chrono::Utc::now(),
        approval: None,
    }
}

/// A job-started event.
pub fn event(seq: u64) -> Event {
    Event::for_job(
        JobId::new(),
        seq,
        EventBody::JobStarted {
            host: "hv01".to_owned(),
            worker: "w1".to_owned(),
            attempt: 1,
        },
    )
}

/// The next delivery within `ms`, or `None` when nothing arrives in time.
pub async fn next_within(c: &mut JobConsumer, ms: u64) -> Option<JobDelivery> {
    tokio::time::timeout(Duration::from_millis(ms), c.next())
        .await
        .ok()
        .flatten()
}

/// The next delivery, failing the test after 10 s.
pub async fn next_job(c: &mut JobConsumer) -> JobDelivery {
    match tokio::time::timeout(Duration::from_secs(10), c.next()).await {
        Ok(Some(d)) => d,
        Ok(None) => panic!("consumer ended unexpectedly"),
        Err(_) => panic!("no delivery within 10 s"),
    }
}

/// Declares hv01, publishes two noop jobs to it and starts consuming as `w1`.
pub async fn two_jobs_queued(b: &Broker) -> (JobEnvelope, JobEnvelope, JobConsumer) {
    b.declare_host("hv01").await.expect("declare hv01");
    let (j1, j2) = (job("hv01"), job("hv01"));
    b.publish_job(&j1).await.expect("publish j1");
    b.publish_job(&j2).await.expect("publish j2");
    let c = b.consume_jobs("hv01", "w1").await.expect("consume");
    (j1, j2, c)
}

/// The next delivery, which must be `expected`; acks it.
pub async fn ack_next(c: &mut JobConsumer, expected: &JobEnvelope) {
    let d = next_job(c).await;
    assert_eq!(d.envelope, *expected);
    d.ack().await.expect("ack");
}

/// The next event of `s` with its offset, failing the test after 10 s.
pub async fn next_event(s: &mut EventStream) -> (u64, Event) {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream ended")
}

/// Runs `rabbitmqctl` and returns stdout; panics with the error on failure.
/// Runs `rabbitmqctl` against the broker under test: the machine's node, or the throwaway node
/// `scripts/rabbitmq-throwaway.sh` started (`AETHERV_RMQ_NODE`, its cookie home and epmd port).
pub fn rabbitmqctl(args: &[&str]) -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let node = var("AETHERV_RMQ_NODE");
    // Debian's `rabbitmqctl` wrapper runs the CLI as the rabbitmq user with that user's cookie;
    // a throwaway node has its own cookie, so the CLI is run directly.
    let cli = "/usr/lib/rabbitmq/bin/rabbitmqctl";
    let mut cmd = std::process::Command::new(match &node {
        Some(_) if std::path::Path::new(cli).exists() => cli,
        _ => "rabbitmqctl",
    });
    if let Some(node) = node {
        cmd.arg("-n").arg(node);
        if let Some(home) = var("AETHERV_RMQ_HOME") {
            cmd.env("HOME", home);
        }
        if let Some(port) = var("AETHERV_RMQ_EPMD_PORT") {
            cmd.env("ERL_EPMD_PORT", port);
        }
    }
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("rabbitmqctl is needed for this test and failed to run: {e}"));
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Force-closes, server-side, the one connection whose `connection_name` client property is
/// `name` (never any other connection; names carry a random suffix).
pub fn force_close_connection(name: &str) {
    let out = rabbitmqctl(&["list_connections", "pid", "client_properties", "-q"]);
    let mut closed = 0;
    for line in out.lines() {
        let Some((pid, props)) = line.split_once('\t') else {
            continue;
        };
        if props.contains(name) {
            rabbitmqctl(&["close_connection", pid, "test: forced close"]);
            closed += 1;
        }
    }
    assert_eq!(
        closed, 1,
        "expected exactly one connection named {name}: {out}"
    );
}
