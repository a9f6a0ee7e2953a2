//! The outbound queue: every chat write goes through one ordered queue, so a message is posted
//! before it is edited and a thread root before its replies.
//!
//! Messages are named by [`MsgKey`]; the worker remembers the `ts` Slack gave each posted
//! message and resolves later edits and thread replies with it. It obeys 429 `Retry-After`
//! (the call is retried after that long; nothing is dropped), spaces edits of one message at
//! least [`MIN_EDIT_INTERVAL`] apart, and when several edits of one message are waiting only
//! the newest is sent (each edit replaces the whole message, so nothing is lost).

use crate::Client;
use aetherv_bot::thread::MessageRef;
use aetherv_core::JobId;
use serde_json::Value;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The shortest time between two edits of one message (Tier 3 allows 50+/min per method).
pub const MIN_EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// The wait after a 429 without a `Retry-After` header.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest `Retry-After` obeyed as given; longer ones are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The longest one Web API call may take; past it the call is given up (it may have reached
/// Slack, so it is not repeated) and the queue goes on.
pub const CALL_DEADLINE: Duration = Duration::from_secs(20);
/// The longest a `response_url` answer may take. It runs beside the queue, never in it.
pub const RESPONSE_URL_DEADLINE: Duration = Duration::from_secs(10);
/// Attempts for a call failing with something other than a rate limit.
pub const MAX_ATTEMPTS: u32 = 3;

/// A message the bot posted and may edit or reply under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgKey {
    /// The root message of a job's thread.
    Root(JobId),
    /// A status or log message in a job's thread.
    Thread(JobId, MessageRef),
    /// An approval request: 0 in the approvals channel, 1 in the request's thread.
    Approval(JobId, u8),
}

/// One chat write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `chat.postMessage`.
    Post {
        /// Remember the message under this key.
        key: Option<MsgKey>,
        /// When the bot is not in the channel: this instead, to the command's `response_url`.
        fallback: Option<Fallback>,
        /// The channel (ignored when `thread` resolves: replies go to the root's channel).
        channel: String,
        /// Reply under this message.
        thread: Option<MsgKey>,
        /// Block Kit message (`text`, `blocks`).
        content: Value,
    },
    /// `chat.update` of a posted message.
    Update {
        /// Which message.
        key: MsgKey,
        /// The new content.
        content: Value,
    },
    /// `chat.update` of a message known only by its channel and ts (posted before a restart).
    UpdateTs {
        /// Channel id.
        channel: String,
        /// Message ts.
        ts: String,
        /// The new content.
        content: Value,
    },
    /// `chat.postEphemeral` to one user.
    Ephemeral {
        /// Channel.
        channel: String,
        /// In this thread, when it was posted in `channel`.
        thread: Option<MsgKey>,
        /// User id.
        user: String,
        /// Block Kit message.
        content: Value,
    },
    /// A file in a thread (`files.getUploadURLExternal`, upload, `files.completeUploadExternal`).
    Upload {
        /// The channel when the thread is unknown.
        channel: String,
        /// The thread.
        thread: Option<MsgKey>,
        /// File name.
        name: String,
        /// File content.
        content: String,
    },
}

/// What to send instead of a post the channel refuses because the bot is not in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// The `response_url` of the command being answered (valid 30 minutes, 5 uses).
    pub response_url: String,
    /// The message for the user alone (ephemeral).
    pub content: Value,
}

/// The sending side of the queue (never blocks; drained in order).
pub type Outbound = aetherv_bot::chat::Outbound<Op>;

#[derive(Debug, PartialEq)]
enum Failure {
    RateLimited(Duration),
    /// The bot cannot post there (not a member, no such channel, archived): retrying is futile.
    NotThere(String),
    /// Slack refused the call for good, or took it and answered something that does not
    /// parse: a retry would fail again, or post twice.
    Permanent(String),
    /// The call may not have reached Slack (connection, 5xx, Slack's own transient errors).
    Transient(String),
}

/// Slack's error codes that say "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

fn classify(e: &SlackClientError) -> Failure {
    match e {
        SlackClientError::RateLimitError(r) => Failure::RateLimited(
            r.retry_after
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .min(MAX_RETRY_AFTER),
        ),
        SlackClientError::ApiError(a)
            if matches!(
                a.code.as_str(),
                "not_in_channel" | "channel_not_found" | "is_archived"
            ) =>
        {
            Failure::NotThere(a.code.clone())
        }
        SlackClientError::ApiError(a) if TRANSIENT_CODES.contains(&a.code.as_str()) => {
            Failure::Transient(a.code.clone())
        }
        SlackClientError::ApiError(a) => {
            Failure::Permanent(format!("Slack refused it: {}", a.code))
        }
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => {
            Failure::Transient(e.to_string())
        }
        SlackClientError::HttpError(h) => {
            Failure::Permanent(format!("Slack refused it: HTTP {}", h.status_code))
        }
        SlackClientError::ProtocolError(_) => {
            Failure::Permanent(format!("Slack took it, but its answer does not parse: {e}"))
        }
        other => Failure::Transient(other.to_string()),
    }
}

