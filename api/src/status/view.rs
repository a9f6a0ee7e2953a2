//! What the status page shows, as plain data: hosts with their state, free memory and VMs,
//! each host slot's running job and the queue behind it, recent jobs with the tail of their
//! log, and pending approvals with who must still vote. Built from the API's snapshot
//! ([`crate::store::Snapshot`]) and the jobs' journals; rendered by [`super::html`].

use serde::Serialize;

/// Recent jobs shown (newest first).
pub const RECENT_JOBS: usize = 12;
/// Log lines rendered with the page per job (the stream continues from there).
pub const LOG_TAIL: usize = 40;

/// The whole page.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusView {
    /// Who is signed in.
    pub user: String,
    /// When the view was built (RFC 3339).
    pub generated_at: String,
    /// Hosts by name.
    pub hosts: Vec<HostView>,
    /// Requests waiting for votes, oldest first.
    pub approvals: Vec<ApprovalLine>,
    /// Recent jobs, newest first.
    pub jobs: Vec<JobLine>,
}

/// One host and its slot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostView {
    /// Name.
    pub name: String,
    /// `up`, `unreachable` or `not_polled`.
    pub state: String,
    /// Why the last poll failed.
    pub error: Option<String>,
    /// Free memory, when the inventory reported it.
    pub free_memory_gb: Option<u64>,
    /// Total memory, when reported.
    pub total_memory_gb: Option<u64>,
    /// VMs on the host.
    pub vms: Vec<VmLine>,
    /// The job the slot runs.
    pub running: Option<JobRef>,
    /// The jobs queued behind it, next first.
    pub queue: Vec<QueuedLine>,
}

/// One VM.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VmLine {
    /// Name (user input: escaped when rendered).
    pub name: String,
    /// Power state.
    pub state: String,
    /// Memory in GB.
    pub memory_gb: u64,
}

/// A job as a host slot names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobRef {
    /// Full id.
    pub id: String,
    /// The first 8 characters.
    pub short: String,
    /// Kind.
    pub kind: String,
    /// Who asked.
    pub requester: String,
    /// The running step (`2/5 disk.create`), when known.
    pub step: Option<String>,
}

/// A queued job and its place.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueuedLine {
    /// 1 = next.
    pub position: u32,
    /// The job.
    pub job: JobRef,
}

/// A request waiting for approval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApprovalLine {
    /// The job.
    pub job: JobRef,
    /// Target host or cluster.
    pub target: String,
    /// The policy rule.
    pub rule: String,
    /// Approvals still needed.
    pub missing: u32,
    /// Approvals needed in all.
    pub required: u32,
    /// Groups whose members may still vote.
    pub groups: Vec<String>,
    /// Who approved so far.
    pub approved_by: Vec<String>,
    /// Expiry (RFC 3339).
    pub expires_at: String,
}

/// A recent job with its log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobLine {
    /// The job.
    pub job: JobRef,
    /// Target host or cluster.
    pub target: String,
    /// State name.
    pub state: String,
    /// When it was requested.
    pub created_at: Option<String>,
    /// The last [`LOG_TAIL`] log lines.
    pub log: Vec<String>,
    /// The journal position the tail ends at: the live stream continues after it.
    pub log_after: u64,
    /// Whether its log grows now (it runs): the page follows only these, so its few
    /// connections per server are not all taken by streams.
    pub live: bool,
}

/// The first 8 characters of an id.
pub fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
