//! Markdown reference for forms, generated from the schemas (the source of `docs/forms.md`).

use super::{Field, FieldType, FormSchema, Forms, SetRole};
use std::fmt::Write as _;

/// The whole forms reference: a short preamble and one section per form.
pub fn render_document(forms: &Forms) -> String {
    let mut out = String::from(
        "# Request forms\n\n\
         Generated from `schemas/*.yaml` by `aetherv_core::schema::render_document`; do not edit \
         by hand (a test fails when this file is stale: regenerate with \
         `AETHERV_BLESS=1 cargo test -p aetherv-core --test it`).\n\n\
         ## Rules common to every form\n\n\
         - A field is *given* when it is present, not null and not blank; whitespace-only text \
         counts as missing. Text is trimmed. Integers may be numbers or decimal text. Booleans \
         accept true/false, yes/no, on/off and 1/0. Enum values match case-insensitively.\n\
         - Unknown fields are rejected (`unknown_field`).\n\
         - Parameter sets are all-or-none: once one required member is given, every missing \
         required member is reported (`parameter_set_incomplete`, one error per member). An \
         optional member given without the set's required members is reported on that optional \
         field, with the same code.\n\
         - In an exclusive group, two or more given members are each reported (`exclusive`); \
         none given in a required group reports `required` on every member.\n\
         - The OS family is the `os_family` field when given, else the image's entry in the \
         image catalogue, else inferred from the image name by word prefix (`Ubuntu…`, \
         `RHEL…`, `AlmaLinux…`; never a substring, so `Research` is not Linux), else Windows. \
         A field marked for another OS family is an error when given (`not_applicable`).\n\
         - Every error is `{field, code, message}`; all errors are reported at once, at most one \
         per field. Codes: `required`, `out_of_range`, `too_long`, `pattern`, `invalid_ipv4`, \
         `invalid_hostname`, `parameter_set_incomplete`, `not_applicable`, `unknown_field`, \
         `exclusive`, `invalid_type`, `unknown_choice` (a value outside an enum's choices, or \
         outside the inventory list when the caller supplies one). The bot's gate adds, against \
         the target host's inventory: `host_unreachable`, `name_in_use`, `not_found`, \
         `disk_shrink`, `insufficient_memory`, and `unknown_choice` for an image, network or \
         storage class the host does not have.\n\
         - Secret fields are shown as `••••••` everywhere.\n",
    );
    for form in forms.iter() {
        out.push('\n');
        out.push_str(&render_markdown(form));
    }
    out
}

/// One form's section: description, field table, parameter sets and exclusive groups.
pub fn render_markdown(form: &FormSchema) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## {} (`{}`, version {})\n",
        form.title, form.id, form.version
    );
    if !form.description.is_empty() {
        let _ = writeln!(out, "{}\n", form.description.trim());
    }
    if !form.includes.is_empty() {
        let list: Vec<String> = form.includes.iter().map(|i| format!("`{i}`")).collect();
        let _ = writeln!(out, "Composed of: {}.\n", list.join(", "));
    }
    out.push_str("| Field | Type | Required | Default | Limits | OS | Parameter set | Help |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for f in &form.fields {
        let default = form
            .defaults
            .get(&f.id)
            .map(|d| {
                format!(
                    "`{}`",
                    d.as_str().map_or_else(|| d.to_string(), str::to_owned)
                )
            })
            .unwrap_or_default();
        let os = f
            .os_family
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let set = f
            .parameter_set
            .as_ref()
            .map_or_else(String::new, |m| match m.role {
                SetRole::Required => format!("`{}`", m.id),
                SetRole::Optional => format!("`{}` (optional)", m.id),
            });
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            f.id,
            type_cell(f),
            if f.required { "yes" } else { "" },
            default,
            limits(f),
            os,
            set,
            cell(&format!("**{}.** {}", f.label, f.help.trim())),
        );
    }
    if !form.parameter_sets.is_empty() {
        out.push_str("\nParameter sets (all required members together, or none):\n\n");
        for s in &form.parameter_sets {
            let members: Vec<String> = form
                .set_members(&s.id)
                .map(|f| format!("`{}`", f.id))
                .collect();
            let _ = writeln!(
                out,
                "- `{}` ({}): {}. {}",
                s.id,
                s.label,
                members.join(", "),
                s.help.trim()
            );
        }
    }
    if !form.one_of.is_empty() {
        out.push_str("\nExclusive groups:\n\n");
        for g in &form.one_of {
            let members: Vec<String> = g.members.iter().map(|m| format!("`{m}`")).collect();
            let rule = if g.required {
                "exactly one"
            } else {
                "at most one"
            };
            let _ = writeln!(
                out,
                "- {} (`{}`): {rule} of {}.",
                g.label,
                g.id,
                members.join(", ")
            );
        }
    }
    if let Some(h) = &form.guest_host_name {
        let _ = writeln!(
            out,
            "\n`{h}` is also the guest host name: at most 15 characters for Windows guests, \
             64 for Linux guests."
        );
    }
    out
}

fn type_cell(f: &Field) -> String {
    let mut s = f.kind.as_str().to_owned();
    if f.kind == FieldType::Enum {
        let _ = write!(s, ": {}", f.choices.join(" \\| "));
    }
    if f.is_secret() && f.kind != FieldType::Secret {
        s.push_str(" (secret)");
    }
    s
}

fn limits(f: &Field) -> String {
    let mut parts = Vec::new();
    match (f.min, f.max) {
        (Some(lo), Some(hi)) => parts.push(format!("{lo}–{hi}")),
        (Some(lo), None) => parts.push(format!("≥ {lo}")),
        (None, Some(hi)) => parts.push(format!("≤ {hi}")),
        (None, None) => {}
    }
    if let Some(n) = f.max_length {
        parts.push(format!("≤ {n} chars"));
    }
    if f.pattern.is_some() {
        parts.push(
            f.pattern_help
                .clone()
                .unwrap_or_else(|| "pattern".to_owned()),
        );
    }
    cell(&parts.join("; "))
}

/// Makes text safe inside a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
