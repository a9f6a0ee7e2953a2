//! The host slot: one consumer per host queue, one job at a time.
//!
//! Exclusivity across worker processes comes from the broker: each host queue has a single
//! active consumer and prefetch 1, and a job is acked only after its final event is confirmed.
//! So at most one job per host is unacked anywhere, other hosts run in parallel, and the queue's
//! FIFO order is the execution order. When a worker dies, its unacked job is redelivered to the
//! standby consumer of another worker, which resumes it (idempotency keys; see `executor`).

use crate::agent::HostAgent;
use crate::executor::{job_ctx, run_job_with, JobOutcome};
use crate::prepare::{self, Preparation};
use crate::queue::{log_unsettled, QueueReader};
use crate::reporter::JobReporter;
use aetherv_broker::{Broker, JobDelivery};
use aetherv_core::Target;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use crate::queue::MAX_SUBSCRIBE_BACKOFF;

/// What a slot is doing, for `hosts` and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// Waiting for a job (or standby behind another worker's active consumer).
    Idle,
    /// Running a job.
    Busy {
        /// The job.
        job_id: aetherv_core::JobId,
    },
}

/// Per-host slot states of this worker, and per host a signal raised when a job ended there
/// (the inventory poller then reads the host at once, so reads after a job see its result).
#[derive(Debug, Clone, Default)]
pub struct SlotRegistry(
    Arc<Mutex<HashMap<String, SlotState>>>,
    Arc<Mutex<HashMap<String, Arc<tokio::sync::Notify>>>>,
);

impl SlotRegistry {
    fn set(&self, host: &str, state: SlotState) {
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        aetherv_metrics::metrics().set_slot_busy(host, matches!(state, SlotState::Busy { .. }));
        g.insert(host.to_string(), state);
    }

    /// The signal raised each time a job on `host` ended.
    pub fn job_ended(&self, host: &str) -> Arc<tokio::sync::Notify> {
        let mut g = match self.1.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.entry(host.to_string()).or_default().clone()
    }

