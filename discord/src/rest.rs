//! A small Discord REST client (HTTP/1.1 over hyper, TLS by rustls) with a configurable base
//! URL, so tests and proxies can stand in for `https://discord.com/api/v10`.
//!
//! Every call has a deadline. A 429 is waited out for its `retry_after` and retried (nothing
//! is dropped); a bucket whose `X-RateLimit-Remaining` reached 0 is not called again before its
//! `X-RateLimit-Reset-After`. 401 and 403 are never retried (Discord bans clients that repeat
//! invalid requests). A write Discord cannot have received (the connection was never made, or
//! Discord's edge answered 502/503/504) is retried; one it may have received or refused is not,
//! except idempotent calls (edits, reads), so nothing is posted twice. The bot token is sent in
//! the `Authorization` header only, and never logged.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Discord's REST base URL.
pub const DEFAULT_API_URL: &str = "https://discord.com/api/v10";
/// The deadline of one HTTP exchange.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// The longest wait obeyed for one 429.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Attempts for a call that keeps failing in a retryable way (429s included).
pub const MAX_ATTEMPTS: u32 = 5;
/// The wait between retries of a call Discord did not receive.
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// 401 or 403: the token or permissions are wrong (never retried).
    #[error("Discord refused the credentials or permissions ({0})")]
    Unauthorized(StatusCode),
    /// Any other refusal (4xx, or 500 to a non-idempotent call).
    #[error("Discord refused the call ({status}): {body}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// Discord's error body.
        body: String,
    },
    /// The call may not have arrived and could not be retried (or retries ran out).
    #[error("Discord could not be reached: {0}")]
    Unreachable(String),
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// A JSON body.
    Json(Value),
    /// `payload_json` with one file as `files[0]`.
    File {
        /// The message JSON (its `attachments` are set by the client).
        payload: Value,
        /// The file name.
        name: String,
        /// The file's bytes.
        content: Vec<u8>,
    },
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The REST client.
#[derive(Clone)]
pub struct Rest {
    base: String,
    auth: Arc<str>,
    client: Client<Https, Full<Bytes>>,
    deadline: Duration,
    /// Buckets (by route) not to call before an instant.
    blocked: Arc<Mutex<HashMap<String, Instant>>>,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of every log line.
        f.debug_struct("Rest")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::PATCH | Method::PUT | Method::DELETE
    )
}

fn seconds(v: Option<&str>) -> Option<Duration> {
    let s: f64 = v?.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER))
}

/// The route of a path for rate-limit buckets: the path with message ids left out, so
/// edits of one channel share a bucket as Discord's do (the major parameter is the channel or
/// webhook).
fn route(method: &Method, path: &str) -> String {
    let mut parts: Vec<&str> = path.split('/').collect();
    if let Some(i) = parts.iter().position(|p| *p == "messages") {
        parts.truncate(i + 1);
    }
    format!("{method} {}", parts.join("/"))
}

