//! The conversation engine: the one dispatch point from a chat line to replies, jobs and
//! events, and from events to job-thread messages.
//!
//! [`Engine::handle_line`] parses with the core grammar, checks the caller's role, and runs one
//! `command_<verb>` function per command. [`Engine::handle_event`] applies broker events to the
//! state and produces thread messages; [`Engine::tick`] sends throttled edits and expires
//! approvals. Everything the engine says goes out as typed [`Reply`] values; adapters render
//! them with their own templates. It must not know any platform's wire format or text.

mod api;
mod approvals;
mod catchup;
mod changes;
mod guided;
mod requests;

pub use api::{opened, FormOutcome, VoteResult};
pub use requests::RequestOutcome;

use crate::reply::{FieldErrorView, Listing, LogFile, Outcome, Reply};
use crate::state::{display, JobInfo, Phase, State};
use crate::thread::Limits;
use aetherv_broker::Broker;
use aetherv_core::approval::{Decision, Policy};
use aetherv_core::command::{self, Command, CommandName, CommandParseError, DeployForm};
use aetherv_core::contract::job::Approval;
use aetherv_core::ops::{
    DiskCreateSpec, DiskUpdateSpec, JobSpec, NicCreateSpec, VmDeleteSpec, VmPowerSpec, VmRef,
    VmUpdateSpec,
};
use aetherv_core::rbac::{Grants, Principal, Rbac};
use aetherv_core::schema::Forms;
use aetherv_core::validate::{validate, FieldError, ValidationContext};
use aetherv_core::{Event, EventBody, JobId, JobKind, Platform, Target};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument as _;

/// How many jobs `jobs` lists without `--limit` or `--all`.
pub const JOBS_LIMIT: usize = 10;

/// A restored job that ended this recently without `thread.finished` gets its final message
/// (older ones are history nobody waits for; a first start must not repost a week of them).
pub const OWED_FINAL_WITHIN: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long replayed history must be quiet before restored threads are announced.
pub const SETTLE_AFTER_REPLAY: Duration = Duration::from_millis(400);

/// Engine configuration.
pub struct EngineConfig {
    /// Roles.
    pub rbac: Rbac,
    /// Approval policy.
    pub policy: Policy,
    /// Platform message limits.
    pub limits: Limits,
    /// The platform the engine talks to.
    pub platform: Platform,
    /// The channel id (goes into job origins).
    pub channel: String,
    /// Hosts known from configuration (inventory adds more).
    pub hosts: Vec<String>,
    /// The workers' age recipients: secret form values are sealed to them into the envelope's
    /// `secrets` field at submission, so the bot keeps no plaintext, approvals survive a bot
    /// restart, and the broker only ever holds ciphertext. Empty: requests with secret values
    /// are refused.
    pub recipients: Vec<aetherv_core::secrets::Recipient>,
    /// The key every published job is signed with (workers given its public key run only
    /// jobs it signed). `None`: jobs go out unsigned.
    pub signer: Option<std::sync::Arc<aetherv_core::signing::SigningKey>>,
}

impl EngineConfig {
    /// A console configuration from roles and policy texts (YAML), the hosts offered before
    /// the first inventory, and the workers' age recipients (comma-separated); adapters change
    /// `platform`, `channel` and `limits`. The error is one line.
    pub fn from_texts(
        roles: &str,
        policy: &str,
        hosts: Vec<String>,
        recipients: &str,
    ) -> Result<Self, String> {
        let recipients = aetherv_core::secrets::parse_recipients(recipients)
            .map_err(|e| format!("age recipients: {e}"))?;
        let rbac = Rbac::from_yaml(roles)
            .map_err(|e| format!("roles: {}", aetherv_core::error_chain(&e)))?;
        let policy = Policy::from_yaml(policy)
            .map_err(|e| format!("policy: {}", aetherv_core::error_chain(&e)))?;
        Ok(EngineConfig {
            rbac,
            policy,
            limits: crate::thread::DEFAULT_LIMITS,
            platform: Platform::Console,
            channel: "console".into(),
            hosts,
            recipients,
            signer: None,
        })
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("platform", &self.platform)
            .field("channel", &self.channel)
            .field("hosts", &self.hosts)
            .field("recipients", &self.recipients.len())
            .field("signer", &self.signer.as_ref().map(|k| k.id().to_owned()))
            .finish_non_exhaustive()
    }
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    broker: Broker,
    cfg: EngineConfig,
    forms: Forms,
    state: State,
    started_at: chrono::DateTime<chrono::Utc>,
    last_history: Option<Instant>,
    /// Guided forms in progress, by user.
    guided: std::collections::HashMap<String, guided::Guided>,
    /// AMQP producers waiting for the approval decision on their job (this bot's memory:
    /// after a restart they follow the events).
    producers: std::collections::HashMap<JobId, requests::ReplyAddress>,
    /// Jobs whose final message this bot sent and has not marked on the stream yet.
    to_mark: Vec<JobId>,
    /// The serve loop is still replaying the event stream (see [`catchup`]).
    catching_up: bool,
}

