//! Property tests: the validator never panics, and its answers keep their invariants, on
//! arbitrary JSON and on arbitrary strings as field values.

use super::{form, forms};
use aetherv_core::redact::{redact_value, REDACTED};
use aetherv_core::validate::{validate, ErrorCode, ValidationContext};
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::collections::HashSet;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object whose keys are mostly real field ids (of any form), with arbitrary values.
fn arb_request(values: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    let ids: Vec<String> = forms()
        .iter()
        .flat_map(|f| f.fields().iter().map(|f| f.id.clone()))
        .chain(["bogus".to_owned()])
        .collect();
    prop::collection::btree_map(prop::sample::select(ids), values, 0..20)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// Checks the invariants of one answer.
fn check_answer(form_id: &str, input: &Value) -> Result<(), TestCaseError> {
    let f = form(form_id);
    match validate(f, input, &ValidationContext::default()) {
        Ok(v) => {
            for (k, value) in v.values() {
                let field = f.field(k);
                prop_assert!(field.is_some(), "normalised value for unknown field {k}");
                prop_assert!(!value.is_null());
                if let Value::String(s) = value {
                    prop_assert_eq!(s.trim(), s.as_str(), "untrimmed {}", k);
                    prop_assert!(!s.is_empty());
                }
            }
            for (k, value) in v.redacted() {
                if v.secret_fields().contains(&k) {
                    prop_assert_eq!(value, Value::String(REDACTED.into()));
                }
            }
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            let mut seen = HashSet::new();
            for e in &errors {
                prop_assert!(
                    seen.insert(e.field.clone()),
                    "field {} named twice",
                    e.field
                );
                prop_assert!(!e.message.is_empty());
                let known = f.field(&e.field).is_some();
                if e.code == ErrorCode::UnknownField {
                    prop_assert!(!known);
                } else if input.is_object() {
                    prop_assert!(known, "error on {} which is not a form field", e.field);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_arbitrary_json(input in arb_json()) {
        for id in forms().ids() {
            check_answer(id, &input)?;
        }
    }

    #[test]
    fn never_panics_on_arbitrary_field_values(input in arb_request(arb_json().boxed())) {
        for id in forms().ids() {
            check_answer(id, &input)?;
        }
    }

    #[test]
    fn never_panics_on_arbitrary_strings(input in arb_request(any::<String>().prop_map(Value::String).boxed())) {
        for id in forms().ids() {
            check_answer(id, &input)?;
        }
    }

    #[test]
    fn redaction_never_leaves_a_secret(mut value in arb_json(), secret in ".{1,8}") {
        let mut keys = HashSet::new();
        keys.insert("k".to_owned());
        let mut wrapped = serde_json::json!({"a": [{"k": &secret}], "k": {"x": &secret}, "v": value.clone()});
        redact_value(&mut wrapped, &keys);
        prop_assert_eq!(&wrapped["k"], &Value::String(REDACTED.into()));
        prop_assert_eq!(&wrapped["a"][0]["k"], &Value::String(REDACTED.into()));
        redact_value(&mut value, &keys);
        prop_assert!(!contains_unredacted(&value, "k"));
    }
}

fn contains_unredacted(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (k == key && !v.is_null() && v != &Value::String(REDACTED.into()))
                || contains_unredacted(v, key)
        }),
        Value::Array(a) => a.iter().any(|v| contains_unredacted(v, key)),
        _ => false,
    }
}
