//! The HTTP interactions endpoint (`mode: http`): `POST /interactions` (and `/`). Every request
//! must carry a valid `X-Signature-Ed25519` over `X-Signature-Timestamp` + body under the
//! application's public key, with a timestamp inside the replay window; anything else is
//! refused with 401 and logged. A PING is answered with a PONG. Everything is answered at once
//! (well inside Discord's 3 s): a command is deferred (type 5) and its texts sent later as the
//! edit of the original answer; a button click is a deferred update (type 6); autocomplete is
//! answered from the cached inventory (type 8, ≤ 25 choices, prefix matches first).

use crate::conversation::{Input, Inventory};
use crate::form::{self, Drafts};
use crate::interaction::{self, Interaction};
use crate::messages;
use crate::verify::{Verifier, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use aetherv_core::command::DeployForm;
use aetherv_core::rbac::Principal;
use aetherv_core::schema::{FieldType, Forms};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Interaction response `PONG`.
pub const PONG: u8 = 1;
/// `CHANNEL_MESSAGE_WITH_SOURCE`.
pub const MESSAGE: u8 = 4;
/// `DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE`.
pub const DEFERRED_MESSAGE: u8 = 5;
/// `DEFERRED_UPDATE_MESSAGE`.
pub const DEFERRED_UPDATE: u8 = 6;
/// `APPLICATION_COMMAND_AUTOCOMPLETE_RESULT`.
pub const AUTOCOMPLETE_RESULT: u8 = 8;
/// Most autocomplete choices Discord takes.
pub const MAX_CHOICES: usize = 25;

/// What answering an interaction needs besides the engine: the queue to the engine task,
/// the inventory for autocomplete, the forms and the drafts of deploy forms.
#[derive(Clone)]
pub struct Handlers {
    /// The engine task's queue.
    pub tx: mpsc::Sender<Input>,
    /// The inventory snapshot.
    pub inventory: Arc<RwLock<Inventory>>,
    /// The form schemas.
    pub forms: Arc<Forms>,
    /// Deploy forms being filled in.
    pub drafts: Arc<Drafts>,
}

#[derive(Clone)]
struct HttpState {
    verifier: Verifier,
    handlers: Handlers,
}

/// The router (for tests and embedding).
pub fn router(verifier: Verifier, handlers: Handlers) -> Router {
    Router::new()
        .route("/", post(request))
        .route("/interactions", post(request))
        .with_state(HttpState { verifier, handlers })
}

/// Serves the router on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    Ok(())
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "invalid request signature").into_response()
}

async fn request(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(why) = st.verifier.verify(
        header(SIGNATURE_HEADER),
        header(TIMESTAMP_HEADER),
        &body,
        SystemTime::now(),
    ) {
        tracing::warn!(reason = %why, "discord interaction refused");
        return unauthorized();
    }
    let ia: Interaction = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable discord interaction");
            return (StatusCode::BAD_REQUEST, "unreadable interaction").into_response();
        }
    };
    Json(respond(&st.handlers, ia)).into_response()
}

fn answer(kind: u8, data: Option<Value>) -> Value {
    let mut v = json!({ "type": kind });
    if let Some(d) = data {
        v["data"] = d;
    }
    v
}

fn say(text: &str) -> Value {
    answer(MESSAGE, Some(messages::ephemeral(text)))
}

/// A deferred answer only the user sees, edited later.
fn deferred_ephemeral() -> Value {
    answer(
        DEFERRED_MESSAGE,
        Some(json!({ "flags": messages::EPHEMERAL })),
    )
}

fn queue(st: &Handlers, input: Input, ack: Value) -> Value {
    match st.tx.try_send(input) {
        Ok(()) => ack,
        Err(_) => say("The bot is busy; please try again in a moment."),
    }
}

