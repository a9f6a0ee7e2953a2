//! A fake Slack: the Web API (axum, records every call) and the Socket Mode WebSocket
//! (tokio-tungstenite, sends envelopes and collects the bot's acknowledgements). Written for
//! these tests from Slack's documented request and response shapes.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// One recorded Web API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method (`chat.postMessage`).
    pub method: String,
    /// Body (JSON, or query parameters as an object).
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
    /// Whether it was answered with 429.
    pub limited: bool,
    /// The `ts` the fake answered (posts) or the one edited (updates).
    pub ts: String,
    /// The `authorization` header.
    pub auth: String,
    /// The `content-type` header (empty for a GET).
    pub content_type: String,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    next_ts: u64,
    acks: HashMap<String, oneshot::Sender<(Value, Duration)>>,
    sent_at: HashMap<String, Instant>,
    /// Per method: Retry-After seconds for the next calls (answered 429).
    limits: HashMap<String, VecDeque<u64>>,
    uploads: HashMap<String, Vec<u8>>,
    usergroups: HashMap<String, Vec<String>>,
    ws: Option<mpsc::UnboundedSender<String>>,
    /// Every Socket Mode connection so far, oldest first.
    conns: Vec<Conn>,
    /// Channels the bot is not a member of (`chat.postMessage` answers `not_in_channel`).
    not_member: std::collections::HashSet<String>,
    /// Messages posted to `response_url`s, with the URL's id.
    responses: Vec<(String, Value)>,
    /// `response_url`s take the message and never answer.
    hold_responses: bool,
    /// Methods answered with a bare `{"ok": true}` (as a minimal recording fake would).
    minimal: std::collections::HashSet<String>,
    /// Benchmark mode: `views.*` bodies are echoed without being parsed into a tree or kept
    /// (the fake stands in for Slack, whose work is not the bot's; on a shared machine it
    /// should take as little CPU as it can).
    lean: bool,
}

/// One Socket Mode connection as the fake saw it.
#[derive(Clone)]
pub struct Conn {
    /// When the WebSocket was accepted.
    pub opened: Instant,
    /// When it ended (either side), if it has.
    pub closed: Option<Instant>,
    /// Closes it from the server side.
    kill: tokio_util::sync::CancellationToken,
    /// Its envelope queue.
    tx: mpsc::UnboundedSender<String>,
}

