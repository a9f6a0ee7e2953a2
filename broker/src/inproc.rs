//! The in-process broker: RabbitMQ's semantics for this system, in memory, for `aetherv demo`.
//!
//! Per-host FIFO queues with a single active consumer (the first registered; the next one takes
//! over when it is dropped) and prefetch 1, returns to the head of the queue with a delivery
//! count and a delivery limit, unroutable errors for unknown hosts, a dead-letter list with
//! reasons, and an append-only event log with offsets. One mutex guards all state and one
//! `Notify` wakes every waiter on any change; that is plenty for a demo's load. Nothing here
//! persists across processes.

use crate::topology::valid_host;
use crate::types::{warn_undecodable, ConsumerImpl, LeaderImpl, Settle, StreamImpl};
use crate::{
    BrokerError, DeadLetter, EventStream, JobConsumer, JobDelivery, Leadership, PublishError,
    QueueDepth, StreamOffset, Topology,
};
use aetherv_core::{Event, JobEnvelope};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The in-memory broker. Cloning shares the same queues.
#[derive(Debug, Clone)]
pub struct InProcBroker {
    inner: Arc<Inner>,
}

struct Inner {
    topology: Topology,
    state: Mutex<State>,
    /// Woken (`notify_waiters`) on changes to the event log, the dead letters, and on close.
    /// Host queues have their own `Notify`, so a publish wakes only that host's consumers.
    changed: Notify,
    closed: CancellationToken,
}

/// Handles show the broker's topology prefix, never its queues' contents.
impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("prefix", &self.topology.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    hosts: HashMap<String, HostQueue>,
    dead: VecDeque<DeadLetter>,
    events: Vec<(DateTime<Utc>, Event)>,
    /// Candidates per election role, in join order; the first leads.
    leaders: HashMap<String, Vec<u64>>,
    next_id: u64,
}

#[derive(Default)]
struct HostQueue {
    /// Woken on every change to this queue (publish, settle, consumer gone).
    notify: Arc<Notify>,
    ready: VecDeque<Message>,
    /// Consumer ids in registration order; the first is the active one.
    consumers: Vec<u64>,
    in_flight: Option<InFlight>,
}

struct InFlight {
    consumer: u64,
    tag: u64,
    message: Message,
}

#[derive(Clone)]
struct Message {
    routing_key: String,
    body: Vec<u8>,
    headers: crate::Headers,
    delivery_count: u32,
    redelivered: bool,
}

