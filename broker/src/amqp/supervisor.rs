//! The connection supervisor and the idempotent topology declarations it replays.
//!
//! The supervisor owns the connection: it waits for it to die, publishes "no connection",
//! reconnects (each round tries every broker address once, starting with the one after the
//! node that was lost; exponential backoff between rounds), re-declares everything, and
//! publishes the new connection. Declarations are idempotent: declaring what exists with the same arguments is a
//! no-op; different arguments fail with PRECONDITION_FAILED.

use super::fields::{self, short};
use super::publish::ChannelPool;
use super::{addresses, snapshot, Live, Shared};
use crate::{BrokerError, Topology};
use futures::StreamExt;
use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::atomic::Ordering;
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

impl Shared {
    /// One round over the addresses, starting with the one after the last connection's: the
    /// first that connects and takes the declarations wins. The last error when none does.
    pub(super) async fn establish(&self, generation: u64) -> Result<Arc<Live>, BrokerError> {
        let n = self.addresses.len();
        let start = self.next_address.load(Ordering::Relaxed) % n;
        let mut last = BrokerError::Closed;
        for i in 0..n {
            let index = (start + i) % n;
            let address = &self.addresses[index];
            match self.establish_on(address, generation).await {
                Ok(live) => {
                    self.next_address.store((index + 1) % n, Ordering::Relaxed);
                    return Ok(live);
                }
                Err(e) => {
                    if n > 1 {
                        tracing::warn!(
                            address = address.shown(),
                            error = %aetherv_core::error_chain(&e),
                            "amqp connection to this node failed; trying the next one"
                        );
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Connects to one address and declares everything: the base topology and every known
    /// host.
    async fn establish_on(
        &self,
        address: &addresses::Address,
        generation: u64,
    ) -> Result<Arc<Live>, BrokerError> {
        let props = ConnectionProperties::default()
            .with_connection_name(self.conn_name.clone().into())
            .with_client_property("product".into(), "aetherv".into());
        let timeout = self.options.connect_timeout;
        let conn = tokio::time::timeout(timeout, Connection::connect(address.url(), props))
            .await
            .map_err(|_| BrokerError::Unavailable(timeout))??;
        // The declarations are part of the attempt: a node that accepts the connection and
        // cannot declare (no quorum reachable from it) is given up for the next one.
        let declared =
            tokio::time::timeout(self.options.operation_timeout, self.declare_all(&conn))
                .await
                .unwrap_or(Err(BrokerError::Unavailable(
                    self.options.operation_timeout,
                )));
        let (admin, events, hosts) = match declared {
            Ok(d) => d,
            Err(e) => {
                close_connection(&conn).await;
                return Err(e);
            }
        };
        tracing::info!(
            generation,
            connection_name = %self.conn_name,
            address = address.shown(),
            hosts,
            "amqp connection established, topology declared"
        );
        Ok(Arc::new(Live {
            generation,
            jobs: ChannelPool::new(self.options.publisher_channels),
            conn,
            events: tokio::sync::Mutex::new(Some(events)),
            admin: tokio::sync::Mutex::new(Some(admin)),
        }))
    }

    /// The base topology and every known host on a new connection; its admin and event
    /// channels and how many hosts were declared.
    async fn declare_all(
        &self,
        conn: &Connection,
    ) -> Result<(Channel, Channel, usize), BrokerError> {
        let mut admin = conn.create_channel().await?;
        declare_base(&admin, &self.topology).await?;
        let hosts = snapshot(&self.hosts);
        // One host whose queue cannot be declared (e.g. pre-declared with other arguments)
        // must not keep the whole connection down; its consumers keep retrying on their own.
        for host in &hosts {
            if let Err(e) = declare_host_on(&admin, &self.topology, host).await {
                tracing::warn!(host, error = %e, "re-declaring a host queue failed");
                if !admin.status().connected() {
                    admin = conn.create_channel().await?;
                }
            }
        }
        let events = conn.create_channel().await?;
        events
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((admin, events, hosts.len()))
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
