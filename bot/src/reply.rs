//! Typed replies: what the engine says happened, never text. Every adapter (console, Slack,
//! Discord, HTTP) renders these with its own templates (`templates/<platform>/`) and decides
//! where each goes on its platform; nothing here knows a wire format.
//!
//! The view models double as template data: [`Reply::text_view`] names the template of a
//! reply's text and gives its data, the same for every platform, so a platform's template set
//! is a folder of files with these names.

use aetherv_core::approval::Decision;
use aetherv_core::{JobId, Requester};
use serde::Serialize;
use serde_json::{json, Map, Value};

mod samples;

/// One VM row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmRow {
    /// Host.
    pub host: String,
    /// VM name.
    pub name: String,
    /// Hyper-V id.
    pub id: String,
    /// Power state.
    pub state: String,
    /// Virtual processors.
    pub cpu: u64,
    /// Memory in GB.
    pub memory_gb: u64,
}

/// `vm show`: the VM's row, its disks and its network adapters (with addresses when the
/// inventory reported them). Template data: the row's fields, `disks`, `nics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmView {
    /// The row.
    #[serde(flatten)]
    pub row: VmRow,
    /// Attached disks, from the last inventory.
    pub disks: Vec<crate::state::DiskInfo>,
    /// Network adapters, from the last inventory.
    pub nics: Vec<crate::state::NicInfo>,
    /// The VM's addresses: every address its adapters reported, in adapter order.
    pub addresses: Vec<String>,
    /// An inventory listed the VM (false: a VM the bot knows from its job only, until the next
    /// poll; its disks and adapters are not known yet).
    pub inventoried: bool,
}

/// One host row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRow {
    /// Host name.
    pub name: String,
    /// `up`, `unreachable`, or `not polled yet`.
    pub status: String,
    /// VM count.
    pub vms: usize,
    /// Short id of the running job.
    pub running: Option<String>,
    /// Jobs waiting.
    pub queued: usize,
}

/// One job row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    /// Short job id.
    pub short: String,
    /// Job kind.
    pub kind: String,
    /// Host or cluster.
    pub target: String,
    /// State word.
    pub state: String,
    /// Who asked.
    pub requester: String,
    /// When it was requested (`2026-05-01 14:03Z`), empty when unknown.
    pub created: String,
}

/// A step in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    /// 1-based index.
    pub index: u32,
    /// Step count.
    pub total: u32,
    /// Step name.
    pub name: String,
}

/// The status message of a job thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    /// Short job id.
    pub short: String,
    /// Job kind.
    pub kind: String,
    /// Host or cluster.
    pub target: String,
    /// State word.
    pub state: String,
    /// Current step.
    pub step: Option<StepView>,
    /// Position in the host queue (1 = next).
    pub queue_position: Option<usize>,
    /// Finished steps / total, 0–100.
    pub percent: u32,
}

/// Width of the progress bar in characters.
pub const PROGRESS_BAR_WIDTH: usize = 20;

/// A text progress bar (`#####---------------`).
pub fn bar(percent: u32) -> String {
    let filled = (percent.min(100) as usize * PROGRESS_BAR_WIDTH) / 100;
    format!(
        "{}{}",
        "#".repeat(filled),
        "-".repeat(PROGRESS_BAR_WIDTH - filled)
    )
}

impl StatusView {
    /// Template data: the view plus `bar`.
    pub fn data(&self) -> Value {
        let mut data = json!(self);
        data["bar"] = json!(bar(self.percent));
        data
    }
}

/// The approval request, secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalView {
    /// Short job id.
    pub short: String,
    /// Policy rule name.
    pub rule: String,
    /// Approvals needed.
    pub required: u32,
    /// Groups, comma-joined.
    pub groups: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// Requester.
    pub requester: String,
    /// Job kind.
    pub kind: String,
    /// Target.
    pub target: String,
    /// The request fields, secrets already redacted.
    pub fields: Map<String, Value>,
}