impl Rest {
    /// A client for `base_url` (HTTP or HTTPS) with the bot token `token`.
    pub fn new(base_url: &str, token: &str) -> anyhow::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Rest {
            base: base_url.trim_end_matches('/').to_string(),
            auth: Arc::from(format!("Bot {token}")),
            client: Client::builder(TokioExecutor::new()).build(https),
            deadline: DEFAULT_DEADLINE,
            blocked: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The same client with another per-exchange deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    fn request(
        &self,
        method: &Method,
        path: &str,
        body: &Option<Body>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let b = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("authorization", &*self.auth)
            .header(
                "user-agent",
                "DiscordBot (https://github.com/aether-v, 0.1)",
            );
        let req = match body {
            None => b.body(Full::new(Bytes::new()))?,
            Some(Body::Json(v)) => b
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(v)?)))?,
            Some(Body::File {
                payload,
                name,
                content,
            }) => {
                let boundary = format!("aetherv-{}", uuid::Uuid::new_v4().simple());
                let mut payload = payload.clone();
                if let Some(o) = payload.as_object_mut() {
                    o.insert(
                        "attachments".into(),
                        serde_json::json!([{ "id": 0, "filename": name }]),
                    );
                }
                let safe: String = name
                    .chars()
                    .filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\'))
                    .collect();
                let mut out = Vec::new();
                out.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json\r\n\r\n"
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&serde_json::to_vec(&payload)?);
                out.extend_from_slice(
                    format!(
                        "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"{safe}\"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(content);
                out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                b.header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Full::new(Bytes::from(out)))?
            }
        };
        Ok(req)
    }

    async fn wait_bucket(&self, route: &str) {
        let until = self.blocked.lock().ok().and_then(|m| m.get(route).copied());
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }

    fn note_bucket(&self, route: &str, headers: &hyper::HeaderMap) {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let Ok(mut m) = self.blocked.lock() else {
            return;
        };
        match (
            h("x-ratelimit-remaining"),
            seconds(h("x-ratelimit-reset-after")),
        ) {
            (Some("0"), Some(after)) => {
                m.insert(route.to_string(), Instant::now() + after);
            }
            _ => {
                m.remove(route);
            }
        }
    }

    /// One call: `method` on `path` (relative to the base URL) with `body`; the response's
    /// JSON (`Null` for 204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Value, RestError> {
        let route = route(&method, path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= MAX_ATTEMPTS;
            self.wait_bucket(&route).await;
            let req = self
                .request(&method, path, &body)
                .map_err(|e| RestError::Unreachable(format!("bad request: {e}")))?;
            let exchange = async {
                let resp = self.client.request(req).await?;
                let (parts, body) = resp.into_parts();
                let bytes = body.collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, bytes))
            };
            let (parts, bytes) = match tokio::time::timeout(self.deadline, exchange).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let never_sent = e
                        .downcast_ref::<hyper_util::client::legacy::Error>()
                        .is_some_and(hyper_util::client::legacy::Error::is_connect);
                    tracing::warn!(%route, error = %e, never_sent, "discord call failed");
                    if (never_sent || idempotent(&method)) && !last {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    return Err(RestError::Unreachable(e.to_string()));
                }
                Err(_) => {
                    tracing::warn!(%route, "discord call timed out");
                    if idempotent(&method) && !last {
                        continue;
                    }
                    return Err(RestError::Unreachable("deadline passed".into()));
                }
            };
            self.note_bucket(&route, &parts.headers);
            let status = parts.status;
            if status.is_success() {
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&bytes)
                    .map_err(|e| RestError::Unreachable(format!("unreadable answer: {e}")));
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    let from_body = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v.get("retry_after").and_then(Value::as_f64))
                        .map(|s| s.to_string());
                    let header = parts
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok());
                    let wait = seconds(from_body.as_deref())
                        .or_else(|| seconds(header))
                        .unwrap_or(Duration::from_secs(1));
                    tracing::warn!(%route, wait_ms = wait.as_millis() as u64, "discord rate limit");
                    if last {
                        return Err(RestError::Refused { status, body: text });
                    }
                    tokio::time::sleep(wait).await;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    tracing::error!(%route, %status, "discord refused the bot's credentials");
                    return Err(RestError::Unauthorized(status));
                }
                StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
                    if !last =>
                {
                    tracing::warn!(%route, %status, "discord unavailable; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                s if s.is_server_error() && idempotent(&method) && !last => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                _ => {
                    tracing::warn!(%route, %status, body = %text, "discord refused a call");
                    return Err(RestError::Refused { status, body: text });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_share_a_bucket_per_channel() {
        assert_eq!(
            route(&Method::PATCH, "/channels/1/messages/2"),
            "PATCH /channels/1/messages"
        );
        assert_eq!(seconds(Some("1.5")), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(Some("-1")), None);
        assert_eq!(seconds(Some("9999")), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let r = Rest::new("http://127.0.0.1:1", "secret-token").expect("client");
        assert!(!format!("{r:?}").contains("secret-token"));
    }
}
