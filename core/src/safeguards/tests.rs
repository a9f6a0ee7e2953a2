use super::*;
use crate::JobKind;
use serde_json::json;

fn facts() -> HostFacts {
    HostFacts::from_inventory(
        "hv01",
        &json!({
            "host": {
                "total_memory_gb": 64, "memory_in_use_gb": 60,
                "networks": [{"name": "prod"}], "images": [{"name": "ubuntu"}],
                "storage_classes": [{"name": "fast"}],
            },
            "vms": [{
                "vm_name": "web-01", "vm_id": "ID-1", "state": "Off", "memory_gb": 8,
                "notes": "aetherv:job=J1",
                "disks": [{"disk_id": "D1", "disk_path": "C:\\vms\\web-01.vhdx", "size_gb": 40}],
            }],
        }),
    )
}

fn run(kind: JobKind, spec: Value, checks: Checks<'_>) -> Vec<(String, &'static str)> {
    let Value::Object(spec) = spec else {
        panic!("spec is an object")
    };
    let parsed = JobSpec::parse(kind, &spec).expect("parses");
    let mut errors = Errors::default();
    check(&facts(), &parsed, checks, &mut errors);
    errors
        .0
        .into_iter()
        .map(|e| (e.field, e.code.as_str()))
        .collect()
}

#[test]
fn inventory_is_read_into_facts() {
    let f = facts();
    assert_eq!(f.networks, ["prod"]);
    assert_eq!(f.total_memory_gb, Some(64));
    let vm = f.vm_named("WEB-01").expect("found any case");
    assert_eq!(vm.notes, "aetherv:job=J1");
    let disks = vm.disks.as_ref().expect("disks listed");
    assert!(disks[0].is("web-01.vhdx") && disks[0].is("d1"));
}

#[test]
fn a_deployment_names_every_missing_resource_at_once() {
    let errors = run(
        JobKind::DeploymentManaged,
        json!({"vm_name": "web-01", "gb_ram": 8, "network": "nonet",
               "image_name": "win", "storage_class": "slow"}),
        Checks::default(),
    );
    assert_eq!(
        errors,
        [
            ("vm_name".into(), "name_in_use"),
            ("storage_class".into(), "unknown_choice"),
            ("image_name".into(), "unknown_choice"),
            ("network".into(), "unknown_choice"),
            ("gb_ram".into(), "insufficient_memory"),
        ]
    );
}

#[test]
fn the_jobs_own_vm_resumes_and_anothers_conflicts() {
    let spec = json!({"vm_name": "web-01", "gb_ram": 8, "network": "prod"});
    let own = Checks {
        own_tag: Some("aetherv:job=J1"),
        ..Checks::default()
    };
    assert!(run(JobKind::DeploymentManaged, spec.clone(), own).is_empty());
    let other = Checks {
        own_tag: Some("aetherv:job=J2"),
        ..Checks::default()
    };
    assert_eq!(
        run(JobKind::DeploymentManaged, spec, other)[0],
        ("vm_name".into(), "name_in_use")
    );
}

#[test]
fn existing_vm_disks_and_sizes_are_checked() {
    let c = Checks::default();
    assert_eq!(
        run(JobKind::VmDelete, json!({"vm_name": "gone"}), c),
        [("vm_name".into(), "not_found")]
    );
    assert_eq!(
        run(JobKind::VmDelete, json!({"vm_id": "nope"}), c),
        [("vm_id".into(), "not_found")]
    );
    assert_eq!(
        run(
            JobKind::DiskUpdate,
            json!({"vm_name": "web-01", "resource_id": "D1", "disk_size_gb": 20}),
            c
        ),
        [("disk_size_gb".into(), "disk_shrink")]
    );
    assert_eq!(
        run(
            JobKind::DiskDelete,
            json!({"vm_name": "web-01", "disk_id": "D9"}),
            c
        ),
        [("disk_id".into(), "not_found")]
    );
    assert_eq!(
        run(
            JobKind::NicCreate,
            json!({"vm_name": "web-01", "network": "lab"}),
            c
        ),
        [("network".into(), "unknown_choice")]
    );
    assert!(run(
        JobKind::VmPower,
        json!({"vm_name": "web-01", "action": "start"}),
        c
    )
    .contains(&("vm_name".into(), "insufficient_memory")));
}

#[test]
fn unreported_lists_check_nothing() {
    let bare = HostFacts::from_inventory("hv02", &json!({"host": {}, "vms": []}));
    let spec = json!({"vm_name": "a", "gb_ram": 999, "network": "x", "image_name": "y"});
    let Value::Object(spec) = spec else {
        panic!("object")
    };
    let parsed = JobSpec::parse(JobKind::DeploymentManaged, &spec).expect("parses");
    let mut errors = Errors::default();
    check(&bare, &parsed, Checks::default(), &mut errors);
    assert!(errors.0.is_empty(), "{:?}", errors.0);
    assert_eq!(new_vm_name(&parsed), Some("a"));
}