/// A new job: what its thread root says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobView {
    /// The job.
    pub job: JobId,
    /// Short job id.
    pub short: String,
    /// Job kind.
    pub kind: String,
    /// Host or cluster.
    pub target: String,
    /// Who asked (platform user id).
    pub requester: String,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Done; resource ids and results.
    Succeeded {
        /// Resource ids and results gathered from steps and the final event.
        resources: Map<String, Value>,
    },
    /// Failed.
    Failed {
        /// The step that failed.
        step: Option<String>,
        /// Stable code.
        code: String,
        /// What happened.
        message: String,
    },
    /// Cancelled.
    Cancelled {
        /// Who cancelled.
        by: Option<String>,
    },
}

/// The full log of a finished job, for an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogFile {
    /// File name (`job-<short>.log`).
    pub name: String,
    /// Line count.
    pub lines: usize,
    /// The text.
    #[serde(skip)]
    pub content: String,
}

/// Which message of a job thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageRef {
    /// The status message (state, step n of m, progress bar).
    Status,
    /// The n-th live log message (0-based).
    Log(usize),
}

/// What a thread message shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadContent {
    /// The status.
    Status(StatusView),
    /// A live log message: part number (1-based) and its lines.
    Log {
        /// 1-based part.
        part: usize,
        /// The lines.
        lines: Vec<String>,
    },
}

impl ThreadContent {
    /// The template name and data of this content.
    pub fn text_view(&self) -> (&'static str, Value) {
        match self {
            ThreadContent::Status(v) => ("job_status", v.data()),
            ThreadContent::Log { part, lines } => {
                ("job_log", json!({"part": part, "lines": lines}))
            }
        }
    }
}

/// A message of a job's thread to post or edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadMessage {
    /// The job.
    pub job: JobId,
    /// Which message.
    pub msg: MessageRef,
    /// Edit (true) or post (false).
    pub edit: bool,
    /// What it shows.
    pub content: ThreadContent,
}

/// What one inventory question found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Listing {
    /// `vm list`.
    Vms {
        /// The host asked about.
        host: Option<String>,
        /// The VMs.
        vms: Vec<VmRow>,
    },
    /// `vm show`.
    Vm(VmView),
    /// `hosts`.
    Hosts(Vec<HostRow>),
    /// `jobs`, `job`: the rows shown, and how many more matched but were cut by the limit.
    Jobs {
        /// The rows, newest first.
        jobs: Vec<JobRow>,
        /// Jobs left out by the limit.
        more: usize,
    },
}

/// One field error of a submitted form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldErrorView {
    /// The field id.
    pub field: String,
    /// Stable code.
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// What a guided form (a text-only chat filling in a form field by field) says next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    /// The form starts.
    Intro {
        /// The form's title.
        title: String,
    },
    /// A field is asked for.
    Field {
        /// The field's label.
        label: String,
        /// Its id (what `key=value` would name).
        id: String,
        /// It must be answered (required, no default).
        required: bool,
        /// Its help text (may be empty).
        help: String,
        /// The default an answer of `-` keeps.
        default: Option<String>,
        /// The values it takes (from the schema or the chosen host's inventory).
        choices: Vec<String>,
        /// It is secret: sealed for the workers, never shown again.
        secret: bool,
    },
    /// Whether to fill in an optional parameter set.
    Set {
        /// The set's label.
        label: String,
    },
    /// A required field was skipped.
    Required {
        /// The field's label.
        label: String,
    },
    /// The form was dropped.
    Cancelled,
}

impl Question {
    fn text_view(&self, user: &str) -> (&'static str, Value) {
        let name = match self {
            Question::Intro { .. } => "guided_intro",
            Question::Field { .. } => "guided_field",
            Question::Set { .. } => "guided_set",
            Question::Required { .. } => "guided_required",
            Question::Cancelled => "guided_cancelled",
        };
        let mut data = match self {
            Question::Intro { title } => json!({"title": title}),
            Question::Field {
                label,
                id,
                required,
                help,
                default,
                choices,
                secret,
            } => json!({
                "label": label, "id": id, "required": required, "help": help,
                "has_default": default.is_some(), "default": default.clone().unwrap_or_default(),
                "choices": choices.join(", "), "secret": secret,
            }),
            Question::Set { label } | Question::Required { label } => json!({"label": label}),
            Question::Cancelled => json!({}),
        };
        data["user"] = json!(user);
        (name, data)
    }
}