/// The fake.
#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
    /// `http://127.0.0.1:PORT/api`.
    pub api_url: String,
    base: String,
    ws_url: String,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeSlack {
    /// Starts the Web API and the WebSocket on loopback.
    pub async fn start() -> FakeSlack {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", http.local_addr().expect("addr"));
        let fake = FakeSlack {
            inner: Arc::new(Mutex::new(Inner::default())),
            api_url: format!("{base}/api"),
            ws_url: format!("ws://{}/link", ws.local_addr().expect("addr")),
            base,
        };
        let app = Router::new()
            .route("/api/{method}", post(api_post).get(api_get))
            .route("/upload/{id}", post(upload))
            .route("/respond/{id}", post(respond_url))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(http, app).await });
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = ws.accept().await {
                let f = f.clone();
                tokio::spawn(async move { f.serve_ws(tcp).await });
            }
        });
        fake
    }

    async fn serve_ws(&self, tcp: tokio::net::TcpStream) {
        let _ = tcp.set_nodelay(true);
        let Ok(socket) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (mut sink, mut stream) = socket.split();
        let hello = json!({"type": "hello", "num_connections": 1,
            "connection_info": {"app_id": "A0FAKE"}, "debug_info": {"host": "fake"}});
        if sink.send(Message::text(hello.to_string())).await.is_err() {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let kill = tokio_util::sync::CancellationToken::new();
        let index = {
            let mut inner = lock(&self.inner);
            inner.ws = Some(tx.clone());
            inner.conns.push(Conn {
                opened: Instant::now(),
                closed: None,
                kill: kill.clone(),
                tx,
            });
            inner.conns.len() - 1
        };
        // Writing and reading run apart, so a backlog of envelopes never delays reading acks.
        let inner = Arc::clone(&self.inner);
        let writer_kill = kill.clone();
        tokio::spawn(async move {
            loop {
                let text = tokio::select! {
                    t = rx.recv() => t,
                    () = writer_kill.cancelled() => None,
                };
                let Some(text) = text else {
                    let _ = sink.close().await;
                    return;
                };
                let id = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["envelope_id"].as_str().map(str::to_string));
                if let Some(id) = id {
                    lock(&inner).sent_at.insert(id, Instant::now());
                }
                if sink.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        });
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                () = kill.cancelled() => None,
            };
            let Some(Ok(msg)) = msg else { break };
            if let Message::Text(t) = msg {
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                let id = v["envelope_id"].as_str().unwrap_or_default().to_string();
                let mut inner = lock(&self.inner);
                let took = inner
                    .sent_at
                    .remove(&id)
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                if let Some(tx) = inner.acks.remove(&id) {
                    let _ = tx.send((v.get("payload").cloned().unwrap_or(Value::Null), took));
                }
            }
        }
        let mut inner = lock(&self.inner);
        if let Some(c) = inner.conns.get_mut(index) {
            c.closed = Some(Instant::now());
        }
    }

    /// The Socket Mode connections so far, oldest first.
    pub fn connections(&self) -> Vec<Conn> {
        lock(&self.inner).conns.clone()
    }

    /// Waits until `n` Socket Mode connections have been opened.
    pub async fn wait_connections(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while lock(&self.inner).conns.len() < n {
            assert!(
                Instant::now() < deadline,
                "the bot never opened connection {n}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What Slack does before it moves a connection: a `disconnect` envelope on the newest
    /// connection, which is closed `grace` later.
    pub fn refresh_newest(&self, grace: Duration) {
        let inner = lock(&self.inner);
        let Some(c) = inner.conns.last() else { return };
        let msg = json!({"type": "disconnect", "reason": "refresh_requested",
            "debug_info": {"host": "fake"}});
        let _ = c.tx.send(msg.to_string());
        let kill = c.kill.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            kill.cancel();
        });
    }

    /// Closes the newest connection from the server side without warning.
    pub fn drop_newest(&self) {
        if let Some(c) = lock(&self.inner).conns.last() {
            c.kill.cancel();
        }
    }

    /// Waits until the bot holds a Socket Mode connection.
    pub async fn connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while lock(&self.inner).ws.is_none() {
            assert!(Instant::now() < deadline, "the bot never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends an envelope and returns a receiver for the bot's acknowledgement payload and the
    /// time from writing the envelope to reading the acknowledgement.
    pub fn send_envelope(
        &self,
        kind: &str,
        payload: &Value,
    ) -> oneshot::Receiver<(Value, Duration)> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        let env = json!({"type": kind, "envelope_id": id, "accepts_response_payload": true,
            "payload": payload});
        let mut inner = lock(&self.inner);
        inner.acks.insert(id, tx);
        if let Some(ws) = &inner.ws {
            let _ = ws.send(env.to_string());
        }
        rx
    }

    /// A slash command; returns the acknowledgement payload. Its `response_url` is the
    /// fake's, named after the command text.
    pub async fn slash(&self, user: &str, channel: &str, text: &str) -> Value {
        let mut payload = slash_payload(user, channel, text);
        payload["response_url"] =
            json!(format!("{}/respond/{}", self.base, text.replace(' ', "_")));
        let rx = self.send_envelope("slash_commands", &payload);
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("acknowledged within 5 s")
            .expect("ack")
            .0
    }

    /// An interaction; returns the acknowledgement payload.
    pub async fn interact(&self, payload: Value) -> Value {
        let rx = self.send_envelope("interactive", &payload);
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("acknowledged within 5 s")
            .expect("ack")
            .0
    }

    /// Makes the bot a non-member of `channel`: posts there fail with `not_in_channel`.
    pub fn not_member(&self, channel: &str) {
        lock(&self.inner).not_member.insert(channel.to_string());
    }

    /// From now on `response_url`s accept a message and never answer.
    pub fn hold_responses(&self) {
        lock(&self.inner).hold_responses = true;
    }

    /// Benchmark mode: views are echoed without parsing them into a tree; their bodies are not
    /// recorded (their calls are, for counting).
    pub fn lean(&self) {
        lock(&self.inner).lean = true;
    }

    /// Answers `method` with a bare `{"ok": true}` from now on.
    pub fn minimal_replies(&self, method: &str) {
        lock(&self.inner).minimal.insert(method.to_string());
    }

    /// What was posted to the fake's `response_url`s: (id, message).
    pub fn responses(&self) -> Vec<(String, Value)> {
        lock(&self.inner).responses.clone()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner).calls.clone()
    }

    /// Calls of one method (answered, not 429).
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        lock(&self.inner)
            .calls
            .iter()
            .filter(|c| c.method == method && !c.limited)
            .cloned()
            .collect()
    }

    /// How many calls of one method were answered (not 429), without copying them.
    pub fn count_of(&self, method: &str) -> usize {
        lock(&self.inner)
            .calls
            .iter()
            .filter(|c| c.method == method && !c.limited)
            .count()
    }

    /// Waits for a successful call of `method` matching `pred`.
    pub async fn wait_for(
        &self,
        method: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Call {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(c) = self.calls_of(method).into_iter().find(|c| pred(&c.body)) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "no matching {method} call; calls: {:#?}",
                self.calls()
                    .iter()
                    .map(|c| (&c.method, &c.body))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Answers the next calls of `method` with 429 and these `Retry-After` seconds.
    pub fn rate_limit(&self, method: &str, retry_after: &[u64]) {
        lock(&self.inner)
            .limits
            .entry(method.to_string())
            .or_default()
            .extend(retry_after);
    }

    /// Sets a user group's members.
    pub fn set_usergroup(&self, group: &str, users: &[&str]) {
        lock(&self.inner).usergroups.insert(
            group.to_string(),
            users.iter().map(|u| u.to_string()).collect(),
        );
    }

    /// Uploaded file bodies by file id.
    pub fn uploads(&self) -> HashMap<String, Vec<u8>> {
        lock(&self.inner).uploads.clone()
    }
}

/// A slash-command payload as Slack sends it.
/// Signs a request body as Slack does: `v0=` + hex HMAC-SHA256 of `v0:<ts>:<body>`.
pub fn sign(secret: &str, ts: &str, body: &str) -> String {
    sign_bytes(secret, ts, body.as_bytes())
}

/// [`sign`] over any bytes.
pub fn sign_bytes(secret: &str, ts: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

/// A slash command as Slack posts it over HTTP (form-encoded).
pub fn command_body(user: &str, channel: &str, text: &str) -> String {
    let pairs: Vec<(String, String)> = slash_payload(user, channel, text)
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    serde_urlencoded::to_string(pairs).expect("a form encodes")
}

/// The job id on the Approve button of an approval message.
pub fn approval_job(message: &Value) -> String {
    message["blocks"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["type"] == "actions"))
        .and_then(|b| b["elements"][0]["value"].as_str())
        .expect("job id on the button")
        .to_string()
}

pub fn slash_payload(user: &str, channel: &str, text: &str) -> Value {
    json!({"team_id": "T0FAKE", "team_domain": "fake", "channel_id": channel,
        "channel_name": "ops", "user_id": user, "user_name": "someone", "command": "/aether",
        "text": text, "api_app_id": "A0FAKE",
        "response_url": "https://hooks.slack.com/commands/T0FAKE/1/x",
        "trigger_id": format!("trigger.{}", uuid::Uuid::new_v4().simple())})
}

/// A view as Slack echoes it: `view` (JSON text of an object) with an id, team and hash.
pub fn splice_view(view: &str, id: &str) -> String {
    let rest = view.trim_start().strip_prefix('{').unwrap_or("}");
    let sep = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!(r#"{{"ok":true,"view":{{"id":"{id}","team_id":"T0FAKE","hash":"h"{sep}{rest}}}"#)
}

/// The request's view echoed as Slack does, serialised straight from the request (no copy of
/// what may be a large modal).
fn echo_view(view: &Value, id: &str) -> String {
    splice_view(
        &serde_json::to_string(view).unwrap_or_else(|_| "{}".into()),
        id,
    )
}

fn respond(fake: &FakeSlack, method: &str, headers: &HeaderMap, body: Value) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut inner = lock(&fake.inner);
    let limited = inner.limits.get_mut(method).and_then(VecDeque::pop_front);
    if limited.is_none() {
        inner.next_ts += 1;
    }
    let ts = format!("1700000000.{:06}", inner.next_ts);
    let call_ts = if method == "chat.update" {
        body["ts"].as_str().unwrap_or_default().to_string()
    } else {
        ts.clone()
    };
    let reply = match method {
        _ if limited.is_some() => json!({"ok": false, "error": "ratelimited"}).to_string(),
        m if inner.minimal.contains(m) => json!({"ok": true}).to_string(),
        "chat.postMessage" | "chat.postEphemeral"
            if body["channel"]
                .as_str()
                .is_some_and(|c| inner.not_member.contains(c)) =>
        {
            json!({"ok": false, "error": "not_in_channel"}).to_string()
        }
        "apps.connections.open" => json!({"ok": true, "url": fake.ws_url}).to_string(),
        "chat.postMessage" => json!({"ok": true, "channel": body["channel"], "ts": ts,
            "message": {"ts": ts, "text": body["text"]}})
        .to_string(),
        "chat.update" => json!({"ok": true, "channel": body["channel"], "ts": body["ts"],
            "text": body["text"], "message": {"text": body["text"]}})
        .to_string(),
        "chat.postEphemeral" => json!({"ok": true, "message_ts": ts}).to_string(),
        "views.open" | "views.push" | "views.update" => {
            echo_view(&body["view"], &format!("V{}", inner.next_ts))
        }
        "files.getUploadURLExternal" => {
            let id = format!("F{}", inner.next_ts);
            json!({"ok": true, "file_id": id, "upload_url": format!("{}/upload/{id}", fake.base)})
                .to_string()
        }
        "files.completeUploadExternal" => json!({"ok": true, "files": body["files"]}).to_string(),
        "usergroups.users.list" => {
            let g = body["usergroup"].as_str().unwrap_or_default();
            json!({"ok": true, "users": inner.usergroups.get(g).cloned().unwrap_or_default()})
                .to_string()
        }
        _ => json!({"ok": true}).to_string(),
    };
    inner.calls.push(Call {
        method: method.to_string(),
        body,
        at: Instant::now(),
        limited: limited.is_some(),
        ts: call_ts,
        auth: header("authorization"),
        content_type: header("content-type"),
    });
    drop(inner);
    let json = [("content-type", "application/json")];
    match limited {
        Some(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            json,
            reply,
        )
            .into_response(),
        None => (StatusCode::OK, json, reply).into_response(),
    }
}

/// A `views.*` call in benchmark mode: the view is located in the body without building a
/// tree, and echoed as Slack does; the call is recorded without its body.
fn echo_lean(fake: &FakeSlack, method: &str, body: &[u8]) -> Response {
    #[derive(serde::Deserialize)]
    struct ViewRequest<'a> {
        #[serde(borrow)]
        view: &'a serde_json::value::RawValue,
    }
    let mut inner = lock(&fake.inner);
    inner.next_ts += 1;
    let id = format!("V{}", inner.next_ts);
    inner.calls.push(Call {
        method: method.to_string(),
        body: Value::Null,
        at: Instant::now(),
        limited: false,
        ts: String::new(),
        auth: String::new(),
        content_type: String::new(),
    });
    drop(inner);
    let reply = match serde_json::from_slice::<ViewRequest>(body) {
        Ok(r) => splice_view(r.view.get(), &id),
        Err(_) => json!({"ok": false, "error": "invalid_arguments"}).to_string(),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        reply,
    )
        .into_response()
}

