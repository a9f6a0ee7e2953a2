//! What the bot knows, rebuilt from the event stream: jobs and their threads, pending
//! approvals, hosts and their VMs. There is no database: a restarted bot replays the stream and
//! arrives at the same state. This module applies events; it sends nothing.

use crate::reply::{HostRow, JobRow, JobView, StatusView, StepView, VmRow};
use crate::thread::{Limits, ThreadMessages};
use aetherv_core::approval::{Decision, PendingApproval};
use aetherv_core::{Event, EventBody, JobEnvelope, JobId, Requester};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

pub use aetherv_core::lifecycle::Phase;

/// One job as the bot sees it.
#[derive(Debug)]
pub struct JobInfo {
    /// The id.
    pub job_id: JobId,
    /// The envelope (secrets absent), when known: needed to publish after approval.
    pub envelope: Option<JobEnvelope>,
    /// Job kind wire name.
    pub kind: String,
    /// Host or cluster.
    pub target: String,
    /// The host the job ran on (`job.started`): for a job placed through a cluster, the
    /// member chosen, where its VM now is.
    pub ran_on: Option<String>,
    /// Who asked.
    pub requester: Option<Requester>,
    /// Where it is.
    pub phase: Phase,
    /// The approval, when policy asked for one.
    pub approval: Option<PendingApproval>,
    /// The policy rule that asked for approval.
    pub rule: Option<String>,
    /// Order of `job.queued` (for queue positions).
    pub queued_seq: Option<u64>,
    /// The current step.
    pub step: Option<StepView>,
    /// Finished steps.
    pub steps_done: u32,
    /// Resource ids and results gathered from steps and the final event.
    pub resources: Map<String, Value>,
    /// `(step, code, message)` of a failure.
    pub failure: Option<(Option<String>, String, String)>,
    /// Who cancelled.
    pub cancelled_by: Option<Requester>,
    /// Who asked to cancel it while it was queued or running (until the worker confirms).
    pub cancel_requested_by: Option<Requester>,
    /// The thread's messages.
    pub thread: ThreadMessages,
    /// Rebuilt from history and not announced yet.
    pub quiet: bool,
    /// The final message and attachment were sent (or never will be).
    pub finished: bool,
    /// A bot marked the thread finished on the stream (`thread.finished`).
    pub thread_marked: bool,
    /// When its final event happened.
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was requested (the envelope's time, else its first event's).
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What adapters may know of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// Id, kind, target, requester.
    pub view: JobView,
    /// Where it is.
    pub phase: Phase,
    /// Rebuilt from history and not announced yet.
    pub restored: bool,
    /// Published to its host queue (`job.queued` seen).
    pub queued: bool,
}

/// The short id shown in chat (first 8 hex digits).
pub fn short_id(id: &JobId) -> String {
    id.to_string().chars().take(8).collect()
}

/// A display name for an identity.
pub fn display(r: &Requester) -> String {
    match r.platform {
        // A producer is shown as its principal, so nobody takes it for a chat user.
        aetherv_core::Platform::Amqp => format!("amqp:{}", r.user_id),
        aetherv_core::Platform::Api => format!("api:{}", r.user_id),
        _ => r.user_id.clone(),
    }
}

impl JobInfo {
    fn new(job_id: JobId, kind: String, target: String, limits: Limits) -> Self {
        JobInfo {
            job_id,
            envelope: None,
            kind,
            target,
            ran_on: None,
            requester: None,
            phase: Phase::INITIAL,
            approval: None,
            rule: None,
            queued_seq: None,
            step: None,
            steps_done: 0,
            resources: Map::new(),
            failure: None,
            cancelled_by: None,
            cancel_requested_by: None,
            thread: ThreadMessages::new(limits),
            quiet: false,
            thread_marked: false,
            ended_at: None,
            finished: false,
            created_at: None,
        }
    }

    /// The short id.
    pub fn short(&self) -> String {
        short_id(&self.job_id)
    }

    /// What a thread root says about the job.
    pub fn view(&self) -> JobView {
        JobView {
            job: self.job_id,
            short: self.short(),
            kind: self.kind.clone(),
            target: self.target.clone(),
            requester: self.requester.as_ref().map(display).unwrap_or_default(),
        }
    }

    /// The summary adapters and tests read.
    pub fn summary(&self) -> JobSummary {
        JobSummary {
            view: self.view(),
            phase: self.phase,
            restored: self.quiet,
            queued: self.queued_seq.is_some(),
        }
    }

