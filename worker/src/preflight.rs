//! The preflight: just before a job's first step, its spec is checked against the host's
//! *fresh* inventory with the safeguards the bot's gate uses ([`aetherv_core::safeguards`]),
//! since the world may have changed while the job queued or waited for approval (a VM deleted,
//! a network removed, a name taken). A failure fails the job with `job.failed` code
//! [`PREFLIGHT_CODE`], no step, and a message naming every field; nothing is created.
//!
//! A job placed through a cluster is checked on the member it was placed on (the host slot
//! runs it after placement). Resume is kept: a VM of the new name whose notes carry this job's
//! tag (or, for a redelivered `vm.create` given its own notes, those notes) is its own from an
//! earlier attempt, and a redelivered delete (whose earlier attempt may have removed the VM,
//! disk or adapter already) is not checked, since the host's journal answers its operation.

use crate::job::{job_tag, JobCtx, JobFailure, StepError};
use aetherv_core::ops::JobSpec;
use aetherv_core::safeguards::{self, Checks, Errors, HostFacts};
use aetherv_core::{AgentOperation, JobKind};
use serde_json::Map;

/// The `job.failed` code of a job the preflight refused.
pub const PREFLIGHT_CODE: &str = "preflight";

/// The step part of the preflight's agent call (it sends no idempotency key).
const STEP: &str = "preflight";

/// Whether `kind` on this attempt is checked.
fn checked(kind: JobKind, redelivered: bool) -> bool {
    match kind {
        JobKind::Noop => false,
        JobKind::VmDelete | JobKind::DiskDelete | JobKind::NicDelete => !redelivered,
        _ => true,
    }
}

/// What marks the job's own VM: its tag, which the worker writes into the notes of the VM it
/// creates; a `vm.create` given its own notes carries those instead (recognised only on a
/// redelivery, when an earlier attempt may have created the VM).
fn own_tag(job: &aetherv_core::JobEnvelope, redelivered: bool) -> String {
    let notes = job.spec.get("notes").and_then(serde_json::Value::as_str);
    match notes {
        Some(n) if redelivered && job.kind == JobKind::VmCreate && !n.trim().is_empty() => {
            n.to_string()
        }
        _ => job_tag(job),
    }
}

/// Checks `spec` (the job's, already validated) against the host's fresh inventory.
pub(crate) async fn preflight(ctx: &mut JobCtx<'_>, spec: &JobSpec) -> Result<(), JobFailure> {
    if !checked(ctx.job.kind, ctx.redelivered) {
        return Ok(());
    }
    let inventory = match ctx
        .op(STEP, AgentOperation::HostInventory, Map::new(), None)
        .await
    {
        Ok(data) => data,
        Err(StepError::Failed { code, message }) => {
            return Err(JobFailure::Failed {
                step: None,
                code,
                message: format!(
                    "preflight: the inventory of host {} could not be read: {message}",
                    ctx.agent.host
                ),
            })
        }
        Err(StepError::Interrupted) => return Err(JobFailure::Interrupted),
        Err(StepError::Publish(e)) => return Err(JobFailure::Publish(e)),
    };
    let facts = HostFacts::from_inventory(&ctx.agent.host, &inventory);
    let tag = own_tag(ctx.job, ctx.redelivered);
    let forms = crate::managed::forms().ok();
    let checks = Checks {
        forms,
        own_tag: Some(&tag),
    };
    let mut errors = Errors::default();
    safeguards::check(&facts, spec, checks, &mut errors);
    if errors.0.is_empty() {
        ctx.narrate(format!(
            "preflight: the job fits the current inventory of host {}",
            ctx.agent.host
        ));
        ctx.flush().await?;
        return Ok(());
    }
    let fields: Vec<String> = errors
        .0
        .iter()
        .map(|e| format!("{} ({}): {}", e.field, e.code.as_str(), e.message))
        .collect();
    Err(JobFailure::Failed {
        step: None,
        code: PREFLIGHT_CODE.into(),
        message: format!(
            "the job does not fit the current inventory of host {} (nothing was run): {}",
            ctx.agent.host,
            fields.join("; ")
        ),
    })
}

/// Checks a single-operation job: its spec as sent. A spec that does not read as its kind's
/// is left to the agent, which names the field.
pub(crate) async fn preflight_single(ctx: &mut JobCtx<'_>) -> Result<(), JobFailure> {
    match JobSpec::parse(ctx.job.kind, &ctx.job.spec) {
        Ok(spec) => preflight(ctx, &spec).await,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_create_with_its_own_notes_is_recognised_by_them_on_redelivery() {
        let job = crate::job::test_job(
            JobKind::VmCreate,
            serde_json::json!({"vm_name": "a", "notes": "mine"}),
        );
        assert_eq!(own_tag(&job, true), "mine");
        assert_eq!(own_tag(&job, false), job_tag(&job));
        let plain = crate::job::test_job(JobKind::VmCreate, serde_json::json!({"vm_name": "a"}));
        assert_eq!(own_tag(&plain, true), job_tag(&plain));
    }

    #[test]
    fn deletes_are_not_checked_again_on_redelivery() {
        assert!(checked(JobKind::VmDelete, false));
        assert!(!checked(JobKind::VmDelete, true));
        assert!(checked(JobKind::DeploymentManaged, true));
        assert!(!checked(JobKind::Noop, false));
    }
}