impl Inner {
    /// Waits until `ready` yields a value, asking again after every wake-up of `notify`;
    /// `None` once the broker is closed.
    ///
    /// Cancel safety: cancel-safe; `ready` runs synchronously, and the wake-up is registered
    /// before it runs, so no change is missed between asking and waiting.
    async fn wait_for<T>(
        &self,
        notify: &Notify,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.is_cancelled() {
                return None;
            }
            if let Some(v) = ready() {
                return Some(v);
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closed.cancelled() => return None,
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the demo; keep going with the data as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed.is_cancelled() {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    /// Puts a message back at the head of its queue, or dead-letters it past the limit.
    fn return_message(&self, state: &mut State, host: &str, mut message: Message) {
        message.delivery_count = message.delivery_count.saturating_add(1);
        message.redelivered = true;
        if message.delivery_count > self.topology.delivery_limit {
            tracing::warn!(host, "job exceeded the delivery limit; dead-lettering it");
            state.dead.push_back(DeadLetter {
                routing_key: message.routing_key,
                reason: Some("delivery_limit".to_owned()),
                detail: None,
                body: message.body,
            });
        } else if let Some(q) = state.hosts.get_mut(host) {
            q.ready.push_front(message);
        }
    }
}

impl InProcBroker {
    /// A fresh, empty broker.
    pub fn new(topology: Topology) -> Self {
        InProcBroker {
            inner: Arc::new(Inner {
                topology,
                state: Mutex::new(State::default()),
                changed: Notify::new(),
                closed: CancellationToken::new(),
            }),
        }
    }

    /// The topology (names and limits).
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Declares a host queue; idempotent.
    pub fn declare_host(&self, host: &str) -> Result<(), BrokerError> {
        self.inner.check_open()?;
        let host = valid_host(host).ok_or_else(|| BrokerError::InvalidHost(host.to_owned()))?;
        self.inner.lock().hosts.entry(host).or_default();
        Ok(())
    }

    /// Appends a message to the queue bound to `routing_key`, or fails with `Unroutable`.
    pub fn publish_raw(&self, routing_key: &str, body: Vec<u8>) -> Result<(), PublishError> {
        self.publish_raw_with(routing_key, body, &crate::Headers::new())
    }

    /// [`InProcBroker::publish_raw`] with string headers.
    pub fn publish_raw_with(
        &self,
        routing_key: &str,
        body: Vec<u8>,
        headers: &crate::Headers,
    ) -> Result<(), PublishError> {
        self.inner.check_open()?;
        let mut state = self.inner.lock();
        let Some(queue) = state.hosts.get_mut(routing_key) else {
            return Err(PublishError::Unroutable {
                routing_key: routing_key.to_owned(),
            });
        };
        queue.ready.push_back(Message {
            routing_key: routing_key.to_owned(),
            body,
            headers: headers.clone(),
            delivery_count: 0,
            redelivered: false,
        });
        let notify = Arc::clone(&queue.notify);
        drop(state);
        notify.notify_waiters();
        Ok(())
    }

    /// Appends an event to the log.
    pub fn publish_event(&self, ev: &Event) -> Result<(), PublishError> {
        self.inner.check_open()?;
        self.inner.lock().events.push((Utc::now(), ev.clone()));
        self.inner.changed.notify_waiters();
        Ok(())
    }

    /// Registers a consumer on a host queue (declaring it); the first registered is active.
    pub fn consume_jobs(&self, host: &str, consumer_tag: &str) -> Result<JobConsumer, BrokerError> {
        self.inner.check_open()?;
        let host = valid_host(host).ok_or_else(|| BrokerError::InvalidHost(host.to_owned()))?;
        let mut state = self.inner.lock();
        state.next_id += 1;
        let id = state.next_id;
        let queue = state.hosts.entry(host.clone()).or_default();
        queue.consumers.push(id);
        let notify = Arc::clone(&queue.notify);
        drop(state);
        tracing::debug!(host, consumer_tag, "in-process consumer registered");
        Ok(JobConsumer {
            inner: ConsumerImpl::InProc(InProcJobConsumer {
                queue: self.inner.topology.host_queue(&host),
                inner: Arc::clone(&self.inner),
                host,
                id,
                notify,
            }),
        })
    }

    /// Joins the election of `role`; the first candidate leads.
    pub fn leadership(&self, role: &str, candidate: &str) -> Result<Leadership, BrokerError> {
        self.inner.check_open()?;
        let mut state = self.inner.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.leaders.entry(role.to_owned()).or_default().push(id);
        drop(state);
        tracing::debug!(role, candidate, "in-process leader candidate joined");
        Ok(Leadership {
            inner: LeaderImpl::InProc(InProcLeadership {
                inner: Arc::clone(&self.inner),
                role: role.to_owned(),
                id,
            }),
        })
    }

    /// The depth of a declared host queue.
    pub fn queue_depth(&self, host: &str) -> Result<QueueDepth, BrokerError> {
        self.inner.check_open()?;
        let host = valid_host(host).ok_or_else(|| BrokerError::InvalidHost(host.to_owned()))?;
        let state = self.inner.lock();
        let q = state
            .hosts
            .get(&host)
            .ok_or(BrokerError::UnknownHost(host))?;
        Ok(QueueDepth {
            ready: u32::try_from(q.ready.len()).unwrap_or(u32::MAX),
            consumers: u32::try_from(q.consumers.len()).unwrap_or(u32::MAX),
        })
    }

    /// A stream over the event log from `from`.
    pub fn replay_events(&self, from: StreamOffset) -> Result<EventStream, BrokerError> {
        self.inner.check_open()?;
        let state = self.inner.lock();
        let len = state.events.len();
        let pos = match from {
            StreamOffset::First => 0,
            StreamOffset::Last => len.saturating_sub(1),
            StreamOffset::Next => len,
            StreamOffset::Offset(o) => usize::try_from(o).unwrap_or(usize::MAX),
            StreamOffset::Timestamp(t) => state
                .events
                .iter()
                .position(|(at, _)| *at >= t)
                .unwrap_or(len),
        };
        drop(state);
        Ok(EventStream {
            inner: StreamImpl::InProc(InProcEventStream {
                inner: Arc::clone(&self.inner),
                pos,
            }),
        })
    }

    /// Takes up to `max` dead letters, waiting at most `wait`.
    pub async fn dead_letters(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.inner.lock();
                while out.len() < max {
                    match state.dead.pop_front() {
                        Some(d) => out.push(d),
                        None => break,
                    }
                }
            }
            if out.len() >= max || self.inner.closed.is_cancelled() {
                return Ok(out);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(out),
                _ = self.inner.closed.cancelled() => return Ok(out),
            }
        }
    }

    /// Closes the broker: consumers and streams end, publishes fail.
    pub fn close(&self) {
        self.inner.closed.cancel();
        self.inner.changed.notify_waiters();
    }

    /// False once closed.
    pub fn is_connected(&self) -> bool {
        !self.inner.closed.is_cancelled()
    }
}

/// An in-process consumer of one host queue.
#[derive(Debug)]
pub(crate) struct InProcJobConsumer {
    inner: Arc<Inner>,
    host: String,
    queue: String,
    id: u64,
    notify: Arc<Notify>,
}

impl InProcJobConsumer {
    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) async fn next(&mut self) -> Option<JobDelivery> {
        self.inner.wait_for(&self.notify, || self.try_take()).await
    }

