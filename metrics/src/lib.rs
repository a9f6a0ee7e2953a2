//! aetherv-metrics: what the bot and the worker count, and the endpoints that show it.
//!
//! One registry per process ([`metrics`]), filled by the crates that do the work (the worker's
//! slots and steps, the WinRM client, the broker, the chat adapters, the engine), and read by
//! [`health::serve`] at `/metrics` in the Prometheus text format, next to `/healthz` and
//! `/readyz`.
//!
//! Labels are bounded: job kinds, step names, outcomes, reasons and platforms come from fixed
//! vocabularies, and hosts from the configuration. No label carries a job id, a VM name or
//! anything a user typed.

pub mod health;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

/// `kind` and `outcome` of a finished job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The job kind (`vm.create`, …).
    pub kind: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub outcome: String,
}

/// A job kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The job kind.
    pub kind: String,
}

/// A step name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    /// The step (`vm.create`, `disk.create`, …).
    pub step: String,
}

/// A configured host.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabel {
    /// The host's configured name.
    pub host: String,
}

/// An outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok` or an error class.
    pub outcome: String,
}

/// A chat platform and the outcome of a call to it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChatLabels {
    /// `slack` or `discord`.
    pub platform: String,
    /// `ok`, `rate_limited`, `refused`, `failed`.
    pub outcome: String,
}

/// A chat platform.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabel {
    /// `slack` or `discord`.
    pub platform: String,
}

/// A dead-letter reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason code (`unsigned`, `bad_signature`, `target_mismatch`, `malformed`, …).
    pub reason: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_buckets() -> Histogram {
    // 5 ms to about 3 h: steps range from a KVP write to an image copy.
    Histogram::new(exponential_buckets(0.005, 2.5, 16))
}

