//! `aetherv validate FILE [--form F] [--inventory FILE]`: checks one request against a form.
//!
//! Prints exactly one JSON object on stdout: `{"ok":true,"request":{…}}` (normalised, secrets
//! shown as `••••••`, exit 0) or `{"ok":false,"errors":[{"field","code","message"}…]}` (exit 1).
//! Input that cannot be read or parsed (or is not a mapping) exits 2 with one line on stderr.

use aetherv_core::schema::Forms;
use aetherv_core::validate::{validate, FieldError, InventoryFile, ValidationContext};
use serde_json::{json, Value};
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Request file (JSON or YAML), or `-` for stdin.
    pub file: String,
    /// The form to validate against: vm, disk, nic, guest or managed-deployment.
    #[arg(long, default_value = "managed-deployment")]
    pub form: String,
    /// Optional inventory (YAML or JSON): `images: [{name, os_family}]` for the OS family
    /// lookup, and optional `hosts`, `clusters`, `networks`, `storage_classes` name lists.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let Args {
        file,
        form,
        inventory,
    } = args;
    match check(&file, &form, inventory.as_deref()) {
        Ok((ok, output)) => {
            println!("{output}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("aetherv validate: {message}");
            ExitCode::from(2)
        }
    }
}

/// Validates the request in `file` against `form_id`: `Ok((ok, json))`, or
/// `Err(one-line reason)` for input that cannot be used at all.
fn check(
    file: &str,
    form_id: &str,
    inventory: Option<&std::path::Path>,
) -> Result<(bool, String), String> {
    let forms = Forms::builtin().map_err(|e| format!("built-in form schemas are broken: {e}"))?;
    let Some(form) = forms.get(form_id) else {
        return Err(format!(
            "unknown form {:?} (known: {})",
            form_id,
            forms.ids().join(", ")
        ));
    };
    let ctx = match inventory {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read inventory {}: {e}", path.display()))?;
            let inv: InventoryFile = parse_document(&text)
                .map_err(|e| format!("cannot parse inventory {}: {e}", path.display()))?;
            inv.into_context()
        }
        None => ValidationContext::default(),
    };
    let (name, text) = read_input(file)?;
    let request: Value = parse_document(&text).map_err(|e| format!("cannot parse {name}: {e}"))?;
    if !request.is_object() {
        return Err(format!(
            "{name} must contain a mapping of field names to values, not {}",
            kind_of(&request)
        ));
    }
    Ok(match validate(form, &request, &ctx) {
        Ok(valid) => (
            true,
            json!({"ok": true, "request": valid.redacted()}).to_string(),
        ),
        Err(errors) => (false, errors_output(&errors)),
    })
}

/// `{"ok":false,"errors":[…]}` with each error's keys in the order `field`, `code`, `message`.
fn errors_output(errors: &[FieldError]) -> String {
    #[derive(serde::Serialize)]
    struct Output<'a> {
        ok: bool,
        errors: &'a [FieldError],
    }
    serde_json::to_string(&Output { ok: false, errors })
        .unwrap_or_else(|_| r#"{"ok":false,"errors":[]}"#.to_owned())
}

fn read_input(file: &str) -> Result<(String, String), String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(("stdin".to_owned(), text))
    } else {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        Ok((file.to_owned(), text))
    }
}

/// Parses JSON, or else YAML (a superset for our purposes). Text that looks like JSON reports
/// the JSON error, anything else the YAML one.
fn parse_document<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.trim().is_empty() {
        return Err("the input is empty".to_owned());
    }
    match serde_json::from_str::<T>(text) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let looks_json = text.trim_start().starts_with(['{', '[']);
            match serde_saphyr::from_str::<T>(text) {
                Ok(v) => Ok(v),
                Err(_) if looks_json => Err(format!("invalid JSON: {json_err}")),
                Err(yaml_err) => Err(format!(
                    "invalid YAML: {}",
                    yaml_err
                        .to_string()
                        .lines()
                        .next()
                        .unwrap_or("unknown error")
                )),
            }
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn check_file(
        f: &tempfile::NamedTempFile,
        form: &str,
        inventory: Option<&tempfile::NamedTempFile>,
    ) -> Result<(bool, String), String> {
        check(
            &f.path().display().to_string(),
            form,
            inventory.map(|i| i.path()),
        )
    }

    fn parse(out: &str) -> Value {
        serde_json::from_str(out).expect("stdout is one json object")
    }

    const OK_YAML: &str = "vm_name: web-01\ntarget_host: hv01\nnetwork: lan\n\
                           guest_la_uid: admin\nguest_la_pw: hunter2\ngb_ram: '8'\n";

    #[test]
    fn valid_yaml_prints_the_normalized_redacted_request() {
        let f = file(OK_YAML);
        let (ok, out) = check_file(&f, "managed-deployment", None).expect("usable input");
        assert!(ok);
        let v = parse(&out);
        assert_eq!(v["ok"], true);
        assert_eq!(v["request"]["gb_ram"], 8);
        assert_eq!(v["request"]["guest_la_pw"], "••••••");
        assert_eq!(v["request"]["os_family"], "windows");
    }

    #[test]
    fn invalid_json_prints_errors_in_field_code_message_order() {
        let f = file(r#"{"vm_name": "", "target_host": "a", "target_cluster": "b"}"#);
        let (ok, out) = check_file(&f, "vm", None).expect("usable input");
        assert!(!ok);
        assert!(out.starts_with(r#"{"ok":false,"errors":[{"field":"vm_name","code":"required","#));
        let fields: Vec<String> = parse(&out)["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(fields, ["vm_name", "target_host", "target_cluster"]);
    }

    #[test]
    fn inventory_file_feeds_the_image_catalogue() {
        let inv = file("images:\n  - {name: golden, os_family: linux}\n");
        let f = file(&format!(
            "{OK_YAML}image_name: golden\ncnf_ansible_ssh_user: a\ncnf_ansible_ssh_key: k\n"
        ));
        let (ok, out) = check_file(&f, "managed-deployment", Some(&inv)).expect("usable input");
        assert!(ok, "{out}");
        assert_eq!(parse(&out)["request"]["os_family"], "linux");
        let (ok, _) = check_file(&f, "managed-deployment", None).expect("usable input");
        assert!(!ok, "without the catalogue `golden` is a Windows image");
    }

    #[test]
    fn unusable_input_is_an_error_line() {
        for (text, want) in [
            ("", "empty"),
            ("{\"a\": ", "invalid JSON"),
            ("a: [", "invalid YAML"),
            ("- 1\n- 2\n", "not a list"),
        ] {
            let f = file(text);
            let err = check_file(&f, "vm", None).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let f = file(OK_YAML);
        let err = check_file(&f, "vmm", None).expect_err("unknown form");
        assert!(
            err.contains("known: vm, disk, nic, guest, managed-deployment"),
            "{err}"
        );
        let missing = check("/nonexistent/request.yaml", "vm", None).expect_err("missing");
        assert!(missing.starts_with("cannot read"), "{missing}");
        let bad_inv = file("images: 3\n");
        let err = check_file(&f, "vm", Some(&bad_inv)).expect_err("inventory");
        assert!(err.starts_with("cannot parse inventory"), "{err}");
    }
}
