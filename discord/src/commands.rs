//! The `/aether` application command: its definition (subcommands for the grammar, the deploy
//! forms' fields as options) and its registration at start by bulk overwrite, per guild or
//! global. Secret fields are never options: a secret is never typed into Discord.

use crate::form::Layout;
use crate::interaction::COMMAND;
use crate::rest::{Rest, RestError};
use aetherv_core::schema::{FieldType, Forms};
use serde_json::{json, Value};

/// Most options Discord takes per command or subcommand.
pub const MAX_OPTIONS: usize = 25;

fn string(name: &str, description: &str, required: bool, autocomplete: bool) -> Value {
    json!({ "type": 3, "name": name, "description": description, "required": required, "autocomplete": autocomplete })
}

fn integer(name: &str, description: &str, required: bool) -> Value {
    json!({ "type": 4, "name": name, "description": description, "required": required, "min_value": 1 })
}

fn flag(name: &str, description: &str) -> Value {
    json!({ "type": 5, "name": name, "description": description })
}

fn sub(name: &str, description: &str, options: Vec<Value>) -> Value {
    let mut v = json!({ "type": 1, "name": name, "description": description });
    v["options"] = Value::Array(options);
    v
}

fn group(name: &str, description: &str, subs: Vec<Value>) -> Value {
    let mut v = json!({ "type": 2, "name": name, "description": description });
    v["options"] = Value::Array(subs);
    v
}

fn cut(s: &str, max: usize) -> String {
    let s = s.trim();
    let s = if s.is_empty() { "value" } else { s };
    s.chars().take(max).collect()
}

/// The options of a deploy form: its choice fields ([`Layout::options`]; the rest is asked
/// in modal pages), required ones first, at most 25.
fn form_options(forms: &Forms, id: &str) -> Vec<Value> {
    let Some(form) = forms.get(id) else {
        return Vec::new();
    };
    let layout = Layout::of(form);
    let mut opts: Vec<(bool, Value)> = form
        .fields()
        .iter()
        .filter(|f| layout.options.contains(&f.id) && f.id.len() <= 32)
        .map(|f| {
            let required = f.required && f.default.is_none();
            let kind = match f.kind {
                FieldType::Integer => 4,
                FieldType::Boolean => 5,
                _ => 3,
            };
            let mut o = json!({
                "type": kind,
                "name": f.id.to_lowercase(),
                "description": cut(&f.label, 100),
                "required": required,
            });
            if f.kind.is_inventory() {
                o["autocomplete"] = json!(true);
            } else if f.kind == FieldType::Enum && !f.choices.is_empty() && f.choices.len() <= 25 {
                o["choices"] = f
                    .choices
                    .iter()
                    .map(|c| json!({ "name": cut(c, 100), "value": c }))
                    .collect();
            }
            (required, o)
        })
        .collect();
    // Discord wants required options before optional ones.
    opts.sort_by_key(|(required, _)| !*required);
    opts.into_iter().map(|(_, o)| o).take(MAX_OPTIONS).collect()
}

/// The `/aether` command.
pub fn definition(forms: &Forms) -> Value {
    let name = || string("name", "VM name", true, false);
    let host = || string("host", "Hyper-V host", false, true);
    json!({
        "name": COMMAND,
        "type": 1,
        "description": "Aether-V: Hyper-V VMs from chat",
        "options": [
            group("deploy", "Deploy a VM", vec![
                sub("vm", "A VM from the vm form", form_options(forms, "vm")),
                sub("managed", "A managed deployment", form_options(forms, "managed-deployment")),
            ]),
            group("vm", "VMs", vec![
                sub("list", "List VMs", vec![host()]),
                sub("show", "Show one VM: disks, adapters, addresses", vec![name()]),
                sub("update", "Change a VM's memory or processors", vec![name(), integer("gb_ram", "Startup memory in GB", false), integer("cpu_cores", "Virtual processors", false)]),
                sub("start", "Start a VM", vec![name()]),
                sub("shutdown", "Shut a VM down (guest)", vec![name()]),
                sub("stop", "Turn a VM off", vec![name()]),
                sub("reset", "Reset a VM", vec![name()]),
                sub("delete", "Delete a VM", vec![name(), flag("delete_disks", "Delete its disks too"), flag("force", "Turn it off first")]),
            ]),
            group("disk", "Disks", vec![
                sub("add", "Add a disk", vec![string("vm", "VM name", true, false), json!({ "type": 4, "name": "size_gb", "description": "Size in GB", "required": true })]),
                sub("resize", "Expand a disk", vec![string("vm", "VM name", true, false), string("disk", "Disk id, path or file name", true, false), integer("size_gb", "New size in GB", true)]),
                sub("remove", "Remove a disk", vec![string("vm", "VM name", true, false), string("disk", "Disk id, path or file name", true, false), flag("boot_disk", "Allow removing the boot or only disk")]),
            ]),
            group("nic", "Network adapters", vec![
                sub("add", "Add a network adapter", vec![string("vm", "VM name", true, false), string("network", "Network", true, true)]),
                sub("remove", "Remove a network adapter", vec![string("vm", "VM name", true, false), string("nic", "Adapter name or id (needed when the VM has several)", false, false)]),
            ]),
            sub("jobs", "List jobs, newest first", vec![flag("mine", "Only mine"), host(), integer("limit", "At most this many (default 10)", false), flag("all", "Every job")]),
            sub("job", "Show one job", vec![string("id", "Job id", true, false)]),
            sub("cancel", "Cancel a job", vec![string("id", "Job id", true, false)]),
            sub("retry", "Run a failed or cancelled job again", vec![string("id", "Job id", true, false)]),
            sub("hosts", "List hosts", vec![]),
            sub("help", "What you may run", vec![]),
        ]
    })
}

/// Registers `/aether` by bulk overwrite: in `guild` (immediate), else globally (the
/// application is `rest`'s).
pub async fn register(rest: &Rest, guild: Option<&str>, forms: &Forms) -> Result<(), RestError> {
    rest.put_commands(guild, json!([definition(forms)])).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_fits_discords_limits_and_carries_no_secrets() {
        let forms = Forms::builtin().expect("forms");
        let d = definition(&forms);
        let top = d["options"].as_array().cloned().unwrap_or_default();
        assert!(top.len() <= MAX_OPTIONS);
        let deploy = &top[0]["options"];
        for s in deploy.as_array().into_iter().flatten() {
            let opts = s["options"].as_array().cloned().unwrap_or_default();
            assert!(!opts.is_empty() && opts.len() <= MAX_OPTIONS, "{s}");
            // Required before optional.
            let req: Vec<bool> = opts.iter().map(|o| o["required"] == true).collect();
            assert!(req.windows(2).all(|w| w[0] || !w[1]), "{req:?}");
            for o in &opts {
                let n = o["name"].as_str().unwrap_or_default();
                assert!(!n.is_empty() && n.len() <= 32 && n == n.to_lowercase());
                let desc = o["description"].as_str().unwrap_or_default();
                assert!(!desc.is_empty() && desc.chars().count() <= 100);
            }
            let secret = forms
                .get(if s["name"] == "vm" {
                    "vm"
                } else {
                    "managed-deployment"
                })
                .map(|f| {
                    f.fields()
                        .iter()
                        .filter(|f| f.kind == FieldType::Secret)
                        .map(|f| f.id.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            assert!(opts
                .iter()
                .all(|o| !secret.iter().any(|s| o["name"] == s.as_str())));
        }
    }
}
