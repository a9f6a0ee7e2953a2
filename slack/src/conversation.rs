//! The Slack adapter on the serve loop ([`aetherv_bot::serve`]): requests from the handlers
//! become engine calls, and the engine's typed replies become Block Kit writes on the outbound
//! queue (thread roots, approval messages with buttons and their decided versions, status and
//! log messages, notes, the log file). It keeps only Slack bookkeeping: which channel a job came
//! from, which threads and approval messages exist.

use crate::app::{deploy_form, Input, Inventory, Shared};
use crate::messages;
use crate::modal;
use crate::outbound::{Fallback, MsgKey, Op, Outbound};
use aetherv_bot::chat::Places;
use aetherv_bot::engine::{Engine, EngineError, FormOutcome};
use aetherv_bot::reply::{JobView, Reply, ThreadContent};
use aetherv_bot::serve::{Adapter, Flow};
use aetherv_core::approval::Decision;
use aetherv_core::{Event, EventBody, JobId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The Slack adapter: owns the request queue and the Slack bookkeeping; the engine is passed
/// in by the serve loop.
pub struct Conversation {
    rx: mpsc::Receiver<Input>,
    shared: Arc<Shared>,
    out: Outbound,
    places: Places,
    roots: HashSet<JobId>,
    /// The `response_url` of the slash command being handled: where a reply goes when the
    /// bot is not a member of the channel.
    reply_url: Option<String>,
    /// The job of the event whose replies are delivered next (they go to its thread).
    event_job: Option<JobId>,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation").finish_non_exhaustive()
    }
}

impl Conversation {
    /// A conversation reading `rx`, replying in `channel` by default.
    pub fn new(
        rx: mpsc::Receiver<Input>,
        shared: Arc<Shared>,
        out: Outbound,
        channel: String,
        approvals_channel: Option<String>,
    ) -> Self {
        Conversation {
            rx,
            shared,
            out,
            places: Places::new(channel, approvals_channel),
            roots: HashSet::new(),
            reply_url: None,
            event_job: None,
        }
    }

    /// Publishes the engine's inventory to the modal builders.
    pub fn refresh_inventory(&self, engine: &Engine) {
        let inv = Inventory::of(engine);
        if let Ok(mut w) = self.shared.inventory.write() {
            *w = inv;
            // Under the inventory lock, so no view built from the old inventory survives.
            if let Ok(mut views) = self.shared.views.lock() {
                views.clear();
            }
        }
    }

