//! The console adapter: the reference adapter and the test double.
//!
//! Input is one line per chat message. `alice> vm list` speaks as `alice` (and makes her the
//! current user); `/as bob` switches the current user; `/wait` pauses input until every job
//! thread has said everything; `/sleep MS` pauses input; `/quit` ends; `#` starts a comment.
//! Output: channel messages as they are, thread messages prefixed with `[<short id>]`, edits
//! marked `✎`, attachments written to a directory. It translates in and out, nothing more:
//! [`ConsoleAdapter`] runs it on the serve loop.

use crate::engine::Engine;
use crate::render::Renderer;
#[cfg(test)]
use crate::reply::ThreadMessage;
use crate::reply::{MessageRef, Reply, ThreadContent};
use crate::serve::{Adapter, Flow};
use crate::state::short_id;
use aetherv_core::rbac::Principal;
use aetherv_core::JobId;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

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

/// A thread line: `[<short id><head>] text`, continuation lines indented.
pub fn thread_line(job: &JobId, head: &str, text: &str) -> String {
    let mut s = format!("[{}{head}] ", short_id(job));
    s.push_str(&text.replace('\n', "\n    "));
    s
}

fn message_name(msg: MessageRef) -> String {
    match msg {
        MessageRef::Status => "status".to_string(),
        MessageRef::Log(n) => format!("log {}", n + 1),
    }
}

/// The text of a thread message.
pub fn thread_text(r: &Renderer, content: &ThreadContent) -> String {
    let (name, data) = content.text_view();
    r.render(name, &data)
}

/// The console lines of one reply: its text, a thread message prefixed with `[<short id>]`
/// (`✎` and the message's name for an edit), a finished job's final message and log note.
/// Attachments are files and give no line here.
pub fn format_reply(r: &Renderer, reply: &Reply) -> Vec<String> {
    match reply {
        Reply::ThreadUpdate(t) => {
            let head = if t.edit {
                format!(" ✎ {}", message_name(t.msg))
            } else {
                String::new()
            };
            vec![thread_line(&t.job, &head, &thread_text(r, &t.content))]
        }
        Reply::JobFinished { job, .. } => r
            .text(reply)
            .into_iter()
            .chain(
                reply
                    .attachment_view()
                    .map(|(name, data)| r.render(name, &data)),
            )
            .map(|t| thread_line(job, "", &t))
            .collect(),
        _ => r.text(reply).into_iter().collect(),
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
    render: Renderer,
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
        _ => thread_line(job, &format!(" ✎ {}", message_name(msg)), text),
    }
}

impl<W: AsyncWrite + Unpin> Console<W> {
    /// A console over `out` rendering with `render`; attachments go to `attach_dir` (or are
    /// only announced).
    pub fn new(out: W, render: Renderer, attach_dir: Option<PathBuf>) -> Self {
        Console {
            out,
            render,
            attach_dir,
            shown: HashMap::new(),
        }
    }

    async fn line(&mut self, text: &str) -> Result<(), DeliverError> {
        self.out.write_all(text.as_bytes()).await?;
        self.out.write_all(b"\n").await?;
        Ok(())
    }

    /// Delivers one reply.
    pub async fn deliver(&mut self, reply: &Reply) -> Result<(), DeliverError> {
        match reply {
            Reply::ThreadUpdate(t) => {
                let text = thread_text(&self.render, &t.content);
                let line = if t.edit {
                    let before = self.shown.get(&(t.job, t.msg)).map(String::as_str);
                    format_edit(&t.job, t.msg, before, &text)
                } else {
                    thread_line(&t.job, "", &text)
                };
                self.shown.insert((t.job, t.msg), text);
                self.line(&line).await?;
            }
            _ => {
                for line in format_reply(&self.render, reply) {
                    self.line(&line).await?;
                }
                if let Reply::JobFinished {
                    job,
                    log: Some(log),
                    ..
                } = reply
                {
                    if let Some(dir) = &self.attach_dir {
                        let path = dir.join(&log.name);
                        // A failed write is said in the job's thread; the bot keeps serving.
                        let line = match tokio::fs::write(&path, &log.content).await {
                            Ok(()) => format!("[{}] attached {}", short_id(job), path.display()),
                            Err(e) => format!(
                                "[{}] the log could not be written to {}: {e}",
                                short_id(job),
                                path.display()
                            ),
                        };
                        self.line(&line).await?;
                    }
                }
            }
        }
        self.out.flush().await?;
        Ok(())
    }
}

