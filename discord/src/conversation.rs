//! The Discord adapter on the serve loop ([`aetherv_bot::serve`]): interactions become engine
//! calls, and the engine's typed replies become REST writes on the outbound queue: a command's
//! texts as the edit of its deferred answer, approval requests with buttons in the approvals
//! channel and their decided versions, status and log messages, notes and the log file in the
//! job's channel. It keeps only Discord bookkeeping (which channel a job came from, which
//! approval messages are open) and decides nothing: the engine does.

mod forms;

use crate::form::Drafts;
use crate::messages;
use crate::outbound::{MsgKey, Op, Outbound};
use aetherv_bot::chat::Places;
use aetherv_bot::engine::{Engine, EngineError};
use aetherv_bot::render::Renderer;
use aetherv_bot::reply::{ApprovalView, Reply};
use aetherv_bot::serve::{Adapter, Flow};
use aetherv_core::approval::Decision;
use aetherv_core::rbac::Principal;
use aetherv_core::schema::Forms;
use aetherv_core::JobId;
use serde_json::json;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;
use uuid::Uuid;

/// One request from Discord, already acknowledged.
#[derive(Debug, Clone)]
pub enum Input {
    /// An `/aether` command as a chat line; its deferred answer is edited with the texts.
    Command {
        /// Who.
        who: Principal,
        /// The chat line.
        line: String,
        /// The interaction token.
        token: String,
        /// The channel it was typed in.
        channel: Option<String>,
    },
    /// An Approve / Reject click (acknowledged as a deferred update).
    Vote {
        /// Who.
        who: Principal,
        /// The job.
        job: JobId,
        /// Approve or reject.
        approve: bool,
        /// The interaction token (for the clicker-only answer).
        token: String,
        /// The clicked message (channel, message id).
        message: Option<(String, String)>,
    },
    /// A deploy form's page submitted (acknowledged as a deferred ephemeral answer, edited
    /// with the page's outcome and the buttons that go on).
    Page {
        /// Who.
        who: Principal,
        /// The draft, as the page left it.
        draft: Uuid,
        /// The page's fields.
        fields: Vec<String>,
        /// The page's index.
        page: usize,
        /// The interaction token.
        token: String,
    },
    /// A deploy form's Submit button (acknowledged as a deferred ephemeral answer).
    Submit {
        /// Who.
        who: Principal,
        /// The draft.
        draft: Uuid,
        /// The interaction token.
        token: String,
    },
}

pub use aetherv_bot::chat::Inventory;

/// The Discord adapter.
pub struct Conversation {
    rx: mpsc::Receiver<Input>,
    out: Outbound,
    texts: Arc<Renderer>,
    inventory: Arc<RwLock<Inventory>>,
    places: Places,
    drafts: Arc<Drafts>,
    forms: Arc<Forms>,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("channel", &self.places.channel)
            .finish_non_exhaustive()
    }
}

/// Replies that are a text of their own: answers, except a decision (it edits the approval
/// messages and is posted in the job's thread).
pub fn is_text(r: &Reply) -> bool {
    r.is_answer() && !matches!(r, Reply::ApprovalDecided { .. })
}

