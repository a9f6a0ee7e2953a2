//! Turning a job into agent operations and running them in order, with events.
//!
//! Every operation carries the idempotency key `<job_id>:<step index>:<operation>`, so a job
//! redelivered after a worker crash re-sends the same keys and the host agent answers finished
//! operations from its journal instead of running them again. Resources a job creates are tagged
//! with the job id (VM notes), which the deployment orchestration uses to find its own resources.

use crate::agent::{AgentError, HostAgent};
use crate::reporter::{JobReporter, LogBuffer, LOG_FLUSH_INTERVAL};
use aetherv_broker::PublishError;
use aetherv_core::{AgentOperation, AgentRequest, AgentResult, EventBody, JobEnvelope, JobKind};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How many times a step is tried when the host is unreachable.
pub const TRANSIENT_ATTEMPTS: u32 = 4;
/// First retry delay after a transient failure (doubles each time).
pub const TRANSIENT_BACKOFF: Duration = Duration::from_millis(500);

/// The tag written into VM notes (and other resource names) of everything a job creates.
pub fn job_tag(job: &JobEnvelope) -> String {
    format!("aetherv:job={}", job.job_id)
}

/// One agent operation of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Display name (the operation name).
    pub name: String,
    /// The operation.
    pub op: AgentOperation,
    /// Its arguments.
    pub spec: Map<String, Value>,
}

/// Why a job cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PlanError {
    /// This worker does not run this kind yet.
    #[error("job kind {0} is not supported by this worker version")]
    Unsupported(JobKind),
}

/// The steps of a job.
pub fn plan(job: &JobEnvelope) -> Result<Vec<Step>, PlanError> {
    let op = match job.kind {
        JobKind::Noop => AgentOperation::Noop,
        JobKind::VmCreate => AgentOperation::VmCreate,
        JobKind::VmUpdate => AgentOperation::VmUpdate,
        JobKind::VmDelete => AgentOperation::VmDelete,
        JobKind::VmPower => AgentOperation::VmPower,
        JobKind::DiskCreate => AgentOperation::DiskCreate,
        JobKind::DiskUpdate => AgentOperation::DiskUpdate,
        JobKind::DiskDelete => AgentOperation::DiskDelete,
        JobKind::NicCreate => AgentOperation::NicCreate,
        JobKind::NicUpdate => AgentOperation::NicUpdate,
        JobKind::NicDelete => AgentOperation::NicDelete,
        kind @ (JobKind::DeploymentManaged | JobKind::VmInitialize) => {
            return Err(PlanError::Unsupported(kind))
        }
    };
    let mut spec = job.spec.clone();
    if op == AgentOperation::VmCreate && !spec.contains_key("notes") {
        spec.insert("notes".into(), Value::String(job_tag(job)));
    }
    Ok(vec![Step {
        name: op.as_str().to_string(),
        op,
        spec,
    }])
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
}

/// Runs one job attempt on its host, publishing every event. Returns `Err` only when an event
/// could not be published (the broker is gone): the caller must not ack then.
///
/// Cancel safety: not cancel-safe; stop it through `terminate`, which interrupts the running
/// operation and returns [`JobOutcome::Interrupted`].
pub async fn run_job(
    reporter: &mut JobReporter,
    agent: &HostAgent,
    worker_id: &str,
    job: &JobEnvelope,
    attempt: u32,
    redelivered: bool,
    terminate: &CancellationToken,
) -> Result<JobOutcome, PublishError> {
    reporter
        .emit(EventBody::JobStarted {
            host: agent.host.clone(),
            worker: worker_id.to_string(),
            attempt,
        })
        .await?;
    if redelivered {
        reporter.emit(EventBody::JobResumed { attempt }).await?;
    }
    let steps = match plan(job) {
        Ok(s) => s,
        Err(e) => {
            reporter
                .emit(EventBody::JobFailed {
                    code: "unsupported_kind".into(),
                    message: e.to_string(),
                    step: None,
                })
                .await?;
            return Ok(JobOutcome::Failed);
        }
    };
    let total = steps.len() as u32;
    let buf: LogBuffer = Default::default();
    let mut results = Map::new();
    for (i, step) in steps.iter().enumerate() {
        let index = i as u32 + 1;
        reporter
            .emit(EventBody::StepStarted {
                step: step.name.clone(),
                index,
                total,
            })
            .await?;
        let started = Instant::now();
        let mut req = AgentRequest::new(step.op, step.spec.clone(), job.job_id.to_string());
        req.idempotency_key = Some(format!("{}:{}:{}", job.job_id, index, step.op));
        let outcome = call_with_retries(reporter, agent, &req, &buf, terminate).await?;
        reporter.flush(&buf).await?;
        let duration_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(result) if result.is_ok() => {
                results.insert(step.name.clone(), result.data.clone());
                reporter
                    .emit(EventBody::StepSucceeded {
                        step: step.name.clone(),
                        duration_ms,
                        data: result.data,
                        resumed: false,
                    })
                    .await?;
            }
            Ok(result) => {
                let code = result.code.unwrap_or_else(|| "agent_error".into());
                return fail(reporter, &step.name, duration_ms, code, result.message).await;
            }
            Err(e) if terminate.is_cancelled() => {
                tracing::info!(job = %job.job_id, error = %e, "job interrupted by shutdown");
                reporter
                    .emit(EventBody::JobInterrupted {
                        reason: "worker shutting down; the job returns to its queue".into(),
                    })
                    .await?;
                return Ok(JobOutcome::Interrupted);
            }
            Err(e) => {
                let message = error_chain(&e);
                return fail(reporter, &step.name, duration_ms, e.code().into(), message).await;
            }
        }
    }
    reporter
        .emit(EventBody::JobSucceeded {
            result: Value::Object(results),
        })
        .await?;
    Ok(JobOutcome::Succeeded)
}

