//! The messages of one job thread: a status message and live log messages, edited at most once
//! per interval per message and continued in a new message before the platform's size limit.
//!
//! Pure bookkeeping in terms of view models, not text: callers pass the time in and render
//! the returned [`ThreadMessage`]s with their platform's templates. It keeps the whole log for the
//! attachment at the end. It must not know about jobs or events.

use crate::reply::StatusView;
use aetherv_core::JobId;
use std::time::Duration;
use tokio::time::Instant;

/// Per-platform message limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest message the platform accepts, in characters.
    pub max_message_chars: usize,
    /// The shortest time between two edits of one message.
    pub min_edit_interval: Duration,
}

/// Discord's 2,000-character limit (the smallest of the platforms), one edit per second.
pub const DEFAULT_LIMITS: Limits = Limits {
    max_message_chars: 2000,
    min_edit_interval: Duration::from_secs(1),
};

pub use crate::reply::{MessageRef, ThreadContent, ThreadMessage};

/// Characters set aside in each live log message for the platform's framing of it (a
/// `log N:` header, a code fence): the lines themselves get the rest.
pub const LOG_FRAME_CHARS: usize = 16;

/// When one message was sent and whether it changed since.
#[derive(Debug, Default)]
struct Msg {
    version: u64,
    sent: Option<u64>,
    last_sent: Option<Instant>,
}

impl Msg {
    fn changed(&mut self) {
        self.version += 1;
    }

    /// `Some(edit)` when the message may be sent now (`last_call`: the job has ended, so a
    /// change is sent without waiting for the edit interval).
    fn flush(&mut self, now: Instant, interval: Duration, last_call: bool) -> Option<bool> {
        match (self.sent, self.last_sent) {
            (None, _) | (_, None) => {
                self.sent = Some(self.version);
                self.last_sent = Some(now);
                Some(false)
            }
            (Some(sent), Some(last))
                if sent != self.version && (last_call || now >= last + interval) =>
            {
                self.sent = Some(self.version);
                self.last_sent = Some(now);
                Some(true)
            }
            _ => None,
        }
    }

    fn due(&self, interval: Duration) -> Option<Instant> {
        match (self.sent, self.last_sent) {
            (Some(sent), Some(last)) if sent != self.version => Some(last + interval),
            (Some(_), Some(_)) => None,
            _ => Some(Instant::now()),
        }
    }
}

#[derive(Debug, Default)]
struct LogMsg {
    lines: Vec<String>,
    chars: usize,
    msg: Msg,
}

/// The messages of one thread.
#[derive(Debug)]
pub struct ThreadMessages {
    limits: Limits,
    status: Option<StatusView>,
    status_msg: Msg,
    logs: Vec<LogMsg>,
    full_log: Vec<String>,
    released: usize,
}

impl ThreadMessages {
    /// An empty thread.
    pub fn new(limits: Limits) -> Self {
        ThreadMessages {
            limits,
            status: None,
            status_msg: Msg::default(),
            logs: Vec::new(),
            full_log: Vec::new(),
            released: 0,
        }
    }

    /// Sets the status (sent on the next allowed flush when it changed).
    pub fn set_status(&mut self, view: StatusView) {
        if self.status.as_ref() != Some(&view) {
            self.status = Some(view);
            self.status_msg.changed();
        }
    }

    /// Appends one log line to the live log, starting a new log message when the current one
    /// would exceed the limit (its lines, one per line, plus [`LOG_FRAME_CHARS`]).
    pub fn push_line(&mut self, line: &str) {
        self.full_log.push(line.to_string());
        let max = self.limits.max_message_chars;
        let room = max.saturating_sub(LOG_FRAME_CHARS + 1).max(1);
        let line = truncate(line, room);
        let len = line.chars().count() + 1;
        match self.logs.last_mut() {
            Some(last) if LOG_FRAME_CHARS + last.chars + len <= max => {
                last.lines.push(line);
                last.chars += len;
                last.msg.changed();
            }
            _ => self.logs.push(LogMsg {
                lines: vec![line],
                chars: len,
                msg: Msg::default(),
            }),
        }
    }

    /// What may be sent now, as messages of job `job`'s thread.
    pub fn flush(&mut self, job: JobId, now: Instant) -> Vec<ThreadMessage> {
        self.flush_with(job, now, false)
    }

    /// Everything not sent yet, at once: the job has ended, so its live messages get their
    /// last lines before its final message.
    pub fn flush_final(&mut self, job: JobId, now: Instant) -> Vec<ThreadMessage> {
        self.flush_with(job, now, true)
    }

    fn flush_with(&mut self, job: JobId, now: Instant, last_call: bool) -> Vec<ThreadMessage> {
        let op = |msg, edit, content| ThreadMessage {
            job,
            msg,
            edit,
            content,
        };
        let interval = self.limits.min_edit_interval;
        let mut ops = Vec::new();
        if let Some(status) = &self.status {
            if let Some(edit) = self.status_msg.flush(now, interval, last_call) {
                ops.push(op(
                    MessageRef::Status,
                    edit,
                    ThreadContent::Status(status.clone()),
                ));
            }
        }
        for (i, l) in self.logs.iter_mut().enumerate() {
            if let Some(edit) = l.msg.flush(now, interval, last_call) {
                let content = ThreadContent::Log {
                    part: i + 1,
                    lines: l.lines.clone(),
                };
                ops.push(op(MessageRef::Log(i), edit, content));
            }
        }
        ops
    }

