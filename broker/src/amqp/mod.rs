//! The RabbitMQ broker (lapin): topology, confirmed publishing, and connection supervision.
//!
//! The broker is given one AMQP URL or several, comma-separated (the nodes of a cluster;
//! `addresses.rs`). One supervisor task owns the connection. When the connection dies it
//! publishes "no connection" on a `watch`, reconnects to the next address (each attempt
//! bounded by [`AmqpOptions::connect_timeout`]; after a full round of failed addresses it backs
//! off exponentially, capped by [`AmqpOptions::max_backoff`]), re-declares the base topology and every host declared so far,
//! and publishes the new connection with a higher generation number. Publishers wait for a live
//! connection (bounded by [`AmqpOptions::operation_timeout`]); consumers and event streams
//! watch the generation and re-subscribe on their own, all through one subscribe-with-backoff
//! helper (`subscription.rs`; used by `consumer.rs`, `stream.rs`, `leader.rs`). lapin's own auto-recovery is not used: the supervisor (`supervisor.rs`)
//! rebuilds everything, which is the pattern lapin's maintainers recommend and is simpler to
//! reason about; tested by closing the connection server-side and by restarting a private
//! RabbitMQ (`tests/chaos-rabbitmq.sh`).
//!
//! Job publishes use a small pool of confirm-mode channels with **one outstanding publish per
//! channel**: lapin pairs a `basic.return` with whichever confirm it resolves next, so with
//! several publishes in flight on one channel an unroutable job could be reported against the
//! wrong publish. Events are pipelined on one confirm channel: they all route to the one
//! stream queue, so either every event is returned or none is, and the pairing cannot mislead.
//! (`publish.rs`.)

mod addresses;
pub use addresses::broker_urls;
mod consumer;
mod fields;
mod leader;
mod publish;
mod requests;
mod stream;
mod subscription;
mod supervisor;

pub(crate) use consumer::{AmqpJobConsumer, AmqpSettle};
pub(crate) use leader::AmqpLeadership;
pub(crate) use stream::AmqpEventStream;

pub(crate) use publish::confirmation_result;
use publish::ChannelPool;
use supervisor::{close_connection, declare_host_on, supervise};

use crate::topology::valid_host;
use crate::types::{ConsumerImpl, LeaderImpl, StreamImpl};
use crate::{
    BrokerError, DeadLetter, EventStream, JobConsumer, Leadership, PublishError, QueueDepth,
    StreamOffset, Topology,
};
use aetherv_core::Event;
use fields::short;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Tuning of the AMQP broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AmqpOptions {
    /// The `connection_name` client property shown by `rabbitmqctl list_connections`
    /// (default `aetherv-<prefix>-<8 random hex>`).
    pub connection_name: Option<String>,
    /// How long an operation waits for a live connection before failing with
    /// [`BrokerError::Unavailable`] (default 15 s). Also bounds each publish.
    pub operation_timeout: Duration,
    /// Backoff cap between rounds of reconnect attempts (default 5 s; the first pause after
    /// 100 ms). A round tries every address once.
    pub max_backoff: Duration,
    /// Deadline of one connection attempt to one address, the AMQP handshake included
    /// (default 5 s): a node that accepts TCP and never answers does not hold up the others.
    pub connect_timeout: Duration,
    /// Confirm-mode channels for job publishes, i.e. concurrent job publishes (default 8).
    pub publisher_channels: usize,
    /// Prefetch of event-stream consumers (default 256).
    pub stream_prefetch: u16,
    /// How often a leader returns and re-takes its election token (default 10 min), so that
    /// RabbitMQ's consumer timeout (30 min by default) never takes leadership away.
    pub leader_renew_every: Duration,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            connection_name: None,
            operation_timeout: Duration::from_secs(15),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            publisher_channels: 8,
            stream_prefetch: 256,
            leader_renew_every: Duration::from_secs(10 * 60),
        }
    }
}

impl AmqpOptions {
    /// Sets the connection name.
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    /// Sets the leader token renewal interval.
    pub fn with_leader_renew_every(mut self, every: Duration) -> Self {
        self.leader_renew_every = every;
        self
    }

    /// Sets the deadline of one connection attempt.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the operation timeout.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }
}

/// The RabbitMQ broker. Cloning shares the supervised connection.
#[derive(Debug, Clone)]
pub struct AmqpBroker {
    shared: Arc<Shared>,
    guard: Arc<DropGuard>,
}

