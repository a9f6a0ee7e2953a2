//! Reading one job queue until the worker goes quiet: the consume loop that host slots
//! ([`crate::slot`]) and cluster placers ([`crate::placer`]) share.
//!
//! [`QueueReader::next`] subscribes (retrying with backoff while the broker refuses), hands out
//! deliveries one at a time, and ends on `quiet` or when the broker closes the consumer. What a
//! delivery means, and how it is settled, stays with the caller.

use aetherv_broker::{Broker, BrokerError, JobConsumer, JobDelivery};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest wait between attempts to (re)subscribe to a queue.
pub const MAX_SUBSCRIBE_BACKOFF: Duration = Duration::from_secs(5);
/// First wait after a failed subscribe; doubled per failure up to [`MAX_SUBSCRIBE_BACKOFF`].
const FIRST_SUBSCRIBE_BACKOFF: Duration = Duration::from_millis(200);

/// The consumer of one queue (a host's, or a cluster's placement queue) for one worker.
pub(crate) struct QueueReader<'a> {
    broker: &'a Broker,
    /// The queue's host key (`host` or `cluster.<name>`).
    key: &'a str,
    tag: String,
    consumer: Option<JobConsumer>,
}

impl<'a> QueueReader<'a> {
    /// A reader of `key`'s queue registering as consumer `tag`; it subscribes on first use.
    pub(crate) fn new(broker: &'a Broker, key: &'a str, tag: String) -> Self {
        QueueReader {
            broker,
            key,
            tag,
            consumer: None,
        }
    }

    /// Subscribes now rather than at the first [`QueueReader::next`]; false once `quiet` fired.
    pub(crate) async fn subscribe_now(&mut self, quiet: &CancellationToken) -> bool {
        if self.consumer.is_none() {
            match self.subscribe(quiet).await {
                Some(c) => self.consumer = Some(c),
                None => return false,
            }
        }
        true
    }

    /// The next delivery, or `None` once `quiet` fired or the consumer ended (the broker
    /// closed). While the broker refuses the subscription, retries with backoff.
    ///
    /// Cancel safety: cancel-safe; `JobConsumer::next` is, and losing a subscribe half way
    /// only means subscribing again.
    pub(crate) async fn next(&mut self, quiet: &CancellationToken) -> Option<JobDelivery> {
        let consumer = match self.consumer.as_mut() {
            Some(c) => c,
            None => self.consumer.insert(self.subscribe(quiet).await?),
        };
        // `JobConsumer::next` is cancel-safe, so losing this race to `quiet` loses no job.
        let delivery = tokio::select! {
            biased;
            _ = quiet.cancelled() => return None,
            d = consumer.next() => d,
        };
        if delivery.is_none() {
            tracing::info!(queue = %self.key, "queue consumer ended");
        }
        delivery
    }

    async fn subscribe(&self, quiet: &CancellationToken) -> Option<JobConsumer> {
        let mut backoff = FIRST_SUBSCRIBE_BACKOFF;
        loop {
            let consumer = tokio::select! {
                biased;
                _ = quiet.cancelled() => return None,
                c = self.broker.consume_jobs(self.key, &self.tag) => c,
            };
            match consumer {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(queue = %self.key, error = %e, "cannot subscribe to the queue; retrying");
                    tokio::select! {
                        _ = quiet.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_SUBSCRIBE_BACKOFF);
                }
            }
        }
    }
}

/// Logs a delivery that could not be settled: its channel died, so the broker redelivers it
/// (and its operations replay from the host's journal).
pub(crate) fn log_unsettled(queue: &str, settled: Result<(), BrokerError>) {
    if let Err(e) = settled {
        tracing::warn!(queue, error = %e, "could not settle a delivery; it will be redelivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_broker::Topology;
    use aetherv_core::JobEnvelope;

    fn job(host: &str) -> JobEnvelope {
        JobEnvelope::from_slice(
            format!(
                r#"{{"v":1,"job_id":"5f0c6c1e-8d7e-4e55-9b1a-3f9a1f3e2b10","kind":"noop",
                "target":{{"host":"{host}"}},"spec":{{}},
                "requested_by":{{"platform":"amqp","user_id":"t"}},
                "created_at":"2026-11-29T00:00:00Z"}}"#
            )
            .as_bytes(),
        )
        .expect("envelope")
    }

    /// A broker named `prefix` with one job queued for `hv01`.
    async fn broker_with_one_job(prefix: &str) -> Broker {
        let broker = Broker::in_process(Topology::new(prefix));
        broker.declare_host("hv01").await.expect("declare");
        broker.publish_job(&job("hv01")).await.expect("publish");
        broker
    }

    #[tokio::test]
    async fn hands_out_deliveries_and_ends_on_quiet() {
        let broker = broker_with_one_job("queue-reader").await;
        let quiet = CancellationToken::new();
        let mut reader = QueueReader::new(&broker, "hv01", "w1:hv01".into());
        let d = reader.next(&quiet).await.expect("a delivery");
        assert_eq!(d.envelope.target, job("hv01").target);
        d.ack().await.expect("ack");
        quiet.cancel();
        assert!(reader.next(&quiet).await.is_none(), "quiet ends the reader");
    }

    #[tokio::test]
    async fn ends_when_the_broker_closes_the_consumer() {
        let broker = broker_with_one_job("queue-reader-close").await;
        let quiet = CancellationToken::new();
        let mut reader = QueueReader::new(&broker, "hv01", "w1:hv01".into());
        reader
            .next(&quiet)
            .await
            .expect("a delivery")
            .ack()
            .await
            .expect("ack");
        broker.close().await;
        let ended = tokio::time::timeout(Duration::from_secs(5), reader.next(&quiet)).await;
        assert!(
            matches!(ended, Ok(None)),
            "a closed consumer ends the reader"
        );
    }
}
