//! The outbound queue: every Discord write goes through one ordered task, so a message is
//! posted before it is edited, and the serve loop never waits on Discord. Messages the bot may
//! edit later are named by [`MsgKey`]; the task remembers the channel and message id Discord
//! gave each and resolves later edits with them. Retries and rate limits are the
//! [`Rest`](crate::rest::Rest) client's.

use crate::rest::{Body, Rest, RestError};
use aetherv_bot::reply::MessageRef;
use aetherv_core::JobId;
use hyper::Method;
use serde_json::Value;
use std::collections::HashMap;

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
}

/// The sending side of the queue (never blocks; drained in order).
pub type Outbound = aetherv_bot::chat::Outbound<Op>;

/// Starts the queue's task for application `app_id`.
pub fn start(rest: Rest, app_id: String) -> (Outbound, tokio::task::JoinHandle<()>) {
    let (out, mut rx) = Outbound::channel("discord");
    let task = tokio::spawn(async move {
        let mut known = Known::default();
        while let Some(op) = rx.recv().await {
            if let Err(e) = run(&rest, &app_id, &mut known, op).await {
                tracing::warn!(error = %e, "discord write failed");
            }
        }
    });
    (out, task)
}

/// What the queue remembers: posted messages and jobs' threads.
#[derive(Debug, Default)]
struct Known {
    messages: HashMap<MsgKey, (String, String)>,
    threads: HashMap<JobId, String>,
}

impl Known {
    fn target(&self, channel: String, thread: Option<JobId>) -> String {
        thread
            .and_then(|j| self.threads.get(&j).cloned())
            .unwrap_or(channel)
    }
}

async fn run(rest: &Rest, app: &str, known: &mut Known, op: Op) -> Result<(), RestError> {
    match op {
        Op::EditOriginal { token, body } => {
            let path = format!("/webhooks/{app}/{token}/messages/@original");
            rest.call(Method::PATCH, &path, Some(Body::Json(body)))
                .await?;
        }
        Op::Followup { token, body } => {
            let path = format!("/webhooks/{app}/{token}");
            rest.call(Method::POST, &path, Some(Body::Json(body)))
                .await?;
        }
        Op::StartThread {
            job,
            channel,
            body,
            name,
        } => {
            let path = format!("/channels/{channel}/messages");
            let msg = rest
                .call(Method::POST, &path, Some(Body::Json(body)))
                .await?;
            let Some(id) = msg.get("id").and_then(Value::as_str) else {
                return Ok(());
            };
            let path = format!("/channels/{channel}/messages/{id}/threads");
            // A day without messages before it archives; a job's messages keep it active.
            let body = serde_json::json!({ "name": name, "auto_archive_duration": 1440 });
            let thread = rest
                .call(Method::POST, &path, Some(Body::Json(body)))
                .await?;
            if let Some(t) = thread.get("id").and_then(Value::as_str) {
                known.threads.insert(job, t.to_string());
            }
        }
        Op::Post {
            key,
            channel,
            thread,
            body,
        } => {
            let channel = known.target(channel, thread);
            let path = format!("/channels/{channel}/messages");
            let msg = rest
                .call(Method::POST, &path, Some(Body::Json(body)))
                .await?;
            if let (Some(key), Some(id)) = (key, msg.get("id").and_then(Value::as_str)) {
                known.messages.insert(key, (channel, id.to_string()));
            }
        }
        Op::Edit { key, body } => match known.messages.get(&key) {
            Some((channel, id)) => {
                let path = format!("/channels/{channel}/messages/{id}");
                rest.call(Method::PATCH, &path, Some(Body::Json(body)))
                    .await?;
            }
            None => tracing::warn!(?key, "edit of a message that was never posted; skipped"),
        },
        Op::EditAt {
            channel,
            message,
            body,
        } => {
            let path = format!("/channels/{channel}/messages/{message}");
            rest.call(Method::PATCH, &path, Some(Body::Json(body)))
                .await?;
        }
        Op::Upload {
            channel,
            thread,
            body,
            name,
            content,
        } => {
            let channel = known.target(channel, thread);
            let path = format!("/channels/{channel}/messages");
            let file = Body::File {
                payload: body,
                name,
                content: content.into_bytes(),
            };
            rest.call(Method::POST, &path, Some(file)).await?;
        }
    }
    Ok(())
}
