//! Subscribe with backoff: the one skeleton that job consumers, leader candidates and event
//! streams share (DESIGN.md "Reliability rules": reconnect with backoff, re-declare,
//! re-subscribe).
//!
//! The supervisor (`supervisor.rs`) owns the connection; a [`Subscriber`] follows it. It waits
//! for a live connection, runs the caller's subscribe step (which re-declares what it needs and
//! opens a [`Subscription`]), retries that step with exponential backoff, and stops when the
//! broker shuts down. [`Subscriber::wait`] then reports what happened next on a subscription:
//! a delivery, a new connection generation, a dead consumer, or shutdown. What a delivery means
//! stays with the caller.

use super::fields::short;
use super::{Live, Shared};
use crate::BrokerError;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// First wait between subscribe attempts; doubled per failure up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How often to look at the connection again while the watch may lag a dying one.
const RECHECK: Duration = Duration::from_millis(250);

/// One consumer on one connection generation. Dropping it closes the channel, which returns
/// its unacked deliveries to the queue.
#[derive(Debug)]
pub(super) struct Subscription {
    live: Arc<Live>,
    channel: Channel,
    /// Always `Some` until dropped.
    consumer: Option<Consumer>,
}

impl Drop for Subscription {
    /// Closes the channel *before* the consumer is cancelled. A plain drop would send
    /// `basic.cancel` first; RabbitMQ then activates the next single-active consumer while
    /// the unacked delivery still sits on this channel, so the standby would receive the
    /// *second* job before the first one is returned. Closing the channel returns the delivery
    /// and hands over in one step, keeping FIFO.
    fn drop(&mut self) {
        close_then_cancel(&self.channel, self.consumer.take());
    }
}

/// Closes `channel`, then drops `consumer` (see `Subscription`'s `Drop`). Without a runtime,
/// the plain drops close the channel anyway, only in the other order.
fn close_then_cancel(channel: &Channel, consumer: Option<Consumer>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if !channel.status().connected() {
        return;
    }
    let channel = channel.clone();
    rt.spawn(async move {
        let _ = channel.close(200, "consumer dropped".into()).await;
        drop(consumer);
    });
}

impl Subscription {
    /// Opens a channel on `live` with `prefetch` and starts consuming `queue` as `tag`.
    pub(super) async fn open(
        live: Arc<Live>,
        queue: &str,
        tag: &str,
        prefetch: u16,
        arguments: FieldTable,
    ) -> Result<Subscription, BrokerError> {
        Self::open_host(live, None, queue, tag, prefetch, arguments).await
    }

    /// [`Subscription::open`], declaring `host`'s queue (and binding) first on the new channel
    /// when `host` is given: the queue may have been deleted, and declarations on channels of
    /// their own run side by side (a thousand slots subscribing do not queue up behind one
    /// serialized channel).
    pub(super) async fn open_host(
        live: Arc<Live>,
        host: Option<(&crate::Topology, &str)>,
        queue: &str,
        tag: &str,
        prefetch: u16,
        arguments: FieldTable,
    ) -> Result<Subscription, BrokerError> {
        let channel = live.connection().create_channel().await?;
        if let Some((topology, host)) = host {
            super::declare_host_on(&channel, topology, host).await?;
        }
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                short(queue)?,
                short(tag)?,
                BasicConsumeOptions::default(),
                arguments,
            )
            .await?;
        tracing::debug!(queue, tag, generation = live.generation(), "subscribed");
        Ok(Subscription {
            live,
            channel,
            consumer: Some(consumer),
        })
    }

    /// The connection this subscription lives on.
    pub(super) fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// True while its channel is open.
    pub(super) fn is_open(&self) -> bool {
        self.channel.status().connected()
    }
}

/// What [`Subscriber::wait`] saw.
pub(super) enum Wake {
    /// The broker shut down.
    Shutdown,
    /// The subscription is gone (new connection, consumer failed or cancelled): subscribe
    /// again.
    Resubscribe,
    /// A message.
    Delivery(Box<Delivery>),
    /// The caller's timer ran out.
    Timer,
    /// Nothing for the caller (the connection watch changed but kept its generation).
    Nothing,
}

/// Follows the supervisor's connection for one subscription.
#[derive(Debug)]
pub(super) struct Subscriber {
    shared: Arc<Shared>,
    live_rx: watch::Receiver<Option<Arc<Live>>>,
    /// What is subscribed, for logs (a queue name).
    what: String,
}

impl Subscriber {
    /// A subscriber of `what` (for logs).
    pub(super) fn new(shared: Arc<Shared>, what: impl Into<String>) -> Subscriber {
        Subscriber {
            live_rx: shared.subscribe_live(),
            shared,
            what: what.into(),
        }
    }

    /// The broker state (a subscribe step clones it to keep it while the subscriber waits).
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// True once the broker shut down.
    pub(super) fn is_shut_down(&self) -> bool {
        self.shared.shutdown().is_cancelled()
    }