fn content(v: &Value) -> SlackMessageContent {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "block kit payload does not parse; sending text only");
        SlackMessageContent::new().with_text(
            v.get("text")
                .and_then(Value::as_str)
                .unwrap_or("(message could not be rendered)")
                .to_string(),
        )
    })
}

struct Worker {
    client: Arc<Client>,
    token: SlackApiToken,
    posted: HashMap<MsgKey, (SlackChannelId, SlackTs)>,
    last_edit: HashMap<MsgKey, Instant>,
}

impl Worker {
    /// Where a message of `thread` goes: the thread root's channel and timestamp once it was
    /// posted, else `channel` at top level.
    fn thread_root(
        &self,
        channel: &str,
        thread: Option<MsgKey>,
    ) -> (SlackChannelId, Option<SlackTs>) {
        match thread.and_then(|t| self.posted.get(&t).cloned()) {
            Some((ch, ts)) => (ch, Some(ts)),
            None => (SlackChannelId(channel.to_string()), None),
        }
    }

    async fn call(&mut self, op: &Op) -> Result<(), SlackClientError> {
        let session = self.client.open_session(&self.token);
        match op {
            Op::Post {
                key,
                channel,
                thread,
                content: c,
                ..
            } => {
                let (channel, thread_ts) = self.thread_root(channel, *thread);
                let mut req = SlackApiChatPostMessageRequest::new(channel, content(c));
                req.thread_ts = thread_ts;
                let res = session.chat_post_message(&req).await?;
                if let Some(k) = key {
                    self.posted.insert(*k, (res.channel, res.ts));
                }
            }
            Op::Update { key, content: c } => {
                let Some((channel, ts)) = self.posted.get(key).cloned() else {
                    tracing::warn!(?key, "edit of a message that was never posted");
                    return Ok(());
                };
                if let Some(last) = self.last_edit.get(key) {
                    tokio::time::sleep_until(*last + MIN_EDIT_INTERVAL).await;
                }
                let req = SlackApiChatUpdateRequest::new(channel, content(c), ts);
                session.chat_update(&req).await?;
                self.last_edit.insert(*key, Instant::now());
            }
            Op::UpdateTs {
                channel,
                ts,
                content: c,
            } => {
                let req = SlackApiChatUpdateRequest::new(
                    SlackChannelId(channel.clone()),
                    content(c),
                    SlackTs(ts.clone()),
                );
                session.chat_update(&req).await?;
            }
            Op::Ephemeral {
                channel,
                thread,
                user,
                content: c,
            } => {
                let (root_channel, thread_ts) = self.thread_root(channel, *thread);
                let mut req = SlackApiChatPostEphemeralRequest::new(
                    SlackChannelId(channel.clone()),
                    SlackUserId(user.clone()),
                    content(c),
                );
                // Only a thread of the same channel: the click may be in another one.
                if root_channel.0 == *channel {
                    req.thread_ts = thread_ts;
                }
                session.chat_post_ephemeral(&req).await?;
            }
            Op::Upload {
                channel,
                thread,
                name,
                content: body,
            } => {
                let (channel, thread_ts) = self.thread_root(channel, *thread);
                let url = session
                    .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
                        name.clone(),
                        body.len(),
                    ))
                    .await?;
                session
                    .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
                        url.upload_url,
                        body.as_bytes().to_vec(),
                        "text/plain".into(),
                    ))
                    .await?;
                let mut req = SlackApiFilesCompleteUploadExternalRequest::new(vec![
                    SlackApiFilesComplete::new(url.file_id).with_title(name.clone()),
                ]);
                req.channel_id = Some(channel);
                req.thread_ts = thread_ts;
                session.files_complete_upload_external(&req).await?;
            }
        }
        Ok(())
    }

    /// Posts a fallback to a `response_url` (ephemeral: only the user sees it) in a task of
    /// its own with a deadline: a slow or failing `response_url` never holds up the queue.
    fn respond(&self, f: &Fallback) {
        let url = match f.response_url.parse() {
            Ok(u) => SlackResponseUrl(u),
            Err(e) => {
                tracing::warn!(error = %e, "response_url is not a URL");
                return;
            }
        };
        let req = SlackApiPostWebhookMessageRequest::new(content(&f.content));
        let client = Arc::clone(&self.client);
        tokio::spawn(async move {
            let answered =
                tokio::time::timeout(RESPONSE_URL_DEADLINE, client.respond_to_event(&url, &req))
                    .await;
            match answered {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "response_url refused the answer"),
                Err(_) => tracing::warn!(
                    deadline = ?RESPONSE_URL_DEADLINE,
                    "response_url did not answer in time; giving up on it"
                ),
            }
        });
    }

    /// Sends one op: waits out every 429, retries other failures a few times, then logs it.
    async fn deliver(&mut self, op: &Op) {
        let mut failures = 0;
        loop {
            let Ok(called) = tokio::time::timeout(CALL_DEADLINE, self.call(op)).await else {
                counted("failed");
                tracing::error!(deadline = ?CALL_DEADLINE, "slack call took too long; giving up on it");
                return;
            };
            let Err(e) = called else {
                counted("ok");
                return;
            };
            let failure = classify(&e);
            counted(match failure {
                Failure::RateLimited(_) => "rate_limited",
                Failure::NotThere(_) | Failure::Permanent(_) => "refused",
                Failure::Transient(_) => "failed",
            });
            match failure {
                Failure::RateLimited(wait) => {
                    tracing::warn!(?wait, "slack rate limit; waiting as told");
                    tokio::time::sleep(wait).await;
                }
                Failure::NotThere(code) => {
                    if let Op::Post {
                        fallback: Some(f),
                        channel,
                        ..
                    } = op
                    {
                        tracing::info!(%channel, %code, "not in the channel; answering through the command's response_url");
                        self.respond(f);
                    } else {
                        tracing::warn!(error = %code, "slack refused the write (the bot is not in that channel)");
                    }
                    return;
                }
                Failure::Permanent(msg) => {
                    tracing::error!(error = %msg, "slack call not retried");
                    return;
                }
                Failure::Transient(msg) => {
                    failures += 1;
                    if failures >= MAX_ATTEMPTS {
                        tracing::error!(error = %msg, "slack call failed; giving up on it");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                }
            }
        }
    }
}

