//! The names and settings of the RabbitMQ topology (DESIGN.md "Flows" 4–6).
//!
//! Owns naming only: exchange and queue names derived from one prefix, and the retention and
//! delivery-limit numbers. It does no I/O; the AMQP and in-process brokers both read it, so the
//! two implementations agree on names and limits.

/// How many times a job may be delivered and returned before the queue dead-letters it
/// (`x-delivery-limit` on the quorum host queues; the in-process broker applies the same rule).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;

/// How long the event stream keeps events (`x-max-age`).
pub const DEFAULT_EVENTS_MAX_AGE: &str = "7D";

/// How many bytes the event stream keeps at most (`x-max-length-bytes`): 1 GiB.
pub const DEFAULT_EVENTS_MAX_BYTES: u64 = 1 << 30;

/// The segment size of the event stream (`x-stream-max-segment-size-bytes`): 64 MiB, so that
/// size retention (which removes whole segments) stays fine-grained.
pub const DEFAULT_EVENTS_SEGMENT_BYTES: u64 = 64 << 20;

/// The names of every exchange and queue, derived from one prefix, plus retention settings.
///
/// Tests use a unique prefix per run so that they never collide on a shared broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The name prefix, `aetherv` by default.
    pub prefix: String,
    /// `x-delivery-limit` of the host queues.
    pub delivery_limit: u32,
    /// `x-max-age` of the event stream (RabbitMQ duration syntax: `7D`, `12h`, ...).
    pub events_max_age: String,
    /// `x-max-length-bytes` of the event stream.
    pub events_max_bytes: u64,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new("aetherv")
    }
}

impl Topology {
    /// A topology with the given name prefix and default limits.
    pub fn new(prefix: impl Into<String>) -> Self {
        Topology {
            prefix: prefix.into(),
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            events_max_age: DEFAULT_EVENTS_MAX_AGE.to_owned(),
            events_max_bytes: DEFAULT_EVENTS_MAX_BYTES,
        }
    }

    /// The direct exchange jobs are published to (`<prefix>.jobs`); routing key = host.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// The quorum queue of one host (`<prefix>.host.<host>`), bound to the jobs exchange with
    /// the lower-cased host as routing key. Single active consumer, dead-letter exchange,
    /// delivery limit.
    pub fn host_queue(&self, host: &str) -> String {
        format!("{}.host.{}", self.prefix, normalize_host(host))
    }

    /// The topic exchange events are published to (`<prefix>.events`); routing key = event type.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The stream queue holding the event log (`<prefix>.events.stream`), bound to the events
    /// exchange with `#`.
    pub fn events_stream(&self) -> String {
        format!("{}.events.stream", self.prefix)
    }

    /// The election queue of a role (`<prefix>.leader.<role>`): quorum, single active consumer,
    /// holding one token message; see [`crate::Leadership`].
    pub fn leader_queue(&self, role: &str) -> String {
        format!("{}.leader.{}", self.prefix, role)
    }

    /// The fanout exchange AMQP producers publish requests to (`<prefix>.requests`); the bot
    /// gates them before anything reaches [`Topology::jobs_exchange`].
    pub fn requests_exchange(&self) -> String {
        format!("{}.requests", self.prefix)
    }

    /// The queue of requests (`<prefix>.requests.in`), bound to the requests exchange: quorum,
    /// single active consumer (the leading bot), dead-letter exchange, delivery limit.
    pub fn requests_queue(&self) -> String {
        format!("{}.requests.in", self.prefix)
    }

    /// The fanout dead-letter exchange (`<prefix>.dlx`).
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// The queue collecting dead letters (`<prefix>.dead`), bound to the dead-letter exchange.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

/// The routing key of a host: trimmed and lower-cased, as `Target::routing_key` does.
pub fn normalize_host(host: &str) -> String {
    host.trim().to_ascii_lowercase()
}

/// Checks a host name before it becomes part of a queue name and a routing key.
pub(crate) fn valid_host(host: &str) -> Option<String> {
    aetherv_core::HostName::parse(host).map(|h| h.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_prefix() {
        let t = Topology::default();
        assert_eq!(t.jobs_exchange(), "aetherv.jobs");
        assert_eq!(t.host_queue(" HV01 "), "aetherv.host.hv01");
        assert_eq!(t.events_exchange(), "aetherv.events");
        assert_eq!(t.events_stream(), "aetherv.events.stream");
        assert_eq!(t.dead_letter_exchange(), "aetherv.dlx");
        assert_eq!(t.dead_letter_queue(), "aetherv.dead");
        assert_eq!(t.requests_exchange(), "aetherv.requests");
        assert_eq!(t.requests_queue(), "aetherv.requests.in");
        assert_eq!(Topology::new("t-1").jobs_exchange(), "t-1.jobs");
    }

    #[test]
    fn host_names_are_validated_and_lower_cased() {
        assert_eq!(valid_host("HV-01.lab").as_deref(), Some("hv-01.lab"));
        assert_eq!(valid_host("bad host"), None);
        assert_eq!(valid_host(""), None);
    }
}