    /// True when `sub` is on the connection the supervisor currently publishes.
    pub(super) fn is_current(&self, sub: &Subscription) -> bool {
        let current = self.live_rx.borrow().as_ref().map(|l| l.generation());
        current == Some(sub.live.generation())
    }

    /// Subscribes once, waiting at most the operation timeout for a connection. For the first
    /// subscription, whose failure the caller reports.
    pub(super) async fn first<S, F>(
        &self,
        subscribe: impl FnOnce(Arc<Live>) -> F,
    ) -> Result<S, BrokerError>
    where
        F: Future<Output = Result<S, BrokerError>>,
    {
        let deadline = tokio::time::Instant::now() + self.shared.options().operation_timeout;
        let live = self.shared.wait_live(0, deadline).await?;
        subscribe(live).await
    }

    /// Subscribes again on the current connection, retrying with backoff until it works.
    /// `None` on shutdown.
    ///
    /// Cancel safety: cancel-safe as far as this helper goes; a `subscribe` step dropped half
    /// way leaves at most a channel that the broker closes with its connection.
    ///
    /// `subscribe` is a plain closure returning a future (not an async closure) so that the
    /// caller's future stays `Send` (async closures' higher-ranked futures do not prove it).
    pub(super) async fn resubscribe<S, F>(
        &mut self,
        mut subscribe: impl FnMut(Arc<Live>) -> F,
    ) -> Option<S>
    where
        F: Future<Output = Result<S, BrokerError>>,
    {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let live = self.connected().await?;
            let generation = live.generation();
            match subscribe(live).await {
                Ok(sub) => {
                    tracing::info!(what = %self.what, generation, "re-subscribed");
                    return Some(sub);
                }
                Err(e) => {
                    tracing::warn!(what = %self.what, error = %e, ?backoff, "re-subscribe failed");
                    tokio::select! {
                        _ = self.shared.shutdown().cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.shared.options().max_backoff);
                }
            }
        }
    }

    /// The current connection once it is connected; `None` on shutdown.
    async fn connected(&mut self) -> Option<Arc<Live>> {
        loop {
            let current = self.live_rx.borrow_and_update().clone();
            if let Some(live) = current {
                if live.connection().status().connected() {
                    return Some(live);
                }
            }
            tokio::select! {
                _ = self.shared.shutdown().cancelled() => return None,
                changed = self.live_rx.changed() => if changed.is_err() { return None },
                // The watch may lag a dying connection; look again soon.
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// The next thing that happens to the subscription in `slot`, subscribing again first
    /// (with `subscribe`, see [`Subscriber::resubscribe`]) when there is none. A subscription
    /// that is gone is cleared from `slot`; only deliveries and shutdown need the caller.
    ///
    /// Cancel safety: as [`Subscriber::wait`].
    pub(super) async fn next<F>(
        &mut self,
        slot: &mut Option<Subscription>,
        subscribe: impl FnMut(Arc<Live>) -> F,
    ) -> Wake
    where
        F: Future<Output = Result<Subscription, BrokerError>>,
    {
        if self.is_shut_down() {
            return Wake::Shutdown;
        }
        let sub = match slot {
            Some(sub) => sub,
            None => match self.resubscribe(subscribe).await {
                Some(sub) => slot.insert(sub),
                None => return Wake::Shutdown,
            },
        };
        let wake = self.wait(sub, None).await;
        if matches!(wake, Wake::Resubscribe) {
            *slot = None;
        }
        wake
    }

    /// Waits for the next thing that happens to `sub`: shutdown first, then a connection
    /// change, then a delivery, then `timer` (when given).
    ///
    /// Cancel safety: cancel-safe; a delivery is returned by the final, synchronous step.
    pub(super) async fn wait(&mut self, sub: &mut Subscription, timer: Option<Duration>) -> Wake {
        let Some(consumer) = sub.consumer.as_mut() else {
            return Wake::Resubscribe;
        };
        let generation = sub.live.generation();
        let timer = async {
            match timer {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.shared.shutdown().cancelled() => Wake::Shutdown,
            changed = self.live_rx.changed() => match changed {
                Err(_) => Wake::Shutdown,
                Ok(()) => {
                    let current = self.live_rx.borrow().as_ref().map(|l| l.generation());
                    if current == Some(generation) { Wake::Nothing } else { Wake::Resubscribe }
                }
            },
            item = consumer.next() => match item {
                Some(Ok(delivery)) => Wake::Delivery(Box::new(delivery)),
                Some(Err(e)) => {
                    tracing::warn!(what = %self.what, error = %e, "consumer failed; re-subscribing");
                    Wake::Resubscribe
                }
                None => {
                    tracing::info!(what = %self.what, "consumer cancelled; re-subscribing");
                    Wake::Resubscribe
                }
            },
            _ = timer => Wake::Timer,
        }
    }
}
