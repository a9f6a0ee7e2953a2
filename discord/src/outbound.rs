//! The outbound queue: every Discord write goes through one ordered task, so a message is
//! posted before it is edited, and the serve loop never waits on Discord. Messages the bot may
//! edit later are named by [`MsgKey`]; the task remembers the channel and message id Discord
//! gave each and resolves later edits with them. Retries and rate limits are the
//! [`Rest`](crate::rest::Rest) client's.
//!
//! **Edits coalesce.** An edit carries the whole message, so when several edits of one message
//! wait in the queue only the newest is sent, and a post still waiting is sent with the content
//! of the newest edit of it. Edits are not paced here: a call waits for its rate-limit bucket
//! (`X-RateLimit-*`), and what the engine produces meanwhile piles up and collapses.
//!
//! **Threads are kept from archiving while their job runs.** A job's thread is started with
//! the longest `auto_archive_duration` (a week, [`AUTO_ARCHIVE_MINUTES`](crate::messages::AUTO_ARCHIVE_MINUTES)); every
//! [`ThreadKeeping::every`] a running job's thread that had no new message in that time gets
//! `PATCH /channels/{thread}` `{"archived": false}` (reopening it if it archived anyway); and
//! an edit refused because its thread is archived (Discord's code 50083) reopens the thread
//! and is sent again. A message posted in a thread unarchives it by itself.

use crate::messages;
use crate::rest::{Body, Rest, RestError, THREAD_ARCHIVED};
use aetherv_bot::reply::MessageRef;
use aetherv_core::JobId;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// How running jobs' threads are kept open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadKeeping {
    /// A running job's thread without a new message for this long gets a keep-alive.
    pub every: Duration,
}

impl Default for ThreadKeeping {
    fn default() -> Self {
        ThreadKeeping {
            every: Duration::from_secs(3600),
        }
    }
}

/// A message the bot posted and may edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgKey {
    /// The approval request of a job: 0 in the approvals channel, 1 in the job's thread.
    Approval(JobId, u8),
    /// A status or log message of a job.
    Thread(JobId, MessageRef),
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Edit the deferred answer of an interaction (`PATCH …/messages/@original`).
    EditOriginal {
        /// The interaction token.
        token: String,
        /// The message JSON.
        body: Value,
    },
    /// A follow-up message to an interaction (`POST /webhooks/{app}/{token}`).
    Followup {
        /// The interaction token.
        token: String,
        /// The message JSON (flags 64 for the clicker alone).
        body: Value,
    },
    /// A job's root message in `channel` and a thread started from it (where the job's
    /// messages then go).
    StartThread {
        /// The job.
        job: JobId,
        /// The channel.
        channel: String,
        /// The root message JSON.
        body: Value,
        /// The thread's name (≤ 100 characters).
        name: String,
    },
    /// A new message in a channel (bot token).
    Post {
        /// Remember it under this key.
        key: Option<MsgKey>,
        /// The channel (used when `thread` has no thread).
        channel: String,
        /// Post in this job's thread when it has one.
        thread: Option<JobId>,
        /// The message JSON.
        body: Value,
    },
    /// An edit of a remembered message.
    Edit {
        /// Which message.
        key: MsgKey,
        /// The new message JSON.
        body: Value,
    },
    /// An edit of a message by id (one this bot did not post in this run).
    EditAt {
        /// The channel.
        channel: String,
        /// The message id.
        message: String,
        /// The new message JSON.
        body: Value,
    },
    /// A message with a file attached.
    Upload {
        /// The channel (used when `thread` has no thread).
        channel: String,
        /// Post in this job's thread when it has one.
        thread: Option<JobId>,
        /// The message JSON.
        body: Value,
        /// The file name.
        name: String,
        /// The file's text.
        content: String,
    },
    /// The job ended (or will not run): its thread is no longer kept open.
    JobEnded {
        /// The job.
        job: JobId,
    },
}

