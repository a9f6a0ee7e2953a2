//! Block Kit payloads: every message the bot sends is rendered from a handlebars template in
//! `templates/slack/` into JSON, then checked against Slack's documented limits before it is
//! sent. Modals are built in [`crate::modal`] and checked here too.
//!
//! Templates write JSON; the `json` helper encodes a value as a JSON string and the `mrkdwn`
//! helper escapes `&`, `<` and `>` first (Slack's mrkdwn escaping) and cuts the text to the
//! section limit. This module decides nothing; it renders and checks.

use aetherv_bot::render::{TemplateError, TemplateSet};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde_json::{json, Value};
use std::path::Path;

/// Section block text limit (characters).
pub const SECTION_TEXT_MAX: usize = 3000;
/// Blocks per message.
pub const MESSAGE_BLOCKS_MAX: usize = 50;
/// Blocks per modal.
pub const MODAL_BLOCKS_MAX: usize = 100;
/// Modal title, submit and close texts (characters).
pub const MODAL_TITLE_MAX: usize = 24;
/// `private_metadata` of a view (characters).
pub const PRIVATE_METADATA_MAX: usize = 3000;
/// `callback_id` of a view (characters).
pub const CALLBACK_ID_MAX: usize = 255;
/// Views in a modal stack (the open view plus two pushes).
pub const VIEW_STACK_MAX: usize = 3;
/// Message `text` is truncated by Slack after this many characters.
pub const MESSAGE_TEXT_MAX: usize = 40_000;
/// Slack rejects messages whose block texts add up to about this much (observed, below the
/// documented limits), so the bot stays under it.
pub const TOTAL_BLOCK_TEXT_MAX: usize = 12_000;
/// Header block text (characters).
pub const HEADER_TEXT_MAX: usize = 150;
/// Input block label (characters).
pub const LABEL_MAX: usize = 2000;
/// Option text in a select (characters).
pub const OPTION_TEXT_MAX: usize = 75;
/// Options in a static select.
pub const OPTIONS_MAX: usize = 100;
/// `block_id` and `action_id` (characters).
pub const ID_MAX: usize = 255;
/// Button value (characters).
pub const BUTTON_VALUE_MAX: usize = 2000;

/// The Slack message templates (Block Kit JSON and acknowledgement texts), by name.
pub const SLACK_TEMPLATES: &[(&str, &str)] = aetherv_bot::builtin_templates!("slack":
    reply, thread_root, approval_request, approval_decided, job_status, job_log, thread_note,
    form_refused, ack_command, ack_deploy, busy, not_in_channel, parse_error,
);

/// The texts of the engine's replies on Slack (`templates/slack/text/`), by reply template
/// name; the message templates above wrap them in blocks.
pub const SLACK_TEXT_TEMPLATES: &[(&str, &str)] = aetherv_bot::builtin_templates!("slack/text":
    help, refused, parse_error, form_errors, approval_request, vote_counted, approved, rejected,
    expired, vote_refused, job_status, job_log, job_succeeded, job_failed, job_cancelled,
    vm_list, vm_show, hosts, jobs, notice, attachment, guided_intro, guided_field, guided_set,
    guided_required, guided_cancelled,
);