    /// Takes the head of the queue when this consumer is active and holds nothing unsettled.
    /// Undecodable messages are dead-lettered on the way.
    fn try_take(&self) -> Option<JobDelivery> {
        let mut state = self.inner.lock();
        let state = &mut *state;
        let q = state.hosts.get_mut(&self.host)?;
        if q.consumers.first() != Some(&self.id) || q.in_flight.is_some() {
            return None;
        }
        let mut dead_lettered = false;
        let taken = loop {
            let Some(message) = q.ready.pop_front() else {
                break None;
            };
            match JobEnvelope::from_slice(&message.body) {
                Ok(envelope) => {
                    state.next_id += 1;
                    let tag = state.next_id;
                    let delivery = JobDelivery {
                        envelope,
                        headers: message.headers.clone(),
                        redelivered: message.redelivered,
                        delivery_count: message.delivery_count,
                        settle: Settle::InProc(InProcSettle {
                            inner: Arc::clone(&self.inner),
                            host: self.host.clone(),
                            tag,
                        }),
                    };
                    q.in_flight = Some(InFlight {
                        consumer: self.id,
                        tag,
                        message,
                    });
                    break Some(delivery);
                }
                Err(e) => {
                    warn_undecodable(&self.queue, &e);
                    state.dead.push_back(DeadLetter {
                        routing_key: message.routing_key,
                        reason: Some(e.code().to_owned()),
                        detail: Some(e.to_string()),
                        body: message.body,
                    });
                    dead_lettered = true;
                }
            }
        };
        if dead_lettered {
            self.inner.changed.notify_waiters();
        }
        taken
    }
}

impl Drop for InProcJobConsumer {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        let state = &mut *state;
        let Some(q) = state.hosts.get_mut(&self.host) else {
            return;
        };
        q.consumers.retain(|c| *c != self.id);
        let returned = match &q.in_flight {
            Some(f) if f.consumer == self.id => q.in_flight.take(),
            _ => None,
        };
        if let Some(f) = returned {
            self.inner.return_message(state, &self.host, f.message);
        }
        q_notify(state, &self.host);
        self.inner.changed.notify_waiters();
    }
}

