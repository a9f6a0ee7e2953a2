//! The requests side of the AMQP broker: the leading bot's consumer of the requests queue,
//! producers' requests (with `user_id`, `reply_to`, `correlation_id`) and the bot's replies,
//! all through one confirmed publish.

use super::fields::{self, short};
use super::publish::confirmation_result;
use super::{AmqpBroker, AmqpJobConsumer};
use crate::{BrokerError, PublishError, RequestConsumer};
use std::sync::Arc;

impl AmqpBroker {
    /// Registers a consumer on the requests queue (single active consumer, prefetch 1).
    pub async fn consume_requests(
        &self,
        consumer_tag: &str,
    ) -> Result<RequestConsumer, BrokerError> {
        short(consumer_tag)?;
        let consumer = AmqpJobConsumer::start(
            Arc::clone(&self.shared),
            Arc::clone(&self.guard),
            None,
            consumer_tag.to_owned(),
        )
        .await?;
        Ok(RequestConsumer {
            inner: Box::new(consumer),
        })
    }

    /// Publishes `body` through `exchange` (empty: the default exchange) with `routing_key`
    /// and the given properties, `mandatory`, and waits for the confirm.
    pub(super) async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: lapin::BasicProperties,
    ) -> Result<(), PublishError> {
        let exchange = short(exchange)?;
        let key = short(routing_key)?;
        self.shared
            .with_live(|live| {
                let (exchange, key, props) = (exchange.clone(), key.clone(), props.clone());
                async move {
                    let confirm = live
                        .jobs
                        .publish(&live.conn, exchange, key, body, props)
                        .await?;
                    confirmation_result(&confirm, routing_key)
                }
            })
            .await
    }

    /// Sends a reply to a producer's `reply_to` queue (default exchange) with its
    /// `correlation_id`. [`PublishError::Unroutable`] when the queue is gone.
    pub async fn publish_reply(
        &self,
        reply_to: &str,
        correlation_id: Option<&str>,
        body: &[u8],
    ) -> Result<(), PublishError> {
        let mut props = fields::message_properties(None).with_delivery_mode(1);
        if let Some(c) = correlation_id {
            props = props.with_correlation_id(short(c)?);
        }
        self.publish_with("", reply_to, body, props).await
    }

    /// Publishes a request to the requests exchange, as the connection's user (`user_id`,
    /// which RabbitMQ checks), with an optional reply queue and correlation id.
    pub async fn publish_request(
        &self,
        body: &[u8],
        user_id: Option<&str>,
        reply_to: Option<&str>,
        correlation_id: Option<&str>,
    ) -> Result<(), PublishError> {
        let mut props = fields::message_properties(None);
        if let Some(u) = user_id {
            props = props.with_user_id(short(u)?);
        }
        if let Some(r) = reply_to {
            props = props.with_reply_to(short(r)?);
        }
        if let Some(c) = correlation_id {
            props = props.with_correlation_id(short(c)?);
        }
        let exchange = self.shared.topology.requests_exchange();
        self.publish_with(&exchange, "", body, props).await
    }
}
