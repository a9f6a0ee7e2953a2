//! The HTTP Events API: `POST /slack/commands`, `/slack/interactions` and `/slack/events`.
//! Every request must carry a valid `x-slack-signature` over `v0:<timestamp>:<body>` with the
//! signing secret, and a `x-slack-request-timestamp` within five minutes of now (replays are
//! refused); slack-morphism's verifier checks both with a constant-time compare.
//!
//! What a request is comes from its body, not its path, so one Request URL may serve slash
//! commands, interactivity and events alike (`/slack` and `/` are served too): a JSON body is an
//! Events API callback, a form with `payload` an interaction, a form with `ssl_check` Slack's
//! certificate check, a form with `command` a slash command.

use crate::app::Shared;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct HttpState {
    shared: Arc<Shared>,
    verifier: SlackEventSignatureVerifier,
    /// The signing secret, for bodies the verifier cannot take (not UTF-8).
    secret: Arc<str>,
}

/// The router (for tests and embedding).
pub fn router(shared: Arc<Shared>, signing_secret: &str) -> Router {
    let verifier =
        SlackEventSignatureVerifier::new(&SlackSigningSecret::new(signing_secret.into()));
    Router::new()
        .route("/", post(request))
        .route("/slack", post(request))
        .route("/slack/commands", post(request))
        .route("/slack/interactions", post(request))
        .route("/slack/events", post(request))
        .with_state(HttpState {
            shared,
            verifier,
            secret: Arc::from(signing_secret),
        })
}

/// Serves the router on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    signing_secret: &str,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router(shared, signing_secret))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    Ok(())
}

/// The body as text when the signature and timestamp check out; else the answer, after
/// logging why: 401 for a missing or wrong signature, 400 for a signed body that is not UTF-8.
fn verified<'a>(
    st: &HttpState,
    headers: &HeaderMap,
    body: &'a Bytes,
) -> Result<&'a str, Box<Response>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let refuse = |why: &str| {
        tracing::warn!(reason = why, "slack request refused");
        Box::new((StatusCode::UNAUTHORIZED, "invalid request signature").into_response())
    };
    let (Some(sig), Some(ts)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        return Err(refuse("missing signature headers"));
    };
    let Ok(text) = std::str::from_utf8(body) else {
        if crate::signature::valid(&st.secret, sig, ts, body) {
            return Err(Box::new(bad_request("body is not UTF-8".into())));
        }
        return Err(refuse("body is not UTF-8 and its signature does not match"));
    };
    match st.verifier.verify(sig, text, ts) {
        Ok(()) => Ok(text),
        Err(e) => Err(refuse(&e.to_string())),
    }
}

/// Any signed request from Slack, told apart by its body.
async fn request(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let text = match verified(&st, &headers, &body) {
        Ok(t) => t,
        Err(answer) => return *answer,
    };
    if text.trim_start().starts_with('{') {
        return event(text);
    }
    let form: Vec<(String, String)> = match serde_urlencoded::from_str(text) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("body is neither JSON nor a form: {e}")),
    };
    let has = |k: &str| form.iter().any(|(key, _)| key == k);
    if let Some((_, payload)) = form.iter().find(|(k, _)| k == "payload") {
        interaction(&st, payload).await
    } else if has("ssl_check") {
        StatusCode::OK.into_response()
    } else if has("command") {
        match serde_urlencoded::from_str::<SlackCommandEvent>(text) {
            Ok(ev) => Json(st.shared.on_command(&ev)).into_response(),
            Err(e) => bad_request(format!("bad slash command: {e}")),
        }
    } else {
        bad_request("not a Slack request: no `command`, `payload` or `ssl_check` field".into())
    }
}

fn bad_request(why: String) -> Response {
    tracing::warn!(reason = %why, "slack request not understood");
    (StatusCode::BAD_REQUEST, why).into_response()
}

async fn interaction(st: &HttpState, payload: &str) -> Response {
    match serde_json::from_str::<SlackInteractionEvent>(payload) {
        Ok(ev) => match st.shared.on_interaction(ev).await {
            SlackInteractionResponse::Empty => StatusCode::OK.into_response(),
            r => Json(r).into_response(),
        },
        Err(e) => bad_request(format!("bad interaction payload: {e}")),
    }
}

/// An Events API callback: the URL check is answered; events are acknowledged (the bot acts
/// on commands and interactions only).
fn event(text: &str) -> Response {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return bad_request("bad event payload: not JSON".into());
    };
    if v.get("type").and_then(Value::as_str) == Some("url_verification") {
        let challenge = v.get("challenge").cloned().unwrap_or(Value::Null);
        return Json(json!({"challenge": challenge})).into_response();
    }
    StatusCode::OK.into_response()
}
