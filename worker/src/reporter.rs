//! Publishing one job's events: per-job sequence numbers, and log lines batched into `job.log`
//! events (at most one batch per flush interval, or sooner when a batch is full).
//!
//! Events are sent at once and in order, and their confirms are awaited later: all of them
//! before the job is acked ([`JobReporter::settle`]), and the oldest whenever more than
//! [`MAX_UNCONFIRMED`] are outstanding. So a job pays one confirm round trip, not one per
//! event, and still is acked only once every event it published is stored. An event whose
//! confirm was lost with its connection is sent again, with every later one, in order
//! (consumers already see an event twice when a publish is retried across a reconnect).

use aetherv_broker::{Broker, PendingEvent, PublishError};
use aetherv_core::{Event, EventBody, JobId, LogLine};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a log line waits before it is published.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Most lines in one `job.log` event.
pub const LOG_BATCH_MAX: usize = 200;

/// Most events of one job sent and not yet confirmed.
pub const MAX_UNCONFIRMED: usize = 64;

/// Shared buffer the agent's output callback writes into.
pub type LogBuffer = Arc<Mutex<Vec<LogLine>>>;

/// Emits a job's events in order.
pub struct JobReporter {
    broker: Broker,
    job_id: JobId,
    seq: u64,
    /// Events sent whose confirms are still to be awaited, oldest first.
    unconfirmed: VecDeque<(Event, PendingEvent)>,
    /// Every log line of the job, kept for the final log file.
    pub lines_total: u64,
}

impl JobReporter {
    /// A reporter for one job.
    pub fn new(broker: Broker, job_id: JobId) -> Self {
        JobReporter {
            broker,
            job_id,
            seq: 0,
            unconfirmed: VecDeque::new(),
            lines_total: 0,
        }
    }

    /// Sends one event now; its confirm is awaited by a later [`JobReporter::settle`] (or
    /// here, when [`MAX_UNCONFIRMED`] are outstanding).
    pub async fn emit(&mut self, body: EventBody) -> Result<(), PublishError> {
        let ev = Event::for_job(self.job_id, self.seq, body);
        self.seq += 1;
        let pending = self.broker.send_event(&ev).await?;
        self.unconfirmed.push_back((ev, pending));
        while self.unconfirmed.len() > MAX_UNCONFIRMED {
            self.confirm_oldest().await?;
        }
        Ok(())
    }

    /// Waits until every event sent so far is stored by the broker. Call it before acking
    /// the job: an error means some event may be lost, so the job must go back to its queue.
    pub async fn settle(&mut self) -> Result<(), PublishError> {
        while !self.unconfirmed.is_empty() {
            self.confirm_oldest().await?;
        }
        Ok(())
    }

    async fn confirm_oldest(&mut self) -> Result<(), PublishError> {
        let Some((ev, pending)) = self.unconfirmed.pop_front() else {
            return Ok(());
        };
        match pending.confirmed().await {
            Ok(()) => Ok(()),
            Err(PublishError::Broker(e)) => {
                // The connection went before the confirm: send this one and every later one
                // again, each confirmed, on whatever connection the broker has now.
                tracing::debug!(job_id = %self.job_id, error = %e, "event confirm lost; sending again");
                let later: Vec<Event> = self.unconfirmed.drain(..).map(|(ev, _)| ev).collect();
                self.broker.publish_event(&ev).await?;
                for ev in &later {
                    self.broker.publish_event(ev).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes one line of the worker's own narration now, as a `job.log` event.
    pub async fn log(&mut self, text: impl Into<String>) -> Result<(), PublishError> {
        self.emit(EventBody::JobLog {
            lines: vec![LogLine {
                stream: aetherv_core::LogStream::Worker,
                text: text.into(),
            }],
        })
        .await
    }

    /// Publishes whatever is in `buf` as `job.log` events of at most [`LOG_BATCH_MAX`] lines.
    pub async fn flush(&mut self, buf: &LogBuffer) -> Result<(), PublishError> {
        let lines: Vec<LogLine> = match buf.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for batch in lines.chunks(LOG_BATCH_MAX) {
            self.lines_total += batch.len() as u64;
            self.emit(EventBody::JobLog {
                lines: batch.to_vec(),
            })
            .await?;
        }
        Ok(())
    }

    /// Logs one line of the worker's own narration.
    pub fn narrate(buf: &LogBuffer, text: impl Into<String>) {
        let line = LogLine {
            stream: aetherv_core::LogStream::Worker,
            text: text.into(),
        };
        match buf.lock() {
            Ok(mut g) => g.push(line),
            Err(poisoned) => poisoned.into_inner().push(line),
        }
    }
}
