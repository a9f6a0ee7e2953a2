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
    match check(&args) {
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

/// Validates the request named by `args`: `Ok((ok, json))`, or `Err(one-line reason)` for
/// input that cannot be used at all.
fn check(args: &Args) -> Result<(bool, String), String> {
    let forms = Forms::builtin().map_err(|e| format!("built-in form schemas are broken: {e}"))?;
    let Some(form) = forms.get(&args.form) else {
        return Err(format!(
            "unknown form {:?} (known: {})",
            args.form,
            forms.ids().join(", ")
        ));
    };
    let ctx = match &args.inventory {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read inventory {}: {e}", path.display()))?;
            let inv: InventoryFile = parse_document(&text)
                .map_err(|e| format!("cannot parse inventory {}: {e}", path.display()))?;
            inv.into_context()
        }
        None => ValidationContext::default(),
    };
    let (name, text) = read_input(&args.file)?;
    let request: Value =
        parse_document(&text).map_err(|e| format!("cannot parse {name}: {e}"))?;
    if !request.is_object() {
        return Err(format!(
            "{name} must contain a mapping of field names to values, not {}",
            kind_of(&request)
        ));
    }
    Ok(match validate(form, &request, &ctx) {
        Ok(valid) => (true, json!({"ok": true, "request": valid.redacted()}).to_string()),
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
        let text =
            std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
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
                    yaml_err.to_string().lines().next().unwrap_or("unknown error")
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