async fn api_post(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method.starts_with("views.") && lock(&fake.inner).lean {
        return echo_lean(&fake, &method, &body);
    }
    let body = serde_json::from_slice::<Value>(&body).unwrap_or_else(|_| {
        let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        json!(form)
    });
    respond(&fake, &method, &headers, body)
}

async fn api_get(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    respond(&fake, &method, &headers, json!(q))
}

async fn respond_url(
    State(fake): State<FakeSlack>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let v = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let hold = {
        let mut g = lock(&fake.inner);
        g.responses.push((id, v));
        g.hold_responses
    };
    if hold {
        std::future::pending::<()>().await;
    }
    // What Slack answers on a response_url.
    (StatusCode::OK, "ok").into_response()
}

async fn upload(State(fake): State<FakeSlack>, Path(id): Path<String>, body: Bytes) -> Response {
    lock(&fake.inner).uploads.insert(id, body.to_vec());
    Json(json!({"ok": true})).into_response()
}

/// The view state Slack sends with a submission, from field values.
pub fn view_state(values: &[(&str, &str)], selects: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in values {
        let entry = if selects.contains(k) {
            json!({"v": {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": v}, "value": v}}})
        } else {
            json!({"v": {"type": "plain_text_input", "value": v}})
        };
        out.insert((*k).to_string(), entry);
    }
    json!({"values": out})
}

/// A `view_submission` payload for a view the bot opened (as recorded by the fake).
pub fn submission(user: &str, opened: &Value, state: Value, view_id: &str) -> Value {
    let mut view = opened.clone();
    view["id"] = json!(view_id);
    view["team_id"] = json!("T0FAKE");
    view["hash"] = json!("h");
    view["root_view_id"] = json!(view_id);
    view["state"] = state;
    json!({"type": "view_submission", "team": {"id": "T0FAKE"},
        "user": {"id": user, "team_id": "T0FAKE"}, "api_app_id": "A0FAKE", "view": view})
}

/// A `block_actions` payload for a button on a message.
pub fn button_click(user: &str, channel: &str, ts: &str, action: &str, value: &str) -> Value {
    json!({"type": "block_actions", "team": {"id": "T0FAKE"}, "user": {"id": user},
        "api_app_id": "A0FAKE", "trigger_id": "trigger.click",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "channel": {"id": channel, "name": "ops"},
        "actions": [{"type": "button", "action_id": action, "block_id": "approval",
            "value": value, "action_ts": "1700000001.000001"}]})
}
