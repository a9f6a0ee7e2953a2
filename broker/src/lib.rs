//! aetherv-broker: how jobs and events move between the bot, AMQP producers and workers.
//!
//! Owns the RabbitMQ topology of DESIGN.md (jobs exchange → one quorum queue per host with a
//! single active consumer and a dead-letter exchange; events exchange → stream queue), the
//! confirmed publisher (`mandatory`, so an unknown host is an error and never a silent drop),
//! job consumers with manual ack that dead-letter undecodable messages with a reason header,
//! event-log replay, and connection supervision (reconnect with backoff, re-declare,
//! re-subscribe).
//!
//! [`Broker`] is an enum over two implementations with one API: [`AmqpBroker`] (lapin) and
//! [`InProcBroker`] (tokio primitives, for `aetherv demo`). One contract test suite runs against
//! both. This crate speaks domain types ([`JobEnvelope`], [`Event`]); AMQP field tables never
//! leak to callers. It must not know about jobs' meaning, chat, or WinRM.
//!
//! # Guarantees
//!
//! - **At least once.** A job is removed only by [`JobDelivery::ack`] (or dead-lettering). A
//!   consumer that dies, is dropped, or loses its connection returns its unacked job to the
//!   head of the queue, `redelivered` and with `delivery_count + 1`. A publish interrupted by a
//!   connection loss is retried on the next connection, so a job can also be stored twice.
//!   Consumers must be idempotent on `job_id`.
//! - **One job per host at a time** across every process: single active consumer + prefetch 1.
//!   Keep the [`JobConsumer`] alive while working on its delivery.
//! - **FIFO per host**, including returns (they go back to the head).
//! - **No silent drops**: an unroutable job is [`PublishError::Unroutable`]; a job past the
//!   delivery limit ([`Topology::delivery_limit`]) and every undecodable message lands in the
//!   dead-letter queue with a reason.
//! - RabbitMQ 3.10 closes a channel whose delivery stays unacked longer than its
//!   `consumer_timeout` (30 min by default, server-wide). The consumer re-subscribes and the
//!   job is redelivered; raise `consumer_timeout` on the server above the longest job.

mod amqp;
mod error;
mod inproc;
mod teardown;
mod topology;
mod types;

pub use amqp::{broker_urls, AmqpBroker, AmqpOptions};
pub use error::{BrokerError, PublishError};
pub use inproc::InProcBroker;
pub use teardown::delete_topology;
pub use topology::{
    normalize_host, Topology, DEFAULT_DELIVERY_LIMIT, DEFAULT_EVENTS_MAX_AGE,
    DEFAULT_EVENTS_MAX_BYTES, DEFAULT_EVENTS_SEGMENT_BYTES,
};
pub use types::{
    DeadLetter, EventStream, JobConsumer, JobDelivery, Leadership, QueueDepth, RequestConsumer,
    RequestDelivery, Seen, StreamOffset,
};

use aetherv_core::{Event, JobEnvelope};
use std::time::Duration;

/// String headers of a job message, by name.
pub type Headers = std::collections::BTreeMap<String, String>;

/// The header carrying the stable reason code of a dead letter (`ContractError::code()` for
/// undecodable messages, or the worker's own code).
pub const REASON_HEADER: &str = "x-aetherv-reason";

/// The header carrying the human-readable detail of a dead letter.
pub const DETAIL_HEADER: &str = "x-aetherv-detail";

/// The broker: RabbitMQ or in-process, with the same semantics.
///
/// Cloning is cheap and shares the connection. The broker shuts down when [`Broker::close`] is
/// called or when the last clone, consumer and stream are dropped.
#[derive(Clone, Debug)]
pub enum Broker {
    /// RabbitMQ over AMQP 0.9.1 (lapin), with a supervised connection.
    Amqp(AmqpBroker),
    /// Everything in memory, for `aetherv demo` and tests.
    InProc(InProcBroker),
}

impl Broker {
    /// Connects to RabbitMQ at `url` (one AMQP URL, or several comma-separated: the nodes of a
    /// cluster, tried in turn, and moved between when a connection fails or drops), declares the base topology (jobs, events, dead-letter
    /// exchanges and queues) and starts the connection supervisor, which reconnects with
    /// backoff, re-declares the topology (with every host declared so far) and lets consumers
    /// re-subscribe. Fails when the first connection cannot be made.
    pub async fn connect(url: &str, topology: Topology) -> Result<Broker, BrokerError> {
        AmqpBroker::connect(url, topology, AmqpOptions::default())
            .await
            .map(Broker::Amqp)
    }

    /// Like [`Broker::connect`], with explicit options (connection name, timeouts, pool size).
    pub async fn connect_with(
        url: &str,
        topology: Topology,
        options: AmqpOptions,
    ) -> Result<Broker, BrokerError> {
        AmqpBroker::connect(url, topology, options)
            .await
            .map(Broker::Amqp)
    }

