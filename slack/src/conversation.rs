//! The engine task: the only owner of the engine. Requests from the handlers become engine
//! calls; broker events and ticks are fed in; everything the engine says becomes Block Kit
//! writes on the outbound queue (thread roots, approval messages with buttons, status and log
//! messages, notes, the log file). It keeps only Slack bookkeeping: which channel a job came
//! from, which threads and approval messages exist.

use crate::app::{deploy_form, Input, Inventory, Shared};
use crate::messages;
use crate::modal;
use crate::outbound::{Fallback, MsgKey, Op, Outbound};
use aetherv_bot::engine::{Engine, EngineError, FormOutcome, Outgoing};
use aetherv_bot::state::short_id;
use aetherv_bot::thread::{MessageRef, ThreadOp};
use aetherv_broker::StreamOffset;
use aetherv_core::{EventBody, JobId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    /// The `response_url` of the slash command being handled: where a reply goes when the
    /// bot is not a member of the channel.
    reply_url: Option<String>,
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
            reply_url: None,
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
            // Under the inventory lock, so no view built from the old inventory survives.
            if let Ok(mut views) = self.shared.views.lock() {
                views.clear();
            }
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
            Input::Line {
                who,
                channel,
                text,
                response_url,
            } => {
                let before: HashSet<JobId> = self.engine.state.jobs.keys().copied().collect();
                let outs = self.engine.handle_line(&who, &text).await?;
                self.reply_url = response_url;
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
                        match job {
                            Some(j) => self.start_job(j, &meta.channel, out),
                            None => self.route(out, &meta.channel, None),
                        }
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
                let ours = self.open_approvals.contains(&job);
                let undecided = self.engine.decision(job).is_none();
                let res = self.engine.vote(&who, job, approve, None).await?;
                let ch = self.channel_of(job);
                if res.changed {
                    self.route(res.out, &ch, Some(job));
                } else {
                    // Refused (role, self-approval, a second vote): only the voter sees why,
                    // where they clicked.
                    let at = clicked.as_ref().map_or(ch, |(c, _)| c.clone());
                    self.answer_only(&user, &at, Some(job), res.out);
                }
                // A request from before a restart, decided by this click: this bot never
                // posted its messages, so update the one that was clicked.
                if let (false, true, Some(d), Some((channel, ts))) =
                    (ours, undecided, &res.decision, clicked)
                {
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

    /// The fallback for a post answering the command being handled.
    fn fallback(&self, content: &serde_json::Value) -> Option<Fallback> {
        let text = content.get("text").and_then(serde_json::Value::as_str)?;
        Some(Fallback {
            response_url: self.reply_url.clone()?,
            content: messages::not_in_channel(&self.shared.blocks, text),
        })
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
            fallback: self.fallback(&content),
            channel: self.channel_of(job),
            thread: None,
            content,
        });
    }

    /// Turns engine output into Slack writes. `Say` goes to the job's thread when there is a
    /// job in context, else to `channel`.
    /// The engine's plain answers as ephemeral messages to one user in `channel`, in the
    /// job's thread when that is where they are (thread updates, if any, still go to the
    /// thread).
    fn answer_only(&mut self, user: &str, channel: &str, job: Option<JobId>, outs: Vec<Outgoing>) {
        let mut rest = Vec::new();
        let thread = job.filter(|j| self.roots.contains(j)).map(MsgKey::Root);
        for o in outs {
            match o {
                Outgoing::Say { text } => self.out.send(Op::Ephemeral {
                    channel: channel.to_string(),
                    thread,
                    user: user.to_string(),
                    content: messages::reply(&self.shared.blocks, &text),
                }),
                other => rest.push(other),
            }
        }
        let ch = channel.to_string();
        self.route(rest, &ch, None);
    }

    fn route(&mut self, outs: Vec<Outgoing>, channel: &str, job_ctx: Option<JobId>) {
        for o in outs {
            match o {
                Outgoing::Say { text } => {
                    let content = messages::reply(&self.shared.blocks, &text);
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
                Outgoing::Thread { job, op } => {
                    self.ensure_root(job);
                    let (post, msg, text) = match op {
                        ThreadOp::Post { msg, text } => (true, msg, text),
                        ThreadOp::Edit { msg, text } => (false, msg, text),
                    };
                    let content = match msg {
                        MessageRef::Status => messages::job_status(&self.shared.blocks, &text),
                        MessageRef::Log(n) => messages::job_log(&self.shared.blocks, n + 1, &text),
                    };
                    let key = MsgKey::Thread(job, msg);
                    if post {
                        self.out.send(Op::Post {
                            key: Some(key),
                            fallback: None,
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
                    let content = messages::thread_note(&self.shared.blocks, &text);
                    self.out.send(Op::Post {
                        key: None,
                        fallback: None,
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
