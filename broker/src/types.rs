//! The values the broker hands out: job consumers and deliveries, event streams, dead letters.
//!
//! Each is a thin front over the AMQP or in-process implementation, so callers never see which
//! broker they talk to.

use crate::amqp::{AmqpEventStream, AmqpJobConsumer, AmqpLeadership, AmqpSettle};
use crate::inproc::{InProcEventStream, InProcJobConsumer, InProcLeadership, InProcSettle};
use crate::BrokerError;
use aetherv_core::{ContractError, Event, JobEnvelope};
use chrono::{DateTime, Utc};

/// Where an event replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOffset {
    /// The oldest retained event.
    First,
    /// The last stored chunk (RabbitMQ) / the last event (in-process), then live.
    Last,
    /// Only events published after the subscription.
    Next,
    /// From this offset (as returned by [`EventStream::next`]).
    Offset(u64),
    /// From the first event stored at or after this time (RabbitMQ: second precision, chunk
    /// granularity, so a few earlier events may appear).
    Timestamp(DateTime<Utc>),
}

/// A message taken out of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The routing key the message was published with (the host).
    pub routing_key: String,
    /// The reason code: `x-aetherv-reason` when set (a `ContractError::code()` or the worker's
    /// code), else RabbitMQ's own dead-letter reason (`rejected`, `delivery_limit`, ...).
    pub reason: Option<String>,
    /// The `x-aetherv-detail` header, when set.
    pub detail: Option<String>,
    /// The original body.
    pub body: Vec<u8>,
}

/// The depth of one host queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Jobs waiting, not counting unacked deliveries.
    pub ready: u32,
    /// Registered consumers (the active one and the standbys).
    pub consumers: u32,
}

/// A stream of job deliveries from one host queue.
///
/// Keep it alive while a delivery is being worked on: dropping it gives the host's slot to the
/// next standby consumer and sends the unacked delivery back to the head of the queue.
#[derive(Debug)]
pub struct JobConsumer {
    pub(crate) inner: ConsumerImpl,
}

#[derive(Debug)]
pub(crate) enum ConsumerImpl {
    Amqp(Box<AmqpJobConsumer>),
    InProc(InProcJobConsumer),
}

impl JobConsumer {
    /// The next job. Undecodable messages (malformed JSON, unknown `v`, wrong shape) are
    /// dead-lettered here with `x-aetherv-reason` = `ContractError::code()` and logged, never
    /// yielded. The AMQP consumer re-subscribes transparently after a reconnect. With prefetch
    /// 1, the next job arrives only after the previous one is settled.
    ///
    /// Returns `None` only after the broker is closed or shut down.
    ///
    /// Cancel safety: this method is cancel-safe. Dropping the future before it completes loses
    /// no message: a message is handed out only by the final, synchronous step, and
    /// dead-lettering runs in a task of its own.
    pub async fn next(&mut self) -> Option<JobDelivery> {
        match &mut self.inner {
            ConsumerImpl::Amqp(c) => c.next().await,
            ConsumerImpl::InProc(c) => c.next().await,
        }
    }

    /// The queue this consumer reads.
    pub fn queue(&self) -> &str {
        match &self.inner {
            ConsumerImpl::Amqp(c) => c.queue(),
            ConsumerImpl::InProc(c) => c.queue(),
        }
    }

    /// The host (lower-cased) whose queue this consumer reads.
    pub fn host(&self) -> &str {
        match &self.inner {
            ConsumerImpl::Amqp(c) => c.host(),
            ConsumerImpl::InProc(c) => c.host(),
        }
    }
}

/// A stream of requests from the requests queue (AMQP only; single active consumer, so only
/// the leading bot receives them).
#[derive(Debug)]
pub struct RequestConsumer {
    pub(crate) inner: Box<AmqpJobConsumer>,
}

impl RequestConsumer {
    /// The next request, undecoded. `None` only after the broker is closed.
    ///
    /// Cancel safety: cancel-safe, like [`JobConsumer::next`].
    pub async fn next(&mut self) -> Option<RequestDelivery> {
        self.inner.next_request().await
    }
}

