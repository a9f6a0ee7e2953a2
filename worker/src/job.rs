//! One running job's context, shared by the executor, the managed deployment and the guest
//! initialization: [`JobCtx`] (events, the host's agent, the log buffer, the opened secrets),
//! the step and job failure types, and the agent call with retries and live log flushing.
//!
//! Every mutating operation carries the idempotency key `<job_id>:<step>:<operation>`, so a job
//! redelivered after a worker crash re-sends the same keys and the host agent answers finished
//! operations from its journal instead of running them again. Resources a job creates are
//! tagged with the job id ([`job_tag`], [`file_tag`]), which the deployment orchestration uses
//! to find its own resources. This module runs no job itself ([`crate::executor`] does).

use crate::agent::{AgentError, HostAgent};
use crate::reporter::{JobReporter, LogBuffer, LOG_FLUSH_INTERVAL};
use aetherv_broker::PublishError;
use aetherv_core::ops::{Spec, StepName};
use aetherv_core::{error_chain, secrets};
use aetherv_core::{AgentOperation, AgentRequest, AgentResult, EventBody, JobEnvelope};
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

/// The tag disk file names of a job carry (file names cannot hold `:`).
pub fn file_tag(job: &JobEnvelope) -> String {
    format!("aetherv-{}", job.job_id)
}

/// Deadlines of the guest-initialization phases (reference §5.2; upstream polls 1 s for the key
/// within 300 s and 5 s for the result within 1,800 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestTimeouts {
    /// From VM start until the guest publishes its public key (`waitingforaeskey`).
    pub ready: Duration,
    /// From `provisioningdatapublished` until the guest reports applied or failed.
    pub apply: Duration,
    /// Pause between two `kvp.read` polls.
    pub poll: Duration,
}

/// Default wait for the guest's public key.
pub const GUEST_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Default wait for the guest to apply its configuration.
pub const GUEST_APPLY_TIMEOUT: Duration = Duration::from_secs(1800);
/// Default pause between KVP polls.
pub const GUEST_POLL_INTERVAL: Duration = Duration::from_secs(1);

impl Default for GuestTimeouts {
    fn default() -> Self {
        GuestTimeouts {
            ready: GUEST_READY_TIMEOUT,
            apply: GUEST_APPLY_TIMEOUT,
            poll: GUEST_POLL_INTERVAL,
        }
    }
}

/// Knobs of job execution.
#[derive(Clone, Default)]
pub struct ExecOptions {
    /// Guest-initialization deadlines.
    pub guest: GuestTimeouts,
    /// The worker's age identity, which opens the envelope's sealed `secrets`.
    pub identity: Option<std::sync::Arc<secrets::Identity>>,
    /// Open cancellation requests (checked before a job starts and at step boundaries).
    pub cancels: crate::cancel::CancelRequests,
    /// The bots' job-signing keys; empty: unsigned jobs run.
    pub verifier: std::sync::Arc<aetherv_core::signing::Verifier>,
}

impl std::fmt::Debug for ExecOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecOptions")
            .field("guest", &self.guest)
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("cancels", &self.cancels.len())
            .field("verifier", &self.verifier)
            .finish()
    }
}

/// Why a step (or the job) stopped early.
#[derive(Debug)]
pub enum StepError {
    /// The step failed: a stable code and a message (never a secret).
    Failed {
        /// Stable error code (`name_conflict`, `guest_timeout`, an agent code, ...).
        code: String,
        /// What went wrong.
        message: String,
    },
    /// The worker is shutting down; the job goes back to its queue.
    Interrupted,
    /// An event could not be published; the job must not be acked.
    Publish(PublishError),
}

impl From<PublishError> for StepError {
    fn from(e: PublishError) -> Self {
        StepError::Publish(e)
    }
}

