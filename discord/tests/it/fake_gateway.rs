//! A fake Discord Gateway (tokio-tungstenite over a loopback socket), written for these tests
//! from Discord's documented Gateway protocol: HELLO (op 10) on connect; IDENTIFY (op 2)
//! checked for the token and the intents, answered with READY (a dispatch with `session_id`
//! and `resume_gateway_url`) or with close 4004 / 4014; RESUME (op 6) of the session answered
//! with RESUMED, of an unknown session with INVALID_SESSION (op 9); HEARTBEAT (op 1) answered
//! with HEARTBEAT_ACK (op 11). The test pushes dispatches (INTERACTION_CREATE …), a RECONNECT
//! (op 7) or a close with a code. Everything the client sent is recorded. A client that asks for
//! payload compression in its IDENTIFY (`compress: true`, as serenity does) gets READY as a
//! zlib-compressed binary frame, as Discord sends large payloads.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// The heartbeat interval the fake asks for (Discord's is about 41 s).
pub const HEARTBEAT_MS: u64 = 1_000;
/// The session id of every READY.
pub const SESSION: &str = "fake-session-0001";

/// What the test asks of the live connection.
enum Ctl {
    /// Dispatches (event name, data), written back to back, then flushed.
    Dispatch(Vec<(String, Value)>),
    /// op 7.
    Reconnect,
    /// A close frame with this code.
    Close(u16),
}

/// One frame the client sent: op and data.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The opcode.
    pub op: u64,
    /// The data.
    pub d: Value,
    /// Which connection (1, 2 …).
    pub connection: usize,
}

#[derive(Default)]
struct State {
    token: String,
    intents: u64,
    /// Answer the next IDENTIFY with this close code.
    refuse: Option<u16>,
    received: Vec<Sent>,
    connections: usize,
    live: Option<mpsc::UnboundedSender<Ctl>>,
    seq: u64,
    /// Interaction id → when its dispatch was written.
    dispatched: HashMap<String, Instant>,
}

/// The fake.
#[derive(Clone)]
pub struct FakeGateway {
    state: Arc<Mutex<State>>,
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
}

fn text(v: &Value) -> Message {
    Message::text(v.to_string())
}

/// `v` as a zlib-compressed binary frame (payload compression).
fn zlib(v: &Value) -> Message {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let bytes = z
        .write_all(v.to_string().as_bytes())
        .and_then(|()| z.finish())
        .expect("zlib");
    Message::binary(bytes)
}

/// Fills in the fields Discord always sends with an interaction (and that serenity requires)
/// where a test's payload (or an older documentation example) leaves them out.
pub fn as_discord_sends(mut ia: Value) -> Value {
    let defaults = json!({
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "app_permissions": "2248473465835073",
        "attachment_size_limit": 10_485_760,
        "authorizing_integration_owners": { "0": ia.get("guild_id").cloned().unwrap_or(Value::Null) },
        "context": 0,
        "version": 1,
    });
    fill(&mut ia, &defaults);
    if ia.get("member").is_some() {
        let member = json!({
            "deaf": false, "mute": false, "flags": 0, "pending": false, "nick": null,
            "avatar": null, "premium_since": null, "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "permissions": "2248473465835073", "roles": [],
        });
        fill(&mut ia["member"], &member);
        fill(&mut ia["member"]["user"], &user());
    }
    if ia.get("user").is_some() {
        fill(&mut ia["user"], &user());
    }
    if ia.get("message").is_some() {
        let message = json!({
            "type": 0, "tts": false, "timestamp": "2024-01-01T00:00:00.000000+00:00",
            "edited_timestamp": null, "pinned": false, "mentions": [], "mention_roles": [],
            "mention_everyone": false, "flags": 0, "embeds": [], "attachments": [],
            "components": [], "content": "",
            "author": { "id": super::APP, "username": "aether", "discriminator": "0", "bot": true, "avatar": null },
        });
        fill(&mut ia["message"], &message);
    }
    ia
}

fn user() -> Value {
    json!({ "username": "someone", "discriminator": "0", "avatar": null, "global_name": null, "public_flags": 0 })
}

fn fill(v: &mut Value, defaults: &Value) {
    let (Some(obj), Some(d)) = (v.as_object_mut(), defaults.as_object()) else {
        return;
    };
    for (k, dv) in d {
        obj.entry(k.clone()).or_insert_with(|| dv.clone());
    }
}

fn ready(app: &str, url: &str) -> Value {
    json!({
        "v": 10,
        "user": { "id": app, "username": "aether", "discriminator": "0", "bot": true, "avatar": null },
        "guilds": [{ "id": super::GUILD, "unavailable": true }],
        "session_id": SESSION,
        "resume_gateway_url": url,
        "shard": [0, 1],
        "application": { "id": app, "flags": 0 },
    })
}