/// One request as a producer published it. Settle it once, like a [`JobDelivery`].
#[derive(Debug)]
pub struct RequestDelivery {
    /// The body, not decoded: the bot decodes it and dead-letters what is malformed.
    pub body: Vec<u8>,
    /// The AMQP `user_id` property (RabbitMQ refuses a publish whose `user_id` is not the
    /// connection's user), when set.
    pub user_id: Option<String>,
    /// The `reply_to` property, when set.
    pub reply_to: Option<String>,
    /// The `correlation_id` property, when set.
    pub correlation_id: Option<String>,
    /// True when delivered before (a bot died holding it).
    pub redelivered: bool,
    pub(crate) settle: Settle,
}

impl RequestDelivery {
    /// Removes the request from its queue: it was answered.
    pub async fn ack(self) -> Result<(), BrokerError> {
        Settle::ack(self.settle).await
    }

    /// Moves the request to the dead-letter queue with a reason and detail.
    pub async fn dead_letter(self, reason_code: &str, detail: &str) -> Result<(), BrokerError> {
        Settle::dead_letter(self.settle, reason_code, detail).await
    }
}

/// One delivered job. Settle it exactly once with [`ack`](Self::ack),
/// [`requeue`](Self::requeue) or [`dead_letter`](Self::dead_letter); a delivery dropped unsettled
/// stays unacked until its consumer goes away, then is redelivered.
#[derive(Debug)]
pub struct JobDelivery {
    /// The decoded envelope.
    pub envelope: JobEnvelope,
    /// The message's string headers (signature, key id, placement origin).
    pub headers: crate::Headers,
    /// True when the broker delivered this message before (crash, requeue, consumer handover).
    pub redelivered: bool,
    /// How many times the message was delivered before and returned (`x-delivery-count` on
    /// quorum queues); 0 on the first delivery.
    pub delivery_count: u32,
    pub(crate) settle: Settle,
}

#[derive(Debug)]
pub(crate) enum Settle {
    Amqp(Box<AmqpSettle>),
    InProc(InProcSettle),
}

impl Settle {
    async fn ack(self) -> Result<(), BrokerError> {
        match self {
            Settle::Amqp(s) => s.ack().await,
            Settle::InProc(s) => s.ack(),
        }
    }

    async fn dead_letter(self, reason_code: &str, detail: &str) -> Result<(), BrokerError> {
        let r = match self {
            Settle::Amqp(s) => s.dead_letter(reason_code, detail).await,
            Settle::InProc(s) => s.dead_letter(reason_code, detail),
        };
        if r.is_ok() {
            aetherv_metrics::metrics().dead_lettered(reason_code);
        }
        r
    }
}

impl JobDelivery {
    /// One string header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).cloned()
    }

    /// The attempt number, 1-based (`delivery_count + 1`), for `job.started`/`job.resumed`.
    pub fn attempt(&self) -> u32 {
        self.delivery_count.saturating_add(1)
    }

    /// Removes the job from the queue: it is done.
    /// [`BrokerError::DeliveryLost`] when the channel died meanwhile (the job will be
    /// redelivered).
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.settle.ack().await
    }

    /// Returns the job to the head of its queue for another delivery (counts towards the
    /// delivery limit; past it the job is dead-lettered with reason `delivery_limit`).
    pub async fn requeue(self) -> Result<(), BrokerError> {
        match self.settle {
            Settle::Amqp(s) => s.requeue().await,
            Settle::InProc(s) => s.requeue(),
        }
    }

    /// Moves the job to the dead-letter queue with `x-aetherv-reason` = `reason_code` and
    /// `x-aetherv-detail` = `detail`, then removes it from its queue.
    pub async fn dead_letter(self, reason_code: &str, detail: &str) -> Result<(), BrokerError> {
        self.settle.dead_letter(reason_code, detail).await
    }
}

/// The event log, from a start offset, then live.
#[derive(Debug)]
pub struct EventStream {
    pub(crate) inner: StreamImpl,
}

