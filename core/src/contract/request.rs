//! Requests from AMQP producers (published to `<prefix>.requests`) and the bot's replies to
//! them. A request is the job envelope without what only the bot may set (`approval`, the
//! requester, the origin): the requester is the message's verified AMQP `user_id`.

use super::job::{JobKind, Requester, Target};
use crate::ids::JobId;
use crate::validate::FieldError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A producer's request (contract version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Contract version; always 1 for this build.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The job id to use (for de-duplication by the producer); a fresh one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// What to do.
    pub kind: JobKind,
    /// Where to do it.
    pub target: Target,
    /// The request fields (form field ids → values), without secrets.
    pub spec: serde_json::Map<String, serde_json::Value>,
    /// Secret fields sealed with age to the workers' recipients, as in the job envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<String>,
}

impl JobRequest {
    /// Decodes and version-checks a request.
    pub fn from_slice(body: &[u8]) -> Result<Self, super::ContractError> {
        super::decode("job request", body)
    }
}

wire_enum! {
    /// What a reply to a producer says.
    pub enum ReplyStatus {
        /// The request passed the gate: the job exists (queued, or awaiting approval).
        Accepted = "accepted",
        /// The request was refused; `errors` says why, one per field.
        Rejected = "rejected",
        /// Approvers approved it: the job was published.
        Approved = "approved",
        /// An approver rejected it; `reason` when one was given.
        ApprovalRejected = "approval_rejected",
        /// Nobody decided before the approval expired.
        ApprovalExpired = "approval_expired",
    }
}

/// One problem with a request, as on the wire (the same fields as a form's field error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestError {
    /// The field (empty when about the request as a whole).
    pub field: String,
    /// Stable reason code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl From<&FieldError> for RequestError {
    fn from(e: &FieldError) -> Self {
        RequestError {
            field: e.field.clone(),
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
        }
    }
}

/// The bot's reply to a request, sent to its `reply_to` with its `correlation_id`
/// (contract version 1). One `accepted` or `rejected` per request; for a request that needs
/// approval, later one of `approved`, `approval_rejected`, `approval_expired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestReply {
    /// Contract version; always 1 for this build.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// What became of the request.
    pub status: ReplyStatus,
    /// The job, when the request was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// With `accepted`: whether the job waits for approval.
    #[serde(default)]
    pub awaiting_approval: bool,
    /// With `rejected`: every problem found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RequestError>,
    /// Who decided an approval, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Requester>,
    /// An approver's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RequestReply {
    /// A reply of `status` about `job`, nothing else set.
    pub fn new(status: ReplyStatus, job_id: Option<JobId>) -> Self {
        RequestReply {
            v: super::current_version(),
            status,
            job_id,
            awaiting_approval: false,
            errors: Vec::new(),
            by: None,
            reason: None,
        }
    }

    /// A rejection with its errors.
    pub fn rejected(job_id: Option<JobId>, errors: Vec<RequestError>) -> Self {
        RequestReply {
            errors,
            ..RequestReply::new(ReplyStatus::Rejected, job_id)
        }
    }

    /// Serializes the reply.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
