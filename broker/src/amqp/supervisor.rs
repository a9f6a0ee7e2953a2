//! The connection supervisor and the idempotent topology declarations it replays.
//!
//! The supervisor owns the connection: it waits for it to die, publishes "no connection",
//! reconnects (each round tries every broker address once, starting with the one after the
//! node that was lost; exponential backoff between rounds), re-declares everything, and
//! publishes the new connection. Declarations are idempotent: declaring what exists with the same arguments is a
//! no-op; different arguments fail with PRECONDITION_FAILED.

use super::fields::{self, short};
use super::{Live, Shared};
use crate::{BrokerError, Topology};
use futures::StreamExt;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind};
use std::sync::Arc;
use std::time::Duration;

/// Owns the connection: waits for it to die, then rebuilds it on the next address that
/// answers, with backoff between rounds of addresses, until shutdown.
pub(super) async fn supervise(shared: Arc<Shared>, mut live: Arc<Live>) {
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = wait_dead(&live.conn) => {}
        }
        let generation = live.generation + 1;
        tracing::warn!(
            connection_name = %shared.conn_name,
            "amqp connection lost; reconnecting"
        );
        shared.live.send_replace(None);
        drop(live);
        let mut backoff = Duration::from_millis(100);
        live = loop {
            let attempt = tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                r = shared.establish(generation) => r,
            };
            match attempt {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(
                        error = %aetherv_core::error_chain(&e),
                        ?backoff,
                        "amqp reconnect failed on every address; retrying"
                    );
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(shared.options.max_backoff);
                }
            }
        };
        aetherv_metrics::metrics().broker_reconnected();
        shared.live.send_replace(Some(Arc::clone(&live)));
    }
    // Exactly one side closes a connection: `Broker::close` when it took the connection out
    // first, else this. Two `connection.close` on one connection make the second `close-ok`
    // unexpected (lapin logs an UNEXPECTED-FRAME error at every clean exit).
    if shared.live.send_replace(None).is_some() {
        close_connection(&live.conn).await;
    }
}

/// Resolves when the connection is no longer usable.
///
/// Cancel safety: cancel-safe; it only observes.
async fn wait_dead(conn: &Connection) {
    let mut events = conn.events_listener();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(lapin::Event::Error(e)) => {
                    tracing::debug!(error = %e, "amqp connection error event");
                    if !conn.status().connected() {
                        return;
                    }
                }
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => {
                if !conn.status().connected() {
                    return;
                }
            }
        }
    }
}

pub(super) async fn close_connection(conn: &Connection) {
    if conn.status().connected() {
        let closing = conn.close(200, "closing".into());
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), closing).await {
            tracing::debug!(error = %e, "closing the amqp connection failed");
        }
    }
}

/// Declares exchanges and queues that do not depend on hosts.
pub(super) async fn declare_base(ch: &Channel, t: &Topology) -> Result<(), BrokerError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let queue_durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let jobs = short(&t.jobs_exchange())?;
    let dlx = short(&t.dead_letter_exchange())?;
    let dead = short(&t.dead_letter_queue())?;
    let events = short(&t.events_exchange())?;
    let stream = short(&t.events_stream())?;
    ch.exchange_declare(jobs, ExchangeKind::Direct, durable, FieldTable::default())
        .await?;
    ch.exchange_declare(
        dlx.clone(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(dead.clone(), queue_durable, fields::dead_queue_args())
        .await?;
    ch.queue_bind(
        dead,
        dlx,
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        events.clone(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    let requests = short(&t.requests_exchange())?;
    let requests_in = short(&t.requests_queue())?;
    ch.exchange_declare(
        requests.clone(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        requests_in.clone(),
        queue_durable,
        fields::host_queue_args(t),
    )
    .await?;
    ch.queue_bind(
        requests_in,
        requests,
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(stream.clone(), queue_durable, fields::stream_args(t))
        .await?;
    ch.queue_bind(
        stream,
        events,
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Declares one host queue and binds it with the host as routing key.
pub(super) async fn declare_host_on(
    ch: &Channel,
    t: &Topology,
    host: &str,
) -> Result<(), BrokerError> {
    let queue = short(&t.host_queue(host))?;
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.clone(), options, fields::host_queue_args(t))
        .await?;
    ch.queue_bind(
        queue,
        short(&t.jobs_exchange())?,
        short(host)?,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}