/// The answer to one verified interaction (the HTTP response body, or the Gateway's
/// callback): at once, never waiting for the engine.
pub fn respond(st: &Handlers, ia: Interaction) -> Value {
    if ia.kind == interaction::PING {
        return answer(PONG, None);
    }
    let Some(who) = ia.principal() else {
        return say("This interaction names no user.");
    };
    let Interaction {
        kind,
        data,
        token,
        channel_id,
        message,
        ..
    } = ia;
    let data = data.unwrap_or_default();
    match kind {
        interaction::APPLICATION_COMMAND => {
            if let Some((form, values)) = interaction::deploy_of(&data) {
                return open_form(st, &who, form, values, channel_id);
            }
            match interaction::command_line(&data) {
                Ok(line) => {
                    let input = Input::Command {
                        who,
                        line,
                        token,
                        channel: channel_id,
                    };
                    queue(st, input, answer(DEFERRED_MESSAGE, None))
                }
                Err(e) => say(&e.to_string()),
            }
        }
        interaction::MESSAGE_COMPONENT if data.custom_id.starts_with(form::OPEN_PREFIX) => {
            let page = data
                .custom_id
                .strip_prefix(form::OPEN_PREFIX)
                .and_then(form::draft_page);
            match page.map(|(id, page)| st.drafts.modal(&st.forms, id, page, &who)) {
                Some(Ok(modal)) => modal,
                Some(Err(e)) => say(&e.to_string()),
                None => say("This button is not one of this bot's."),
            }
        }
        interaction::MESSAGE_COMPONENT if data.custom_id.starts_with(form::SUBMIT_PREFIX) => {
            let draft = data
                .custom_id
                .strip_prefix(form::SUBMIT_PREFIX)
                .and_then(|s| uuid::Uuid::parse_str(s).ok());
            match draft {
                Some(draft) => queue(
                    st,
                    Input::Submit { who, draft, token },
                    deferred_ephemeral(),
                ),
                None => say("This button is not one of this bot's."),
            }
        }
        interaction::MODAL_SUBMIT if data.custom_id.starts_with(form::PAGE_PREFIX) => {
            let Some((draft, page)) = data
                .custom_id
                .strip_prefix(form::PAGE_PREFIX)
                .and_then(form::draft_page)
            else {
                return say("This form is not one of this bot's.");
            };
            let values = form::submitted(&data.components);
            match st.drafts.fill(draft, page, &who, &st.forms, &values) {
                Ok((_, fields)) => {
                    let input = Input::Page {
                        who,
                        draft,
                        fields,
                        page,
                        token,
                    };
                    queue(st, input, deferred_ephemeral())
                }
                Err(e) => say(&e.to_string()),
            }
        }
        interaction::MESSAGE_COMPONENT => match interaction::vote_of(&data.custom_id) {
            Some((job, approve)) => {
                let message =
                    message.map(|m| (m.channel_id.or(channel_id).unwrap_or_default(), m.id));
                let input = Input::Vote {
                    who,
                    job,
                    approve,
                    token,
                    message,
                };
                queue(st, input, answer(DEFERRED_UPDATE, None))
            }
            None => say("This button is not one of this bot's."),
        },
        interaction::AUTOCOMPLETE => {
            let choices = interaction::focused(&data)
                .map(|f| complete(&st.inventory, &st.forms, &f.name, &f.typed, &f.others))
                .unwrap_or_default();
            let choices: Vec<Value> = choices
                .into_iter()
                .map(|c| json!({ "name": c, "value": c }))
                .collect();
            answer(AUTOCOMPLETE_RESULT, Some(json!({ "choices": choices })))
        }
        interaction::MODAL_SUBMIT => say("This form is not one of this bot's."),
        other => {
            tracing::warn!(kind = other, "unknown discord interaction type");
            say("This kind of interaction is not supported.")
        }
    }
}

/// `/aether deploy vm|managed`: a draft with the command's options, answered with the
/// form's first page (or, for a form without pages, its progress as if one was filled).
fn open_form(
    st: &Handlers,
    who: &Principal,
    form: DeployForm,
    values: serde_json::Map<String, Value>,
    channel: Option<String>,
) -> Value {
    let Some(layout) = form::Layout::of_form(&st.forms, form) else {
        return say("This form is not available.");
    };
    let first = layout.base_pages().next().or(if layout.pages.is_empty() {
        None
    } else {
        Some(0)
    });
    let id = st.drafts.start(who.clone(), form, &layout, values, channel);
    match first.map(|p| st.drafts.modal(&st.forms, id, p, who)) {
        Some(Ok(modal)) => modal,
        Some(Err(e)) => say(&e.to_string()),
        None => say("This form has nothing to fill in."),
    }
}

/// The inventory kind of option `name`: the type of the form field of that id (any form),
/// else the option's own name (`host`, `network` … of the other subcommands).
fn inventory_kind(forms: &Forms, name: &str) -> Option<FieldType> {
    let by_field = forms
        .iter()
        .find_map(|f| f.field(name))
        .map(|f| f.kind)
        .filter(|k| k.is_inventory());
    by_field.or(match name {
        "host" => Some(FieldType::Host),
        "cluster" => Some(FieldType::Cluster),
        "network" => Some(FieldType::Network),
        "storage_class" => Some(FieldType::StorageClass),
        "image" => Some(FieldType::Image),
        _ => None,
    })
}

/// Choices for option `name` given what was typed: inventory names of the option's kind,
/// narrowed by a host option already chosen; prefix matches first, then the rest containing
/// the text; at most [`MAX_CHOICES`].
pub fn complete(
    inventory: &RwLock<Inventory>,
    forms: &Forms,
    name: &str,
    typed: &str,
    others: &[(String, String)],
) -> Vec<String> {
    let Ok(inv) = inventory.read() else {
        return Vec::new();
    };
    let host = others
        .iter()
        .find(|(k, _)| inventory_kind(forms, k) == Some(FieldType::Host))
        .map(|(_, v)| v.as_str());
    let choices = inv.for_host(host);
    let list: Vec<String> = match inventory_kind(forms, name) {
        Some(FieldType::Host) => choices
            .hosts
            .clone()
            .unwrap_or_else(|| inv.by_host.keys().cloned().collect()),
        Some(FieldType::Cluster) => choices.clusters.clone().unwrap_or_default(),
        Some(FieldType::Network) => choices.networks.clone().unwrap_or_default(),
        Some(FieldType::StorageClass) => choices.storage_classes.clone().unwrap_or_default(),
        Some(FieldType::Image) => choices.images.clone().unwrap_or_default(),
        _ => Vec::new(),
    };
    let t = typed.to_lowercase();
    let mut prefix: Vec<String> = Vec::new();
    let mut within: Vec<String> = Vec::new();
    for c in list {
        let l = c.to_lowercase();
        if l.starts_with(&t) {
            prefix.push(c);
        } else if l.contains(&t) {
            within.push(c);
        }
    }
    prefix.sort();
    within.sort();
    prefix.extend(within);
    prefix.truncate(MAX_CHOICES);
    prefix
}