/// What the engine says.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// The commands the caller may run.
    Help {
        /// Who asked.
        user: String,
        /// Usage lines.
        commands: Vec<String>,
    },
    /// A command refused for lack of a role.
    Refused {
        /// Who asked.
        user: String,
        /// The command words.
        command: String,
        /// The missing role.
        role: String,
    },
    /// A line that is not a command.
    ParseError {
        /// Who typed it.
        user: String,
        /// What is wrong.
        message: String,
        /// The usage line that helps.
        usage: Option<String>,
    },
    /// A form that does not validate, each error next to its field.
    FormErrors {
        /// Who submitted it.
        user: String,
        /// The form id.
        form: String,
        /// The errors.
        errors: Vec<FieldErrorView>,
    },
    /// A one-line answer to a user (guided questions, "no such VM", cancellations).
    Notice {
        /// To whom.
        user: String,
        /// The text.
        message: String,
    },
    /// A guided form's next question (text-only chats).
    Guided {
        /// To whom.
        user: String,
        /// What is asked.
        question: Question,
    },
    /// Inventory and job lists.
    Listing(Listing),
    /// A job was created (with or without approval): its thread may start.
    JobOpened(JobView),
    /// A request awaits approval.
    ApprovalRequested {
        /// The job.
        job: JobId,
        /// The redacted request.
        view: ApprovalView,
        /// Rebuilt from history after a restart (its first message was posted before).
        restored: bool,
    },
    /// A vote was counted; more are needed.
    VoteCounted {
        /// The job.
        job: JobId,
        /// Short id.
        short: String,
        /// Who voted.
        voter: String,
        /// Approvals so far.
        granted: u32,
        /// Approvals needed.
        required: u32,
    },
    /// A vote was refused (role, self-approval, second vote, decided, cancelled).
    VoteRefused {
        /// The job, when one was found.
        job: Option<JobId>,
        /// The voter.
        user: String,
        /// Why.
        message: String,
    },
    /// A request was decided: approved (and published), rejected, expired, or cancelled by
    /// its requester.
    ApprovalDecided {
        /// The job.
        job: JobId,
        /// The redacted request.
        view: ApprovalView,
        /// The decision.
        decision: Decision,
        /// The requester withdrew the request (`decision` is a rejection by them).
        cancelled: bool,
    },
    /// A message of a job's thread to post or edit.
    ThreadUpdate(ThreadMessage),
    /// A job ended: its final message and full log.
    JobFinished {
        /// The job.
        job: JobId,
        /// Short id.
        short: String,
        /// Job kind.
        kind: String,
        /// Target.
        target: String,
        /// How it ended.
        outcome: Outcome,
        /// The full log (absent when the job never ran).
        log: Option<LogFile>,
    },
}

