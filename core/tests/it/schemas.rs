//! The schemas as data: the built-in forms, composition, typed load errors, and the docs.

use super::{form, forms};
use aetherv_core::schema::{
    render_document, FieldType, FormSchema, Forms, SchemaError, SetRole, BUILTIN_TEXTS,
};
use aetherv_core::validate::{validate, ValidationContext};
use serde_json::json;

/// The "Current field" column of reference §2.1 (plus `vlan_id`, `os_family` and `rollback`).
const MANAGED_FIELDS: &[&str] = &[
    "target_host",
    "target_cluster",
    "vm_name",
    "gb_ram",
    "cpu_cores",
    "storage_class",
    "vm_clustered",
    "image_name",
    "disk_size_gb",
    "disk_type",
    "controller_type",
    "network",
    "adapter_name",
    "vlan_id",
    "guest_la_uid",
    "guest_la_pw",
    "guest_domain_join_target",
    "guest_domain_join_uid",
    "guest_domain_join_pw",
    "guest_domain_join_ou",
    "cnf_ansible_ssh_user",
    "cnf_ansible_ssh_key",
    "guest_v4_ip_addr",
    "guest_v4_cidr_prefix",
    "guest_v4_default_gw",
    "guest_v4_dns1",
    "guest_v4_dns2",
    "guest_net_dns_suffix",
    "os_family",
    "rollback",
];

#[test]
fn builtin_forms_load_with_ids_and_versions() {
    assert_eq!(
        forms().ids(),
        vec!["vm", "disk", "nic", "guest", "managed-deployment"]
    );
    for f in forms().iter() {
        assert_eq!(f.version(), 1, "{}", f.id());
        assert!(!f.title().is_empty());
        for field in f.fields() {
            assert!(
                !field.label.is_empty() && !field.help.is_empty(),
                "{}.{}",
                f.id(),
                field.id
            );
        }
    }
}

