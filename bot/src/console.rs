//! The console adapter: the reference adapter and the test double.
//!
//! Input is one line per chat message. `alice> vm list` speaks as `alice` (and makes her the
//! current user); `/as bob` switches the current user; `/wait` pauses input until every job
//! thread has said everything; `/sleep MS` pauses input; `/quit` ends; `#` starts a comment.
//! Output: channel messages as they are, thread messages prefixed with `[<short id>]`, edits
//! marked `✎`, attachments written to a directory. It translates in and out, nothing more.

use crate::engine::Outgoing;
use crate::state::short_id;
use crate::thread::{MessageRef, ThreadOp};
use aetherv_core::rbac::Principal;
use aetherv_core::JobId;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// One console input line, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleLine {
    /// A chat message from a user.
    Chat(Principal, String),
    /// Wait until the engine is idle.
    Wait,
    /// Pause input.
    Sleep(Duration),
    /// End the session.
    Quit,
    /// A comment, an empty line or a user switch.
    Nothing,
}

/// The console's current user.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    user: String,
}

impl ConsoleSession {
    /// A session speaking as `user`.
    pub fn new(user: &str) -> Self {
        ConsoleSession {
            user: user.to_string(),
        }
    }

    /// The current user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Interprets one input line.
    pub fn parse(&mut self, raw: &str) -> ConsoleLine {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return ConsoleLine::Nothing;
        }
        if let Some(user) = line.strip_prefix("/as ") {
            let user = user.trim();
            if !user.is_empty() {
                self.user = user.to_string();
            }
            return ConsoleLine::Nothing;
        }
        match line {
            "/wait" => return ConsoleLine::Wait,
            "/quit" | "/exit" => return ConsoleLine::Quit,
            _ => {}
        }
        if let Some(ms) = line.strip_prefix("/sleep ") {
            return ms
                .trim()
                .parse()
                .map(|ms| ConsoleLine::Sleep(Duration::from_millis(ms)))
                .unwrap_or(ConsoleLine::Nothing);
        }
        let mut text = line;
        if let Some((user, rest)) = line.split_once("> ") {
            let user = user.trim();
            if !user.is_empty()
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                self.user = user.to_string();
                text = rest;
            }
        }
        ConsoleLine::Chat(Principal::console(&self.user), text.trim().to_string())
    }
}

/// The console text of one outgoing message (`None` for attachments, which are files).
pub fn format_outgoing(o: &Outgoing) -> Option<String> {
    let thread = |job, head: String, text: &str| {
        let mut s = format!("[{}{head}] ", short_id(job));
        s.push_str(&text.replace('\n', "\n    "));
        s
    };
    match o {
        Outgoing::Say { text } => Some(text.clone()),
        Outgoing::ThreadSay { job, text } => Some(thread(job, String::new(), text)),
        Outgoing::Thread { job, op } => {
            let (edit, msg, text) = match op {
                ThreadOp::Post { msg, text } => (false, msg, text),
                ThreadOp::Edit { msg, text } => (true, msg, text),
            };
            let name = match msg {
                MessageRef::Status => "status".to_string(),
                MessageRef::Log(n) => format!("log {}", n + 1),
            };
            let head = if edit {
                format!(" ✎ {name}")
            } else {
                String::new()
            };
            Some(thread(job, head, text))
        }
        Outgoing::Attach { .. } => None,
    }
}

/// Why a message could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// The platform asked to slow down (HTTP 429 with `Retry-After`).
    #[error("rate limited")]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// Writing failed.
    #[error("write failed")]
    Io(#[from] std::io::Error),
}

/// The longest `Retry-After` obeyed before giving up on a message.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Sends with `send`, sleeping for the platform's `Retry-After` on 429 and trying again (up to
/// five times). Other errors are returned at once.
pub async fn deliver_with_retry<F, Fut>(mut send: F) -> Result<(), DeliverError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), DeliverError>>,
{
    let mut tries = 0;
    loop {
        match send().await {
            Err(DeliverError::RateLimited { retry_after }) if tries < 5 => {
                tries += 1;
                tracing::warn!(?retry_after, "rate limited; waiting");
                tokio::time::sleep(retry_after.min(MAX_RETRY_AFTER)).await;
            }
            other => return other,
        }
    }
}

/// A console writing to a stream, attachments to a directory. A terminal cannot edit what it
/// printed, so an edit that only appends to a log message prints just the appended lines
/// (`[id ✎ log 1 …]`); other edits print the whole new text.
#[derive(Debug)]
pub struct Console<W> {
    out: W,
    attach_dir: Option<PathBuf>,
    shown: HashMap<(JobId, MessageRef), String>,
}

