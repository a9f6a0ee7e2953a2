//! Error types of the broker crate.
//!
//! Callers branch on [`PublishError::Unroutable`] (unknown host: tell the user) versus the
//! transient variants (retry later). lapin's error is kept as a source, never interpolated.

/// A broker operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The AMQP client reported an error (connection, channel or protocol).
    #[error("amqp operation failed")]
    Amqp(#[from] lapin::Error),
    /// The broker address list is wrong; the text names the position of the bad address,
    /// never its text (it carries a password).
    #[error("{0}")]
    InvalidAddress(String),
    /// [`crate::Broker::close`] was called; the broker accepts no more work.
    #[error("broker is closed")]
    Closed,
    /// No broker connection became available within the operation timeout.
    #[error("no broker connection within {0:?}")]
    Unavailable(std::time::Duration),
    /// The host name cannot become a queue name or routing key.
    #[error("invalid host name {0:?}")]
    InvalidHost(String),
    /// The host queue does not exist (it was never declared).
    #[error("no queue for host {0:?}")]
    UnknownHost(String),
    /// A name (routing key, consumer tag) is longer than AMQP allows (255 bytes).
    #[error("name too long for amqp: {0:?}")]
    NameTooLong(String),
    /// The delivery can no longer be settled: its consumer was dropped or its channel died.
    /// The broker redelivers the job to the next active consumer.
    #[error("delivery can no longer be settled because its channel or consumer is gone")]
    DeliveryLost,
}

/// Publishing a message failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No queue is bound for the routing key (an unknown host): the message was returned,
    /// not stored.
    #[error("no queue is bound for routing key {routing_key:?}")]
    Unroutable {
        /// The routing key that found no queue.
        routing_key: String,
    },
    /// The broker refused to take responsibility for the message (publisher confirm nack).
    #[error("the broker refused the message")]
    Nacked,
    /// The broker is unavailable, closed, or reported an error.
    #[error("broker error")]
    Broker(#[from] BrokerError),
}

impl From<lapin::Error> for PublishError {
    fn from(e: lapin::Error) -> Self {
        PublishError::Broker(BrokerError::Amqp(e))
    }
}
