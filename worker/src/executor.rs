//! Running a job: its secrets opened, its steps ([`aetherv_core::ops::plan`]) run with events,
//! its outcome reported.
//!
//! Each step emits `step.started` and `step.succeeded` (with its result data and timing) or
//! `step.failed`. Single-operation kinds are one step, one agent call keyed
//! `<job_id>:<index>:<operation>`; `deployment.managed` and `vm.initialize` are orchestrated in
//! [`crate::managed`]. The job context, the failure types and the agent call live in
//! [`crate::job`].

use crate::job::{job_tag, JobCtx, JobFailure};
use aetherv_broker::PublishError;
use aetherv_core::ops::StepName;
use aetherv_core::secrets;
use aetherv_core::{AgentOperation, EventBody, JobEnvelope, JobKind};
use serde_json::{Map, Value};

pub use crate::job::{job_ctx, ExecOptions, GuestTimeouts};

/// One agent operation of a single-operation job.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The step's name (the operation's name).
    pub name: StepName,
    /// The operation.
    pub op: AgentOperation,
    /// Its arguments.
    pub spec: Map<String, Value>,
}

/// Why a job cannot be planned as single operations.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PlanError {
    /// The kind is orchestrated, not a single operation.
    #[error("job kind {0} is not supported by this worker version")]
    Unsupported(JobKind),
}

/// The agent calls of a single-operation job: the core plan's steps with the job spec as sent
/// (the agent reads numeric strings and aliases), `vm.create` tagged with the job id.
pub fn plan(job: &JobEnvelope) -> Result<Vec<Step>, PlanError> {
    if job.kind.operation().is_none() {
        return Err(PlanError::Unsupported(job.kind));
    }
    job.plan()
        .into_iter()
        .map(|name| {
            let StepName::Op(op) = name else {
                return Err(PlanError::Unsupported(job.kind));
            };
            let mut spec = job.spec.clone();
            if op == AgentOperation::VmCreate && !spec.contains_key("notes") {
                spec.insert("notes".into(), Value::String(job_tag(job)));
            }
            Ok(Step { name, op, spec })
        })
        .collect()
}

/// How a job attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// `job.succeeded` was published.
    Succeeded,
    /// `job.failed` was published.
    Failed,
    /// The worker stopped mid-job (`job.interrupted` published); return it to the queue.
    Interrupted,
    /// `job.cancelled` was published (dropped before it started, or stopped at a step
    /// boundary).
    Cancelled,
}

/// Checks the job's secrets and opens them ([`JobEnvelope::open_secrets`]): secret fields in
/// the plaintext spec fail `plaintext_secret` (the job is not run, and the message is not
/// dead-lettered, which would keep the plaintext on the broker); sealed secrets this worker
/// cannot open fail `secrets_undecryptable`; a sealed field that is not a secret field fails
/// `invalid_request`.
pub fn open_job_secrets(
    job: &JobEnvelope,
    identity: Option<&secrets::Identity>,
) -> Result<secrets::SecretValues, JobFailure> {
    job.open_secrets(identity).map_err(|e| JobFailure::Failed {
        step: None,
        code: e.code().into(),
        message: e.to_string(),
    })
}

/// Runs one job attempt, publishing every event: `job.started` (and `job.resumed`), the steps,
/// then `job.succeeded`, `job.failed` (naming the failed step) or `job.interrupted`. Returns
/// `Err` only when an event could not be published (the broker is gone): the caller must not
/// ack then.
pub async fn run_job_with(
    mut ctx: JobCtx<'_>,
    worker_id: &str,
    attempt: u32,
    redelivered: bool,
) -> Result<JobOutcome, PublishError> {
    if let Some(by) = ctx.opts.cancels.requested(ctx.job.job_id) {
        // Dropped before it started: nothing ran, nothing to undo.
        tracing::info!(job_id = %ctx.job.job_id, "cancelled before it started");
        ctx.reporter
            .emit(EventBody::JobCancelled { by: Some(by) })
            .await?;
        ctx.opts.cancels.forget(ctx.job.job_id);
        return Ok(JobOutcome::Cancelled);
    }
    ctx.reporter
        .emit(EventBody::JobStarted {
            host: ctx.agent.host.clone(),
            worker: worker_id.to_string(),
            attempt,
        })
        .await?;
    if redelivered {
        ctx.reporter.emit(EventBody::JobResumed { attempt }).await?;
    }
    ctx.redelivered = redelivered;
    let opened = open_job_secrets(ctx.job, ctx.opts.identity.as_deref());
    let outcome = match opened {
        Err(failure) => Err(failure),
        Ok(values) => {
            ctx.secrets = values;
            run_kind(&mut ctx).await
        }
    };
    let job_id = ctx.job.job_id;
    report_outcome(&mut ctx, job_id, outcome).await
}

