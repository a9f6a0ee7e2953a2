//! Failover across the nodes of a three-node RabbitMQ cluster the test starts itself
//! (`scripts/rabbitmq-cluster.sh`, Debian's rabbitmq-server; stopped and removed on drop): the
//! client is given the three nodes' URLs, its node is killed with `kill -9`, and it continues
//! on another node with every job delivered.

use crate::support::{job, next_within, unique_topology};
use aetherv_broker::{AmqpOptions, Broker};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A running cluster: its state dir and one URL per node.
pub struct Cluster {
    dir: String,
    pub urls: Vec<String>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/rabbitmq-cluster.sh")
}

impl Cluster {
    /// Starts three clustered nodes; panics (with the script's output) when they do not start.
    pub fn start() -> Cluster {
        let out = Command::new(script())
            .arg("start")
            .output()
            .expect("run scripts/rabbitmq-cluster.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "the three-node cluster did not start:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let export = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("no {name} in the script's output:\n{stdout}"))
                .to_owned()
        };
        Cluster {
            dir: export("AETHERV_RMQ_CLUSTER_DIR"),
            urls: export("AETHERV_RMQ_CLUSTER_URLS")
                .split(' ')
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Runs a command of the script on this cluster; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(script())
            .args(["--dir", &self.dir])
            .args(args)
            .output()
            .expect("run scripts/rabbitmq-cluster.sh");
        assert!(
            out.status.success(),
            "rabbitmq-cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["--dir", &self.dir, "stop"])
            .status();
    }
}

fn generation(b: &Broker) -> Option<u64> {
    match b {
        Broker::Amqp(a) => a.connection_generation(),
        Broker::InProc(_) => None,
    }
}

/// The members of `queue` as `list_queues` on `node` reports them.
fn members(cluster: &Cluster, node: &str, queue: &str) -> usize {
    let out = cluster.run(&[
        "ctl",
        node,
        "list_queues",
        "name",
        "members",
        "--no-table-headers",
    ]);
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(queue))
        .unwrap_or_else(|| panic!("no queue {queue} in:\n{out}"));
    line.matches('@').count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_node_is_killed_continues_on_another_node_and_jobs_keep_flowing() {
    let cluster = Cluster::start();
    let url = cluster.urls.join(",");
    let topology = unique_topology();
    let options = || {
        AmqpOptions::default()
            .with_operation_timeout(Duration::from_secs(30))
            .with_connect_timeout(Duration::from_secs(3))
    };
    // Both clients start on node 1, the first address.
    let producer = Broker::connect_with(&url, topology.clone(), options())
        .await
        .expect("connect the producer");
    let worker = Broker::connect_with(&url, topology.clone(), options())
        .await
        .expect("connect the worker");
    producer.declare_host("hv01").await.expect("declare hv01");
    // Quorum queues and the stream are replicated on all three nodes.
    for queue in [
        topology.host_queue("hv01"),
        topology.events_stream(),
        topology.dead_letter_queue(),
        topology.requests_queue(),
    ] {
        assert_eq!(members(&cluster, "1", &queue), 3, "{queue}");
    }

    let mut consumer = worker.consume_jobs("hv01", "w1").await.expect("consume");
    let jobs: Vec<_> = (0..40).map(|_| job("hv01")).collect();
    for j in &jobs[..20] {
        producer
            .publish_job(j)
            .await
            .expect("publish before the kill");
    }
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let d = next_within(&mut consumer, 10_000)
            .await
            .expect("a job before the kill");
        seen.insert(d.envelope.job_id);
        d.ack().await.expect("ack before the kill");
    }
    let before = (generation(&producer), generation(&worker));
    assert_eq!(before, (Some(1), Some(1)));

    cluster.run(&["kill", "1"]);

    // The producer fails over and publishes the rest (each publish waits for a connection).
    for j in &jobs[20..] {
        producer
            .publish_job(j)
            .await
            .expect("publish after the kill");
    }
    // The consumer re-subscribes on another node and gets every job (an unacked one may come
    // twice: at least once).
    while seen.len() < jobs.len() {
        let Some(d) = next_within(&mut consumer, 60_000).await else {
            panic!(
                "jobs stopped flowing after the kill: {} of {}",
                seen.len(),
                jobs.len()
            );
        };
        seen.insert(d.envelope.job_id);
        d.ack().await.ok();
    }
    let expected: BTreeSet<_> = jobs.iter().map(|j| j.job_id).collect();
    assert_eq!(seen, expected);
    assert!(generation(&producer) >= Some(2));
    assert!(generation(&worker) >= Some(2));

    // Node 1 comes back into the cluster; its replicas catch up.
    cluster.run(&["restart", "1"]);
    assert_eq!(members(&cluster, "1", &topology.host_queue("hv01")), 3);
    drop(consumer);
    if let Broker::Amqp(b) = &producer {
        b.delete_topology().await.ok();
    }
    producer.close().await;
    worker.close().await;
}

#[tokio::test]
async fn every_address_is_tried_before_the_connect_fails() {
    // Two closed ports, then nothing: the error comes after both were tried, never naming the
    // password.
    let closed = |p: u16| format!("amqp://guest:s3cret-pw@127.0.0.1:{p}/%2f");
    let url = format!("{},{}", closed(1), closed(2));
    let e = Broker::connect(&url, unique_topology())
        .await
        .expect_err("nothing listens");
    assert!(!format!("{e:?} {e}").contains("s3cret-pw"), "{e:?}");
    let e = Broker::connect(
        "amqp://guest:s3cret-pw@127.0.0.1:notaport/%2f",
        unique_topology(),
    )
    .await
    .expect_err("not a URL");
    assert_eq!(
        e.to_string(),
        "broker address 1 of 1 is not a valid AMQP URL"
    );
}