/// The console text of an edit, given what the message said before.
pub fn format_edit(job: &JobId, msg: MessageRef, before: Option<&str>, text: &str) -> String {
    let appended = before
        .and_then(|b| text.strip_prefix(b))
        .and_then(|rest| rest.strip_prefix('\n'));
    match (appended, msg) {
        (Some(rest), MessageRef::Log(n)) => {
            format!(
                "[{} ✎ log {} …] {}",
                short_id(job),
                n + 1,
                rest.replace('\n', "\n    ")
            )
        }
        _ => format_outgoing(&Outgoing::Thread {
            job: *job,
            op: ThreadOp::Edit {
                msg,
                text: text.to_string(),
            },
        })
        .unwrap_or_default(),
    }
}

impl<W: AsyncWrite + Unpin> Console<W> {
    /// A console over `out`; attachments go to `attach_dir` (or are only announced).
    pub fn new(out: W, attach_dir: Option<PathBuf>) -> Self {
        Console {
            out,
            attach_dir,
            shown: HashMap::new(),
        }
    }

    /// Delivers one message.
    pub async fn deliver(&mut self, o: &Outgoing) -> Result<(), DeliverError> {
        if let Outgoing::Attach { name, content, job } = o {
            let Some(dir) = &self.attach_dir else {
                return Ok(());
            };
            let path = dir.join(name);
            tokio::fs::write(&path, content).await?;
            let line = format!("[{}] attached {}\n", short_id(job), path.display());
            self.out.write_all(line.as_bytes()).await?;
        } else if let Outgoing::Thread {
            job,
            op: ThreadOp::Edit { msg, text },
        } = o
        {
            let before = self.shown.get(&(*job, *msg)).map(String::as_str);
            let line = format_edit(job, *msg, before, text);
            self.shown.insert((*job, *msg), text.clone());
            self.out.write_all(line.as_bytes()).await?;
            self.out.write_all(b"\n").await?;
        } else if let Some(text) = format_outgoing(o) {
            if let Outgoing::Thread {
                job,
                op: ThreadOp::Post { msg, text: t },
            } = o
            {
                self.shown.insert((*job, *msg), t.clone());
            }
            self.out.write_all(text.as_bytes()).await?;
            self.out.write_all(b"\n").await?;
        }
        self.out.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_switch_by_prefix_and_command() {
        let mut s = ConsoleSession::new("alice");
        assert_eq!(
            s.parse("vm list"),
            ConsoleLine::Chat(Principal::console("alice"), "vm list".into())
        );
        assert_eq!(
            s.parse("bob> approve"),
            ConsoleLine::Chat(Principal::console("bob"), "approve".into())
        );
        assert_eq!(s.user(), "bob");
        assert_eq!(s.parse("/as carol"), ConsoleLine::Nothing);
        assert_eq!(
            s.parse("hosts"),
            ConsoleLine::Chat(Principal::console("carol"), "hosts".into())
        );
        assert_eq!(s.parse("# note"), ConsoleLine::Nothing);
        assert_eq!(s.parse("/wait"), ConsoleLine::Wait);
        assert_eq!(
            s.parse("/sleep 20"),
            ConsoleLine::Sleep(Duration::from_millis(20))
        );
        // `>` inside a command is not a prompt.
        assert_eq!(
            s.parse("deploy notes=\"a > b\""),
            ConsoleLine::Chat(Principal::console("carol"), "deploy notes=\"a > b\"".into())
        );
    }

    #[test]
    fn thread_messages_are_prefixed() {
        let job: JobId = "1a2b3c4d-0000-4000-8000-000000000000"
            .parse()
            .expect("uuid");
        let o = Outgoing::Thread {
            job,
            op: ThreadOp::Edit {
                msg: MessageRef::Log(1),
                text: "log 2:\nx".into(),
            },
        };
        insta::assert_snapshot!("console_edit", format_outgoing(&o).unwrap_or_default());
        let o = Outgoing::ThreadSay {
            job,
            text: "done".into(),
        };
        insta::assert_snapshot!(
            "console_thread_say",
            format_outgoing(&o).unwrap_or_default()
        );
        insta::assert_snapshot!(
            "console_log_append",
            format_edit(
                &job,
                MessageRef::Log(0),
                Some("log 1:\na"),
                "log 1:\na\nb\nc"
            )
        );
        insta::assert_snapshot!(
            "console_status_edit",
            format_edit(&job, MessageRef::Status, Some("queued"), "running")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_obeyed() {
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        let r = deliver_with_retry(|| {
            calls += 1;
            let n = calls;
            async move {
                if n == 1 {
                    Err(DeliverError::RateLimited {
                        retry_after: Duration::from_secs(3),
                    })
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(calls, 2);
        assert!(tokio::time::Instant::now() - start >= Duration::from_secs(3));
    }
}