    /// When the next flush has something to send; `None` when everything is sent.
    pub fn next_due(&self) -> Option<Instant> {
        let interval = self.limits.min_edit_interval;
        self.status
            .as_ref()
            .map(|_| &self.status_msg)
            .into_iter()
            .chain(self.logs.iter().map(|l| &l.msg))
            .filter_map(|m| m.due(interval))
            .min()
    }

    /// The whole log, for the attachment.
    pub fn full_log(&self) -> String {
        let mut s = self.full_log.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }

    /// How many log lines were pushed.
    pub fn line_count(&self) -> usize {
        self.released + self.full_log.len()
    }

    /// Frees the kept log once it was attached (the live messages stay).
    pub fn release_full_log(&mut self) {
        self.released += self.full_log.len();
        self.full_log = Vec::new();
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Renderer;
    use std::collections::HashMap;

    fn status(state: &str) -> StatusView {
        StatusView {
            short: "1a2b3c4d".into(),
            kind: "noop".into(),
            target: "hv01".into(),
            state: state.into(),
            step: None,
            queue_position: None,
            percent: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_flush_sends_what_the_interval_held_back() {
        let limits = Limits {
            max_message_chars: 500,
            min_edit_interval: Duration::from_secs(1),
        };
        let mut t = ThreadMessages::new(limits);
        t.push_line("first");
        assert_eq!(t.flush(JobId::default(), Instant::now()).len(), 1);
        t.push_line("second");
        // Within the interval: held back, unless the job has ended.
        assert!(t.flush(JobId::default(), Instant::now()).is_empty());
        let last = t.flush_final(JobId::default(), Instant::now());
        assert_eq!(last.len(), 1);
        assert!(last[0].edit);
        assert!(matches!(&last[0].content, ThreadContent::Log { lines, .. } if lines.len() == 2));
        assert_eq!(t.next_due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn ten_thousand_lines_are_throttled_split_and_kept() {
        let r = Renderer::console().expect("templates");
        let limits = Limits {
            max_message_chars: 500,
            min_edit_interval: Duration::from_secs(1),
        };
        let mut t = ThreadMessages::new(limits);
        t.set_status(status("running"));
        let start = Instant::now();
        let mut sends: HashMap<MessageRef, Vec<Instant>> = HashMap::new();
        let mut texts: HashMap<MessageRef, String> = HashMap::new();
        let mut last_status = None;
        let mut record = |ops: Vec<ThreadMessage>, now: Instant| {
            for ThreadMessage { msg, content, .. } in ops {
                let (name, data) = content.text_view();
                let text = r.render(name, &data);
                if let ThreadContent::Status(v) = content {
                    last_status = Some(v);
                }
                assert!(text.chars().count() <= 500, "message over the limit");
                sends.entry(msg).or_default().push(now);
                texts.insert(msg, text);
            }
        };
        // 10,000 lines, 20 every 10 ms (a 5 s job), flushed every 50 ms.
        for i in 0..10_000 {
            if i == 5000 {
                t.push_line(&"x".repeat(2000));
            }
            t.push_line(&format!("line {i:05} of the job"));
            if i % 20 == 19 {
                tokio::time::advance(Duration::from_millis(10)).await;
                if i % 100 == 99 {
                    record(t.flush(JobId::default(), Instant::now()), Instant::now());
                }
            }
        }
        t.set_status(status("succeeded"));
        while let Some(due) = t.next_due() {
            tokio::time::sleep_until(due).await;
            record(t.flush(JobId::default(), Instant::now()), Instant::now());
        }
        assert!(Instant::now() - start < Duration::from_secs(10));
        for (msg, times) in &sends {
            for w in times.windows(2) {
                assert!(
                    w[1] - w[0] >= Duration::from_secs(1),
                    "{msg:?} edited twice within a second"
                );
            }
        }
        let log_msgs = sends
            .keys()
            .filter(|m| matches!(m, MessageRef::Log(_)))
            .count();
        assert!(log_msgs > 10, "the log continued in new messages");
        assert_eq!(last_status, Some(status("succeeded")));
        // Every line reached the chat (the oversized one truncated), in order.
        let mut shown = Vec::new();
        for i in 0..log_msgs {
            shown.extend(
                texts[&MessageRef::Log(i)]
                    .lines()
                    .skip(1)
                    .map(str::to_string),
            );
        }
        assert_eq!(shown.len(), 10_001);
        assert_eq!(shown[10_000], "line 09999 of the job");
        assert!(shown[5000].ends_with('…'));
        // The attachment has everything, untruncated.
        assert_eq!(t.line_count(), 10_001);
        let full = t.full_log();
        assert_eq!(full.lines().count(), 10_001);
        assert!(full.contains(&"x".repeat(2000)));
    }

    #[tokio::test(start_paused = true)]
    async fn first_post_is_immediate_then_edits_wait() {
        let mut t = ThreadMessages::new(DEFAULT_LIMITS);
        t.set_status(status("queued"));
        let now = Instant::now();
        let job = JobId::default();
        assert!(matches!(
            t.flush(job, now)[..],
            [ThreadMessage { edit: false, .. }]
        ));
        t.set_status(status("running"));
        assert!(t.flush(job, now + Duration::from_millis(999)).is_empty());
        assert_eq!(t.next_due(), Some(now + Duration::from_secs(1)));
        assert!(matches!(
            t.flush(job, now + Duration::from_secs(1))[..],
            [ThreadMessage { edit: true, .. }]
        ));
        assert_eq!(t.next_due(), None);
    }
}