impl StepError {
    /// A step failure with `code` and `message`.
    pub fn failed(code: &str, message: impl Into<String>) -> Self {
        StepError::Failed {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// One running job: its events, its host, and its log buffer. Steps call agent operations
/// through [`JobCtx::op`], which adds the idempotency key `<job_id>:<step>:<operation>`.
pub struct JobCtx<'a> {
    /// Event publisher of the job.
    pub reporter: &'a mut JobReporter,
    /// The host's agent.
    pub agent: &'a HostAgent,
    /// The job.
    pub job: &'a JobEnvelope,
    /// Fires when the worker must stop now.
    pub terminate: &'a CancellationToken,
    /// Execution knobs.
    pub opts: ExecOptions,
    /// The job's opened secret values (zeroized on drop).
    pub secrets: secrets::SecretValues,
    buf: LogBuffer,
}

impl JobCtx<'_> {
    /// Logs one line of the worker's narration into the job log.
    pub fn narrate(&self, text: impl Into<String>) {
        JobReporter::narrate(&self.buf, text);
    }

    /// Publishes buffered log lines now.
    pub async fn flush(&mut self) -> Result<(), PublishError> {
        self.reporter.flush(&self.buf).await
    }

    /// Runs one agent operation for `step` and returns its result data. `key` is the
    /// idempotency key's last part (`<operation>` or `<operation>:<label>`); `None` sends no key
    /// (read-only polls). An agent error becomes [`StepError::Failed`] with the agent's code.
    pub async fn op(
        &mut self,
        step: &str,
        op: AgentOperation,
        spec: Map<String, Value>,
        key: Option<&str>,
    ) -> Result<Value, StepError> {
        let mut req = AgentRequest::new(op, spec, self.job.job_id.to_string());
        req.idempotency_key = key.map(|k| format!("{}:{step}:{k}", self.job.job_id));
        let outcome = self.call_with_retries(&req).await?;
        self.reporter.flush(&self.buf).await?;
        match outcome {
            Ok(result) if result.is_ok() => Ok(result.data),
            Ok(result) => Err(StepError::Failed {
                code: result.code.unwrap_or_else(|| "agent_error".into()),
                message: result.message,
            }),
            Err(_) if self.terminate.is_cancelled() => Err(StepError::Interrupted),
            Err(e) => Err(StepError::Failed {
                code: e.code().into(),
                message: error_chain(&e),
            }),
        }
    }

    /// [`JobCtx::op`] with a typed spec.
    pub async fn call<S: Spec>(
        &mut self,
        step: &str,
        op: AgentOperation,
        spec: S,
        key: Option<&str>,
    ) -> Result<Value, StepError> {
        self.op(step, op, spec.into_spec(), key).await
    }

    /// One agent call, retried with backoff while the host is unreachable.
    async fn call_with_retries(
        &mut self,
        req: &AgentRequest,
    ) -> Result<Result<AgentResult, AgentError>, PublishError> {
        let mut delay = TRANSIENT_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.call_streaming(req).await? {
                Err(e)
                    if e.is_transient()
                        && attempt < TRANSIENT_ATTEMPTS
                        && !self.terminate.is_cancelled() =>
                {
                    self.narrate(format!(
                        "host {} unreachable ({}); retry {attempt}/{} in {:?}",
                        self.agent.host,
                        error_chain(&e),
                        TRANSIENT_ATTEMPTS - 1,
                        delay
                    ));
                    self.flush().await?;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.terminate.cancelled() => {}
                    }
                    delay *= 2;
                    attempt += 1;
                }
                other => return Ok(other),
            }
        }
    }

    /// One agent call, with its log lines flushed as `job.log` events while it runs.
    async fn call_streaming(
        &mut self,
        req: &AgentRequest,
    ) -> Result<Result<AgentResult, AgentError>, PublishError> {
        let sink = self.buf.clone();
        let mut push = move |line| match sink.lock() {
            Ok(mut g) => g.push(line),
            Err(p) => p.into_inner().push(line),
        };
        let (agent, terminate) = (self.agent, self.terminate);
        let call = agent.call(req, terminate, &mut push);
        tokio::pin!(call);
        let mut tick = tokio::time::interval(LOG_FLUSH_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                res = &mut call => return Ok(res),
                _ = tick.tick() => self.reporter.flush(&self.buf).await?,
            }
        }
    }

    /// A step boundary: `Err(JobFailure::Cancelled)` when someone asked to cancel the job.
    pub fn boundary(&self) -> Result<(), JobFailure> {
        match self.opts.cancels.requested(self.job.job_id) {
            Some(by) => Err(JobFailure::Cancelled { by }),
            None => Ok(()),
        }
    }

    /// Sleeps `d`, or returns [`StepError::Interrupted`] when the worker must stop.
    pub async fn sleep(&self, d: Duration) -> Result<(), StepError> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.terminate.cancelled() => Err(StepError::Interrupted),
        }
    }

    /// Emits `step.started`; returns the start time for [`JobCtx::end_step`].
    pub async fn begin_step(
        &mut self,
        step: StepName,
        index: u32,
        total: u32,
    ) -> Result<Instant, PublishError> {
        // Every later line of the job names its step (the job's span, see `slot`).
        tracing::Span::current().record("step", tracing::field::display(step));
        tracing::info!(index, total, "step started");
        self.reporter
            .emit(EventBody::StepStarted {
                step: step.to_string(),
                index,
                total,
            })
            .await?;
        Ok(Instant::now())
    }

    /// Emits `step.succeeded` or `step.failed` for a finished step and passes the result on.
    pub async fn end_step(
        &mut self,
        step: StepName,
        started: Instant,
        result: Result<(Value, bool), StepError>,
    ) -> Result<Value, StepError> {
        self.reporter.flush(&self.buf).await?;
        let duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(duration_ms, ok = result.is_ok(), "step ended");
        aetherv_metrics::metrics().step_finished(step.as_str(), started.elapsed().as_secs_f64());
        match result {
            Ok((data, resumed)) => {
                self.reporter
                    .emit(EventBody::StepSucceeded {
                        step: step.to_string(),
                        duration_ms,
                        data: data.clone(),
                        resumed,
                    })
                    .await?;
                Ok(data)
            }
            Err(StepError::Failed { code, message }) => {
                self.reporter
                    .emit(EventBody::StepFailed {
                        step: step.to_string(),
                        duration_ms,
                        code: code.clone(),
                        message: message.clone(),
                    })
                    .await?;
                Err(StepError::Failed { code, message })
            }
            Err(other) => Err(other),
        }
    }
}