/// A payload over one of Slack's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Too many blocks.
    #[error("{count} blocks, at most {max}")]
    TooManyBlocks {
        /// Blocks found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A text is too long.
    #[error("{what} has {len} characters, at most {max}")]
    TooLong {
        /// Which text.
        what: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not an object with the expected shape.
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// Escapes text for mrkdwn (`&`, `<`, `>`).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `text` to at most `max` characters, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The text of a helper's first parameter.
fn first_param(h: &Helper, helper: &'static str) -> Result<String, RenderErrorReason> {
    h.param(0)
        .map(|v| param_text(v.value()))
        .ok_or(RenderErrorReason::ParamNotFoundForIndex(helper, 0))
}

/// A helper writing its first parameter's text, changed by `f`, as a JSON string.
fn string_helper(
    name: &'static str,
    f: fn(String) -> String,
) -> impl Fn(&Helper, &Handlebars, &Context, &mut RenderContext, &mut dyn Output) -> HelperResult
       + Send
       + Sync {
    move |h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output| {
        let text = f(first_param(h, name)?);
        out.write(&serde_json::to_string(&text).map_err(RenderErrorReason::SerdeError)?)?;
        Ok(())
    }
}

fn concat_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let s: String = h.params().iter().map(|p| param_text(p.value())).collect();
    out.write(&s)?;
    Ok(())
}

/// The compiled Slack templates.
#[derive(Debug)]
pub struct Blocks {
    set: TemplateSet,
}

impl Blocks {
    /// The built-in template set.
    pub fn builtin() -> Result<Self, TemplateError> {
        Self::load(None)
    }

    /// The built-in set with the overrides in `dir/slack/` (strict, no HTML escaping: the
    /// helpers encode).
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let set = TemplateSet::load("slack", SLACK_TEMPLATES, dir, |hb| {
            hb.register_helper("json", Box::new(string_helper("json", |t| t)));
            hb.register_helper(
                "mrkdwn",
                Box::new(string_helper("mrkdwn", |t| {
                    truncate(&escape(&t), SECTION_TEXT_MAX)
                })),
            );
            hb.register_helper("concat", Box::new(concat_helper));
        })?;
        Ok(Blocks { set })
    }

    /// Renders a message template into a Block Kit message within Slack's limits, or says
    /// which file failed.
    pub fn try_message(&self, name: &str, data: &Value) -> Result<Value, TemplateError> {
        let fail = |reason: String| TemplateError::Render {
            file: self.set.origin(name).to_string(),
            reason,
        };
        let text = self.set.try_render(name, data)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
        check_message(&v).map_err(|e| fail(e.to_string()))?;
        Ok(v)
    }

    /// Renders a message template into a checked Block Kit message. A template or limit
    /// failure is logged and replaced by a plain, truncated text message: the user always
    /// gets something.
    pub fn message(&self, name: &str, data: &Value) -> Value {
        match self.try_message(name, data) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "slack template failed");
                json!({"text": truncate(&format!("[{name}] {data}"), SECTION_TEXT_MAX)})
            }
        }
    }

    /// Renders a plain-text template, or says which file failed.
    pub fn try_text(&self, name: &str, data: &Value) -> Result<String, TemplateError> {
        self.set
            .try_render(name, data)
            .map(|s| s.trim().to_string())
    }

    /// Renders a plain-text template.
    pub fn text(&self, name: &str, data: &Value) -> String {
        match self.set.try_render(name, data) {
            Ok(s) => s.trim().to_string(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "slack template failed");
                format!("[{name}] {data}")
            }
        }
    }
}

fn text_of(v: &Value) -> Option<&str> {
    v.get("text").and_then(|t| match t {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("text").and_then(Value::as_str),
        _ => None,
    })
}

fn check_len(what: &str, text: &str, max: usize) -> Result<(), LimitError> {
    let len = text.chars().count();
    if len > max {
        return Err(LimitError::TooLong {
            what: what.to_string(),
            len,
            max,
        });
    }
    Ok(())
}

/// The characters of every `text` element inside a rich text block.
fn rich_text_len(v: &Value) -> usize {
    let own = match (v.get("type").and_then(Value::as_str), v.get("text")) {
        (Some("text"), Some(Value::String(s))) => s.chars().count(),
        _ => 0,
    };
    own + v
        .get("elements")
        .and_then(Value::as_array)
        .map_or(0, |a| a.iter().map(rich_text_len).sum())
}

/// Checks one block (and its elements) against the per-block limits; returns its text length.
/// Rich text (the live log, raw and unescaped) is held to the section limit too.
fn check_block(b: &Value) -> Result<usize, LimitError> {
    let kind = b.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind == "rich_text" {
        let len = rich_text_len(b);
        if len > SECTION_TEXT_MAX {
            return Err(LimitError::TooLong {
                what: "rich text".into(),
                len,
                max: SECTION_TEXT_MAX,
            });
        }
        return Ok(len);
    }
    let mut total = 0;
    if let Some(id) = b.get("block_id").and_then(Value::as_str) {
        check_len("block_id", id, ID_MAX)?;
    }
    if let Some(t) = text_of(b) {
        let max = if kind == "header" {
            HEADER_TEXT_MAX
        } else {
            SECTION_TEXT_MAX
        };
        check_len(&format!("{kind} text"), t, max)?;
        total += t.chars().count();
    }
    if let Some(l) = b
        .get("label")
        .and_then(|l| l.get("text"))
        .and_then(Value::as_str)
    {
        check_len("label", l, LABEL_MAX)?;
    }
    let mut elements: Vec<&Value> = b
        .get("elements")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    elements.extend(b.get("element"));
    elements.extend(b.get("accessory"));
    for e in elements {
        if let Some(id) = e.get("action_id").and_then(Value::as_str) {
            check_len("action_id", id, ID_MAX)?;
        }
        if let Some(v) = e.get("value").and_then(Value::as_str) {
            check_len("button value", v, BUTTON_VALUE_MAX)?;
        }
        if let Some(t) = text_of(e) {
            total += t.chars().count();
        }
        if let Some(opts) = e.get("options").and_then(Value::as_array) {
            if opts.len() > OPTIONS_MAX {
                return Err(LimitError::TooManyBlocks {
                    count: opts.len(),
                    max: OPTIONS_MAX,
                });
            }
            for o in opts {
                check_len(
                    "option text",
                    text_of(o).unwrap_or_default(),
                    OPTION_TEXT_MAX,
                )?;
            }
        }
    }
    Ok(total)
}

