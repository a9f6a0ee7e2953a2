//! Cluster placement on the broker (reference §8, case 8): a job that targets a cluster is
//! published with the routing key `cluster.<name>` by a producer that needs no inventory. Every
//! worker serving members of that cluster subscribes to the cluster's queue (single active
//! consumer, so one placer decides at a time); the placer asks every member it serves for a
//! fresh `host.inventory`, picks the connected member with the most free memory that fits
//! ([`crate::placement::place`]), and re-publishes the job, unchanged but for its target, to
//! that host's queue (confirmed) before it acks the cluster delivery. The host slot then runs it
//! like any other job.
//!
//! Crash safety: a placer killed between the re-publish and the ack gets the job redelivered
//! and may place it a second time; both copies carry the same job id, so the second run
//! replays the first one's operations from the host journal (idempotency keys) or finds its
//! tagged VM, and never builds a second VM. A job that fits nowhere fails with
//! `placement_failed` and is acked.

use crate::agent::HostAgent;
use crate::placement::{place, HostCapacity};
use crate::queue::{log_unsettled, QueueReader};
use crate::reporter::JobReporter;
use aetherv_broker::{Broker, JobDelivery};
use aetherv_core::{AgentOperation, AgentRequest, EventBody, JobEnvelope, Target};
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The pseudo-host (routing key and queue name part) of a cluster's placement queue.
pub fn cluster_key(cluster: &str) -> String {
    format!("cluster.{}", cluster.trim().to_ascii_lowercase())
}

/// Memory a job needs on its host, in GB (`gb_ram`; 0 when the spec names none).
pub fn memory_need_gb(job: &JobEnvelope) -> f64 {
    match job.spec.get("gb_ram") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Reads every member's capacity now; a member that does not answer counts as disconnected.
async fn capacities(
    cluster: &str,
    members: &[HostAgent],
    quiet: &CancellationToken,
) -> Vec<HostCapacity> {
    let calls = members.iter().map(|agent| async move {
        let req = AgentRequest::new(
            AgentOperation::HostInventory,
            Default::default(),
            "placement",
        );
        let mut ignore = |_line| {};
        let answer = tokio::time::timeout(
            Duration::from_secs(60),
            agent.call(&req, quiet, &mut ignore),
        )
        .await;
        let data = match answer {
            Ok(Ok(r)) if r.is_ok() => Some(r.data),
            _ => None,
        };
        let mut cap = data
            .as_ref()
            .and_then(|d| HostCapacity::from_inventory(d, true))
            .unwrap_or(HostCapacity {
                host: agent.host.clone(),
                cluster: None,
                connected: false,
                total_memory_gb: 0.0,
                vms: Vec::new(),
            });
        // The queue is named after the configured host, whatever the host calls itself.
        cap.host = agent.host.clone();
        if cap.cluster.is_none() {
            cap.cluster = Some(cluster.to_string());
        }
        cap
    });
    futures::future::join_all(calls).await
}

/// Places one delivery. Returns `Err` only when the broker failed (do not ack then).
async fn place_one(
    broker: &Broker,
    cluster: &str,
    members: &[HostAgent],
    d: &JobDelivery,
    quiet: &CancellationToken,
) -> Result<(), aetherv_broker::PublishError> {
    let job = &d.envelope;
    let mut reporter = JobReporter::new(broker.clone(), job.job_id);
    let need = memory_need_gb(job);
    let caps = capacities(cluster, members, quiet).await;
    match place(cluster, &caps, need) {
        Ok(host) => {
            let free = caps
                .iter()
                .find(|c| c.host == host)
                .map(HostCapacity::available_gb)
                .unwrap_or_default();
            let mut placed = job.clone();
            placed.target = Target::Host(host.clone());
            // The signature covers the cluster target it was made for: say which.
            let mut headers = d.headers.clone();
            if let Target::Cluster(c) = &job.target {
                headers
                    .entry(aetherv_core::signing::PLACED_FROM_HEADER.to_owned())
                    .or_insert_with(|| format!("cluster.{c}"));
            }
            broker.publish_job_with(&placed, &headers).await?;
            tracing::info!(job_id = %job.job_id, cluster, host, "placed");
            reporter
                .log(format!(
                    "placed on {host}: the member of cluster {cluster} with the most free memory \
                     ({free:.0} GB free, {need:.0} GB needed)"
                ))
                .await?;
        }
        Err(e) => {
            tracing::warn!(job_id = %job.job_id, cluster, error = %e, "placement failed");
            reporter
                .emit(EventBody::JobFailed {
                    code: "placement_failed".into(),
                    message: e.to_string(),
                    step: None,
                })
                .await?;
        }
    }
    reporter.settle().await
}

/// Serves the placement queue of `cluster` until `quiet` fires.
pub(crate) async fn cluster_placer(
    broker: Broker,
    cluster: String,
    members: Vec<HostAgent>,
    worker_id: String,
    quiet: CancellationToken,
) {
    let key = cluster_key(&cluster);
    let tag = format!("{worker_id}:{key}");
    let mut queue = QueueReader::new(&broker, &key, tag);
    while let Some(d) = queue.next(&quiet).await {
        let settled = match place_one(&broker, &cluster, &members, &d, &quiet).await {
            Ok(()) => d.ack().await,
            Err(e) => {
                tracing::warn!(cluster, error = %e, "cannot publish the placed job; returning it to the cluster queue");
                d.requeue().await
            }
        };
        log_unsettled(&key, settled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_memory_needs() {
        assert_eq!(cluster_key(" CLU01 "), "cluster.clu01");
        let mut job = JobEnvelope::from_slice(
            br#"{"v":1,"job_id":"5f0c6c1e-8d7e-4e55-9b1a-3f9a1f3e2b10","kind":"vm.create",
                "target":{"cluster":"clu01"},"spec":{"gb_ram":16},
                "requested_by":{"platform":"amqp","user_id":"t"},
                "created_at":"2026-11-29T00:00:00Z"}"#,
        )
        .expect("envelope");
        assert_eq!(memory_need_gb(&job), 16.0);
        job.spec
            .insert("gb_ram".into(), Value::String(" 8 ".into()));
        assert_eq!(memory_need_gb(&job), 8.0);
        job.spec.remove("gb_ram");
        assert_eq!(memory_need_gb(&job), 0.0);
    }
}
