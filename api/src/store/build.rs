//! Building the snapshot from the engine's state: in full (after the replay), or for the jobs
//! an event or a call touched (the other jobs' documents are shared with the last snapshot;
//! queue positions, hosts and VMs are recomputed each time).

use super::{state_name, Snapshot};
use crate::docs::{
    ApprovalDoc, DiskDoc, HostDoc, JobDoc, JobError, JobRow, NicDoc, QueuedJob, VmDoc,
};
use aetherv_bot::state::{display, JobInfo, Phase, State};
use aetherv_core::JobId;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

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

/// The snapshot from the engine's state: every job's document rebuilt when `old` is `None`,
/// else those of `touched` and those whose queue position changed.
pub(super) fn build(state: &State, old: Option<&Snapshot>, touched: &HashSet<JobId>) -> Snapshot {
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
    let jobs = match old {
        None => state
            .job_infos()
            .map(|j| {
                let doc = job_doc(j, positions.get(&j.job_id).copied());
                (j.job_id, Arc::new(doc))
            })
            .collect(),
        Some(old) => {
            let mut jobs = old.jobs.clone();
            let moved: Vec<JobId> = jobs
                .iter()
                .filter(|(id, d)| d.row.queue_position != positions.get(id).copied())
                .map(|(id, _)| *id)
                .collect();
            for id in touched.iter().chain(moved.iter()) {
                match state.job_info(id) {
                    Some(j) => {
                        let doc = job_doc(j, positions.get(id).copied());
                        jobs.insert(*id, Arc::new(doc));
                    }
                    None => {
                        jobs.remove(id);
                    }
                }
            }
            jobs
        }
    };
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
