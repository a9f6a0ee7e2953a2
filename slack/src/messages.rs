//! Message builders: one plain function per Block Kit message the bot sends, from view data to
//! a checked payload (through the templates in `templates/slack/`). No I/O, no decisions.

use crate::blocks::{escape, Blocks};
use aetherv_bot::render::ApprovalView;
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

/// The approval request with Approve/Reject buttons carrying the job id.
pub fn approval_request(b: &Blocks, v: &ApprovalView, requester: &str, job: JobId) -> Value {
    b.message(
        "approval_request",
        &json!({
            "short": v.short, "kind": v.kind, "target": v.target, "rule": v.rule,
            "required": v.required, "groups": v.groups, "expires_at": v.expires_at,
            "requester": requester, "request": request_text(&v.fields), "job": job.to_string(),
        }),
    )
}

/// The approval request after the decision: no buttons, who decided.
pub fn approval_decided(b: &Blocks, v: &ApprovalView, d: &Decision) -> Value {
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
    b.message(
        "approval_decided",
        &json!({
            "short": v.short, "kind": v.kind, "target": v.target,
            "request": request_text(&v.fields), "decision": decision, "decision_mrkdwn": text,
        }),
    )
}

/// The status message of a job thread (engine text).
pub fn job_status(b: &Blocks, text: &str) -> Value {
    b.message("job_status", &json!({"text": text}))
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
