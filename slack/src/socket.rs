//! Socket Mode: events and interactivity over WebSockets that the bot opens (no public URL).
//!
//! slack-morphism does the protocol: it asks `apps.connections.open` for the WebSocket URL with
//! the app-level token, parses each envelope, calls our callbacks and builds the
//! acknowledgement frame. The transport under it is ours, plugged in through slack-morphism's
//! `SlackSocketModeClientsManagerFactory` seam, because the transport it ships handles the
//! envelopes of a connection strictly one after another and leaves Nagle's algorithm on: a burst
//! of acknowledgements then waits for the peer's delayed TCP ACK (about 40 ms on Linux), which
//! put a 200-command burst at p99 ≈ 47 ms. This transport:
//!
//! - sets `TCP_NODELAY`, so an acknowledgement leaves as soon as it is written;
//! - handles every envelope in its own task, so a slow handler never delays the next
//!   envelope's acknowledgement, and writes the acknowledgements that are ready together;
//! - reconnects with capped exponential backoff (1 s → 30 s) when `apps.connections.open` or
//!   the WebSocket fails or a connection closes within 5 s of opening (at once when an older
//!   connection closes), and when no pong has been seen for `ping_failure_threshold_times`
//!   ping intervals;
//! - on Slack's `disconnect` envelope (a refresh, or a server moving), opens the replacement
//!   connection first and lets the old one finish what it was handling (at most 30 s), so no
//!   envelope arrives while the bot has no connection.

use crate::app::Shared;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use slack_morphism::clients_manager::{
    SlackSocketModeClientsManager, SlackSocketModeClientsManagerFactory,
};
use slack_morphism::multipart_form::FileMultipartData;
use slack_morphism::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use url::Url;

/// How long a connection replaced after Slack's `disconnect` may go on finishing its envelopes.
const DRAIN: Duration = Duration::from_secs(30);
/// A connection that lasted less than this before closing counts as a failed attempt.
const STABLE: Duration = Duration::from_secs(5);
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The Web API connector: slack-morphism's hyper connector (HTTPS, or plain HTTP for a local
/// proxy or a test fake), with this module's Socket Mode transport.
#[derive(Clone, Debug)]
pub struct Connector(pub(crate) SlackClientHyperHttpsConnector);

impl SlackClientHttpConnector for Connector {
    fn http_get_uri<'a, RS>(
        &'a self,
        full_uri: Url,
        context: SlackClientApiCallContext<'a>,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
    {
        self.0.http_get_uri(full_uri, context)
    }

    fn http_get_with_client_secret<'a, RS>(
        &'a self,
        full_uri: Url,
        client_id: &'a SlackClientId,
        client_secret: &'a SlackClientSecret,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
    {
        self.0
            .http_get_with_client_secret(full_uri, client_id, client_secret)
    }

    fn http_post_uri<'a, RQ, RS>(
        &'a self,
        full_uri: Url,
        request_body: &'a RQ,
        context: SlackClientApiCallContext<'a>,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RQ: serde::ser::Serialize + Send + Sync,
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
    {
        self.0.http_post_uri(full_uri, request_body, context)
    }

