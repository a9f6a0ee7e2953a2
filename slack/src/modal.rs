//! Modals built from the form schemas, and their submissions read back into field values.
//!
//! The main view holds every field that is not in a parameter set, one input block per field
//! (block id = field id), plus one button per parameter set ("Static IPv4…", "Domain join…")
//! that pushes a view with that set's fields. Inventory fields are static selects fed from the
//! bot's cached inventory (external selects, searched as the user types, when there are more
//! than the 100 options a static select holds); the host select dispatches an action so the networks and storage
//! classes can be narrowed to the chosen host (`views.update`). Secret fields are plain-text
//! inputs that are never given an initial value. What a view needs to know about itself
//! (form, channel, parameter set, chosen host) travels in `private_metadata`.

use crate::blocks::{check_modal, truncate, LimitError, LABEL_MAX, MODAL_TITLE_MAX, OPTIONS_MAX};
use aetherv_core::schema::{Field, FieldType, FormSchema};
use aetherv_core::validate::{FieldError, InventoryChoices};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use slack_morphism::prelude::SlackViewState;
use std::collections::HashMap;

/// The `callback_id` of every deployment modal.
pub const CALLBACK_ID: &str = "aetherv_form";
/// The action id of every input element.
pub const INPUT_ACTION: &str = "v";
/// Prefix of the action id of the buttons that push a parameter-set view.
pub const PUSH_ACTION_PREFIX: &str = "push_set:";
/// Block id of the parameter-set buttons.
pub const SETS_BLOCK: &str = "parameter_sets";

/// What a view knows about itself (serialised into `private_metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMeta {
    /// Form id.
    pub form: String,
    /// The channel the command came from.
    pub channel: String,
    /// The parameter set this (pushed) view edits; `None` for the main view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// The chosen host, for dependent choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl ViewMeta {
    /// Reads the metadata of a view (`None` when it is not ours).
    pub fn parse(s: &str) -> Option<ViewMeta> {
        serde_json::from_str(s).ok()
    }
}

fn plain(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": truncate(text, max)})
}

fn option(v: &str) -> Value {
    json!({"text": plain(v, crate::blocks::OPTION_TEXT_MAX), "value": v})
}

