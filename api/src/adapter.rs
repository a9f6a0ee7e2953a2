//! The API as one more front door of the bot's serve loop: [`WithApi`] wraps any chat
//! adapter (console, Slack, Discord) and merges the API's calls with the chat's inputs, so
//! approvals of API requests happen in that chat. Each call goes through
//! [`Engine::submit_request`] (the same validation, gate, roles, policy and approval as an
//! AMQP producer's request) with the caller's principal; the snapshot reads are served from
//! is refreshed after each call and whenever events or ticks changed the state.

use crate::requests::{translate, Call, Cancelled, Submitted, Write};
use crate::store::Store;
use aetherv_bot::engine::RequestOutcome;
use aetherv_bot::{Adapter, Engine, Flow, Reply};
use aetherv_core::Event;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A job's state name now.
fn state_of(engine: &Engine, job: aetherv_core::JobId) -> &'static str {
    engine
        .view()
        .job_info(&job)
        .map_or("queued", |j| crate::store::state_name(j.phase))
}

/// One input of the wrapped loop: the chat's, or the API's.
pub enum Input<I> {
    /// A chat input.
    Chat(I),
    /// An API call.
    Api(Call),
}

/// A chat adapter with the API's calls merged in.
pub struct WithApi<A> {
    inner: A,
    calls: mpsc::Receiver<Call>,
    store: Arc<Store>,
    chat_open: bool,
    /// Jobs whose documents changed since the last refresh.
    touched: std::collections::HashSet<aetherv_core::JobId>,
    /// Something changed that is not one job (inventory, a chat command).
    dirty: bool,
}

impl<A: Adapter> WithApi<A> {
    /// Wraps `inner`; `calls` are the API's (see [`crate::Api::new`]).
    pub fn new(inner: A, calls: mpsc::Receiver<Call>, store: Arc<Store>) -> Self {
        WithApi {
            inner,
            calls,
            store,
            chat_open: true,
            touched: Default::default(),
            dirty: true,
        }
    }

    /// The wrapped adapter.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// Refreshes the snapshot for the jobs touched since the last refresh.
    fn refresh(&mut self, engine: &Engine) {
        self.store.refresh_jobs(engine.view(), &self.touched);
        self.touched.clear();
        self.dirty = false;
    }

    async fn call(&mut self, engine: &mut Engine, call: Call) -> anyhow::Result<()> {
        match call {
            Call::Submit { who, write, reply } => {
                let answer = match translate(engine.view(), write) {
                    Err(problem) => Submitted::Refused(problem),
                    Ok(Write { request }) => {
                        match engine.submit_request(&who, request, None).await? {
                            RequestOutcome::Accepted {
                                job,
                                awaiting_approval,
                                replies,
                            } => {
                                self.inner.deliver(engine, replies).await?;
                                Submitted::Accepted {
                                    job,
                                    awaiting_approval,
                                    replayed: false,
                                    state: state_of(engine, job),
                                }
                            }
                            RequestOutcome::Existing {
                                job,
                                awaiting_approval,
                                replies,
                            } => {
                                self.inner.deliver(engine, replies).await?;
                                Submitted::Accepted {
                                    job,
                                    awaiting_approval,
                                    replayed: true,
                                    state: state_of(engine, job),
                                }
                            }
                            RequestOutcome::Rejected { errors } => {
                                Submitted::Refused(crate::problem::Problem::refused(errors))
                            }
                        }
                    }
                };
                if let Submitted::Accepted { job, .. } = &answer {
                    self.touched.insert(*job);
                }
                self.refresh(engine);
                let _ = reply.send(answer);
            }
            Call::Cancel { who, job, reply } => {
                let before = engine.view().job_info(&job).map(|j| j.phase);
                let replies = engine.handle_line(&who, &format!("cancel {job}")).await?;
                let refused = replies.iter().find_map(|r| match r {
                    Reply::Refused { role, .. } => Some(role.clone()),
                    _ => None,
                });
                let said = replies.iter().find_map(|r| match r {
                    Reply::Notice { message, .. } => Some(message.clone()),
                    _ => None,
                });
                let info = engine.view().job_info(&job);
                let taken = info.is_some_and(|j| {
                    j.cancel_requested_by.as_ref() == Some(&who.id)
                        || (j.phase == aetherv_bot::state::Phase::Cancelled
                            && before != Some(aetherv_bot::state::Phase::Cancelled))
                });
                let answer = match (before, refused) {
                    (None, _) => Cancelled::NotFound,
                    (_, Some(role)) => {
                        Cancelled::Forbidden(format!("cancel needs the {role} role"))
                    }
                    _ if taken => Cancelled::Accepted(said.unwrap_or_default()),
                    _ => Cancelled::Conflict(said.unwrap_or_else(|| "nothing to cancel".into())),
                };
                self.inner.deliver(engine, replies).await?;
                self.touched.insert(job);
                self.refresh(engine);
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }
}

impl<A: Adapter> Adapter for WithApi<A>
where
    A::Input: Send,
{
    type Input = Input<A::Input>;

    fn reading(&self) -> bool {
        true
    }

    fn answers_while_catching_up(&self) -> bool {
        // API calls wait for the replay (the gate must see the whole state); HTTP handlers
        // answer 503 meanwhile.
        false
    }

    async fn recv(&mut self) -> Option<Self::Input> {
        let chat = self.chat_open && self.inner.reading();
        tokio::select! {
            input = self.inner.recv(), if chat => match input {
                Some(i) => Some(Input::Chat(i)),
                None => {
                    self.chat_open = false;
                    // The chat's inputs ended; the API goes on.
                    let _ = self.inner.ended();
                    self.calls.recv().await.map(Input::Api)
                }
            },
            call = self.calls.recv() => call.map(Input::Api),
        }
    }

    async fn handle(&mut self, engine: &mut Engine, input: Self::Input) -> anyhow::Result<Flow> {
        match input {
            Input::Chat(i) => {
                let flow = self.inner.handle(engine, i).await?;
                // A chat command may change any job (a vote, a cancel): all of them.
                self.store.refresh(engine.view());
                self.touched.clear();
                Ok(flow)
            }
            Input::Api(call) => {
                self.call(engine, call).await?;
                Ok(Flow::Continue)
            }
        }
    }

    async fn deliver(&mut self, engine: &Engine, replies: Vec<Reply>) -> anyhow::Result<()> {
        for r in &replies {
            match r {
                Reply::JobOpened(v) => {
                    self.touched.insert(v.job);
                }
                Reply::ApprovalDecided { job, .. } | Reply::JobFinished { job, .. } => {
                    self.touched.insert(*job);
                }
                _ => {}
            }
        }
        self.inner.deliver(engine, replies).await
    }

    fn started(&mut self, engine: &Engine) {
        self.inner.started(engine);
        self.store.refresh(engine.view());
    }

    fn applied(&mut self, engine: &Engine, event: &Event) {
        self.store.record(event);
        match event.job_id {
            Some(job) => {
                self.touched.insert(job);
            }
            None => self.dirty = true,
        }
        self.inner.applied(engine, event);
    }

    fn ticked(&mut self, engine: &Engine) -> Flow {
        if self.dirty || !self.touched.is_empty() || self.store.settling() {
            self.refresh(engine);
        }
        // The chat may stop (its input ended and its jobs are done): the API goes on.
        let _ = self.inner.ticked(engine);
        Flow::Continue
    }

    fn ended(&mut self) -> Flow {
        Flow::Stop
    }
}