fn call_buckets() -> Histogram {
    // 1 ms to about 30 s: one WinRM round trip.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    job_seconds: Hist<KindLabel>,
    step_seconds: Hist<StepLabel>,
    queue_depth: Family<HostLabel, Gauge>,
    slot_busy: Family<HostLabel, Gauge>,
    approvals_pending: Gauge,
    approval_oldest_seconds: Gauge<f64, AtomicU64>,
    winrm_calls: Family<OutcomeLabel, Counter>,
    winrm_seconds: Histogram,
    chat_calls: Family<ChatLabels, Counter>,
    chat_rate_limited: Family<PlatformLabel, Counter>,
    broker_reconnects: Counter,
    bot_leader: Gauge,
    dead_letters: Family<ReasonLabel, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aetherv");
        let m = Metrics {
            registry: Registry::default(),
            jobs: Family::default(),
            job_seconds: Family::new_with_constructor(seconds_buckets),
            step_seconds: Family::new_with_constructor(seconds_buckets),
            queue_depth: Family::default(),
            slot_busy: Family::default(),
            approvals_pending: Gauge::default(),
            approval_oldest_seconds: Gauge::default(),
            winrm_calls: Family::default(),
            winrm_seconds: call_buckets(),
            chat_calls: Family::default(),
            chat_rate_limited: Family::default(),
            broker_reconnects: Counter::default(),
            bot_leader: Gauge::default(),
            dead_letters: Family::default(),
        };
        registry.register("jobs", "Jobs finished, by kind and outcome", m.jobs.clone());
        registry.register(
            "job_duration_seconds",
            "Time from a job's start to its end, by kind",
            m.job_seconds.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time a step took, by step",
            m.step_seconds.clone(),
        );
        registry.register(
            "host_queue_depth",
            "Jobs waiting in a host's queue (ready, not yet delivered)",
            m.queue_depth.clone(),
        );
        registry.register(
            "slot_busy",
            "1 while the host's slot in this worker runs a job",
            m.slot_busy.clone(),
        );
        registry.register(
            "approvals_pending",
            "Requests waiting for approval",
            m.approvals_pending.clone(),
        );
        registry.register(
            "approval_oldest_age_seconds",
            "Age of the oldest request waiting for approval (0 when none)",
            m.approval_oldest_seconds.clone(),
        );
        registry.register(
            "winrm_calls",
            "WinRM requests, by outcome",
            m.winrm_calls.clone(),
        );
        registry.register(
            "winrm_call_duration_seconds",
            "WinRM request round trips",
            m.winrm_seconds.clone(),
        );
        registry.register(
            "chat_api_calls",
            "Calls to a chat platform's API, by platform and outcome",
            m.chat_calls.clone(),
        );
        registry.register(
            "chat_api_rate_limited",
            "429 answers from a chat platform's API",
            m.chat_rate_limited.clone(),
        );
        registry.register(
            "broker_reconnects",
            "Reconnections to RabbitMQ after a lost connection",
            m.broker_reconnects.clone(),
        );
        registry.register(
            "bot_leader",
            "1 while this bot is the leader with its replay done",
            m.bot_leader.clone(),
        );
        registry.register(
            "dead_letters",
            "Messages this process dead-lettered, by reason",
            m.dead_letters.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A job ended (`outcome`: `succeeded`, `failed`, `cancelled`) after `seconds`.
    pub fn job_finished(&self, kind: &str, outcome: &str, seconds: f64) {
        self.jobs
            .get_or_create(&JobLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.job_seconds
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .observe(seconds);
    }

    /// A step ended after `seconds`.
    pub fn step_finished(&self, step: &str, seconds: f64) {
        self.step_seconds
            .get_or_create(&StepLabel {
                step: step.to_string(),
            })
            .observe(seconds);
    }

    /// The depth of `host`'s queue.
    pub fn set_queue_depth(&self, host: &str, depth: u64) {
        self.queue_depth
            .get_or_create(&HostLabel {
                host: host.to_string(),
            })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Whether `host`'s slot runs a job.
    pub fn set_slot_busy(&self, host: &str, busy: bool) {
        self.slot_busy
            .get_or_create(&HostLabel {
                host: host.to_string(),
            })
            .set(i64::from(busy));
    }

    /// The approvals waiting, and the age of the oldest.
    pub fn set_approvals(&self, pending: usize, oldest_seconds: f64) {
        self.approvals_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.approval_oldest_seconds.set(oldest_seconds.max(0.0));
    }

    /// A WinRM request ended (`outcome`: `ok`, `auth`, `timeout`, `fault`, `transport`).
    pub fn winrm_call(&self, outcome: &str, seconds: f64) {
        self.winrm_calls
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.winrm_seconds.observe(seconds);
    }

    /// A call to a chat platform's API ended; a 429 also counts as rate limited.
    pub fn chat_call(&self, platform: &str, outcome: &str) {
        self.chat_calls
            .get_or_create(&ChatLabels {
                platform: platform.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        if outcome == "rate_limited" {
            self.chat_rate_limited
                .get_or_create(&PlatformLabel {
                    platform: platform.to_string(),
                })
                .inc();
        }
    }

    /// The broker connection was re-established.
    pub fn broker_reconnected(&self) {
        self.broker_reconnects.inc();
    }

    /// Whether this bot leads (with its replay done).
    pub fn set_bot_leader(&self, leading: bool) {
        self.bot_leader.set(i64::from(leading));
    }

    /// A message was dead-lettered with `reason`.
    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Everything in the Prometheus text format (OpenMetrics 1.0, ending in `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A duration in seconds as a float, for the histograms.
pub fn seconds(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_with_bounded_labels() {
        let m = Metrics::new();
        m.job_finished("vm.create", "succeeded", 1.5);
        m.job_finished("vm.create", "succeeded", 0.5);
        m.dead_lettered("unsigned");
        m.chat_call("discord", "rate_limited");
        m.set_slot_busy("hv01", true);
        let text = m.encode();
        assert!(
            text.contains(r#"aetherv_jobs_total{kind="vm.create",outcome="succeeded"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"aetherv_job_duration_seconds_count{kind="vm.create"} 2"#));
        assert!(text.contains(r#"aetherv_dead_letters_total{reason="unsigned"} 1"#));
        assert!(text.contains(r#"aetherv_chat_api_rate_limited_total{platform="discord"} 1"#));
        assert!(text.contains(r#"aetherv_slot_busy{host="hv01"} 1"#));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
