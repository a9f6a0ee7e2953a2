//! Discord's REST API through serenity: serenity's [`Route`]s name every endpoint and its
//! rate-limit bucket, serenity's [`Request`] builds each call (the URL under the configured
//! base, the `Authorization` header, JSON or multipart bodies with [`CreateAttachment`]), and
//! serenity's per-bucket [`Ratelimit`] reads the `X-RateLimit-*` headers of every answer and
//! makes the next call of a bucket whose remaining count reached 0 wait for its reset.
//!
//! The loop that drives them is ours, because serenity 0.12.5's own `Ratelimiter::perform`
//! builds its requests without the configured proxy (every call would go to
//! `https://discord.com`, whatever the base URL), and because its retry rules are not ours:
//!
//! - every exchange has a deadline ([`DEFAULT_DEADLINE`], by `tokio::time::timeout`);
//! - a 429 is waited out for its `Retry-After` (serenity's bucket does the wait; at most
//!   [`MAX_RETRY_AFTER`]) and retried; one with `X-RateLimit-Global` holds every call, not only
//!   its bucket's; nothing is dropped unless a call is limited [`MAX_RATE_LIMITED`] times;
//! - 401 and 403 are never retried; after a 401 (the token is revoked) the client sends nothing
//!   more and says so once (Discord bans clients after 10,000 invalid requests in 10 minutes);
//! - a write Discord cannot have received (the connection was never made, or its edge answered
//!   502/503/504) is retried; one it may have received or refused (4xx, 500 to a `POST`, a
//!   deadline passed on a `POST`) is not, so nothing is posted twice; idempotent calls (edits,
//!   bulk overwrites, reads) are also retried after a 500 or a timeout.
//!
//! **The base URL.** `api_url` is `https://discord.com/api/v10` or any origin serving the same
//! `/api/v10/…` paths (a proxy, a test fake): serenity's routes start with
//! `https://discord.com`, which [`Request::build`] replaces with that origin.
//!
//! The bot token is only ever in the `Authorization` header and never logged; interaction
//! tokens are left out of log lines; `Rest`'s `Debug` shows neither.

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use serenity::all::{ApplicationId, ChannelId, GuildId, InteractionId, MessageId};
use serenity::builder::CreateAttachment;
use serenity::http::{
    Http, HttpBuilder, LightMethod, Multipart, MultipartUpload, Ratelimit, RatelimitInfo,
    RatelimitingBucket, Request, Route,
};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Discord's REST base URL.
pub const DEFAULT_API_URL: &str = "https://discord.com/api/v10";
/// Discord's origin: what serenity's routes start with.
pub const DISCORD_ORIGIN: &str = "https://discord.com";
/// The path every REST base ends with (serenity's routes are `/api/v10/…`).
pub const API_PATH: &str = "/api/v10";
/// The deadline of one HTTP exchange.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// The longest `Retry-After` obeyed; a longer one fails the call.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Attempts for a call that keeps failing in a retryable way (429s not counted).
pub const MAX_ATTEMPTS: u32 = 5;
/// How many 429s one call may get before it is given up.
pub const MAX_RATE_LIMITED: u32 = 10;
/// The wait between retries of a call Discord did not receive.
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// The wait after a 429 without a usable `Retry-After` or `retry_after`.
pub const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// Discord's error code for a write to an archived thread.
pub const THREAD_ARCHIVED: u64 = 50083;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// 401 or 403: the token or permissions are wrong (never retried).
    #[error("Discord refused the credentials or permissions ({0})")]
    Unauthorized(StatusCode),
    /// Not sent: Discord refused the bot token earlier (401), so nothing more is sent.
    #[error("not sent: Discord refused the bot token earlier")]
    Stopped,
    /// Any other refusal (4xx, or 500 to a non-idempotent call).
    #[error("Discord refused the call ({status}): {body}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// Discord's error code (`code` of its JSON error), when it sent one.
        code: Option<u64>,
        /// Discord's error body.
        body: String,
    },
    /// The call may not have arrived and could not be retried (or retries ran out).
    #[error("Discord could not be reached: {0}")]
    Unreachable(String),
    /// A call that cannot be made (an id that is not a snowflake, a body that does not
    /// serialize).
    #[error("invalid Discord call: {0}")]
    Invalid(String),
}