impl Conversation {
    /// An adapter reading `rx`, writing through `out`, posting in `channel` by default;
    /// deploy forms are kept in `drafts`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rx: mpsc::Receiver<Input>,
        out: Outbound,
        texts: Arc<Renderer>,
        inventory: Arc<RwLock<Inventory>>,
        channel: String,
        approvals_channel: Option<String>,
        drafts: Arc<Drafts>,
        forms: Arc<Forms>,
    ) -> Self {
        Conversation {
            rx,
            out,
            texts,
            inventory,
            places: Places::new(channel, approvals_channel),
            drafts,
            forms,
        }
    }

    fn refresh_inventory(&self, engine: &Engine) {
        let inv = Inventory::of(engine);
        if let Ok(mut w) = self.inventory.write() {
            *w = inv;
        }
    }

    fn channel_of(&self, job: JobId) -> String {
        self.places.channel_of(job)
    }

    /// Texts of `outs` joined (the answer to one interaction), and the rest.
    fn split(&self, outs: Vec<Reply>) -> (Vec<String>, Vec<Reply>) {
        let mut texts = Vec::new();
        let mut rest = Vec::new();
        for o in outs {
            match (is_text(&o), self.texts.text(&o)) {
                (true, Some(t)) => texts.push(t),
                _ => rest.push(o),
            }
        }
        (texts, rest)
    }

    /// Handles one input.
    pub async fn handle_input(
        &mut self,
        engine: &mut Engine,
        input: Input,
    ) -> Result<(), EngineError> {
        match input {
            Input::Command {
                who,
                line,
                token,
                channel,
            } => {
                let outs = engine.handle_line(&who, &line).await?;
                let channel = channel.unwrap_or_else(|| self.places.channel.clone());
                let (texts, rest) = self.split(outs);
                let answer = if texts.is_empty() {
                    "Done.".to_string()
                } else {
                    texts.join("\n\n")
                };
                self.out.send(Op::EditOriginal {
                    token,
                    body: messages::text(&answer),
                });
                self.route(rest, &channel);
            }
            Input::Vote {
                who,
                job,
                approve,
                token,
                message,
            } => {
                let aetherv_bot::chat::Click {
                    ours,
                    undecided,
                    result: res,
                } = self.places.vote(engine, &who, job, approve).await?;
                let (texts, rest) = self.split(res.out);
                let ch = self.channel_of(job);
                for t in texts {
                    let body = if res.changed {
                        messages::text(&t)
                    } else {
                        // Refused (role, self-approval, a second vote, decided): the clicker
                        // alone sees why.
                        messages::ephemeral(&t)
                    };
                    self.out.send(Op::Followup {
                        token: token.clone(),
                        body,
                    });
                }
                self.route(rest, &ch);
                // A request from before a restart, decided by this click: this run never
                // posted its message, so the clicked one is edited.
                if let (false, true, Some(d), Some((channel, id))) =
                    (ours, undecided, &res.decision, message)
                {
                    if let Some(v) = engine.approval_view(job) {
                        let decided = Reply::ApprovalDecided {
                            job,
                            view: v.clone(),
                            decision: d.clone(),
                            cancelled: false,
                        };
                        let body = self.decided_body(&v, &decided);
                        self.out.send(Op::EditAt {
                            channel,
                            message: id,
                            body,
                        });
                    }
                }
            }
            Input::Page {
                who,
                draft,
                fields,
                page,
                token,
            } => {
                let body = self.page_checked(engine, &who, draft, page, &fields);
                self.out.send(Op::EditOriginal { token, body });
            }
            Input::Submit { who, draft, token } => {
                let body = self.submit_draft(engine, &who, draft).await?;
                self.out.send(Op::EditOriginal { token, body });
            }
        }
        Ok(())
    }

    fn decided_body(&self, view: &ApprovalView, decided: &Reply) -> serde_json::Value {
        let request = self.texts.render("approval_request", &json!(view));
        let decision = self.texts.text(decided).unwrap_or_default();
        messages::approval_decided(&request, &decision)
    }

    /// Turns the replies that are not a direct answer into channel writes.
    fn route(&mut self, outs: Vec<Reply>, channel: &str) {
        for o in outs {
            match &o {
                Reply::JobOpened(v) => {
                    self.places.job_in(v.job, channel);
                    let text = self.texts.render("thread_root", &json!(v));
                    self.out.send(Op::StartThread {
                        job: v.job,
                        channel: channel.to_string(),
                        body: messages::text(&text),
                        name: messages::cut(
                            &format!("Job {} · {} on {}", v.short, v.kind, v.target),
                            100,
                        ),
                    });
                }
                Reply::ApprovalRequested {
                    job,
                    restored: false,
                    ..
                } => {
                    let text = self.texts.text(&o).unwrap_or_default();
                    let request = messages::approval_request(&text, *job);
                    // In the approvals channel, and in the job's thread (its channel when it
                    // has no thread).
                    if let Some(ch) = self.places.approvals_channel.clone() {
                        self.out.send(Op::Post {
                            key: Some(MsgKey::Approval(*job, 0)),
                            channel: ch,
                            thread: None,
                            body: request.clone(),
                        });
                    }
                    self.out.send(Op::Post {
                        key: Some(MsgKey::Approval(*job, 1)),
                        channel: self.channel_of(*job),
                        thread: Some(*job),
                        body: request,
                    });
                    self.places.approval_opened(*job);
                }
                Reply::ApprovalDecided {
                    job,
                    view,
                    decision,
                    ..
                } => {
                    let body = self.decided_body(view, &o);
                    if self.places.approval_closed(*job) {
                        if self.places.approvals_channel.is_some() {
                            self.out.send(Op::Edit {
                                key: MsgKey::Approval(*job, 0),
                                body: body.clone(),
                            });
                        }
                        self.out.send(Op::Edit {
                            key: MsgKey::Approval(*job, 1),
                            body,
                        });
                    }
                    if let Some(t) = self.texts.text(&o) {
                        self.out.send(Op::Post {
                            key: None,
                            channel: self.channel_of(*job),
                            thread: Some(*job),
                            body: messages::text(&t),
                        });
                    }
                    if !matches!(decision, Decision::Approved { .. }) {
                        // Rejected or expired: the job will not run.
                        self.out.send(Op::JobEnded { job: *job });
                    }
                }
                Reply::ThreadUpdate(t) => {
                    let (name, data) = t.content.text_view();
                    let body = messages::text(&self.texts.render(name, &data));
                    let key = MsgKey::Thread(t.job, t.msg);
                    if t.edit {
                        self.out.send(Op::Edit { key, body });
                    } else {
                        self.out.send(Op::Post {
                            key: Some(key),
                            channel: self.channel_of(t.job),
                            thread: Some(t.job),
                            body,
                        });
                    }
                }
                Reply::JobFinished { job, log, .. } => {
                    let ch = self.channel_of(*job);
                    if let Some(t) = self.texts.text(&o) {
                        self.out.send(Op::Post {
                            key: None,
                            channel: ch.clone(),
                            thread: Some(*job),
                            body: messages::text(&t),
                        });
                    }
                    if let Some(log) = log {
                        let note = o
                            .attachment_view()
                            .map(|(name, data)| self.texts.render(name, &data))
                            .unwrap_or_default();
                        self.out.send(Op::Upload {
                            channel: ch,
                            thread: Some(*job),
                            body: messages::text(&note),
                            name: log.name.clone(),
                            content: log.content.clone(),
                        });
                    }
                    self.out.send(Op::JobEnded { job: *job });
                }
                _ => {
                    if let Some(t) = self.texts.text(&o) {
                        self.out.send(Op::Post {
                            key: None,
                            channel: channel.to_string(),
                            thread: o.job(),
                            body: messages::text(&t),
                        });
                    }
                }
            }
        }
    }
}

