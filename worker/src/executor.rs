//! Running a job as a sequence of steps, each one or more agent operations, with events.
//!
//! A job is a list of named steps; each emits `step.started` and `step.succeeded` (with its
//! result data and timing) or `step.failed`, and later steps use earlier steps' results
//! ([`JobCtx`]). Single-operation kinds are one step ([`plan`]); `deployment.managed` and
//! `vm.initialize` are orchestrated in [`crate::managed`].
//!
//! Every mutating operation carries the idempotency key `<job_id>:<step>:<operation>` (the step
//! index for single-operation kinds), so a job redelivered after a worker crash re-sends the
//! same keys and the host agent answers finished operations from its journal instead of running
//! them again. Resources a job creates are tagged with the job id (VM notes, disk file names),
//! which the deployment orchestration uses to find its own resources.

use crate::agent::{AgentError, HostAgent};
use crate::reporter::{JobReporter, LogBuffer, LOG_FLUSH_INTERVAL};
use aetherv_broker::PublishError;
use aetherv_core::{error_chain, secrets};
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
    /// `job.cancelled` was published (dropped before it started, or stopped at a step
    /// boundary).
    Cancelled,
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
}

impl std::fmt::Debug for ExecOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecOptions")
            .field("guest", &self.guest)
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("cancels", &self.cancels.len())
            .finish()
    }
}

/// The secret form fields of every built-in form.
fn secret_field_ids() -> &'static [String] {
    static IDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        let mut ids: Vec<String> = crate::managed::forms()
            .map(|f| f.secret_fields().into_iter().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    })
}

/// Checks the job's secrets and opens them: secret fields in the plaintext spec fail
/// `plaintext_secret` (the job is not run, and the message is not dead-lettered, which would
/// keep the plaintext on the broker); sealed secrets this worker cannot open fail
/// `secrets_undecryptable`; a sealed field that is not a secret field fails `invalid_request`.
pub fn open_job_secrets(
    job: &JobEnvelope,
    identity: Option<&secrets::Identity>,
) -> Result<secrets::SecretValues, JobFailure> {
    let ids = secret_field_ids();
    let fail = |code: &str, message: String| JobFailure::Failed {
        step: None,
        code: code.into(),
        message,
    };
    let plain = secrets::plaintext_secret_fields(&job.spec, ids.iter().map(String::as_str));
    if !plain.is_empty() {
        return Err(fail(
            "plaintext_secret",
            format!(
                "secret fields ({}) arrived in plaintext in the job spec; producers must seal \
                 them to the workers' age recipients in the envelope's `secrets` field; the job \
                 was not run",
                plain.join(", ")
            ),
        ));
    }
    let Some(armored) = &job.secrets else {
        return Ok(secrets::SecretValues::default());
    };
    let Some(identity) = identity else {
        return Err(fail(
            "secrets_undecryptable",
            "the job carries sealed secrets but this worker has no age identity configured \
             (age_identity_file or AETHERV_AGE_IDENTITY)"
                .into(),
        ));
    };
    let values = secrets::open(armored, identity)
        .map(secrets::SecretValues)
        .map_err(|e| fail("secrets_undecryptable", e.to_string()))?;
    if let Some(k) = values.0.keys().find(|k| !ids.contains(k)) {
        return Err(fail(
            "invalid_request",
            format!("the sealed secrets hold {k}, which is not a secret field"),
        ));
    }
    Ok(values)
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
        let outcome =
            call_with_retries(self.reporter, self.agent, &req, &self.buf, self.terminate).await?;
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
        step: &str,
        index: u32,
        total: u32,
    ) -> Result<Instant, PublishError> {
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
        step: &str,
        started: Instant,
        result: Result<(Value, bool), StepError>,
    ) -> Result<Value, StepError> {
        self.reporter.flush(&self.buf).await?;
        let duration_ms = started.elapsed().as_millis() as u64;
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

/// Builds the context [`run_job_with`] takes.
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
        tracing::info!(job = %ctx.job.job_id, "cancelled before it started");
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
        _ => run_single(ctx).await,
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
            tracing::info!(job = %job_id, "job interrupted by shutdown");
            ctx.reporter
                .emit(EventBody::JobInterrupted {
                    reason: "worker shutting down; the job returns to its queue".into(),
                })
                .await?;
            Ok(JobOutcome::Interrupted)
        }
        Err(JobFailure::Cancelled { by }) => {
            tracing::info!(job = %job_id, "cancelled at a step boundary");
            ctx.reporter.flush(&ctx.buf).await?;
            ctx.reporter
                .emit(EventBody::JobCancelled { by: Some(by) })
                .await?;
            ctx.opts.cancels.forget(job_id);
            Ok(JobOutcome::Cancelled)
        }
        Err(JobFailure::Publish(e)) => Err(e),
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
    pub fn at(step: &str, e: StepError) -> Self {
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
        let started = ctx.begin_step(&step.name, index, total).await?;
        let key = format!("{}", step.op);
        let res = ctx
            .op(&index.to_string(), step.op, step.spec, Some(&key))
            .await
            .map(|d| (d, false));
        let data = ctx
            .end_step(&step.name, started, res)
            .await
            .map_err(|e| JobFailure::at(&step.name, e))?;
        results.insert(step.name.clone(), data);
    }
    Ok(Value::Object(results))
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
