//! Inventory polling: `host.inventory` on every host at an interval, and right after each job
//! on the host ended (so a read after a job sees what it did), published as `host.inventory`
//! events (reachable or not). Hosts are staggered across the interval.

use crate::agent::HostAgent;
use aetherv_broker::Broker;
use aetherv_core::{AgentOperation, AgentRequest, Event, EventBody};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// When a host is polled.
pub(crate) struct Schedule {
    /// Between polls.
    pub interval: Duration,
    /// Before the first poll (staggering hosts).
    pub offset: Duration,
    /// Raised when a job on the host ended: poll now.
    pub job_ended: std::sync::Arc<tokio::sync::Notify>,
}

/// Polls one host until `quiet` fires.
pub(crate) async fn poll_host(
    broker: Broker,
    agent: HostAgent,
    schedule: Schedule,
    quiet: CancellationToken,
) {
    tokio::select! {
        _ = quiet.cancelled() => return,
        _ = tokio::time::sleep(schedule.offset) => {}
    }
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(schedule.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = quiet.cancelled() => return,
            _ = tick.tick() => {}
            _ = schedule.job_ended.notified() => tick.reset(),
        }
        let req = AgentRequest::new(
            AgentOperation::HostInventory,
            Default::default(),
            "inventory",
        );
        let mut ignore = |_line| {};
        // Boxed: the call (with a redeployment inside) is most of this task's size, and a
        // worker keeps one such task per host.
        let body = match Box::pin(agent.call(&req, &quiet, &mut ignore)).await {
            Ok(r) if r.is_ok() => EventBody::HostInventory {
                host: agent.host.clone(),
                reachable: true,
                inventory: r.data,
                error: None,
            },
            Ok(r) => EventBody::HostInventory {
                host: agent.host.clone(),
                reachable: true,
                inventory: serde_json::Value::Null,
                error: Some(r.message),
            },
            Err(e) => EventBody::HostInventory {
                host: agent.host.clone(),
                reachable: false,
                inventory: serde_json::Value::Null,
                error: Some(aetherv_core::error_chain(&e)),
            },
        };
        if let Err(e) = Box::pin(broker.publish_event(&Event::for_host(seq, body))).await {
            tracing::warn!(host = %agent.host, error = %e, "cannot publish inventory");
        }
        seq += 1;
    }
}
