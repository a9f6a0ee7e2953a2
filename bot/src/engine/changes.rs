//! Commands that change or repeat things on an existing VM or job, beyond the one-line job
//! builders of the dispatch: `disk remove` and `nic remove` (which disk or adapter, from the
//! last inventory), `retry` (a failed or cancelled job again, as a new request), and the
//! `jobs` listing. Each request still goes through the gate, roles, policy and approval.

use super::{notice, Engine, EngineError, JOBS_LIMIT};
use crate::reply::{Listing, Reply};
use crate::state::{display, JobInfo, Phase};
use aetherv_core::ops::{DiskDeleteSpec, JobSpec, NicDeleteSpec, VmRef};
use aetherv_core::rbac::{required_role_for_kind, Grants, Principal, Role};
use aetherv_core::{JobEnvelope, Target};

/// What `jobs` was asked for.
pub(super) struct JobsQuery {
    /// Only the caller's.
    pub mine: bool,
    /// Only this host.
    pub host: Option<String>,
    /// At most this many.
    pub limit: Option<u32>,
    /// No limit.
    pub all: bool,
}

impl Engine {
    /// `jobs`: newest first, at most the limit, saying how many more matched.
    pub(super) fn command_jobs(&self, who: &Principal, q: &JobsQuery) -> Vec<Reply> {
        let mut jobs: Vec<&JobInfo> = self
            .state
            .jobs
            .values()
            .filter(|j| !q.mine || j.requester.as_ref() == Some(&who.id))
            .filter(|j| {
                q.host
                    .as_deref()
                    .is_none_or(|h| h.eq_ignore_ascii_case(&j.target))
            })
            .collect();
        // Newest first; ties (and jobs of unknown time) by id, for a stable order.
        jobs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.job_id.cmp(&b.job_id))
        });
        let mut more = 0;
        if !q.all {
            let n = q
                .limit
                .map_or(JOBS_LIMIT, |n| usize::try_from(n).unwrap_or(usize::MAX));
            more = jobs.len().saturating_sub(n);
            jobs.truncate(n);
        }
        let rows = jobs.into_iter().map(JobInfo::row).collect();
        vec![Reply::Listing(Listing::Jobs { jobs: rows, more })]
    }

    /// `disk remove VM DISK [--boot-disk]`: the disk by id, path or file name; the VM's boot
    /// disk (lowest controller location) or only disk needs `--boot-disk`.
    pub(super) async fn command_disk_remove(
        &mut self,
        who: &Principal,
        grants: &Grants,
        vm: &str,
        disk: &str,
        boot_disk: bool,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        let Some(row) = self.state.find_vm(vm) else {
            let msg = format!("no VM named {vm} (see `vm list`)");
            return Ok(vec![notice(&user, msg)]);
        };
        let Some(detail) = self.state.vm_detail(&row) else {
            let msg = format!(
                "the disks of VM {} are not known yet (no inventory listed it); try again after the next inventory poll",
                row.name
            );
            return Ok(vec![notice(&user, msg)]);
        };
        let Some(found) = detail.disks.iter().find(|d| d.is(disk)) else {
            let msg = if detail.disks.is_empty() {
                format!("VM {} has no disks", row.name)
            } else {
                let choices: Vec<String> = detail.disks.iter().map(disk_label).collect();
                format!(
                    "VM {} has no disk {disk}; it has {}",
                    row.name,
                    choices.join(", ")
                )
            };
            return Ok(vec![notice(&user, msg)]);
        };
        let only = detail.disks.len() == 1;
        let boot = detail.boot_disk().is_some_and(|b| b == found);
        if (only || boot) && !boot_disk {
            let what = if only {
                "the only disk"
            } else {
                "the boot disk (first on its controller)"
            };
            let msg = format!(
                "{} is {what} of VM {}; the VM will not start without it. Add --boot-disk to remove it anyway",
                disk_label(found),
                row.name
            );
            return Ok(vec![notice(&user, msg)]);
        }
        let chosen = format!("removing disk {} of VM {}", disk_label(found), row.name);
        let spec = JobSpec::DiskDelete(DiskDeleteSpec::new(
            VmRef::new(row.name.clone(), &row.id),
            found.id.clone(),
        ));
        self.submit_chosen(who, grants, spec, row.host, notice(&user, chosen))
            .await
    }

    /// Submits a removal, preceded by `chosen` (what is being removed) once it is accepted; a
    /// refusal says why on its own ("removing" would be wrong).
    async fn submit_chosen(
        &mut self,
        who: &Principal,
        grants: &Grants,
        spec: JobSpec,
        host: String,
        chosen: Reply,
    ) -> Result<Vec<Reply>, EngineError> {
        let submitted = self
            .submit(
                who,
                grants,
                spec.kind(),
                Target::Host(host),
                spec.into_spec(),
            )
            .await?;
        if super::opened(&submitted).is_none() {
            return Ok(submitted);
        }
        let mut out = vec![chosen];
        out.extend(submitted);
        Ok(out)
    }

    /// `nic remove VM [NIC]`: the adapter by name or id; without one, the VM's only adapter.
    /// Ambiguous (several adapters and none named, or a name several adapters share) is
    /// refused with the choices.
    pub(super) async fn command_nic_remove(
        &mut self,
        who: &Principal,
        grants: &Grants,
        vm: &str,
        nic: Option<&str>,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        let Some(row) = self.state.find_vm(vm) else {
            let msg = format!("no VM named {vm} (see `vm list`)");
            return Ok(vec![notice(&user, msg)]);
        };
        let detail = self.state.vm_detail(&row);
        let wanted = nic.map(str::trim).filter(|n| !n.is_empty());
        let (id, label) = match (detail, wanted) {
            // No inventory listed the VM yet: the worker's agent finds the adapter by name or
            // id (and fails the job when there is none).
            (None, Some(n)) => (n.to_string(), n.to_string()),
            (None, None) => {
                let msg = format!(
                    "the network adapters of VM {} are not known yet (no inventory listed it); name one: `nic remove {} NIC`",
                    row.name, row.name
                );
                return Ok(vec![notice(&user, msg)]);
            }
            (Some(d), _) if d.nics.is_empty() => {
                let msg = format!("VM {} has no network adapter", row.name);
                return Ok(vec![notice(&user, msg)]);
            }
            (Some(d), want) => {
                let matching: Vec<_> = match want {
                    Some(n) => d
                        .nics
                        .iter()
                        .filter(|a| a.id.eq_ignore_ascii_case(n) || a.name.eq_ignore_ascii_case(n))
                        .collect(),
                    None => d.nics.iter().collect(),
                };
                let choices = |list: &[&crate::state::NicInfo]| {
                    list.iter()
                        .map(|a| nic_label(a))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                match (matching.as_slice(), want) {
                    ([one], _) => (one.id.clone(), nic_label(one)),
                    ([], Some(n)) => {
                        let all: Vec<_> = d.nics.iter().collect();
                        let msg = format!(
                            "VM {} has no network adapter {n}; it has {}",
                            row.name,
                            choices(&all)
                        );
                        return Ok(vec![notice(&user, msg)]);
                    }
                    (several, _) => {
                        let msg = format!(
                            "VM {} has {} network adapters{}; say which by name or id: `nic remove {} NIC`, one of {}",
                            row.name,
                            several.len(),
                            if want.is_some() { " of that name" } else { "" },
                            row.name,
                            choices(several)
                        );
                        return Ok(vec![notice(&user, msg)]);
                    }
                }
            }
        };
        let chosen = format!("removing network adapter {label} of VM {}", row.name);
        let spec = JobSpec::NicDelete(NicDeleteSpec::new(
            VmRef::new(row.name.clone(), &row.id),
            id,
        ));
        self.submit_chosen(who, grants, spec, row.host, notice(&user, chosen))
            .await
    }

    /// `retry ID`: a failed or cancelled job again, as a new request of the same kind, target
    /// and spec, by its requester or an admin, through the gate, roles and policy again. Sealed
    /// secrets are reused when the bot still holds them; otherwise the user deploys again.
    pub(super) async fn command_retry(
        &mut self,
        who: &Principal,
        grants: &Grants,
        id: &str,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        let Some(job) = self.state.find_job(id) else {
            return Ok(vec![notice(&user, format!("no job matches {id}"))]);
        };
        let Some(info) = self.state.jobs.get(&job) else {
            return Ok(Vec::new());
        };
        let short = info.short();
        if !matches!(info.phase, Phase::Failed | Phase::Cancelled) {
            let msg = format!(
                "job {short} is {}; only a failed or cancelled job can be retried",
                info.phase.as_str()
            );
            return Ok(vec![notice(&user, msg)]);
        }
        let Some(old) = info.envelope.clone() else {
            let msg = format!(
                "the bot no longer has the request of job {short} (it was not kept across a restart); send the command or deploy again"
            );
            return Ok(vec![notice(&user, msg)]);
        };
        if old.requested_by != who.id && !grants.has(Role::Admin) {
            let by = display(&old.requested_by);
            let msg = format!("only its requester ({by}) or an admin can retry job {short}");
            return Ok(vec![notice(&user, msg)]);
        }
        let missing = old
            .kind
            .fields()
            .unwrap_or_default()
            .iter()
            .any(|f| f.secret && f.required && !old.spec.contains_key(f.name));
        // Values redacted in the kept request were never sealed: they are gone.
        let redacted = old
            .spec
            .values()
            .any(|v| v.as_str() == Some(aetherv_core::redact::REDACTED));
        if redacted || (missing && old.secrets.is_none()) {
            let msg =
                format!("job {short} carried secret values the bot no longer holds; deploy again");
            return Ok(vec![notice(&user, msg)]);
        }
        let kind = old.kind;
        let grants = match self.cfg.rbac.check_role(who, required_role_for_kind(kind)) {
            Ok(g) => g,
            Err(role) => {
                return Ok(vec![Reply::Refused {
                    user,
                    command: format!("retry of {}", kind.as_str()),
                    role: role.as_str().to_string(),
                }])
            }
        };
        if let Err(errors) =
            crate::gate::check(&self.state, &self.forms, kind, &old.target, &old.spec)
        {
            return Ok(vec![super::approvals::refusal(who, kind, errors)]);
        }
        let mut env = JobEnvelope::new(kind, old.target, old.spec, who.id.clone());
        env.secrets = old.secrets;
        let submitted = self.submit_envelope(who, &grants, env).await?;
        if super::opened(&submitted).is_none() {
            return Ok(submitted);
        }
        let mut out = vec![notice(
            &user,
            format!("retrying job {short} as a new request"),
        )];
        out.extend(submitted);
        Ok(out)
    }
}

/// A disk as chat names it: its file path (or id) and size.
fn disk_label(d: &crate::state::DiskInfo) -> String {
    let name = if d.path.is_empty() { &d.id } else { &d.path };
    match d.size_gb {
        Some(n) => format!("{name} ({n} GB)"),
        None => name.clone(),
    }
}

/// An adapter as chat names it: name, id, network and MAC.
fn nic_label(n: &crate::state::NicInfo) -> String {
    let mut parts = vec![format!("id {}", n.id)];
    if !n.network.is_empty() {
        parts.push(format!("on {}", n.network));
    }
    if !n.mac.is_empty() {
        parts.push(format!("MAC {}", n.mac));
    }
    let name = if n.name.is_empty() { &n.id } else { &n.name };
    format!("{name} ({})", parts.join(", "))
}