impl FakeGateway {
    /// Starts the fake on a loopback port; it takes `token` (with or without `Bot `) and
    /// exactly `intents`.
    pub async fn start(token: &str, intents: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            intents,
            ..State::default()
        }));
        let gw = FakeGateway { state, url };
        let accept = gw.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let gw = accept.clone();
                tokio::spawn(async move { gw.serve(sock).await });
            }
        });
        gw
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake gateway lock")
    }

    async fn serve(&self, sock: tokio::net::TcpStream) {
        let _ = sock.set_nodelay(true);
        let Ok(ws) = tokio_tungstenite::accept_async(sock).await else {
            return;
        };
        let (mut out, mut inc) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let n = {
            let mut s = self.lock();
            s.connections += 1;
            s.connections
        };
        let hello =
            json!({ "op": 10, "d": { "heartbeat_interval": HEARTBEAT_MS }, "s": null, "t": null });
        if out.send(text(&hello)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                frame = inc.next() => {
                    let Some(Ok(frame)) = frame else { return };
                    let Message::Text(t) = frame else {
                        if frame.is_close() { return; }
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                    let op = v["op"].as_u64().unwrap_or(u64::MAX);
                    let d = v["d"].clone();
                    self.lock().received.push(Sent { op, d: d.clone(), connection: n });
                    let answer = match op {
                        1 => Some(json!({ "op": 11, "d": null, "s": null, "t": null })),
                        2 => {
                            let refuse = self.identify_refusal(&d);
                            if let Some(code) = refuse {
                                let _ = out.send(Message::Close(Some(CloseFrame {
                                    code: CloseCode::from(code),
                                    reason: "refused".into(),
                                }))).await;
                                return;
                            }
                            let app = super::APP;
                            let frame = {
                                let mut s = self.lock();
                                s.seq += 1;
                                s.live = Some(tx.clone());
                                json!({ "op": 0, "s": s.seq, "t": "READY", "d": ready(app, &self.url) })
                            };
                            if d["compress"] == true {
                                if out.send(zlib(&frame)).await.is_err() { return; }
                                continue;
                            }
                            Some(frame)
                        }
                        6 => {
                            let mut s = self.lock();
                            if d["session_id"] == SESSION {
                                s.seq += 1;
                                s.live = Some(tx.clone());
                                Some(json!({ "op": 0, "s": s.seq, "t": "RESUMED", "d": {} }))
                            } else {
                                Some(json!({ "op": 9, "d": false, "s": null, "t": null }))
                            }
                        }
                        _ => None,
                    };
                    if let Some(a) = answer {
                        if out.send(text(&a)).await.is_err() { return; }
                    }
                }
                ctl = rx.recv() => {
                    let Some(ctl) = ctl else { return };
                    match ctl {
                        Ctl::Dispatch(events) => {
                            for (t, d) in events {
                                let frame = {
                                    let mut s = self.lock();
                                    s.seq += 1;
                                    if let Some(id) = d["id"].as_str() {
                                        s.dispatched.insert(id.to_string(), Instant::now());
                                    }
                                    json!({ "op": 0, "s": s.seq, "t": t, "d": d })
                                };
                                if out.feed(text(&frame)).await.is_err() { return; }
                            }
                            if out.flush().await.is_err() { return; }
                        }
                        Ctl::Reconnect => {
                            let _ = out.send(text(&json!({ "op": 7, "d": null, "s": null, "t": null }))).await;
                        }
                        Ctl::Close(code) => {
                            // This session stops being the live one before the client hears of
                            // it: its reconnect may set the next one at once.
                            {
                                let mut s = self.lock();
                                if s.live.as_ref().is_some_and(|l| l.same_channel(&tx)) {
                                    s.live = None;
                                }
                            }
                            let _ = out.send(Message::Close(Some(CloseFrame {
                                code: CloseCode::from(code),
                                reason: "".into(),
                            }))).await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The close code for an IDENTIFY, or `None` to take it.
    fn identify_refusal(&self, d: &Value) -> Option<u16> {
        let mut s = self.lock();
        if let Some(code) = s.refuse.take() {
            return Some(code);
        }
        let token = d["token"].as_str().unwrap_or_default();
        if token.strip_prefix("Bot ").unwrap_or(token) != s.token {
            return Some(4004);
        }
        if d["intents"].as_u64() != Some(s.intents) {
            return Some(4014);
        }
        None
    }

    /// The next IDENTIFY is answered with a close of `code`.
    pub fn refuse_next_identify(&self, code: u16) {
        self.lock().refuse = Some(code);
    }

    /// Every frame the client sent.
    pub fn received(&self) -> Vec<Sent> {
        self.lock().received.clone()
    }

    /// How many WebSocket connections were opened.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// When the dispatch of interaction `id` was written.
    pub fn dispatched_at(&self, id: &str) -> Option<Instant> {
        self.lock().dispatched.get(id).copied()
    }

    /// Waits until `f` holds of what the client sent, up to `within`.
    pub async fn wait_until(&self, within: Duration, f: impl Fn(&[Sent]) -> bool) {
        let until = Instant::now() + within;
        while !f(&self.received()) {
            assert!(
                Instant::now() < until,
                "the gateway client did not; it sent {:?}",
                self.received()
                    .iter()
                    .map(|s| (s.connection, s.op))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The live session's control queue (waiting up to 10 s for one).
    async fn live(&self) -> mpsc::UnboundedSender<Ctl> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(tx) = self.lock().live.clone().filter(|t| !t.is_closed()) {
                return tx;
            }
            assert!(Instant::now() < until, "no live gateway session");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Writes these dispatches back to back on the live connection.
    pub async fn dispatch(&self, events: Vec<(String, Value)>) {
        let tx = self.live().await;
        assert!(tx.send(Ctl::Dispatch(events)).is_ok(), "connection gone");
    }

    /// Sends INTERACTION_CREATE with `interaction` (completed as Discord sends it).
    pub async fn interaction(&self, interaction: Value) {
        self.dispatch(vec![(
            "INTERACTION_CREATE".into(),
            as_discord_sends(interaction),
        )])
        .await;
    }

    /// Asks the client to reconnect (op 7).
    pub async fn reconnect(&self) {
        let tx = self.live().await;
        assert!(tx.send(Ctl::Reconnect).is_ok(), "connection gone");
    }

    /// Closes the live connection with `code`.
    pub async fn close(&self, code: u16) {
        let tx = self.live().await;
        assert!(tx.send(Ctl::Close(code)).is_ok(), "connection gone");
    }
}
