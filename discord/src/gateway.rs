//! The Gateway (`mode: gateway`, the default): one WebSocket out from the bot, so a site needs
//! no public URL. The connection is serenity's [`Client`]: IDENTIFY with the bot token and the
//! intents [`INTENTS`] (`GUILDS` only, no privileged intent), heartbeats, RESUME after a
//! server-initiated reconnect (op 7) or a resumable close, a new IDENTIFY where the session
//! cannot be resumed. Every `INTERACTION_CREATE` is answered by [`crate::http::respond`], the
//! same logic as the HTTP endpoint, and the answer is sent through the REST callback
//! `POST /interactions/{id}/{token}/callback` within [`CALLBACK_DEADLINE`].
//!
//! A close Discord will not take back (4004 authentication failed, 4013 invalid intents, 4014
//! disallowed intents) stops the bot with an error saying so, never a reconnect loop.
//!
//! serenity 0.12.5 does not know the modal *label* component (type 18): a modal submit in the
//! label shape would reach us without its values. Over the Gateway the bot's modals are
//! therefore sent in the action-row shape ([`action_rows`]), which Discord answers in the same
//! shape; a field's error goes into its input's label and placeholder.

use crate::http::{respond, Handlers};
use crate::interaction::Interaction;
use crate::messages;
use serde_json::{json, Value};
use serenity::all::{
    ApplicationId, Context, EventHandler, GatewayError, GatewayIntents, HttpBuilder,
    Interaction as Incoming, Ready, ResumedEvent,
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The intents the bot asks for: guild events only. Interactions need no intent at all; no
/// privileged intent (message content, members, presences) is used.
pub const INTENTS: GatewayIntents = GatewayIntents::GUILDS;

/// The deadline of one interaction callback (Discord's is 3 s from the dispatch).
pub const CALLBACK_DEADLINE: Duration = Duration::from_secs(3);

/// The deadline of building the client (its `GET /gateway`).
pub const BUILD_DEADLINE: Duration = Duration::from_secs(15);

/// Discord's REST origin; an `api_url` with another origin becomes serenity's proxy.
const DISCORD_ORIGIN: &str = "https://discord.com";
/// The path serenity puts after the origin.
const API_PATH: &str = "/api/v10";

/// The modal response type.
const MODAL: u64 = 9;
/// Discord's limit on a text input's label.
const MAX_LABEL: usize = 45;
/// Discord's limit on a text input's placeholder.
const MAX_PLACEHOLDER: usize = 100;

/// Where and how to connect.
#[derive(Clone)]
pub struct Gateway {
    /// The WebSocket URL (`wss://…`, `ws://…` for a fake); `None`: what `GET /gateway` answers.
    pub url: Option<String>,
    /// The REST base URL (`https://discord.com/api/v10`, a proxy, a fake).
    pub api_url: String,
    /// The bot token.
    pub token: String,
    /// The application id.
    pub application_id: String,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of every log line.
        f.debug_struct("Gateway")
            .field("url", &self.url)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// Why the Gateway stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayStop {
    /// Close 4004.
    #[error("Discord refused the bot token (Gateway close 4004, authentication failed); not reconnecting: check the token")]
    AuthenticationFailed,
    /// Close 4014.
    #[error("Discord refused the intents (Gateway close 4014, disallowed intents); not reconnecting: a privileged intent is not enabled for this application")]
    DisallowedIntents,
    /// Close 4013.
    #[error("Discord refused the intents (Gateway close 4013, invalid intents); not reconnecting")]
    InvalidIntents,
    /// Anything else serenity gave up on.
    #[error("the Discord Gateway connection failed: {0}")]
    Failed(String),
    /// A setting that cannot work.
    #[error("{0}")]
    Config(&'static str),
}

/// serenity's proxy for `api_url`: `None` for Discord itself, else the origin in front of
/// `/api/v10` (serenity replaces `https://discord.com` in every route with it).
pub fn proxy_of(api_url: &str) -> Result<Option<String>, GatewayStop> {
    let base = api_url.trim_end_matches('/');
    let Some(origin) = base.strip_suffix(API_PATH) else {
        return Err(GatewayStop::Config(
            "api_url must end with /api/v10 in Gateway mode",
        ));
    };
    if origin == DISCORD_ORIGIN {
        return Ok(None);
    }
    if !(origin.starts_with("http://") || origin.starts_with("https://")) {
        return Err(GatewayStop::Config(
            "api_url must be an http:// or https:// URL",
        ));
    }
    Ok(Some(origin.to_string()))
}

/// Checks a configured Gateway URL: `ws://` or `wss://`, no query (serenity adds `?v=10`).
pub fn check_url(url: &str) -> Result<(), GatewayStop> {
    let scheme = url.starts_with("wss://") || url.starts_with("ws://");
    if !scheme || url.contains('?') || url.contains('#') {
        return Err(GatewayStop::Config(
            "gateway_url must be a ws:// or wss:// URL without a query",
        ));
    }
    Ok(())
}

/// Over the Gateway, a modal's label components (type 18) become action rows around their
/// text input: the label text goes into the input's `label`, with the field's error when it
/// has one; the description (error or help) into its placeholder when it shows no value.
/// Any other answer is returned as it is.
pub fn action_rows(mut answer: Value) -> Value {
    if answer.get("type").and_then(Value::as_u64) != Some(MODAL) {
        return answer;
    }
    let Some(components) = answer
        .pointer_mut("/data/components")
        .and_then(Value::as_array_mut)
    else {
        return answer;
    };
    for c in components.iter_mut() {
        if c.get("type").and_then(Value::as_u64) != Some(18) {
            continue;
        }
        let label = c.get("label").and_then(Value::as_str).unwrap_or_default();
        let description = c
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut input = c.get("component").cloned().unwrap_or_else(|| json!({}));
        let text = if description.starts_with('⚠') {
            format!("{label} {description}")
        } else {
            label.to_string()
        };
        input["label"] = json!(messages::cut(&text, MAX_LABEL));
        let shows_value = input.get("value").is_some() || input.get("placeholder").is_some();
        if !description.trim().is_empty() && !shows_value {
            input["placeholder"] = json!(messages::cut(description, MAX_PLACEHOLDER));
        }
        *c = json!({ "type": 1, "components": [input] });
    }
    answer
}

/// An `INTERACTION_CREATE` dispatch's `d` as the Gateway path reads it: parsed by serenity,
/// then turned into our shape (for the fuzzer and tests: outside input on this path).
pub fn dispatched_interaction(d: &[u8]) -> Result<Interaction, serde_json::Error> {
    ours(&serde_json::from_slice::<Incoming>(d)?)
}

/// The interaction in our own shape: serenity's model serialized as Discord sends it, with
/// the interaction type, which serenity keeps in its enum rather than in the fields.
fn ours(incoming: &Incoming) -> Result<Interaction, serde_json::Error> {
    let mut v = serde_json::to_value(incoming)?;
    v["type"] = json!(u8::from(incoming.kind()));
    serde_json::from_value(v)
}

struct Handler {
    handlers: Handlers,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn interaction_create(&self, ctx: Context, incoming: Incoming) {
        let (id, token) = (incoming.id(), incoming.token().to_string());
        let answer = match ours(&incoming) {
            Ok(ia) => action_rows(respond(&self.handlers, ia)),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable discord interaction");
                return;
            }
        };
        let call = ctx
            .http
            .create_interaction_response(id, &token, &answer, Vec::new());
        match tokio::time::timeout(CALLBACK_DEADLINE, call).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "interaction callback refused"),
            Err(_) => tracing::warn!("interaction callback passed its deadline"),
        }
    }

    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(
            guilds = ready.guilds.len(),
            "discord gateway ready (identified)"
        );
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        tracing::info!("discord gateway session resumed");
    }
}

