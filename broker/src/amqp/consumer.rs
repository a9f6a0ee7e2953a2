//! AMQP job consumers: one channel per host consumer, prefetch 1, manual ack, and transparent
//! re-subscription when the supervisor rebuilds the connection.
//!
//! Undecodable messages are dead-lettered here: a copy goes to the dead-letter exchange with
//! `x-aetherv-reason`/`x-aetherv-detail` headers (a plain `nack` cannot add headers), then the
//! original is acked. If the copy cannot be published, the original is rejected without
//! requeue, so the queue's own dead-lettering still catches it (reason `rejected`).

use super::fields::{self, int_header, short};
use super::{declare_host_on, Live, Shared};
use crate::types::Settle;
use crate::{BrokerError, JobDelivery, Topology};
use aetherv_core::JobEnvelope;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, BasicProperties, Channel, Consumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::DropGuard;

/// A consumer of one host queue that survives reconnects.
pub(crate) struct AmqpJobConsumer {
    shared: Arc<Shared>,
    guard: Arc<DropGuard>,
    host: String,
    queue: String,
    tag: String,
    live_rx: watch::Receiver<Option<Arc<Live>>>,
    sub: Option<Subscription>,
}

impl std::fmt::Debug for AmqpJobConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpJobConsumer")
            .field("queue", &self.queue)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// A subscription on one connection generation. Dropping it closes the channel, which
/// returns its unacked delivery to the queue.
struct Subscription {
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
pub(super) fn close_then_cancel(channel: &Channel, consumer: Option<Consumer>) {
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

enum Step {
    Shutdown,
    Resubscribe,
    Delivery(Box<Delivery>),
    Nothing,
}

impl AmqpJobConsumer {
    /// Registers the consumer now, so that single-active-consumer order is call order.
    pub(crate) async fn start(
        shared: Arc<Shared>,
        guard: Arc<DropGuard>,
        host: String,
        tag: String,
    ) -> Result<Self, BrokerError> {
        let deadline = tokio::time::Instant::now() + shared.options().operation_timeout;
        let live = shared.wait_live(0, deadline).await?;
        let mut consumer = AmqpJobConsumer {
            queue: shared.topology().host_queue(&host),
            live_rx: shared.subscribe_live(),
            shared,
            guard,
            host,
            tag,
            sub: None,
        };
        consumer.sub = Some(consumer.try_subscribe(live).await?);
        Ok(consumer)
    }

    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    async fn try_subscribe(&self, live: Arc<Live>) -> Result<Subscription, BrokerError> {
        {
            let (_serialized, admin) = live.admin_channel().await?;
            declare_host_on(&admin, self.shared.topology(), &self.host).await?;
        }
        let channel = live.connection().create_channel().await?;
        channel.basic_qos(1, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                short(&self.queue)?,
                short(&self.tag)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::debug!(queue = %self.queue, tag = %self.tag, generation = live.generation(), "subscribed");
        Ok(Subscription {
            live,
            channel,
            consumer: Some(consumer),
        })
    }

    /// Subscribes again on the current connection, retrying with backoff. False on shutdown.
    async fn resubscribe(&mut self) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            let live = loop {
                let current = self.live_rx.borrow_and_update().clone();
                if let Some(live) = current {
                    if live.connection().status().connected() {
                        break live;
                    }
                }
                tokio::select! {
                    _ = self.shared.shutdown().cancelled() => return false,
                    changed = self.live_rx.changed() => if changed.is_err() { return false },
                    // The watch may lag a dying connection; look again soon.
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            };
            let generation = live.generation();
            match self.try_subscribe(live).await {
                Ok(sub) => {
                    tracing::info!(queue = %self.queue, generation, "job consumer re-subscribed");
                    self.sub = Some(sub);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, ?backoff, "re-subscribe failed");
                    tokio::select! {
                        _ = self.shared.shutdown().cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.shared.options().max_backoff);
                }
            }
        }
    }

    pub(crate) async fn next(&mut self) -> Option<JobDelivery> {
        loop {
            if self.shared.shutdown().is_cancelled() {
                return None;
            }
            if self.sub.is_none() && !self.resubscribe().await {
                return None;
            }
            let step = match self.sub.as_mut() {
                None | Some(Subscription { consumer: None, .. }) => Step::Resubscribe,
                Some(Subscription {
                    live,
                    consumer: Some(consumer),
                    ..
                }) => {
                    let generation = live.generation();
                    tokio::select! {
                        biased;
                        _ = self.shared.shutdown().cancelled() => Step::Shutdown,
                        changed = self.live_rx.changed() => match changed {
                            Err(_) => Step::Shutdown,
                            Ok(()) => {
                                let current = self.live_rx.borrow().as_ref().map(|l| l.generation());
                                if current == Some(generation) { Step::Nothing } else { Step::Resubscribe }
                            }
                        },
                        item = consumer.next() => match item {
                            Some(Ok(delivery)) => Step::Delivery(Box::new(delivery)),
                            Some(Err(e)) => {
                                tracing::warn!(queue = %self.queue, error = %e, "job consumer failed; re-subscribing");
                                Step::Resubscribe
                            }
                            None => {
                                tracing::info!(queue = %self.queue, "job consumer cancelled; re-subscribing");
                                Step::Resubscribe
                            }
                        },
                    }
                }
            };
            match step {
                Step::Shutdown => return None,
                Step::Resubscribe => self.sub = None,
                Step::Nothing => {}
                Step::Delivery(d) => {
                    if let Some(job) = self.accept(*d) {
                        return Some(job);
                    }
                }
            }
        }
    }

    /// Decodes a delivery; undecodable ones are dead-lettered in a task of their own.
    fn accept(&self, delivery: Delivery) -> Option<JobDelivery> {
        let live = Arc::clone(&self.sub.as_ref()?.live);
        let Delivery {
            routing_key,
            redelivered,
            properties,
            data,
            acker,
            ..
        } = delivery;
        let delivery_count = int_header(&properties, "x-delivery-count")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let settle = AmqpSettle {
            topology: self.shared.topology().clone(),
            _guard: Arc::clone(&self.guard),
            live,
            acker,
            routing_key: routing_key.as_str().to_owned(),
            properties,
            body: data,
        };
        match JobEnvelope::from_slice(&settle.body) {
            Ok(envelope) => Some(JobDelivery {
                envelope,
                redelivered,
                delivery_count,
                settle: Settle::Amqp(Box::new(settle)),
            }),
            Err(e) => {
                tracing::warn!(
                    queue = %self.queue,
                    reason = e.code(),
                    error = %e,
                    "dead-lettering an undecodable job message"
                );
                let (code, detail) = (e.code(), e.to_string());
                tokio::spawn(async move {
                    if let Err(e) = settle.dead_letter(code, &detail).await {
                        tracing::warn!(error = %e, "dead-lettering failed; the message will be redelivered");
                    }
                });
                None
            }
        }
    }
}

/// Settles one AMQP delivery on the channel it came from.
pub(crate) struct AmqpSettle {
    topology: Topology,
    _guard: Arc<DropGuard>,
    live: Arc<Live>,
    acker: Acker,
    routing_key: String,
    properties: BasicProperties,
    body: Vec<u8>,
}

impl std::fmt::Debug for AmqpSettle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSettle")
            .field("routing_key", &self.routing_key)
            .field("generation", &self.live.generation())
            .finish_non_exhaustive()
    }
}