async fn fail(
    reporter: &mut JobReporter,
    step: &str,
    duration_ms: u64,
    code: String,
    message: String,
) -> Result<JobOutcome, PublishError> {
    reporter
        .emit(EventBody::StepFailed {
            step: step.to_string(),
            duration_ms,
            code: code.clone(),
            message: message.clone(),
        })
        .await?;
    reporter
        .emit(EventBody::JobFailed {
            code,
            message,
            step: Some(step.to_string()),
        })
        .await?;
    Ok(JobOutcome::Failed)
}

/// One step's agent call, retried with backoff while the host is unreachable, with log lines
/// flushed as `job.log` events while it runs.
async fn call_with_retries(
    reporter: &mut JobReporter,
    agent: &HostAgent,
    req: &AgentRequest,
    buf: &LogBuffer,
    terminate: &CancellationToken,
) -> Result<Result<AgentResult, AgentError>, PublishError> {
    let mut delay = TRANSIENT_BACKOFF;
    let mut attempt = 1;
    loop {
        let res = call_streaming(reporter, agent, req, buf, terminate).await?;
        match res {
            Err(e)
                if e.is_transient()
                    && attempt < TRANSIENT_ATTEMPTS
                    && !terminate.is_cancelled() =>
            {
                JobReporter::narrate(
                    buf,
                    format!(
                        "host {} unreachable ({}); retry {attempt}/{} in {:?}",
                        agent.host,
                        error_chain(&e),
                        TRANSIENT_ATTEMPTS - 1,
                        delay
                    ),
                );
                reporter.flush(buf).await?;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = terminate.cancelled() => {}
                }
                delay *= 2;
                attempt += 1;
            }
            other => return Ok(other),
        }
    }
}

async fn call_streaming(
    reporter: &mut JobReporter,
    agent: &HostAgent,
    req: &AgentRequest,
    buf: &LogBuffer,
    terminate: &CancellationToken,
) -> Result<Result<AgentResult, AgentError>, PublishError> {
    let sink = buf.clone();
    let mut push = move |line| match sink.lock() {
        Ok(mut g) => g.push(line),
        Err(p) => p.into_inner().push(line),
    };
    let call = agent.call(req, terminate, &mut push);
    tokio::pin!(call);
    let mut tick = tokio::time::interval(LOG_FLUSH_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            res = &mut call => return Ok(res),
            _ = tick.tick() => reporter.flush(buf).await?,
        }
    }
}

/// An error and its sources, `: `-joined, for event messages.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::{JobId, Platform, Requester, Target};

    fn job(kind: JobKind) -> JobEnvelope {
        JobEnvelope {
            v: 1,
            job_id: JobId::new(),
            kind,
            target: Target::Host("hv01".into()),
            spec: Map::new(),
            secrets: None,
            requested_by: Requester {
                platform: Platform::Amqp,
                user_id: "t".into(),
            },
            origin: None,
            created_at: chrono::Utc::now(),
            approval: None,
        }
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
