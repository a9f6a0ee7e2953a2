//! What reads are served from, so that readers never queue behind the engine: a snapshot of
//! jobs, hosts and inventory that the serve loop rebuilds from the engine's state after it
//! changed (events, API calls, ticks), and per job a journal of its events (for
//! `GET /api/v1/jobs/{id}/events`), steps and log lines, appended as events arrive. Both are
//! rebuilt from the event stream after a restart: the API answers for jobs it did not see
//! start.

use crate::docs::{
    ApprovalDoc, DiskDoc, HostDoc, JobDoc, JobError, JobRow, NicDoc, QueuedJob, StepDoc, VmDoc,
};
use aetherv_bot::state::{display, JobInfo, Phase, State};
use aetherv_core::{Event, EventBody, JobId};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// Log lines kept per job.
pub const LOG_LINES: usize = 5000;

/// Events kept per job (for SSE).
pub const JOURNAL_EVENTS: usize = 20_000;

/// The longest a finished job is shown `running` while its host's inventory after it is
/// awaited (an unreachable host's jobs show their outcome after this).
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The API's name of a phase.
pub fn state_name(p: Phase) -> &'static str {
    match p {
        Phase::AwaitingApproval => "awaiting_approval",
        Phase::Rejected => "rejected",
        Phase::Expired => "expired",
        Phase::Queued => "queued",
        Phase::Running => "running",
        Phase::Interrupted => "interrupted",
        Phase::Succeeded => "succeeded",
        Phase::Failed => "failed",
        Phase::Cancelled => "cancelled",
    }
}

/// Every state name (for the `state` filter).
pub const STATE_NAMES: [&str; 9] = [
    "awaiting_approval",
    "rejected",
    "expired",
    "queued",
    "running",
    "interrupted",
    "succeeded",
    "failed",
    "cancelled",
];

/// One event of a job as SSE sends it: `id` (1-based, per job), `event` (the type) and the
/// event as JSON (never a secret: approval requests are sent without their request).
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEvent {
    /// 1-based position in the job's journal.
    pub id: u64,
    /// The event type (`job.started`, `step.succeeded`, `job.log`, …).
    pub kind: String,
    /// The event.
    pub data: Value,
    /// Whether it ends the job.
    pub last: bool,
}

/// One job's journal.
#[derive(Debug, Default)]
pub struct Journal {
    /// Events, oldest first (at most [`JOURNAL_EVENTS`]; the first kept has id `first`).
    pub events: Vec<JournalEvent>,
    /// Id of the next event.
    next: u64,
    /// Steps as they ran.
    pub steps: Vec<StepDoc>,
    /// Log lines (the last [`LOG_LINES`]).
    pub log: std::collections::VecDeque<String>,
    /// The job ended.
    pub ended: bool,
    /// The host it ran on (`job.started`).
    pub host: Option<String>,
}

/// The snapshot reads are served from.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Jobs (without steps and log, which are in the journal).
    pub jobs: BTreeMap<JobId, JobDoc>,
    /// Hosts by name.
    pub hosts: Vec<HostDoc>,
    /// VMs by host, then name.
    pub vms: Vec<VmDoc>,
}

impl Snapshot {
    /// A VM by Hyper-V id (any case).
    pub fn vm(&self, id: &str) -> Option<&VmDoc> {
        self.vms.iter().find(|v| v.id.eq_ignore_ascii_case(id))
    }

    /// A disk by id.
    pub fn disk(&self, id: &str) -> Option<&DiskDoc> {
        self.vms
            .iter()
            .flat_map(|v| &v.disks)
            .find(|d| d.id.eq_ignore_ascii_case(id))
    }

    /// A network adapter by id.
    pub fn nic(&self, id: &str) -> Option<&NicDoc> {
        self.vms
            .iter()
            .flat_map(|v| &v.nics)
            .find(|n| n.id.eq_ignore_ascii_case(id))
    }
}

