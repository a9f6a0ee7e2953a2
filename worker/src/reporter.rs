//! Publishing one job's events: per-job sequence numbers, and log lines batched into `job.log`
//! events (at most one batch per flush interval, or sooner when a batch is full).

use aetherv_broker::{Broker, PublishError};
use aetherv_core::{Event, EventBody, JobId, LogLine};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a log line waits before it is published.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Most lines in one `job.log` event.
pub const LOG_BATCH_MAX: usize = 200;

/// Shared buffer the agent's output callback writes into.
pub type LogBuffer = Arc<Mutex<Vec<LogLine>>>;

/// Emits a job's events in order.
pub struct JobReporter {
    broker: Broker,
    job_id: JobId,
    seq: u64,
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
            lines_total: 0,
        }
    }

    /// Publishes one event (confirmed).
    pub async fn emit(&mut self, body: EventBody) -> Result<(), PublishError> {
        let ev = Event::for_job(self.job_id, self.seq, body);
        self.seq += 1;
        self.broker.publish_event(&ev).await
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