impl RestError {
    /// Discord's JSON error code of a refusal.
    pub fn code(&self) -> Option<u64> {
        match self {
            RestError::Refused { code, .. } => *code,
            _ => None,
        }
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON body.
    Json(Value),
    /// `payload_json` with one file as `files[0]` (serenity's `CreateAttachment`).
    File {
        /// The message JSON (its `attachments` are set here).
        payload: Value,
        /// The file name.
        name: String,
        /// The file's bytes.
        content: Vec<u8>,
    },
}

/// A snowflake id from its text (never echoed back when it is not one).
pub fn snowflake<T: From<NonZeroU64>>(s: &str) -> Result<T, RestError> {
    s.trim()
        .parse::<NonZeroU64>()
        .map(T::from)
        .map_err(|_| RestError::Invalid("an id that is not a snowflake".into()))
}

/// The rate-limit state shared by the clones of one client.
#[derive(Default)]
struct Limits {
    /// serenity's bucket accounting, by serenity's bucket of a route.
    buckets: Mutex<HashMap<RatelimitingBucket, Arc<tokio::sync::Mutex<Ratelimit>>>>,
    /// No call before this instant (a global 429).
    global_until: Mutex<Option<Instant>>,
    /// A 401 was answered: the token is dead.
    stopped: AtomicBool,
}

/// The REST client.
#[derive(Clone)]
pub struct Rest {
    http: Arc<Http>,
    client: reqwest::Client,
    auth: Arc<str>,
    proxy: Option<String>,
    app: ApplicationId,
    base: String,
    deadline: Duration,
    limits: Arc<Limits>,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of every log line.
        f.debug_struct("Rest")
            .field("base", &self.base)
            .field("application_id", &self.app)
            .finish_non_exhaustive()
    }
}

fn idempotent(m: LightMethod) -> bool {
    !matches!(m, LightMethod::Post)
}

fn seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let s: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(1e6)))
}

/// A route's path for log lines: under the base, interaction tokens left out.
fn log_path(route: &Route<'_>) -> String {
    let full = (*route).path();
    let path = full.strip_prefix(DISCORD_ORIGIN).unwrap_or(&full);
    let path = path.strip_prefix(API_PATH).unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    match parts.get(1) {
        Some(&"webhooks") | Some(&"interactions") if parts.len() > 3 => {
            let mut p = parts.clone();
            p[3] = "…";
            p.join("/")
        }
        _ => path.to_string(),
    }
}

fn on_limited(info: &RatelimitInfo) {
    tracing::debug!(
        path = %info.path.replace(DISCORD_ORIGIN, ""),
        wait_ms = info.timeout.as_millis() as u64,
        global = info.global,
        "discord rate limit: waiting"
    );
}

impl Rest {
    /// A client for `api_url` with the bot token `token`, for application `application_id`.
    pub fn new(api_url: &str, token: &str, application_id: &str) -> anyhow::Result<Self> {
        let base = api_url.trim_end_matches('/');
        let Some(origin) = base.strip_suffix(API_PATH) else {
            anyhow::bail!("api_url must end with {API_PATH} (the paths of Discord's API v10)");
        };
        let app: ApplicationId = snowflake(application_id)
            .map_err(|_| anyhow::anyhow!("application_id is not a snowflake"))?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(DEFAULT_DEADLINE)
            .build()?;
        let proxy = (origin != DISCORD_ORIGIN).then(|| origin.to_string());
        let mut b = HttpBuilder::new(token)
            .application_id(app)
            .client(client.clone());
        if let Some(p) = &proxy {
            // serenity 0.12.5's own ratelimiter ignores the proxy: off for a proxied base.
            b = b.proxy(p.as_str()).ratelimiter_disabled(true);
        }
        let http = b.build();
        Ok(Rest {
            auth: Arc::from(http.token()),
            http: Arc::new(http),
            client,
            proxy,
            app,
            base: base.to_string(),
            deadline: DEFAULT_DEADLINE,
            limits: Arc::default(),
        })
    }

