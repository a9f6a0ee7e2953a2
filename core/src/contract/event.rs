//! Events: what workers and the bot publish to `aetherv.events` (a stream queue). The bot builds
//! job threads and pending approvals from them; they are also the audit trail. Never a secret.

use super::{current_version, ContractError};
use crate::contract::job::Requester;
use crate::ids::JobId;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One event (contract version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Contract version; always 1 for this build.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Unique id of this event (consumers de-duplicate on it).
    pub event_id: uuid::Uuid,
    /// The job this event is about; absent for host-level events (`host.inventory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// Per (job, emitter) sequence number, starting at 0, so consumers can order a job's events.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The event type and its payload.
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    /// A new event for a job, stamped now.
    pub fn for_job(job_id: JobId, seq: u64, body: EventBody) -> Self {
        Event {
            v: current_version(),
            event_id: uuid::Uuid::new_v4(),
            job_id: Some(job_id),
            seq,
            at: Utc::now(),
            body,
        }
    }

    /// A host-level event (no job), stamped now.
    pub fn for_host(seq: u64, body: EventBody) -> Self {
        Event {
            v: current_version(),
            event_id: uuid::Uuid::new_v4(),
            job_id: None,
            seq,
            at: Utc::now(),
            body,
        }
    }

    /// Decodes and version-checks an event.
    pub fn from_slice(body: &[u8]) -> Result<Self, ContractError> {
        super::decode("event", body)
    }

    /// Serializes the event to its wire form.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The event's type name as on the wire (`job.started`, ...).
    pub fn type_name(&self) -> &'static str {
        self.body.type_name()
    }

    /// True for the events that end a job.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.body,
            EventBody::JobSucceeded { .. }
                | EventBody::JobFailed { .. }
                | EventBody::JobCancelled { .. }
        )
    }
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output / information stream.
    Stdout,
    /// Error stream.
    Stderr,
    /// The worker's own narration (step boundaries, retries).
    Worker,
}

/// One log line of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// The stream.
    pub stream: LogStream,
    /// The text, without a trailing newline.
    pub text: String,
}

