//! What reads are served from, so that readers never queue behind the engine: a snapshot of
//! jobs, hosts and inventory that the serve loop rebuilds from the engine's state after it
//! changed (events, API calls, ticks), and per job a journal of its events (for
//! `GET /api/v1/jobs/{id}/events`), steps and log lines, appended as events arrive. Both are
//! rebuilt from the event stream after a restart: the API answers for jobs it did not see
//! start.

mod build;

use crate::docs::{DiskDoc, HostDoc, JobDoc, NicDoc, StepDoc, VmDoc};
use aetherv_bot::state::{Phase, State};
use aetherv_core::{Event, EventBody, JobId};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
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
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Jobs (without steps and log, which are in the journal).
    pub jobs: BTreeMap<JobId, Arc<JobDoc>>,
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
    /// Jobs that stopped settling since the last rebuild (to be shown as they are).
    settled: Mutex<HashSet<JobId>>,
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
            settled: Mutex::new(HashSet::new()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether some finished job still waits for its host's inventory (or just stopped).
    pub fn settling(&self) -> bool {
        self.settling.lock().is_ok_and(|s| !s.is_empty())
            || self.settled.lock().is_ok_and(|s| !s.is_empty())
    }

    /// Rebuilds the whole snapshot from the engine's state.
    pub fn refresh(&self, state: &State) {
        self.rebuild(state, None);
    }

    /// Rebuilds the snapshot for the jobs in `touched` (and those whose queue position or
    /// settling changed); the other jobs' documents are kept.
    pub fn refresh_jobs(&self, state: &State, touched: &HashSet<JobId>) {
        self.rebuild(state, Some(touched));
    }

    fn rebuild(&self, state: &State, touched: Option<&HashSet<JobId>>) {
        let old = self.snapshot();
        let full = touched.is_none() || old.jobs.is_empty();
        let mut touched = touched.cloned().unwrap_or_default();
        if let Ok(mut settled) = self.settled.lock() {
            touched.extend(settled.drain());
        }
        let settling: Vec<JobId> = match self.settling.lock() {
            Ok(mut settling) => {
                // Jobs that settled since are rebuilt with their real state.
                touched.extend(settling.keys().copied());
                settling.retain(|_, (_, since)| since.elapsed() < SETTLE);
                settling.keys().copied().collect()
            }
            Err(_) => Vec::new(),
        };
        let mut fresh = build::build(state, (!full).then_some(&*old), &touched);
        for job in settling {
            if let Some(doc) = fresh.jobs.get_mut(&job) {
                if STATE_NAMES[6..].contains(&doc.row.state.as_str()) {
                    Arc::make_mut(doc).row.state = "running".into();
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
                let done: Vec<JobId> = settling
                    .iter()
                    .filter(|(_, (h, _))| h.eq_ignore_ascii_case(host))
                    .map(|(j, _)| *j)
                    .collect();
                for j in &done {
                    settling.remove(j);
                }
                if let Ok(mut settled) = self.settled.lock() {
                    settled.extend(done);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::Event;

    fn queued(job: JobId) -> Event {
        Event::for_job(
            job,
            0,
            EventBody::JobQueued {
                target: "hv01".into(),
                kind: "vm.create".into(),
            },
        )
    }

    fn started(job: JobId) -> Event {
        Event::for_job(
            job,
            1,
            EventBody::JobStarted {
                host: "hv01".into(),
                worker: "w".into(),
                attempt: 1,
            },
        )
    }

    #[test]
    fn a_partial_rebuild_moves_the_queue_and_keeps_the_other_documents() {
        let mut state = State::new(aetherv_bot::thread::DEFAULT_LIMITS);
        state.know_host("hv01");
        let store = Store::new();
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        for j in [a, b, c] {
            let ev = queued(j);
            state.apply(&ev, false);
            store.record(&ev);
        }
        store.refresh(&state);
        let pos = |s: &Snapshot, j: &JobId| s.jobs.get(j).and_then(|d| d.row.queue_position);
        let snap = store.snapshot();
        assert_eq!(
            (pos(&snap, &a), pos(&snap, &b), pos(&snap, &c)),
            (Some(1), Some(2), Some(3))
        );
        let ev = started(a);
        state.apply(&ev, false);
        store.record(&ev);
        store.refresh_jobs(&state, &HashSet::from([a]));
        let fresh = store.snapshot();
        assert_eq!(
            fresh.jobs.get(&a).map(|d| d.row.state.as_str()),
            Some("running")
        );
        // The others moved up without being named.
        assert_eq!((pos(&fresh, &b), pos(&fresh, &c)), (Some(1), Some(2)));
        assert_eq!(fresh.hosts[0].running_job, Some(a.to_string()));
        assert_eq!(fresh.hosts[0].queue.len(), 2);
        // The journal has each job's events with ids from 1.
        store.with_journal(&a, |j| {
            let ids: Vec<u64> = j
                .map(|j| j.events.iter().map(|e| e.id).collect())
                .unwrap_or_default();
            assert_eq!(ids, vec![1, 2]);
        });
    }

    #[test]
    fn a_finished_job_settles_until_its_hosts_next_inventory() {
        let mut state = State::new(aetherv_bot::thread::DEFAULT_LIMITS);
        let store = Store::new();
        let a = JobId::new();
        for ev in [
            queued(a),
            started(a),
            Event::for_job(
                a,
                2,
                EventBody::JobSucceeded {
                    result: serde_json::json!({}),
                },
            ),
        ] {
            state.apply(&ev, false);
            store.record(&ev);
        }
        store.refresh(&state);
        let state_of = |s: &Store| s.snapshot().jobs.get(&a).map(|d| d.row.state.clone());
        assert_eq!(state_of(&store).as_deref(), Some("running"));
        assert!(store.settling());
        let inv = Event::for_host(
            0,
            EventBody::HostInventory {
                host: "HV01".into(),
                reachable: true,
                inventory: serde_json::json!({}),
                error: None,
            },
        );
        state.apply(&inv, false);
        store.record(&inv);
        store.refresh_jobs(&state, &HashSet::new());
        assert_eq!(state_of(&store).as_deref(), Some("succeeded"));
        assert!(!store.settling());
    }
}
