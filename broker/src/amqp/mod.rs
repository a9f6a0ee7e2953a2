//! The RabbitMQ broker (lapin): topology, confirmed publishing, and connection supervision.
//!
//! One supervisor task owns the connection. When the connection dies it publishes "no
//! connection" on a `watch`, reconnects with exponential backoff (capped by
//! [`AmqpOptions::max_backoff`]), re-declares the base topology and every host declared so far,
//! and publishes the new connection with a higher generation number. Publishers wait for a live
//! connection (bounded by [`AmqpOptions::operation_timeout`]); consumers and event streams
//! watch the generation and re-subscribe on their own (see `consumer.rs`, `stream.rs`).
//! lapin's own auto-recovery is not used: the supervisor rebuilds everything, which is the
//! pattern lapin's maintainers recommend and is simpler to reason about.
//!
//! Job publishes use a small pool of confirm-mode channels with **one outstanding publish per
//! channel**: lapin pairs a `basic.return` with whichever confirm it resolves next, so with
//! several publishes in flight on one channel an unroutable job could be reported against the
//! wrong publish. Events (never `mandatory`) are pipelined on one confirm channel.

mod consumer;
mod fields;
mod stream;

pub(crate) use consumer::{AmqpJobConsumer, AmqpSettle};
pub(crate) use stream::AmqpEventStream;

use crate::topology::valid_host;
use crate::types::{ConsumerImpl, StreamImpl};
use crate::{
    BrokerError, DeadLetter, EventStream, JobConsumer, PublishError, StreamOffset, Topology,
};
use aetherv_core::Event;
use fields::short;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
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
    /// Backoff cap between reconnect attempts (default 5 s; first retry after 100 ms).
    pub max_backoff: Duration,
    /// Confirm-mode channels for job publishes, i.e. concurrent job publishes (default 8).
    pub publisher_channels: usize,
    /// Prefetch of event-stream consumers (default 256).
    pub stream_prefetch: u16,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            connection_name: None,
            operation_timeout: Duration::from_secs(15),
            max_backoff: Duration::from_secs(5),
            publisher_channels: 8,
            stream_prefetch: 256,
        }
    }
}

impl AmqpOptions {
    /// Sets the connection name.
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    /// Sets the operation timeout.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }
}

/// The RabbitMQ broker. Cloning shares the supervised connection.
#[derive(Clone)]
pub struct AmqpBroker {
    shared: Arc<Shared>,
    guard: Arc<DropGuard>,
}

impl std::fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("connection_name", &self.shared.conn_name)
            .finish_non_exhaustive()
    }
}

/// State shared by the broker handles, the supervisor, consumers and streams.
pub(crate) struct Shared {
    url: String,
    topology: Topology,
    options: AmqpOptions,
    conn_name: String,
    /// Every host declared so far, re-declared after a reconnect.
    hosts: Mutex<BTreeSet<String>>,
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

impl AmqpBroker {
    /// Connects, declares the base topology, and starts the supervisor.
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
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            topology,
            options,
            conn_name,
            hosts: Mutex::new(BTreeSet::new()),
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

    /// Declares and binds a host queue; remembered for re-declaration after reconnects.
    pub async fn declare_host(&self, host: &str) -> Result<(), BrokerError> {
        let host = valid_host(host).ok_or_else(|| BrokerError::InvalidHost(host.to_owned()))?;
        self.shared.declare_host(&host).await
    }

