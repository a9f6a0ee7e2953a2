//! Guided forms: `deploy` (or `deploy managed`) without `key=value` pairs asks for the form's
//! fields one at a time, in schema order, on text-only chats (the console; Slack and Discord
//! use modals built from the same schemas). Optional parameter sets (static IPv4, domain join,
//! Ansible) are offered with one yes/no question; fields that do not apply to the chosen
//! image's OS family are skipped; of an exclusive group (target host or cluster) only the first
//! answered member is kept. Each answer is checked at once against the schema (an error is shown
//! and the same field asked again); `-` keeps the default or leaves an optional field empty;
//! `/cancel` drops the form. Answers to secret fields are never repeated back.

use super::{notice, Engine, EngineError};
use crate::reply::{Question, Reply};

fn ask(user: &str, question: Question) -> Reply {
    Reply::Guided {
        user: user.to_string(),
        question,
    }
}
use crate::state::display;
use aetherv_core::command::DeployForm;
use aetherv_core::osfamily::infer_from_optional;
use aetherv_core::rbac::{Grants, Principal};
use aetherv_core::schema::{Field, FieldType, FormSchema, SetRole};
use aetherv_core::validate::validate;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One pending question.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ask {
    /// A field.
    Field(String),
    /// Whether to fill in an optional parameter set.
    Set(String),
}

/// A form being filled in by one user.
#[derive(Debug, Clone)]
pub struct Guided {
    form: DeployForm,
    answers: BTreeMap<String, String>,
    queue: Vec<Ask>,
    current: Option<Ask>,
    /// Fields asked again because the whole form did not validate: `-` is no answer for them.
    must: std::collections::BTreeSet<String>,
}

/// The questions in schema order, except that the deployment target comes first (the
/// networks, storage classes and images offered depend on the chosen host).
fn plan(schema: &FormSchema) -> Vec<Ask> {
    let mut out: Vec<Ask> = schema
        .fields()
        .iter()
        .filter(|f| matches!(f.kind, FieldType::Host | FieldType::Cluster))
        .map(|f| Ask::Field(f.id.clone()))
        .collect();
    let mut sets_seen: Vec<String> = Vec::new();
    for f in schema.fields() {
        match &f.parameter_set {
            Some(m) => {
                if !sets_seen.contains(&m.id) {
                    sets_seen.push(m.id.clone());
                    out.push(Ask::Set(m.id.clone()));
                }
            }
            None if matches!(f.kind, FieldType::Host | FieldType::Cluster) => {}
            None => out.push(Ask::Field(f.id.clone())),
        }
    }
    out
}

fn set_members(schema: &FormSchema, set: &str) -> Vec<String> {
    let mut required = Vec::new();
    let mut optional = Vec::new();
    for f in schema.fields() {
        if let Some(m) = &f.parameter_set {
            if m.id == set {
                match m.role {
                    SetRole::Required => required.push(f.id.clone()),
                    _ => optional.push(f.id.clone()),
                }
            }
        }
    }
    required.extend(optional);
    required
}

fn yes(answer: &str) -> bool {
    matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "on" | "1"
    )
}

impl Engine {
    /// True when `who` is filling in a guided form (their next line is an answer).
    pub fn in_guided_form(&self, who: &Principal) -> bool {
        self.guided.contains_key(&display(&who.id))
    }

    /// Starts a guided form for `who`.
    pub(super) fn start_guided(&mut self, who: &Principal, form: DeployForm) -> Vec<Reply> {
        let user = display(&who.id);
        let Some(schema) = self.forms.get(form.form_id()) else {
            return vec![notice(&user, "that form is not available")];
        };
        let mut g = Guided {
            form,
            answers: BTreeMap::new(),
            queue: plan(schema),
            current: None,
            must: Default::default(),
        };
        g.queue.reverse();
        let intro = Question::Intro {
            title: schema.title().to_string(),
        };
        let mut out = vec![ask(&user, intro)];
        if let Some(q) = self.next_question(&mut g) {
            out.push(ask(&user, q));
            self.guided.insert(user, g);
        }
        out
    }

