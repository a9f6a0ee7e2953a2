//! aetherv-core: the pure heart of Aether-V ChatOps.
//!
//! Owns the form schemas (loaded from `schemas/*.yaml`), request validation, the versioned wire
//! contracts (job envelope, event, agent request/result), guest configuration → KVP items, and
//! secret redaction. The vocabulary of operations (typed specs, their fields, plans) is
//! [`ops`]. It must not do I/O: no sockets, no tokio, no filesystem access except through the
//! embedded schema texts (callers may pass other texts in).

#[macro_use]
mod wire_enum;

pub mod approval;
pub mod bundle;
pub mod chat_terms;
pub mod command;
pub mod contract;
pub mod error;
pub mod ids;
pub mod kvp;
pub mod lifecycle;
pub mod ops;
pub mod osfamily;
pub mod rbac;
pub mod redact;
pub mod safeguards;
pub mod schema;
pub mod secrets;
pub mod signing;
pub mod validate;

pub use contract::{
    agent::{AgentOperation, AgentRequest, AgentResult, AgentStatus},
    event::{Event, EventBody, LogLine, LogStream},
    job::{JobEnvelope, JobKind, Origin, Platform, Requester, Target},
    ContractError,
};
pub use error::error_chain;
pub use ids::{HostName, JobId};
pub use ops::{plan, JobSpec, Spec, StepName};