/// Builds the context [`crate::executor::run_job_with`] takes.
pub fn job_ctx<'a>(
    reporter: &'a mut JobReporter,
    agent: &'a HostAgent,
    job: &'a JobEnvelope,
    terminate: &'a CancellationToken,
    opts: ExecOptions,
) -> JobCtx<'a> {
    JobCtx {
        reporter,
        agent,
        job,
        terminate,
        opts,
        secrets: secrets::SecretValues::default(),
        buf: LogBuffer::default(),
    }
}

/// How a job's steps ended, short of success.
#[derive(Debug)]
pub enum JobFailure {
    /// `job.failed` with this step (None = before any step), code and message.
    Failed {
        /// The failed step.
        step: Option<String>,
        /// Stable code.
        code: String,
        /// Message (never a secret).
        message: String,
    },
    /// Interrupted by shutdown.
    Interrupted,
    /// Cancelled on request at a step boundary.
    Cancelled {
        /// Who asked.
        by: aetherv_core::Requester,
    },
    /// Events could not be published.
    Publish(PublishError),
}

impl JobFailure {
    /// Turns a step's error into the job's failure, naming the step.
    pub fn at(step: StepName, e: StepError) -> Self {
        match e {
            StepError::Failed { code, message } => JobFailure::Failed {
                step: Some(step.to_string()),
                code,
                message,
            },
            StepError::Interrupted => JobFailure::Interrupted,
            StepError::Publish(p) => JobFailure::Publish(p),
        }
    }
}

impl From<PublishError> for JobFailure {
    fn from(e: PublishError) -> Self {
        JobFailure::Publish(e)
    }
}

/// A job on `hv01` from an AMQP producer, with `spec` (an object; anything else is empty).
#[cfg(test)]
pub(crate) fn test_job(kind: aetherv_core::JobKind, spec: Value) -> JobEnvelope {
    let requester = aetherv_core::Requester {
        platform: aetherv_core::Platform::Amqp,
        user_id: "t".into(),
    };
    let spec = match spec {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    JobEnvelope::new(
        kind,
        aetherv_core::Target::Host("hv01".into()),
        spec,
        requester,
    )
}
