//! Versioned wire contracts: the job envelope, the event, and the agent request/result.
//!
//! Every message carries `v`. Decoding goes through [`decode`], which reads `v` first so that a
//! message of an unknown version gets a clear "unsupported version" error instead of a confusing
//! field error. The JSON Schemas in `schemas/json/` are generated from these types
//! ([`json_schemas`]); a test fails when the checked-in files are stale.

pub mod agent;
pub mod command;
pub mod event;
pub mod job;
pub mod request;

use serde::de::DeserializeOwned;

/// The contract version this build speaks for every message type.
pub const CONTRACT_VERSION: u32 = 1;

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ContractError {
    /// The body is not JSON at all.
    #[error("body is not valid json: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("body must be a json object")]
    NotAnObject,
    /// `v` is absent or not an integer.
    #[error("missing or non-integer field `v` (contract version)")]
    MissingVersion,
    /// `v` is a version this build does not speak.
    #[error("unsupported contract version {found} (this build speaks version {supported})")]
    UnsupportedVersion {
        /// The version found in the message.
        found: u64,
        /// The version this build supports.
        supported: u32,
    },
    /// The body is larger than a message of its kind may be.
    #[error("message of {size} bytes is larger than the {max} bytes allowed")]
    TooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The largest size allowed.
        max: usize,
    },
    /// The fields do not match the contract.
    #[error("message does not match the {kind} contract: {detail}")]
    Invalid {
        /// Which contract (`job envelope`, `event`, ...).
        kind: &'static str,
        /// serde's description of the mismatch.
        detail: String,
    },
}

impl ContractError {
    /// A short stable code for dead-letter reason headers.
    pub fn code(&self) -> &'static str {
        match self {
            ContractError::NotJson(_) => "malformed_json",
            ContractError::NotAnObject => "malformed_json",
            ContractError::MissingVersion => "missing_version",
            ContractError::UnsupportedVersion { .. } => "unsupported_version",
            ContractError::TooLarge { .. } => "too_large",
            ContractError::Invalid { .. } => "invalid_contract",
        }
    }
}

/// Decodes a versioned message: JSON object, `v` == [`CONTRACT_VERSION`], then the typed fields.
pub fn decode<T: DeserializeOwned>(kind: &'static str, body: &[u8]) -> Result<T, ContractError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ContractError::NotJson(e.to_string()))?;
    decode_value(kind, value)
}

/// Like [`decode`], from an already parsed JSON value.
pub fn decode_value<T: DeserializeOwned>(
    kind: &'static str,
    value: serde_json::Value,
) -> Result<T, ContractError> {
    let obj = value.as_object().ok_or(ContractError::NotAnObject)?;
    let v = obj
        .get("v")
        .and_then(|v| v.as_u64())
        .ok_or(ContractError::MissingVersion)?;
    if v != u64::from(CONTRACT_VERSION) {
        return Err(ContractError::UnsupportedVersion {
            found: v,
            supported: CONTRACT_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| ContractError::Invalid {
        kind,
        detail: e.to_string(),
    })
}

/// serde helper: `v` must serialize as the current version.
pub(crate) fn current_version() -> u32 {
    CONTRACT_VERSION
}

/// The JSON Schemas of every AMQP/agent message, as `(file name, schema)` pairs, in the order
/// they are written to `schemas/json/`.
pub fn json_schemas() -> Vec<(&'static str, serde_json::Value)> {
    let gen = |s: schemars::Schema| s.to_value();
    vec![
        (
            "job-envelope.schema.json",
            gen(schemars::schema_for!(job::JobEnvelope)),
        ),
        (
            "event.schema.json",
            gen(schemars::schema_for!(event::Event)),
        ),
        (
            "job-request.schema.json",
            gen(schemars::schema_for!(request::JobRequest)),
        ),
        (
            "request-reply.schema.json",
            gen(schemars::schema_for!(request::RequestReply)),
        ),
        (
            "agent-request.schema.json",
            gen(schemars::schema_for!(agent::AgentRequest)),
        ),
        (
            "agent-result.schema.json",
            gen(schemars::schema_for!(agent::AgentResult)),
        ),
    ]
}

#[cfg(test)]
mod tests;
