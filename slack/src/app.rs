//! The request handlers: Slack requests in ([`Shared::on_command`],
//! [`Shared::on_interaction`], the same for Socket Mode and HTTP), work out to the engine task
//! ([`crate::conversation::Conversation`]) as [`Input`]s, modals straight to Slack.
//!
//! Acknowledgements never wait for the engine: a slash command is acknowledged at once; for
//! `deploy` the modal is built from the cached inventory snapshot and `views.open` is called
//! with the trigger id right away. View submissions wait for the engine's validation (fast,
//! no I/O before it answers) so errors can be shown inline.

use crate::blocks::Blocks;
use crate::identity::Identity;
use crate::modal::{self, ViewMeta, CALLBACK_ID, INPUT_ACTION, PUSH_ACTION_PREFIX};
use crate::Client;
use aetherv_core::command::{self, Command, DeployForm};
use aetherv_core::rbac::Principal;
use aetherv_core::schema::Forms;
use aetherv_core::JobId;
use serde_json::{json, Map, Value};
use slack_morphism::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a view submission waits for the engine before closing the modal anyway.
pub const SUBMIT_WAIT: Duration = Duration::from_millis(2500);
/// `views.open` calls in flight at once (Slack's round trip dominates them; 16 open a burst
/// of 100 modals in well under the trigger id's 3 s).
pub const OPENING_CONCURRENCY: usize = 16;
/// Requests waiting for the engine before new ones are refused as busy.
pub const INPUT_QUEUE: usize = 1024;

pub use aetherv_bot::chat::Inventory;

/// A cached view's key: form, parameter set, chosen host.
pub type ViewKey = (String, Option<String>, Option<String>);

/// Work for the engine task.
#[derive(Debug)]
pub enum Input {
    /// A slash command other than a bare `deploy`.
    Line {
        /// Who.
        who: Principal,
        /// Where.
        channel: String,
        /// The command text.
        text: String,
        /// The command's `response_url`, for answering when the bot is not in the channel.
        response_url: Option<String>,
    },
    /// A submitted deployment modal.
    Submit {
        /// Who.
        who: Principal,
        /// The view's metadata (form, channel).
        meta: ViewMeta,
        /// Field values.
        fields: Map<String, Value>,
        /// Inline errors by block id, or `None` when accepted.
        reply: oneshot::Sender<Option<HashMap<String, String>>>,
    },
    /// An Approve or Reject click.
    Vote {
        /// Who.
        who: Principal,
        /// The voter's Slack user id (a refused vote is answered to them alone).
        user: String,
        /// The job.
        job: JobId,
        /// Approve or reject.
        approve: bool,
        /// The clicked message (channel, ts), updated with the decision even when this bot
        /// did not post it (a restart in between).
        clicked: Option<(String, String)>,
    },
}

impl Input {
    /// The channel a request came from, when it says.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Input::Line { channel, .. } => Some(channel),
            Input::Submit { meta, .. } => Some(&meta.channel),
            Input::Vote { .. } => None,
        }
    }
}

