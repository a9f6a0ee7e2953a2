//! A fake Discord REST API (axum): records every call, answers message posts with a fresh
//! message id, and can be told to answer the next calls of a route with an error status
//! (429 with `retry_after`, 401, 503 …). Written for these tests from Discord's documented
//! request and response shapes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    /// `POST`, `PATCH` …
    pub method: String,
    /// The path after the base URL (`/channels/1/messages`).
    pub path: String,
    /// The JSON body (for multipart: the `payload_json` part), `Null` when empty.
    pub body: Value,
    /// The raw body.
    pub raw: Vec<u8>,
    /// The `authorization` header.
    pub auth: String,
    /// The `content-type` header.
    pub content_type: String,
    /// When it arrived.
    pub at: Instant,
    /// The status the fake answered.
    pub status: u16,
    /// The JSON the fake answered.
    pub answer: Value,
}

/// A scripted answer: status, JSON body and extra headers.
type Scripted = (u16, Value, Vec<(&'static str, String)>);

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    next_id: u64,
    /// (method, path prefix) → answers for the next matching calls.
    script: Vec<(String, String, VecDeque<Scripted>)>,
}

/// The fake.
#[derive(Clone)]
pub struct FakeDiscord {
    inner: Arc<Mutex<Inner>>,
    /// Its base URL (`http://127.0.0.1:PORT/api/v10`).
    pub api_url: String,
}

fn payload_json(raw: &[u8]) -> Value {
    let text = String::from_utf8_lossy(raw);
    let Some(start) = text.find("name=\"payload_json\"") else {
        return Value::Null;
    };
    let rest = &text[start..];
    let Some(body_at) = rest.find("\r\n\r\n") else {
        return Value::Null;
    };
    let body = &rest[body_at + 4..];
    let end = body.find("\r\n--").unwrap_or(body.len());
    serde_json::from_str(&body[..end]).unwrap_or(Value::Null)
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/api/v10")
        .unwrap_or(uri.path())
        .to_string();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = h("content-type");
    let body = if content_type.starts_with("multipart/") {
        payload_json(&raw)
    } else {
        serde_json::from_slice(&raw).unwrap_or(Value::Null)
    };
    let mut g = inner.lock().expect("fake lock");
    let scripted = g
        .script
        .iter_mut()
        .find(|(m, p, q)| *m == method.as_str() && path.starts_with(p.as_str()) && !q.is_empty())
        .and_then(|(_, _, q)| q.pop_front());
    let (status, answer, extra) = match scripted {
        Some(s) => s,
        None => {
            g.next_id += 1;
            let channel = path
                .strip_prefix("/channels/")
                .and_then(|p| p.split('/').next())
                .unwrap_or("0")
                .to_string();
            let id = match path.rsplit('/').next() {
                Some(last) if method == Method::PATCH && last != "@original" => last.to_string(),
                _ => format!("9000{}", g.next_id),
            };
            (
                200,
                json!({ "id": id, "channel_id": channel, "content": body.get("content").cloned().unwrap_or(Value::Null) }),
                Vec::new(),
            )
        }
    };
    g.calls.push(Call {
        method: method.to_string(),
        path,
        body,
        raw: raw.to_vec(),
        auth: h("authorization"),
        content_type,
        at: Instant::now(),
        status,
        answer: answer.clone(),
    });
    if status == 200 && method == Method::POST && uri.path().ends_with("/callback") {
        // An interaction callback: Discord answers 204 No Content.
        return StatusCode::NO_CONTENT.into_response();
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, Json(answer)).into_response();
    for (k, v) in extra {
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

impl FakeDiscord {
    /// Starts the fake on a loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeDiscord {
            inner,
            api_url: format!("http://{addr}/api/v10"),
        }
    }

    /// The next calls of `method` on paths starting with `prefix` get these answers.
    pub fn script(&self, method: &str, prefix: &str, answers: Vec<(u16, Value)>) {
        let answers = answers
            .into_iter()
            .map(|(s, b)| (s, b, Vec::new()))
            .collect();
        self.script_with_headers(method, prefix, answers);
    }

    /// As [`FakeDiscord::script`], with response headers (rate-limit headers).
    pub fn script_with_headers(&self, method: &str, prefix: &str, answers: Vec<Scripted>) {
        self.inner.lock().expect("fake lock").script.push((
            method.into(),
            prefix.into(),
            answers.into(),
        ));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("fake lock").calls.clone()
    }

    /// Waits for a call matching `f`, up to `within`.
    pub async fn wait_for(&self, within: Duration, f: impl Fn(&Call) -> bool) -> Call {
        let until = Instant::now() + within;
        loop {
            if let Some(c) = self.calls().into_iter().find(|c| f(c)) {
                return c;
            }
            assert!(
                Instant::now() < until,
                "no matching call; calls: {:#?}",
                self.calls()
                    .iter()
                    .map(|c| (c.method.clone(), c.path.clone(), c.body.to_string()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
