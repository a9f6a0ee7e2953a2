//! The deploy forms within Discord's limits. A modal holds at most five text inputs and cannot
//! be the answer to a modal submit, so a form is laid out as:
//!
//! - its choice fields (inventory, enums, booleans, whole numbers) as options of the `/aether
//!   deploy` command, with autocomplete from inventory;
//! - its other fields in modal pages of at most five, chained by buttons on the ephemeral
//!   message that answers each page ("Continue", "Submit");
//! - each optional parameter set (static IPv4, domain join, Ansible) as a page of its own,
//!   offered by a button.
//!
//! What a user filled in so far is a [`Draft`], kept by the bot per user for
//! [`DRAFT_TTL`] (an interaction token's lifetime). A page that comes back with errors is
//! reopened with the values kept and each error under its field; a secret is kept in the draft
//! but never put back into a form or a message. Validation is the engine's
//! ([`aetherv_bot::Engine::check_fields`], `submit_form`): this module only lays out and keeps.

use aetherv_core::command::DeployForm;
use aetherv_core::rbac::Principal;
use aetherv_core::schema::{Field, FieldType, FormSchema, Forms};
use aetherv_core::validate::FieldError;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a draft is kept after its last use (an interaction token lives 15 minutes).
pub const DRAFT_TTL: Duration = Duration::from_secs(15 * 60);
/// Most drafts kept at once (the oldest goes first).
pub const MAX_DRAFTS: usize = 1000;
/// Most text inputs in one modal.
pub const MAX_PAGE_FIELDS: usize = 5;
/// Discord's limit on a modal title and a text input label.
pub const MAX_TITLE: usize = 45;
/// Discord's limit on a label component's description and a placeholder.
pub const MAX_DESCRIPTION: usize = 100;
/// Discord's limit on a text input's value.
pub const MAX_VALUE: usize = 4000;
/// `custom_id` prefix of a page's modal: `aether:page:<draft>:<page>`.
pub const PAGE_PREFIX: &str = "aether:page:";
/// `custom_id` prefix of a button opening a page: `aether:open:<draft>:<page>`.
pub const OPEN_PREFIX: &str = "aether:open:";
/// `custom_id` prefix of the Submit button: `aether:submit:<draft>`.
pub const SUBMIT_PREFIX: &str = "aether:submit:";
/// Interaction response type `MODAL`.
pub const MODAL: u8 = 9;

/// What a page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageKind {
    /// Fields every request has.
    Base,
    /// An optional parameter set's fields (its id).
    Set(String),
    /// Fields with errors that are on no page (command options), to correct them.
    Corrections,
}

/// One modal page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The modal's title.
    pub title: String,
    /// What it holds.
    pub kind: PageKind,
    /// Its fields' ids, at most [`MAX_PAGE_FIELDS`].
    pub fields: Vec<String>,
}

/// A form laid out for Discord.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The form's fields given as command options.
    pub options: Vec<String>,
    /// The modal pages: base pages first, then the parameter sets'.
    pub pages: Vec<Page>,
}

fn is_choice(f: &Field) -> bool {
    f.kind.is_inventory()
        || matches!(
            f.kind,
            FieldType::Enum | FieldType::Boolean | FieldType::Integer
        )
}

fn chunks(title: &str, kind: &PageKind, ids: &[String], pages: &mut Vec<Page>) {
    let n = ids.len().div_ceil(MAX_PAGE_FIELDS);
    for (i, c) in ids.chunks(MAX_PAGE_FIELDS).enumerate() {
        let title = if n > 1 {
            format!("{title} ({}/{n})", i + 1)
        } else {
            title.to_string()
        };
        pages.push(Page {
            title: crate::messages::cut(&title, MAX_TITLE),
            kind: kind.clone(),
            fields: c.to_vec(),
        });
    }
}

impl Layout {
    /// The layout of `schema`: fields outside parameter sets that are choices become command
    /// options; the rest of them base pages; each parameter set its own pages.
    pub fn of(schema: &FormSchema) -> Layout {
        let mut options = Vec::new();
        let mut base = Vec::new();
        let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in schema.fields() {
            match &f.parameter_set {
                Some(m) => sets.entry(m.id.clone()).or_default().push(f.id.clone()),
                None if is_choice(f) && !f.is_secret() => options.push(f.id.clone()),
                None => base.push(f.id.clone()),
            }
        }
        let mut pages = Vec::new();
        chunks(schema.title(), &PageKind::Base, &base, &mut pages);
        for set in schema.parameter_sets() {
            if let Some(ids) = sets.get(&set.id) {
                chunks(&set.label, &PageKind::Set(set.id.clone()), ids, &mut pages);
            }
        }
        Layout { options, pages }
    }

