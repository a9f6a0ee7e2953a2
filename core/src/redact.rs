//! Secret redaction for anything shown to people or written to logs and events.
//!
//! Which fields are secret is decided by the form schemas (`type: secret` or `secret: true`);
//! [`crate::schema::Forms::secret_fields`] collects them. This module only replaces values: it
//! walks any JSON value recursively (objects inside arrays inside objects …) and puts
//! [`REDACTED`] in place of every value stored under a secret key. It never fails, so a caller can
//! never fall back to showing the original.

use serde_json::Value;
use std::collections::HashSet;

/// What a secret value is replaced with (the upstream marker, six bullets).
pub const REDACTED: &str = "••••••";

/// Replaces, in place, every non-null value stored under a key in `secret_keys`, at any depth.
/// Values under other keys are searched recursively; a secret key's value is replaced whole
/// (even when it is an object or array), so nothing inside it survives.
pub fn redact_value(value: &mut Value, secret_keys: &HashSet<String>) {
    redact_with(value, &|key| secret_keys.contains(key));
}

/// Like [`redact_value`], with the secret test given as a predicate on the key.
pub fn redact_with(value: &mut Value, is_secret: &dyn Fn(&str) -> bool) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret(key) {
                    if !v.is_null() {
                        *v = Value::String(REDACTED.to_owned());
                    }
                } else {
                    redact_with(v, is_secret);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_with(v, is_secret)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// Returns a redacted copy of `value`, leaving the original untouched.
pub fn redacted(value: &Value, secret_keys: &HashSet<String>) -> Value {
    let mut copy = value.clone();
    redact_value(&mut copy, secret_keys);
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys() -> HashSet<String> {
        ["guest_la_pw", "guest_domain_join_pw", "cnf_ansible_ssh_key"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn stored_definition_is_redacted_in_the_view_and_unchanged_in_the_store() {
        // reference §10 case 9
        let stored =
            json!({"definition": {"fields": {"guest_la_pw": "super-secret", "vm_name": "web-01"}}});
        let view = redacted(&stored, &keys());
        assert_eq!(view["definition"]["fields"]["guest_la_pw"], REDACTED);
        assert_eq!(view["definition"]["fields"]["vm_name"], "web-01");
        assert_eq!(
            stored["definition"]["fields"]["guest_la_pw"],
            "super-secret"
        );
    }

    #[test]
    fn redacts_inside_arrays_and_whole_nested_secret_values() {
        let mut v = json!([
            {"cnf_ansible_ssh_key": {"nested": "ssh-ed25519 AAAA"}},
            [{"guest_domain_join_pw": 12345}],
            {"guest_la_pw": null, "other": ["guest_la_pw"]},
        ]);
        redact_value(&mut v, &keys());
        assert_eq!(
            v,
            json!([
                {"cnf_ansible_ssh_key": REDACTED},
                [{"guest_domain_join_pw": REDACTED}],
                {"guest_la_pw": null, "other": ["guest_la_pw"]},
            ])
        );
    }

    #[test]
    fn scalars_and_empty_key_sets_are_left_alone() {
        let mut v = json!("guest_la_pw");
        redact_value(&mut v, &keys());
        assert_eq!(v, json!("guest_la_pw"));
        let mut o = json!({"guest_la_pw": "x"});
        redact_value(&mut o, &HashSet::new());
        assert_eq!(o, json!({"guest_la_pw": "x"}));
    }
}