/// Removes edits superseded by a later edit of the same message.
fn coalesce(queue: &mut VecDeque<Op>) {
    let mut newest: HashMap<MsgKey, usize> = HashMap::new();
    for (i, op) in queue.iter().enumerate() {
        if let Op::Update { key, .. } = op {
            newest.insert(*key, i);
        }
    }
    let mut i = 0;
    queue.retain(|op| {
        let keep = match op {
            Op::Update { key, .. } => newest.get(key) == Some(&i),
            _ => true,
        };
        i += 1;
        keep
    });
}

/// Starts the queue's worker; it runs until every sender is dropped and the queue is empty.
pub fn start(client: Arc<Client>, token: SlackApiToken) -> (Outbound, tokio::task::JoinHandle<()>) {
    let (out, mut rx) = Outbound::channel("slack");
    let mut worker = Worker {
        client,
        token,
        posted: HashMap::new(),
        last_edit: HashMap::new(),
    };
    let handle = tokio::spawn(async move {
        let mut queue: VecDeque<Op> = VecDeque::new();
        loop {
            if queue.is_empty() {
                match rx.recv().await {
                    Some(op) => queue.push_back(op),
                    None => return,
                }
            }
            while let Ok(op) = rx.try_recv() {
                queue.push_back(op);
            }
            coalesce(&mut queue);
            if let Some(op) = queue.pop_front() {
                worker.deliver(&op).await;
            }
        }
    });
    (out, handle)
}

/// Counts one Web API call by its outcome.
fn counted(outcome: &str) {
    aetherv_metrics::metrics().chat_call("slack", outcome);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_may_not_have_reached_slack_is_retried() {
        use slack_morphism::errors::*;
        let api = |code: &str| SlackClientError::ApiError(SlackClientApiError::new(code.into()));
        assert_eq!(
            classify(&api("not_in_channel")),
            Failure::NotThere("not_in_channel".into())
        );
        assert!(matches!(
            classify(&api("invalid_blocks")),
            Failure::Permanent(_)
        ));
        assert!(matches!(
            classify(&api("internal_error")),
            Failure::Transient(_)
        ));
        let http = |code: u16| {
            SlackClientError::HttpError(SlackClientHttpError::new(
                axum::http::StatusCode::from_u16(code).expect("status"),
            ))
        };
        assert!(matches!(classify(&http(503)), Failure::Transient(_)));
        assert!(matches!(classify(&http(404)), Failure::Permanent(_)));
        let unparsable = serde_json::from_str::<Value>("{").expect_err("not JSON");
        assert!(matches!(
            classify(&SlackClientError::ProtocolError(
                SlackClientProtocolError::new(unparsable)
            )),
            Failure::Permanent(_)
        ));
    }

    #[test]
    fn only_the_newest_edit_of_a_message_is_kept() {
        let job = JobId::new();
        let k = MsgKey::Thread(job, MessageRef::Status);
        let other = MsgKey::Thread(job, MessageRef::Log(0));
        let mut q: VecDeque<Op> = VecDeque::from(vec![
            Op::Update {
                key: k,
                content: json!({"text": "1"}),
            },
            Op::Update {
                key: other,
                content: json!({"text": "a"}),
            },
            Op::Update {
                key: k,
                content: json!({"text": "2"}),
            },
        ]);
        coalesce(&mut q);
        assert_eq!(
            q,
            VecDeque::from(vec![
                Op::Update {
                    key: other,
                    content: json!({"text": "a"}),
                },
                Op::Update {
                    key: k,
                    content: json!({"text": "2"}),
                },
            ])
        );
    }
}
