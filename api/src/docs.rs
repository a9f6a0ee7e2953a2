//! The documents the API answers with (their JSON Schemas are in the OpenAPI document).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A write's answer: the job that does it (`202 Accepted`, `Location: /api/v1/jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The job id; poll `GET /api/v1/jobs/{job_id}`.
    pub job_id: String,
    /// The job's URL.
    pub location: String,
    /// `queued`, or `awaiting_approval` when policy asked for approval (given in chat).
    pub state: String,
    /// Whether the job waits for approval in chat.
    pub awaiting_approval: bool,
    /// True when an earlier request with the same `Idempotency-Key` made this job.
    pub replayed: bool,
}

/// A write's body: the form's field ids and values (`schemas/*.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Values {
    /// Field id → value.
    #[schema(value_type = Object)]
    pub values: Map<String, Value>,
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepDoc {
    /// The step name (`vm.create`, `disk.create`, `guest.initialize`, …).
    pub name: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// 1-based position in the plan.
    pub index: u32,
    /// Steps in the plan.
    pub total: u32,
    /// Wall time when finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// A failure's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    /// The step that failed, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// A stable code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// The approval a job waits for (given in chat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalDoc {
    /// The policy rule that asked for it.
    pub rule: String,
    /// Approvals needed.
    pub required: u32,
    /// Groups whose members may approve.
    pub groups: Vec<String>,
    /// Who approved so far.
    pub approved_by: Vec<String>,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// A job as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRow {
    /// Id.
    pub job_id: String,
    /// Job kind (`vm.create`, `deployment.managed`, …).
    pub kind: String,
    /// Host or `cluster.<name>`.
    pub target: String,
    /// The host it ran on (a cluster job: the member chosen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `awaiting_approval`, `rejected`, `expired`, `queued`, `running`, `interrupted`,
    /// `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// Who asked (`api:ci`, `alice`, `amqp:pipeline`).
    pub requester: String,
    /// When it was requested (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Position in its host's queue (1 = next), while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
}

/// One job in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobDoc {
    /// What a listing shows.
    #[serde(flatten)]
    pub row: JobRow,
    /// The steps so far.
    pub steps: Vec<StepDoc>,
    /// Resource ids and results (`vm_id`, `disk_id`, `nic_id`, `vm_name`, …).
    #[schema(value_type = Object)]
    pub result: Map<String, Value>,
    /// The request's fields, secret values redacted.
    #[schema(value_type = Object)]
    pub request: Map<String, Value>,
    /// The failure, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// The approval, when policy asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalDoc>,
    /// The job's log lines (the last 5000).
    pub log: Vec<String>,
}

/// `GET /api/v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobRow>,
    /// How many more matched beyond `limit`.
    pub more: usize,
}

/// One attached disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiskDoc {
    /// Hyper-V's disk id.
    pub id: String,
    /// The VM it is attached to.
    pub vm_id: String,
    /// The host.
    pub host: String,
    /// The file.
    pub path: String,
    /// Size in GB, when the inventory says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u64>,
}

/// One network adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NicDoc {
    /// Hyper-V's adapter id.
    pub id: String,
    /// The VM it belongs to.
    pub vm_id: String,
    /// The host.
    pub host: String,
    /// Adapter name.
    pub name: String,
    /// Network name.
    pub network: String,
    /// Virtual switch.
    pub switch: String,
    /// MAC address.
    pub mac: String,
    /// IP addresses, when reported.
    pub addresses: Vec<String>,
}

/// One VM with its disks and adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmDoc {
    /// Hyper-V's VM id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Host.
    pub host: String,
    /// Power state (`Running`, `Off`, … `Deleting` while a delete runs).
    pub state: String,
    /// Virtual processors.
    pub cpu_cores: u64,
    /// Memory in GB.
    pub memory_gb: u64,
    /// Disks (from the last inventory).
    pub disks: Vec<DiskDoc>,
    /// Network adapters (from the last inventory).
    pub nics: Vec<NicDoc>,
}

/// A job waiting in a host's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueuedJob {
    /// The job.
    pub job_id: String,
    /// Its kind.
    pub kind: String,
    /// 1 = next.
    pub position: u32,
}

/// One host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostDoc {
    /// Name (lower case).
    pub name: String,
    /// `up`, `unreachable` or `not_polled`.
    pub status: String,
    /// Why the last poll failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Memory, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_memory_gb: Option<u64>,
    /// Memory of running VMs, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_in_use_gb: Option<u64>,
    /// Total less in use, when both are reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_memory_gb: Option<u64>,
    /// Number of VMs.
    pub vm_count: usize,
    /// The job its slot runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_job: Option<String>,
    /// The jobs queued behind it.
    pub queue: Vec<QueuedJob>,
    /// Networks.
    pub networks: Vec<String>,
    /// Storage classes.
    pub storage_classes: Vec<String>,
    /// Images.
    pub images: Vec<String>,
}

/// `GET /api/v1/hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostList {
    /// By name.
    pub hosts: Vec<HostDoc>,
}

/// `GET /api/v1/vms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmList {
    /// By host, then name.
    pub vms: Vec<VmDoc>,
}

/// `GET /api/v1/inventory`: every host with its VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Inventory {
    /// Hosts.
    pub hosts: Vec<HostDoc>,
    /// VMs.
    pub vms: Vec<VmDoc>,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or why not.
    pub status: String,
    /// The bot's role: `leading`, `catching_up`, `standby`, `stopped`.
    pub role: String,
}