    /// The layout of a deploy form, `None` for a form the schemas do not have.
    pub fn of_form(forms: &Forms, form: DeployForm) -> Option<Layout> {
        forms.get(form.form_id()).map(Layout::of)
    }

    /// The base pages' indices.
    pub fn base_pages(&self) -> impl Iterator<Item = usize> + '_ {
        self.pages
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == PageKind::Base)
            .map(|(i, _)| i)
    }
}

/// A form being filled in by one user.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Who fills it in (only they may continue it).
    pub who: Principal,
    /// Which form.
    pub form: DeployForm,
    /// The channel the command was given in (the job's messages go there).
    pub channel: Option<String>,
    /// Its pages (the form's, plus a corrections page when one is needed).
    pub pages: Vec<Page>,
    /// The values so far (secrets included: they go to the engine, which seals them).
    pub values: Map<String, Value>,
    /// Pages filled in without errors.
    pub done: BTreeSet<usize>,
    /// The last errors, by field.
    pub errors: HashMap<String, String>,
    touched: Instant,
}

/// Why a draft cannot be continued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    /// Expired, submitted, or never existed.
    #[error("this form has expired; run /aether deploy again")]
    Gone,
    /// Somebody else's.
    #[error("this form belongs to someone else")]
    NotYours,
    /// A page the form does not have.
    #[error("this form has no such page")]
    NoPage,
}

/// The drafts of every user, shared by the interaction handlers and the engine task.
#[derive(Debug, Default)]
pub struct Drafts {
    inner: Mutex<HashMap<Uuid, Draft>>,
}

/// The id and page named by a `custom_id` after its prefix (`<draft>:<page>`).
pub fn draft_page(rest: &str) -> Option<(Uuid, usize)> {
    let (id, page) = rest.split_once(':')?;
    Some((Uuid::parse_str(id).ok()?, page.parse().ok()?))
}

impl Drafts {
    fn with<T>(
        &self,
        id: Uuid,
        who: &Principal,
        f: impl FnOnce(&mut Draft) -> Result<T, DraftError>,
    ) -> Result<T, DraftError> {
        let mut map = self.inner.lock().map_err(|_| DraftError::Gone)?;
        let now = Instant::now();
        map.retain(|_, d| now.duration_since(d.touched) < DRAFT_TTL);
        let d = map.get_mut(&id).ok_or(DraftError::Gone)?;
        if d.who.id != who.id {
            return Err(DraftError::NotYours);
        }
        d.touched = now;
        f(d)
    }

