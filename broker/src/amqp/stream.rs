//! Reading the event stream queue: a stream consumer (`x-stream-offset`, prefetch, manual
//! ack) that resumes after the last offset it handed out when the connection is rebuilt.
//!
//! RabbitMQ starts a stream consumer at the beginning of the chunk holding the requested
//! offset, so offsets below the requested one (and, after a resume, already-seen offsets) are
//! filtered out here.

use super::fields::{self, int_header};
use super::subscription::{Subscriber, Subscription, Wake};
use super::{Live, Shared};
use crate::{BrokerError, Seen, StreamOffset};
use aetherv_core::Event;
use lapin::options::BasicAckOptions;
use std::sync::Arc;
use tokio_util::sync::DropGuard;

/// A stream consumer that survives reconnects.
#[derive(Debug)]
pub(crate) struct AmqpEventStream {
    subscriber: Subscriber,
    _guard: Arc<DropGuard>,
    /// Where to (re)start: the caller's offset until the first event, then the next offset.
    resume: StreamOffset,
    /// Offsets below this are skipped (chunk-start deliveries, replays after a resume).
    min_offset: u64,
    sub: Option<Subscription>,
}

/// Consumes the stream queue from `resume` under a fresh consumer tag.
async fn subscribe(
    shared: &Shared,
    resume: StreamOffset,
    live: Arc<Live>,
) -> Result<Subscription, BrokerError> {
    let tag = format!("events-{}", uuid::Uuid::new_v4().simple());
    Subscription::open(
        live,
        &shared.topology().events_stream(),
        &tag,
        shared.options().stream_prefetch,
        fields::stream_offset_args(resume),
    )
    .await
}

impl AmqpEventStream {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        guard: Arc<DropGuard>,
        from: StreamOffset,
    ) -> Result<Self, BrokerError> {
        let subscriber = Subscriber::new(Arc::clone(&shared), shared.topology().events_stream());
        let sub = subscriber
            .first(|live| subscribe(&shared, from, live))
            .await?;
        Ok(AmqpEventStream {
            subscriber,
            _guard: guard,
            resume: from,
            min_offset: match from {
                StreamOffset::Offset(n) => n,
                _ => 0,
            },
            sub: Some(sub),
        })
    }

    pub(crate) async fn next(&mut self, types: &[&str]) -> Option<Seen> {
        let shared = Arc::clone(self.subscriber.shared());
        loop {
            let resume = self.resume;
            let wake = self
                .subscriber
                .next(&mut self.sub, |live| subscribe(&shared, resume, live))
                .await;
            match wake {
                Wake::Shutdown => return None,
                Wake::Resubscribe | Wake::Nothing | Wake::Timer => {}
                Wake::Delivery(d) => {
                    let acker = d.acker.clone();
                    // Streams need acks to keep credit flowing; the ack must not make this
                    // future cancel-unsafe, so it runs on its own. (One `multiple` ack per
                    // 64 deliveries was tried: at 1,000 hosts RabbitMQ 3.10 refused some of
                    // them, `unknown delivery tag`, closing the channel; cause not found.)
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
                    if !crate::types::wanted(types, d.routing_key.as_str()) {
                        return Some(Seen::Other(offset));
                    }
                    match Event::from_slice(&d.data) {
                        Ok(ev) => return Some(Seen::Event(offset, ev)),
                        Err(e) => {
                            tracing::warn!(offset, reason = e.code(), error = %e, "skipping an undecodable event");
                        }
                    }
                }
            }
        }
    }
}