    /// One answer from `who` to their guided form.
    pub(super) async fn guided_answer(
        &mut self,
        who: &Principal,
        grants: &Grants,
        line: &str,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        let Some(mut g) = self.guided.remove(&user) else {
            return Ok(Vec::new());
        };
        let answer = line.trim();
        if answer.eq_ignore_ascii_case("/cancel") {
            return Ok(vec![ask(&user, Question::Cancelled)]);
        }
        let Some(schema) = self.forms.get(g.form.form_id()).cloned() else {
            return Ok(Vec::new());
        };
        match g.current.take() {
            Some(Ask::Set(set)) if yes(answer) => {
                for id in set_members(&schema, &set).into_iter().rev() {
                    g.queue.push(Ask::Field(id));
                }
            }
            Some(Ask::Set(_)) => {}
            Some(Ask::Field(id)) => {
                let set_required = schema.field(&id).is_some_and(|f| {
                    f.parameter_set
                        .as_ref()
                        .is_some_and(|m| m.role == SetRole::Required)
                });
                let must = g.must.contains(&id)
                    || ((set_required || schema.field(&id).is_some_and(|f| f.required))
                        && schema.default_of(&id).is_none()
                        && !schema.one_of().iter().any(|o| o.members.contains(&id)));
                if answer == "-" && must {
                    g.current = Some(Ask::Field(id.clone()));
                    let label = schema
                        .field(&id)
                        .map(|f| f.label.clone())
                        .unwrap_or_default();
                    let q = self.question(&schema, &g, &id);
                    self.guided.insert(user.clone(), g);
                    return Ok(vec![
                        ask(&user, Question::Required { label }),
                        ask(&user, q),
                    ]);
                }
                if answer != "-" {
                    g.answers.insert(id.clone(), answer.to_string());
                    if let Some(message) = self.field_error(&schema, &g.answers, &id) {
                        g.answers.remove(&id);
                        g.current = Some(Ask::Field(id.clone()));
                        let q = self.question(&schema, &g, &id);
                        let out = vec![notice(&user, message), ask(&user, q)];
                        self.guided.insert(user, g);
                        return Ok(out);
                    }
                }
            }
            None => {}
        }
        if let Some(q) = self.next_question(&mut g) {
            self.guided.insert(user.clone(), g);
            return Ok(vec![ask(&user, q)]);
        }
        // Every question was answered; a form the schema still refuses (a field skipped with
        // `-` that the answers made necessary) asks that field again instead of ending.
        if let Some((id, message)) = self.form_error(&schema, &g.answers) {
            g.answers.remove(&id);
            g.must.insert(id.clone());
            g.queue.push(Ask::Field(id));
            if let Some(q) = self.next_question(&mut g) {
                self.guided.insert(user.clone(), g);
                return Ok(vec![notice(&user, message), ask(&user, q)]);
            }
        }
        self.command_deploy(who, grants, g.form, g.answers).await
    }

    /// The schema's complaints about the answers so far.
    fn answer_errors(
        &self,
        schema: &FormSchema,
        answers: &BTreeMap<String, String>,
    ) -> Vec<aetherv_core::validate::FieldError> {
        let input: Map<String, Value> = answers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        validate(schema, &Value::Object(input), &self.validation_context())
            .err()
            .unwrap_or_default()
    }

    /// The schema's complaint about field `id` given the answers so far, if any (errors about
    /// fields not yet asked are not shown).
    fn field_error(
        &self,
        schema: &FormSchema,
        answers: &BTreeMap<String, String>,
        id: &str,
    ) -> Option<String> {
        self.answer_errors(schema, answers)
            .into_iter()
            .find(|e| {
                e.field == id
                    && !matches!(
                        e.code.as_str(),
                        "required" | "parameter_set_incomplete" | "exclusive"
                    )
            })
            .map(|e| e.message)
    }

    /// The first field the schema refuses in the finished answers, with its message.
    fn form_error(
        &self,
        schema: &FormSchema,
        answers: &BTreeMap<String, String>,
    ) -> Option<(String, String)> {
        let errors: Vec<_> = self
            .answer_errors(schema, answers)
            .into_iter()
            .filter(|e| schema.field(&e.field).is_some() && e.code.as_str() != "not_applicable")
            .collect();
        // A field left empty first: an answered field complained about for want of it (an
        // optional set member) is fine once the missing one is given.
        let pick = errors
            .iter()
            .position(|e| !answers.contains_key(&e.field))
            .unwrap_or(0);
        errors.into_iter().nth(pick).map(|e| (e.field, e.message))
    }