    /// A fresh in-process broker with the base topology declared.
    pub fn in_process(topology: Topology) -> Broker {
        Broker::InProc(InProcBroker::new(topology))
    }

    /// The topology (names and limits) this broker uses.
    pub fn topology(&self) -> &Topology {
        match self {
            Broker::Amqp(b) => b.topology(),
            Broker::InProc(b) => b.topology(),
        }
    }

    /// True while the broker can take work: connected (AMQP) or not closed (in-process).
    /// For readiness probes; operations wait for a reconnect by themselves.
    pub fn is_connected(&self) -> bool {
        match self {
            Broker::Amqp(b) => b.is_connected(),
            Broker::InProc(b) => b.is_connected(),
        }
    }

    /// Declares the queue of `host` and binds it to the jobs exchange with the lower-cased host
    /// as routing key. Idempotent. The AMQP broker re-declares it after every reconnect.
    pub async fn declare_host(&self, host: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Amqp(b) => b.declare_host(host).await,
            Broker::InProc(b) => b.declare_host(host),
        }
    }

    /// Publishes a job to its target's queue (routing key = `job.target.routing_key()`),
    /// persistent, `mandatory`, and waits for the publisher confirm.
    /// [`PublishError::Unroutable`] when no queue is bound for the routing key. While the AMQP
    /// connection is being rebuilt, waits for it (up to [`AmqpOptions::operation_timeout`]).
    ///
    /// Cancel safety: not cancel-safe in outcome: a cancelled publish may or may not have been
    /// stored. Nothing else is left behind (the publishing channel is discarded).
    pub async fn publish_job(&self, job: &JobEnvelope) -> Result<(), PublishError> {
        self.publish_job_with(job, &Headers::new()).await
    }

    /// [`Broker::publish_job`] with string headers (the bot's signature, a placer's origin);
    /// consumers read them from [`JobDelivery::headers`].
    pub async fn publish_job_with(
        &self,
        job: &JobEnvelope,
        headers: &Headers,
    ) -> Result<(), PublishError> {
        let key = job.target.routing_key();
        match self {
            Broker::Amqp(b) => b.publish_raw_with(&key, job.to_vec(), headers).await,
            Broker::InProc(b) => b.publish_raw_with(&key, job.to_vec(), headers),
        }
    }

    /// Publishes arbitrary bytes to the jobs exchange on the same path as
    /// [`Broker::publish_job`] (for tests and foreign producers).
    pub async fn publish_raw(&self, routing_key: &str, body: Vec<u8>) -> Result<(), PublishError> {
        match self {
            Broker::Amqp(b) => b.publish_raw(routing_key, body).await,
            Broker::InProc(b) => b.publish_raw(routing_key, body),
        }
    }

    /// Appends an event to the event log (routing key = event type) and waits for the confirm.
    pub async fn publish_event(&self, ev: &Event) -> Result<(), PublishError> {
        match self {
            Broker::Amqp(b) => b.publish_event(ev).await,
            Broker::InProc(b) => b.publish_event(ev),
        }
    }

    /// Sends an event now, in order with this process's other events, and returns its confirm
    /// to await later ([`PendingEvent::confirmed`]): a caller that needs many events confirmed
    /// (a job's events before its ack) pays one round trip for all of them, not one each.
    pub async fn send_event(&self, ev: &Event) -> Result<PendingEvent, PublishError> {
        match self {
            Broker::Amqp(b) => b.send_event(ev).await,
            Broker::InProc(b) => b.publish_event(ev).map(|()| PendingEvent::done()),
        }
    }

    /// Starts consuming `host`'s queue (declaring it if needed): prefetch 1, manual ack, and a
    /// single active consumer across all processes; other consumers wait as standbys and take
    /// over when the active one goes away.
    ///
    /// Cancel safety: cancel-safe. A consumer registered by a cancelled call is dropped with
    /// its channel, so it never holds the host's slot.
    pub async fn consume_jobs(
        &self,
        host: &str,
        consumer_tag: &str,
    ) -> Result<JobConsumer, BrokerError> {
        match self {
            Broker::Amqp(b) => b.consume_jobs(host, consumer_tag).await,
            Broker::InProc(b) => b.consume_jobs(host, consumer_tag),
        }
    }

    /// Starts consuming the requests queue (`<prefix>.requests.in`; single active consumer,
    /// prefetch 1). `None` for the in-process broker: no producer outside the process can
    /// reach it, so it has no requests exchange.
    pub async fn consume_requests(
        &self,
        consumer_tag: &str,
    ) -> Result<Option<RequestConsumer>, BrokerError> {
        match self {
            Broker::Amqp(b) => b.consume_requests(consumer_tag).await.map(Some),
            Broker::InProc(_) => Ok(None),
        }
    }

    /// Replies to a producer (default exchange, routing key `reply_to`, its
    /// `correlation_id`). The in-process broker has no producers to answer: a no-op.
    pub async fn publish_reply(
        &self,
        reply_to: &str,
        correlation_id: Option<&str>,
        body: &[u8],
    ) -> Result<(), PublishError> {
        match self {
            Broker::Amqp(b) => b.publish_reply(reply_to, correlation_id, body).await,
            Broker::InProc(_) => Ok(()),
        }
    }

    /// Joins the leader election of `role` (e.g. `bot`) as `candidate` (an instance id, shown
    /// as the consumer tag). One leader per role across all processes; see [`Leadership`].
    ///
    /// Cancel safety: cancel-safe (a candidate made by a cancelled call resigns).
    pub async fn leadership(&self, role: &str, candidate: &str) -> Result<Leadership, BrokerError> {
        match self {
            Broker::Amqp(b) => b.leadership(role, candidate).await,
            Broker::InProc(b) => b.leadership(role, candidate),
        }
    }

    /// How many jobs wait in `host`'s queue (not counting the one being worked on) and how
    /// many consumers are registered (one active, the rest standbys). After a publish, `ready`
    /// is the job's position in the queue. Fails when the host queue was never declared.
    pub async fn queue_depth(&self, host: &str) -> Result<QueueDepth, BrokerError> {
        match self {
            Broker::Amqp(b) => b.queue_depth(host).await,
            Broker::InProc(b) => b.queue_depth(host),
        }
    }

    /// Reads the event log from `from`, then follows it live.
    ///
    /// Cancel safety: cancel-safe (a subscription made by a cancelled call is dropped).
    pub async fn replay_events(&self, from: StreamOffset) -> Result<EventStream, BrokerError> {
        match self {
            Broker::Amqp(b) => b.replay_events(from).await,
            Broker::InProc(b) => b.replay_events(from),
        }
    }

    /// Removes (acks) up to `max` dead letters from the dead-letter queue, waiting at most
    /// `wait` for them to arrive. Returns as soon as `max` are collected.
    pub async fn dead_letters(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        match self {
            Broker::Amqp(b) => b.dead_letters(max, wait).await,
            Broker::InProc(b) => b.dead_letters(max, wait).await,
        }
    }

    /// Stops the broker: consumers and streams end (`next()` returns `None`), publishes fail
    /// with [`BrokerError::Closed`], and the AMQP connection is closed. Unacked jobs go back to
    /// their queues.
    pub async fn close(&self) {
        match self {
            Broker::Amqp(b) => b.close().await,
            Broker::InProc(b) => b.close(),
        }
    }
}

