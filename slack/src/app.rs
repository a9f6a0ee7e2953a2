//! The adapter proper: Slack requests in ([`Shared::on_command`], [`Shared::on_interaction`],
//! the same for Socket Mode and HTTP), engine calls in one task ([`Conversation`]), and engine
//! output out through the [`Outbound`] queue as Block Kit.
//!
//! Acknowledgements never wait for the engine: a slash command is acknowledged at once; for
//! `deploy` the modal is built from the cached inventory snapshot and `views.open` is called
//! with the trigger id right away. View submissions wait for the engine's validation (fast,
//! no I/O before it answers) so errors can be shown inline.

use crate::blocks::Blocks;
use crate::identity::Identity;
use crate::messages;
use crate::modal::{self, ViewMeta, CALLBACK_ID, INPUT_ACTION, PUSH_ACTION_PREFIX};
use crate::outbound::{MsgKey, Op, Outbound};
use crate::Client;
use aetherv_bot::engine::{Engine, EngineError, FormOutcome, Outgoing};
use aetherv_bot::state::short_id;
use aetherv_bot::thread::{MessageRef, ThreadOp};
use aetherv_broker::StreamOffset;
use aetherv_core::command::{self, Command, DeployForm};
use aetherv_core::rbac::Principal;
use aetherv_core::schema::Forms;
use aetherv_core::validate::InventoryChoices;
use aetherv_core::{EventBody, JobId};
use serde_json::{json, Map, Value};
use slack_morphism::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long a view submission waits for the engine before closing the modal anyway.
pub const SUBMIT_WAIT: Duration = Duration::from_millis(2500);
/// Requests waiting for the engine before new ones are refused as busy.
pub const INPUT_QUEUE: usize = 1024;

/// The inventory the modals are built from, refreshed by the engine task.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Choices across all hosts.
    pub all: InventoryChoices,
    /// Choices narrowed to one host.
    pub by_host: BTreeMap<String, InventoryChoices>,
}

impl Inventory {
    /// The choices for a view with an optional chosen host.
    pub fn for_host(&self, host: Option<&str>) -> &InventoryChoices {
        host.and_then(|h| self.by_host.get(h)).unwrap_or(&self.all)
    }
}

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
    /// The inventory snapshot for modals.
    pub inventory: RwLock<Inventory>,
    /// Values saved from pushed parameter-set views, by root view id.
    pub drafts: Mutex<HashMap<String, Map<String, Value>>>,
    /// User-group membership.
    pub identity: Arc<Identity>,
    /// The engine task's queue.
    pub tx: mpsc::Sender<Input>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