/// Errors the engine cannot turn into a reply (broker gone, bad templates).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Publishing failed.
    #[error("publish failed")]
    Publish(#[from] aetherv_broker::PublishError),
    /// Forms do not load.
    #[error("setup failed: {0}")]
    Setup(String),
}

/// A deploy form's values after validation.
enum Prepared {
    /// A request for the gate: kind, target and spec.
    Ready(JobKind, Target, Map<String, Value>),
    /// Field errors.
    Invalid(Vec<FieldError>),
    /// Refused for another reason (one line).
    Refused(String),
}

/// Field errors of `form` as a reply to `user`.
pub(crate) fn form_errors(user: &str, form: &str, errors: Vec<FieldError>) -> Reply {
    Reply::FormErrors {
        user: user.to_string(),
        form: form.to_string(),
        errors: errors
            .into_iter()
            .map(|e| FieldErrorView {
                field: e.field,
                code: e.code.as_str().to_string(),
                message: e.message,
            })
            .collect(),
    }
}

/// A one-line answer to `user`.
pub(crate) fn notice(user: &str, message: impl Into<String>) -> Reply {
    Reply::Notice {
        user: user.to_string(),
        message: message.into(),
    }
}

/// What to tell a user about a line that does not parse, and the usage line that helps (for
/// adapters that answer such lines at once, without the engine).
pub fn user_text(e: &CommandParseError) -> (String, Option<&'static str>) {
    match e {
        CommandParseError::Empty => ("say something; try `help`".into(), None),
        CommandParseError::UnterminatedQuote => ("a quote is not closed".into(), None),
        CommandParseError::Unknown { family: None } => ("unknown command; try `help`".into(), None),
        CommandParseError::Unknown { family: Some(w) } => {
            (format!("unknown `{w}` command; try `help`"), None)
        }
        CommandParseError::MissingArgument { command, arg } => {
            (format!("{arg} is missing"), Some(command.usage()))
        }
        CommandParseError::UnexpectedArgument { command, position } => (
            format!("argument {position} is not expected here"),
            Some(command.usage()),
        ),
        CommandParseError::UnknownFlag { command, position } => (
            format!("argument {position} is not an option"),
            Some(command.usage()),
        ),
        CommandParseError::InvalidNumber { arg } => {
            (format!("{arg} must be a positive whole number"), None)
        }
        CommandParseError::InvalidField { position } => (
            format!(
                "argument {position} is not a field; write name=value \
                 (no space after `=`; quote values with spaces)"
            ),
            Some(CommandName::Deploy.usage()),
        ),
        CommandParseError::UnknownField { command, position } => (
            format!("argument {position} is not a field this command takes"),
            Some(command.usage()),
        ),
        _ => (e.to_string(), None),
    }
}