impl Op {
    /// The message an edit replaces wholly (a later edit of it makes this one moot).
    fn edits(&self) -> Option<Target<'_>> {
        match self {
            Op::Edit { key, .. } => Some(Target::Key(*key)),
            Op::EditAt {
                channel, message, ..
            } => Some(Target::At(channel, message)),
            Op::EditOriginal { token, .. } => Some(Target::Original(token)),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Key(MsgKey),
    At(&'a str, &'a str),
    Original(&'a str),
}

/// The sending side of the queue (never blocks; drained in order).
pub type Outbound = aetherv_bot::chat::Outbound<Op>;

/// Starts the queue's task (the application is `rest`'s).
pub fn start(rest: Rest, keeping: ThreadKeeping) -> (Outbound, tokio::task::JoinHandle<()>) {
    let (out, rx) = Outbound::channel("discord");
    let task = tokio::spawn(drain(rest, keeping, rx));
    (out, task)
}

/// Takes the next write to send from `pending`: an edit a later queued edit of the same
/// message replaces is dropped, and a post of a message still waiting takes the content of
/// the newest queued edit of it (which is then dropped); counts the dropped edits in
/// `coalesced`.
fn next(pending: &mut VecDeque<Op>, coalesced: &mut u64) -> Option<Op> {
    while let Some(mut op) = pending.pop_front() {
        if let Op::Post {
            key: Some(key),
            body,
            ..
        } = &mut op
        {
            let target = Target::Key(*key);
            let mut newest = None;
            pending.retain_mut(|o| {
                if o.edits().as_ref() != Some(&target) {
                    return true;
                }
                if let Op::Edit { body, .. } = o {
                    newest = Some(std::mem::take(body));
                }
                *coalesced += 1;
                false
            });
            if let Some(b) = newest {
                *body = b;
            }
            return Some(op);
        }
        let moot = op
            .edits()
            .is_some_and(|t| pending.iter().any(|o| o.edits().as_ref() == Some(&t)));
        if moot {
            *coalesced += 1;
            continue;
        }
        return Some(op);
    }
    None
}

async fn drain(rest: Rest, keeping: ThreadKeeping, mut rx: UnboundedReceiver<Op>) {
    let mut known = Known::default();
    let mut pending = VecDeque::new();
    let mut coalesced = 0u64;
    let mut next_keep = Instant::now() + keeping.every;
    loop {
        if pending.is_empty() {
            tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => pending.push_back(op),
                    None => break,
                },
                () = tokio::time::sleep_until(next_keep) => {}
            }
        }
        while let Ok(op) = rx.try_recv() {
            pending.push_back(op);
        }
        if Instant::now() >= next_keep {
            known.keep_alive(&rest, keeping.every).await;
            next_keep = Instant::now() + keeping.every;
        }
        if let Some(op) = next(&mut pending, &mut coalesced) {
            match run(&rest, &mut known, op).await {
                Ok(()) | Err(RestError::Stopped) => {}
                Err(e) => tracing::warn!(error = %e, "discord write failed"),
            }
        }
    }
    tracing::debug!(coalesced, "discord outbound queue closed");
}

/// A job's thread.
#[derive(Debug)]
struct Thread {
    id: String,
    /// When a message was last posted in it (or it was last reopened).
    active: Instant,
}

/// What the queue remembers: posted messages and running jobs' threads.
#[derive(Debug, Default)]
struct Known {
    messages: HashMap<MsgKey, (String, String)>,
    threads: HashMap<JobId, Thread>,
}

impl Known {
    /// Where a message goes (the job's thread when it has one), noting the thread's activity.
    fn target(&mut self, channel: String, thread: Option<JobId>) -> String {
        match thread.and_then(|j| self.threads.get_mut(&j)) {
            Some(t) => {
                t.active = Instant::now();
                t.id.clone()
            }
            None => channel,
        }
    }

    /// A keep-alive for each running job's thread quiet for `every`.
    async fn keep_alive(&mut self, rest: &Rest, every: Duration) {
        let now = Instant::now();
        for t in self.threads.values_mut() {
            if now.duration_since(t.active) < every {
                continue;
            }
            t.active = now;
            if let Err(e) = unarchive(rest, &t.id).await {
                tracing::warn!(error = %e, "a job's thread could not be kept open");
            }
        }
    }
}

async fn unarchive(rest: &Rest, thread: &str) -> Result<(), RestError> {
    rest.edit_channel(thread, messages::thread_reopen())
        .await
        .map(|_| ())
}