/// Checks a message payload: at most 50 blocks, section texts ≤ 3,000 characters, the total
/// block text under the observed ceiling, `text` under the truncation point.
pub fn check_message(msg: &Value) -> Result<(), LimitError> {
    if !msg.is_object() {
        return Err(LimitError::Malformed("not an object".into()));
    }
    if let Some(t) = msg.get("text").and_then(Value::as_str) {
        check_len("message text", t, MESSAGE_TEXT_MAX)?;
    }
    let blocks = msg
        .get("blocks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if blocks.len() > MESSAGE_BLOCKS_MAX {
        return Err(LimitError::TooManyBlocks {
            count: blocks.len(),
            max: MESSAGE_BLOCKS_MAX,
        });
    }
    let mut total = 0;
    for b in blocks {
        total += check_block(b)?;
    }
    if total > TOTAL_BLOCK_TEXT_MAX {
        return Err(LimitError::TooLong {
            what: "all block texts".into(),
            len: total,
            max: TOTAL_BLOCK_TEXT_MAX,
        });
    }
    Ok(())
}

/// Checks a modal view: at most 100 blocks, title/submit/close ≤ 24 characters,
/// `private_metadata` ≤ 3,000 and `callback_id` ≤ 255 characters, and each block's limits.
pub fn check_modal(view: &Value) -> Result<(), LimitError> {
    if view.get("type").and_then(Value::as_str) != Some("modal") {
        return Err(LimitError::Malformed("not a modal".into()));
    }
    for k in ["title", "submit", "close"] {
        if let Some(t) = view
            .get(k)
            .and_then(|t| t.get("text"))
            .and_then(Value::as_str)
        {
            check_len(k, t, MODAL_TITLE_MAX)?;
        }
    }
    if let Some(m) = view.get("private_metadata").and_then(Value::as_str) {
        check_len("private_metadata", m, PRIVATE_METADATA_MAX)?;
    }
    if let Some(c) = view.get("callback_id").and_then(Value::as_str) {
        check_len("callback_id", c, CALLBACK_ID_MAX)?;
    }
    let blocks = view
        .get("blocks")
        .and_then(Value::as_array)
        .ok_or_else(|| LimitError::Malformed("no blocks".into()))?;
    if blocks.len() > MODAL_BLOCKS_MAX {
        return Err(LimitError::TooManyBlocks {
            count: blocks.len(),
            max: MODAL_BLOCKS_MAX,
        });
    }
    for b in blocks {
        check_block(b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let b = Blocks::builtin().expect("templates");
        assert_eq!(b.set.len(), SLACK_TEMPLATES.len());
    }

    #[test]
    fn mrkdwn_is_escaped_and_cut() {
        let b = Blocks::builtin().expect("templates");
        let long = format!("<b>&{}", "x".repeat(5000));
        let m = b.message("reply", &json!({"text": long}));
        let t = m["blocks"][0]["text"]["text"].as_str().unwrap_or_default();
        assert!(t.starts_with("&lt;b&gt;&amp;x"));
        assert_eq!(t.chars().count(), SECTION_TEXT_MAX);
        assert!(check_message(&m).is_ok());
    }

    #[test]
    fn limits_are_enforced() {
        let blocks: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        assert_eq!(
            check_message(&json!({"blocks": blocks})),
            Err(LimitError::TooManyBlocks { count: 51, max: 50 })
        );
        let section =
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(3001)}});
        assert!(matches!(
            check_message(&json!({"blocks": [section]})),
            Err(LimitError::TooLong { max: 3000, .. })
        ));
        let modal = json!({"type": "modal", "title": {"type": "plain_text", "text": "x".repeat(25)}, "blocks": []});
        assert!(matches!(
            check_modal(&modal),
            Err(LimitError::TooLong { max: 24, .. })
        ));
        let modal = json!({"type": "modal", "title": {"type": "plain_text", "text": "ok"},
            "private_metadata": "m".repeat(3001), "blocks": []});
        assert!(matches!(
            check_modal(&modal),
            Err(LimitError::TooLong { max: 3000, .. })
        ));
        let blocks: Vec<Value> = (0..101).map(|_| json!({"type": "divider"})).collect();
        let modal = json!({"type": "modal", "title": {"type": "plain_text", "text": "ok"}, "blocks": blocks});
        assert_eq!(
            check_modal(&modal),
            Err(LimitError::TooManyBlocks {
                count: 101,
                max: 100
            })
        );
    }
}