impl Engine {
    /// Builds an engine over a broker.
    pub fn new(broker: Broker, cfg: EngineConfig) -> Result<Self, EngineError> {
        let forms = Forms::builtin().map_err(|e| EngineError::Setup(e.to_string()))?;
        let mut state = State::new(cfg.limits);
        for h in &cfg.hosts {
            state.know_host(h);
        }
        Ok(Engine {
            broker,
            cfg,
            forms,
            state,
            started_at: chrono::Utc::now(),
            last_history: None,
            to_mark: Vec::new(),
            guided: Default::default(),
            producers: Default::default(),
            catching_up: false,
        })
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// True when every job thread has said everything (used by scripted consoles).
    pub fn is_idle(&self) -> bool {
        self.state.jobs.values().all(|j| {
            if j.quiet {
                j.phase.is_final()
            } else {
                // A request that ended before it was published (rejected, expired, cancelled
                // while awaiting approval) has no thread to finish.
                j.phase == Phase::AwaitingApproval
                    || (j.phase.is_final() && j.queued_seq.is_none())
                    || (j.phase.is_final() && j.finished && j.thread.next_due().is_none())
            }
        })
    }

    async fn emit(&mut self, job: JobId, body: EventBody) -> Result<(), EngineError> {
        let ev = Event::for_job(job, 0, body);
        self.broker.publish_event(&ev).await?;
        self.state.apply(&ev, false);
        self.tell_producer(job, &ev.body).await;
        Ok(())
    }

    /// One chat line from `who`.
    pub async fn handle_line(
        &mut self,
        who: &Principal,
        line: &str,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        if self.catching_up {
            return Ok(vec![catchup::notice(user)]);
        }
        if self.in_guided_form(who) {
            let grants = self.cfg.rbac.grants(who);
            return self.guided_answer(who, &grants, line).await;
        }
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(e) => {
                let (message, usage) = user_text(&e);
                return Ok(vec![Reply::ParseError {
                    user,
                    message,
                    usage: usage.map(String::from),
                }]);
            }
        };
        let grants = match self.cfg.rbac.check(who, cmd.name()) {
            Ok(g) => g,
            Err(role) => {
                let name = cmd.name().usage().split(' ').take(2).collect::<Vec<_>>();
                let name = if name
                    .get(1)
                    .is_some_and(|w| w.chars().all(|c| c.is_ascii_lowercase()))
                {
                    name.join(" ")
                } else {
                    name.first().copied().unwrap_or_default().to_string()
                };
                return Ok(vec![Reply::Refused {
                    user,
                    command: name,
                    role: role.as_str().to_string(),
                }]);
            }
        };
        let span = tracing::info_span!("command", user = %user, command = ?cmd.name());
        self.dispatch(who, &grants, cmd).instrument(span).await
    }