    /// The next applicable question (and makes it current), or `None` when none is left.
    fn next_question(&self, g: &mut Guided) -> Option<Question> {
        let schema = self.forms.get(g.form.form_id())?;
        let family = infer_from_optional(g.answers.get("image_name").map(String::as_str));
        while let Some(ask) = g.queue.pop() {
            let applies = match &ask {
                Ask::Field(id) => schema.field(id).is_some_and(|f| {
                    f.applies_to(family)
                        && !schema.one_of().iter().any(|o| {
                            o.members.iter().any(|m| m == id)
                                && o.members
                                    .iter()
                                    .any(|m| m != id && g.answers.contains_key(m))
                        })
                }),
                Ask::Set(set) => set_members(schema, set)
                    .first()
                    .and_then(|id| schema.field(id))
                    .is_some_and(|f| f.applies_to(family)),
            };
            if !applies {
                continue;
            }
            let text = match &ask {
                Ask::Field(id) => self.question(schema, g, id),
                Ask::Set(set) => {
                    let label = schema
                        .parameter_sets()
                        .iter()
                        .find(|p| p.id == *set)
                        .map(|p| p.label.clone())
                        .unwrap_or_else(|| set.clone());
                    Question::Set { label }
                }
            };
            g.current = Some(ask);
            return Some(text);
        }
        None
    }

    /// The question for field `id`: label, help, default and choices (dependent on the chosen
    /// host for networks and storage classes).
    fn question(&self, schema: &FormSchema, g: &Guided, id: &str) -> Question {
        let default = schema.default_of(id).map(|d| match d {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        match schema.field(id) {
            Some(f) => Question::Field {
                label: f.label.clone(),
                id: f.id.clone(),
                required: f.required && default.is_none(),
                help: f.help.clone(),
                default,
                choices: self.choices_for(f, g),
                secret: f.is_secret(),
            },
            None => Question::Field {
                label: id.to_string(),
                id: id.to_string(),
                required: false,
                help: String::new(),
                default,
                choices: Vec::new(),
                secret: false,
            },
        }
    }

    fn choices_for(&self, f: &Field, g: &Guided) -> Vec<String> {
        if f.kind == FieldType::Enum {
            return f.choices.clone();
        }
        let host = g.answers.get("target_host").map(|h| h.to_ascii_lowercase());
        let per_host = host.as_ref().and_then(|h| self.state.hosts.get(h));
        match (f.kind, per_host) {
            (FieldType::Network, Some(h)) if !h.networks.is_empty() => h.networks.clone(),
            (FieldType::StorageClass, Some(h)) if !h.storage_classes.is_empty() => {
                h.storage_classes.clone()
            }
            (FieldType::Image, Some(h)) if !h.images.is_empty() => h.images.clone(),
            (FieldType::Boolean, _) => vec!["yes".into(), "no".into()],
            (kind, _) => self
                .state
                .choices()
                .for_type(kind)
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::schema::Forms;

    #[test]
    fn the_plan_asks_plain_fields_in_order_and_each_set_once() {
        let forms = Forms::builtin().expect("forms");
        let schema = forms.get("managed-deployment").expect("form");
        let plan = plan(schema);
        let sets: Vec<&Ask> = plan.iter().filter(|a| matches!(a, Ask::Set(_))).collect();
        assert_eq!(sets.len(), schema.parameter_sets().len(), "{plan:?}");
        assert_eq!(plan.first(), Some(&Ask::Field("target_host".into())));
        assert_eq!(plan.get(1), Some(&Ask::Field("target_cluster".into())));
        assert_eq!(plan.get(2), Some(&Ask::Field("vm_name".into())));
        let members = set_members(schema, "static_ipv4");
        assert_eq!(
            members.first().map(String::as_str),
            Some("guest_v4_ip_addr")
        );
        assert!(yes(" Yes ") && !yes("no") && !yes("-"));
    }
}