/// The snapshot, the journals, and who waits for news of a job.
#[derive(Debug)]
pub struct Store {
    snapshot: RwLock<Arc<Snapshot>>,
    journals: RwLock<HashMap<JobId, Journal>>,
    news: tokio::sync::broadcast::Sender<JobId>,
    /// The body fingerprint of each job made with an `Idempotency-Key` (this process's
    /// memory; after a restart only the kind is compared).
    fingerprints: Mutex<HashMap<JobId, (String, [u8; 32])>>,
    /// Jobs that ended, by host, until the host's next inventory arrives: they are shown
    /// `running` until then (at most [`SETTLE`]), so a read after a finished job sees what
    /// it did.
    settling: Mutex<HashMap<JobId, (String, std::time::Instant)>>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (news, _) = tokio::sync::broadcast::channel(4096);
        Store {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            journals: RwLock::new(HashMap::new()),
            news,
            fingerprints: Mutex::new(HashMap::new()),
            settling: Mutex::new(HashMap::new()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether some finished job still waits for its host's inventory.
    pub fn settling(&self) -> bool {
        self.settling.lock().is_ok_and(|s| !s.is_empty())
    }

    /// Rebuilds the snapshot from the engine's state.
    pub fn refresh(&self, state: &State) {
        let mut fresh = build(state);
        if let Ok(mut settling) = self.settling.lock() {
            settling.retain(|_, (_, since)| since.elapsed() < SETTLE);
            for job in settling.keys() {
                if let Some(doc) = fresh.jobs.get_mut(job) {
                    if STATE_NAMES[6..].contains(&doc.row.state.as_str()) {
                        doc.row.state = "running".into();
                    }
                }
            }
        }
        let fresh = Arc::new(fresh);
        match self.snapshot.write() {
            Ok(mut s) => *s = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// A receiver of job ids whose journal grew.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<JobId> {
        self.news.subscribe()
    }

    /// Reads a job's journal.
    pub fn with_journal<T>(&self, job: &JobId, f: impl FnOnce(Option<&Journal>) -> T) -> T {
        match self.journals.read() {
            Ok(j) => f(j.get(job)),
            Err(poisoned) => f(poisoned.into_inner().get(job)),
        }
    }

    /// Remembers the fingerprint of a request made with an idempotency key.
    pub fn remember(&self, job: JobId, kind: &str, fingerprint: [u8; 32]) {
        if let Ok(mut f) = self.fingerprints.lock() {
            f.entry(job).or_insert((kind.to_owned(), fingerprint));
        }
    }

    /// The fingerprint remembered for a job.
    pub fn fingerprint(&self, job: &JobId) -> Option<(String, [u8; 32])> {
        self.fingerprints.lock().ok()?.get(job).cloned()
    }

    /// Appends a job's event to its journal (and its steps and log lines).
    pub fn record(&self, ev: &Event) {
        if let EventBody::HostInventory { host, .. } = &ev.body {
            if let Ok(mut settling) = self.settling.lock() {
                settling.retain(|_, (h, _)| !h.eq_ignore_ascii_case(host));
            }
        }
        let Some(job) = ev.job_id else {
            return;
        };
        if matches!(
            ev.body,
            EventBody::RequestAccepted { .. } | EventBody::RequestRejected { .. }
        ) {
            return;
        }
        let mut data = match serde_json::to_value(ev) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        data.remove("v");
        data.remove("seq");
        // The approval request carries the envelope (sealed secrets): not for clients.
        data.remove("request");
        let kind = ev.body.type_name().to_owned();
        let last = matches!(
            ev.body,
            EventBody::JobSucceeded { .. }
                | EventBody::JobFailed { .. }
                | EventBody::JobCancelled { .. }
                | EventBody::ApprovalRejected { .. }
                | EventBody::ApprovalExpired {}
        );
        {
            let mut journals = match self.journals.write() {
                Ok(j) => j,
                Err(poisoned) => poisoned.into_inner(),
            };
            let j = journals.entry(job).or_default();
            j.next += 1;
            let id = j.next;
            apply_step(j, &ev.body);
            if let EventBody::JobStarted { host, .. } = &ev.body {
                j.host = Some(host.to_ascii_lowercase());
            }
            if let EventBody::JobLog { lines } = &ev.body {
                for l in lines {
                    if j.log.len() == LOG_LINES {
                        j.log.pop_front();
                    }
                    j.log.push_back(l.text.clone());
                }
            }
            if last {
                j.ended = true;
            }
            let age_ms = (chrono::Utc::now() - ev.at).num_milliseconds();
            let recent = u128::try_from(age_ms).map_or(true, |ms| ms < SETTLE.as_millis());
            if let Some(host) = j.host.clone().filter(|_| {
                recent
                    && matches!(
                        ev.body,
                        EventBody::JobSucceeded { .. }
                            | EventBody::JobFailed { .. }
                            | EventBody::JobCancelled { .. }
                    )
            }) {
                if let Ok(mut settling) = self.settling.lock() {
                    settling.insert(job, (host, std::time::Instant::now()));
                }
            }
            if j.events.len() == JOURNAL_EVENTS {
                j.events.remove(0);
            }
            j.events.push(JournalEvent {
                id,
                kind,
                data: Value::Object(data),
                last,
            });
        }
        let _ = self.news.send(job);
    }
}

fn apply_step(j: &mut Journal, body: &EventBody) {
    match body {
        EventBody::StepStarted { step, index, total } => {
            j.steps.retain(|s| !(s.index == *index && s.name == *step));
            j.steps.push(StepDoc {
                name: step.clone(),
                state: "running".into(),
                index: *index,
                total: *total,
                duration_ms: None,
                code: None,
                message: None,
            });
        }
        EventBody::StepSucceeded {
            step, duration_ms, ..
        } => {
            if let Some(s) = j.steps.iter_mut().rev().find(|s| s.name == *step) {
                s.state = "succeeded".into();
                s.duration_ms = Some(*duration_ms);
            }
        }
        EventBody::StepFailed {
            step,
            duration_ms,
            code,
            message,
        } => {
            if let Some(s) = j.steps.iter_mut().rev().find(|s| s.name == *step) {
                s.state = "failed".into();
                s.duration_ms = Some(*duration_ms);
                s.code = Some(code.clone());
                s.message = Some(message.clone());
            }
        }
        _ => {}
    }
}

/// The redacted request fields of a job.
fn request_of(info: &JobInfo) -> Map<String, Value> {
    let Some(env) = &info.envelope else {
        return Map::new();
    };
    let mut v = Value::Object(env.spec.clone());
    aetherv_core::ops::redact(&mut v);
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn job_doc(info: &JobInfo, queue_position: Option<u32>) -> JobDoc {
    let row = JobRow {
        job_id: info.job_id.to_string(),
        kind: info.kind.clone(),
        target: info.target.clone(),
        host: info.ran_on.clone(),
        state: state_name(info.phase).into(),
        requester: info.requester.as_ref().map(display).unwrap_or_default(),
        created_at: info
            .created_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        queue_position,
    };
    let error = match (info.phase, &info.failure) {
        (Phase::Failed, Some((step, code, message))) => Some(JobError {
            step: step.clone(),
            code: code.clone(),
            message: message.clone(),
        }),
        _ => None,
    };
    let approval = info.approval.as_ref().map(|p| ApprovalDoc {
        rule: info.rule.clone().unwrap_or_default(),
        required: p.required,
        groups: p.groups.clone(),
        approved_by: p.granted.iter().map(display).collect(),
        expires_at: p
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    JobDoc {
        row,
        steps: Vec::new(),
        result: info.resources.clone(),
        request: request_of(info),
        error,
        approval,
        log: Vec::new(),
    }
}

/// The whole snapshot from the engine's state.
fn build(state: &State) -> Snapshot {
    // Queue positions per target, by the order jobs were queued.
    let mut queued: BTreeMap<&str, Vec<(u64, &JobInfo)>> = BTreeMap::new();
    let mut running: BTreeMap<String, String> = BTreeMap::new();
    for j in state.job_infos() {
        match (j.phase, j.queued_seq) {
            (Phase::Queued, Some(seq)) => queued.entry(&j.target).or_default().push((seq, j)),
            (Phase::Running, _) => {
                let host = j.ran_on.clone().unwrap_or_else(|| j.target.clone());
                running.insert(host, j.job_id.to_string());
            }
            _ => {}
        }
    }
    let mut positions: HashMap<JobId, u32> = HashMap::new();
    let mut queues: BTreeMap<String, Vec<QueuedJob>> = BTreeMap::new();
    for (target, mut list) in queued {
        list.sort_by_key(|(seq, _)| *seq);
        for (i, (_, j)) in list.iter().enumerate() {
            let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
            positions.insert(j.job_id, position);
            queues
                .entry(target.to_owned())
                .or_default()
                .push(QueuedJob {
                    job_id: j.job_id.to_string(),
                    kind: j.kind.clone(),
                    position,
                });
        }
    }
    let jobs = state
        .job_infos()
        .map(|j| (j.job_id, job_doc(j, positions.get(&j.job_id).copied())))
        .collect();
    let mut vms = Vec::new();
    let mut hosts = Vec::new();
    let deleting: Vec<(String, String)> = state
        .vm_rows(None)
        .into_iter()
        .filter(|r| r.state == "Deleting")
        .map(|r| (r.host.to_ascii_lowercase(), r.name.to_ascii_lowercase()))
        .collect();
    for (name, h) in state.host_infos() {
        for (key, row) in &h.vms {
            let detail = h.details.get(key).cloned().unwrap_or_default();
            let is_deleting = deleting.iter().any(|(dh, dn)| dh == name && dn == key);
            vms.push(VmDoc {
                id: row.id.clone(),
                name: row.name.clone(),
                host: name.clone(),
                state: if is_deleting {
                    "Deleting".into()
                } else {
                    row.state.clone()
                },
                cpu_cores: row.cpu,
                memory_gb: row.memory_gb,
                disks: detail
                    .disks
                    .iter()
                    .map(|d| DiskDoc {
                        id: d.id.clone(),
                        vm_id: row.id.clone(),
                        host: name.clone(),
                        path: d.path.clone(),
                        size_gb: d.size_gb,
                    })
                    .collect(),
                nics: detail
                    .nics
                    .iter()
                    .map(|n| NicDoc {
                        id: n.id.clone(),
                        vm_id: row.id.clone(),
                        host: name.clone(),
                        name: n.name.clone(),
                        network: n.network.clone(),
                        switch: n.switch.clone(),
                        mac: n.mac.clone(),
                        addresses: n.addresses.clone(),
                    })
                    .collect(),
            });
        }
        hosts.push(HostDoc {
            name: name.clone(),
            status: match h.reachable {
                Some(true) => "up",
                Some(false) => "unreachable",
                None => "not_polled",
            }
            .into(),
            error: h.error.clone(),
            total_memory_gb: h.total_memory_gb,
            memory_in_use_gb: h.memory_in_use_gb,
            free_memory_gb: h
                .total_memory_gb
                .zip(h.memory_in_use_gb)
                .map(|(t, u)| t.saturating_sub(u)),
            vm_count: h.vms.len(),
            running_job: running.get(name).cloned(),
            queue: queues.remove(name).unwrap_or_default(),
            networks: h.networks.clone(),
            storage_classes: h.storage_classes.clone(),
            images: h.images.clone(),
        });
    }
    Snapshot { jobs, hosts, vms }
}