    /// The same client with another per-exchange deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// serenity's client with the same token, application id and base (for serenity's own
    /// calls, e.g. a Gateway client). Its own ratelimiter is off for a proxied base (see the
    /// module's documentation).
    pub fn http(&self) -> Arc<Http> {
        Arc::clone(&self.http)
    }

    /// The application id.
    pub fn application_id(&self) -> ApplicationId {
        self.app
    }

    fn bucket(&self, key: RatelimitingBucket) -> Arc<tokio::sync::Mutex<Ratelimit>> {
        let mut m = self
            .limits
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(m.entry(key).or_default())
    }

    async fn wait_global(&self) {
        let until = *self
            .limits
            .global_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }

    fn hold_global(&self, wait: Duration) {
        let mut g = self
            .limits
            .global_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = Instant::now() + wait;
        if g.is_none_or(|t| t < until) {
            *g = Some(until);
        }
    }

    fn build(&self, req: &Request<'_>) -> Result<reqwest::Request, RestError> {
        let invalid = |e: &dyn std::fmt::Display| {
            RestError::Invalid(format!("the request could not be built: {e}"))
        };
        req.clone()
            .build(&self.client, &self.auth, self.proxy.as_deref())
            .map_err(|e| invalid(&e))?
            .build()
            .map_err(|e| invalid(&e))
    }

