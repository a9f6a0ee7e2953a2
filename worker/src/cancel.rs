//! Cancellation of queued and running jobs. The bot (or any producer) publishes
//! `job.cancel_requested` to the event stream; every worker follows the stream (from a look-back
//! window at start, so a request made while no worker ran still counts) and keeps the open
//! requests. A job whose request is known is dropped when its slot reaches it (`job.cancelled`
//! without `job.started`), or stops at its next step boundary when it is already running. An
//! operation in flight on the host always finishes: Hyper-V operations are not interruptible
//! halfway without leaving debris.

use aetherv_broker::{Broker, Seen, StreamOffset};
use aetherv_core::{EventBody, JobId, Requester};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The event types the watcher decodes: requests, and the ends of jobs (to forget them).
const WATCHED: &[&str] = &[
    "job.cancel_requested",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
];

/// How far back a starting worker looks for cancellation requests.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// The open cancellation requests this worker knows of.
#[derive(Debug, Clone, Default)]
pub struct CancelRequests(Arc<Mutex<HashMap<JobId, Requester>>>, Arc<CaughtUp>);

/// Whether the watcher has read the look-back window up to the present.
#[derive(Debug, Default)]
struct CaughtUp {
    done: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

/// Longest a slot waits for the watcher's look-back before taking its first job.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for the newest offset of the stream at start (a non-empty stream answers in
/// milliseconds; an empty one never does).
const NEWEST_WAIT: Duration = Duration::from_millis(250);
/// A stream quiet for this long has been read up to the present.
const IDLE_IS_CAUGHT_UP: Duration = Duration::from_millis(300);

impl CancelRequests {
    /// Marks the look-back as read (wakes [`CancelRequests::caught_up`] waiters).
    pub fn mark_caught_up(&self) {
        if !self.1.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.1.notify.notify_waiters();
        }
    }

    /// True once the watcher has read the look-back up to the present.
    pub fn is_caught_up(&self) -> bool {
        self.1.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the watcher has read up to the present, at most `limit` (so a slot does not
    /// take a job whose cancel request is still in the look-back window).
    pub async fn caught_up(&self, limit: Duration) {
        let wait = async {
            loop {
                let notified = self.1.notify.notified();
                if self.1.done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

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
    let started = chrono::Utc::now();
    let mut from = started - lookback;
    // Where the stream ended when the watcher started: reading the look-back up to there is
    // reading it to the present, without decoding the events that are not watched.
    let present = tokio::select! {
        _ = quiet.cancelled() => return,
        p = newest_offset(&broker) => p,
    };
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
                        n = stream.next_of(WATCHED) => Some(n),
                        _ = tokio::time::sleep(IDLE_IS_CAUGHT_UP) => None,
                    };
                    let Some(next) = next else {
                        requests.mark_caught_up();
                        continue;
                    };
                    let (offset, ev) = match next {
                        None => break,
                        // Any other event passes undecoded (most of the stream: steps, logs).
                        Some(Seen::Other(offset)) => (offset, None),
                        Some(Seen::Event(offset, ev)) => (offset, Some(ev)),
                    };
                    if present.is_some_and(|p| offset >= p) {
                        requests.mark_caught_up();
                    }
                    let Some(ev) = ev else { continue };
                    if ev.at >= started {
                        requests.mark_caught_up();
                    }
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
                // Without the stream there is nothing to wait for; do not hold the slots.
                requests.mark_caught_up();
            }
        }
        tokio::select! {
            _ = quiet.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The offset of the newest event stored now (RabbitMQ: the first of the newest chunk), or
/// `None` when the stream is empty or does not answer within [`NEWEST_WAIT`] (then the quiet
/// stream or an event's time tells when the present is reached).
async fn newest_offset(broker: &Broker) -> Option<u64> {
    let read = async {
        let mut last = broker.replay_events(StreamOffset::Last).await.ok()?;
        match last.next_of(WATCHED).await? {
            Seen::Event(offset, _) | Seen::Other(offset) => Some(offset),
        }
    };
    tokio::time::timeout(NEWEST_WAIT, read).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_broker::Topology;
    use aetherv_core::{Event, Platform};

    #[test]
    fn the_watched_types_are_the_requests_and_the_ends_of_jobs() {
        let by = Requester {
            platform: Platform::Console,
            user_id: "alice".into(),
        };
        let bodies = [
            EventBody::JobCancelRequested { by: by.clone() },
            EventBody::JobCancelled { by: Some(by) },
            EventBody::JobSucceeded {
                result: Default::default(),
            },
            EventBody::JobFailed {
                code: "x".into(),
                message: "x".into(),
                step: None,
            },
        ];
        for body in &bodies {
            assert!(WATCHED.contains(&body.type_name()), "{}", body.type_name());
        }
        assert_eq!(WATCHED.len(), bodies.len());
    }

    #[tokio::test]
    async fn a_stream_that_never_goes_quiet_is_still_caught_up_when_the_present_is_reached() {
        let broker = Broker::in_process(Topology::new("cancel-busy"));
        let quiet = CancellationToken::new();
        // Another job's log lines, every 50 ms: the stream is never quiet for 300 ms.
        let busy = {
            let (broker, quiet) = (broker.clone(), quiet.clone());
            tokio::spawn(async move {
                let job = JobId::new();
                for seq in 0.. {
                    let ev = Event::for_job(job, seq, EventBody::JobLog { lines: vec![] });
                    let _ = broker.publish_event(&ev).await;
                    tokio::select! {
                        () = quiet.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let requests = CancelRequests::default();
        let task = tokio::spawn(watch(
            broker.clone(),
            requests.clone(),
            DEFAULT_LOOKBACK,
            quiet.clone(),
        ));
        // Well before the slots' own limit (CATCH_UP_WAIT).
        requests.caught_up(Duration::from_secs(3)).await;
        assert!(
            requests.is_caught_up(),
            "an event from after the start marks the present"
        );
        quiet.cancel();
        task.await.expect("watcher stops");
        busy.await.expect("publisher stops");
    }

    #[tokio::test]
    async fn the_look_back_is_read_before_slots_start_and_ended_jobs_are_forgotten() {
        let broker = Broker::in_process(Topology::new("cancel-watch"));
        let (asked, ended) = (JobId::new(), JobId::new());
        let by = Requester {
            platform: Platform::Console,
            user_id: "alice".into(),
        };
        for (job, body) in [
            (asked, EventBody::JobCancelRequested { by: by.clone() }),
            (ended, EventBody::JobCancelRequested { by: by.clone() }),
            (
                ended,
                EventBody::JobCancelled {
                    by: Some(by.clone()),
                },
            ),
        ] {
            broker
                .publish_event(&Event::for_job(job, 0, body))
                .await
                .expect("publish");
        }
        let requests = CancelRequests::default();
        let quiet = CancellationToken::new();
        let task = tokio::spawn(watch(
            broker.clone(),
            requests.clone(),
            DEFAULT_LOOKBACK,
            quiet.clone(),
        ));
        requests.caught_up(Duration::from_secs(5)).await;
        assert_eq!(requests.requested(asked), Some(by));
        assert_eq!(requests.requested(ended), None);
        assert_eq!(requests.len(), 1);
        quiet.cancel();
        task.await.expect("watcher stops");
    }
}
