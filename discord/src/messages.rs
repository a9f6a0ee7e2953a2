//! One builder per message JSON the bot sends to Discord: plain texts (mentions disabled, cut
//! to Discord's 2,000 characters), ephemeral answers (flags 64), approval requests with
//! Approve / Reject buttons and their decided versions without buttons; a job thread's start
//! and keep-alive.

use crate::interaction::{APPROVE_PREFIX, REJECT_PREFIX};
use aetherv_core::JobId;
use serde_json::{json, Value};

/// Discord's message content limit, in characters.
pub const MAX_CONTENT: usize = 2000;
/// The `EPHEMERAL` message flag.
pub const EPHEMERAL: u64 = 64;

/// `s` cut to `max` characters (an ellipsis marks a cut).
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A text message; nobody is pinged by it.
pub fn text(s: &str) -> Value {
    json!({ "content": cut(s, MAX_CONTENT), "allowed_mentions": { "parse": [] } })
}

/// A text only the interacting user sees.
pub fn ephemeral(s: &str) -> Value {
    let mut v = text(s);
    v["flags"] = json!(EPHEMERAL);
    v
}

/// An approval request with its buttons (the `custom_id`s carry the job id).
pub fn approval_request(s: &str, job: JobId) -> Value {
    let mut v = text(s);
    v["components"] = json!([{
        "type": 1,
        "components": [
            { "type": 2, "style": 3, "label": "Approve", "custom_id": format!("{APPROVE_PREFIX}{job}") },
            { "type": 2, "style": 4, "label": "Reject", "custom_id": format!("{REJECT_PREFIX}{job}") },
        ]
    }]);
    v
}

/// A decided approval request: the request, the decision, no buttons.
pub fn approval_decided(request: &str, decision: &str) -> Value {
    let mut v = text(&format!("{request}\n\n{decision}"));
    v["components"] = json!([]);
    v
}

/// The `auto_archive_duration` a job's thread is started with (minutes; Discord's longest:
/// a week).
pub const AUTO_ARCHIVE_MINUTES: u32 = 10080;

/// The start of a job's thread from its root message (`name` ≤ 100 characters).
pub fn thread_start(name: &str) -> Value {
    json!({ "name": cut(name, 100), "auto_archive_duration": AUTO_ARCHIVE_MINUTES })
}

/// The keep-alive of a job's thread: reopened if it archived (only Send Messages is needed
/// while it is not locked).
pub fn thread_reopen() -> Value {
    json!({ "archived": false })
}

/// Most buttons in one action row, and most rows in one message.
pub const MAX_BUTTONS_PER_ROW: usize = 5;

/// Button style `PRIMARY`.
pub const PRIMARY: u8 = 1;
/// Button style `SECONDARY`.
pub const SECONDARY: u8 = 2;

/// An ephemeral text with buttons `(label, custom_id, style)`, five to a row, at most 25.
pub fn ephemeral_with_buttons(s: &str, buttons: &[(String, String, u8)]) -> Value {
    let mut v = ephemeral(s);
    let rows: Vec<Value> = buttons
        .chunks(MAX_BUTTONS_PER_ROW)
        .take(MAX_BUTTONS_PER_ROW)
        .map(|row| {
            let components: Vec<Value> = row
                .iter()
                .map(|(label, id, style)| {
                    json!({ "type": 2, "style": style, "label": cut(label, 80), "custom_id": id })
                })
                .collect();
            json!({ "type": 1, "components": components })
        })
        .collect();
    v["components"] = Value::Array(rows);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_fit_discord() {
        let long = "x".repeat(5000);
        let v = text(&long);
        assert_eq!(
            v["content"].as_str().map(|s| s.chars().count()),
            Some(MAX_CONTENT)
        );
        assert_eq!(ephemeral("hi")["flags"], json!(64));
        let job = JobId::new();
        let a = approval_request("req", job);
        assert_eq!(
            a["components"][0]["components"][0]["custom_id"],
            json!(format!("aether:approve:{job}"))
        );
        assert_eq!(approval_decided("req", "ok")["components"], json!([]));
    }
}