    /// The one dispatch point: one arm per command.
    async fn dispatch(
        &mut self,
        who: &Principal,
        grants: &Grants,
        cmd: Command,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        match cmd {
            Command::Help => Ok(self.command_help(who)),
            Command::Deploy { form, fields } if fields.is_empty() => {
                Ok(self.start_guided(who, form))
            }
            Command::Deploy { form, fields } => {
                self.command_deploy(who, grants, form, fields).await
            }
            Command::VmList { host } => Ok(vec![Reply::Listing(Listing::Vms {
                vms: self.state.vm_rows(host.as_deref()),
                host,
            })]),
            Command::VmShow { name } => Ok(vec![match self.state.vm_view(&name) {
                Some(vm) => Reply::Listing(Listing::Vm(vm)),
                None => notice(&user, format!("no VM named {name}")),
            }]),
            Command::VmUpdate {
                name,
                gb_ram,
                cpu_cores,
            } => {
                self.command_vm_job(who, grants, &name, |vm| {
                    JobSpec::VmUpdate(VmUpdateSpec::new(vm, gb_ram, cpu_cores))
                })
                .await
            }
            Command::VmPower { name, action } => {
                self.command_vm_job(who, grants, &name, |vm| {
                    JobSpec::VmPower(VmPowerSpec::new(vm, action.as_str()))
                })
                .await
            }
            Command::VmDelete {
                name,
                delete_disks,
                force,
            } => {
                self.command_vm_job(who, grants, &name, |vm| {
                    JobSpec::VmDelete(VmDeleteSpec::new(vm, delete_disks, force))
                })
                .await
            }
            Command::DiskAdd { vm, size_gb } => {
                self.command_vm_job(who, grants, &vm, |vm| {
                    JobSpec::DiskCreate(DiskCreateSpec::new(vm, size_gb))
                })
                .await
            }
            Command::DiskResize { vm, disk, size_gb } => {
                self.command_vm_job(who, grants, &vm, |vm| {
                    JobSpec::DiskUpdate(DiskUpdateSpec::new(vm, disk, size_gb))
                })
                .await
            }
            Command::DiskRemove {
                vm,
                disk,
                boot_disk,
            } => {
                self.command_disk_remove(who, grants, &vm, &disk, boot_disk)
                    .await
            }
            Command::NicRemove { vm, nic } => {
                self.command_nic_remove(who, grants, &vm, nic.as_deref())
                    .await
            }
            Command::Retry { id } => self.command_retry(who, grants, &id).await,
            Command::NicAdd { vm, network } => {
                self.command_vm_job(who, grants, &vm, |vm| {
                    JobSpec::NicCreate(NicCreateSpec::new(vm, network))
                })
                .await
            }
            Command::Job { id } => Ok(vec![match self.state.find_job(&id) {
                Some(j) => Reply::Listing(Listing::Jobs {
                    jobs: self
                        .state
                        .jobs
                        .get(&j)
                        .map(JobInfo::row)
                        .into_iter()
                        .collect(),
                    more: 0,
                }),
                None => notice(&user, format!("no job matches {id}")),
            }]),
            Command::Jobs {
                mine,
                host,
                limit,
                all,
            } => Ok(self.command_jobs(
                who,
                &changes::JobsQuery {
                    mine,
                    host,
                    limit,
                    all,
                },
            )),
            Command::Cancel { id } => self.command_cancel(who, grants, &id).await,
            Command::Approve { id } => {
                self.command_vote(who, grants, id.as_deref(), true, None)
                    .await
            }
            Command::Reject { id, reason } => {
                self.command_vote(who, grants, Some(&id), false, reason)
                    .await
            }
            Command::Hosts => Ok(vec![Reply::Listing(Listing::Hosts(self.state.host_rows()))]),
        }
    }

    fn command_help(&self, who: &Principal) -> Vec<Reply> {
        let commands = CommandName::ALL
            .iter()
            .filter(|c| self.cfg.rbac.check(who, **c).is_ok())
            .map(|c| c.usage().to_string())
            .collect();
        vec![Reply::Help {
            user: display(&who.id),
            commands,
        }]
    }

    fn validation_context(&self) -> ValidationContext {
        ValidationContext {
            choices: self.state.choices(),
            ..Default::default()
        }
    }