#[derive(Debug)]
pub(crate) enum StreamImpl {
    Amqp(Box<AmqpEventStream>),
    InProc(InProcEventStream),
}

impl EventStream {
    /// The next event and its offset. Undecodable events are logged and skipped. The AMQP
    /// stream resumes after the last offset seen when the connection is rebuilt.
    ///
    /// Returns `None` only after the broker is closed or shut down.
    ///
    /// Cancel safety: cancel-safe; an event is consumed only by the final, synchronous step.
    pub async fn next(&mut self) -> Option<(u64, Event)> {
        loop {
            match self.next_of(&[]).await? {
                Seen::Event(offset, ev) => return Some((offset, ev)),
                Seen::Other(_) => continue,
            }
        }
    }

    /// Like [`EventStream::next`], but only events whose type is in `types` are decoded (all
    /// when `types` is empty); any other is [`Seen::Other`], known by its routing key alone.
    /// A reader that wants a few kinds out of a busy stream (the workers' cancel watcher)
    /// pays for the rest nothing but the delivery, and still sees it pass.
    ///
    /// Cancel safety: cancel-safe, as [`EventStream::next`].
    pub async fn next_of(&mut self, types: &[&str]) -> Option<Seen> {
        match &mut self.inner {
            StreamImpl::Amqp(s) => s.next(types).await,
            StreamImpl::InProc(s) => s.next().await.map(|(offset, ev)| {
                if wanted(types, ev.type_name()) {
                    Seen::Event(offset, ev)
                } else {
                    Seen::Other(offset)
                }
            }),
        }
    }
}

/// Whether an event of type `type_name` is among `types` (all are when `types` is empty).
pub(crate) fn wanted(types: &[&str], type_name: &str) -> bool {
    types.is_empty() || types.contains(&type_name)
}

/// What [`EventStream::next_of`] read.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// An event of a wanted type, decoded, and its offset.
    Event(u64, Event),
    /// The offset of an event of another type (not decoded).
    Other(u64),
}

/// A candidate in a leader election (one active bot at a time). The first candidate to join
/// leads; when it goes away (dropped, crashed, connection lost) the next one takes over.
/// Dropping it resigns.
#[derive(Debug)]
pub struct Leadership {
    pub(crate) inner: LeaderImpl,
}

#[derive(Debug)]
pub(crate) enum LeaderImpl {
    Amqp(Box<AmqpLeadership>),
    InProc(InProcLeadership),
}

impl Leadership {
    /// Waits until this candidate leads. Returns `false` when the broker is closed. The AMQP
    /// candidate re-joins by itself after reconnects.
    ///
    /// Cancel safety: cancel-safe; a candidate keeps its place in line.
    pub async fn acquire(&mut self) -> bool {
        match &mut self.inner {
            LeaderImpl::Amqp(l) => l.acquire().await,
            LeaderImpl::InProc(l) => l.acquire().await,
        }
    }

    /// True while this candidate leads; false as soon as it knows its connection is gone.
    pub fn is_leader(&self) -> bool {
        match &self.inner {
            LeaderImpl::Amqp(l) => l.is_leader(),
            LeaderImpl::InProc(l) => l.is_leader(),
        }
    }

    /// Resolves when leadership is lost (connection loss, broker closed); at once when not
    /// leading. Keep it polled while leading: the AMQP leader also renews its token here before
    /// RabbitMQ's consumer timeout would take it away. After it resolves, stop acting as leader
    /// and call [`Leadership::acquire`] again to queue up.
    ///
    /// Cancel safety: cancel-safe.
    pub async fn lost(&mut self) {
        match &mut self.inner {
            LeaderImpl::Amqp(l) => l.lost().await,
            LeaderImpl::InProc(l) => l.lost().await,
        }
    }
}

/// Logs a job message that will be dead-lettered because it does not decode (both brokers).
pub(crate) fn warn_undecodable(queue: &str, e: &ContractError) {
    tracing::warn!(
        queue,
        reason = e.code(),
        error = %e,
        "dead-lettering an undecodable job message"
    );
}