    /// Handles one request.
    pub async fn handle_input(
        &mut self,
        engine: &mut Engine,
        input: Input,
    ) -> Result<(), EngineError> {
        match input {
            Input::Line {
                who,
                channel,
                text,
                response_url,
            } => {
                let outs = engine.handle_line(&who, &text).await?;
                self.reply_url = response_url;
                // `deploy key=value…` typed in full: the same thread and buttons as a modal.
                let job = aetherv_bot::engine::opened(&outs);
                self.route(engine, outs, &channel, job);
                self.reply_url = None;
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
                match engine.submit_form(&who, form, &fields).await? {
                    FormOutcome::Refused { role } => {
                        let first = self
                            .shared
                            .forms
                            .get(&meta.form)
                            .and_then(|f| f.fields().first())
                            .map(|f| f.id.clone())
                            .unwrap_or_default();
                        let text = messages::form_refused(&self.shared.blocks, role);
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
                        self.route(engine, out, &meta.channel, job);
                    }
                }
            }
            Input::Vote {
                who,
                user,
                job,
                approve,
                clicked,
            } => {
                let aetherv_bot::chat::Click {
                    ours,
                    undecided,
                    result: res,
                } = self.places.vote(engine, &who, job, approve).await?;
                let ch = self.channel_of(job);
                if res.changed {
                    self.route(engine, res.out, &ch, Some(job));
                } else {
                    // Refused (role, self-approval, a second vote): only the voter sees why,
                    // where they clicked.
                    let at = clicked.as_ref().map_or(ch, |(c, _)| c.clone());
                    self.answer_only(engine, &user, &at, Some(job), res.out);
                }
                // A request from before a restart, decided by this click: this bot never
                // posted its messages, so update the one that was clicked.
                if let (false, true, Some(d), Some((channel, ts))) =
                    (ours, undecided, &res.decision, clicked)
                {
                    if let Some(v) = engine.approval_view(job) {
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
        Ok(())
    }

    /// The fallback for a post answering the command being handled.
    fn fallback(&self, content: &serde_json::Value) -> Option<Fallback> {
        let text = content.get("text").and_then(serde_json::Value::as_str)?;
        Some(Fallback {
            response_url: self.reply_url.clone()?,
            content: messages::not_in_channel(&self.shared.blocks, text),
        })
    }

    /// The approval request with buttons, in the approvals channel and the job's thread.
    fn post_approval(&mut self, job: JobId, v: &aetherv_bot::reply::ApprovalView) {
        let content = messages::approval_request(&self.shared.blocks, v, &v.requester, job);
        if let Some(ch) = &self.places.approvals_channel {
            self.out.send(Op::Post {
                key: Some(MsgKey::Approval(job, 0)),
                fallback: None,
                channel: ch.clone(),
                thread: None,
                content: content.clone(),
            });
        }
        self.out.send(Op::Post {
            key: Some(MsgKey::Approval(job, 1)),
            fallback: None,
            channel: self.channel_of(job),
            thread: Some(MsgKey::Root(job)),
            content,
        });
        self.places.approval_opened(job);
    }

    /// Both approval messages of a decided request, without buttons.
    fn update_approvals(&mut self, job: JobId, v: &aetherv_bot::reply::ApprovalView, d: &Decision) {
        if !self.places.approval_closed(job) {
            return;
        }
        let content = messages::approval_decided(&self.shared.blocks, v, d);
        for i in [0u8, 1] {
            if i == 0 && self.places.approvals_channel.is_none() {
                continue;
            }
            self.out.send(Op::Update {
                key: MsgKey::Approval(job, i),
                content: content.clone(),
            });
        }
    }

    fn channel_of(&self, job: JobId) -> String {
        self.places.channel_of(job)
    }

    /// Posts a job's thread root once.
    fn ensure_root(&mut self, engine: &Engine, job: JobId) {
        if self.roots.contains(&job) {
            return;
        }
        if let Some(j) = engine.job(job) {
            self.post_root(&j.view);
        }
    }

    fn post_root(&mut self, v: &JobView) {
        if !self.roots.insert(v.job) {
            return;
        }
        let content = messages::thread_root(
            &self.shared.blocks,
            &v.short,
            &v.kind,
            &v.target,
            &v.requester,
        );
        self.out.send(Op::Post {
            key: Some(MsgKey::Root(v.job)),
            fallback: self.fallback(&content),
            channel: self.channel_of(v.job),
            thread: None,
            content,
        });
    }

    /// The engine's text replies as ephemeral messages to one user in `channel`, in the
    /// job's thread when that is where they are (thread updates, if any, still go to the
    /// thread).
    fn answer_only(
        &mut self,
        engine: &Engine,
        user: &str,
        channel: &str,
        job: Option<JobId>,
        outs: Vec<Reply>,
    ) {
        let mut rest = Vec::new();
        let thread = job.filter(|j| self.roots.contains(j)).map(MsgKey::Root);
        for o in outs {
            match (o.is_answer(), self.shared.texts.text(&o)) {
                (true, Some(text)) => self.out.send(Op::Ephemeral {
                    channel: channel.to_string(),
                    thread,
                    user: user.to_string(),
                    content: messages::reply(&self.shared.blocks, &text),
                }),
                _ => rest.push(o),
            }
        }
        self.route(engine, rest, channel, None);
    }

    /// A text reply in `channel`: in the job's thread when there is a job in context and its
    /// thread exists, else at the channel's top level.
    fn say(&mut self, text: &str, channel: &str, job_ctx: Option<JobId>) {
        let content = messages::reply(&self.shared.blocks, text);
        match job_ctx.filter(|j| self.roots.contains(j)) {
            Some(j) => self.out.send(Op::Post {
                key: None,
                fallback: None,
                channel: channel.to_string(),
                thread: Some(MsgKey::Root(j)),
                content,
            }),
            None => self.out.send(Op::Post {
                key: None,
                fallback: self.fallback(&content),
                channel: channel.to_string(),
                thread: None,
                content,
            }),
        }
    }

    fn thread_post(&mut self, job: JobId, key: Option<MsgKey>, content: serde_json::Value) {
        self.out.send(Op::Post {
            key,
            fallback: None,
            channel: self.channel_of(job),
            thread: Some(MsgKey::Root(job)),
            content,
        });
    }

    /// Turns replies into Slack writes. Text replies go to the job's thread when there is a
    /// job in context (`job_ctx`), else to `channel`. Decided approval messages are updated
    /// after the rest, so the decision is never shown before what it answers.
    fn route(&mut self, engine: &Engine, outs: Vec<Reply>, channel: &str, job_ctx: Option<JobId>) {
        let mut decided = Vec::new();
        for o in outs {
            match &o {
                Reply::JobOpened(v) => {
                    self.places.job_in(v.job, channel);
                    self.post_root(v);
                }
                Reply::ApprovalRequested {
                    job,
                    view,
                    restored: false,
                } => self.post_approval(*job, view),
                Reply::ThreadUpdate(t) => {
                    self.ensure_root(engine, t.job);
                    let text = {
                        let (name, data) = t.content.text_view();
                        self.shared.texts.render(name, &data)
                    };
                    let payload = match &t.content {
                        ThreadContent::Status(v) => {
                            messages::job_status(&self.shared.blocks, &text, v)
                        }
                        ThreadContent::Log { part, .. } => {
                            messages::job_log(&self.shared.blocks, *part, &text)
                        }
                    };
                    let key = MsgKey::Thread(t.job, t.msg);
                    if t.edit {
                        self.out.send(Op::Update {
                            key,
                            content: payload,
                        });
                    } else {
                        self.thread_post(t.job, Some(key), payload);
                    }
                }
                Reply::JobFinished { job, log, .. } => {
                    self.ensure_root(engine, *job);
                    let notes: Vec<String> = self
                        .shared
                        .texts
                        .text(&o)
                        .into_iter()
                        .chain(
                            o.attachment_view()
                                .map(|(name, data)| self.shared.texts.render(name, &data)),
                        )
                        .collect();
                    for text in notes {
                        let content = messages::thread_note(&self.shared.blocks, &text);
                        self.thread_post(*job, None, content);
                    }
                    if let Some(log) = log {
                        self.out.send(Op::Upload {
                            channel: self.channel_of(*job),
                            thread: Some(MsgKey::Root(*job)),
                            name: log.name.clone(),
                            content: log.content.clone(),
                        });
                    }
                }
                _ => {
                    if let Some(text) = self.shared.texts.text(&o) {
                        self.say(&text, channel, job_ctx);
                    }
                    if let Reply::ApprovalDecided {
                        job,
                        view,
                        decision,
                        ..
                    } = o
                    {
                        decided.push((job, view, decision));
                    }
                }
            }
        }
        for (job, view, decision) in decided {
            self.update_approvals(job, &view, &decision);
        }
    }
}

impl Adapter for Conversation {
    type Input = Input;

    async fn recv(&mut self) -> Option<Input> {
        self.rx.recv().await
    }

    async fn handle(&mut self, engine: &mut Engine, input: Input) -> anyhow::Result<Flow> {
        let channel = input.channel().map(str::to_string);
        if let Err(e) = self.handle_input(engine, input).await {
            // The broker refused or is away: say so and keep serving.
            tracing::error!(error = %e, "request failed");
            let text = format!("That did not go through ({e}); please try again.");
            let ch = channel.unwrap_or_else(|| self.places.channel.clone());
            self.say(&text, &ch, None);
        }
        Ok(Flow::Continue)
    }

    async fn deliver(&mut self, engine: &Engine, replies: Vec<Reply>) -> anyhow::Result<()> {
        let ch = self.places.channel.clone();
        let job = self.event_job.take();
        self.route(engine, replies, &ch, job);
        Ok(())
    }

    fn started(&mut self, engine: &Engine) {
        self.refresh_inventory(engine);
    }

    fn applied(&mut self, engine: &Engine, event: &Event) {
        self.event_job = event.job_id;
        if matches!(event.body, EventBody::HostInventory { .. }) {
            self.refresh_inventory(engine);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_replies_are_answered_to_one_user() {
        for r in Reply::samples() {
            let text = r.is_answer();
            match r {
                Reply::Notice { .. } | Reply::VoteRefused { .. } | Reply::Refused { .. } => {
                    assert!(text, "{r:?}")
                }
                Reply::ThreadUpdate(_) | Reply::JobOpened(_) | Reply::JobFinished { .. } => {
                    assert!(!text, "{r:?}")
                }
                _ => {}
            }
        }
    }
}