fn names(by: &[Requester]) -> String {
    by.iter()
        .map(|r| r.user_id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Reply {
    /// Whether this reply is an answer to the one who asked (a command's texts, a refused
    /// vote's), as opposed to a job's messages: its thread, its approval request posted for
    /// approvers, its end.
    pub fn is_answer(&self) -> bool {
        !matches!(
            self,
            Reply::JobOpened(_)
                | Reply::ThreadUpdate(_)
                | Reply::JobFinished { .. }
                | Reply::ApprovalRequested {
                    restored: false,
                    ..
                }
        )
    }

    /// The job this reply is about, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Reply::JobOpened(v) => Some(v.job),
            Reply::ThreadUpdate(t) => Some(t.job),
            Reply::ApprovalRequested { job, .. }
            | Reply::VoteCounted { job, .. }
            | Reply::ApprovalDecided { job, .. }
            | Reply::JobFinished { job, .. } => Some(*job),
            Reply::VoteRefused { job, .. } => *job,
            _ => None,
        }
    }

    /// The template of this reply's text and its data. `None` for replies that are not a
    /// text of their own (a job opened, thread updates: see [`ThreadContent::text_view`]).
    pub fn text_view(&self) -> Option<(&'static str, Value)> {
        Some(match self {
            Reply::Help { user, commands } => ("help", json!({"user": user, "commands": commands})),
            Reply::Refused {
                user,
                command,
                role,
            } => (
                "refused",
                json!({"user": user, "command": command, "role": role}),
            ),
            Reply::ParseError {
                user,
                message,
                usage,
            } => (
                "parse_error",
                json!({"user": user, "message": message, "usage": usage}),
            ),
            Reply::FormErrors { user, form, errors } => (
                "form_errors",
                json!({"user": user, "form": form, "errors": errors}),
            ),
            Reply::Notice { user, message } => {
                ("notice", json!({"user": user, "message": message}))
            }
            Reply::Guided { user, question } => question.text_view(user),
            Reply::Listing(l) => match l {
                Listing::Vms { host, vms } => ("vm_list", json!({"host": host, "vms": vms})),
                Listing::Vm(vm) => ("vm_show", json!(vm)),
                Listing::Hosts(hosts) => ("hosts", json!({"hosts": hosts})),
                Listing::Jobs { jobs, more } => ("jobs", json!({"jobs": jobs, "more": more})),
            },
            Reply::ApprovalRequested { view, .. } => ("approval_request", json!(view)),
            Reply::VoteCounted {
                short,
                voter,
                granted,
                required,
                ..
            } => (
                "vote_counted",
                json!({"voter": voter, "short": short, "granted": granted, "required": required}),
            ),
            Reply::VoteRefused { user, message, .. } => {
                ("vote_refused", json!({"user": user, "message": message}))
            }
            Reply::ApprovalDecided {
                view,
                decision,
                cancelled,
                ..
            } => decision_text(view, decision, *cancelled),
            Reply::JobFinished {
                short,
                kind,
                target,
                outcome,
                ..
            } => outcome_text(short, kind, target, outcome),
            Reply::JobOpened(_) | Reply::ThreadUpdate(_) => return None,
        })
    }

    /// The note that goes with a finished job's log attachment.
    pub fn attachment_view(&self) -> Option<(&'static str, Value)> {
        match self {
            Reply::JobFinished {
                short,
                log: Some(log),
                ..
            } => Some((
                "attachment",
                json!({"short": short, "name": log.name, "lines": log.lines}),
            )),
            _ => None,
        }
    }
}

/// The text of a decision: `approved`, `rejected`, `expired`, or `job_cancelled` when the
/// requester withdrew the request.
fn decision_text(view: &ApprovalView, d: &Decision, cancelled: bool) -> (&'static str, Value) {
    match d {
        Decision::Rejected { by, .. } if cancelled => (
            "job_cancelled",
            json!({"short": view.short, "by": by.user_id}),
        ),
        Decision::Approved { by } => (
            "approved",
            json!({"short": view.short, "approvers": names(by), "target": view.target}),
        ),
        Decision::Rejected { by, reason } => (
            "rejected",
            json!({"short": view.short, "voter": by.user_id, "reason": reason}),
        ),
        Decision::Expired => ("expired", json!({"short": view.short})),
    }
}

fn outcome_text(short: &str, kind: &str, target: &str, o: &Outcome) -> (&'static str, Value) {
    match o {
        Outcome::Succeeded { resources } => (
            "job_succeeded",
            json!({"short": short, "kind": kind, "target": target, "resources": resources}),
        ),
        Outcome::Failed {
            step,
            code,
            message,
        } => (
            "job_failed",
            json!({"short": short, "step": step, "code": code, "message": message}),
        ),
        Outcome::Cancelled { by } => ("job_cancelled", json!({"short": short, "by": by})),
    }
}