/// Connects and serves interactions until `stop` (then `Ok`), or until Discord refuses the
/// connection for good (an error naming the close code).
pub async fn run(gw: Gateway, handlers: Handlers, stop: CancellationToken) -> anyhow::Result<()> {
    if let Some(url) = &gw.url {
        check_url(url)?;
    }
    let app: u64 = gw
        .application_id
        .parse()
        .map_err(|_| GatewayStop::Config("application_id must be a snowflake (digits)"))?;
    if app == 0 {
        return Err(GatewayStop::Config("application_id must not be 0").into());
    }
    let mut http = HttpBuilder::new(&gw.token).application_id(ApplicationId::new(app));
    if let Some(proxy) = proxy_of(&gw.api_url)? {
        // serenity's ratelimiter keys routes by discord.com; a proxy keeps its own.
        http = http.proxy(proxy).ratelimiter_disabled(true);
    }
    // Building the client asks REST for `GET /gateway` (serenity's); it gets a deadline.
    let build = serenity::client::ClientBuilder::new_with_http(http.build(), INTENTS)
        .event_handler(Handler { handlers });
    let mut client = tokio::time::timeout(BUILD_DEADLINE, build)
        .await
        .map_err(|_| GatewayStop::Failed("GET /gateway passed its deadline".into()))?
        .map_err(|e| GatewayStop::Failed(e.to_string()))?;
    if let Some(url) = gw.url {
        *client.ws_url.lock().await = url;
    }
    let manager = std::sync::Arc::clone(&client.shard_manager);
    let result = tokio::select! {
        r = client.start() => r,
        () = stop.cancelled() => {
            manager.shutdown_all().await;
            return Ok(());
        }
    };
    manager.shutdown_all().await;
    let why = match result {
        Err(serenity::Error::Gateway(GatewayError::InvalidAuthentication)) => {
            GatewayStop::AuthenticationFailed
        }
        Err(serenity::Error::Gateway(GatewayError::DisallowedGatewayIntents)) => {
            GatewayStop::DisallowedIntents
        }
        Err(serenity::Error::Gateway(GatewayError::InvalidGatewayIntents)) => {
            GatewayStop::InvalidIntents
        }
        Err(e) => GatewayStop::Failed(e.to_string()),
        Ok(()) => GatewayStop::Failed("the connection ended".into()),
    };
    tracing::error!(error = %why, "discord gateway stopped");
    Err(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_origin_becomes_the_proxy() {
        assert_eq!(proxy_of("https://discord.com/api/v10").ok(), Some(None));
        assert_eq!(
            proxy_of("http://127.0.0.1:9/api/v10/").ok(),
            Some(Some("http://127.0.0.1:9".to_string()))
        );
        assert!(proxy_of("http://127.0.0.1:9/other").is_err());
        assert!(check_url("wss://gateway.discord.gg").is_ok());
        assert!(check_url("ws://127.0.0.1:9/").is_ok());
        assert!(check_url("https://gateway.discord.gg").is_err());
        assert!(check_url("wss://gateway.discord.gg/?v=10").is_err());
    }

    #[test]
    fn labels_become_action_rows() {
        let modal = json!({ "type": 9, "data": { "custom_id": "x", "title": "t", "components": [
            { "type": 18, "label": "VM name", "description": "⚠ must start with a letter",
              "component": { "type": 4, "custom_id": "vm_name", "style": 1, "value": "9bad" } },
            { "type": 18, "label": "Owner", "description": "who to ask",
              "component": { "type": 4, "custom_id": "owner", "style": 1 } },
        ] } });
        let rows = action_rows(modal);
        let c = &rows["data"]["components"];
        assert_eq!(c[0]["type"], 1);
        assert_eq!(c[0]["components"][0]["custom_id"], "vm_name");
        assert_eq!(c[0]["components"][0]["value"], "9bad");
        let label = c[0]["components"][0]["label"].as_str().unwrap_or_default();
        assert!(label.starts_with("VM name ⚠"), "{label}");
        assert!(label.chars().count() <= MAX_LABEL);
        assert_eq!(c[1]["components"][0]["placeholder"], "who to ask");
        assert_eq!(c[1]["components"][0]["label"], "Owner");
        let other = json!({ "type": 5 });
        assert_eq!(action_rows(other.clone()), other);
    }
}
