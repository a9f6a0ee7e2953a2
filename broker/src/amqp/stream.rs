//! Reading the event stream queue: a stream consumer (`x-stream-offset`, prefetch, manual
//! ack) that resumes after the last offset it handed out when the connection is rebuilt.
//!
//! RabbitMQ starts a stream consumer at the beginning of the chunk holding the requested
//! offset, so offsets below the requested one (and, after a resume, already-seen offsets) are
//! filtered out here.

use super::fields::{self, int_header, short};
use super::{Live, Shared};
use crate::{BrokerError, StreamOffset};
use aetherv_core::Event;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::{Channel, Consumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::DropGuard;

/// A stream consumer that survives reconnects.
pub(crate) struct AmqpEventStream {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
    live_rx: watch::Receiver<Option<Arc<Live>>>,
    /// Where to (re)start: the caller's offset until the first event, then the next offset.
    resume: StreamOffset,
    /// Offsets below this are skipped (chunk-start deliveries, replays after a resume).
    min_offset: u64,
    sub: Option<StreamSub>,
}

impl std::fmt::Debug for AmqpEventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpEventStream")
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

struct StreamSub {
    generation: u64,
    _channel: Channel,
    consumer: Consumer,
}

enum Step {
    Shutdown,
    Resubscribe,
    Delivery(Box<lapin::message::Delivery>),
    Nothing,
}

impl AmqpEventStream {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        guard: Arc<DropGuard>,
        from: StreamOffset,
    ) -> Result<Self, BrokerError> {
        let deadline = tokio::time::Instant::now() + shared.options().operation_timeout;
        let live = shared.wait_live(0, deadline).await?;
        let mut stream = AmqpEventStream {
            live_rx: shared.subscribe_live(),
            shared,
            _guard: guard,
            resume: from,
            min_offset: match from {
                StreamOffset::Offset(n) => n,
                _ => 0,
            },
            sub: None,
        };
        stream.sub = Some(stream.try_subscribe(&live).await?);
        Ok(stream)
    }

    async fn try_subscribe(&self, live: &Live) -> Result<StreamSub, BrokerError> {
        let channel = live.connection().create_channel().await?;
        channel
            .basic_qos(
                self.shared.options().stream_prefetch,
                BasicQosOptions::default(),
            )
            .await?;
        let tag = format!("events-{}", uuid::Uuid::new_v4().simple());
        let consumer = channel
            .basic_consume(
                short(&self.shared.topology().events_stream())?,
                short(&tag)?,
                BasicConsumeOptions::default(),
                fields::stream_offset_args(self.resume),
            )
            .await?;
        Ok(StreamSub {
            generation: live.generation(),
            _channel: channel,
            consumer,
        })
    }

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
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            };
            match self.try_subscribe(&live).await {
                Ok(sub) => {
                    tracing::info!(resume = ?self.resume, "event stream re-subscribed");
                    self.sub = Some(sub);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "event stream re-subscribe failed");
                    tokio::select! {
                        _ = self.shared.shutdown().cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.shared.options().max_backoff);
                }
            }
        }
    }

    pub(crate) async fn next(&mut self) -> Option<(u64, Event)> {
        loop {
            if self.shared.shutdown().is_cancelled() {
                return None;
            }
            if self.sub.is_none() && !self.resubscribe().await {
                return None;
            }
            let step = match self.sub.as_mut() {
                None => Step::Nothing,
                Some(sub) => {
                    let generation = sub.generation;
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
                        item = sub.consumer.next() => match item {
                            Some(Ok(d)) => Step::Delivery(Box::new(d)),
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "event stream consumer failed; re-subscribing");
                                Step::Resubscribe
                            }
                            None => Step::Resubscribe,
                        },
                    }
                }
            };
            match step {
                Step::Shutdown => return None,
                Step::Resubscribe => self.sub = None,
                Step::Nothing => {}
                Step::Delivery(d) => {
                    let acker = d.acker.clone();
                    // Streams need acks to keep credit flowing; the ack must not make this
                    // future cancel-unsafe, so it runs on its own.
                    tokio::spawn(async move {
                        let _ = acker.ack(BasicAckOptions::default()).await;
                    });
                    let Some(offset) = int_header(&d.properties, "x-stream-offset")
                        .and_then(|n| u64::try_from(n).ok())
                    else {
                        tracing::warn!("stream delivery without x-stream-offset; skipped");
                        continue;
                    };
                    if offset < self.min_offset {
                        continue;
                    }
                    self.min_offset = offset + 1;
                    self.resume = StreamOffset::Offset(offset + 1);
                    match Event::from_slice(&d.data) {
                        Ok(ev) => return Some((offset, ev)),
                        Err(e) => {
                            tracing::warn!(offset, reason = e.code(), error = %e, "skipping an undecodable event");
                        }
                    }
                }
            }
        }
    }
}