#[test]
fn managed_deployment_composes_the_components_without_vm_id() {
    let md = form("managed-deployment");
    assert_eq!(md.includes(), ["vm", "disk", "nic", "guest"]);
    let mut ids: Vec<&str> = md.fields().iter().map(|f| f.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = MANAGED_FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(md.field("vm_id").is_none());
    assert!(form("disk").field("vm_id").is_some() && form("nic").field("vm_id").is_some());
    let sets: Vec<&str> = md.parameter_sets().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(sets, ["domain_join", "ansible", "static_ipv4"]);
    assert_eq!(md.one_of().len(), 1);
    assert_eq!(md.one_of()[0].members, ["target_host", "target_cluster"]);
    assert_eq!(md.guest_host_name(), Some("vm_name"));
}

#[test]
fn parameter_sets_have_the_reference_members() {
    let md = form("managed-deployment");
    let members = |set: &str, role: SetRole| -> Vec<String> {
        md.set_members(set)
            .filter(|f| f.parameter_set.as_ref().is_some_and(|m| m.role == role))
            .map(|f| f.id.clone())
            .collect()
    };
    assert_eq!(
        members("domain_join", SetRole::Required),
        [
            "guest_domain_join_target",
            "guest_domain_join_uid",
            "guest_domain_join_pw",
            "guest_domain_join_ou"
        ]
    );
    assert_eq!(
        members("ansible", SetRole::Required),
        ["cnf_ansible_ssh_user", "cnf_ansible_ssh_key"]
    );
    assert_eq!(
        members("static_ipv4", SetRole::Required),
        [
            "guest_v4_ip_addr",
            "guest_v4_cidr_prefix",
            "guest_v4_default_gw",
            "guest_v4_dns1"
        ]
    );
    assert_eq!(
        members("static_ipv4", SetRole::Optional),
        ["guest_v4_dns2", "guest_net_dns_suffix"]
    );
}

#[test]
fn secret_fields_are_the_reference_three() {
    let mut secrets: Vec<String> = forms().secret_fields().into_iter().collect();
    secrets.sort();
    assert_eq!(
        secrets,
        ["cnf_ansible_ssh_key", "guest_domain_join_pw", "guest_la_pw"]
    );
    let key = form("guest").field("cnf_ansible_ssh_key").unwrap();
    assert_eq!(key.kind, FieldType::Multiline);
    assert!(
        key.secret,
        "the ssh key is marked secret: true in the schema"
    );
}

#[test]
fn every_form_bearing_job_kind_has_a_builtin_form() {
    use aetherv_core::contract::job::JobKind;
    use aetherv_core::schema::form_id_for;
    let mapped: Vec<&str> = JobKind::ALL
        .iter()
        .filter_map(|k| form_id_for(*k))
        .collect();
    assert_eq!(mapped.len(), 5);
    for id in mapped {
        assert!(forms().get(id).is_some(), "{id}");
    }
    assert_eq!(
        form_id_for(JobKind::DeploymentManaged),
        Some("managed-deployment")
    );
    assert_eq!(form_id_for(JobKind::Noop), None);
}

#[test]
fn reference_defaults() {
    let md = form("managed-deployment");
    for (id, value) in [
        ("gb_ram", json!(4)),
        ("cpu_cores", json!(2)),
        ("disk_size_gb", json!(100)),
        ("controller_type", json!("SCSI")),
        ("disk_type", json!("Dynamic")),
        ("vm_clustered", json!(false)),
    ] {
        assert_eq!(md.default_of(id), Some(&value), "{id}");
    }
}

fn with_extra_field(extra: &str) -> Vec<String> {
    BUILTIN_TEXTS
        .iter()
        .map(|(name, text)| {
            if *name == "nic.yaml" {
                format!("{text}{extra}")
            } else {
                (*text).to_owned()
            }
        })
        .collect()
}

#[test]
fn a_new_optional_field_is_a_schema_edit_only() {
    let texts = with_extra_field(
        "  - id: mac_address\n    label: MAC address\n    help: Static MAC.\n    type: string\n    pattern: \"[0-9A-F]{12}\"\n    pattern_help: twelve hex digits\n",
    );
    let forms = Forms::from_texts(texts.iter().map(String::as_str)).unwrap();
    let md = forms.get("managed-deployment").unwrap();
    let base = json!({"vm_name": "w", "target_host": "h", "network": "n", "guest_la_uid": "a", "guest_la_pw": "p"});
    let mut ok = base.clone();
    ok["mac_address"] = json!("00155D0A0B0C");
    assert!(validate(md, &ok, &ValidationContext::default()).is_ok());
    let mut bad = base;
    bad["mac_address"] = json!("zz");
    let e = validate(md, &bad, &ValidationContext::default()).unwrap_err();
    assert_eq!(e[0].field, "mac_address");
    assert_eq!(e[0].message, "MAC address must be twelve hex digits");
}

fn load(texts: &[&str]) -> Result<Forms, SchemaError> {
    Forms::from_texts(texts.iter().copied())
}

const F1: &str = "id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: string}\n";

#[test]
fn schema_errors_are_typed() {
    type IsExpected = fn(&SchemaError) -> bool;
    let cases: Vec<(&str, Vec<&str>, IsExpected)> = vec![
        ("unknown key", vec!["id: a\nversion: 1\ntitle: A\nfeilds: []\n"], |e| matches!(e, SchemaError::Yaml(_))),
        ("typo in a field", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: string, requird: true}\n"],
            |e| matches!(e, SchemaError::Yaml(_))),
        ("unknown type", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: float}\n"],
            |e| matches!(e, SchemaError::Yaml(_))),
        ("duplicate form", vec![F1, F1], |e| matches!(e, SchemaError::DuplicateForm { .. })),
        ("duplicate field", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: string}\n  - {id: x, label: Y, type: string}\n"],
            |e| matches!(e, SchemaError::DuplicateField { .. })),
        ("duplicate through include", vec![F1, "id: b\nversion: 1\ntitle: B\ninclude: [{form: a}]\nfields:\n  - {id: x, label: X, type: string}\n"],
            |e| matches!(e, SchemaError::DuplicateField { .. })),
        ("unknown include", vec!["id: b\nversion: 1\ntitle: B\ninclude: [{form: zz}]\n"],
            |e| matches!(e, SchemaError::UnknownInclude { .. })),
        ("cycle", vec!["id: a\nversion: 1\ntitle: A\ninclude: [{form: b}]\n", "id: b\nversion: 1\ntitle: B\ninclude: [{form: a}]\n"],
            |e| matches!(e, SchemaError::IncludeCycle { .. })),
        ("unknown omit", vec![F1, "id: b\nversion: 1\ntitle: B\ninclude: [{form: a, omit: [y]}]\n"],
            |e| matches!(e, SchemaError::UnknownOmit { .. })),
        ("bad pattern", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: string, pattern: \"([\"}\n"],
            |e| matches!(e, SchemaError::BadPattern { .. })),
        ("bad default", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: integer, min: 1, max: 3, default: 9}\n"],
            |e| matches!(e, SchemaError::BadDefault { .. })),
        ("min on text", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: string, min: 1}\n"],
            |e| matches!(e, SchemaError::BadAttribute { .. })),
        ("enum without choices", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: enum}\n"],
            |e| matches!(e, SchemaError::BadAttribute { .. })),
        ("undeclared set", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: string, parameter_set: {id: s}}\n"],
            |e| matches!(e, SchemaError::UnknownParameterSet { .. })),
        ("set without required member", vec!["id: a\nversion: 1\ntitle: A\nfields:\n  - {id: x, label: X, type: string, parameter_set: {id: s, role: optional}}\nparameter_sets: [{id: s, label: S}]\n"],
            |e| matches!(e, SchemaError::EmptyParameterSet { .. })),
        ("one_of unknown member", vec!["id: a\nversion: 1\ntitle: A\none_of: [{id: g, label: G, members: [q]}]\n"],
            |e| matches!(e, SchemaError::UnknownField { .. })),
        ("guest_host_name unknown", vec!["id: a\nversion: 1\ntitle: A\nguest_host_name: q\n"],
            |e| matches!(e, SchemaError::UnknownField { .. })),
    ];
    for (name, texts, check) in cases {
        match load(&texts) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => {
                assert!(check(&e), "{name}: wrong error {e:?}");
                let msg = e.to_string();
                assert!(
                    msg.chars().next().is_some_and(|c| !c.is_uppercase()),
                    "{name}: {msg}"
                );
            }
        }
    }
}

#[test]
fn standalone_form_from_yaml() {
    let f = FormSchema::from_yaml(F1).unwrap();
    assert_eq!(f.id(), "a");
    assert!(matches!(
        FormSchema::from_yaml("id: b\nversion: 1\ntitle: B\ninclude: [{form: a}]\n"),
        Err(SchemaError::UnknownInclude { .. })
    ));
}

#[test]
fn docs_forms_md_is_generated_from_the_schemas() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/forms.md");
    let want = render_document(forms());
    if std::env::var_os("AETHERV_BLESS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/forms.md is stale; regenerate with AETHERV_BLESS=1 cargo test -p aetherv-core --test it"
    );
}
