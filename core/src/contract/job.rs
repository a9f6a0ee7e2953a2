//! The job envelope: what the bot or any AMQP producer publishes to `aetherv.jobs`.

use super::ContractError;
use crate::ids::JobId;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

wire_enum! {
    /// What a job does. The set is closed; the worker has one executor per kind.
    pub enum JobKind {
        /// 1 VM + 1 disk + 1 NIC + guest initialization (+ optional cluster registration).
        DeploymentManaged = "deployment.managed",
        /// Create a VM (no disk, no NIC).
        VmCreate = "vm.create",
        /// Change a VM's CPU, memory, firmware, cluster membership, ...
        VmUpdate = "vm.update",
        /// Delete a VM (optionally with its disks).
        VmDelete = "vm.delete",
        /// start / shutdown / stop / reset.
        VmPower = "vm.power",
        /// Create and attach a disk (blank or cloned from an image).
        DiskCreate = "disk.create",
        /// Expand a disk.
        DiskUpdate = "disk.update",
        /// Detach and delete a disk.
        DiskDelete = "disk.delete",
        /// Add a network adapter.
        NicCreate = "nic.create",
        /// Change a network adapter.
        NicUpdate = "nic.update",
        /// Remove a network adapter.
        NicDelete = "nic.delete",
        /// Guest initialization over KVP.
        VmInitialize = "vm.initialize",
        /// Does nothing on the host but a round trip to the agent; used for tests and benchmarks.
        Noop = "noop",
    }
}

/// Where a job runs: one named host, or a cluster (the worker places it on a member).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A Hyper-V host by configured name; also the routing key.
    Host(String),
    /// A failover cluster by name; placement picks the member host.
    Cluster(String),
}

impl Target {
    /// The AMQP routing key for this target: `<host>` or `cluster.<name>`.
    pub fn routing_key(&self) -> String {
        match self {
            Target::Host(h) => h.trim().to_ascii_lowercase(),
            Target::Cluster(c) => format!("cluster.{}", c.trim().to_ascii_lowercase()),
        }
    }
}

/// The chat platform (or other origin) a person acted through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Slack workspace.
    Slack,
    /// Discord guild.
    Discord,
    /// The terminal chat of `aetherv demo`.
    Console,
    /// A system that published straight to RabbitMQ, or `aetherv submit`.
    Amqp,
    /// A client of the HTTP API (`aetherv api`): a bearer token's name or an OIDC subject.
    Api,
}

/// An immutable identity: the platform plus the platform's user id (never a display name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    /// The platform the id belongs to.
    pub platform: Platform,
    /// The platform's immutable user id (Slack `U…`, Discord snowflake, console user name).
    pub user_id: String,
}

/// Where the job's thread lives, so workers' events can be routed back to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// Platform of the conversation.
    pub platform: Platform,
    /// Channel id.
    pub channel: String,
    /// Thread id (Slack `thread_ts`, Discord thread channel id), when the job has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

/// Who approved the job, when policy asked for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approvers, in the order they voted.
    pub approved_by: Vec<Requester>,
    /// When the last required approval arrived.
    pub at: DateTime<Utc>,
}

/// The largest job envelope accepted, in bytes. An agent request travels in one command line
/// on the host, so a bigger envelope could never run; it is dead-lettered as `too_large`.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// The job envelope (contract version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobEnvelope {
    /// Contract version; always 1 for this build.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Unique job id; resources the job creates are tagged with it.
    pub job_id: JobId,
    /// What to do.
    pub kind: JobKind,
    /// Where to do it.
    pub target: Target,
    /// The validated request fields (form field ids → values), without secrets.
    pub spec: serde_json::Map<String, serde_json::Value>,
    /// Secret fields, encrypted for the workers (age, ASCII-armored). Absent when the job has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<String>,
    /// Who asked for it.
    pub requested_by: Requester,
    /// Where to report progress; absent for jobs from AMQP producers without a chat thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// When the request was made.
    pub created_at: DateTime<Utc>,
    /// Approval record, when policy required one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

impl JobEnvelope {
    /// A new envelope of the current version: a fresh job id, created now, no secrets, no
    /// origin, no approval.
    pub fn new(
        kind: JobKind,
        target: Target,
        spec: serde_json::Map<String, serde_json::Value>,
        requested_by: Requester,
    ) -> Self {
        JobEnvelope {
            v: super::current_version(),
            job_id: JobId::new(),
            kind,
            target,
            spec,
            secrets: None,
            requested_by,
            origin: None,
            created_at: Utc::now(),
            approval: None,
        }
    }

    /// Decodes and version-checks an envelope from a message body. A body over
    /// [`MAX_ENVELOPE_BYTES`] is refused (`too_large`) before it is parsed: its request could not
    /// reach a host's command line anyway.
    pub fn from_slice(body: &[u8]) -> Result<Self, ContractError> {
        if body.len() > MAX_ENVELOPE_BYTES {
            return Err(ContractError::TooLarge {
                size: body.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        super::decode("job envelope", body)
    }

    /// Serializes the envelope to its wire form.
    pub fn to_vec(&self) -> Vec<u8> {
        // Serializing a struct of strings, maps and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
