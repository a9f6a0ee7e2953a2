//! The form schemas (`schemas/*.yaml`) as JSON Schema (draft 2020-12), for
//! `GET /api/v1/schema/{id}`: the body a write takes is `{"values": <this>}`. Inventory
//! choices (hosts, networks, images) are live and checked by the engine, so they are plain
//! strings here; what the form says statically (types, ranges, lengths, patterns, enums,
//! required fields, exclusive groups) is in the schema.

use aetherv_core::schema::{FieldType, FormSchema};
use serde_json::{json, Map, Value};

/// A form as a JSON Schema.
pub fn json_schema(form: &FormSchema) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in form.fields() {
        let mut p = Map::new();
        let ty = match f.kind {
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            _ => "string",
        };
        p.insert("type".into(), json!(ty));
        p.insert("title".into(), json!(f.label));
        if !f.help.is_empty() {
            p.insert("description".into(), json!(f.help));
        }
        if let Some(min) = f.min {
            p.insert("minimum".into(), json!(min));
        }
        if let Some(max) = f.max {
            p.insert("maximum".into(), json!(max));
        }
        if let Some(n) = f.max_length {
            p.insert("maxLength".into(), json!(n));
        }
        if let Some(pattern) = &f.pattern {
            p.insert("pattern".into(), json!(format!("^(?:{pattern})$")));
        }
        match f.kind {
            FieldType::Enum if !f.choices.is_empty() => {
                p.insert("enum".into(), json!(f.choices));
            }
            FieldType::Ipv4 => {
                p.insert("format".into(), json!("ipv4"));
            }
            FieldType::Hostname => {
                p.insert("format".into(), json!("hostname"));
            }
            FieldType::Secret => {
                p.insert("writeOnly".into(), json!(true));
            }
            _ => {}
        }
        if f.is_secret() {
            p.insert("writeOnly".into(), json!(true));
        }
        if let Some(d) = &f.default {
            p.insert("default".into(), d.clone());
        }
        p.insert("x-aetherv-type".into(), json!(f.kind.as_str()));
        if let Some(set) = &f.parameter_set {
            p.insert("x-aetherv-parameter-set".into(), json!(set.id));
        }
        if f.required && f.default.is_none() && f.parameter_set.is_none() {
            required.push(f.id.clone());
        }
        properties.insert(f.id.clone(), Value::Object(p));
    }
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:aetherv:form:{}:v{}", form.id(), form.version()),
        "title": form.title(),
        "description": form.description(),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    let groups: Vec<Value> = form
        .one_of()
        .iter()
        .map(|g| {
            let one: Vec<Value> = g.members.iter().map(|m| json!({"required": [m]})).collect();
            if g.required {
                json!({"oneOf": one})
            } else {
                json!({"not": {"anyOf": pairs(&g.members)}})
            }
        })
        .collect();
    if !groups.is_empty() {
        schema["allOf"] = Value::Array(groups);
    }
    schema
}

/// Every two members of an exclusive group given together.
fn pairs(members: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, a) in members.iter().enumerate() {
        for b in members.iter().skip(i + 1) {
            out.push(json!({"required": [a, b]}));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::schema::Forms;

    #[test]
    fn every_form_is_a_json_schema_that_takes_its_example_and_refuses_a_wrong_type() {
        let forms = Forms::builtin().expect("forms");
        for form in forms.iter() {
            let schema = json_schema(form);
            let v = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
            assert!(!v.is_valid(&json!({"no_such_field": 1})), "{}", form.id());
        }
        let disk = json_schema(forms.get("disk").expect("disk"));
        let v = jsonschema::validator_for(&disk).expect("schema");
        assert!(v.is_valid(
            &json!({"vm_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "disk_size_gb": 100})
        ));
        assert!(!v.is_valid(&json!({"vm_id": "not a guid"})));
        assert!(!v.is_valid(
            &json!({"vm_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "disk_size_gb": "big"})
        ));
    }
}