    /// Publishes to the jobs exchange with `mandatory` and waits for the confirm.
    pub async fn publish_raw(&self, routing_key: &str, body: Vec<u8>) -> Result<(), PublishError> {
        let exchange = short(&self.shared.topology.jobs_exchange())?;
        let key = short(routing_key)?;
        let shared = &self.shared;
        shared
            .with_live(|live| {
                let (exchange, key) = (exchange.clone(), key.clone());
                let body = &body;
                async move {
                    let confirm = live
                        .jobs
                        .publish(
                            &live.conn,
                            exchange,
                            key,
                            body,
                            fields::message_properties(None),
                        )
                        .await?;
                    confirmation_result(&confirm, routing_key)
                }
            })
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

    /// Declares the host queue and registers a consumer on it.
    pub async fn consume_jobs(
        &self,
        host: &str,
        consumer_tag: &str,
    ) -> Result<JobConsumer, BrokerError> {
        let host = valid_host(host).ok_or_else(|| BrokerError::InvalidHost(host.to_owned()))?;
        short(consumer_tag)?;
        self.shared.declare_host(&host).await?;
        let consumer = AmqpJobConsumer::start(
            Arc::clone(&self.shared),
            Arc::clone(&self.guard),
            host,
            consumer_tag.to_owned(),
        )
        .await?;
        Ok(JobConsumer {
            inner: ConsumerImpl::Amqp(Box::new(consumer)),
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
    /// queues, dead-letter queue, event stream, exchanges), **with their messages**. For tests
    /// and teardown only.
    pub async fn delete_topology(&self) -> Result<(), BrokerError> {
        let t = &self.shared.topology;
        let hosts: Vec<String> = self
            .shared
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut queues: Vec<String> = hosts.iter().map(|h| t.host_queue(h)).collect();
        queues.push(t.dead_letter_queue());
        queues.push(t.events_stream());
        let exchanges = [
            t.jobs_exchange(),
            t.events_exchange(),
            t.dead_letter_exchange(),
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
        self.shared.shutdown.cancel();
        let live = self.shared.live.send_replace(None);
        if let Some(live) = live {
            close_connection(&live.conn).await;
        }
    }
}

fn confirmation_result(confirm: &Confirmation, routing_key: &str) -> Result<(), PublishError> {
    match confirm {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable {
            routing_key: routing_key.to_owned(),
        }),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
    }
}

async fn close_connection(conn: &Connection) {
    if conn.status().connected() {
        let closing = conn.close(200, "closing".into());
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), closing).await {
            tracing::debug!(error = %e, "closing the amqp connection failed");
        }
    }
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

    /// Connects and declares everything: the base topology and every known host.
    async fn establish(&self, generation: u64) -> Result<Arc<Live>, BrokerError> {
        let props = ConnectionProperties::default()
            .with_connection_name(self.conn_name.clone().into())
            .with_client_property("product".into(), "aetherv".into());
        let conn = tokio::time::timeout(
            self.options.operation_timeout,
            Connection::connect(&self.url, props),
        )
        .await
        .map_err(|_| BrokerError::Unavailable(self.options.operation_timeout))??;
        let admin = conn.create_channel().await?;
        declare_base(&admin, &self.topology).await?;
        let hosts: Vec<String> = self
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        for host in &hosts {
            declare_host_on(&admin, &self.topology, host).await?;
        }
        let events = conn.create_channel().await?;
        events
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        tracing::info!(
            generation,
            connection_name = %self.conn_name,
            hosts = hosts.len(),
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

    /// Remembers and declares a host queue.
    pub(crate) async fn declare_host(&self, host: &str) -> Result<(), BrokerError> {
        short(&self.topology.host_queue(host))?;
        short(host)?;
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_owned());
        self.with_live(|live| async move {
            let ch = live.admin_channel().await?;
            declare_host_on(&ch, &self.topology, host).await
        })
        .await
    }
}

impl Live {
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The admin channel (declarations), re-created when a failed declaration closed it.
    async fn admin_channel(&self) -> Result<Channel, BrokerError> {
        let mut slot = self.admin.lock().await;
        match &*slot {
            Some(ch) if ch.status().connected() => Ok(ch.clone()),
            _ => {
                let ch = self.conn.create_channel().await?;
                *slot = Some(ch.clone());
                Ok(ch)
            }
        }
    }

    /// Publishes an event on the shared events channel. The lock covers only the send, so
    /// confirms are pipelined while sequence numbers stay in send order.
    async fn publish_event(
        &self,
        exchange: ShortString,
        key: ShortString,
        body: &[u8],
    ) -> Result<Confirmation, BrokerError> {
        let pending = {
            let mut slot = self.events.lock().await;
            let ch = match &*slot {
                Some(ch) if ch.status().connected() => ch.clone(),
                _ => {
                    let ch = self.conn.create_channel().await?;
                    ch.confirm_select(ConfirmSelectOptions::default()).await?;
                    *slot = Some(ch.clone());
                    ch
                }
            };
            ch.basic_publish(
                exchange,
                key,
                BasicPublishOptions::default(),
                body,
                fields::message_properties(None),
            )
            .await?
        };
        Ok(pending.await?)
    }

    /// Publishes a copy of a message to the dead-letter exchange with reason headers.
    pub(crate) async fn publish_dead_letter(
        &self,
        topology: &Topology,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<(), PublishError> {
        let exchange = short(&topology.dead_letter_exchange())?;
        let confirm = self
            .jobs
            .publish(
                &self.conn,
                exchange,
                short(routing_key)?,
                body,
                fields::message_properties(Some(headers)),
            )
            .await?;
        confirmation_result(&confirm, routing_key)
    }
}

/// Confirm-mode channels for `mandatory` publishes, each used by one publish at a time.
struct ChannelPool {
    free: Mutex<Vec<Channel>>,
    permits: Semaphore,
}

impl ChannelPool {
    fn new(size: usize) -> Self {
        ChannelPool {
            free: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        }
    }

    async fn publish(
        &self,
        conn: &Connection,
        exchange: ShortString,
        key: ShortString,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<Confirmation, BrokerError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| BrokerError::Closed)?;
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.retain(|ch| ch.status().connected());
            free.pop()
        };
        let ch = match reused {
            Some(ch) => ch,
            None => {
                let ch = conn.create_channel().await?;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                ch
            }
        };
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        // When this future is dropped before the confirm, the channel is dropped (and closed)
        // rather than returned, so a late confirm or return never reaches another publish.
        let confirm = ch
            .basic_publish(exchange, key, options, body, props)
            .await?
            .await?;
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(ch);
        Ok(confirm)
    }
}

/// Declares exchanges and queues that do not depend on hosts.
async fn declare_base(ch: &Channel, t: &Topology) -> Result<(), BrokerError> {
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
async fn declare_host_on(ch: &Channel, t: &Topology, host: &str) -> Result<(), BrokerError> {
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

/// Owns the connection: waits for it to die, then rebuilds it with backoff until shutdown.
async fn supervise(shared: Arc<Shared>, mut live: Arc<Live>) {
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
                    tracing::warn!(error = %e, ?backoff, "amqp reconnect failed; retrying");
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(shared.options.max_backoff);
                }
            }
        };
        shared.live.send_replace(Some(Arc::clone(&live)));
    }
    shared.live.send_replace(None);
    close_connection(&live.conn).await;
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
