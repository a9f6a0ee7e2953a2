//! The messages of one job thread: a status message and live log messages, edited at most once
//! per interval per message and continued in a new message before the platform's size limit.
//!
//! Pure bookkeeping: callers pass the time in and send the returned [`ThreadOp`]s. It keeps
//! the whole log for the attachment at the end. It must not know about jobs or events.

use crate::render::Renderer;
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

/// Which message of the thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageRef {
    /// The status message (state, step n of m, progress bar).
    Status,
    /// The n-th live log message (0-based).
    Log(usize),
}

/// Something to send to the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadOp {
    /// Post a new message.
    Post {
        /// Which one.
        msg: MessageRef,
        /// Its text.
        text: String,
    },
    /// Replace the text of a posted message.
    Edit {
        /// Which one.
        msg: MessageRef,
        /// The new text.
        text: String,
    },
}

#[derive(Debug, Default)]
struct Msg {
    text: String,
    sent: Option<String>,
    last_sent: Option<Instant>,
}

impl Msg {
    fn flush(&mut self, msg: MessageRef, now: Instant, interval: Duration) -> Option<ThreadOp> {
        match (&self.sent, self.last_sent) {
            (None, _) | (_, None) => {
                self.sent = Some(self.text.clone());
                self.last_sent = Some(now);
                Some(ThreadOp::Post {
                    msg,
                    text: self.text.clone(),
                })
            }
            (Some(sent), Some(last)) if *sent != self.text && now >= last + interval => {
                self.sent = Some(self.text.clone());
                self.last_sent = Some(now);
                Some(ThreadOp::Edit {
                    msg,
                    text: self.text.clone(),
                })
            }
            _ => None,
        }
    }

    fn due(&self, interval: Duration) -> Option<Instant> {
        match (&self.sent, self.last_sent) {
            (Some(sent), Some(last)) if *sent != self.text => Some(last + interval),
            (Some(_), Some(_)) => None,
            _ => Some(Instant::now()),
        }
    }
}

#[derive(Debug, Default)]
struct LogMsg {
    lines: Vec<String>,
    msg: Msg,
}

/// The messages of one thread.
#[derive(Debug)]
pub struct ThreadMessages {
    limits: Limits,
    status: Msg,
    logs: Vec<LogMsg>,
    full_log: Vec<String>,
    released: usize,
}

impl ThreadMessages {
    /// An empty thread.
    pub fn new(limits: Limits) -> Self {
        ThreadMessages {
            limits,
            status: Msg::default(),
            logs: Vec::new(),
            full_log: Vec::new(),
            released: 0,
        }
    }

    /// Sets the status text (sent on the next allowed flush).
    pub fn set_status(&mut self, text: &str) {
        self.status.text = truncate(text, self.limits.max_message_chars);
    }

    /// Appends one log line to the live log, starting a new log message when the current one
    /// would exceed the limit.
    pub fn push_line(&mut self, line: &str, r: &Renderer) {
        self.full_log.push(line.to_string());
        let max = self.limits.max_message_chars;
        let part = self.logs.len();
        if let Some(last) = self.logs.last_mut() {
            last.lines.push(line.to_string());
            let text = r.job_log(part, &last.lines);
            if text.chars().count() <= max {
                last.msg.text = text;
                return;
            }
            last.lines.pop();
        }
        let part = self.logs.len() + 1;
        let header = r.job_log(part, &[]).chars().count();
        let room = max.saturating_sub(header + 2).max(1);
        let mut log = LogMsg {
            lines: vec![truncate(line, room)],
            msg: Msg::default(),
        };
        log.msg.text = truncate(&r.job_log(part, &log.lines), max);
        self.logs.push(log);
    }

    /// What may be sent now.
    pub fn flush(&mut self, now: Instant) -> Vec<ThreadOp> {
        let interval = self.limits.min_edit_interval;
        let mut ops = Vec::new();
        if !self.status.text.is_empty() {
            ops.extend(self.status.flush(MessageRef::Status, now, interval));
        }
        for (i, l) in self.logs.iter_mut().enumerate() {
            ops.extend(l.msg.flush(MessageRef::Log(i), now, interval));
        }
        ops
    }

    /// When the next flush has something to send; `None` when everything is sent.
    pub fn next_due(&self) -> Option<Instant> {
        let interval = self.limits.min_edit_interval;
        std::iter::once(&self.status)
            .filter(|m| !m.text.is_empty())
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
    use std::collections::HashMap;

    #[tokio::test(start_paused = true)]
    async fn ten_thousand_lines_are_throttled_split_and_kept() {
        let r = Renderer::console().expect("templates");
        let limits = Limits {
            max_message_chars: 500,
            min_edit_interval: Duration::from_secs(1),
        };
        let mut t = ThreadMessages::new(limits);
        t.set_status("running");
        let start = Instant::now();
        let mut sends: HashMap<MessageRef, Vec<Instant>> = HashMap::new();
        let mut texts: HashMap<MessageRef, String> = HashMap::new();
        let mut record = |ops: Vec<ThreadOp>, now: Instant| {
            for op in ops {
                let (ThreadOp::Post { msg, text } | ThreadOp::Edit { msg, text }) = op;
                assert!(text.chars().count() <= 500, "message over the limit");
                sends.entry(msg).or_default().push(now);
                texts.insert(msg, text);
            }
        };
        // 10,000 lines, 20 every 10 ms (a 5 s job), flushed every 50 ms.
        for i in 0..10_000 {
            if i == 5000 {
                t.push_line(&"x".repeat(2000), &r);
            }
            t.push_line(&format!("line {i:05} of the job"), &r);
            if i % 20 == 19 {
                tokio::time::advance(Duration::from_millis(10)).await;
                if i % 100 == 99 {
                    record(t.flush(Instant::now()), Instant::now());
                }
            }
        }
        t.set_status("succeeded");
        while let Some(due) = t.next_due() {
            tokio::time::sleep_until(due).await;
            record(t.flush(Instant::now()), Instant::now());
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
        assert_eq!(texts[&MessageRef::Status], "succeeded");
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
        t.set_status("queued");
        let now = Instant::now();
        assert!(matches!(t.flush(now)[..], [ThreadOp::Post { .. }]));
        t.set_status("running");
        assert!(t.flush(now + Duration::from_millis(999)).is_empty());
        assert_eq!(t.next_due(), Some(now + Duration::from_secs(1)));
        assert!(matches!(
            t.flush(now + Duration::from_secs(1))[..],
            [ThreadOp::Edit { .. }]
        ));
        assert_eq!(t.next_due(), None);
    }
}
