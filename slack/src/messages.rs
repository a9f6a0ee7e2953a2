//! Message builders: one plain function per Block Kit message the bot sends, from view data to
//! a checked payload (through the templates in `templates/slack/`). No I/O, no decisions.

use crate::blocks::{escape, Blocks};
use aetherv_bot::render::TemplateError;
use aetherv_bot::reply::{ApprovalView, Reply, StatusView, ThreadContent, ThreadMessage};
use aetherv_core::approval::Decision;
use aetherv_core::{JobId, Requester};
use serde_json::{json, Map, Value};

/// The redacted request as mrkdwn lines (`*field*: value`).
pub fn request_text(fields: &Map<String, Value>) -> String {
    if fields.is_empty() {
        return "(no fields)".into();
    }
    fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("*{k}*: {v}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn mention(r: &Requester) -> String {
    format!("<@{}>", escape(&r.user_id))
}

/// A reply in a channel or thread (engine text).
pub fn reply(b: &Blocks, text: &str) -> Value {
    b.message("reply", &json!({"text": text}))
}

/// What a user alone sees (through the command's `response_url`) when the bot could not post
/// `text` in a channel it is not a member of, with how to invite it.
pub fn not_in_channel(b: &Blocks, text: &str) -> Value {
    b.message("not_in_channel", &json!({"text": text}))
}

/// The root message of a job thread.
pub fn thread_root(b: &Blocks, short: &str, kind: &str, target: &str, requester: &str) -> Value {
    b.message(
        "thread_root",
        &json!({"short": short, "kind": kind, "target": target, "requester": requester}),
    )
}

fn approval_request_data(v: &ApprovalView, requester: &str, job: JobId) -> Value {
    json!({
        "short": v.short, "kind": v.kind, "target": v.target, "rule": v.rule,
        "required": v.required, "groups": v.groups, "expires_at": v.expires_at,
        "requester": requester, "request": request_text(&v.fields), "job": job.to_string(),
    })
}

/// The approval request with Approve/Reject buttons carrying the job id.
pub fn approval_request(b: &Blocks, v: &ApprovalView, requester: &str, job: JobId) -> Value {
    b.message(
        "approval_request",
        &approval_request_data(v, requester, job),
    )
}

/// The approval request after the decision: no buttons, who decided.
pub fn approval_decided(b: &Blocks, v: &ApprovalView, d: &Decision) -> Value {
    b.message("approval_decided", &approval_decided_data(v, d))
}

fn approval_decided_data(v: &ApprovalView, d: &Decision) -> Value {
    let (decision, text) = match d {
        Decision::Approved { by } => (
            "approved",
            format!(
                "✅ *Approved* by {}",
                by.iter().map(mention).collect::<Vec<_>>().join(", ")
            ),
        ),
        Decision::Rejected { by, reason } => (
            "rejected",
            match reason {
                Some(r) => format!("❌ *Rejected* by {}: {}", mention(by), escape(r)),
                None => format!("❌ *Rejected* by {}", mention(by)),
            },
        ),
        Decision::Expired => ("expired", "⌛ *Expired* without a decision".to_string()),
    };
    json!({
        "short": v.short, "kind": v.kind, "target": v.target,
        "request": request_text(&v.fields), "decision": decision, "decision_mrkdwn": text,
    })
}

/// The status message of a job thread: its text (`templates/slack/text/job_status.hbs`) and
/// the status fields (`short`, `kind`, `target`, `state`, `step`, `queue_position`,
/// `percent`, `bar`), so an overriding `job_status.hbs` can lay them out as it likes.
pub fn job_status(b: &Blocks, text: &str, v: &StatusView) -> Value {
    b.message("job_status", &job_status_data(text, v))
}

fn job_status_data(text: &str, v: &StatusView) -> Value {
    let mut data = v.data();
    data["text"] = json!(text);
    data
}

/// A live log message (engine text, shown raw in a preformatted block).
pub fn job_log(b: &Blocks, part: usize, text: &str) -> Value {
    b.message("job_log", &json!({"part": part, "text": text}))
}

/// A one-off message in a job thread (final message, notes).
pub fn thread_note(b: &Blocks, text: &str) -> Value {
    b.message("thread_note", &json!({"text": text}))
}

/// The inline error of a refused form submission.
pub fn form_refused(b: &Blocks, role: &str) -> String {
    b.text("form_refused", &json!({"role": role}))
}

/// Renders every message template with sample data, so a broken override is an error at start
/// naming its file rather than a fallback text in a thread.
pub fn check(b: &Blocks) -> Result<(), TemplateError> {
    let text = json!({"text": "sample"});
    let mut checks = vec![
        ("reply", text.clone()),
        ("not_in_channel", text.clone()),
        ("thread_note", text),
        ("job_log", json!({"part": 1, "text": "sample"})),
        (
            "thread_root",
            json!({"short": "00000000", "kind": "noop", "target": "hv01", "requester": "U0"}),
        ),
    ];
    for r in Reply::samples() {
        match r {
            Reply::ApprovalRequested { job, view, .. } => checks.push((
                "approval_request",
                approval_request_data(&view, &view.requester, job),
            )),
            Reply::ApprovalDecided { view, decision, .. } => {
                checks.push(("approval_decided", approval_decided_data(&view, &decision)));
            }
            Reply::ThreadUpdate(ThreadMessage {
                content: ThreadContent::Status(v),
                ..
            }) => checks.push(("job_status", job_status_data("sample", &v))),
            _ => {}
        }
    }
    for (name, data) in checks {
        b.try_message(name, &data)?;
    }
    for name in [
        "form_refused",
        "ack_command",
        "ack_deploy",
        "busy",
        "parse_error",
    ] {
        let data = json!({"role": "r", "command": "c", "form": "f", "message": "m", "usage": "u"});
        b.try_text(name, &data)?;
    }
    Ok(())
}