    /// The row for `jobs`.
    pub fn row(&self) -> JobRow {
        JobRow {
            short: self.short(),
            kind: self.kind.clone(),
            target: self.target.clone(),
            state: self.phase.as_str().to_string(),
            requester: self.requester.as_ref().map(display).unwrap_or_default(),
            created: self
                .created_at
                .map(|t| t.format("%Y-%m-%d %H:%MZ").to_string())
                .unwrap_or_default(),
        }
    }
}

/// Everything the bot knows.
#[derive(Debug)]
pub struct State {
    limits: Limits,
    seen: HashSet<uuid::Uuid>,
    /// Jobs by id.
    pub(crate) jobs: BTreeMap<JobId, JobInfo>,
    /// Hosts: reachable flag and VMs by name (lower case).
    pub(crate) hosts: BTreeMap<String, HostInfo>,
    queue_counter: u64,
}

/// One host.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    /// Whether the last inventory poll answered (`None` before the first poll).
    pub reachable: Option<bool>,
    /// VMs by lower-case name.
    pub vms: BTreeMap<String, VmRow>,
    /// Network names from the last inventory.
    pub networks: Vec<String>,
    /// Storage class names from the last inventory.
    pub storage_classes: Vec<String>,
    /// Image names from the last inventory.
    pub images: Vec<String>,
    /// Why the last inventory poll failed, when it did.
    pub error: Option<String>,
    /// The host's memory, when its inventory reported it.
    pub total_memory_gb: Option<u64>,
    /// Memory of the VMs that run (or are paused), when the inventory reported it: what
    /// Hyper-V counts when a VM starts.
    pub memory_in_use_gb: Option<u64>,
    /// Disks and network adapters per VM (lower-case name), from the last inventory.
    pub details: BTreeMap<String, VmDetail>,
}

/// What the inventory says of one VM beyond its row: its disks and network adapters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmDetail {
    /// Attached disks.
    pub disks: Vec<DiskInfo>,
    /// Network adapters.
    pub nics: Vec<NicInfo>,
}

/// One attached disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskInfo {
    /// Disk id.
    pub id: String,
    /// File path.
    pub path: String,
    /// Size in GB (`None` when the inventory did not say).
    pub size_gb: Option<u64>,
    /// Controller number and location (`None` when the inventory did not say): the disk at
    /// the lowest is the one a generation 2 VM boots from.
    #[serde(skip)]
    pub location: Option<(u64, u64)>,
}

impl VmDetail {
    /// The disk the VM boots from: the one at the lowest controller location, else the first
    /// listed; `None` without disks.
    pub fn boot_disk(&self) -> Option<&DiskInfo> {
        self.disks
            .iter()
            .enumerate()
            .min_by_key(|(i, d)| (d.location.unwrap_or((u64::MAX, u64::MAX)), *i))
            .map(|(_, d)| d)
    }
}

impl DiskInfo {
    /// Whether `id` names this disk: its id, its path, or its file name (any case), as the
    /// agent finds a disk.
    pub fn is(&self, id: &str) -> bool {
        aetherv_core::safeguards::names_disk(id, &self.id, &self.path)
    }
}

/// One network adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NicInfo {
    /// Adapter id.
    pub id: String,
    /// Adapter name.
    pub name: String,
    /// Network name.
    pub network: String,
    /// Virtual switch.
    pub switch: String,
    /// MAC address.
    pub mac: String,
    /// IP addresses, when the inventory reported them.
    pub addresses: Vec<String>,
}

