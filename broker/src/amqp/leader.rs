//! Leader election over RabbitMQ: one active bot at a time (DESIGN.md "Reliability rules").
//!
//! Each candidate consumes the role's queue (quorum, single active consumer, prefetch 1). The
//! queue holds a token message; RabbitMQ delivers it only to the active consumer, which keeps
//! it unacked: holding the token is being the leader. When the leader's channel or connection
//! goes away, RabbitMQ returns the token and delivers it to the next candidate. Every
//! candidate publishes a token when it subscribes; `x-max-length: 1` with `reject-publish`
//! refuses extras. The token is renewed (returned and redelivered to the same active
//! consumer) before RabbitMQ's consumer timeout would close the channel.

use super::fields::{self, short};
use super::subscription::{Subscriber, Subscription, Wake};
use super::{Live, Shared};
use crate::BrokerError;
use lapin::options::{BasicNackOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Acker;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::DropGuard;

/// A candidate in one role's election.
#[derive(Debug)]
pub(crate) struct AmqpLeadership {
    subscriber: Subscriber,
    _guard: Arc<DropGuard>,
    queue: String,
    tag: String,
    sub: Option<LeaderSub>,
}

#[derive(Debug)]
struct LeaderSub {
    sub: Subscription,
    /// The token delivery, while held.
    token: Option<Acker>,
    /// True between returning the token for renewal and getting it back.
    renewing: bool,
}

/// Declares the role's queue, offers a token, and consumes the queue with prefetch 1.
async fn subscribe(queue: &str, tag: &str, live: Arc<Live>) -> Result<LeaderSub, BrokerError> {
    let name = short(queue)?;
    {
        let (_serialized, admin) = live.admin_channel().await?;
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        admin
            .queue_declare(name.clone(), options, fields::leader_queue_args())
            .await?;
    }
    // A token in case there is none; refused (nack) when one already waits.
    let offered = live
        .jobs
        .publish(
            live.connection(),
            "".into(),
            name,
            b"leader-token",
            fields::message_properties(None),
        )
        .await?;
    tracing::debug!(queue, accepted = offered.is_ack(), "offered a leader token");
    Ok(LeaderSub {
        sub: Subscription::open(live, queue, tag, 1, FieldTable::default()).await?,
        token: None,
        renewing: false,
    })
}

/// Hands a token back to the queue. Spawned so that cancelling the caller cannot strand it.
fn return_token(token: Acker) {
    tokio::spawn(async move {
        let _ = token
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await;
    });
}

impl AmqpLeadership {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        guard: Arc<DropGuard>,
        role: &str,
        candidate: &str,
    ) -> Result<Self, BrokerError> {
        let queue = shared.topology().leader_queue(role);
        short(&queue)?;
        short(candidate)?;
        let subscriber = Subscriber::new(shared, queue.clone());
        let sub = subscriber
            .first(|live| subscribe(&queue, candidate, live))
            .await?;
        Ok(AmqpLeadership {
            subscriber,
            _guard: guard,
            queue,
            tag: candidate.to_owned(),
            sub: Some(sub),
        })
    }

    pub(crate) fn is_leader(&self) -> bool {
        let Some(leader) = &self.sub else {
            return false;
        };
        (leader.token.is_some() || leader.renewing)
            && leader.sub.is_open()
            && self.subscriber.is_current(&leader.sub)
    }

    /// Waits for one event on the subscription; `renew_after` arms the renewal timer
    /// ([`Wake::Timer`]). A delivery is the token.
    async fn wait(&mut self, renew_after: Option<Duration>) -> Wake {
        match self.sub.as_mut() {
            Some(leader) => self.subscriber.wait(&mut leader.sub, renew_after).await,
            None => Wake::Resubscribe,
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
                return_token(acker);
            }
        }
    }

    pub(crate) async fn acquire(&mut self) -> bool {
        loop {
            if self.subscriber.is_shut_down() {
                return false;
            }
            if self.is_leader() {
                return true;
            }
            if !self.sub.as_ref().is_some_and(|s| s.sub.is_open()) {
                self.sub = None;
                self.sub = self
                    .subscriber
                    .resubscribe(|live| subscribe(&self.queue, &self.tag, live))
                    .await;
                if self.sub.is_none() {
                    return false;
                }
            }
            match self.wait(None).await {
                Wake::Shutdown => return false,
                Wake::Resubscribe => self.sub = None,
                Wake::Delivery(token) => self.take_token(token.acker),
                Wake::Timer | Wake::Nothing => {}
            }
        }
    }

    pub(crate) async fn lost(&mut self) {
        loop {
            if !self.is_leader() || self.subscriber.is_shut_down() {
                return;
            }
            let renewing = self.sub.as_ref().is_some_and(|s| s.renewing);
            let renew_every = self.subscriber.shared().options().leader_renew_every;
            match self.wait((!renewing).then_some(renew_every)).await {
                Wake::Shutdown | Wake::Resubscribe => {
                    self.sub = None;
                    tracing::warn!(queue = %self.queue, candidate = %self.tag, "lost leadership");
                    return;
                }
                Wake::Delivery(token) => self.take_token(token.acker),
                Wake::Timer => {
                    if let Some(sub) = self.sub.as_mut() {
                        if let Some(token) = sub.token.take() {
                            sub.renewing = true;
                            // Returned to the queue; the single active consumer (us) gets it
                            // again.
                            return_token(token);
                        }
                    }
                }
                Wake::Nothing => {}
            }
        }
    }
}