/// An edit of a message; when its thread archived (50083), the thread is reopened and the
/// edit sent again.
async fn edit(rest: &Rest, channel: &str, id: &str, body: Value) -> Result<(), RestError> {
    match rest.edit_message(channel, id, body.clone()).await {
        Err(e) if e.code() == Some(THREAD_ARCHIVED) => {
            tracing::info!("a job's thread was archived: reopened for an edit");
            unarchive(rest, channel).await?;
            rest.edit_message(channel, id, body).await.map(|_| ())
        }
        r => r.map(|_| ()),
    }
}

async fn run(rest: &Rest, known: &mut Known, op: Op) -> Result<(), RestError> {
    match op {
        Op::EditOriginal { token, body } => {
            rest.edit_original(&token, body).await?;
        }
        Op::Followup { token, body } => {
            rest.followup(&token, body).await?;
        }
        Op::StartThread {
            job,
            channel,
            body,
            name,
        } => {
            let msg = rest.post_message(&channel, Body::Json(body)).await?;
            let Some(id) = msg.get("id").and_then(Value::as_str) else {
                return Ok(());
            };
            let thread = rest
                .start_thread(&channel, id, messages::thread_start(&name))
                .await?;
            if let Some(t) = thread.get("id").and_then(Value::as_str) {
                known.threads.insert(
                    job,
                    Thread {
                        id: t.to_string(),
                        active: Instant::now(),
                    },
                );
            }
        }
        Op::Post {
            key,
            channel,
            thread,
            body,
        } => {
            let channel = known.target(channel, thread);
            let msg = rest.post_message(&channel, Body::Json(body)).await?;
            if let (Some(key), Some(id)) = (key, msg.get("id").and_then(Value::as_str)) {
                known.messages.insert(key, (channel, id.to_string()));
            }
        }
        Op::Edit { key, body } => match known.messages.get(&key) {
            Some((channel, id)) => edit(rest, channel, id, body).await?,
            None => tracing::warn!(?key, "edit of a message that was never posted; skipped"),
        },
        Op::EditAt {
            channel,
            message,
            body,
        } => edit(rest, &channel, &message, body).await?,
        Op::Upload {
            channel,
            thread,
            body,
            name,
            content,
        } => {
            let channel = known.target(channel, thread);
            let file = Body::File {
                payload: body,
                name,
                content: content.into_bytes(),
            };
            rest.post_message(&channel, file).await?;
        }
        Op::JobEnded { job } => {
            known.threads.remove(&job);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edit(job: JobId, n: u64) -> Op {
        Op::Edit {
            key: MsgKey::Thread(job, MessageRef::Log(0)),
            body: json!({ "content": n.to_string() }),
        }
    }

    #[test]
    fn queued_edits_of_one_message_collapse_into_the_newest() {
        let (a, b) = (JobId::new(), JobId::new());
        let post = Op::Post {
            key: None,
            channel: "1".into(),
            thread: Some(a),
            body: json!({}),
        };
        let mut q: VecDeque<Op> = [edit(a, 1), edit(b, 1), post.clone(), edit(a, 2), edit(a, 3)]
            .into_iter()
            .collect();
        let mut n = 0;
        let mut sent = Vec::new();
        while let Some(op) = next(&mut q, &mut n) {
            sent.push(op);
        }
        assert_eq!(sent, vec![edit(b, 1), post, edit(a, 3)]);
        assert_eq!(n, 2);
    }

    #[test]
    fn a_waiting_post_takes_the_content_of_its_newest_edit() {
        let job = JobId::new();
        let key = MsgKey::Thread(job, MessageRef::Log(0));
        let post = |n: u64| Op::Post {
            key: Some(key),
            channel: "1".into(),
            thread: Some(job),
            body: json!({ "content": n.to_string() }),
        };
        let other = edit(JobId::new(), 7);
        let mut q: VecDeque<Op> = [post(1), edit(job, 2), other.clone(), edit(job, 3)]
            .into_iter()
            .collect();
        let mut n = 0;
        let mut sent = Vec::new();
        while let Some(op) = next(&mut q, &mut n) {
            sent.push(op);
        }
        assert_eq!(sent, vec![post(3), other]);
        assert_eq!(n, 2);
    }
}
