//! The agent protocol between the worker and the `Powershell/` entry script on a host.
//!
//! In: one JSON [`AgentRequest`] (base64 in the command line). Out: log lines on stdout, then
//! exactly one result line: [`RESULT_MARKER`] followed by a compact JSON [`AgentResult`]. The
//! marker makes the result unambiguous even when a log line happens to start with `{`.
//!
//! `idempotency_key` makes operations safe to re-send after a worker crash: the agent journals
//! each key's result on the host and answers a repeated key with the recorded result instead of
//! running the operation again (waiting if the first run is still in progress).

use super::{current_version, ContractError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prefix of the single result line the agent writes.
pub const RESULT_MARKER: &str = "##aetherv-result ";

wire_enum! {
    /// The primitive operations the host agent implements. Orchestration lives in Rust.
    pub enum AgentOperation {
        /// Host resources, capacity and VM list.
        HostInventory = "host.inventory",
        /// A round trip without side effects.
        Noop = "noop",
        /// Create a VM.
        VmCreate = "vm.create",
        /// Read one VM (by id or name).
        VmGet = "vm.get",
        /// Change a VM.
        VmUpdate = "vm.update",
        /// Delete a VM.
        VmDelete = "vm.delete",
        /// start / shutdown / stop / reset.
        VmPower = "vm.power",
        /// Create and attach a disk.
        DiskCreate = "disk.create",
        /// Expand a disk.
        DiskUpdate = "disk.update",
        /// Detach and delete a disk.
        DiskDelete = "disk.delete",
        /// Add a NIC.
        NicCreate = "nic.create",
        /// Change a NIC.
        NicUpdate = "nic.update",
        /// Remove a NIC.
        NicDelete = "nic.delete",
        /// Read KVP items the guest published.
        KvpRead = "kvp.read",
        /// Write host KVP items.
        KvpWrite = "kvp.write",
        /// Remove host KVP items.
        KvpRemove = "kvp.remove",
        /// Attach the provisioning ISO.
        IsoAttach = "iso.attach",
        /// Detach (and delete) the provisioning ISO.
        IsoDetach = "iso.detach",
        /// Register a VM with the failover cluster.
        ClusterAdd = "cluster.add",
        /// Remove a VM from the failover cluster.
        ClusterRemove = "cluster.remove",
    }
}

impl AgentOperation {
    /// Whether the operation changes host state (and so is journaled under its idempotency key).
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            AgentOperation::HostInventory
                | AgentOperation::Noop
                | AgentOperation::VmGet
                | AgentOperation::KvpRead
        )
    }
}

/// One request to the host agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRequest {
    /// Contract version; always 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The primitive to run.
    pub operation: AgentOperation,
    /// Operation arguments.
    pub spec: serde_json::Map<String, serde_json::Value>,
    /// The job id (or another caller id), echoed in the result and recorded in host logs.
    pub correlation_id: String,
    /// `<job_id>:<step>`: a repeated key returns the journaled result instead of re-running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl AgentRequest {
    /// A request of the current version.
    pub fn new(
        operation: AgentOperation,
        spec: serde_json::Map<String, serde_json::Value>,
        correlation_id: impl Into<String>,
    ) -> Self {
        AgentRequest {
            v: current_version(),
            operation,
            spec,
            correlation_id: correlation_id.into(),
            idempotency_key: None,
        }
    }

    /// Decodes and version-checks a request.
    pub fn from_slice(body: &[u8]) -> Result<Self, ContractError> {
        super::decode("agent request", body)
    }
}

/// Outcome of an agent operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Done.
    Success,
    /// Failed; `code` says why.
    Error,
    /// Done with warnings (counts as success).
    Partial,
}

/// The agent's single result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentResult {
    /// Contract version; always 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Outcome.
    pub status: AgentStatus,
    /// Human-readable summary.
    pub message: String,
    /// Operation output (resource ids, inventory, ...).
    #[serde(default)]
    pub data: serde_json::Value,
    /// Stable error code when `status` is `error` (`name_conflict`, `not_found`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The request's correlation id.
    #[serde(default)]
    pub correlation_id: String,
}

impl AgentResult {
    /// A success result.
    pub fn success(
        message: impl Into<String>,
        data: serde_json::Value,
        correlation_id: &str,
    ) -> Self {
        AgentResult {
            v: current_version(),
            status: AgentStatus::Success,
            message: message.into(),
            data,
            code: None,
            correlation_id: correlation_id.to_string(),
        }
    }

    /// An error result.
    pub fn error(code: &str, message: impl Into<String>, correlation_id: &str) -> Self {
        AgentResult {
            v: current_version(),
            status: AgentStatus::Error,
            message: message.into(),
            data: serde_json::Value::Object(Default::default()),
            code: Some(code.to_string()),
            correlation_id: correlation_id.to_string(),
        }
    }

    /// The result line as the agent prints it.
    pub fn to_line(&self) -> String {
        format!(
            "{RESULT_MARKER}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// Finds and parses the result line in a complete stdout text. Errors name what is wrong.
    pub fn from_output(stdout: &str) -> Result<Self, ContractError> {
        let mut found = None;
        for line in stdout.lines() {
            if let Some(rest) = line
                .trim_start_matches('\u{feff}')
                .strip_prefix(RESULT_MARKER)
            {
                if found.is_some() {
                    return Err(ContractError::Invalid {
                        kind: "agent result",
                        detail: "more than one result line".into(),
                    });
                }
                found = Some(rest.trim());
            }
        }
        let line = found.ok_or(ContractError::Invalid {
            kind: "agent result",
            detail: "no result line in agent output".into(),
        })?;
        if line.is_empty() {
            return Err(ContractError::Invalid {
                kind: "agent result",
                detail: "empty or whitespace-only json response".into(),
            });
        }
        super::decode("agent result", line.as_bytes())
    }

    /// Whether the operation counts as done.
    pub fn is_ok(&self) -> bool {
        matches!(self.status, AgentStatus::Success | AgentStatus::Partial)
    }
}