/// State shared by the request handlers.
pub struct Shared {
    /// The Web API client.
    pub client: Arc<Client>,
    /// The bot token.
    pub token: SlackApiToken,
    /// The form schemas.
    pub forms: Forms,
    /// Block Kit templates.
    pub blocks: Blocks,
    /// The texts of the engine's replies (`templates/slack/text/`).
    pub texts: aetherv_bot::render::Renderer,
    /// The inventory snapshot for modals.
    pub inventory: RwLock<Inventory>,
    /// Built views by (form, parameter set, host); emptied when the inventory changes.
    pub views: Mutex<HashMap<ViewKey, SlackView>>,
    /// Values saved from pushed parameter-set views, by root view id.
    pub drafts: Mutex<HashMap<String, Map<String, Value>>>,
    /// User-group membership.
    pub identity: Arc<Identity>,
    /// The engine task's queue.
    pub tx: mpsc::Sender<Input>,
    /// Bounds the `views.open` calls in flight, so a burst of `deploy`s leaves CPU for the
    /// acknowledgements of the commands behind them.
    pub opening: tokio::sync::Semaphore,
    /// The runtime that does the work behind a request (modals, engine, outbound calls). The
    /// handlers themselves run on the ingress thread ([`crate::ingress`]), which only
    /// acknowledges.
    pub work: tokio::runtime::Handle,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

pub(crate) fn deploy_form(id: &str) -> Option<DeployForm> {
    match id {
        "vm" => Some(DeployForm::Vm),
        "managed-deployment" => Some(DeployForm::Managed),
        _ => None,
    }
}

/// The immediate, ephemeral acknowledgement of a slash command.
fn ack(text: String) -> SlackCommandEventResponse {
    let content = SlackMessageContent::new().with_text(text);
    SlackCommandEventResponse::new(content).with_response_type(SlackMessageResponseType::Ephemeral)
}

fn view_of(v: Value) -> Option<SlackView> {
    serde_json::from_value(v)
        .map_err(|e| tracing::error!(error = %e, "modal does not parse as a Slack view"))
        .ok()
}

impl Shared {
    /// A slash command. Returns the acknowledgement at once; the work happens elsewhere.
    pub fn on_command(self: &Arc<Self>, ev: &SlackCommandEvent) -> SlackCommandEventResponse {
        let text = ev.text.clone().unwrap_or_default();
        // `/aether` alone asks what the bot can do.
        let text = if text.trim().is_empty() {
            "help".to_string()
        } else {
            text
        };
        let who = self.identity.principal(&ev.user_id.0);
        let channel = ev.channel_id.0.clone();
        let parsed = command::parse(&text);
        if let Err(e) = &parsed {
            // Answered in the acknowledgement, only to the user: nothing to queue.
            let (msg, usage) = aetherv_bot::engine::user_text(e);
            return ack(self.blocks.text(
                "parse_error",
                &json!({"message": crate::blocks::escape(&msg), "usage": usage}),
            ));
        }
        if let Ok(Command::Deploy { form, fields }) = parsed {
            if fields.is_empty() {
                let me = Arc::clone(self);
                let trigger = ev.trigger_id.clone();
                self.work
                    .spawn(async move { me.open_form(form, channel, trigger).await });
                let title = self
                    .forms
                    .get(form.form_id())
                    .map_or(form.form_id(), |f| f.title());
                return ack(self.blocks.text("ack_deploy", &json!({"form": title})));
            }
        }
        // Only the verb: arguments may hold values (never echo `key=value`).
        let command: String = text
            .split_whitespace()
            .take_while(|w| !w.contains('='))
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let response_url = Some(ev.response_url.0.to_string());
        match self.tx.try_send(Input::Line {
            who,
            channel,
            text,
            response_url,
        }) {
            Ok(()) => ack(self
                .blocks
                .text("ack_command", &json!({"command": command}))),
            Err(_) => ack(self.blocks.text("busy", &json!({}))),
        }
    }

    async fn open_form(&self, form: DeployForm, channel: String, trigger: SlackTriggerId) {
        let Ok(_permit) = self.opening.acquire().await else {
            return;
        };
        let meta = ViewMeta {
            form: form.form_id().to_string(),
            channel,
            set: None,
            host: None,
        };
        let Some(view) = self.build_view(&meta) else {
            return;
        };
        let session = self.client.open_session(&self.token);
        if let Err(e) = session
            .views_open(&SlackApiViewsOpenRequest::new(trigger, view))
            .await
        {
            tracing::warn!(error = %e, "views.open failed");
        }
    }

    /// The view for `meta`: built once per form, parameter set and host until the inventory
    /// changes, then cloned with this request's metadata (keeps bursts of `deploy` cheap).
    fn build_view(&self, meta: &ViewMeta) -> Option<SlackView> {
        let key = (meta.form.clone(), meta.set.clone(), meta.host.clone());
        let cached = self.views.lock().ok().and_then(|c| c.get(&key).cloned());
        let mut view = match cached {
            Some(v) => v,
            None => {
                let schema = self.forms.get(&meta.form)?;
                let inv = self.inventory.read().ok()?;
                let built = match modal::build(schema, inv.for_host(meta.host.as_deref()), meta) {
                    Ok(v) => view_of(v)?,
                    Err(e) => {
                        tracing::error!(error = %e, form = %meta.form, "modal over Slack's limits");
                        return None;
                    }
                };
                if let Ok(mut c) = self.views.lock() {
                    c.insert(key, built.clone());
                }
                built
            }
        };
        if let SlackView::Modal(m) = &mut view {
            m.private_metadata = serde_json::to_string(meta).ok();
        }
        Some(view)
    }

