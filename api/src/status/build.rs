//! The page's view from the API's snapshot (hosts, VMs, jobs, approvals) and the jobs'
//! journals (running step, log tail): the same data `GET /api/v1/hosts` and
//! `GET /api/v1/jobs/{id}` answer with, arranged for one screen.

use super::view::{
    short, ApprovalLine, HostView, JobLine, JobRef, QueuedLine, StatusView, VmLine, LOG_TAIL,
    RECENT_JOBS,
};
use crate::docs::JobDoc;
use crate::store::{Snapshot, Store};
use aetherv_core::JobId;

/// The view for `user` at `now` from the store's current snapshot and journals.
pub fn from_store(store: &Store, user: &str, now: chrono::DateTime<chrono::Utc>) -> StatusView {
    let snap = store.snapshot();
    from_snapshot(&snap, store, user, now)
}

/// The view from one snapshot; `store` gives the journals (steps and log lines).
pub fn from_snapshot(
    snap: &Snapshot,
    store: &Store,
    user: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> StatusView {
    let job_ref = |id: &str| -> JobRef {
        let doc = id.parse::<JobId>().ok().and_then(|j| snap.jobs.get(&j));
        JobRef {
            id: id.to_owned(),
            short: short(id),
            kind: doc.map(|d| d.row.kind.clone()).unwrap_or_default(),
            requester: doc.map(|d| d.row.requester.clone()).unwrap_or_default(),
            step: doc.and_then(|d| running_step(store, d)),
        }
    };
    let hosts = snap
        .hosts
        .iter()
        .map(|h| HostView {
            name: h.name.clone(),
            state: h.status.clone(),
            error: h.error.clone(),
            free_memory_gb: h.free_memory_gb,
            total_memory_gb: h.total_memory_gb,
            vms: snap
                .vms
                .iter()
                .filter(|v| v.host == h.name)
                .map(|v| VmLine {
                    name: v.name.clone(),
                    state: v.state.clone(),
                    memory_gb: v.memory_gb,
                })
                .collect(),
            running: h.running_job.as_deref().map(job_ref),
            queue: h
                .queue
                .iter()
                .map(|q| QueuedLine {
                    position: q.position,
                    job: job_ref(&q.job_id),
                })
                .collect(),
        })
        .collect();

    let mut approvals: Vec<(&JobDoc, ApprovalLine)> = snap
        .jobs
        .values()
        .filter(|d| d.row.state == "awaiting_approval")
        .filter_map(|d| {
            let a = d.approval.as_ref()?;
            let granted = u32::try_from(a.approved_by.len()).unwrap_or(u32::MAX);
            Some((
                d.as_ref(),
                ApprovalLine {
                    job: job_ref(&d.row.job_id),
                    target: d.row.target.clone(),
                    rule: a.rule.clone(),
                    missing: a.required.saturating_sub(granted),
                    required: a.required,
                    groups: a.groups.clone(),
                    approved_by: a.approved_by.clone(),
                    expires_at: a.expires_at.clone(),
                },
            ))
        })
        .collect();
    approvals.sort_by(|(a, _), (b, _)| a.row.created_at.cmp(&b.row.created_at));

    let mut recent: Vec<&JobDoc> = snap.jobs.values().map(AsRef::as_ref).collect();
    recent.sort_by(|a, b| {
        b.row
            .created_at
            .cmp(&a.row.created_at)
            .then(b.row.job_id.cmp(&a.row.job_id))
    });
    let jobs = recent
        .into_iter()
        .take(RECENT_JOBS)
        .map(|d| {
            let (log, log_after) = log_tail(store, &d.row.job_id);
            JobLine {
                job: job_ref(&d.row.job_id),
                target: d.row.host.clone().unwrap_or_else(|| d.row.target.clone()),
                state: d.row.state.clone(),
                created_at: d.row.created_at.clone(),
                log,
                log_after,
                live: d.row.state == "running",
            }
        })
        .collect();

    StatusView {
        user: user.to_owned(),
        generated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        hosts,
        approvals: approvals.into_iter().map(|(_, a)| a).collect(),
        jobs,
    }
}

/// `2/5 disk.create` while a step runs.
fn running_step(store: &Store, doc: &JobDoc) -> Option<String> {
    if doc.row.state != "running" {
        return None;
    }
    let job = doc.row.job_id.parse::<JobId>().ok()?;
    store.with_journal(&job, |j| {
        let s = j?.steps.iter().rev().find(|s| s.state == "running")?;
        Some(format!("{}/{} {}", s.index, s.total, s.name))
    })
}

/// The last [`LOG_TAIL`] log lines and the journal id they end at.
fn log_tail(store: &Store, id: &str) -> (Vec<String>, u64) {
    let Ok(job) = id.parse::<JobId>() else {
        return (Vec::new(), 0);
    };
    store.with_journal(&job, |j| match j {
        None => (Vec::new(), 0),
        Some(j) => {
            let skip = j.log.len().saturating_sub(LOG_TAIL);
            (
                j.log.iter().skip(skip).cloned().collect(),
                j.events.last().map_or(0, |e| e.id),
            )
        }
    })
}
