//! AMQP job consumers: one channel per host consumer, prefetch 1, manual ack, and transparent
//! re-subscription when the supervisor rebuilds the connection.
//!
//! Undecodable messages are dead-lettered here: a copy goes to the dead-letter exchange with
//! `x-aetherv-reason`/`x-aetherv-detail` headers (a plain `nack` cannot add headers), then the
//! original is acked. If the copy cannot be published, the original is rejected without
//! requeue, so the queue's own dead-lettering still catches it (reason `rejected`).

use super::fields::{self, int_header};
use super::subscription::{Subscriber, Subscription, Wake};
use super::{Live, Shared};
use crate::types::{warn_undecodable, Settle};
use crate::{BrokerError, JobDelivery, RequestDelivery, Topology};
use aetherv_core::JobEnvelope;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Acker, BasicProperties};
use std::sync::Arc;
use tokio_util::sync::DropGuard;

/// A consumer of one host queue (or of the requests queue) that survives reconnects.
#[derive(Debug)]
pub(crate) struct AmqpJobConsumer {
    subscriber: Subscriber,
    guard: Arc<DropGuard>,
    /// The host, or `None` for the requests queue (declared with the base topology).
    host: Option<String>,
    queue: String,
    tag: String,
    sub: Option<Subscription>,
}

/// Declares the host queue (it may have been deleted) and consumes it with prefetch 1.
async fn subscribe(
    shared: &Shared,
    host: Option<&str>,
    queue: &str,
    tag: &str,
    live: Arc<Live>,
) -> Result<Subscription, BrokerError> {
    let host = host.map(|h| (shared.topology(), h));
    Subscription::open_host(live, host, queue, tag, 1, FieldTable::default()).await
}

impl AmqpJobConsumer {
    /// Registers the consumer now, so that single-active-consumer order is call order.
    /// `host` `None` consumes the requests queue.
    pub(crate) async fn start(
        shared: Arc<Shared>,
        guard: Arc<DropGuard>,
        host: Option<String>,
        tag: String,
    ) -> Result<Self, BrokerError> {
        let queue = match &host {
            Some(h) => shared.topology().host_queue(h),
            None => shared.topology().requests_queue(),
        };
        let subscriber = Subscriber::new(shared, queue.clone());
        let sub = subscriber
            .first(|live| subscribe(subscriber.shared(), host.as_deref(), &queue, &tag, live))
            .await?;
        Ok(AmqpJobConsumer {
            subscriber,
            guard,
            host,
            queue,
            tag,
            sub: Some(sub),
        })
    }

    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    pub(crate) fn host(&self) -> &str {
        self.host.as_deref().unwrap_or_default()
    }

    /// The next delivery as it came: its settle handle, `redelivered` and delivery count.
    async fn next_raw(&mut self) -> Option<(AmqpSettle, bool, u32)> {
        let shared = Arc::clone(self.subscriber.shared());
        let (host, queue, tag) = (self.host.as_deref(), &self.queue, &self.tag);
        loop {
            let wake = self
                .subscriber
                .next(&mut self.sub, |live| {
                    subscribe(&shared, host, queue, tag, live)
                })
                .await;
            match wake {
                Wake::Shutdown => return None,
                Wake::Delivery(d) => {
                    if let Some(raw) = self.settle_of(*d) {
                        return Some(raw);
                    }
                }
                Wake::Resubscribe | Wake::Nothing | Wake::Timer => {}
            }
        }
    }

    pub(crate) async fn next(&mut self) -> Option<JobDelivery> {
        loop {
            let raw = self.next_raw().await?;
            if let Some(job) = self.accept(raw) {
                return Some(job);
            }
        }
    }

    /// The next request, undecoded (the bot decodes and dead-letters it).
    pub(crate) async fn next_request(&mut self) -> Option<RequestDelivery> {
        let (settle, redelivered, _) = self.next_raw().await?;
        let p = &settle.properties;
        let text = |s: Option<&ShortString>| s.map(|s| s.as_str().to_owned());
        Some(RequestDelivery {
            body: settle.body.clone(),
            user_id: text(p.user_id().as_ref()),
            reply_to: text(p.reply_to().as_ref()),
            correlation_id: text(p.correlation_id().as_ref()),
            redelivered,
            settle: Settle::Amqp(Box::new(settle)),
        })
    }

    fn settle_of(&self, delivery: Delivery) -> Option<(AmqpSettle, bool, u32)> {
        let live = Arc::clone(self.sub.as_ref()?.live());
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
            topology: self.subscriber.shared().topology().clone(),
            _guard: Arc::clone(&self.guard),
            live,
            acker,
            routing_key: routing_key.as_str().to_owned(),
            properties,
            body: data,
        };
        Some((settle, redelivered, delivery_count))
    }

    /// Decodes a delivery; undecodable ones are dead-lettered in a task of their own.
    fn accept(&self, raw: (AmqpSettle, bool, u32)) -> Option<JobDelivery> {
        let (settle, redelivered, delivery_count) = raw;
        match JobEnvelope::from_slice(&settle.body) {
            Ok(envelope) => Some(JobDelivery {
                envelope,
                headers: fields::string_headers(&settle.properties),
                redelivered,
                delivery_count,
                settle: Settle::Amqp(Box::new(settle)),
            }),
            Err(e) => {
                warn_undecodable(&self.queue, &e);
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