    /// A deploy form's values as a request: validated, secrets checked, target chosen.
    fn prepare_deploy(
        &self,
        form: DeployForm,
        fields: std::collections::BTreeMap<String, String>,
    ) -> Prepared {
        let Some(schema) = self.forms.get(form.form_id()) else {
            return Prepared::Refused("that form is not available".into());
        };
        let input: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let validated = match validate(schema, &Value::Object(input), &self.validation_context()) {
            Ok(v) => v,
            Err(errors) => return Prepared::Invalid(errors),
        };
        let secrets: Vec<&String> = validated
            .secret_fields()
            .iter()
            .filter(|k| validated.get(k).is_some_and(|v| !v.is_null()))
            .collect();
        if !secrets.is_empty() && self.cfg.recipients.is_empty() {
            return Prepared::Refused(format!(
                "secret fields ({}) cannot be sent: no worker encryption key (age recipient) is configured",
                secrets
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let target = match (
            validated.str("target_host"),
            validated.str("target_cluster"),
        ) {
            (Some(h), _) => Target::Host(h.to_string()),
            (None, Some(c)) => Target::Cluster(c.to_string()),
            (None, None) => return Prepared::Refused("choose a host".into()),
        };
        let kind = match form {
            DeployForm::Vm => JobKind::VmCreate,
            DeployForm::Managed => JobKind::DeploymentManaged,
        };
        Prepared::Ready(kind, target, validated.into_values())
    }

    async fn command_deploy(
        &mut self,
        who: &Principal,
        grants: &Grants,
        form: DeployForm,
        fields: std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        match self.prepare_deploy(form, fields) {
            Prepared::Ready(kind, target, spec) => {
                self.submit(who, grants, kind, target, spec).await
            }
            Prepared::Invalid(errors) => Ok(vec![form_errors(&user, form.form_id(), errors)]),
            Prepared::Refused(message) => Ok(vec![notice(&user, message)]),
        }
    }

    /// A job on an existing VM: `spec` builds the job's typed spec from the VM found by name.
    async fn command_vm_job(
        &mut self,
        who: &Principal,
        grants: &Grants,
        vm: &str,
        spec: impl FnOnce(VmRef) -> JobSpec,
    ) -> Result<Vec<Reply>, EngineError> {
        let Some(row) = self.state.find_vm(vm) else {
            let msg = format!("no VM named {vm} (see `vm list`)");
            return Ok(vec![notice(&display(&who.id), msg)]);
        };
        let spec = spec(VmRef::new(row.name, &row.id));
        self.submit(
            who,
            grants,
            spec.kind(),
            Target::Host(row.host),
            spec.into_spec(),
        )
        .await
    }

    /// One event from the broker. Events stamped before this engine started are history:
    /// they rebuild state silently, and restored threads are announced once the replay settles.
    pub fn handle_event(&mut self, ev: &Event, now: Instant) -> Vec<Reply> {
        let history = ev.at < self.started_at;
        if !self.state.apply(ev, history) {
            return Vec::new();
        }
        if history {
            self.last_history = Some(now);
        }
        let Some(job) = ev.job_id else {
            return Vec::new();
        };
        if let EventBody::JobLog { lines } = &ev.body {
            if let Some(info) = self.state.jobs.get_mut(&job) {
                for l in lines {
                    info.thread.push_line(&l.text);
                }
            }
        }
        if self.state.jobs.get(&job).is_some_and(|j| j.quiet) {
            if !history {
                // A live event for a restored job: announce it now.
                return self.unquiet(job, now);
            }
            return Vec::new();
        }
        self.refresh(job, now)
    }

    /// Recomputes a thread's status, sends what may be sent, and the final message once.
    fn refresh(&mut self, job: JobId, now: Instant) -> Vec<Reply> {
        let status = self.state.status_view(&job);
        let Some(info) = self.state.jobs.get_mut(&job) else {
            return Vec::new();
        };
        if matches!(
            info.phase,
            Phase::AwaitingApproval | Phase::Rejected | Phase::Expired
        ) || (info.phase == Phase::Cancelled && info.queued_seq.is_none())
        {
            return Vec::new();
        }
        if let Some(s) = status {
            info.thread.set_status(s);
        }
        let last_call = info.phase.is_final() && !info.finished;
        let flushed = if last_call {
            info.thread.flush_final(job, now)
        } else {
            info.thread.flush(job, now)
        };
        let mut out: Vec<Reply> = flushed.into_iter().map(Reply::ThreadUpdate).collect();
        if last_call {
            info.finished = true;
            if !info.thread_marked {
                self.to_mark.push(job);
            }
            let short = info.short();
            let outcome = match info.phase {
                Phase::Succeeded => Outcome::Succeeded {
                    resources: info.resources.clone(),
                },
                Phase::Cancelled => Outcome::Cancelled {
                    by: info.cancelled_by.as_ref().map(display),
                },
                _ => {
                    let (step, code, message) = info.failure.clone().unwrap_or_default();
                    // The agent words its errors in spec fields; chat users type flags.
                    let message = aetherv_core::chat_terms::in_chat_terms(&message);
                    Outcome::Failed {
                        step,
                        code,
                        message,
                    }
                }
            };
            let log = LogFile {
                name: format!("job-{short}.log"),
                lines: info.thread.line_count(),
                content: info.thread.full_log(),
            };
            info.thread.release_full_log();
            out.push(Reply::JobFinished {
                job,
                short,
                kind: info.kind.clone(),
                target: info.target.clone(),
                outcome,
                log: Some(log),
            });
        }
        out
    }

    fn unquiet(&mut self, job: JobId, now: Instant) -> Vec<Reply> {
        let Some(info) = self.state.jobs.get_mut(&job) else {
            return Vec::new();
        };
        info.quiet = false;
        if info.phase.is_final() {
            // Ended while no bot ran (or its bot died before marking the thread): the final
            // message is still owed, if the end is recent enough to matter to anyone.
            let recent = info.ended_at.is_some_and(|at| {
                chrono::Utc::now().signed_duration_since(at)
                    < chrono::Duration::from_std(OWED_FINAL_WITHIN).unwrap_or_default()
            });
            if !info.thread_marked && recent {
                return self.refresh(job, now);
            }
            info.finished = true;
            info.thread.release_full_log();
            return Vec::new();
        }
        if info.phase == Phase::AwaitingApproval {
            return match self.approval_view(job) {
                Some(view) => vec![Reply::ApprovalRequested {
                    job,
                    view,
                    restored: true,
                }],
                None => Vec::new(),
            };
        }
        self.refresh(job, now)
    }

    /// Periodic work: announce restored threads once the replay settled, publish approvals
    /// recorded but never published (crash between vote and publication), expire approvals,
    /// and send throttled edits.
    pub async fn tick(&mut self, now: Instant) -> Result<Vec<Reply>, EngineError> {
        let mut out = Vec::new();
        for job in std::mem::take(&mut self.to_mark) {
            if let Err(e) = self.emit(job, EventBody::ThreadFinished {}).await {
                // Unmarked, a bot that restores the job posts its final message again.
                tracing::warn!(job_id = %job, error = %e, "could not mark the thread finished");
            }
        }
        let settled = self
            .last_history
            .is_none_or(|t| now.saturating_duration_since(t) >= SETTLE_AFTER_REPLAY);
        let jobs: Vec<JobId> = self.state.jobs.keys().copied().collect();
        for job in jobs {
            let Some(info) = self.state.jobs.get_mut(&job) else {
                continue;
            };
            if info.quiet {
                if !settled {
                    continue;
                }
                // Approved before the crash, never published: publish now.
                if info.queued_seq.is_none() && info.phase == Phase::AwaitingApproval {
                    if let Some(Decision::Approved { by }) =
                        info.approval.as_ref().and_then(|p| p.decision.clone())
                    {
                        info.quiet = false;
                        let approval = Approval {
                            approved_by: by,
                            at: chrono::Utc::now(),
                        };
                        out.extend(self.publish_approved(job, approval).await?);
                        continue;
                    }
                }
                out.extend(self.unquiet(job, now));
                continue;
            }
            if info.phase == Phase::AwaitingApproval {
                if let Some(p) = info.approval.as_mut() {
                    if p.expire(chrono::Utc::now()) {
                        self.emit(job, EventBody::ApprovalExpired {}).await?;
                        out.extend(self.decided(job, Decision::Expired, false));
                    }
                }
                continue;
            }
            if info.thread.next_due().is_some_and(|d| d <= now) {
                out.extend(
                    info.thread
                        .flush(job, now)
                        .into_iter()
                        .map(Reply::ThreadUpdate),
                );
            }
        }
        self.count_pending_approvals();
        Ok(out)
    }

    /// Sets the approval gauges: requests waiting for a decision, and the oldest one's age.
    fn count_pending_approvals(&self) {
        let now = chrono::Utc::now();
        let waiting = self.state.jobs.values().filter(|j| {
            j.phase == Phase::AwaitingApproval
                && j.approval.as_ref().is_some_and(|p| p.decision.is_none())
        });
        let (count, oldest) = waiting.fold((0usize, 0f64), |(n, oldest), j| {
            let age = j
                .created_at
                .map(|t| (now - t).num_milliseconds() as f64 / 1000.0)
                .unwrap_or(0.0);
            (n + 1, oldest.max(age))
        });
        aetherv_metrics::metrics().set_approvals(count, oldest);
    }
}