/// Event type and payload, serialized as `"type": "...", "payload": {...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum EventBody {
    /// The job was published and waits for its host slot.
    #[serde(rename = "job.queued")]
    JobQueued {
        /// Routing key (host or `cluster.<name>`).
        target: String,
        /// Job kind.
        kind: String,
    },
    /// Policy asked for approval.
    #[serde(rename = "approval.requested")]
    ApprovalRequested {
        /// How many approvals are needed.
        required: u32,
        /// Which groups may approve.
        groups: Vec<String>,
        /// When the request expires.
        expires_at: DateTime<Utc>,
        /// The redacted request, for rebuilding the approval message.
        request: serde_json::Value,
    },
    /// An approver approved (one vote; the job is approved when `granted == required`).
    #[serde(rename = "approval.granted")]
    ApprovalGranted {
        /// The voter.
        by: Requester,
        /// Approvals so far.
        granted: u32,
        /// Approvals needed.
        required: u32,
    },
    /// An approver rejected (vetoes the request).
    #[serde(rename = "approval.rejected")]
    ApprovalRejected {
        /// The voter.
        by: Requester,
        /// Optional reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Nobody decided before the TTL.
    #[serde(rename = "approval.expired")]
    ApprovalExpired {},
    /// A worker took the job into its host slot.
    #[serde(rename = "job.started")]
    JobStarted {
        /// The host the job runs on.
        host: String,
        /// The worker instance id.
        worker: String,
        /// Delivery attempt (1 = first delivery).
        attempt: u32,
    },
    /// A step began.
    #[serde(rename = "step.started")]
    StepStarted {
        /// Step name (`vm.create`, `disk.create`, ...).
        step: String,
        /// 1-based index.
        index: u32,
        /// Number of steps in the job.
        total: u32,
    },
    /// A step finished well.
    #[serde(rename = "step.succeeded")]
    StepSucceeded {
        /// Step name.
        step: String,
        /// Wall time in milliseconds.
        duration_ms: u64,
        /// Result data (resource ids, ...).
        #[serde(default)]
        data: serde_json::Value,
        /// True when the step found its own resource from an earlier attempt and skipped work.
        #[serde(default)]
        resumed: bool,
    },
    /// A step failed.
    #[serde(rename = "step.failed")]
    StepFailed {
        /// Step name.
        step: String,
        /// Wall time in milliseconds.
        duration_ms: u64,
        /// Stable error code.
        code: String,
        /// What went wrong.
        message: String,
    },
    /// Log lines (batched).
    #[serde(rename = "job.log")]
    JobLog {
        /// The lines, in order.
        lines: Vec<LogLine>,
    },
    /// The job finished well.
    #[serde(rename = "job.succeeded")]
    JobSucceeded {
        /// Created/changed resource ids and other results.
        #[serde(default)]
        result: serde_json::Value,
    },
    /// The job failed.
    #[serde(rename = "job.failed")]
    JobFailed {
        /// Stable error code.
        code: String,
        /// What went wrong.
        message: String,
        /// The failing step, when a step failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
    },
    /// The job was cancelled.
    #[serde(rename = "job.cancelled")]
    JobCancelled {
        /// Who cancelled it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Requester>,
    },
    /// Someone asked to cancel a queued or running job: the worker drops it when its slot
    /// reaches it, or stops it at the next step boundary, and then emits `job.cancelled`.
    #[serde(rename = "job.cancel_requested")]
    JobCancelRequested {
        /// Who asked.
        by: Requester,
    },
    /// A worker died or shut down while running the job; it will be redelivered.
    #[serde(rename = "job.interrupted")]
    JobInterrupted {
        /// Why.
        reason: String,
    },
    /// A redelivered job continues where the previous attempt stopped.
    #[serde(rename = "job.resumed")]
    JobResumed {
        /// Delivery attempt.
        attempt: u32,
    },
    /// An AMQP producer's request passed the gate; the event's job is the new job.
    #[serde(rename = "request.accepted")]
    RequestAccepted {
        /// The producer (`amqp`, its RabbitMQ user).
        by: Requester,
        /// The request's `correlation_id`, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation_id: Option<String>,
        /// Whether the job waits for approval.
        awaiting_approval: bool,
    },
    /// An AMQP producer's request was refused (no job was made; the event's `job_id` is the
    /// request's, when it named one).
    #[serde(rename = "request.rejected")]
    RequestRejected {
        /// The producer, when the request carried a `user_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Requester>,
        /// The request's `correlation_id`, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation_id: Option<String>,
        /// Every problem found.
        errors: Vec<crate::contract::request::RequestError>,
    },
    /// A bot posted the job's final chat message (its thread is complete). A bot that
    /// restores a finished job without this mark posts the final message itself: the job
    /// ended while no bot ran, or the bot died before marking it.
    #[serde(rename = "thread.finished")]
    ThreadFinished {},
    /// A host's inventory snapshot (periodic poll).
    #[serde(rename = "host.inventory")]
    HostInventory {
        /// Host name.
        host: String,
        /// Whether the host answered.
        reachable: bool,
        /// The inventory document, when reachable.
        #[serde(default)]
        inventory: serde_json::Value,
        /// Error, when unreachable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl EventBody {
    /// The wire type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::JobQueued { .. } => "job.queued",
            EventBody::ApprovalRequested { .. } => "approval.requested",
            EventBody::ApprovalGranted { .. } => "approval.granted",
            EventBody::ApprovalRejected { .. } => "approval.rejected",
            EventBody::ApprovalExpired {} => "approval.expired",
            EventBody::ThreadFinished {} => "thread.finished",
            EventBody::RequestAccepted { .. } => "request.accepted",
            EventBody::RequestRejected { .. } => "request.rejected",
            EventBody::JobStarted { .. } => "job.started",
            EventBody::StepStarted { .. } => "step.started",
            EventBody::StepSucceeded { .. } => "step.succeeded",
            EventBody::StepFailed { .. } => "step.failed",
            EventBody::JobLog { .. } => "job.log",
            EventBody::JobSucceeded { .. } => "job.succeeded",
            EventBody::JobFailed { .. } => "job.failed",
            EventBody::JobCancelled { .. } => "job.cancelled",
            EventBody::JobCancelRequested { .. } => "job.cancel_requested",
            EventBody::JobInterrupted { .. } => "job.interrupted",
            EventBody::JobResumed { .. } => "job.resumed",
            EventBody::HostInventory { .. } => "host.inventory",
        }
    }
}
