//! Cancellation of queued and running jobs. The bot (or any producer) publishes
//! `job.cancel_requested` to the event stream; every worker follows the stream (from a look-back
//! window at start, so a request made while no worker ran still counts) and keeps the open
//! requests. A job whose request is known is dropped when its slot reaches it (`job.cancelled`
//! without `job.started`), or stops at its next step boundary when it is already running. An
//! operation in flight on the host always finishes: Hyper-V operations are not interruptible
//! halfway without leaving debris.

use aetherv_broker::{Broker, StreamOffset};
use aetherv_core::{EventBody, JobId, Requester};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How far back a starting worker looks for cancellation requests.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// The open cancellation requests this worker knows of.
#[derive(Debug, Clone, Default)]
pub struct CancelRequests(Arc<Mutex<HashMap<JobId, Requester>>>);

impl CancelRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Requester>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Who asked to cancel `job`, if anyone did.
    pub fn requested(&self, job: JobId) -> Option<Requester> {
        self.lock().get(&job).cloned()
    }

    /// Records a request.
    pub fn insert(&self, job: JobId, by: Requester) {
        self.lock().insert(job, by);
    }

    /// Forgets `job` (it ended).
    pub fn forget(&self, job: JobId) {
        self.lock().remove(&job);
    }

    /// How many requests are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no request is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Follows the event stream until `quiet` fires, recording cancellation requests and
/// forgetting jobs that ended. Re-subscribes (from the last event's time) when the stream ends.
pub(crate) async fn watch(
    broker: Broker,
    requests: CancelRequests,
    lookback: Duration,
    quiet: CancellationToken,
) {
    let lookback = chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::hours(24));
    let mut from = chrono::Utc::now() - lookback;
    let mut backoff = Duration::from_millis(200);
    loop {
        let stream = tokio::select! {
            _ = quiet.cancelled() => return,
            s = broker.replay_events(StreamOffset::Timestamp(from)) => s,
        };
        match stream {
            Ok(mut stream) => {
                backoff = Duration::from_millis(200);
                loop {
                    let next = tokio::select! {
                        _ = quiet.cancelled() => return,
                        n = stream.next() => n,
                    };
                    let Some((_, ev)) = next else { break };
                    from = ev.at;
                    let Some(job) = ev.job_id else { continue };
                    match &ev.body {
                        EventBody::JobCancelRequested { by } => requests.insert(job, by.clone()),
                        _ if ev.is_terminal() => requests.forget(job),
                        _ => {}
                    }
                }
                tracing::info!("event stream ended; following it again");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the event stream for cancellations; retrying");
            }
        }
        tokio::select! {
            _ = quiet.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