impl Adapter for Conversation {
    type Input = Input;

    async fn recv(&mut self) -> Option<Input> {
        self.rx.recv().await
    }

    async fn handle(&mut self, engine: &mut Engine, input: Input) -> anyhow::Result<Flow> {
        let token = match &input {
            Input::Command { token, .. }
            | Input::Vote { token, .. }
            | Input::Page { token, .. }
            | Input::Submit { token, .. } => token.clone(),
        };
        if let Err(e) = self.handle_input(engine, input).await {
            // The broker refused or is away: say so to the one who asked and keep serving.
            tracing::error!(error = %e, "request failed");
            self.out.send(Op::Followup {
                token,
                body: messages::ephemeral(&format!(
                    "That did not go through ({e}); please try again."
                )),
            });
        }
        Ok(Flow::Continue)
    }

    async fn deliver(&mut self, _engine: &Engine, replies: Vec<Reply>) -> anyhow::Result<()> {
        let ch = self.places.channel.clone();
        self.route(replies, &ch);
        Ok(())
    }

    fn started(&mut self, engine: &Engine) {
        self.refresh_inventory(engine);
    }

    fn applied(&mut self, engine: &Engine, event: &aetherv_core::Event) {
        if matches!(event.body, aetherv_core::EventBody::HostInventory { .. }) {
            self.refresh_inventory(engine);
        }
    }
}