/// Maps an acker result: `Ok(false)` means the channel is gone or the delivery was settled.
fn settled(r: lapin::Result<bool>, acker: &Acker) -> Result<(), BrokerError> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(BrokerError::DeliveryLost),
        Err(_) if acker.poisoned() => Err(BrokerError::DeliveryLost),
        Err(e) => Err(e.into()),
    }
}

impl AmqpSettle {
    pub(crate) async fn ack(self) -> Result<(), BrokerError> {
        let r = self.acker.ack(BasicAckOptions::default()).await;
        settled(r, &self.acker)
    }

    pub(crate) async fn requeue(self) -> Result<(), BrokerError> {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        let r = self.acker.nack(options).await;
        settled(r, &self.acker)
    }

    pub(crate) async fn dead_letter(self, reason: &str, detail: &str) -> Result<(), BrokerError> {
        if !self.acker.usable() {
            // The channel died: the broker redelivers the message; a copy would duplicate it.
            return Err(BrokerError::DeliveryLost);
        }
        let headers = fields::dead_letter_headers(&self.properties, reason, detail);
        let copied = self
            .live
            .publish_dead_letter(&self.topology, &self.routing_key, &self.body, headers)
            .await;
        match copied {
            Ok(()) => {
                let r = self.acker.ack(BasicAckOptions::default()).await;
                settled(r, &self.acker)
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    reason,
                    "could not publish the dead-letter copy; rejecting without requeue instead"
                );
                let r = self
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
                settled(r, &self.acker)
            }
        }
    }
}