/// The console on the serve loop: lines in, rendered replies out. `/wait` (and the end of
/// input) pauses reading until every job thread has said everything, `/sleep MS` pauses it.
pub struct ConsoleAdapter<R, W> {
    lines: tokio::io::Lines<R>,
    console: Console<W>,
    session: ConsoleSession,
    wait_until_idle: Option<Instant>,
    sleep_until: Option<Instant>,
    input_done: bool,
}

impl<R, W> std::fmt::Debug for ConsoleAdapter<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleAdapter")
            .field("user", &self.session.user())
            .finish_non_exhaustive()
    }
}

impl<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin> ConsoleAdapter<R, W> {
    /// A console reading `input`, speaking as `first_user` until a `/as`.
    pub fn new(input: R, console: Console<W>, first_user: &str) -> Self {
        ConsoleAdapter {
            lines: input.lines(),
            console,
            session: ConsoleSession::new(first_user),
            wait_until_idle: None,
            sleep_until: None,
            input_done: false,
        }
    }

    async fn send(&mut self, replies: Vec<Reply>) -> anyhow::Result<()> {
        for r in &replies {
            self.console.deliver(r).await?;
        }
        Ok(())
    }
}

impl<R, W> Adapter for ConsoleAdapter<R, W>
where
    R: AsyncBufRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    type Input = std::io::Result<String>;

    fn reading(&self) -> bool {
        !self.input_done
            && self.wait_until_idle.is_none()
            && self.sleep_until.is_none_or(|t| Instant::now() >= t)
    }

    fn answers_while_catching_up(&self) -> bool {
        false
    }

    async fn recv(&mut self) -> Option<Self::Input> {
        self.lines.next_line().await.transpose()
    }

    async fn handle(&mut self, engine: &mut Engine, input: Self::Input) -> anyhow::Result<Flow> {
        self.sleep_until = None;
        let now = Instant::now();
        match self.session.parse(&input?) {
            ConsoleLine::Chat(who, text) => {
                let replies = engine.handle_line(&who, &text).await?;
                self.send(replies).await?;
            }
            ConsoleLine::Wait => self.wait_until_idle = Some(now + crate::MAX_WAIT),
            ConsoleLine::Sleep(d) => self.sleep_until = Some(now + d),
            ConsoleLine::Quit => return Ok(Flow::Stop),
            ConsoleLine::Nothing => {}
        }
        Ok(Flow::Continue)
    }

    async fn deliver(&mut self, _engine: &Engine, replies: Vec<Reply>) -> anyhow::Result<()> {
        self.send(replies).await
    }

    fn ticked(&mut self, engine: &Engine) -> Flow {
        if let Some(deadline) = self.wait_until_idle {
            if engine.is_idle() || Instant::now() >= deadline {
                self.wait_until_idle = None;
                if self.input_done {
                    return Flow::Stop;
                }
            }
        }
        Flow::Continue
    }

    fn ended(&mut self) -> Flow {
        self.input_done = true;
        self.wait_until_idle = Some(Instant::now() + crate::MAX_WAIT);
        Flow::Continue
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

    #[tokio::test]
    async fn a_log_that_cannot_be_written_is_said_and_the_console_goes_on() {
        let gone = std::env::temp_dir().join(format!("aetherv-gone-{}", uuid::Uuid::new_v4()));
        let finished = Reply::samples()
            .into_iter()
            .find(|r| matches!(r, Reply::JobFinished { log: Some(_), .. }))
            .expect("a finished job with its log");
        let mut out = Vec::new();
        let mut c = Console::new(
            &mut out,
            Renderer::console().expect("templates"),
            Some(gone),
        );
        c.deliver(&finished).await.expect("delivered");
        c.deliver(&finished).await.expect("still serving");
        drop(c);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(
            text.matches("the log could not be written").count(),
            2,
            "{text}"
        );
    }

    #[test]
    fn thread_messages_are_prefixed() {
        let job: JobId = "1a2b3c4d-0000-4000-8000-000000000000"
            .parse()
            .expect("uuid");
        let r = Renderer::console().expect("templates");
        let o = Reply::ThreadUpdate(ThreadMessage {
            job,
            msg: MessageRef::Log(1),
            edit: true,
            content: ThreadContent::Log {
                part: 2,
                lines: vec!["x".into()],
            },
        });
        insta::assert_snapshot!("console_edit", format_reply(&r, &o).join("\n"));
        insta::assert_snapshot!("console_thread_say", thread_line(&job, "", "done"));
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
