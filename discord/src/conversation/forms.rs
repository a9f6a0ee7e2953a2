//! The deploy forms' steps on the engine task: a page checked by the engine, the form
//! submitted through `submit_form`, each answered by editing the page's deferred answer with
//! its outcome and the buttons that go on (the next page, the optional parameter sets,
//! Submit, or the pages to correct).

use super::Conversation;
use crate::form::{Draft, PageKind, OPEN_PREFIX, SUBMIT_PREFIX};
use crate::messages::{self, PRIMARY, SECONDARY};
use aetherv_bot::engine::{Engine, EngineError, FormOutcome};
use aetherv_bot::reply::Reply;
use aetherv_core::rbac::Principal;
use aetherv_core::validate::FieldError;
use serde_json::{json, Value};
use uuid::Uuid;

/// Most fields named in a page's answer.
const MAX_LISTED: usize = 10;

impl Conversation {
    fn label(&self, d: &Draft, field: &str) -> String {
        self.forms
            .get(d.form.form_id())
            .and_then(|s| s.field(field))
            .map_or_else(|| field.to_string(), |f| f.label.clone())
    }

    /// The answer after a check: the errors with a button per page to correct, else the
    /// next base page, else Submit and the parameter sets not filled in.
    fn progress(&self, id: Uuid, d: &Draft, page: Option<usize>, bad: &[usize]) -> Value {
        let title = page
            .and_then(|p| d.pages.get(p))
            .map(|p| p.title.clone())
            .unwrap_or_else(|| d.form.form_id().to_string());
        let errors: Vec<Value> = d
            .errors
            .iter()
            .take(MAX_LISTED)
            .map(|(f, m)| json!({ "label": self.label(d, f), "message": m }))
            .collect();
        let open = |i: usize, verb: &str| {
            let p = &d.pages[i];
            (
                format!("{verb} {}", p.title),
                format!("{OPEN_PREFIX}{id}:{i}"),
                SECONDARY,
            )
        };
        let next_base = d
            .pages
            .iter()
            .enumerate()
            .find(|(i, p)| p.kind == PageKind::Base && !d.done.contains(i))
            .map(|(i, _)| i);
        let mut buttons = Vec::new();
        let ready = errors.is_empty() && next_base.is_none();
        if !errors.is_empty() {
            buttons.extend(bad.iter().map(|&i| open(i, "Correct")));
        } else if let Some(i) = next_base {
            let (_, custom_id, _) = open(i, "");
            buttons.push(("Continue".to_string(), custom_id, PRIMARY));
        } else {
            buttons.push((
                "Submit".to_string(),
                format!("{SUBMIT_PREFIX}{id}"),
                PRIMARY,
            ));
            buttons.extend(
                d.pages
                    .iter()
                    .enumerate()
                    .filter(|(i, p)| matches!(p.kind, PageKind::Set(_)) && !d.done.contains(i))
                    .map(|(i, _)| open(i, "Add")),
            );
        }
        let text = self.texts.render(
            "form_page",
            &json!({
                "page": title,
                "form": d.form.form_id(),
                "errors": errors,
                "one": errors.len() == 1,
                "ready": ready,
            }),
        );
        messages::ephemeral_with_buttons(&text, &buttons)
    }

    /// A page's fields checked by the engine.
    pub(super) fn page_checked(
        &self,
        engine: &Engine,
        who: &Principal,
        id: Uuid,
        page: usize,
        fields: &[String],
    ) -> Value {
        let checked = self.drafts.peek(id, who).and_then(|d| {
            let errors = engine.check_fields(d.form, &d.values, fields);
            let bad = self.drafts.checked(id, who, fields, &errors)?;
            Ok((self.drafts.peek(id, who)?, bad))
        });
        match checked {
            Ok((d, bad)) => self.progress(id, &d, Some(page), &bad),
            Err(e) => messages::ephemeral(&e.to_string()),
        }
    }

    /// The whole form submitted: the job's messages go their way, the answer says what
    /// happened; refused with errors, the draft is kept for its corrections.
    pub(super) async fn submit_draft(
        &mut self,
        engine: &mut Engine,
        who: &Principal,
        id: Uuid,
    ) -> Result<Value, EngineError> {
        let d = match self.drafts.take(id, who) {
            Ok(d) => d,
            Err(e) => return Ok(messages::ephemeral(&e.to_string())),
        };
        match engine.submit_form(who, d.form, &d.values).await? {
            FormOutcome::Refused { role } => {
                let refused = Reply::Refused {
                    user: aetherv_bot::state::display(&who.id),
                    command: "deploy".into(),
                    role: role.to_string(),
                };
                Ok(messages::ephemeral(
                    &self.texts.text(&refused).unwrap_or_default(),
                ))
            }
            FormOutcome::Invalid(errors) => Ok(self.refused_with(id, who, d, &errors)),
            FormOutcome::Submitted { job, out } => {
                let channel = d
                    .channel
                    .clone()
                    .unwrap_or_else(|| self.places.channel.clone());
                let (texts, rest) = self.split(out);
                self.route(rest, &channel);
                let done = self.texts.render(
                    "form_page",
                    &json!({ "form": d.form.form_id(), "submitted": true, "errors": [] }),
                );
                // Refused after validation (policy, secrets): the engine's words alone.
                let mut answer = if job.is_some() {
                    vec![done]
                } else {
                    Vec::new()
                };
                answer.extend(texts);
                Ok(messages::ephemeral(&answer.join("\n\n")))
            }
        }
    }

    fn refused_with(&self, id: Uuid, who: &Principal, d: Draft, errors: &[FieldError]) -> Value {
        self.drafts.restore(id, d);
        let all: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
        match self
            .drafts
            .checked(id, who, &all, errors)
            .and_then(|bad| Ok((self.drafts.peek(id, who)?, bad)))
        {
            Ok((d, bad)) => self.progress(id, &d, None, &bad),
            Err(e) => messages::ephemeral(&e.to_string()),
        }
    }
}