    /// Starts a draft with the command's options as its first values.
    pub fn start(
        &self,
        who: Principal,
        form: DeployForm,
        layout: &Layout,
        values: Map<String, Value>,
        channel: Option<String>,
    ) -> Uuid {
        let id = Uuid::new_v4();
        let draft = Draft {
            who,
            form,
            channel,
            pages: layout.pages.clone(),
            values,
            done: BTreeSet::new(),
            errors: HashMap::new(),
            touched: Instant::now(),
        };
        if let Ok(mut map) = self.inner.lock() {
            if map.len() >= MAX_DRAFTS {
                if let Some(oldest) = map.iter().min_by_key(|(_, d)| d.touched).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
            map.insert(id, draft);
        }
        id
    }

    /// The modal of page `page` of draft `id`, for `who`.
    pub fn modal(
        &self,
        forms: &Forms,
        id: Uuid,
        page: usize,
        who: &Principal,
    ) -> Result<Value, DraftError> {
        self.with(id, who, |d| {
            let p = d.pages.get(page).ok_or(DraftError::NoPage)?;
            let schema = forms.get(d.form.form_id()).ok_or(DraftError::Gone)?;
            Ok(modal(schema, id, page, p, d))
        })
    }

    /// Takes a page's submitted values into the draft: a blank secret keeps the one given
    /// before. Returns the draft as it now is and the page's fields.
    pub fn fill(
        &self,
        id: Uuid,
        page: usize,
        who: &Principal,
        forms: &Forms,
        submitted: &[(String, String)],
    ) -> Result<(Draft, Vec<String>), DraftError> {
        self.with(id, who, |d| {
            let fields = d.pages.get(page).ok_or(DraftError::NoPage)?.fields.clone();
            let schema = forms.get(d.form.form_id()).ok_or(DraftError::Gone)?;
            for (k, v) in submitted {
                let Some(f) = fields.iter().find(|f| *f == k) else {
                    continue;
                };
                let secret = schema.field(f).is_some_and(Field::is_secret);
                if v.trim().is_empty() {
                    if !secret {
                        d.values.remove(f);
                    }
                } else {
                    d.values.insert(f.clone(), Value::String(v.clone()));
                }
            }
            Ok((d.clone(), fields))
        })
    }

    /// Records the outcome of checking `fields`: their errors, and the pages now done.
    /// Errors on fields of no page get a corrections page. Returns the pages with errors.
    pub fn checked(
        &self,
        id: Uuid,
        who: &Principal,
        fields: &[String],
        errors: &[FieldError],
    ) -> Result<Vec<usize>, DraftError> {
        self.with(id, who, |d| {
            for f in fields {
                d.errors.remove(f);
            }
            for e in errors {
                d.errors.insert(e.field.clone(), e.message.clone());
            }
            d.pages.retain(|p| p.kind != PageKind::Corrections);
            let orphans: Vec<String> = d
                .errors
                .keys()
                .filter(|f| !d.pages.iter().any(|p| p.fields.contains(f)))
                .filter(|f| !f.is_empty())
                .take(MAX_PAGE_FIELDS)
                .cloned()
                .collect();
            if !orphans.is_empty() {
                d.pages.push(Page {
                    title: "Corrections".into(),
                    kind: PageKind::Corrections,
                    fields: orphans,
                });
            }
            let mut bad = Vec::new();
            for (i, p) in d.pages.iter().enumerate() {
                if p.fields.iter().any(|f| d.errors.contains_key(f)) {
                    d.done.remove(&i);
                    bad.push(i);
                } else if p.fields.iter().all(|f| !fields.contains(f)) {
                    // untouched by this check: as it was
                } else {
                    d.done.insert(i);
                }
            }
            Ok(bad)
        })
    }

    /// A copy of a draft as it is.
    pub fn peek(&self, id: Uuid, who: &Principal) -> Result<Draft, DraftError> {
        self.with(id, who, |d| Ok(d.clone()))
    }

    /// Removes a draft for its submission.
    pub fn take(&self, id: Uuid, who: &Principal) -> Result<Draft, DraftError> {
        self.peek(id, who)?;
        self.inner
            .lock()
            .map_err(|_| DraftError::Gone)?
            .remove(&id)
            .ok_or(DraftError::Gone)
    }

    /// Puts a submitted draft back (its submission was refused with errors).
    pub fn restore(&self, id: Uuid, mut draft: Draft) {
        draft.touched = Instant::now();
        if let Ok(mut map) = self.inner.lock() {
            map.insert(id, draft);
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A page's modal: one label (the field's label, its error or help as description) around a
/// text input per field, values kept except secrets.
fn modal(schema: &FormSchema, id: Uuid, page: usize, p: &Page, d: &Draft) -> Value {
    let components: Vec<Value> = p
        .fields
        .iter()
        .filter_map(|f| schema.field(f))
        .map(|f| {
            let secret = f.is_secret();
            let given = d.values.contains_key(&f.id);
            let mut input = json!({
                "type": 4,
                "custom_id": f.id,
                "style": if f.kind == FieldType::Multiline { 2 } else { 1 },
                "required": f.required && f.default.is_none() && p.kind == PageKind::Base && !(secret && given),
            });
            if let Some(max) = f.max_length {
                input["max_length"] = json!(max.min(MAX_VALUE));
            }
            if secret {
                if given {
                    input["placeholder"] = json!("(kept; leave blank to keep it)");
                }
            } else if let Some(v) = d.values.get(&f.id) {
                input["value"] = json!(crate::messages::cut(&text_of(v), MAX_VALUE));
            }
            let description = match d.errors.get(&f.id) {
                Some(e) => format!("⚠ {e}"),
                None => f.help.clone(),
            };
            let mut label = json!({
                "type": 18,
                "label": crate::messages::cut(&f.label, MAX_TITLE),
                "component": input,
            });
            if !description.trim().is_empty() {
                label["description"] = json!(crate::messages::cut(&description, MAX_DESCRIPTION));
            }
            label
        })
        .collect();
    json!({
        "type": MODAL,
        "data": {
            "custom_id": format!("{PAGE_PREFIX}{id}:{page}"),
            "title": p.title,
            "components": components,
        }
    })
}

/// The values of a modal submit's text inputs (and selects), in either shape: action rows
/// (type 1) around inputs, or labels (type 18) around one component.
pub fn submitted(components: &[Value]) -> Vec<(String, String)> {
    fn leaf(c: &Value, out: &mut Vec<(String, String)>) {
        let Some(id) = c.get("custom_id").and_then(Value::as_str) else {
            return;
        };
        let value = match (c.get("value"), c.get("values")) {
            (Some(Value::String(s)), _) => s.clone(),
            (_, Some(Value::Array(vs))) => vs
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            _ => return,
        };
        out.push((id.to_string(), value));
    }
    let mut out = Vec::new();
    for c in components {
        match c.get("type").and_then(Value::as_u64) {
            Some(1) => {
                for inner in c
                    .get("components")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    leaf(inner, &mut out);
                }
            }
            Some(18) => {
                if let Some(inner) = c.get("component") {
                    leaf(inner, &mut out);
                }
            }
            _ => leaf(c, &mut out),
        }
    }
    out
}
