//! Removing a topology from RabbitMQ: every queue and exchange one prefix declared. For tests
//! (each run uses its own prefix and must leave nothing behind) and for retiring a prefix.

use crate::Topology;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Channel, Connection};
use std::future::Future;

/// Deletes the queues and exchanges of `topology` on the RabbitMQ at `url`: the host queues of
/// `hosts` (cluster placement queues are named `cluster.<name>`), the leader queues of
/// `roles`, the event stream, the dead letters and the requests. Best effort: what does not exist, or cannot
/// be deleted, is skipped. Returns how many were deleted.
pub async fn delete_topology(
    url: &str,
    topology: &Topology,
    hosts: &[&str],
    roles: &[&str],
) -> usize {
    let Ok(conn) = Connection::connect(url, lapin::ConnectionProperties::default()).await else {
        return 0;
    };
    let mut queues: Vec<String> = hosts.iter().map(|h| topology.host_queue(h)).collect();
    queues.extend(roles.iter().map(|r| topology.leader_queue(r)));
    queues.push(topology.events_stream());
    queues.push(topology.dead_letter_queue());
    queues.push(topology.requests_queue());
    queues.sort();
    queues.dedup();
    let mut deleted = delete_each(&conn, queues, |ch, q| async move {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .is_ok()
    })
    .await;
    let exchanges = [
        topology.jobs_exchange(),
        topology.events_exchange(),
        topology.dead_letter_exchange(),
        topology.requests_exchange(),
    ];
    deleted += delete_each(&conn, exchanges, |ch, x| async move {
        ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .is_ok()
    })
    .await;
    let _ = conn.close(0, "topology deleted".into()).await;
    deleted
}

/// Runs `delete` on each name, each on a fresh channel (a failed delete closes its channel);
/// stops when no channel can be opened. Returns how many deletes succeeded.
async fn delete_each<F: Future<Output = bool>>(
    conn: &Connection,
    names: impl IntoIterator<Item = String>,
    delete: impl Fn(Channel, String) -> F,
) -> usize {
    let mut deleted = 0;
    for name in names {
        let Ok(ch) = conn.create_channel().await else {
            break;
        };
        if delete(ch, name).await {
            deleted += 1;
        }
    }
    deleted
}