/// The broker's confirm of an event sent with [`Broker::send_event`].
#[must_use = "an event is only known to be stored once its confirm is awaited"]
pub struct PendingEvent(Pending);

enum Pending {
    Done,
    Amqp {
        confirm: lapin::PublisherConfirm,
        type_name: &'static str,
    },
}

impl PendingEvent {
    fn done() -> Self {
        PendingEvent(Pending::Done)
    }

    fn amqp(confirm: lapin::PublisherConfirm, type_name: &'static str) -> Self {
        PendingEvent(Pending::Amqp { confirm, type_name })
    }

    /// Waits for the broker's confirm: `Ok` once the event is stored. An error of kind
    /// [`PublishError::Broker`] means the connection was lost before the confirm: the event
    /// may or may not be stored, and sending it again is the caller's choice.
    pub async fn confirmed(self) -> Result<(), PublishError> {
        match self.0 {
            Pending::Done => Ok(()),
            Pending::Amqp { confirm, type_name } => {
                let confirm = confirm.await?;
                amqp::confirmation_result(&confirm, type_name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    fn send_future<F: std::future::Future + Send>(_: F) {}

    #[test]
    fn handles_and_futures_can_move_across_tasks() {
        send_sync::<Broker>();
        send::<JobConsumer>();
        send::<JobDelivery>();
        send::<EventStream>();
        send_sync::<BrokerError>();
        send_sync::<PublishError>();
        let b = Broker::in_process(Topology::default());
        send_future(b.publish_raw("hv01", Vec::new()));
        send_future(b.consume_jobs("hv01", "w"));
        send_future(b.replay_events(StreamOffset::First));
        send_future(b.dead_letters(1, Duration::ZERO));
    }

    #[tokio::test]
    async fn consumer_and_stream_futures_are_send() {
        let b = Broker::in_process(Topology::default());
        let mut c = b
            .consume_jobs("hv01", "w")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        send_future(c.next());
        let mut s = b
            .replay_events(StreamOffset::First)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        send_future(s.next());
    }
}
