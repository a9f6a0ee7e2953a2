//! The HTTP Events API: `POST /slack/commands`, `/slack/interactions` and `/slack/events`.
//! Every request must carry a valid `x-slack-signature` over `v0:<timestamp>:<body>` with the
//! signing secret, and a `x-slack-request-timestamp` within five minutes of now (replays are
//! refused); slack-morphism's verifier checks both with a constant-time compare.

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
}

/// The router (for tests and embedding).
pub fn router(shared: Arc<Shared>, signing_secret: &str) -> Router {
    let verifier =
        SlackEventSignatureVerifier::new(&SlackSigningSecret::new(signing_secret.into()));
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/events", post(events))
        .with_state(HttpState { shared, verifier })
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

/// The body as text when the signature and timestamp check out; `None` after logging why not.
fn verified<'a>(st: &HttpState, headers: &HeaderMap, body: &'a Bytes) -> Option<&'a str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let refuse = |why: &str| {
        tracing::warn!(reason = why, "slack request refused");
        None
    };
    let (Some(sig), Some(ts)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        return refuse("missing signature headers");
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return refuse("body is not UTF-8");
    };
    match st.verifier.verify(sig, text, ts) {
        Ok(()) => Some(text),
        Err(e) => refuse(&e.to_string()),
    }
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "invalid request signature").into_response()
}

async fn commands(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(text) = verified(&st, &headers, &body) else {
        return unauthorized();
    };
    match serde_urlencoded::from_str::<SlackCommandEvent>(text) {
        Ok(ev) => Json(st.shared.on_command(&ev)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("bad command payload: {e}")).into_response(),
    }
}

async fn interactions(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(text) = verified(&st, &headers, &body) else {
        return unauthorized();
    };
    let form: Vec<(String, String)> = serde_urlencoded::from_str(text).unwrap_or_default();
    let Some(payload) = form.iter().find(|(k, _)| k == "payload").map(|(_, v)| v) else {
        return (StatusCode::BAD_REQUEST, "no payload").into_response();
    };
    match serde_json::from_str::<SlackInteractionEvent>(payload) {
        Ok(ev) => match st.shared.on_interaction(ev).await {
            SlackInteractionResponse::Empty => StatusCode::OK.into_response(),
            r => Json(r).into_response(),
        },
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("bad interaction payload: {e}"),
        )
            .into_response(),
    }
}

async fn events(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(text) = verified(&st, &headers, &body) else {
        return unauthorized();
    };
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return (StatusCode::BAD_REQUEST, "bad event payload").into_response();
    };
    if v.get("type").and_then(Value::as_str) == Some("url_verification") {
        let challenge = v.get("challenge").cloned().unwrap_or(Value::Null);
        return Json(json!({"challenge": challenge})).into_response();
    }
    StatusCode::OK.into_response()
}
