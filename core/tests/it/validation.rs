//! Table-driven validation suite: every rule of the issue and reference §10 cases 1–7, 9, 14.
//!
//! Each row is (name, form, request, expected errors as `(field, code)`); an empty list means the
//! request is valid. Requests are built from a valid base plus a patch (`null` removes a key).

use super::form;
use aetherv_core::osfamily::OsFamily;
use aetherv_core::redact::REDACTED;
use aetherv_core::validate::{
    check_field, validate, ErrorCode, FieldError, ImageCatalogue, ImageEntry, InventoryChoices,
    ValidationContext,
};
use serde_json::{json, Map, Value};

const MD: &str = "managed-deployment";

fn base_windows() -> Value {
    json!({
        "vm_name": "web-01",
        "target_host": "hv01",
        "network": "lan",
        "guest_la_uid": "admin",
        "guest_la_pw": "s3cret",
    })
}

fn patch(mut base: Value, patch: Value) -> Value {
    if let (Some(b), Value::Object(p)) = (base.as_object_mut(), patch) {
        for (k, v) in p {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

/// Windows managed deployment (no image → windows) plus `p`.
fn win(p: Value) -> Value {
    patch(base_windows(), p)
}

/// Linux managed deployment (Ubuntu image) plus `p`.
fn lin(p: Value) -> Value {
    patch(
        base_windows(),
        patch(json!({"image_name": "Ubuntu 22.04"}), p),
    )
}

fn domain_join() -> Value {
    json!({
        "guest_domain_join_target": "corp.example.com",
        "guest_domain_join_uid": "joiner",
        "guest_domain_join_pw": "jp",
        "guest_domain_join_ou": "OU=Servers,DC=corp,DC=example,DC=com",
    })
}

fn static_ip() -> Value {
    json!({
        "guest_v4_ip_addr": "192.0.2.10",
        "guest_v4_cidr_prefix": 24,
        "guest_v4_default_gw": "192.0.2.1",
        "guest_v4_dns1": "192.0.2.53",
    })
}

fn ansible() -> Value {
    json!({"cnf_ansible_ssh_user": "ansible", "cnf_ansible_ssh_key": "ssh-ed25519 AAAAC3 ops"})
}

const VM_ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

type Row = (
    &'static str,
    &'static str,
    Value,
    Vec<(&'static str, &'static str)>,
);

fn rows() -> Vec<Row> {
    let s64 = "a".repeat(64);
    let s65 = "a".repeat(65);
    let mut rows: Vec<Row> = vec![
        // --- the base requests are valid
        ("windows base", MD, win(json!({})), vec![]),
        ("linux base", MD, lin(json!({})), vec![]),
        // --- §10.1 targets: exactly one
        (
            "both targets",
            MD,
            win(json!({"target_cluster": "clu1"})),
            vec![
                ("target_host", "exclusive"),
                ("target_cluster", "exclusive"),
            ],
        ),
        (
            "neither target",
            MD,
            win(json!({"target_host": null})),
            vec![("target_host", "required"), ("target_cluster", "required")],
        ),
        (
            "blank host counts as neither",
            MD,
            win(json!({"target_host": "  "})),
            vec![("target_host", "required"), ("target_cluster", "required")],
        ),
        (
            "cluster only",
            MD,
            win(json!({"target_host": null, "target_cluster": "clu1"})),
            vec![],
        ),
        (
            "cluster with blank host",
            MD,
            win(json!({"target_host": "", "target_cluster": "clu1"})),
            vec![],
        ),
        // --- §10.2 limits
        (
            "vm_name 65 chars",
            "vm",
            json!({"vm_name": s65, "target_host": "h"}),
            vec![("vm_name", "too_long")],
        ),
        (
            "vm_name 64 chars",
            "vm",
            json!({"vm_name": s64, "target_host": "h"}),
            vec![],
        ),
        (
            "vm_name 65 chars, deployment",
            MD,
            lin(json!({"vm_name": s65})),
            vec![("vm_name", "too_long")],
        ),
        (
            "vm_name 64 chars, linux deployment",
            MD,
            lin(json!({"vm_name": s64})),
            vec![],
        ),
        (
            "vm_name empty",
            MD,
            win(json!({"vm_name": ""})),
            vec![("vm_name", "required")],
        ),
        (
            "vm_name whitespace",
            MD,
            win(json!({"vm_name": " \t "})),
            vec![("vm_name", "required")],
        ),
        (
            "vm_name missing",
            "vm",
            json!({"target_host": "h"}),
            vec![("vm_name", "required")],
        ),
        (
            "gb_ram 0",
            MD,
            win(json!({"gb_ram": 0})),
            vec![("gb_ram", "out_of_range")],
        ),
        (
            "gb_ram 513",
            MD,
            win(json!({"gb_ram": 513})),
            vec![("gb_ram", "out_of_range")],
        ),
        ("gb_ram 1 and 512", MD, win(json!({"gb_ram": 1})), vec![]),
        (
            "gb_ram 512 as text",
            MD,
            win(json!({"gb_ram": " 512 "})),
            vec![],
        ),
        (
            "gb_ram negative",
            MD,
            win(json!({"gb_ram": -4})),
            vec![("gb_ram", "out_of_range")],
        ),
        (
            "gb_ram not a number",
            MD,
            win(json!({"gb_ram": "lots"})),
            vec![("gb_ram", "invalid_type")],
        ),
        (
            "gb_ram fraction",
            MD,
            win(json!({"gb_ram": 4.5})),
            vec![("gb_ram", "invalid_type")],
        ),
        (
            "gb_ram object",
            MD,
            win(json!({"gb_ram": {}})),
            vec![("gb_ram", "invalid_type")],
        ),
        (
            "cpu_cores 0",
            MD,
            win(json!({"cpu_cores": 0})),
            vec![("cpu_cores", "out_of_range")],
        ),
        (
            "cpu_cores 65",
            MD,
            win(json!({"cpu_cores": 65})),
            vec![("cpu_cores", "out_of_range")],
        ),
        ("cpu_cores 64", MD, win(json!({"cpu_cores": 64})), vec![]),
        (
            "disk_size_gb 0",
            MD,
            win(json!({"disk_size_gb": 0})),
            vec![("disk_size_gb", "out_of_range")],
        ),
        (
            "disk_size_gb 65537",
            MD,
            win(json!({"disk_size_gb": 65537})),
            vec![("disk_size_gb", "out_of_range")],
        ),
        (
            "disk_size_gb 1",
            MD,
            win(json!({"disk_size_gb": 1})),
            vec![],
        ),
        (
            "disk_size_gb 65536",
            MD,
            win(json!({"disk_size_gb": 65536})),
            vec![],
        ),
        // --- §10.14 VLAN ids
        (
            "vlan_id 0",
            MD,
            win(json!({"vlan_id": 0})),
            vec![("vlan_id", "out_of_range")],
        ),
        (
            "vlan_id 4095",
            MD,
            win(json!({"vlan_id": 4095})),
            vec![("vlan_id", "out_of_range")],
        ),
        ("vlan_id 1", MD, win(json!({"vlan_id": 1})), vec![]),
        (
            "vlan_id 4094",
            "nic",
            json!({"vm_id": VM_ID, "network": "lan", "vlan_id": 4094}),
            vec![],
        ),
        // --- §10.3 domain join all-or-none (4 members)
        ("domain join complete", MD, win(domain_join()), vec![]),
        (
            "domain join without ou",
            MD,
            win(patch(domain_join(), json!({"guest_domain_join_ou": null}))),
            vec![("guest_domain_join_ou", "parameter_set_incomplete")],
        ),
        (
            "domain join blank ou",
            MD,
            win(patch(domain_join(), json!({"guest_domain_join_ou": "   "}))),
            vec![("guest_domain_join_ou", "parameter_set_incomplete")],
        ),
        (
            "domain join target only",
            MD,
            win(json!({"guest_domain_join_target": "corp.example.com"})),
            vec![
                ("guest_domain_join_uid", "parameter_set_incomplete"),
                ("guest_domain_join_pw", "parameter_set_incomplete"),
                ("guest_domain_join_ou", "parameter_set_incomplete"),
            ],
        ),
        (
            "domain join ou only",
            MD,
            win(json!({"guest_domain_join_ou": "OU=x"})),
            vec![
                ("guest_domain_join_target", "parameter_set_incomplete"),
                ("guest_domain_join_uid", "parameter_set_incomplete"),
                ("guest_domain_join_pw", "parameter_set_incomplete"),
            ],
        ),
        (
            "domain join bad domain",
            MD,
            win(patch(
                domain_join(),
                json!({"guest_domain_join_target": "corp_example"}),
            )),
            vec![("guest_domain_join_target", "invalid_hostname")],
        ),
        // --- §10.4 static IPv4 all-or-none, dns2/suffix only with the set
        ("static ip complete", MD, win(static_ip()), vec![]),
        (
            "static ip with dns2 and suffix",
            MD,
            win(patch(
                static_ip(),
                json!({"guest_v4_dns2": "192.0.2.54", "guest_net_dns_suffix": "corp.example.com"}),
            )),
            vec![],
        ),
        (
            "static ip without dns1",
            MD,
            win(patch(static_ip(), json!({"guest_v4_dns1": null}))),
            vec![("guest_v4_dns1", "parameter_set_incomplete")],
        ),
        (
            "static ip address only",
            MD,
            win(json!({"guest_v4_ip_addr": "192.0.2.10"})),
            vec![
                ("guest_v4_cidr_prefix", "parameter_set_incomplete"),
                ("guest_v4_default_gw", "parameter_set_incomplete"),
                ("guest_v4_dns1", "parameter_set_incomplete"),
            ],
        ),
        (
            "dns2 without the set",
            MD,
            win(json!({"guest_v4_dns2": "192.0.2.54"})),
            vec![("guest_v4_dns2", "parameter_set_incomplete")],
        ),
        (
            "suffix without the set",
            MD,
            win(json!({"guest_net_dns_suffix": "corp.example.com"})),
            vec![("guest_net_dns_suffix", "parameter_set_incomplete")],
        ),
        (
            "dns2 with partial set",
            MD,
            win(json!({"guest_v4_ip_addr": "192.0.2.10", "guest_v4_dns2": "192.0.2.54"})),
            vec![
                ("guest_v4_cidr_prefix", "parameter_set_incomplete"),
                ("guest_v4_default_gw", "parameter_set_incomplete"),
                ("guest_v4_dns1", "parameter_set_incomplete"),
            ],
        ),
        (
            "prefix 0",
            MD,
            win(patch(static_ip(), json!({"guest_v4_cidr_prefix": 0}))),
            vec![("guest_v4_cidr_prefix", "out_of_range")],
        ),
        (
            "prefix 33",
            MD,
            win(patch(static_ip(), json!({"guest_v4_cidr_prefix": 33}))),
            vec![("guest_v4_cidr_prefix", "out_of_range")],
        ),
        (
            "prefix 1 and 32",
            MD,
            win(patch(static_ip(), json!({"guest_v4_cidr_prefix": "32"}))),
            vec![],
        ),
        (
            "ipv4 fields must be ipv4",
            MD,
            win(patch(
                static_ip(),
                json!({"guest_v4_ip_addr": "192.0.2", "guest_v4_default_gw": "256.0.0.1",
                "guest_v4_dns1": "dns.example.com", "guest_v4_dns2": "::1"}),
            )),
            vec![
                ("guest_v4_ip_addr", "invalid_ipv4"),
                ("guest_v4_default_gw", "invalid_ipv4"),
                ("guest_v4_dns1", "invalid_ipv4"),
                ("guest_v4_dns2", "invalid_ipv4"),
            ],
        ),
        (
            "ipv4 as a number",
            MD,
            win(patch(static_ip(), json!({"guest_v4_dns1": 8}))),
            vec![("guest_v4_dns1", "invalid_ipv4")],
        ),
        // --- §10.5 Ansible all-or-none; empty strings are not given
        ("ansible complete on linux", MD, lin(ansible()), vec![]),
        (
            "ansible user without key",
            MD,
            lin(json!({"cnf_ansible_ssh_user": "ansible"})),
            vec![("cnf_ansible_ssh_key", "parameter_set_incomplete")],
        ),
        (
            "ansible user with empty key",
            MD,
            lin(json!({"cnf_ansible_ssh_user": "ansible", "cnf_ansible_ssh_key": ""})),
            vec![("cnf_ansible_ssh_key", "parameter_set_incomplete")],
        ),
        (
            "ansible key without user",
            MD,
            lin(json!({"cnf_ansible_ssh_key": "ssh-ed25519 AAAA"})),
            vec![("cnf_ansible_ssh_user", "parameter_set_incomplete")],
        ),
        (
            "empty optional strings are not given",
            MD,
            win(
                json!({"guest_domain_join_target": "", "guest_v4_ip_addr": " ", "cnf_ansible_ssh_user": null}),
            ),
            vec![],
        ),
        // --- OS-family applicability: an error, not silently dropped
        (
            "domain join on linux",
            MD,
            lin(domain_join()),
            vec![
                ("guest_domain_join_target", "not_applicable"),
                ("guest_domain_join_uid", "not_applicable"),
                ("guest_domain_join_pw", "not_applicable"),
                ("guest_domain_join_ou", "not_applicable"),
            ],
        ),
        (
            "partial domain join on linux",
            MD,
            lin(json!({"guest_domain_join_target": "corp.example.com"})),
            vec![("guest_domain_join_target", "not_applicable")],
        ),
        (
            "ansible on windows",
            MD,
            win(ansible()),
            vec![
                ("cnf_ansible_ssh_user", "not_applicable"),
                ("cnf_ansible_ssh_key", "not_applicable"),
            ],
        ),
        (
            "ansible on a Research image is windows",
            MD,
            win(patch(ansible(), json!({"image_name": "Research"}))),
            vec![
                ("cnf_ansible_ssh_user", "not_applicable"),
                ("cnf_ansible_ssh_key", "not_applicable"),
            ],
        ),
        (
            "ansible with blank image is windows",
            MD,
            win(patch(ansible(), json!({"image_name": "  "}))),
            vec![
                ("cnf_ansible_ssh_user", "not_applicable"),
                ("cnf_ansible_ssh_key", "not_applicable"),
            ],
        ),
        (
            "explicit linux without image",
            MD,
            win(patch(ansible(), json!({"os_family": "Linux"}))),
            vec![],
        ),
        (
            "explicit os_family must be known",
            MD,
            win(json!({"os_family": "beos"})),
            vec![("os_family", "unknown_choice")],
        ),
        ("static ip on linux", MD, lin(static_ip()), vec![]),
        (
            "not_applicable outranks a bad value",
            MD,
            lin(json!({"guest_domain_join_target": "bad_domain!"})),
            vec![("guest_domain_join_target", "not_applicable")],
        ),
        // --- guest host name per OS family
        (
            "windows name 15 chars",
            MD,
            win(json!({"vm_name": "abcdefghijklmno"})),
            vec![],
        ),
        (
            "windows name 16 chars",
            MD,
            win(json!({"vm_name": "abcdefghijklmnop"})),
            vec![("vm_name", "invalid_hostname")],
        ),
        (
            "windows name with dot",
            MD,
            win(json!({"vm_name": "web.corp"})),
            vec![("vm_name", "invalid_hostname")],
        ),
        (
            "windows name all digits",
            MD,
            win(json!({"vm_name": "12345"})),
            vec![("vm_name", "invalid_hostname")],
        ),
        (
            "linux name 40 chars",
            MD,
            lin(json!({"vm_name": "a".repeat(40)})),
            vec![],
        ),
        (
            "linux name with underscore",
            MD,
            lin(json!({"vm_name": "web_01"})),
            vec![("vm_name", "invalid_hostname")],
        ),
        (
            "linux name with space",
            MD,
            lin(json!({"vm_name": "web 01"})),
            vec![("vm_name", "invalid_hostname")],
        ),
        (
            "vm form has no host-name rule",
            "vm",
            json!({"vm_name": "My web server (old)", "target_host": "h"}),
            vec![],
        ),
        // --- strings trimmed, unknown fields rejected, booleans
        (
            "trimmed name",
            MD,
            win(json!({"vm_name": "  web-01  "})),
            vec![],
        ),
        (
            "unknown field",
            MD,
            win(json!({"vm_colour": "blue"})),
            vec![("vm_colour", "unknown_field")],
        ),
        (
            "vm_id is not asked in a deployment",
            MD,
            win(json!({"vm_id": VM_ID})),
            vec![("vm_id", "unknown_field")],
        ),
        (
            "unknown null field still unknown",
            MD,
            win(json!({"extra": ""})),
            vec![("extra", "unknown_field")],
        ),
        (
            "boolean yes",
            MD,
            win(json!({"vm_clustered": "yes", "rollback": "ON"})),
            vec![],
        ),
        (
            "boolean 0",
            MD,
            win(json!({"vm_clustered": "0", "rollback": 1})),
            vec![],
        ),
        (
            "boolean nonsense",
            MD,
            win(json!({"vm_clustered": "maybe"})),
            vec![("vm_clustered", "invalid_type")],
        ),
        (
            "boolean 2",
            MD,
            win(json!({"rollback": 2})),
            vec![("rollback", "invalid_type")],
        ),
        (
            "text as a list",
            MD,
            win(json!({"guest_la_uid": ["admin"]})),
            vec![("guest_la_uid", "invalid_type")],
        ),
        (
            "text as a boolean",
            MD,
            win(json!({"network": true})),
            vec![("network", "invalid_type")],
        ),
        // --- enums and required component fields
        (
            "enum case-insensitive",
            MD,
            win(json!({"disk_type": "fixed", "controller_type": "ide"})),
            vec![],
        ),
        (
            "enum unknown",
            MD,
            win(json!({"disk_type": "Thin"})),
            vec![("disk_type", "unknown_choice")],
        ),
        (
            "network required",
            MD,
            win(json!({"network": null})),
            vec![("network", "required")],
        ),
        (
            "local admin required",
            MD,
            win(json!({"guest_la_uid": " ", "guest_la_pw": null})),
            vec![("guest_la_uid", "required"), ("guest_la_pw", "required")],
        ),
        (
            "disk ok",
            "disk",
            json!({"vm_id": VM_ID, "image_name": "Ubuntu 22.04"}),
            vec![],
        ),
        (
            "disk bad vm_id",
            "disk",
            json!({"vm_id": "not-a-guid"}),
            vec![("vm_id", "pattern")],
        ),
        (
            "disk vm_id too long",
            "disk",
            json!({"vm_id": format!("{VM_ID}0")}),
            vec![("vm_id", "too_long")],
        ),
        (
            "disk needs vm_id",
            "disk",
            json!({}),
            vec![("vm_id", "required")],
        ),
        (
            "nic needs network",
            "nic",
            json!({"vm_id": VM_ID}),
            vec![("network", "required")],
        ),
        (
            "guest form linux",
            "guest",
            json!({"os_family": "linux", "guest_la_uid": "root", "guest_la_pw": "x",
            "cnf_ansible_ssh_user": "a", "cnf_ansible_ssh_key": "k"}),
            vec![],
        ),
        (
            "guest form defaults to windows",
            "guest",
            json!({"guest_la_uid": "a", "guest_la_pw": "x",
            "cnf_ansible_ssh_user": "a", "cnf_ansible_ssh_key": "k"}),
            vec![
                ("cnf_ansible_ssh_user", "not_applicable"),
                ("cnf_ansible_ssh_key", "not_applicable"),
            ],
        ),
        (
            "vm form targets",
            "vm",
            json!({"vm_name": "x"}),
            vec![("target_host", "required"), ("target_cluster", "required")],
        ),
    ];
    // All errors at once, from many rules.
    rows.push((
        "every error at once",
        MD,
        json!({
            "vm_name": "this-name-is-too-long-for-windows",
            "gb_ram": 0, "cpu_cores": "x", "target_host": "a", "target_cluster": "b",
            "guest_la_pw": "p", "guest_v4_dns2": "1.1.1.1", "cnf_ansible_ssh_user": "u", "nope": 1,
        }),
        vec![
            ("vm_name", "invalid_hostname"),
            ("gb_ram", "out_of_range"),
            ("cpu_cores", "invalid_type"),
            ("target_host", "exclusive"),
            ("target_cluster", "exclusive"),
            ("network", "required"),
            ("guest_la_uid", "required"),
            ("cnf_ansible_ssh_user", "not_applicable"),
            ("guest_v4_dns2", "parameter_set_incomplete"),
            ("nope", "unknown_field"),
        ],
    ));
    rows
}

fn codes(errors: &[FieldError]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.field.clone(), e.code.as_str().to_owned()))
        .collect();
    v.sort();
    v
}

#[test]
fn table() {
    let ctx = ValidationContext::default();
    let mut failures = Vec::new();
    for (name, form_id, input, expected) in rows() {
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
            .collect();
        expected.sort();
        let got = match validate(form(form_id), &input, &ctx) {
            Ok(_) => vec![],
            Err(errors) => {
                assert!(!errors.is_empty(), "{name}: Err with no errors");
                for e in &errors {
                    assert!(!e.message.is_empty(), "{name}: empty message");
                }
                codes(&errors)
            }
        };
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn normalized_values_are_typed_trimmed_and_defaulted() {
    let input = win(json!({
        "vm_name": "  web-01 ", "gb_ram": "8", "vm_clustered": "yes", "disk_type": "fixed",
        "guest_v4_ip_addr": " 192.0.2.10 ", "guest_v4_cidr_prefix": "24",
        "guest_v4_default_gw": "192.0.2.1", "guest_v4_dns1": "192.0.2.53",
    }));
    let v = validate(form(MD), &input, &ValidationContext::default()).unwrap();
    assert_eq!(v.form_id(), MD);
    assert_eq!(v.os_family(), OsFamily::Windows);
    assert_eq!(v.str("vm_name"), Some("web-01"));
    assert_eq!(v.get("gb_ram"), Some(&json!(8)));
    assert_eq!(v.get("cpu_cores"), Some(&json!(2)));
    assert_eq!(v.get("disk_size_gb"), Some(&json!(100)));
    assert_eq!(v.get("controller_type"), Some(&json!("SCSI")));
    assert_eq!(v.get("disk_type"), Some(&json!("Fixed")));
    assert_eq!(v.get("vm_clustered"), Some(&json!(true)));
    assert_eq!(v.get("rollback"), Some(&json!(false)));
    assert_eq!(v.get("guest_v4_cidr_prefix"), Some(&json!(24)));
    assert_eq!(v.str("guest_v4_ip_addr"), Some("192.0.2.10"));
    assert_eq!(v.str("os_family"), Some("windows"));
    assert_eq!(
        v.get("storage_class"),
        None,
        "no value and no default: absent"
    );
}

#[test]
fn minimal_request_carries_no_optional_guest_keys() {
    // §10.6: a minimal request yields only the local-admin guest fields.
    let v = validate(form(MD), &win(json!({})), &ValidationContext::default()).unwrap();
    let guest: Vec<&str> = v
        .values()
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("guest_") || k.starts_with("cnf_"))
        .collect();
    assert_eq!(guest, vec!["guest_la_pw", "guest_la_uid"]);
    let v = validate(form(MD), &win(static_ip()), &ValidationContext::default()).unwrap();
    assert!(v.get("guest_v4_dns2").is_none() && v.get("guest_net_dns_suffix").is_none());
}

#[test]
fn os_family_comes_from_catalogue_then_name() {
    let ctx = ValidationContext {
        images: ImageCatalogue::new([
            ImageEntry {
                name: "golden-2024".into(),
                os_family: OsFamily::Linux,
                description: None,
            },
            ImageEntry {
                name: "Ubuntu-lookalike".into(),
                os_family: OsFamily::Windows,
                description: None,
            },
        ]),
        ..Default::default()
    };
    let v = validate(
        form(MD),
        &win(patch(ansible(), json!({"image_name": "GOLDEN-2024"}))),
        &ctx,
    )
    .unwrap();
    assert_eq!(v.os_family(), OsFamily::Linux);
    let e = validate(
        form(MD),
        &win(patch(ansible(), json!({"image_name": "Ubuntu-lookalike"}))),
        &ctx,
    )
    .unwrap_err();
    assert!(
        e.iter().all(|e| e.code == ErrorCode::NotApplicable),
        "{e:?}"
    );
    // Not in the catalogue: inferred from the name.
    let v = validate(
        form(MD),
        &win(patch(ansible(), json!({"image_name": "RHEL-9.4"}))),
        &ctx,
    )
    .unwrap();
    assert_eq!(v.os_family(), OsFamily::Linux);
    assert_eq!(v.str("os_family"), Some("linux"));
    // §10.7 through validation.
    for (image, family) in [
        ("Windows Server 2022", OsFamily::Windows),
        ("Win2022", OsFamily::Windows),
        ("win-server-2016", OsFamily::Windows),
        ("CentOS Stream 9", OsFamily::Linux),
        ("AlmaLinux 9", OsFamily::Linux),
        ("generic-linux-image", OsFamily::Linux),
        ("UBUNTU 22.04", OsFamily::Linux),
        ("RedHat-8", OsFamily::Linux),
    ] {
        let v = validate(form(MD), &lin(json!({"image_name": image})), &ctx).unwrap();
        assert_eq!(v.os_family(), family, "{image}");
    }
}

#[test]
fn inventory_choices_restrict_only_when_given() {
    let ctx = ValidationContext {
        choices: InventoryChoices {
            hosts: Some(vec!["HV01".into()]),
            networks: Some(vec!["lan".into(), "dmz".into()]),
            storage_classes: Some(vec![]),
            ..Default::default()
        },
        ..Default::default()
    };
    let v = validate(
        form(MD),
        &win(json!({"target_host": "hv01", "network": "LAN"})),
        &ctx,
    )
    .unwrap();
    assert_eq!(
        v.str("target_host"),
        Some("HV01"),
        "normalised to the inventory spelling"
    );
    assert_eq!(v.str("network"), Some("lan"));
    let e = validate(
        form(MD),
        &win(json!({"target_host": "hv02", "network": "wan", "storage_class": "fast", "image_name": "Any"})),
        &ctx,
    )
    .unwrap_err();
    assert_eq!(
        codes(&e),
        vec![
            ("network".into(), "unknown_choice".into()),
            ("storage_class".into(), "unknown_choice".into()),
            ("target_host".into(), "unknown_choice".into()),
        ]
    );
    assert!(
        e.iter().any(|e| e.message.contains("dmz")),
        "lists the known values: {e:?}"
    );
}

#[test]
fn redacted_view_hides_every_secret_and_keeps_the_values() {
    // §10.9 through a validated request.
    let input = lin(patch(ansible(), json!({"guest_la_pw": "super-secret"})));
    let v = validate(form(MD), &input, &ValidationContext::default()).unwrap();
    let red = v.redacted();
    assert_eq!(red["guest_la_pw"], REDACTED);
    assert_eq!(red["cnf_ansible_ssh_key"], REDACTED);
    assert_eq!(red["cnf_ansible_ssh_user"], "ansible");
    assert_eq!(v.str("guest_la_pw"), Some("super-secret"));
    let secrets: Vec<&str> = v.secret_fields().iter().map(String::as_str).collect();
    assert_eq!(
        secrets,
        vec!["cnf_ansible_ssh_key", "guest_domain_join_pw", "guest_la_pw"]
    );
}

#[test]
fn errors_serialize_to_exactly_field_code_message() {
    let e = validate(
        form(MD),
        &win(json!({"gb_ram": 0})),
        &ValidationContext::default(),
    )
    .unwrap_err();
    let v = serde_json::to_value(&e[0]).unwrap();
    let obj: &Map<String, Value> = v.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["code", "field", "message"]);
    assert_eq!(v["code"], "out_of_range");
    assert_eq!(v["field"], "gb_ram");
    assert_eq!(
        v["message"],
        "Memory (GB) must be between 1 and 512 (got 0)"
    );
}

#[test]
fn messages_name_the_missing_members_and_both_targets() {
    let e = validate(
        form(MD),
        &win(json!({"target_cluster": "c"})),
        &ValidationContext::default(),
    )
    .unwrap_err();
    assert!(e.iter().all(|e| e
        .message
        .contains("only one of target_host or target_cluster")));
    let e = validate(
        form(MD),
        &win(json!({"target_host": null})),
        &ValidationContext::default(),
    )
    .unwrap_err();
    assert!(e
        .iter()
        .all(|e| e.message == "exactly one of target_host or target_cluster is required"));
    let e = validate(
        form(MD),
        &win(json!({"guest_domain_join_target": "corp.example.com"})),
        &ValidationContext::default(),
    )
    .unwrap_err();
    assert_eq!(e.len(), 3);
    assert!(e[0]
        .message
        .starts_with("Domain join user (guest_domain_join_uid) is missing"));
}

#[test]
fn non_object_requests_are_one_error() {
    for input in [json!(null), json!([1]), json!("vm"), json!(3)] {
        let e = validate(form(MD), &input, &ValidationContext::default()).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, ErrorCode::InvalidType);
        assert_eq!(e[0].field, "");
    }
}

#[test]
fn check_field_gives_inline_feedback_for_one_field() {
    let ctx = ValidationContext::default();
    let md = form(MD);
    assert_eq!(
        check_field(md, "gb_ram", &json!(" 8 "), &ctx),
        Ok(Some(json!(8)))
    );
    assert_eq!(check_field(md, "gb_ram", &json!("  "), &ctx), Ok(None));
    let e = check_field(md, "guest_v4_dns1", &json!("1.2.3"), &ctx).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidIpv4);
    let e = check_field(md, "vm_id", &json!("x"), &ctx).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownField);
}