fn u(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

fn s(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Disks and adapters of one VM of an inventory.
fn vm_detail(vm: &Value) -> VmDetail {
    let list = |key: &str| {
        vm.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let texts = |v: &Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    VmDetail {
        disks: list("disks")
            .iter()
            .map(|d| DiskInfo {
                id: s(d.get("disk_id")),
                path: s(d.get("disk_path")),
                size_gb: d.get("size_gb").and_then(Value::as_u64),
                location: d
                    .get("controller_number")
                    .and_then(Value::as_u64)
                    .zip(d.get("controller_location").and_then(Value::as_u64)),
            })
            .collect(),
        nics: list("nics")
            .iter()
            .map(|n| NicInfo {
                id: s(n.get("nic_id")),
                name: s(n.get("adapter_name")),
                network: s(n.get("network")),
                switch: s(n.get("virtual_switch")),
                mac: s(n.get("mac_address")),
                addresses: texts(n, "ip_addresses"),
            })
            .collect(),
    }
}

impl State {
    /// Empty state.
    pub fn new(limits: Limits) -> Self {
        State {
            limits,
            seen: HashSet::new(),
            jobs: BTreeMap::new(),
            hosts: BTreeMap::new(),
            queue_counter: 0,
        }
    }

    /// Makes sure a host is listed (from configuration or a command target).
    pub fn know_host(&mut self, host: &str) {
        self.hosts.entry(host.to_ascii_lowercase()).or_default();
    }

    /// Registers a job the bot itself created (its phase follows from its events).
    pub fn insert_job(&mut self, env: JobEnvelope) -> &mut JobInfo {
        let mut info = JobInfo::new(
            env.job_id,
            env.kind.as_str().to_string(),
            env.target.routing_key(),
            self.limits,
        );
        info.requester = Some(env.requested_by.clone());
        info.created_at = Some(env.created_at);
        info.envelope = Some(env);
        let id = info.job_id;
        self.jobs.entry(id).or_insert(info)
    }

    /// Every job, oldest id first.
    pub fn job_infos(&self) -> impl Iterator<Item = &JobInfo> + '_ {
        self.jobs.values()
    }

    /// One job.
    pub fn job_info(&self, id: &JobId) -> Option<&JobInfo> {
        self.jobs.get(id)
    }

    /// Every host by lower-case name, with its last inventory.
    pub fn host_infos(&self) -> &BTreeMap<String, HostInfo> {
        &self.hosts
    }

    /// Finds a job by id or unique id prefix.
    pub fn find_job(&self, id: &str) -> Option<JobId> {
        let id = id.trim().to_ascii_lowercase();
        if id.is_empty() {
            return None;
        }
        let mut hits = self.jobs.keys().filter(|k| k.to_string().starts_with(&id));
        match (hits.next(), hits.next()) {
            (Some(k), None) => Some(*k),
            _ => None,
        }
    }

    /// Applies an event. Returns false for a duplicate (same `event_id`).
    pub fn apply(&mut self, ev: &Event, history: bool) -> bool {
        if !self.seen.insert(ev.event_id) {
            return false;
        }
        if let EventBody::HostInventory {
            host,
            reachable,
            inventory,
            error,
        } = &ev.body
        {
            self.apply_inventory(host, *reachable, inventory, error.as_deref());
            return true;
        }
        let Some(job_id) = ev.job_id else {
            return true;
        };
        if let EventBody::ApprovalRequested {
            required,
            groups,
            expires_at,
            request,
        } = &ev.body
        {
            let env = request
                .get("envelope")
                .and_then(|e| serde_json::from_value::<JobEnvelope>(e.clone()).ok());
            let rule = request
                .get("rule")
                .and_then(Value::as_str)
                .map(String::from);
            if let Some(env) = env {
                let requester = env.requested_by.clone();
                let info = self.insert_job(env);
                info.rule = rule;
                if info.approval.is_none() {
                    info.approval = Some(PendingApproval::new(
                        requester,
                        *required,
                        groups.clone(),
                        *expires_at,
                    ));
                }
            }
        }
        // A request's outcome says nothing about a job the bot does not already know (the
        // accepted one was inserted by its `approval.requested` or `job.queued`).
        if matches!(
            ev.body,
            EventBody::RequestAccepted { .. } | EventBody::RequestRejected { .. }
        ) && !self.jobs.contains_key(&job_id)
        {
            return true;
        }
        let limits = self.limits;
        let counter = &mut self.queue_counter;
        let info = self.jobs.entry(job_id).or_insert_with(|| {
            let (kind, target) = match &ev.body {
                EventBody::JobQueued { target, kind } => (kind.clone(), target.clone()),
                _ => ("job".to_string(), "?".to_string()),
            };
            let mut info = JobInfo::new(job_id, kind, target, limits);
            info.created_at = Some(ev.at);
            info
        });
        if history {
            info.quiet = true;
        }
        let was_final = info.phase.is_final();
        info.phase = info.phase.next(&ev.body);
        if info.phase.is_final() && !was_final {
            info.ended_at = Some(ev.at);
        }
        match &ev.body {
            EventBody::ThreadFinished {} => info.thread_marked = true,
            EventBody::ApprovalGranted { .. }
            | EventBody::ApprovalRejected { .. }
            | EventBody::ApprovalExpired {} => {
                if let Some(p) = info.approval.as_mut() {
                    p.apply_event(&ev.body);
                }
            }
            EventBody::JobQueued { .. } => {
                *counter += 1;
                info.queued_seq = Some(*counter);
            }
            EventBody::StepStarted { step, index, total } => {
                info.step = Some(StepView {
                    index: *index,
                    total: *total,
                    name: step.clone(),
                });
            }
            EventBody::StepSucceeded { data, .. } => {
                info.steps_done += 1;
                if let Some(obj) = data.as_object() {
                    for k in ["vm_id", "vm_name", "disk_id", "nic_id", "status", "action"] {
                        if let Some(v) = obj.get(k) {
                            info.resources.insert(k.to_string(), v.clone());
                        }
                    }
                }
            }
            EventBody::StepFailed {
                step,
                code,
                message,
                ..
            } => {
                info.failure = Some((Some(step.clone()), code.clone(), message.clone()));
            }
            EventBody::JobLog { .. } => {}
            EventBody::JobSucceeded { result } => {
                if let Some(obj) = result.as_object() {
                    for (k, v) in obj {
                        if v.is_string() || v.is_number() {
                            info.resources.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            EventBody::JobFailed {
                code,
                message,
                step,
            } => {
                info.failure = Some((step.clone(), code.clone(), message.clone()));
            }
            EventBody::JobCancelled { by } => {
                info.cancelled_by = by.clone();
                // A cancelled request can no longer be approved.
                if let (Some(p), Some(by)) = (info.approval.as_mut(), by) {
                    if p.decision.is_none() {
                        p.decision = Some(Decision::Rejected {
                            by: by.clone(),
                            reason: Some("cancelled".into()),
                        });
                    }
                }
            }
            EventBody::JobCancelRequested { by } => {
                if !info.phase.is_final() {
                    info.cancel_requested_by = Some(by.clone());
                }
            }
            EventBody::JobStarted { host, .. } => {
                info.ran_on = Some(host.to_ascii_lowercase());
            }
            EventBody::JobResumed { .. }
            | EventBody::JobInterrupted { .. }
            | EventBody::ApprovalRequested { .. }
            | EventBody::RequestAccepted { .. }
            | EventBody::RequestRejected { .. }
            | EventBody::HostInventory { .. } => {}
        }
        if matches!(ev.body, EventBody::JobSucceeded { .. }) {
            self.record_vm_change(job_id);
        }
        true
    }

    /// Keeps `vm list` current between inventory polls.
    fn record_vm_change(&mut self, job_id: JobId) {
        let Some(info) = self.jobs.get(&job_id) else {
            return;
        };
        // Where it ran: a job placed through a cluster ran on the member chosen.
        let host = info.ran_on.clone().unwrap_or_else(|| info.target.clone());
        let name = s(info.resources.get("vm_name"));
        if name.is_empty() {
            return;
        }
        let spec = info
            .envelope
            .as_ref()
            .map(|e| e.spec.clone())
            .unwrap_or_default();
        let kind = info.kind.clone();
        let id = s(info.resources.get("vm_id"));
        let entry = self.hosts.entry(host.clone()).or_default();
        match kind.as_str() {
            "vm.create" | "deployment.managed" => {
                entry.vms.insert(
                    name.to_ascii_lowercase(),
                    VmRow {
                        host,
                        name: name.clone(),
                        id,
                        // Until the next inventory poll: managed deployments start the VM.
                        state: if kind == "deployment.managed" {
                            "Running"
                        } else {
                            "Off"
                        }
                        .into(),
                        cpu: u(spec.get("cpu_cores")),
                        memory_gb: u(spec.get("gb_ram")),
                    },
                );
            }
            "vm.delete" => {
                entry.vms.remove(&name.to_ascii_lowercase());
                entry.details.remove(&name.to_ascii_lowercase());
            }
            _ => {}
        }
    }

    fn apply_inventory(
        &mut self,
        host: &str,
        reachable: bool,
        inventory: &Value,
        error: Option<&str>,
    ) {
        let entry = self.hosts.entry(host.to_ascii_lowercase()).or_default();
        entry.reachable = Some(reachable);
        entry.error = error.map(String::from);
        if !reachable {
            return;
        }
        let figure = |key: &str| {
            inventory
                .get("host")
                .and_then(|h| h.get(key))
                .and_then(Value::as_u64)
        };
        entry.total_memory_gb = figure("total_memory_gb");
        entry.memory_in_use_gb = figure("memory_in_use_gb");
        let names = |key: &str| -> Vec<String> {
            inventory
                .get("host")
                .and_then(|h| h.get(key))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|x| s(x.get("name")))
                        .filter(|n| !n.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        entry.networks = names("networks");
        entry.storage_classes = names("storage_classes");
        entry.images = names("images");
        let Some(vms) = inventory.get("vms").and_then(Value::as_array) else {
            return;
        };
        entry.details = vms
            .iter()
            .map(|v| (s(v.get("vm_name")).to_ascii_lowercase(), vm_detail(v)))
            .collect();
        entry.vms = vms
            .iter()
            .map(|v| {
                let name = s(v.get("vm_name"));
                (
                    name.to_ascii_lowercase(),
                    VmRow {
                        host: host.to_string(),
                        name,
                        id: s(v.get("vm_id")),
                        state: s(v.get("state")),
                        cpu: u(v.get("cpu_cores")),
                        memory_gb: u(v.get("memory_gb")),
                    },
                )
            })
            .collect();
    }

    /// The status view of a job.
    pub fn status_view(&self, id: &JobId) -> Option<StatusView> {
        let info = self.jobs.get(id)?;
        let queue_position = match (info.phase, info.queued_seq) {
            (Phase::Queued, Some(seq)) => Some(
                self.jobs
                    .values()
                    .filter(|j| {
                        j.target == info.target
                            && matches!(j.phase, Phase::Queued | Phase::Running)
                            && j.queued_seq.is_some_and(|s| s < seq)
                    })
                    .count()
                    + 1,
            ),
            _ => None,
        };
        let total = info.step.as_ref().map_or(0, |s| s.total);
        let percent = match info.phase {
            Phase::Succeeded => 100,
            _ if total > 0 => (info.steps_done.min(total) * 100) / total,
            _ => 0,
        };
        Some(StatusView {
            short: info.short(),
            kind: info.kind.clone(),
            target: info.target.clone(),
            state: info.phase.as_str().to_string(),
            step: info.step.clone().filter(|_| info.phase == Phase::Running),
            queue_position,
            percent,
        })
    }

    /// Rows for `hosts`.
    pub fn host_rows(&self) -> Vec<HostRow> {
        self.hosts
            .iter()
            .map(|(name, h)| HostRow {
                name: name.clone(),
                status: match h.reachable {
                    Some(true) => "up",
                    Some(false) => "unreachable",
                    None => "not polled yet",
                }
                .to_string(),
                vms: h.vms.len(),
                running: self
                    .jobs
                    .values()
                    .find(|j| j.target == *name && j.phase == Phase::Running)
                    .map(JobInfo::short),
                queued: self
                    .jobs
                    .values()
                    .filter(|j| j.target == *name && j.phase == Phase::Queued)
                    .count(),
            })
            .collect()
    }

    /// VMs, optionally of one host. A VM whose `vm.delete` job is running shows as `Deleting`
    /// (reference §10 case 18); when that job fails, the VM shows its own state again.
    pub fn vm_rows(&self, host: Option<&str>) -> Vec<VmRow> {
        let deleting: Vec<(String, String)> = self
            .jobs
            .values()
            .filter(|j| j.kind == "vm.delete" && j.phase == Phase::Running)
            .filter_map(|j| {
                let name = j.envelope.as_ref()?.spec.get("vm_name")?.as_str()?;
                Some((j.target.to_ascii_lowercase(), name.to_ascii_lowercase()))
            })
            .collect();
        self.hosts
            .iter()
            .filter(|(h, _)| host.is_none_or(|x| x.eq_ignore_ascii_case(h)))
            .flat_map(|(h, info)| {
                let deleting = &deleting;
                info.vms.iter().map(move |(key, row)| {
                    let mut row = row.clone();
                    if deleting.iter().any(|(dh, dn)| dh == h && dn == key) {
                        row.state = "Deleting".into();
                    }
                    row
                })
            })
            .collect()
    }

    /// Inventory choices for forms: hosts always, networks and storage classes once an
    /// inventory reported them.
    pub fn choices(&self) -> aetherv_core::validate::InventoryChoices {
        let union = |f: &dyn Fn(&HostInfo) -> &Vec<String>| -> Option<Vec<String>> {
            let mut all: Vec<String> = self.hosts.values().flat_map(|h| f(h).clone()).collect();
            all.sort();
            all.dedup();
            (!all.is_empty()).then_some(all)
        };
        aetherv_core::validate::InventoryChoices {
            hosts: Some(self.hosts.keys().cloned().collect()),
            networks: union(&|h| &h.networks),
            storage_classes: union(&|h| &h.storage_classes),
            images: union(&|h| &h.images),
            ..Default::default()
        }
    }

    /// `vm show`: a VM by name on any host, with its disks and adapters.
    pub fn vm_view(&self, name: &str) -> Option<crate::reply::VmView> {
        let key = name.to_ascii_lowercase();
        self.hosts.values().find_map(|h| {
            let row = h.vms.get(&key)?.clone();
            let inventoried = h.details.contains_key(&key);
            let detail = h.details.get(&key).cloned().unwrap_or_default();
            let mut addresses: Vec<String> = Vec::new();
            for a in detail.nics.iter().flat_map(|n| &n.addresses) {
                if !addresses.contains(a) {
                    addresses.push(a.clone());
                }
            }
            Some(crate::reply::VmView {
                row,
                disks: detail.disks,
                nics: detail.nics,
                addresses,
                inventoried,
            })
        })
    }

    /// What the last inventory of `row`'s host said of its disks and adapters; `None` when
    /// no inventory listed the VM yet.
    pub fn vm_detail(&self, row: &VmRow) -> Option<&VmDetail> {
        self.hosts
            .get(&row.host.to_ascii_lowercase())?
            .details
            .get(&row.name.to_ascii_lowercase())
    }

    /// Finds a VM by name on any host.
    pub fn find_vm(&self, name: &str) -> Option<VmRow> {
        let key = name.to_ascii_lowercase();
        self.hosts.values().find_map(|h| h.vms.get(&key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::{JobKind, Platform, Requester, Target};
    use serde_json::json;

    fn delete_job(vm: &str) -> JobEnvelope {
        JobEnvelope {
            v: 1,
            job_id: JobId::new(),
            kind: JobKind::VmDelete,
            target: Target::Host("hv01".into()),
            spec: json!({"vm_name": vm})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            secrets: None,
            requested_by: Requester {
                platform: Platform::Console,
                user_id: "alice".into(),
            },
            origin: None,
            created_at: chrono::Utc::now(),
            approval: None,
        }
    }

    fn state_of(rows: &[VmRow]) -> Vec<(String, String)> {
        rows.iter()
            .map(|r| (r.name.clone(), r.state.clone()))
            .collect()
    }

    /// Reference §10 case 18: a running delete shows `Deleting`; a failed one restores the VM.
    #[test]
    fn a_running_delete_shows_deleting_and_a_failed_one_restores_the_vm() {
        let mut st = State::new(crate::thread::DEFAULT_LIMITS);
        st.apply(
            &Event::for_host(
                0,
                EventBody::HostInventory {
                    host: "hv01".into(),
                    reachable: true,
                    inventory: json!({"host": {}, "vms": [
                        {"vm_name": "web01", "vm_id": "1", "state": "Off", "cpu_cores": 2, "memory_gb": 4},
                        {"vm_name": "db01", "vm_id": "2", "state": "Running", "cpu_cores": 2, "memory_gb": 8}
                    ]}),
                    error: None,
                },
            ),
            false,
        );
        let job = delete_job("web01");
        let id = job.job_id;
        st.insert_job(job);
        assert_eq!(
            state_of(&st.vm_rows(None)),
            [
                ("db01".into(), "Running".into()),
                ("web01".into(), "Off".into())
            ]
        );
        let started = EventBody::JobStarted {
            host: "hv01".into(),
            worker: "w1".into(),
            attempt: 1,
        };
        st.apply(&Event::for_job(id, 0, started), false);
        assert_eq!(
            state_of(&st.vm_rows(Some("hv01"))),
            [
                ("db01".into(), "Running".into()),
                ("web01".into(), "Deleting".into())
            ]
        );
        let failed = EventBody::JobFailed {
            code: "invalid_state".into(),
            message: "running".into(),
            step: Some("vm.delete".into()),
        };
        st.apply(&Event::for_job(id, 1, failed), false);
        assert_eq!(
            state_of(&st.vm_rows(None)),
            [
                ("db01".into(), "Running".into()),
                ("web01".into(), "Off".into())
            ]
        );
    }
}