/// State shared by the broker handles, the supervisor, consumers and streams.
pub(crate) struct Shared {
    /// The broker's nodes, tried in order.
    addresses: Vec<addresses::Address>,
    /// The address the next connection attempt starts with: the one after the node of the
    /// last connection (it is likely the node that just went away).
    next_address: AtomicUsize,
    topology: Topology,
    options: AmqpOptions,
    conn_name: String,
    /// Every host declared so far, re-declared after a reconnect.
    hosts: Mutex<BTreeSet<String>>,
    /// Every election role joined so far (for [`AmqpBroker::delete_topology`]).
    roles: Mutex<BTreeSet<String>>,
    /// The current connection, `None` while reconnecting or after shutdown.
    live: watch::Sender<Option<Arc<Live>>>,
    shutdown: CancellationToken,
}

/// One established connection and its channels.
pub(crate) struct Live {
    generation: u64,
    conn: Connection,
    jobs: ChannelPool,
    events: tokio::sync::Mutex<Option<Channel>>,
    admin: tokio::sync::Mutex<Option<Channel>>,
}

/// Handles (broker, consumers, streams) show the connection's name, never its channels.
impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("connection_name", &self.conn_name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl AmqpBroker {
    /// Connects to the first of `url`'s addresses (one AMQP URL, or several comma-separated)
    /// that answers, declares the base topology, and starts the supervisor.
    pub async fn connect(
        url: &str,
        topology: Topology,
        options: AmqpOptions,
    ) -> Result<AmqpBroker, BrokerError> {
        let conn_name = options.connection_name.clone().unwrap_or_else(|| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            format!("aetherv-{}-{}", topology.prefix, &id[..8])
        });
        let (live, _) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let addresses = addresses::parse(url)?;
        let shared = Arc::new(Shared {
            addresses,
            next_address: AtomicUsize::new(0),
            topology,
            options,
            conn_name,
            hosts: Mutex::new(BTreeSet::new()),
            roles: Mutex::new(BTreeSet::new()),
            live,
            shutdown: shutdown.clone(),
        });
        let first = shared.establish(1).await?;
        shared.live.send_replace(Some(Arc::clone(&first)));
        tokio::spawn(supervise(Arc::clone(&shared), first));
        Ok(AmqpBroker {
            shared,
            guard: Arc::new(shutdown.drop_guard()),
        })
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// The `connection_name` client property of this broker's connection.
    pub fn connection_name(&self) -> &str {
        &self.shared.conn_name
    }

    /// The generation of the current connection (1 for the first, +1 per reconnect), or `None`
    /// while disconnected.
    pub fn connection_generation(&self) -> Option<u64> {
        self.shared.live.borrow().as_ref().map(|l| l.generation)
    }

    /// True while a connection is established (for readiness probes).
    pub fn is_connected(&self) -> bool {
        self.shared
            .live
            .borrow()
            .as_ref()
            .is_some_and(|l| l.conn.status().connected())
    }

    /// Declares and binds a host queue; remembered for re-declaration after reconnects.
    /// The declaration runs on a channel of its own, so callers may declare several hosts at
    /// once (a worker starting with many hosts does: see `aetherv_worker::Worker::run`).
    pub async fn declare_host(&self, host: &str) -> Result<(), BrokerError> {
        let host = valid_host(host).ok_or_else(|| BrokerError::InvalidHost(host.to_owned()))?;
        self.shared.declare_host_apart(&host).await
    }

    /// Publishes to the jobs exchange with `mandatory` and waits for the confirm.
    pub async fn publish_raw(&self, routing_key: &str, body: Vec<u8>) -> Result<(), PublishError> {
        self.publish_raw_with(routing_key, body, &crate::Headers::new())
            .await
    }

    /// [`AmqpBroker::publish_raw`] with string headers.
    pub async fn publish_raw_with(
        &self,
        routing_key: &str,
        body: Vec<u8>,
        headers: &crate::Headers,
    ) -> Result<(), PublishError> {
        let props = fields::message_properties(fields::headers_table(headers));
        let exchange = self.shared.topology.jobs_exchange();
        self.publish_with(&exchange, routing_key, &body, props)
            .await
    }

    /// Publishes an event to the events exchange (routing key = type) and waits for the confirm.
    pub async fn publish_event(&self, ev: &Event) -> Result<(), PublishError> {
        let exchange = short(&self.shared.topology.events_exchange())?;
        let key: ShortString = ev.type_name().into();
        let body = ev.to_vec();
        self.shared
            .with_live(|live| {
                let (exchange, key) = (exchange.clone(), key.clone());
                let body = &body;
                async move {
                    let confirm = live.publish_event(exchange, key, body).await?;
                    confirmation_result(&confirm, ev.type_name())
                }
            })
            .await
    }

    /// Sends an event to the events exchange without waiting for its confirm (see
    /// [`crate::PendingEvent`]). The send is retried on the next connection when the
    /// connection dies during it; a confirm lost with its connection is the caller's to redo.
    pub async fn send_event(&self, ev: &Event) -> Result<crate::PendingEvent, PublishError> {
        let exchange = short(&self.shared.topology.events_exchange())?;
        let key: ShortString = ev.type_name().into();
        let body = ev.to_vec();
        let confirm = self
            .shared
            .with_live(|live| {
                let (exchange, key) = (exchange.clone(), key.clone());
                let body = &body;
                async move { live.send_event(exchange, key, body).await }
            })
            .await?;
        Ok(crate::PendingEvent::amqp(confirm, ev.type_name()))
    }

    /// Declares the host queue and registers a consumer on it.
    pub async fn consume_jobs(
        &self,
        host: &str,
        consumer_tag: &str,
    ) -> Result<JobConsumer, BrokerError> {
        let host = valid_host(host).ok_or_else(|| BrokerError::InvalidHost(host.to_owned()))?;
        short(consumer_tag)?;
        // The subscription declares the queue on its own channel; a reconnect re-declares it.
        self.shared.remember_host(&host)?;
        let consumer = AmqpJobConsumer::start(
            Arc::clone(&self.shared),
            Arc::clone(&self.guard),
            Some(host),
            consumer_tag.to_owned(),
        )
        .await?;
        Ok(JobConsumer {
            inner: ConsumerImpl::Amqp(Box::new(consumer)),
        })
    }

    /// Reads a host queue's depth with a passive declare.
    pub async fn queue_depth(&self, host: &str) -> Result<QueueDepth, BrokerError> {
        let host = valid_host(host).ok_or_else(|| BrokerError::InvalidHost(host.to_owned()))?;
        let queue = short(&self.shared.topology.host_queue(&host))?;
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        self.shared
            .with_live(|live| {
                let queue = queue.clone();
                let host = host.clone();
                async move {
                    let (_serialized, ch) = live.admin_channel().await?;
                    match ch
                        .queue_declare(queue, passive, FieldTable::default())
                        .await
                    {
                        Ok(q) => Ok(QueueDepth {
                            ready: q.message_count(),
                            consumers: q.consumer_count(),
                        }),
                        // A passive declare of a missing queue closes the channel (404).
                        Err(_) if !ch.status().connected() && live.conn.status().connected() => {
                            Err(BrokerError::UnknownHost(host))
                        }
                        Err(e) => Err(e.into()),
                    }
                }
            })
            .await
    }

    /// Joins the leader election of `role` as `candidate`.
    pub async fn leadership(&self, role: &str, candidate: &str) -> Result<Leadership, BrokerError> {
        self.shared
            .roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(role.to_owned());
        let l = AmqpLeadership::start(
            Arc::clone(&self.shared),
            Arc::clone(&self.guard),
            role,
            candidate,
        )
        .await?;
        Ok(Leadership {
            inner: LeaderImpl::Amqp(Box::new(l)),
        })
    }

    /// Subscribes to the event stream from `from`.
    pub async fn replay_events(&self, from: StreamOffset) -> Result<EventStream, BrokerError> {
        let stream =
            AmqpEventStream::start(Arc::clone(&self.shared), Arc::clone(&self.guard), from).await?;
        Ok(EventStream {
            inner: StreamImpl::Amqp(Box::new(stream)),
        })
    }

    /// Takes up to `max` messages off the dead-letter queue within `wait`.
    pub async fn dead_letters(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let deadline = Instant::now() + wait;
        let queue = short(&self.shared.topology.dead_letter_queue())?;
        let mut out = Vec::new();
        let mut channel: Option<(u64, Channel)> = None;
        while out.len() < max {
            let live = self.shared.wait_live(0, deadline).await?;
            let ch = match &channel {
                Some((g, ch)) if *g == live.generation && ch.status().connected() => ch.clone(),
                _ => {
                    let ch = live.conn.create_channel().await?;
                    channel = Some((live.generation, ch.clone()));
                    ch
                }
            };
            match ch
                .basic_get(queue.clone(), BasicGetOptions::default())
                .await
            {
                Ok(Some(msg)) => {
                    let d = &msg.delivery;
                    let dead = fields::dead_letter_from(
                        d.routing_key.as_str(),
                        &d.properties,
                        d.data.clone(),
                    );
                    d.acker.ack(BasicAckOptions::default()).await?;
                    out.push(dead);
                }
                Ok(None) => {
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) if !live.conn.status().connected() => {
                    tracing::debug!(error = %e, "dead-letter read failed during reconnect");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some((_, ch)) = channel {
            let _ = ch.close(200, "OK".into()).await;
        }
        Ok(out)
    }

    /// Deletes every queue and exchange of this topology that this broker declared (host
    /// queues, election queues, dead-letter queue, event stream, exchanges), **with their
    /// messages**. For tests
    /// and teardown only.
    pub async fn delete_topology(&self) -> Result<(), BrokerError> {
        let t = &self.shared.topology;
        let mut queues: Vec<String> = snapshot(&self.shared.hosts)
            .iter()
            .map(|h| t.host_queue(h))
            .collect();
        queues.extend(
            snapshot(&self.shared.roles)
                .iter()
                .map(|r| t.leader_queue(r)),
        );
        queues.push(t.dead_letter_queue());
        queues.push(t.requests_queue());
        queues.push(t.events_stream());
        let exchanges = [
            t.jobs_exchange(),
            t.events_exchange(),
            t.dead_letter_exchange(),
            t.requests_exchange(),
        ];
        let deadline = Instant::now() + self.shared.options.operation_timeout;
        let live = self.shared.wait_live(0, deadline).await?;
        let ch = live.conn.create_channel().await?;
        for q in &queues {
            ch.queue_delete(short(q)?, QueueDeleteOptions::default())
                .await?;
        }
        for x in &exchanges {
            ch.exchange_delete(short(x)?, ExchangeDeleteOptions::default())
                .await?;
        }
        let _ = ch.close(200, "OK".into()).await;
        Ok(())
    }

    /// Shuts down: consumers and streams end, the connection is closed.
    pub async fn close(&self) {
        // Take the connection before telling the supervisor, so that only one closes it.
        let live = self.shared.live.send_replace(None);
        self.shared.shutdown.cancel();
        if let Some(live) = live {
            close_connection(&live.conn).await;
        }
    }
}

/// A copy of a remembered set (hosts, roles), taken without holding the lock across awaits.
fn snapshot(set: &Mutex<BTreeSet<String>>) -> Vec<String> {
    set.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

impl Shared {
    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    pub(crate) fn options(&self) -> &AmqpOptions {
        &self.options
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub(crate) fn subscribe_live(&self) -> watch::Receiver<Option<Arc<Live>>> {
        self.live.subscribe()
    }

    /// Waits for a connection of at least `min_generation`, until `deadline`.
    pub(crate) async fn wait_live(
        &self,
        min_generation: u64,
        deadline: Instant,
    ) -> Result<Arc<Live>, BrokerError> {
        let mut rx = self.live.subscribe();
        loop {
            if self.shutdown.is_cancelled() {
                return Err(BrokerError::Closed);
            }
            if let Some(live) = rx.borrow_and_update().as_ref() {
                if live.generation >= min_generation {
                    return Ok(Arc::clone(live));
                }
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(BrokerError::Closed);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BrokerError::Unavailable(self.options.operation_timeout));
                }
                _ = self.shutdown.cancelled() => return Err(BrokerError::Closed),
            }
        }
    }

    /// Runs `op` on a live connection; when it fails because the connection died, waits for
    /// the next connection and runs it again, all within the operation timeout. A job
    /// published just before the connection died may therefore be stored twice; consumers
    /// de-duplicate on the job id.
    async fn with_live<F, Fut, T, E>(&self, op: F) -> Result<T, E>
    where
        F: Fn(Arc<Live>) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: From<BrokerError> + std::fmt::Display,
    {
        let timeout = self.options.operation_timeout;
        let deadline = Instant::now() + timeout;
        let mut min_generation = 0;
        loop {
            let live = self.wait_live(min_generation, deadline).await?;
            let generation = live.generation;
            let conn_alive = {
                let live = Arc::clone(&live);
                move || live.conn.status().connected()
            };
            match tokio::time::timeout_at(deadline, op(live)).await {
                Err(_) => return Err(BrokerError::Unavailable(timeout).into()),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !conn_alive() && !self.shutdown.is_cancelled() => {
                    tracing::debug!(
                        generation,
                        error = %e,
                        "operation failed as the connection died; retrying"
                    );
                    min_generation = generation + 1;
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Remembers and declares a host queue on a channel opened for it and closed after, so
    /// declarations of different hosts run side by side.
    pub(crate) async fn declare_host_apart(&self, host: &str) -> Result<(), BrokerError> {
        self.remember_host(host)?;
        self.with_live(|live| async move {
            let ch = live.conn.create_channel().await?;
            let declared = declare_host_on(&ch, &self.topology, host).await;
            if declared.is_ok() {
                // A failed declaration has closed the channel already.
                let _ = ch.close(200, "declared".into()).await;
            }
            declared
        })
        .await
    }

    /// Adds `host` to the hosts declared on every new connection.
    pub(crate) fn remember_host(&self, host: &str) -> Result<(), BrokerError> {
        short(&self.topology.host_queue(host))?;
        short(host)?;
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_owned());
        Ok(())
    }
}