    /// One call under the rules of the module; the answer's JSON (`Null` when empty).
    pub async fn call(&self, req: Request<'_>) -> Result<Value, RestError> {
        let result = self.call_counted(req).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(RestError::Unreachable(_)) => "failed",
            Err(_) => "refused",
        };
        aetherv_metrics::metrics().chat_call("discord", outcome);
        result
    }

    async fn call_counted(&self, req: Request<'_>) -> Result<Value, RestError> {
        if self.limits.stopped.load(Ordering::Relaxed) {
            return Err(RestError::Stopped);
        }
        let method = *req.method_ref();
        let path = log_path(req.route_ref());
        let bucket = self.bucket(req.route_ref().ratelimiting_bucket());
        let on_limited = |info: RatelimitInfo| on_limited(&info);
        let (mut attempt, mut limited) = (0u32, 0u32);
        loop {
            attempt += 1;
            let last = attempt >= MAX_ATTEMPTS;
            self.wait_global().await;
            bucket.lock().await.pre_hook(&req, &on_limited).await;
            let built = self.build(&req)?;
            let resp = match tokio::time::timeout(self.deadline, self.client.execute(built)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let never_sent = e.is_connect();
                    tracing::warn!(%path, error = %e, never_sent, "discord call failed");
                    if (never_sent || idempotent(method)) && !last {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    return Err(RestError::Unreachable(e.to_string()));
                }
                Err(_) => {
                    tracing::warn!(%path, "discord call timed out");
                    if idempotent(method) && !last {
                        continue;
                    }
                    return Err(RestError::Unreachable("deadline passed".into()));
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let retry_after = seconds(&headers, "retry-after");
            let global = headers.contains_key("x-ratelimit-global");
            let limited_now = status == StatusCode::TOO_MANY_REQUESTS;
            if limited_now {
                limited += 1;
                attempt -= 1;
                aetherv_metrics::metrics().chat_call("discord", "rate_limited");
            }
            let too_long = retry_after.is_some_and(|w| w > MAX_RETRY_AFTER);
            // serenity's bucket reads the headers; on a bucket 429 with `Retry-After` it waits
            // it out and says to redo the call.
            let redo = if limited_now && (global || too_long) {
                false
            } else {
                bucket
                    .lock()
                    .await
                    .post_hook(&resp, &req, &on_limited, false)
                    .await
                    .unwrap_or(false)
            };
            let bytes = match tokio::time::timeout(self.deadline, resp.bytes()).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Err(RestError::Unreachable(format!("answer cut off: {e}"))),
                Err(_) => return Err(RestError::Unreachable("deadline passed".into())),
            };
            if status.is_success() {
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&bytes)
                    .map_err(|e| RestError::Unreachable(format!("unreadable answer: {e}")));
            }
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let code = json.get("code").and_then(Value::as_u64);
            let message = json
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if limited_now {
                let wait = retry_after
                    .or_else(|| {
                        json.get("retry_after")
                            .and_then(Value::as_f64)
                            .filter(|s| s.is_finite() && *s >= 0.0)
                            .map(|s| Duration::from_secs_f64(s.min(1e6)))
                    })
                    .unwrap_or(RATE_LIMIT_PAUSE);
                tracing::warn!(%path, wait_ms = wait.as_millis() as u64, global, "discord rate limit");
                if wait > MAX_RETRY_AFTER || limited >= MAX_RATE_LIMITED {
                    tracing::error!(%path, "discord rate limit too long; call given up");
                    return Err(RestError::Refused {
                        status,
                        code,
                        body: message,
                    });
                }
                if global {
                    self.hold_global(wait);
                } else if !redo {
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
            match status {
                StatusCode::UNAUTHORIZED => {
                    if !self.limits.stopped.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            %path,
                            "discord refused the bot token (401): nothing more is sent to Discord"
                        );
                    }
                    return Err(RestError::Unauthorized(status));
                }
                StatusCode::FORBIDDEN => {
                    tracing::error!(%path, code, "discord refused the bot's permissions (403)");
                    return Err(RestError::Unauthorized(status));
                }
                StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
                    if !last =>
                {
                    tracing::warn!(%path, %status, "discord unavailable; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                s if s.is_server_error() && idempotent(method) && !last => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                _ => {
                    tracing::warn!(%path, %status, code, message = %message, "discord refused a call");
                    return Err(RestError::Refused {
                        status,
                        code,
                        body: message,
                    });
                }
            }
        }
    }

    fn request<'a>(
        route: Route<'a>,
        method: LightMethod,
        body: Body,
    ) -> Result<Request<'a>, RestError> {
        let json = |v: &Value| serde_json::to_vec(v).map_err(|e| RestError::Invalid(e.to_string()));
        let req = Request::new(route, method);
        Ok(match body {
            Body::Empty => req,
            Body::Json(v) => req.body(Some(json(&v)?)),
            Body::File {
                mut payload,
                name,
                content,
            } => {
                let safe: String = name
                    .chars()
                    .filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\'))
                    .collect();
                if let Some(o) = payload.as_object_mut() {
                    o.insert(
                        "attachments".into(),
                        serde_json::json!([{ "id": 0, "filename": safe }]),
                    );
                }
                req.multipart(Some(Multipart {
                    upload: MultipartUpload::Attachments(vec![CreateAttachment::bytes(
                        content, safe,
                    )]),
                    fields: Vec::new(),
                    payload_json: Some(payload.to_string()),
                }))
            }
        })
    }

    async fn send(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Body,
    ) -> Result<Value, RestError> {
        self.call(Self::request(route, method, body)?).await
    }

    /// Posts a message in `channel` (`POST /channels/{channel}/messages`), JSON or with a file.
    pub async fn post_message(&self, channel: &str, body: Body) -> Result<Value, RestError> {
        let channel_id: ChannelId = snowflake(channel)?;
        self.send(
            Route::ChannelMessages { channel_id },
            LightMethod::Post,
            body,
        )
        .await
    }

    /// Edits a message (`PATCH /channels/{channel}/messages/{message}`).
    pub async fn edit_message(
        &self,
        channel: &str,
        message: &str,
        body: Value,
    ) -> Result<Value, RestError> {
        let (channel_id, message_id): (ChannelId, MessageId) =
            (snowflake(channel)?, snowflake(message)?);
        let route = Route::ChannelMessage {
            channel_id,
            message_id,
        };
        self.send(route, LightMethod::Patch, Body::Json(body)).await
    }

    /// Starts a thread from a message (`POST /channels/{channel}/messages/{message}/threads`).
    pub async fn start_thread(
        &self,
        channel: &str,
        message: &str,
        body: Value,
    ) -> Result<Value, RestError> {
        let (channel_id, message_id): (ChannelId, MessageId) =
            (snowflake(channel)?, snowflake(message)?);
        let route = Route::ChannelMessageThreads {
            channel_id,
            message_id,
        };
        self.send(route, LightMethod::Post, Body::Json(body)).await
    }

    /// Modifies a channel or thread (`PATCH /channels/{channel}`), e.g. `{"archived": false}`.
    pub async fn edit_channel(&self, channel: &str, body: Value) -> Result<Value, RestError> {
        let channel_id: ChannelId = snowflake(channel)?;
        self.send(
            Route::Channel { channel_id },
            LightMethod::Patch,
            Body::Json(body),
        )
        .await
    }

    /// Edits an interaction's original answer
    /// (`PATCH /webhooks/{app}/{token}/messages/@original`).
    pub async fn edit_original(&self, token: &str, body: Value) -> Result<Value, RestError> {
        let route = Route::WebhookOriginalInteractionResponse {
            application_id: self.app,
            token,
        };
        self.send(route, LightMethod::Patch, Body::Json(body)).await
    }

    /// A follow-up message to an interaction (`POST /webhooks/{app}/{token}`).
    pub async fn followup(&self, token: &str, body: Value) -> Result<Value, RestError> {
        let route = Route::WebhookFollowupMessages {
            application_id: self.app,
            token,
        };
        self.send(route, LightMethod::Post, Body::Json(body)).await
    }

    /// The first answer to an interaction (`POST /interactions/{id}/{token}/callback`; the
    /// Gateway mode's, the HTTP mode answers in the HTTP response).
    pub async fn respond(&self, id: &str, token: &str, body: Value) -> Result<(), RestError> {
        let interaction_id: InteractionId = snowflake(id)?;
        let route = Route::InteractionResponse {
            interaction_id,
            token,
        };
        self.send(route, LightMethod::Post, Body::Json(body))
            .await
            .map(|_| ())
    }

    /// Bulk-overwrites the application's commands: in `guild`, else globally
    /// (`PUT /applications/{app}/[guilds/{guild}/]commands`).
    pub async fn put_commands(&self, guild: Option<&str>, body: Value) -> Result<(), RestError> {
        let route = match guild {
            Some(g) => Route::GuildCommands {
                application_id: self.app,
                guild_id: snowflake::<GuildId>(g)?,
            },
            None => Route::Commands {
                application_id: self.app,
            },
        };
        self.send(route, LightMethod::Put, Body::Json(body))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_not_in_debug_output_and_the_base_must_be_api_v10() {
        let r = Rest::new("http://127.0.0.1:1/api/v10", "secret-token", "1").expect("client");
        assert!(!format!("{r:?}").contains("secret-token"));
        assert!(Rest::new("http://127.0.0.1:1/v9", "t", "1").is_err());
        assert!(Rest::new(DEFAULT_API_URL, "t", "0").is_err());
        assert!(snowflake::<ChannelId>("12").is_ok());
        let e = snowflake::<ChannelId>("x<script>").expect_err("not a snowflake");
        assert!(!e.to_string().contains("script"));
    }

    #[test]
    fn interaction_tokens_stay_out_of_log_paths() {
        let app = ApplicationId::new(3);
        let route = Route::WebhookOriginalInteractionResponse {
            application_id: app,
            token: "secret-interaction-token",
        };
        let p = log_path(&route);
        assert!(!p.contains("secret"), "{p}");
        assert!(p.starts_with("/webhooks/3/"), "{p}");
        let m = Route::ChannelMessages {
            channel_id: ChannelId::new(5),
        };
        assert_eq!(log_path(&m), "/channels/5/messages");
    }
}
