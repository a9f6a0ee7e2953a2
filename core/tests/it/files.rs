//! Request files in `tests/data/requests/`, checked the way the CLI is checked from outside:
//! `ok`, and the set of fields named in the errors.
//!
//! YAML files state `# form: ID` (default `managed-deployment`) and `# expect: ok` or
//! `# expect: field …` in leading comments; JSON files carry `_form` / `_expect` keys, which
//! are removed before validation.

use super::form;
use aetherv_core::validate::{validate, ValidationContext};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn expectations(text: &str, request: &mut Value) -> (String, BTreeSet<String>) {
    let mut form_id = "managed-deployment".to_owned();
    let mut expect = String::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(f) = line.strip_prefix("# form:") {
            form_id = f.trim().to_owned();
        } else if let Some(e) = line.strip_prefix("# expect:") {
            expect = e.trim().to_owned();
        }
    }
    if let Some(obj) = request.as_object_mut() {
        if let Some(Value::String(f)) = obj.remove("_form") {
            form_id = f;
        }
        if let Some(Value::String(e)) = obj.remove("_expect") {
            expect = e;
        }
    }
    assert!(!expect.is_empty(), "no expectation");
    let fields = if expect == "ok" {
        BTreeSet::new()
    } else {
        expect.split_whitespace().map(str::to_owned).collect()
    };
    (form_id, fields)
}

#[test]
fn request_files_give_the_expected_fields() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/requests");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 10, "request files are missing");
    let mut failures = Vec::new();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut request: Value = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).unwrap()
        } else {
            serde_saphyr::from_str(&text).unwrap()
        };
        let (form_id, want) = expectations(&text, &mut request);
        let got: BTreeSet<String> =
            match validate(form(&form_id), &request, &ValidationContext::default()) {
                Ok(_) => BTreeSet::new(),
                Err(errors) => errors.into_iter().map(|e| e.field).collect(),
            };
        if got != want {
            failures.push(format!(
                "{}: expected {want:?}, got {got:?}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