fn default_text(f: &Field) -> Option<String> {
    match f.default.as_ref()? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn select(f: &Field, choices: &[String]) -> Value {
    if choices.len() > OPTIONS_MAX {
        // More than a static select may hold: Slack asks for options as the user types
        // (`block_suggestion`, answered by [`suggestions`]).
        let mut el = json!({"type": "external_select", "action_id": INPUT_ACTION,
            "min_query_length": 0, "placeholder": plain("Type to search", 150)});
        if let Some(d) = default_text(f).filter(|d| choices.iter().any(|c| c == d)) {
            el["initial_option"] = option(&d);
        }
        return el;
    }
    let opts: Vec<Value> = choices
        .iter()
        .take(OPTIONS_MAX)
        .map(|c| option(c))
        .collect();
    let mut el = json!({"type": "static_select", "action_id": INPUT_ACTION, "options": opts,
        "placeholder": plain("Choose", 150)});
    if let Some(d) = default_text(f).filter(|d| choices.iter().any(|c| c == d)) {
        el["initial_option"] = option(&d);
    }
    el
}

fn text_input(f: &Field, multiline: bool) -> Value {
    let mut el =
        json!({"type": "plain_text_input", "action_id": INPUT_ACTION, "multiline": multiline});
    if let Some(max) = f.max_length {
        el["max_length"] = json!(max.min(3000));
    }
    if !f.is_secret() {
        if let Some(d) = default_text(f) {
            el["initial_value"] = json!(d);
        }
    }
    el
}

/// The choices a field offers (enum values, or the inventory's for its type).
pub fn field_choices<'a>(f: &'a Field, choices: &'a InventoryChoices) -> &'a [String] {
    match f.kind {
        FieldType::Enum => &f.choices,
        k if k.is_inventory() => choices.for_type(k).unwrap_or_default(),
        _ => &[],
    }
}

/// The options for an `external_select` as the user types `query`: the choices holding it
/// (ignoring case), those starting with it first, at most the 100 Slack shows.
pub fn suggestions(choices: &[String], query: &str) -> Vec<Value> {
    let q = query.trim().to_lowercase();
    let mut hits: Vec<(bool, &String)> = choices
        .iter()
        .filter_map(|c| {
            let lower = c.to_lowercase();
            lower.contains(&q).then(|| (!lower.starts_with(&q), c))
        })
        .collect();
    // Stable: prefix matches first, otherwise in inventory order.
    hits.sort_by_key(|(later, _)| *later);
    hits.into_iter()
        .take(OPTIONS_MAX)
        .map(|(_, c)| option(c))
        .collect()
}

/// The input element for a field, by type. Inventory fields become selects when the
/// inventory is known, text inputs otherwise.
fn element(f: &Field, choices: &InventoryChoices) -> Value {
    match f.kind {
        FieldType::Enum => select(f, &f.choices),
        FieldType::Boolean => select(f, &["true".to_string(), "false".to_string()]),
        FieldType::Integer => {
            let mut el = json!({"type": "number_input", "action_id": INPUT_ACTION,
                "is_decimal_allowed": false});
            if let Some(d) = default_text(f) {
                el["initial_value"] = json!(d);
            }
            if let Some(m) = f.min {
                el["min_value"] = json!(m.to_string());
            }
            if let Some(m) = f.max {
                el["max_value"] = json!(m.to_string());
            }
            el
        }
        FieldType::Multiline => text_input(f, true),
        k if k.is_inventory() => match choices.for_type(k) {
            Some(list) if !list.is_empty() => select(f, list),
            _ => text_input(f, false),
        },
        _ => text_input(f, false),
    }
}

fn input_block(f: &Field, choices: &InventoryChoices, required_fields: bool) -> Value {
    let mut b = json!({
        "type": "input",
        "block_id": f.id,
        "label": plain(&f.label, LABEL_MAX),
        "element": element(f, choices),
        "optional": !(required_fields && f.required && f.default.is_none()),
    });
    if !f.help.is_empty() {
        b["hint"] = plain(&f.help, LABEL_MAX);
    }
    if f.kind == FieldType::Host {
        b["dispatch_action"] = json!(true);
    }
    b
}

/// Builds a view of `form`: the main view (`meta.set == None`) or a parameter set's view.
/// The result passes [`check_modal`] or the error says which limit it breaks.
pub fn build(
    form: &FormSchema,
    choices: &InventoryChoices,
    meta: &ViewMeta,
) -> Result<Value, LimitError> {
    let mut blocks = Vec::new();
    let title = match &meta.set {
        None => {
            for f in form.fields().iter().filter(|f| f.parameter_set.is_none()) {
                blocks.push(input_block(f, choices, true));
            }
            let buttons: Vec<Value> = form
                .parameter_sets()
                .iter()
                .map(|s| {
                    json!({"type": "button", "action_id": format!("{PUSH_ACTION_PREFIX}{}", s.id),
                        "text": plain(&format!("{}…", s.label), 75), "value": s.id})
                })
                .collect();
            if !buttons.is_empty() {
                blocks
                    .push(json!({"type": "actions", "block_id": SETS_BLOCK, "elements": buttons}));
            }
            form.title().to_string()
        }
        Some(set) => {
            let Some(s) = form.parameter_sets().iter().find(|s| s.id == *set) else {
                return Err(LimitError::Malformed(format!("no parameter set {set}")));
            };
            if !s.help.is_empty() {
                blocks.push(json!({"type": "context", "elements": [plain(&s.help, 2000)]}));
            }
            for f in form.set_members(set) {
                blocks.push(input_block(f, choices, false));
            }
            s.label.clone()
        }
    };
    let meta_text =
        serde_json::to_string(meta).map_err(|e| LimitError::Malformed(e.to_string()))?;
    let mut view = json!({
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": plain(&title, MODAL_TITLE_MAX),
        "submit": plain(if meta.set.is_some() { "Save" } else { "Submit" }, MODAL_TITLE_MAX),
        "close": plain(if meta.set.is_some() { "Back" } else { "Cancel" }, MODAL_TITLE_MAX),
        "private_metadata": meta_text,
        "blocks": blocks,
    });
    if meta.set.is_none() {
        // Cancelling the modal tells the bot, so saved parameter-set values are dropped.
        view["notify_on_close"] = json!(true);
    }
    check_modal(&view)?;
    Ok(view)
}

/// The values of a submitted view, by field id (blank inputs left out).
pub fn values(state: Option<&SlackViewState>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(state) = state else {
        return out;
    };
    for (block, actions) in &state.values {
        let Some(v) = actions.get(&INPUT_ACTION.into()) else {
            continue;
        };
        let text = v
            .value
            .clone()
            .or_else(|| v.selected_option.as_ref().map(|o| o.value.clone()));
        if let Some(t) = text.filter(|t| !t.trim().is_empty()) {
            out.insert(block.0.clone(), Value::String(t));
        }
    }
    out
}

/// Inline errors for a view: each error goes on its field's block; errors on fields that are
/// not in this view (a parameter set's fields seen from the main view) go on the view's first
/// input block, prefixed with the field's label.
pub fn inline_errors(
    form: &FormSchema,
    meta: &ViewMeta,
    errors: &[FieldError],
) -> HashMap<String, String> {
    let shown: Vec<&Field> = form
        .fields()
        .iter()
        .filter(|f| match &meta.set {
            None => f.parameter_set.is_none(),
            Some(s) => f.parameter_set.as_ref().is_some_and(|m| m.id == *s),
        })
        .collect();
    let first = shown.first().map(|f| f.id.clone()).unwrap_or_default();
    let mut out: HashMap<String, String> = HashMap::new();
    for e in errors {
        let (block, msg) = if shown.iter().any(|f| f.id == e.field) {
            (e.field.clone(), e.message.clone())
        } else {
            let label = form
                .field(&e.field)
                .map(|f| f.label.clone())
                .unwrap_or_else(|| e.field.clone());
            (first.clone(), format!("{label}: {}", e.message))
        };
        out.entry(block)
            .and_modify(|m| {
                m.push_str("; ");
                m.push_str(&msg);
            })
            .or_insert(msg);
    }
    for m in out.values_mut() {
        *m = truncate(m, LABEL_MAX);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::schema::Forms;
    use aetherv_core::validate::ErrorCode;

    fn choices() -> InventoryChoices {
        InventoryChoices {
            hosts: Some(vec!["hv01".into(), "hv02".into()]),
            networks: Some(vec!["lan".into(), "dmz".into()]),
            ..Default::default()
        }
    }

    fn meta(set: Option<&str>) -> ViewMeta {
        ViewMeta {
            form: "managed-deployment".into(),
            channel: "C1".into(),
            set: set.map(str::to_string),
            host: None,
        }
    }

    #[test]
    fn long_choice_lists_become_external_selects_searched_by_prefix_first() {
        let forms = Forms::builtin().expect("forms");
        let form = forms.get("managed-deployment").expect("form");
        let many: Vec<String> = (0..150).map(|i| format!("net{i:03}")).collect();
        let mut inv = choices();
        inv.networks = Some(many.clone());
        let v = build(form, &inv, &meta(None)).expect("view within limits");
        let block = |id: &str| {
            v["blocks"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["block_id"] == id))
                .cloned()
                .expect("block")
        };
        let net = block("network");
        assert_eq!(net["element"]["type"], "external_select");
        assert!(net["element"].get("options").is_none());
        assert_eq!(block("target_host")["element"]["type"], "static_select");

        let all = suggestions(&many, "");
        assert_eq!(all.len(), OPTIONS_MAX, "Slack shows at most 100");
        assert_eq!(all[0]["value"], "net000");
        let some = suggestions(&many, "NET14");
        let values: Vec<&str> = some.iter().filter_map(|o| o["value"].as_str()).collect();
        assert_eq!(values.len(), 10);
        assert!(values.iter().all(|v| v.starts_with("net14")));
        let inner: Vec<String> = ["a-web", "web-b", "xweb"].map(String::from).to_vec();
        let ranked = suggestions(&inner, "web");
        assert_eq!(ranked[0]["value"], "web-b", "a prefix match comes first");
        assert_eq!(ranked.len(), 3);
        assert!(suggestions(&inner, "db").is_empty());
    }

    #[test]
    fn every_form_and_set_fits_the_modal_limits() {
        let forms = Forms::builtin().expect("forms");
        for form in forms.iter() {
            let v = build(form, &choices(), &meta(None)).expect("main view within limits");
            assert!(v["blocks"].as_array().map_or(0, Vec::len) <= 100);
            for s in form.parameter_sets() {
                build(form, &choices(), &meta(Some(&s.id))).expect("set view within limits");
            }
        }
    }

    #[test]
    fn secrets_are_never_prefilled_and_selects_come_from_inventory() {
        let forms = Forms::builtin().expect("forms");
        let form = forms.get("managed-deployment").expect("form");
        let v = build(form, &choices(), &meta(Some("domain_join"))).expect("view");
        let pw = v["blocks"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["block_id"] == "guest_domain_join_pw"))
            .expect("password block");
        assert_eq!(pw["element"]["type"], "plain_text_input");
        assert!(pw["element"].get("initial_value").is_none());
        let main = build(form, &choices(), &meta(None)).expect("view");
        let host = main["blocks"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["block_id"] == "target_host"))
            .expect("host block");
        assert_eq!(host["element"]["type"], "static_select");
        assert_eq!(host["dispatch_action"], true);
        assert_eq!(host["element"]["options"][1]["value"], "hv02");
    }

    #[test]
    fn errors_outside_the_view_go_on_its_first_block() {
        let forms = Forms::builtin().expect("forms");
        let form = forms.get("managed-deployment").expect("form");
        let errs = vec![
            FieldError {
                field: "gb_ram".into(),
                code: ErrorCode::OutOfRange,
                message: "must be at most 512".into(),
            },
            FieldError {
                field: "guest_v4_default_gw".into(),
                code: ErrorCode::ParameterSetIncomplete,
                message: "is required with the static IPv4 settings".into(),
            },
        ];
        let m = inline_errors(form, &meta(None), &errs);
        assert_eq!(m["gb_ram"], "must be at most 512");
        let first = &form.fields()[0].id;
        assert!(m[first].contains("is required with the static IPv4 settings"));
    }

    #[test]
    fn metadata_roundtrips_and_stays_small() {
        let m = meta(Some("static_ipv4"));
        let s = serde_json::to_string(&m).expect("json");
        assert!(s.len() < 200);
        assert_eq!(ViewMeta::parse(&s), Some(m));
        assert_eq!(ViewMeta::parse("not json"), None);
    }
}