/// Wakes the consumers of one host queue.
fn q_notify(state: &State, host: &str) {
    if let Some(q) = state.hosts.get(host) {
        q.notify.notify_waiters();
    }
}

/// Settles one in-process delivery.
#[derive(Debug)]
pub(crate) struct InProcSettle {
    inner: Arc<Inner>,
    host: String,
    tag: u64,
}

impl InProcSettle {
    /// Removes the in-flight message when it is still this delivery's.
    fn take(&self, state: &mut State) -> Result<Message, BrokerError> {
        let q = state
            .hosts
            .get_mut(&self.host)
            .ok_or(BrokerError::DeliveryLost)?;
        match &q.in_flight {
            Some(f) if f.tag == self.tag => q
                .in_flight
                .take()
                .map(|f| f.message)
                .ok_or(BrokerError::DeliveryLost),
            _ => Err(BrokerError::DeliveryLost),
        }
    }

    fn settle(&self, f: impl FnOnce(&Inner, &mut State, Message)) -> Result<(), BrokerError> {
        let mut state = self.inner.lock();
        let message = self.take(&mut state)?;
        f(&self.inner, &mut state, message);
        q_notify(&state, &self.host);
        drop(state);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    pub(crate) fn ack(&self) -> Result<(), BrokerError> {
        self.settle(|_, _, _| {})
    }

    pub(crate) fn requeue(&self) -> Result<(), BrokerError> {
        let host = self.host.clone();
        self.settle(|inner, state, message| inner.return_message(state, &host, message))
    }

    pub(crate) fn dead_letter(&self, reason_code: &str, detail: &str) -> Result<(), BrokerError> {
        self.settle(|_, state, message| {
            state.dead.push_back(DeadLetter {
                routing_key: message.routing_key,
                reason: Some(reason_code.to_owned()),
                detail: Some(detail.to_owned()),
                body: message.body,
            });
        })
    }
}

/// A reader of the in-process event log.
#[derive(Debug)]
pub(crate) struct InProcEventStream {
    inner: Arc<Inner>,
    pos: usize,
}

impl InProcEventStream {
    pub(crate) async fn next(&mut self) -> Option<(u64, Event)> {
        let (inner, pos) = (&self.inner, &mut self.pos);
        inner
            .wait_for(&inner.changed, || {
                let ev = inner.lock().events.get(*pos).map(|(_, ev)| ev.clone())?;
                let offset = *pos as u64;
                *pos += 1;
                Some((offset, ev))
            })
            .await
    }
}

/// An in-process election candidate.
#[derive(Debug)]
pub(crate) struct InProcLeadership {
    inner: Arc<Inner>,
    role: String,
    id: u64,
}

impl InProcLeadership {
    pub(crate) fn is_leader(&self) -> bool {
        !self.inner.closed.is_cancelled()
            && self
                .inner
                .lock()
                .leaders
                .get(&self.role)
                .and_then(|c| c.first())
                == Some(&self.id)
    }

    pub(crate) async fn acquire(&mut self) -> bool {
        let inner = &self.inner;
        inner
            .wait_for(&inner.changed, || self.is_leader().then_some(()))
            .await
            .is_some()
    }

    /// Returns once this candidate no longer leads (or the broker closed: nobody leads then).
    pub(crate) async fn lost(&mut self) {
        let inner = &self.inner;
        inner
            .wait_for(&inner.changed, || (!self.is_leader()).then_some(()))
            .await;
    }
}

impl Drop for InProcLeadership {
    fn drop(&mut self) {
        if let Some(c) = self.inner.lock().leaders.get_mut(&self.role) {
            c.retain(|id| *id != self.id);
        }
        self.inner.changed.notify_waiters();
    }
}