    fn http_post_uri_multipart_form<'a, 'p, RS, PT, TS>(
        &'a self,
        full_uri: Url,
        file: Option<FileMultipartData<'p>>,
        params: &'p PT,
        context: SlackClientApiCallContext<'a>,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
        PT: std::iter::IntoIterator<Item = (&'p str, Option<TS>)> + Clone,
        TS: AsRef<str> + 'p + Send,
    {
        self.0
            .http_post_uri_multipart_form(full_uri, file, params, context)
    }

    fn http_post_uri_binary<'a, 'p, RS>(
        &'a self,
        full_uri: Url,
        content_type: String,
        data: &'a [u8],
        context: SlackClientApiCallContext<'a>,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
    {
        self.0
            .http_post_uri_binary(full_uri, content_type, data, context)
    }

    fn create_method_uri_path(&self, method_relative_uri: &str) -> ClientResult<Url> {
        self.0.create_method_uri_path(method_relative_uri)
    }
}

impl SlackSocketModeClientsManagerFactory<Connector> for Connector {
    fn new_clients_manager(
        &self,
        env: Arc<SlackClientEventsListenerEnvironment<Connector>>,
    ) -> Arc<dyn SlackSocketModeClientsManager + Send + Sync> {
        Arc::new(Transport {
            env,
            slots: Mutex::new(Vec::new()),
            stop: CancellationToken::new(),
        })
    }
}

type Listener = Arc<dyn SlackSocketModeClientListener + Send + Sync>;

/// One connection slot: kept connected until shutdown.
struct Slot {
    /// Its place among the slots (`initial_index` of its connection ids).
    index: u32,
    token: SlackApiToken,
    listener: Listener,
    /// Ping every this long; a connection silent for `ping_failures` pings is dropped.
    ping: Duration,
    ping_failures: u32,
    /// The id of the slot's current connection (the `reconnected` part changes).
    current: Mutex<SlackSocketModeWssClientId>,
    /// Slack asked the current connection to go (`disconnect`).
    refresh: Notify,
}

/// The clients manager slack-morphism drives: `register_new_token` adds slots, `start`
/// connects them, `restart_client` is called for a `disconnect` envelope.
struct Transport {
    env: Arc<SlackClientEventsListenerEnvironment<Connector>>,
    slots: Mutex<Vec<Arc<Slot>>>,
    stop: CancellationToken,
}

#[async_trait::async_trait]
impl SlackSocketModeClientsManager for Transport {
    async fn register_new_token(
        &self,
        config: &SlackClientSocketModeConfig,
        token: SlackApiToken,
        client_listener: Listener,
    ) -> ClientResult<()> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let base = u32::try_from(slots.len()).unwrap_or(u32::MAX);
        for i in 0..config.max_connections_count {
            let index = base.saturating_add(i);
            slots.push(Arc::new(Slot {
                index,
                token: token.clone(),
                listener: Arc::clone(&client_listener),
                ping: Duration::from_secs(config.ping_interval_in_seconds.max(1)),
                ping_failures: u32::try_from(config.ping_failure_threshold_times)
                    .unwrap_or(u32::MAX)
                    .max(1),
                current: Mutex::new(SlackSocketModeWssClientId::new(index, i, 0)),
                refresh: Notify::new(),
            }));
        }
        Ok(())
    }

    async fn restart_client(&self, client_id: &SlackSocketModeWssClientId) {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for slot in slots.iter().filter(|s| s.index == client_id.initial_index) {
            let current = slot
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            // A `disconnect` read on a connection that is already being replaced changes nothing.
            if current == *client_id {
                slot.refresh.notify_one();
            }
        }
    }

    async fn start(&self) {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for slot in slots.iter() {
            tokio::spawn(keep_connected(
                Arc::clone(&self.env),
                Arc::clone(slot),
                self.stop.child_token(),
            ));
        }
    }

    async fn shutdown(&self) {
        self.stop.cancel();
    }

    async fn await_term_signals(&self) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = self.stop.cancelled() => {}
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Asks Slack for a WebSocket URL and connects to it with `TCP_NODELAY`.
async fn open(
    env: &SlackClientEventsListenerEnvironment<Connector>,
    token: &SlackApiToken,
) -> anyhow::Result<Ws> {
    let opened = env
        .client
        .open_session(token)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .map_err(|e| anyhow::anyhow!("apps.connections.open failed: {e}"))?;
    let url = opened.url.value().as_str().to_string();
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .map_err(|e| anyhow::anyhow!("WebSocket connection to Slack failed: {e}"))?;
    Ok(ws)
}

/// Keeps one slot connected until `stop`.
async fn keep_connected(
    env: Arc<SlackClientEventsListenerEnvironment<Connector>>,
    run: Arc<Slot>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let ws = tokio::select! {
            r = open(&env, &run.token) => r,
            () = stop.cancelled() => return,
        };
        let ws = match ws {
            Ok(ws) => ws,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "Socket Mode connection failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let connected_at = Instant::now();
        let id = run
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tracing::debug!(connection = %id.to_string(), "Socket Mode connected");
        let conn_stop = stop.child_token();
        let mut served = tokio::spawn(serve_connection(
            ws,
            id.clone(),
            Arc::clone(&run.listener),
            (run.ping, run.ping_failures),
            conn_stop.clone(),
        ));
        tokio::select! {
            _ = &mut served => {
                if connected_at.elapsed() < STABLE {
                    // Closed right after opening: back off rather than spin on Slack.
                    tracing::warn!(connection = %id.to_string(), retry_in = ?backoff, "Socket Mode connection closed at once");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                } else {
                    backoff = Duration::from_secs(1);
                    tracing::info!(connection = %id.to_string(), "Socket Mode connection closed; reconnecting");
                }
            }
            () = run.refresh.notified() => {
                backoff = Duration::from_secs(1);
                tracing::info!(connection = %id.to_string(), "Slack asked for a new Socket Mode connection");
                // The old connection finishes what it holds while the new one connects.
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(DRAIN, served).await;
                    conn_stop.cancel();
                });
            }
            () = stop.cancelled() => return,
        }
        let mut current = run.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = current.new_reconnected_id();
    }
}

/// The envelope types slack-morphism's listener handles (and acknowledges when needed).
const KNOWN_ENVELOPES: &[&str] = &[
    "hello",
    "disconnect",
    "events_api",
    "interactive",
    "slash_commands",
];

/// The acknowledgement of an envelope whose type the listener does not know, if `body` is one.
fn unknown_envelope_ack(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let id = v.get("envelope_id")?.as_str()?;
    let kind = v.get("type").and_then(serde_json::Value::as_str);
    if kind.is_some_and(|k| KNOWN_ENVELOPES.contains(&k)) {
        return None;
    }
    Some(serde_json::json!({ "envelope_id": id }).to_string())
}

/// Reads envelopes from one WebSocket, hands each to slack-morphism's listener in its own task,
/// and writes the acknowledgements, until the connection closes, goes silent or `stop`.
async fn serve_connection(
    ws: Ws,
    id: SlackSocketModeWssClientId,
    listener: Listener,
    (ping_every, ping_failures): (Duration, u32),
    stop: CancellationToken,
) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let conn = id.to_string();
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = sink.close().await;
                return;
            }
            Some(ack) = rx.recv() => {
                // Everything ready goes out in one flush.
                let mut batch = vec![ack];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                for frame in batch {
                    if let Err(e) = sink.feed(Message::Text(frame.into())).await {
                        tracing::warn!(connection = %conn, error = %e, "Socket Mode write failed");
                        return;
                    }
                }
                if let Err(e) = sink.flush().await {
                    tracing::warn!(connection = %conn, error = %e, "Socket Mode write failed");
                    return;
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(body))) => {
                    last_heard = Instant::now();
                    if let Some(ack) = unknown_envelope_ack(body.as_str()) {
                        // slack-morphism does not know it and would not acknowledge it: Slack
                        // would redeliver it forever.
                        tracing::info!(connection = %conn, "acknowledging a Socket Mode envelope of a type this bot does not handle");
                        let _ = tx.send(ack);
                        continue;
                    }
                    let listener = Arc::clone(&listener);
                    let tx = tx.clone();
                    let id = id.clone();
                    tokio::spawn(async move {
                        if let Some(ack) = listener.on_message(&id, body.as_str().to_string()).await {
                            // The connection may be gone; Slack then redelivers.
                            let _ = tx.send(ack);
                        }
                    });
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_heard = Instant::now(),
                Some(Ok(Message::Close(frame))) => {
                    tracing::debug!(connection = %conn, ?frame, "Slack closed the Socket Mode connection");
                    return;
                }
                Some(Ok(other)) => {
                    tracing::warn!(connection = %conn, kind = ?std::mem::discriminant(&other), "unexpected non-text Socket Mode frame ignored");
                }
                Some(Err(e)) => {
                    tracing::warn!(connection = %conn, error = %e, "Socket Mode read failed");
                    return;
                }
                None => return,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * ping_failures {
                    tracing::warn!(connection = %conn, silent_for = ?last_heard.elapsed(), "no pong from Slack; reconnecting");
                    return;
                }
                if sink.send(Message::Ping(Vec::from(*b"aetherv").into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Serves Socket Mode with `connections` WebSockets until `stop`.
pub async fn serve(
    client: Arc<crate::Client>,
    shared: Arc<Shared>,
    app_token: SlackApiToken,
    connections: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let env = Arc::new(SlackClientEventsListenerEnvironment::new(client));
    let mut callbacks = SlackSocketModeListenerCallbacks::<Connector>::new();
    let s = Arc::clone(&shared);
    callbacks.command_callback = Box::new(
        move |ev: SlackCommandEvent, _c: Arc<crate::Client>, _st: SlackClientEventsUserState| {
            let s = Arc::clone(&s);
            async move { UserCallbackResult::Ok(s.on_command(&ev)) }
        },
    );
    let s = Arc::clone(&shared);
    callbacks.interaction_callback = Box::new(
        move |ev: SlackInteractionEvent,
              _c: Arc<crate::Client>,
              _st: SlackClientEventsUserState| {
            let s = Arc::clone(&s);
            async move { UserCallbackResult::Ok(s.on_interaction(ev).await) }
        },
    );
    callbacks.push_events_callback = Box::new(
        |_ev: SlackPushEventCallback, _c: Arc<crate::Client>, _st: SlackClientEventsUserState| async {
            UserCallbackResult::Ok(())
        },
    );
    let config = SlackClientSocketModeConfig::new().with_max_connections_count(connections.max(1));
    let listener = SlackClientSocketModeListener::new(&config, env, callbacks);
    listener
        .listen_for(&app_token)
        .await
        .map_err(|e| anyhow::anyhow!("Socket Mode registration failed: {e}"))?;
    listener.start().await;
    stop.cancelled().await;
    listener.shutdown().await;
    Ok(())
}