    /// An interaction (view submission, button click, select change).
    pub async fn on_interaction(
        self: &Arc<Self>,
        ev: SlackInteractionEvent,
    ) -> SlackInteractionResponse {
        match ev {
            SlackInteractionEvent::ViewSubmission(ev) => self.on_submission(ev).await,
            SlackInteractionEvent::BlockActions(ev) => {
                self.on_actions(&ev);
                SlackInteractionResponse::Empty
            }
            SlackInteractionEvent::BlockSuggestion(ev) => self.on_suggestion(&ev),
            SlackInteractionEvent::ViewClosed(ev) => {
                // The modal was cancelled: forget what its pushed views saved.
                let root = ev
                    .view
                    .state_params
                    .root_view_id
                    .unwrap_or(ev.view.state_params.id)
                    .0;
                if let Ok(mut d) = self.drafts.lock() {
                    d.remove(&root);
                }
                SlackInteractionResponse::Empty
            }
            _ => SlackInteractionResponse::Empty,
        }
    }

    /// An `external_select` asks for options: the field's choices (narrowed to the view's
    /// chosen host) matching what the user typed. Anything not ours gets no options.
    fn on_suggestion(&self, ev: &SlackInteractionBlockSuggestionEvent) -> SlackInteractionResponse {
        let options = self.suggest(ev).unwrap_or_default();
        let response =
            serde_json::from_value::<SlackBlockSuggestionOptions>(json!({ "options": options }))
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "suggested options do not parse as Slack options");
                    SlackBlockSuggestionOptions::new(Vec::new())
                });
        SlackInteractionResponse::BlockSuggestion(SlackBlockSuggestionResponse::Options(response))
    }

    fn suggest(&self, ev: &SlackInteractionBlockSuggestionEvent) -> Option<Vec<Value>> {
        if ev.action_id.0 != INPUT_ACTION {
            return None;
        }
        let Some(SlackView::Modal(view)) = ev.view.as_ref() else {
            return None;
        };
        let meta = ViewMeta::parse(view.private_metadata.as_deref()?)?;
        let schema = self.forms.get(&meta.form)?;
        let field = schema.fields().iter().find(|f| f.id == ev.block_id.0)?;
        let inv = self.inventory.read().ok()?;
        let choices = modal::field_choices(field, inv.for_host(meta.host.as_deref()));
        Some(modal::suggestions(choices, &ev.value))
    }

    async fn on_submission(
        self: &Arc<Self>,
        ev: SlackInteractionViewSubmissionEvent,
    ) -> SlackInteractionResponse {
        let SlackView::Modal(view) = &ev.view.view else {
            return SlackInteractionResponse::Empty;
        };
        if view.callback_id.as_ref().map(|c| c.0.as_str()) != Some(CALLBACK_ID) {
            return SlackInteractionResponse::Empty;
        }
        let Some(meta) = view.private_metadata.as_deref().and_then(ViewMeta::parse) else {
            return SlackInteractionResponse::Empty;
        };
        let values = modal::values(ev.view.state_params.state.as_ref());
        let root = ev
            .view
            .state_params
            .root_view_id
            .clone()
            .unwrap_or_else(|| ev.view.state_params.id.clone())
            .0;
        if let Some(set) = &meta.set {
            // A parameter set's view: keep its values for the main view's submission.
            if let (Ok(mut drafts), Some(schema)) = (self.drafts.lock(), self.forms.get(&meta.form))
            {
                let draft = drafts.entry(root).or_default();
                for f in schema.set_members(set) {
                    draft.remove(&f.id);
                }
                draft.extend(values);
            }
            return SlackInteractionResponse::Empty;
        }
        let mut fields = self
            .drafts
            .lock()
            .ok()
            .and_then(|d| d.get(&root).cloned())
            .unwrap_or_default();
        fields.extend(values);
        let (reply, answer) = oneshot::channel();
        let who = self.identity.principal(&ev.user.id.0);
        if self
            .tx
            .send(Input::Submit {
                who,
                meta,
                fields,
                reply,
            })
            .await
            .is_err()
        {
            return SlackInteractionResponse::Empty;
        }
        match tokio::time::timeout(SUBMIT_WAIT, answer).await {
            Ok(Ok(Some(errors))) => SlackInteractionResponse::ViewSubmission(
                SlackViewSubmissionResponse::Errors(SlackViewSubmissionErrorsResponse::new(errors)),
            ),
            Ok(Ok(None)) => {
                if let Ok(mut d) = self.drafts.lock() {
                    d.remove(&root);
                }
                SlackInteractionResponse::Empty
            }
            _ => {
                tracing::warn!("the engine did not answer a submission in time");
                SlackInteractionResponse::Empty
            }
        }
    }

    fn on_actions(self: &Arc<Self>, ev: &SlackInteractionBlockActionsEvent) {
        let user = ev.user.as_ref().map(|u| u.id.0.clone()).unwrap_or_default();
        for a in ev.actions.clone().unwrap_or_default() {
            let id = a.action_id.0.as_str();
            match id {
                "approve" | "reject" => {
                    let Some(job) = a.value.as_deref().and_then(|v| v.parse::<JobId>().ok()) else {
                        continue;
                    };
                    let clicked = match &ev.container {
                        SlackInteractionActionContainer::Message(m) => m
                            .channel_id
                            .clone()
                            .or_else(|| ev.channel.as_ref().map(|c| c.id.clone()))
                            .map(|c| (c.0, m.message_ts.0.clone())),
                        _ => None,
                    };
                    let input = Input::Vote {
                        who: self.identity.principal(&user),
                        user: user.clone(),
                        job,
                        approve: id == "approve",
                        clicked,
                    };
                    if self.tx.try_send(input).is_err() {
                        tracing::warn!("engine queue full; vote dropped");
                    }
                }
                _ if id.starts_with(PUSH_ACTION_PREFIX) => {
                    let Some(SlackView::Modal(view)) = ev.view.as_ref() else {
                        continue;
                    };
                    let Some(mut meta) = view.private_metadata.as_deref().and_then(ViewMeta::parse)
                    else {
                        continue;
                    };
                    meta.set = Some(id.trim_start_matches(PUSH_ACTION_PREFIX).to_string());
                    let Some(pushed) = self.build_view(&meta) else {
                        continue;
                    };
                    let me = Arc::clone(self);
                    let trigger = ev.trigger_id.clone();
                    self.work.spawn(async move {
                        let s = me.client.open_session(&me.token);
                        if let Err(e) = s
                            .views_push(&SlackApiViewsPushRequest::new(trigger, pushed))
                            .await
                        {
                            tracing::warn!(error = %e, "views.push failed");
                        }
                    });
                }
                INPUT_ACTION => self.on_host_chosen(ev, &a),
                _ => {}
            }
        }
    }

    /// The host select changed: rebuild the view with that host's networks and storage.
    fn on_host_chosen(
        self: &Arc<Self>,
        ev: &SlackInteractionBlockActionsEvent,
        a: &SlackInteractionActionInfo,
    ) {
        let (Some(SlackView::Modal(view)), Some(SlackInteractionActionContainer::View(c))) =
            (ev.view.as_ref(), Some(&ev.container))
        else {
            return;
        };
        let Some(mut meta) = view.private_metadata.as_deref().and_then(ViewMeta::parse) else {
            return;
        };
        meta.host = a.selected_option.as_ref().map(|o| o.value.clone());
        let Some(updated) = self.build_view(&meta) else {
            return;
        };
        let me = Arc::clone(self);
        let view_id = c.view_id.clone();
        self.work.spawn(async move {
            let s = me.client.open_session(&me.token);
            let mut req = SlackApiViewsUpdateRequest::new(updated);
            req.view_id = Some(view_id);
            if let Err(e) = s.views_update(&req).await {
                tracing::warn!(error = %e, "views.update failed");
            }
        });
    }
}
