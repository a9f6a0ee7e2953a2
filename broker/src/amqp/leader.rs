//! Leader election over RabbitMQ: one active bot at a time (DESIGN.md "Reliability rules").
//!
//! Each candidate consumes the role's queue (quorum, single active consumer, prefetch 1). The
//! queue holds a token message; RabbitMQ delivers it only to the active consumer, which keeps
//! it unacked: holding the token is being the leader. When the leader's channel or connection
//! goes away, RabbitMQ returns the token and delivers it to the next candidate. Every
//! candidate publishes a token when it subscribes; `x-max-length: 1` with `reject-publish`
//! refuses extras. The token is renewed (returned and redelivered to the same active
//! consumer) before RabbitMQ's consumer timeout would close the channel.

use super::consumer::close_then_cancel;
use super::fields::{self, short};
use super::{Live, Shared};
use crate::BrokerError;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::DropGuard;

/// A candidate in one role's election.
pub(crate) struct AmqpLeadership {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
    queue: String,
    tag: String,
    live_rx: watch::Receiver<Option<Arc<Live>>>,
    sub: Option<LeaderSub>,
}

impl std::fmt::Debug for AmqpLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpLeadership")
            .field("queue", &self.queue)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

struct LeaderSub {
    live: Arc<Live>,
    channel: Channel,
    consumer: Option<Consumer>,
    /// The token delivery, while held.
    token: Option<Acker>,
    /// True between returning the token for renewal and getting it back.
    renewing: bool,
}

impl Drop for LeaderSub {
    fn drop(&mut self) {
        close_then_cancel(&self.channel, self.consumer.take());
    }
}

enum Step {
    Shutdown,
    Resubscribe,
    Token(Acker),
    Renew,
    Nothing,
}

impl AmqpLeadership {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        guard: Arc<DropGuard>,
        role: &str,
        candidate: &str,
    ) -> Result<Self, BrokerError> {
        let deadline = tokio::time::Instant::now() + shared.options().operation_timeout;
        let live = shared.wait_live(0, deadline).await?;
        let queue = shared.topology().leader_queue(role);
        short(&queue)?;
        short(candidate)?;
        let mut leadership = AmqpLeadership {
            live_rx: shared.subscribe_live(),
            shared,
            _guard: guard,
            queue,
            tag: candidate.to_owned(),
            sub: None,
        };
        leadership.sub = Some(leadership.try_subscribe(live).await?);
        Ok(leadership)
    }

    async fn try_subscribe(&self, live: Arc<Live>) -> Result<LeaderSub, BrokerError> {
        let queue = short(&self.queue)?;
        {
            let (_serialized, admin) = live.admin_channel().await?;
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            admin
                .queue_declare(queue.clone(), options, fields::leader_queue_args())
                .await?;
        }
        // A token in case there is none; refused (nack) when one already waits.
        let offered = live
            .jobs
            .publish(
                live.connection(),
                "".into(),
                queue.clone(),
                b"leader-token",
                fields::message_properties(None),
            )
            .await?;
        tracing::debug!(queue = %self.queue, accepted = offered.is_ack(), "offered a leader token");
        let channel = live.connection().create_channel().await?;
        channel.basic_qos(1, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                queue,
                short(&self.tag)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(LeaderSub {
            live,
            channel,
            consumer: Some(consumer),
            token: None,
            renewing: false,
        })
    }

    pub(crate) fn is_leader(&self) -> bool {
        let Some(sub) = &self.sub else {
            return false;
        };
        let current = self.live_rx.borrow().as_ref().map(|l| l.generation());
        (sub.token.is_some() || sub.renewing)
            && sub.channel.status().connected()
            && current == Some(sub.live.generation())
    }

    /// Subscribes again on the current connection, retrying with backoff. False on shutdown.
    async fn resubscribe(&mut self) -> bool {
        self.sub = None;
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
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            };
            match self.try_subscribe(live).await {
                Ok(sub) => {
                    self.sub = Some(sub);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, ?backoff, "leader re-subscribe failed");
                    tokio::select! {
                        _ = self.shared.shutdown().cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.shared.options().max_backoff);
                }
            }
        }
    }

    /// Waits for one event on the subscription; `renew_after` arms the renewal timer.
    async fn step(&mut self, renew_after: Option<Duration>) -> Step {
        let Some(LeaderSub {
            live,
            consumer: Some(consumer),
            ..
        }) = self.sub.as_mut()
        else {
            return Step::Resubscribe;
        };
        let generation = live.generation();
        let renew = async {
            match renew_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
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
                Some(Ok(d)) => Step::Token(d.acker),
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.queue, error = %e, "leader consumer failed");
                    Step::Resubscribe
                }
                None => Step::Resubscribe,
            },
            _ = renew => Step::Renew,
        }
    }

    fn take_token(&mut self, acker: Acker) {
        if let Some(sub) = self.sub.as_mut() {
            sub.renewing = false;
            if sub.token.is_none() {
                sub.token = Some(acker);
                tracing::info!(queue = %self.queue, candidate = %self.tag, "became the leader");
            } else {
                // An extra token (prefetch 1 makes this rare): hand it back.
                tokio::spawn(async move {
                    let _ = acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await;
                });
            }
        }
    }

    pub(crate) async fn acquire(&mut self) -> bool {
        loop {
            if self.shared.shutdown().is_cancelled() {
                return false;
            }
            if self.is_leader() {
                return true;
            }
            let usable = self
                .sub
                .as_ref()
                .is_some_and(|s| s.channel.status().connected());
            if !usable && !self.resubscribe().await {
                return false;
            }
            match self.step(None).await {
                Step::Shutdown => return false,
                Step::Resubscribe => self.sub = None,
                Step::Token(acker) => self.take_token(acker),
                Step::Renew | Step::Nothing => {}
            }
        }
    }

    pub(crate) async fn lost(&mut self) {
        loop {
            if !self.is_leader() || self.shared.shutdown().is_cancelled() {
                return;
            }
            let renewing = self.sub.as_ref().is_some_and(|s| s.renewing);
            let renew_every = self.shared.options().leader_renew_every;
            match self.step((!renewing).then_some(renew_every)).await {
                Step::Shutdown | Step::Resubscribe => {
                    self.sub = None;
                    tracing::warn!(queue = %self.queue, candidate = %self.tag, "lost leadership");
                    return;
                }
                Step::Token(acker) => self.take_token(acker),
                Step::Renew => {
                    if let Some(sub) = self.sub.as_mut() {
                        if let Some(token) = sub.token.take() {
                            sub.renewing = true;
                            // Returned to the queue; the single active consumer (us) gets it
                            // again. Spawned so that cancelling `lost` cannot strand it.
                            tokio::spawn(async move {
                                let _ = token
                                    .nack(BasicNackOptions {
                                        requeue: true,
                                        ..BasicNackOptions::default()
                                    })
                                    .await;
                            });
                        }
                    }
                }
                Step::Nothing => {}
            }
        }
    }
}
