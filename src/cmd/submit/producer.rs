//! The AMQP producer side of `aetherv submit`: a request to `<prefix>.requests` as the URL's
//! user (`user_id`, which RabbitMQ checks against the connection), answered on a private,
//! server-named exclusive reply queue (`amq.gen-…`) under a fresh `correlation_id`; then,
//! optionally, the job's events from `<prefix>.events.stream`.
//!
//! It needs only what docs/amqp.md grants a producer: configure and read its own `amq.gen-…`
//! queue, write `<prefix>.requests`, read `<prefix>.events.stream`. It declares nothing else
//! (unlike the bot's and workers' broker, which declares the whole topology).

use aetherv_core::contract::request::{JobRequest, RequestReply};
use aetherv_core::Event;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use std::time::Duration;

/// How long connecting, declaring and publishing may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one connection attempt to one node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The user of an AMQP URL (`amqp://user:password@host/vhost`), percent-decoded; `guest`
/// (RabbitMQ's default, as the client uses it) when the URL names none.
pub fn url_user(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let user = authority
        .rsplit_once('@')
        .map(|(info, _)| info.split(':').next().unwrap_or_default());
    match user {
        Some(u) if !u.is_empty() => percent_decode(u),
        _ => "guest".to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn short(s: &str) -> Result<ShortString, String> {
    ShortString::try_new(s).map_err(|_| format!("the name {s:?} is longer than 255 bytes"))
}

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(OPERATION_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {OPERATION_TIMEOUT:?}")),
    }
}

/// A producer's connection with its reply queue.
pub struct Producer {
    conn: Connection,
    channel: Channel,
    replies: Consumer,
    reply_queue: String,
    prefix: String,
}

impl Producer {
    /// Connects to the first of `url`'s nodes (one AMQP URL, or several comma-separated) that
    /// answers and opens the private reply queue there.
    pub async fn connect(url: &str, prefix: &str) -> Result<Producer, String> {
        let urls = aetherv_broker::broker_urls(url).map_err(|e| e.to_string())?;
        let mut last = String::new();
        for (i, u) in urls.iter().enumerate() {
            match Self::connect_one(u, prefix).await {
                Ok(p) => return Ok(p),
                Err(e) if urls.len() > 1 => last = format!("node {} of {}: {e}", i + 1, urls.len()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn connect_one(url: &str, prefix: &str) -> Result<Producer, String> {
        let props = ConnectionProperties::default()
            .with_connection_name("aetherv-submit".into())
            .with_client_property("product".into(), "aetherv".into());
        let conn =
            match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
                Err(_) => {
                    return Err(format!(
                        "cannot connect: no answer within {CONNECT_TIMEOUT:?}"
                    ))
                }
            };
        let channel = timed("cannot open a channel", conn.create_channel()).await?;
        timed(
            "cannot enable publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = timed(
            "cannot declare the reply queue",
            channel.queue_declare("".into(), exclusive, FieldTable::default()),
        )
        .await?;
        let reply_queue = queue.name().as_str().to_string();
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let replies = timed(
            "cannot read the reply queue",
            channel.basic_consume(
                short(&reply_queue)?,
                "aetherv-submit".into(),
                no_ack,
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(Producer {
            conn,
            channel,
            replies,
            reply_queue,
            prefix: prefix.to_string(),
        })
    }

    /// Subscribes to the event stream from a few seconds ago (so nothing about the job is
    /// missed), on a channel of its own.
    pub async fn events(&self) -> Result<EventFeed, String> {
        let channel = timed("cannot open a channel", self.conn.create_channel()).await?;
        timed(
            "cannot set the stream prefetch",
            channel.basic_qos(100, BasicQosOptions::default()),
        )
        .await?;
        let since = chrono::Utc::now() - chrono::Duration::seconds(5);
        let mut args = FieldTable::default();
        args.insert(
            "x-stream-offset".into(),
            AMQPValue::Timestamp(u64::try_from(since.timestamp()).unwrap_or(0)),
        );
        let stream = format!("{}.events.stream", self.prefix);
        let consumer = timed(
            "cannot read the event stream",
            channel.basic_consume(
                short(&stream)?,
                "aetherv-submit-events".into(),
                BasicConsumeOptions::default(),
                args,
            ),
        )
        .await?;
        Ok(EventFeed {
            _channel: channel,
            consumer,
        })
    }

    /// Publishes `request` as `user_id` with the reply queue and `correlation_id`; waits for
    /// the broker's confirm.
    pub async fn publish(
        &self,
        request: &JobRequest,
        user_id: &str,
        correlation_id: &str,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_user_id(short(user_id)?)
            .with_reply_to(short(&self.reply_queue)?)
            .with_correlation_id(short(correlation_id)?);
        let exchange = format!("{}.requests", self.prefix);
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = timed("the request was not published", async {
            self.channel
                .basic_publish(short(&exchange)?, "".into(), options, &body, props)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(format!(
                "nothing consumes {exchange} (is a bot running under this prefix?)"
            )),
            Confirmation::Nack(_) => Err("RabbitMQ refused the request".into()),
        }
    }

    /// The next reply with `correlation_id` (others are skipped), or `None` when the queue
    /// closed. Undecodable replies are an error naming the problem, not the bytes.
    pub async fn reply(&mut self, correlation_id: &str) -> Option<Result<RequestReply, String>> {
        loop {
            let delivery = match self.replies.next().await? {
                Ok(d) => d,
                Err(e) => return Some(Err(format!("the reply queue failed: {e}"))),
            };
            let same = delivery
                .properties
                .correlation_id()
                .as_ref()
                .is_some_and(|c| c.as_str() == correlation_id);
            if !same {
                continue;
            }
            return Some(
                serde_json::from_slice::<RequestReply>(&delivery.data)
                    .map_err(|e| format!("an undecodable reply: {e}")),
            );
        }
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.conn.close(200, "done".into())).await;
    }
}

/// The event stream, read from a consumer of its own.
pub struct EventFeed {
    _channel: Channel,
    consumer: Consumer,
}

impl EventFeed {
    /// The next decodable event (acked), or `None` when the stream closed.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let delivery = self.consumer.next().await?.ok()?;
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            if let Ok(ev) = Event::from_slice(&delivery.data) {
                return Some(ev);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_comes_from_the_url() {
        assert_eq!(url_user("amqp://ops%40corp:pw@mq:5672/%2f"), "ops@corp");
        assert_eq!(url_user("amqps://svc-1@mq/vh"), "svc-1");
        assert_eq!(url_user("amqp://mq:5672/%2f"), "guest");
        assert_eq!(url_user("amqp://a:b@c@mq/"), "a");
    }
}
