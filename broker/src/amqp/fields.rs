//! AMQP argument tables and header reading: the only place that builds or reads `FieldTable`s.
//!
//! Queue and consume arguments must have the types RabbitMQ expects (a boolean for
//! `x-single-active-consumer`, an integer for `x-delivery-limit`); a wrong type fails the
//! declaration with PRECONDITION_FAILED.

use crate::{BrokerError, DeadLetter, StreamOffset, Topology, DEFAULT_EVENTS_SEGMENT_BYTES};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

/// A short string (≤ 255 bytes) from outside input, without lapin's panic on overflow.
pub(crate) fn short(s: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(s).map_err(|_| BrokerError::NameTooLong(s.to_owned()))
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn long_long(n: u64) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Arguments of a host queue: quorum, single active consumer, DLX, delivery limit.
pub(crate) fn host_queue_args(t: &Topology) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args.insert(
        "x-dead-letter-exchange".into(),
        long_string(&t.dead_letter_exchange()),
    );
    args.insert(
        "x-delivery-limit".into(),
        long_long(u64::from(t.delivery_limit)),
    );
    args
}

/// Arguments of a leader-election queue: quorum, single active consumer, at most one ready
/// token (further tokens are refused), and no delivery limit (the token is returned every time
/// a leader goes away, forever).
pub(crate) fn leader_queue_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args.insert("x-max-length".into(), long_long(1));
    args.insert("x-overflow".into(), long_string("reject-publish"));
    args
}

/// Arguments of the dead-letter queue: quorum, for durability.
pub(crate) fn dead_queue_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

/// Arguments of the event stream: stream type with age and size retention.
pub(crate) fn stream_args(t: &Topology) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("stream"));
    args.insert("x-max-age".into(), long_string(&t.events_max_age));
    args.insert("x-max-length-bytes".into(), long_long(t.events_max_bytes));
    args.insert(
        "x-stream-max-segment-size-bytes".into(),
        long_long(DEFAULT_EVENTS_SEGMENT_BYTES.min(t.events_max_bytes)),
    );
    args
}

/// The `x-stream-offset` consumer argument.
pub(crate) fn stream_offset_args(from: StreamOffset) -> FieldTable {
    let value = match from {
        StreamOffset::First => long_string("first"),
        StreamOffset::Last => long_string("last"),
        StreamOffset::Next => long_string("next"),
        StreamOffset::Offset(n) => long_long(n),
        StreamOffset::Timestamp(t) => {
            AMQPValue::Timestamp(u64::try_from(t.timestamp()).unwrap_or(0))
        }
    };
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), value);
    args
}

/// Properties of a published message: persistent JSON, plus optional headers.
pub(crate) fn message_properties(headers: Option<FieldTable>) -> BasicProperties {
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    match headers {
        Some(h) => props.with_headers(h),
        None => props,
    }
}

/// The headers of a dead-lettered copy: the original headers plus the reason and detail.
pub(crate) fn dead_letter_headers(
    original: &BasicProperties,
    reason: &str,
    detail: &str,
) -> FieldTable {
    let mut headers = original.headers().clone().unwrap_or_default();
    headers.insert(crate::REASON_HEADER.into(), long_string(reason));
    headers.insert(crate::DETAIL_HEADER.into(), long_string(detail));
    headers
}

/// An integer header of any AMQP integer type.
pub(crate) fn int_header(props: &BasicProperties, name: &str) -> Option<i64> {
    let value = props.headers().as_ref()?.inner().get(name)?;
    as_i64(value)
}

fn as_i64(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

fn as_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Every string header of a message (the signature headers among them).
pub(crate) fn string_headers(props: &BasicProperties) -> crate::Headers {
    props
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), as_string(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A header table of string headers.
pub(crate) fn headers_table(headers: &crate::Headers) -> Option<FieldTable> {
    if headers.is_empty() {
        return None;
    }
    let mut t = FieldTable::default();
    for (k, v) in headers {
        t.insert(k.as_str().into(), long_string(v));
    }
    Some(t)
}

fn string_header(headers: &FieldTable, name: &str) -> Option<String> {
    headers.inner().get(name).and_then(as_string)
}

/// RabbitMQ's own reason from the first `x-death` entry (`rejected`, `delivery_limit`, ...).
fn x_death_reason(headers: &FieldTable) -> Option<String> {
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(entries) => entries.as_slice().iter().find_map(|e| match e {
            AMQPValue::FieldTable(t) => string_header(t, "reason"),
            _ => None,
        }),
        _ => None,
    }
}

/// A dead letter from a message read off the dead-letter queue.
pub(crate) fn dead_letter_from(
    routing_key: &str,
    props: &BasicProperties,
    body: Vec<u8>,
) -> DeadLetter {
    let headers = props.headers().clone().unwrap_or_default();
    DeadLetter {
        routing_key: routing_key.to_owned(),
        reason: string_header(&headers, crate::REASON_HEADER).or_else(|| x_death_reason(&headers)),
        detail: string_header(&headers, crate::DETAIL_HEADER),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_queue_arguments_have_the_types_rabbitmq_requires() {
        let args = host_queue_args(&Topology::new("p"));
        let m = args.inner();
        assert_eq!(
            m.get("x-single-active-consumer"),
            Some(&AMQPValue::Boolean(true))
        );
        assert_eq!(m.get("x-delivery-limit"), Some(&AMQPValue::LongLongInt(5)));
        assert_eq!(m.get("x-queue-type"), Some(&long_string("quorum")));
        assert_eq!(m.get("x-dead-letter-exchange"), Some(&long_string("p.dlx")));
    }

    #[test]
    fn dead_letter_reason_prefers_our_header_then_x_death() {
        let props = message_properties(Some(dead_letter_headers(
            &BasicProperties::default(),
            "malformed_json",
            "body is not valid json",
        )));
        let d = dead_letter_from("hv01", &props, b"x".to_vec());
        assert_eq!(d.reason.as_deref(), Some("malformed_json"));
        assert_eq!(d.detail.as_deref(), Some("body is not valid json"));

        let mut death = FieldTable::default();
        death.insert("reason".into(), long_string("delivery_limit"));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        let props = BasicProperties::default().with_headers(headers);
        let d = dead_letter_from("hv01", &props, Vec::new());
        assert_eq!(d.reason.as_deref(), Some("delivery_limit"));
        assert_eq!(d.detail, None);
    }

    #[test]
    fn long_names_are_an_error_not_a_panic() {
        assert!(short(&"x".repeat(256)).is_err());
        assert!(short("hv01").is_ok());
    }
}