async fn run_kind(ctx: &mut JobCtx<'_>) -> Result<Value, JobFailure> {
    match ctx.job.kind {
        JobKind::DeploymentManaged => crate::managed::run_managed(ctx).await,
        JobKind::VmInitialize => crate::managed::run_initialize(ctx).await,
        _ => {
            crate::preflight::preflight_single(ctx).await?;
            run_single(ctx).await
        }
    }
}

async fn report_outcome(
    ctx: &mut JobCtx<'_>,
    job_id: aetherv_core::JobId,
    outcome: Result<Value, JobFailure>,
) -> Result<JobOutcome, PublishError> {
    match outcome {
        Ok(result) => {
            ctx.reporter
                .emit(EventBody::JobSucceeded { result })
                .await?;
            Ok(JobOutcome::Succeeded)
        }
        Err(JobFailure::Failed {
            step,
            code,
            message,
        }) => {
            ctx.reporter
                .emit(EventBody::JobFailed {
                    code,
                    message,
                    step,
                })
                .await?;
            Ok(JobOutcome::Failed)
        }
        Err(JobFailure::Interrupted) => {
            tracing::info!(job_id = %job_id, "job interrupted by shutdown");
            ctx.reporter
                .emit(EventBody::JobInterrupted {
                    reason: "worker shutting down; the job returns to its queue".into(),
                })
                .await?;
            Ok(JobOutcome::Interrupted)
        }
        Err(JobFailure::Cancelled { by }) => {
            tracing::info!(job_id = %job_id, "cancelled at a step boundary");
            ctx.flush().await?;
            ctx.reporter
                .emit(EventBody::JobCancelled { by: Some(by) })
                .await?;
            ctx.opts.cancels.forget(job_id);
            Ok(JobOutcome::Cancelled)
        }
        Err(JobFailure::Publish(e)) => Err(e),
    }
}

/// The single-operation kinds: one step, one agent call keyed `<job_id>:<index>:<operation>`.
async fn run_single(ctx: &mut JobCtx<'_>) -> Result<Value, JobFailure> {
    let steps = plan(ctx.job).map_err(|e| JobFailure::Failed {
        step: None,
        code: "unsupported_kind".into(),
        message: e.to_string(),
    })?;
    let total = steps.len() as u32;
    let mut results = Map::new();
    for (i, step) in steps.into_iter().enumerate() {
        ctx.boundary()?;
        let index = i as u32 + 1;
        let started = ctx.begin_step(step.name, index, total).await?;
        let key = format!("{}", step.op);
        let res = ctx
            .op(&index.to_string(), step.op, step.spec, Some(&key))
            .await
            .map(|d| (d, false));
        let data = ctx
            .end_step(step.name, started, res)
            .await
            .map_err(|e| JobFailure::at(step.name, e))?;
        results.insert(step.name.to_string(), data);
    }
    Ok(Value::Object(results))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: JobKind) -> JobEnvelope {
        crate::job::test_job(kind, Value::Null)
    }

    #[test]
    fn vm_create_is_tagged_with_the_job_id() {
        let j = job(JobKind::VmCreate);
        let steps = plan(&j).expect("plans");
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].op, AgentOperation::VmCreate);
        assert_eq!(
            steps[0].spec["notes"],
            Value::String(format!("aetherv:job={}", j.job_id))
        );
    }

    #[test]
    fn single_operation_kinds_map_to_their_operation() {
        for (kind, op) in [
            (JobKind::Noop, AgentOperation::Noop),
            (JobKind::VmPower, AgentOperation::VmPower),
            (JobKind::DiskUpdate, AgentOperation::DiskUpdate),
            (JobKind::NicDelete, AgentOperation::NicDelete),
        ] {
            assert_eq!(plan(&job(kind)).expect("plans")[0].op, op);
        }
        assert_eq!(
            plan(&job(JobKind::DeploymentManaged)),
            Err(PlanError::Unsupported(JobKind::DeploymentManaged))
        );
    }
}