fn deploy_form(id: &str) -> Option<DeployForm> {
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
        let who = self.identity.principal(&ev.user_id.0);
        let channel = ev.channel_id.0.clone();
        if let Ok(Command::Deploy { form, fields }) = command::parse(&text) {
            if fields.is_empty() {
                let me = Arc::clone(self);
                let trigger = ev.trigger_id.clone();
                tokio::spawn(async move { me.open_form(form, channel, trigger).await });
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
        match self.tx.try_send(Input::Line { who, channel, text }) {
            Ok(()) => ack(self
                .blocks
                .text("ack_command", &json!({"command": command}))),
            Err(_) => ack(self.blocks.text("busy", &json!({}))),
        }
    }

    async fn open_form(&self, form: DeployForm, channel: String, trigger: SlackTriggerId) {
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

    fn build_view(&self, meta: &ViewMeta) -> Option<SlackView> {
        let schema = self.forms.get(&meta.form)?;
        let inv = self.inventory.read().ok()?;
        match modal::build(schema, inv.for_host(meta.host.as_deref()), meta) {
            Ok(v) => view_of(v),
            Err(e) => {
                tracing::error!(error = %e, form = %meta.form, "modal over Slack's limits");
                None
            }
        }
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
            _ => SlackInteractionResponse::Empty,
        }
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
                    tokio::spawn(async move {
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
        tokio::spawn(async move {
            let s = me.client.open_session(&me.token);
            let mut req = SlackApiViewsUpdateRequest::new(updated);
            req.view_id = Some(view_id);
            if let Err(e) = s.views_update(&req).await {
                tracing::warn!(error = %e, "views.update failed");
            }
        });
    }
}

/// The engine task: owns the engine, turns requests into engine calls and engine output into
/// outbound Slack writes.
pub struct Conversation {
    engine: Engine,
    shared: Arc<Shared>,
    out: Outbound,
    channel: String,
    approvals_channel: Option<String>,
    job_channel: HashMap<JobId, String>,
    roots: HashSet<JobId>,
    open_approvals: HashSet<JobId>,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation").finish_non_exhaustive()
    }
}

impl Conversation {
    /// A conversation over `engine`, replying in `channel` by default.
    pub fn new(
        engine: Engine,
        shared: Arc<Shared>,
        out: Outbound,
        channel: String,
        approvals_channel: Option<String>,
    ) -> Self {
        let mut c = Conversation {
            engine,
            shared,
            out,
            channel,
            approvals_channel,
            job_channel: HashMap::new(),
            roots: HashSet::new(),
            open_approvals: HashSet::new(),
        };
        c.refresh_inventory();
        c
    }

    fn refresh_inventory(&mut self) {
        let inv = Inventory {
            all: self.engine.form_choices(None),
            by_host: self
                .engine
                .state
                .hosts
                .keys()
                .map(|h| (h.clone(), self.engine.form_choices(Some(h))))
                .collect(),
        };
        if let Ok(mut w) = self.shared.inventory.write() {
            *w = inv;
        }
    }

    /// Runs until `stop`: waits for leadership, replays the event stream, then serves.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        candidate: String,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut leadership = self
            .engine
            .broker()
            .leadership(aetherv_bot::LEADER_ROLE, &candidate)
            .await?;
        tokio::select! {
            ok = leadership.acquire() => if !ok { anyhow::bail!("the broker closed before this bot became leader") },
            () = stop.cancelled() => return Ok(()),
        }
        let mut events = self
            .engine
            .broker()
            .replay_events(StreamOffset::First)
            .await?;
        let mut tick = tokio::time::interval(aetherv_bot::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { return Ok(()) };
                    let channel = input.channel().map(str::to_string);
                    if let Err(e) = self.handle(input).await {
                        // The broker refused or is away: say so and keep serving.
                        tracing::error!(error = %e, "request failed");
                        let text = format!("That did not go through ({e}); please try again.");
                        let ch = channel.unwrap_or_else(|| self.channel.clone());
                        self.route(vec![Outgoing::Say { text }], &ch, None);
                    }
                }
                ev = events.next() => {
                    let Some((_, ev)) = ev else { anyhow::bail!("the event stream ended") };
                    let outs = self.engine.handle_event(&ev, tokio::time::Instant::now());
                    if matches!(ev.body, EventBody::HostInventory { .. }) {
                        self.refresh_inventory();
                    }
                    let ch = self.channel.clone();
                    self.route(outs, &ch, ev.job_id);
                    self.check_decisions();
                }
                _ = tick.tick() => {
                    let outs = self.engine.tick(tokio::time::Instant::now()).await?;
                    let ch = self.channel.clone();
                    self.route(outs, &ch, None);
                    self.check_decisions();
                }
                () = leadership.lost() => anyhow::bail!("lost leadership; another bot took over"),
                () = stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Handles one request.
    pub async fn handle(&mut self, input: Input) -> Result<(), EngineError> {
        match input {
            Input::Line { who, channel, text } => {
                let before: HashSet<JobId> = self.engine.state.jobs.keys().copied().collect();
                let outs = self.engine.handle_line(&who, &text).await?;
                let new: Vec<JobId> = self
                    .engine
                    .state
                    .jobs
                    .keys()
                    .filter(|j| !before.contains(j))
                    .copied()
                    .collect();
                match new[..] {
                    // `deploy key=value…` typed in full: the same thread and buttons as a modal.
                    [job] => self.start_job(job, &channel, outs),
                    _ => self.route(outs, &channel, None),
                }
            }
            Input::Submit {
                who,
                meta,
                fields,
                reply,
            } => {
                let Some(form) = deploy_form(&meta.form) else {
                    let _ = reply.send(None);
                    return Ok(());
                };
                let outcome = self.engine.submit_form(&who, form, &fields).await?;
                match outcome {
                    FormOutcome::Refused { role } => {
                        let first = self
                            .shared
                            .forms
                            .get(&meta.form)
                            .and_then(|f| f.fields().first())
                            .map(|f| f.id.clone())
                            .unwrap_or_default();
                        let text = self
                            .shared
                            .blocks
                            .text("form_refused", &json!({"role": role}));
                        let _ = reply.send(Some(HashMap::from([(first, text)])));
                    }
                    FormOutcome::Invalid(errors) => {
                        let map = self
                            .shared
                            .forms
                            .get(&meta.form)
                            .map(|f| modal::inline_errors(f, &meta, &errors))
                            .unwrap_or_default();
                        let _ = reply.send(Some(map));
                    }
                    FormOutcome::Submitted { job, out } => {
                        let _ = reply.send(None);
                        match job {
                            Some(j) => self.start_job(j, &meta.channel, out),
                            None => self.route(out, &meta.channel, None),
                        }
                    }
                }
            }
            Input::Vote {
                who,
                job,
                approve,
                clicked,
            } => {
                let ours = self.open_approvals.contains(&job);
                let res = self.engine.vote(&who, job, approve, None).await?;
                let ch = self.channel_of(job);
                self.route(res.out, &ch, Some(job));
                // A request from before a restart: this bot never posted its messages, so
                // update the one that was clicked.
                if let (false, Some(d), Some((channel, ts))) = (ours, &res.decision, clicked) {
                    if let Some(v) = self.engine.approval_view(job) {
                        let content = messages::approval_decided(&self.shared.blocks, &v, d);
                        self.out.send(Op::UpdateTs {
                            channel,
                            ts,
                            content,
                        });
                    }
                }
            }
        }
        self.check_decisions();
        Ok(())
    }

    /// A new job requested from `channel`: its thread root, then either the approval request
    /// with buttons (the engine's plain-text request is replaced) or the engine's messages.
    fn start_job(&mut self, job: JobId, channel: &str, outs: Vec<Outgoing>) {
        self.job_channel.insert(job, channel.to_string());
        self.ensure_root(job);
        let awaiting = self
            .engine
            .state
            .jobs
            .get(&job)
            .is_some_and(|j| j.phase == aetherv_bot::state::Phase::AwaitingApproval);
        if awaiting && self.engine.approval_view(job).is_some() {
            self.post_approval(job);
            let rest: Vec<Outgoing> = outs
                .into_iter()
                .filter(|o| !matches!(o, Outgoing::Say { .. }))
                .collect();
            self.route(rest, channel, Some(job));
        } else {
            self.route(outs, channel, Some(job));
        }
    }

    fn post_approval(&mut self, job: JobId) {
        let Some(v) = self.engine.approval_view(job) else {
            return;
        };
        let requester = self
            .engine
            .state
            .jobs
            .get(&job)
            .and_then(|j| j.requester.as_ref())
            .map(|r| r.user_id.clone())
            .unwrap_or_default();
        let content = messages::approval_request(&self.shared.blocks, &v, &requester, job);
        if let Some(ch) = &self.approvals_channel {
            self.out.send(Op::Post {
                key: Some(MsgKey::Approval(job, 0)),
                channel: ch.clone(),
                thread: None,
                content: content.clone(),
            });
        }
        self.out.send(Op::Post {
            key: Some(MsgKey::Approval(job, 1)),
            channel: self.channel_of(job),
            thread: Some(MsgKey::Root(job)),
            content,
        });
        self.open_approvals.insert(job);
    }

    fn check_decisions(&mut self) {
        let open: Vec<JobId> = self.open_approvals.iter().copied().collect();
        for job in open {
            let Some(d) = self.engine.decision(job) else {
                continue;
            };
            self.open_approvals.remove(&job);
            let Some(v) = self.engine.approval_view(job) else {
                continue;
            };
            let content = messages::approval_decided(&self.shared.blocks, &v, &d);
            for i in [0u8, 1] {
                if i == 0 && self.approvals_channel.is_none() {
                    continue;
                }
                self.out.send(Op::Update {
                    key: MsgKey::Approval(job, i),
                    content: content.clone(),
                });
            }
        }
    }

    fn channel_of(&self, job: JobId) -> String {
        self.job_channel
            .get(&job)
            .cloned()
            .unwrap_or_else(|| self.channel.clone())
    }

    fn ensure_root(&mut self, job: JobId) {
        if !self.roots.insert(job) {
            return;
        }
        let (kind, target, requester) = self
            .engine
            .state
            .jobs
            .get(&job)
            .map(|j| {
                (
                    j.kind.clone(),
                    j.target.clone(),
                    j.requester
                        .as_ref()
                        .map(|r| r.user_id.clone())
                        .unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        let content = messages::thread_root(
            &self.shared.blocks,
            &short_id(&job),
            &kind,
            &target,
            &requester,
        );
        self.out.send(Op::Post {
            key: Some(MsgKey::Root(job)),
            channel: self.channel_of(job),
            thread: None,
            content,
        });
    }

    /// Turns engine output into Slack writes. `Say` goes to the job's thread when there is a
    /// job in context, else to `channel`.
    fn route(&mut self, outs: Vec<Outgoing>, channel: &str, job_ctx: Option<JobId>) {
        for o in outs {
            match o {
                Outgoing::Say { text } => {
                    let content = messages::reply(&self.shared.blocks, &text);
                    match job_ctx.filter(|j| self.roots.contains(j)) {
                        Some(j) => self.out.send(Op::Post {
                            key: None,
                            channel: channel.to_string(),
                            thread: Some(MsgKey::Root(j)),
                            content,
                        }),
                        None => self.out.send(Op::Post {
                            key: None,
                            channel: channel.to_string(),
                            thread: None,
                            content,
                        }),
                    }
                }
                Outgoing::Thread { job, op } => {
                    self.ensure_root(job);
                    let (post, msg, text) = match op {
                        ThreadOp::Post { msg, text } => (true, msg, text),
                        ThreadOp::Edit { msg, text } => (false, msg, text),
                    };
                    let content = match msg {
                        MessageRef::Status => self
                            .shared
                            .blocks
                            .message("job_status", &json!({"text": text})),
                        MessageRef::Log(n) => messages::job_log(&self.shared.blocks, n + 1, &text),
                    };
                    let key = MsgKey::Thread(job, msg);
                    if post {
                        self.out.send(Op::Post {
                            key: Some(key),
                            channel: self.channel_of(job),
                            thread: Some(MsgKey::Root(job)),
                            content,
                        });
                    } else {
                        self.out.send(Op::Update { key, content });
                    }
                }
                Outgoing::ThreadSay { job, text } => {
                    self.ensure_root(job);
                    let content = self
                        .shared
                        .blocks
                        .message("thread_note", &json!({"text": text}));
                    self.out.send(Op::Post {
                        key: None,
                        channel: self.channel_of(job),
                        thread: Some(MsgKey::Root(job)),
                        content,
                    });
                }
                Outgoing::Attach { job, name, content } => {
                    self.ensure_root(job);
                    self.out.send(Op::Upload {
                        channel: self.channel_of(job),
                        thread: Some(MsgKey::Root(job)),
                        name,
                        content,
                    });
                }
            }
        }
    }
}
