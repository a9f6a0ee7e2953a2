//! Recording of every agent operation a host executed, and the figures derived from it:
//! operation count, job order, host-slot violations (overlapping jobs) and duplicate executions.
//!
//! A *job op* is an operation whose correlation id is a job id (a UUID) and that is not
//! read-only (`host.inventory`, `vm.get`, `kvp.read`): inventory polls and lookups may overlap
//! with jobs legitimately. Only job ops count for `jobs`, `max_concurrent_jobs` and
//! `duplicate_executions`; every executed operation counts for `operations`.

use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Records kept per host; older ones are dropped (the figures in [`HostStats`] stay exact).
pub const MAX_RECORDS: usize = 100_000;

/// Per-host figures, as served at `/sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostStats {
    /// The most distinct job ids that had an operation in flight at the same moment. 1 when
    /// the worker respects the host slot; 2 or more is a violation.
    pub max_concurrent_jobs: usize,
    /// Operations executed (journal replays excluded).
    pub operations: u64,
    /// Job ids in order of their first executed job op.
    pub jobs: Vec<String>,
    /// Job ops that re-ran work already done (succeeded or still running) for the same
    /// (job, operation, idempotency key). Retries after a failure do not count.
    pub duplicate_executions: u64,
    /// Requests answered from the idempotency journal without re-running.
    pub journal_replays: u64,
}

/// Every host's figures: `{"hosts": {"hv01": {...}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// By host name.
    pub hosts: BTreeMap<String, HostStats>,
}

/// One executed operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpRecord {
    /// Wire name of the operation.
    pub operation: String,
    /// The request's correlation id (the job id for job ops).
    pub correlation_id: String,
    /// The request's idempotency key.
    pub idempotency_key: Option<String>,
    /// The request's spec as the host received it (what a host-side log would hold; tests scan
    /// it for secrets that should only ever reach the host as KVP ciphertext).
    #[serde(default)]
    pub spec: serde_json::Map<String, serde_json::Value>,
    /// When execution started.
    pub started_at: DateTime<Utc>,
    /// When the result was written; `None` while in flight.
    pub ended_at: Option<DateTime<Utc>>,
    /// `success` / `error` / `partial` once ended.
    pub status: Option<String>,
    /// Error code once ended with an error.
    pub code: Option<String>,
}

/// Whether an operation only reads state.
pub fn is_read_only(op: AgentOperation) -> bool {
    matches!(
        op,
        AgentOperation::HostInventory | AgentOperation::VmGet | AgentOperation::KvpRead
    )
}

/// Whether the request is a job op (see the module docs).
pub fn is_job_op(req: &AgentRequest) -> bool {
    !is_read_only(req.operation) && uuid::Uuid::parse_str(&req.correlation_id).is_ok()
}

type OpKey = (String, String, Option<String>);

fn op_key(req: &AgentRequest) -> OpKey {
    (
        req.correlation_id.clone(),
        req.operation.as_str().to_string(),
        req.idempotency_key.clone(),
    )
}

/// The recorder of one host.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    stats: HostStats,
    in_flight: HashMap<String, usize>,
    /// (job, operation, key) of job ops that succeeded.
    succeeded: HashSet<OpKey>,
    /// (job, operation, key) of job ops in flight, with their count.
    running: HashMap<OpKey, usize>,
    seen_jobs: HashSet<String>,
    /// The most recent records; `records_dropped` older ones were discarded.
    records: VecDeque<OpRecord>,
    records_dropped: usize,
}

impl Recorder {
    /// Records the start of an execution; returns its record index for [`Recorder::end`].
    pub(crate) fn begin(&mut self, req: &AgentRequest, now: DateTime<Utc>) -> usize {
        self.stats.operations += 1;
        if is_job_op(req) {
            let cid = req.correlation_id.clone();
            *self.in_flight.entry(cid.clone()).or_insert(0) += 1;
            self.stats.max_concurrent_jobs =
                self.stats.max_concurrent_jobs.max(self.in_flight.len());
            if self.seen_jobs.insert(cid.clone()) {
                self.stats.jobs.push(cid);
            }
            let key = op_key(req);
            // A re-run of work that already succeeded, or that is running right now. A retry
            // after a failure is not a duplicate.
            if self.succeeded.contains(&key) || self.running.contains_key(&key) {
                self.stats.duplicate_executions += 1;
            }
            *self.running.entry(key).or_insert(0) += 1;
        }
        if self.records.len() >= MAX_RECORDS {
            self.records.pop_front();
            self.records_dropped += 1;
        }
        self.records.push_back(OpRecord {
            operation: req.operation.as_str().to_string(),
            correlation_id: req.correlation_id.clone(),
            idempotency_key: req.idempotency_key.clone(),
            spec: req.spec.clone(),
            started_at: now,
            ended_at: None,
            status: None,
            code: None,
        });
        self.records_dropped + self.records.len() - 1
    }

    /// Records the end of the execution started as `index`.
    pub(crate) fn end(
        &mut self,
        index: usize,
        req: &AgentRequest,
        result: &AgentResult,
        now: DateTime<Utc>,
    ) {
        if is_job_op(req) {
            if let Some(n) = self.in_flight.get_mut(&req.correlation_id) {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(&req.correlation_id);
                }
            }
            let key = op_key(req);
            if let Some(n) = self.running.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.running.remove(&key);
                }
            }
            if result.is_ok() {
                self.succeeded.insert(key);
            }
        }
        let slot = index.checked_sub(self.records_dropped);
        if let Some(r) = slot.and_then(|i| self.records.get_mut(i)) {
            r.ended_at = Some(now);
            r.status = serde_json::to_value(result.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            r.code.clone_from(&result.code);
        }
    }

    /// Records a request answered from the journal.
    pub(crate) fn replay(&mut self) {
        self.stats.journal_replays += 1;
    }

    pub(crate) fn stats(&self) -> HostStats {
        self.stats.clone()
    }

    pub(crate) fn records(&self) -> Vec<OpRecord> {
        self.records.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn req(op: AgentOperation, cid: &str, key: Option<&str>) -> AgentRequest {
        let mut r = AgentRequest::new(op, Map::new(), cid);
        r.idempotency_key = key.map(str::to_string);
        r
    }

    #[test]
    fn inventory_and_non_job_ids_are_not_jobs() {
        let mut rec = Recorder::default();
        let job = uuid::Uuid::new_v4().to_string();
        let now = Utc::now();
        rec.begin(&req(AgentOperation::HostInventory, &job, None), now);
        rec.begin(&req(AgentOperation::Noop, "inventory", None), now);
        rec.begin(&req(AgentOperation::Noop, &job, None), now);
        let s = rec.stats();
        assert_eq!(s.operations, 3);
        assert_eq!(s.jobs, vec![job]);
        assert_eq!(s.max_concurrent_jobs, 1);
    }
}