    /// A snapshot of every slot.
    pub fn snapshot(&self) -> HashMap<String, SlotState> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Everything a slot needs.
pub(crate) struct SlotCtx {
    pub broker: Broker,
    pub worker_id: String,
    pub slots: SlotRegistry,
    pub opts: crate::executor::ExecOptions,
    /// Turns to prepare a host at start ([`START_PREPARATIONS`] permits).
    pub preparing: tokio::sync::Semaphore,
    /// Turns to subscribe at start ([`START_SUBSCRIPTIONS`] permits).
    pub subscribing: tokio::sync::Semaphore,
}

/// Most slots subscribing at once when a worker starts: a subscription is a few round trips
/// on a channel of its own, and a thousand opened in one burst grow the connection's frame
/// buffers by megabytes (which are never given back) for no gain in time.
pub(crate) const START_SUBSCRIPTIONS: usize = 64;

/// Most hosts prepared at once when a worker starts (each preparation is a score of WinRM
/// calls; a thousand at once is a memory peak and a storm on the network, and gains nothing).
pub(crate) const START_PREPARATIONS: usize = 16;

/// A host slot: it subscribes to the host's queue at once (so a worker serving a thousand
/// hosts is ready in seconds), then prepares the host, at most [`START_PREPARATIONS`] hosts
/// at a time across the worker, before it takes the first job (a job delivered meanwhile
/// waits unacked in this slot, as it would behind a running job). One attempt at start; then,
/// while the host is not prepared, before each job: an unreachable host keeps its job waiting
/// with retries and backoff that the job's thread shows; rejected credentials fail the job at
/// once with `host_auth_failed` (one attempt per job, no retry storm). See [`crate::prepare`].
pub(crate) async fn host_slot(
    ctx: Arc<SlotCtx>,
    agent: HostAgent,
    quiet: CancellationToken,
    terminate: CancellationToken,
) {
    let tag = format!("{}:{}", ctx.worker_id, agent.host);
    // Cancellation requests made while no worker ran must be known before the first job.
    ctx.opts
        .cancels
        .caught_up(crate::cancel::CATCH_UP_WAIT)
        .await;
    let mut queue = QueueReader::new(&ctx.broker, &agent.host, tag);
    let subscribed = {
        let _turn = tokio::select! {
            biased;
            () = quiet.cancelled() => return,
            p = ctx.subscribing.acquire() => p,
        };
        Box::pin(queue.subscribe_now(&quiet)).await
    };
    if !subscribed {
        return;
    }
    let mut prepared = {
        let _turn = tokio::select! {
            biased;
            () = quiet.cancelled() => return,
            p = ctx.preparing.acquire() => p,
        };
        Box::pin(prepare::at_start(&agent)).await
    };
    ctx.slots.set(&agent.host, SlotState::Idle);
    // The futures of a job's work are boxed, so that a slot waiting for its next job (what a
    // worker with a thousand hosts mostly holds) is a small task, not the size of the largest
    // job flow.
    while let Some(delivery) = Box::pin(queue.next(&quiet)).await {
        let Some(delivery) = Box::pin(refuse_foreign(&agent.host, delivery)).await else {
            continue;
        };
        let Some(delivery) = Box::pin(admit(&ctx.opts.verifier, delivery)).await else {
            continue;
        };
        ctx.slots.set(
            &agent.host,
            SlotState::Busy {
                job_id: delivery.envelope.job_id,
            },
        );
        let delivery = if prepared {
            delivery
        } else {
            match Box::pin(prepare(&ctx, &agent, delivery, &quiet)).await {
                Prepared::Run(d) => {
                    prepared = true;
                    *d
                }
                Prepared::Settled => {
                    ctx.slots.set(&agent.host, SlotState::Idle);
                    continue;
                }
                Prepared::Stop => return,
            }
        };
        Box::pin(handle(&ctx, &agent, delivery, &terminate)).await;
        ctx.slots.set(&agent.host, SlotState::Idle);
    }
    Box::pin(agent.release()).await;
}

/// The delivery when it may run: signed by a configured bot key (or no key is configured);
/// else it is dead-lettered (`unsigned`, `bad_signature`) and nothing runs.
async fn admit(verifier: &aetherv_core::signing::Verifier, d: JobDelivery) -> Option<JobDelivery> {
    if verifier.is_empty() {
        return Some(d);
    }
    let Err(e) = verifier.verify(&d.envelope, |name| d.header(name)) else {
        return Some(d);
    };
    tracing::warn!(job_id = %d.envelope.job_id, reason = e.code(), "refusing a job that is not signed by a bot");
    let settled = d.dead_letter(e.code(), &e.to_string()).await;
    if let Err(e) = settled {
        tracing::warn!(error = %e, "dead-lettering an unsigned job failed; it will be redelivered");
    }
    None
}

/// The delivery when its job targets `host`, the host whose queue it came from. A job that
/// targets another host (or a cluster: placed jobs are re-published with their host) was
/// routed wrongly and must not run here: it is dead-lettered with reason `target_mismatch`.
async fn refuse_foreign(host: &str, d: JobDelivery) -> Option<JobDelivery> {
    let ok = matches!(&d.envelope.target, Target::Host(h) if h.trim().eq_ignore_ascii_case(host));
    if ok {
        return Some(d);
    }
    let detail = format!(
        "the job targets {} but came from the queue of host {host}",
        d.envelope.target.routing_key()
    );
    tracing::warn!(job_id = %d.envelope.job_id, host, %detail, "dead-lettering a job routed to another host");
    log_unsettled(host, d.dead_letter("target_mismatch", &detail).await);
    None
}

/// What preparing the host for a delivery came to.
enum Prepared {
    /// The host is ready: run the job.
    Run(Box<JobDelivery>),
    /// The job was failed (or returned) and settled.
    Settled,
    /// The worker is stopping; the job went back to its queue.
    Stop,
}

/// Prepares the host for `d`'s job (see [`prepare::for_job`]).
async fn prepare(
    ctx: &SlotCtx,
    agent: &HostAgent,
    d: JobDelivery,
    quiet: &CancellationToken,
) -> Prepared {
    let Some(deployer) = agent.deployer() else {
        return Prepared::Run(Box::new(d));
    };
    let mut reporter = JobReporter::new(ctx.broker.clone(), d.envelope.job_id);
    let outcome = prepare::for_job(deployer, &mut reporter, quiet).await;
    let (verdict, settled) = match outcome {
        Ok(Preparation::Ready) => return Prepared::Run(Box::new(d)),
        Ok(Preparation::Failed { code, message }) => {
            tracing::warn!(host = %agent.host, job_id = %d.envelope.job_id, code, "host preparation failed; failing the job");
            let failed = match reporter
                .emit(aetherv_core::EventBody::JobFailed {
                    code: code.into(),
                    message,
                    step: None,
                })
                .await
            {
                Ok(()) => reporter.settle().await,
                Err(e) => Err(e),
            };
            match failed {
                Ok(()) => (Prepared::Settled, d.ack().await),
                Err(_) => (Prepared::Settled, d.requeue().await),
            }
        }
        Ok(Preparation::Stopped) => (Prepared::Stop, d.requeue().await),
        Err(e) => {
            tracing::warn!(host = %agent.host, error = %e, "cannot publish preparation events; returning the job");
            (Prepared::Settled, d.requeue().await)
        }
    };
    log_unsettled(&agent.host, settled);
    verdict
}

async fn handle(ctx: &SlotCtx, agent: &HostAgent, d: JobDelivery, terminate: &CancellationToken) {
    let job = d.envelope.clone();
    let span = tracing::info_span!(
        "job",
        job_id = %job.job_id,
        host = %agent.host,
        kind = %job.kind,
        step = tracing::field::Empty,
    );
    let mut reporter = JobReporter::new(ctx.broker.clone(), job.job_id);
    let jc = job_ctx(&mut reporter, agent, &job, terminate, ctx.opts.clone());
    let started = std::time::Instant::now();
    let outcome = run_job_with(jc, &ctx.worker_id, d.attempt(), d.redelivered)
        .instrument(span)
        .await;
    // Every event the job sent must be stored before the ack (or the requeue) settles it.
    let outcome = match outcome {
        Ok(o) => reporter.settle().await.map(|()| o),
        Err(e) => Err(e),
    };
    let finished = match &outcome {
        Ok(JobOutcome::Succeeded) => Some("succeeded"),
        Ok(JobOutcome::Failed) => Some("failed"),
        Ok(JobOutcome::Cancelled) => Some("cancelled"),
        Ok(JobOutcome::Interrupted) | Err(_) => None,
    };
    if let Some(outcome) = finished {
        aetherv_metrics::metrics().job_finished(
            job.kind.as_str(),
            outcome,
            started.elapsed().as_secs_f64(),
        );
    }
    if job.kind.changes_host() {
        // The inventory poller reads the host now, so a read after the job sees what it did.
        ctx.slots.job_ended(&agent.host).notify_one();
    }
    let settled = match outcome {
        Ok(JobOutcome::Succeeded | JobOutcome::Failed | JobOutcome::Cancelled) => d.ack().await,
        Ok(JobOutcome::Interrupted) => d.requeue().await,
        Err(e) => {
            tracing::warn!(job_id = %job.job_id, error = %e, "could not publish job events; returning the job to its queue");
            d.requeue().await
        }
    };
    log_unsettled(&agent.host, settled);
}
