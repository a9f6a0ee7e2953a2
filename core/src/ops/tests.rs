use super::*;
use crate::schema::Forms;
use crate::validate::{validate, ValidationContext};
use crate::{Platform, Requester, Target};
use serde_json::json;

fn forms() -> Forms {
    Forms::builtin().expect("built-in forms")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn names(fields: &[Field]) -> Vec<&'static str> {
    fields.iter().map(|f| f.name).collect()
}

/// Each form and the kind whose spec carries it.
const FORM_KINDS: [(&str, JobKind); 5] = [
    ("vm", JobKind::VmCreate),
    ("managed-deployment", JobKind::DeploymentManaged),
    ("guest", JobKind::VmInitialize),
    ("disk", JobKind::DiskCreate),
    ("nic", JobKind::NicCreate),
];

#[test]
fn the_secret_fields_are_the_forms_secret_fields() {
    let mut from_forms: Vec<String> = forms().secret_fields().into_iter().collect();
    from_forms.sort();
    assert_eq!(secret_fields(), from_forms);
    assert_eq!(
        secret_fields_of(JobKind::DeploymentManaged),
        ["guest_la_pw", "guest_domain_join_pw", "cnf_ansible_ssh_key"]
    );
    assert!(secret_fields_of(JobKind::VmPower).is_empty());
    assert!(is_secret("guest_la_pw") && !is_secret("guest_la_uid"));
}

#[test]
fn every_form_field_is_a_field_of_its_kind_with_the_same_flags() {
    let forms = forms();
    for (form_id, kind) in FORM_KINDS {
        let form = forms.get(form_id).expect("form");
        let fields = kind.fields().expect("closed spec");
        for f in form.fields() {
            let spec_field = fields
                .iter()
                .find(|s| s.name == f.id)
                .unwrap_or_else(|| panic!("{kind} lacks form field {}", f.id));
            assert_eq!(spec_field.secret, f.is_secret(), "{kind} {}", f.id);
            // `vm_id` is required by the component forms, but a spec may name the VM instead.
            if f.id != "vm_id" {
                assert_eq!(spec_field.required, f.required, "{kind} {}", f.id);
            }
        }
    }
}

#[test]
fn no_spec_declares_a_field_twice() {
    let closed = JobKind::ALL.into_iter().filter_map(JobKind::fields);
    let ops = AgentOperation::ALL
        .into_iter()
        .filter_map(AgentOperation::fields);
    for fields in closed.chain(ops) {
        let mut n = names(fields);
        let len = n.len();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), len, "{n:?}");
    }
}

#[test]
fn validated_requests_read_as_their_typed_spec_and_back_unchanged() {
    let forms = forms();
    let requests = [
        (
            "managed-deployment",
            json!({"vm_name": "web-01", "gb_ram": "8", "cpu_cores": 2, "network": "prod",
                "target_host": "hv01", "image_name": "win2022", "vlan_id": 12,
                "guest_la_uid": "admin", "guest_la_pw": "Pw-1!", "vm_clustered": "yes",
                "guest_v4_ip_addr": "10.0.0.5", "guest_v4_cidr_prefix": 24,
                "guest_v4_default_gw": "10.0.0.1", "guest_v4_dns1": "10.0.0.2"}),
        ),
        (
            "vm",
            json!({"vm_name": "a", "target_cluster": "c1", "os_family": "linux"}),
        ),
        (
            "guest",
            json!({"os_family": "linux", "guest_la_uid": "root", "guest_la_pw": "x",
                "cnf_ansible_ssh_user": "ansible", "cnf_ansible_ssh_key": "ssh-ed25519 AAAA"}),
        ),
    ];
    for (form_id, input) in requests {
        let form = forms.get(form_id).expect("form");
        let values = validate(form, &input, &ValidationContext::default())
            .expect("valid")
            .into_values();
        let kind = FORM_KINDS
            .iter()
            .find(|(f, _)| *f == form_id)
            .map(|(_, k)| *k)
            .expect("kind");
        let typed = JobSpec::parse(kind, &values).expect("reads");
        assert_eq!(typed.kind(), kind);
        assert_eq!(typed.into_spec(), values, "{form_id}");
    }
}

#[test]
fn unknown_fields_are_tolerated_and_typed_fields_are_read() {
    let spec = obj(json!({"vm_name": "a", "action": "start", "from_producer": 1}));
    let typed = VmPowerSpec::from_spec(&spec).expect("tolerated");
    assert_eq!(typed, VmPowerSpec::new(VmRef::new("a", ""), "start"));
    let e = VmPowerSpec::from_spec(&obj(json!({"action": 5}))).expect_err("wrong type");
    assert!(e.to_string().contains("VmPowerSpec"), "{e}");
}

#[test]
fn a_secret_is_never_echoed() {
    let spec = obj(json!({"guest_la_uid": "a", "guest_la_pw": 123_456_789}));
    let e = GuestFields::from_spec(&spec).expect_err("not a string");
    assert!(!e.to_string().contains("123456789"), "{e}");
    let g = GuestFields {
        guest_la_pw: Some(Secret::new("Pw-123")),
        ..GuestFields::default()
    };
    assert!(!format!("{g:?}").contains("Pw-123"));
    assert_eq!(g.guest_la_pw.as_ref().map(Secret::expose), Some("Pw-123"));
    let mut v = json!({"spec": {"guest_la_pw": "Pw-123", "vm_name": "a"}});
    redact(&mut v);
    assert_eq!(
        v,
        json!({"spec": {"guest_la_pw": crate::redact::REDACTED, "vm_name": "a"}})
    );
}

#[test]
fn the_bot_constructors_build_todays_specs() {
    let vm = || VmRef::new("web-01", "0f8fad5b-d9cb-469f-a165-70867728950e");
    let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let cases = [
        (
            VmPowerSpec::new(vm(), "start").into_spec(),
            json!({"vm_name": "web-01", "vm_id": id, "action": "start"}),
        ),
        (
            VmDeleteSpec::new(vm(), true, false).into_spec(),
            json!({"vm_name": "web-01", "vm_id": id, "delete_disks": true, "force": false}),
        ),
        (
            DiskCreateSpec::new(vm(), 20).into_spec(),
            json!({"vm_name": "web-01", "vm_id": id, "disk_size_gb": 20}),
        ),
        (
            DiskUpdateSpec::new(vm(), "d1", 40).into_spec(),
            json!({"vm_name": "web-01", "vm_id": id, "disk_id": "d1", "disk_size_gb": 40}),
        ),
        (
            NicCreateSpec::new(VmRef::new("web-01", ""), "prod").into_spec(),
            json!({"vm_name": "web-01", "network": "prod"}),
        ),
    ];
    for (built, literal) in cases {
        assert_eq!(Value::Object(built), literal);
    }
}

#[test]
fn single_operation_kinds_plan_their_operation() {
    for kind in JobKind::ALL {
        let steps = plan(kind, false);
        match kind.operation() {
            Some(op) => {
                assert_eq!(steps, [StepName::Op(op)]);
                assert_eq!(steps[0].as_str(), kind.as_str(), "{kind}");
            }
            None => assert!(matches!(
                kind,
                JobKind::DeploymentManaged | JobKind::VmInitialize
            )),
        }
    }
    assert_eq!(
        plan(JobKind::VmInitialize, true),
        [StepName::GuestInitialize]
    );
}

#[test]
fn a_managed_deployment_registers_with_the_cluster_last() {
    let step_names = |clustered| -> Vec<&str> {
        plan(JobKind::DeploymentManaged, clustered)
            .into_iter()
            .map(StepName::as_str)
            .collect()
    };
    assert_eq!(
        step_names(true),
        [
            "vm.create",
            "disk.create",
            "nic.create",
            "guest.initialize",
            "cluster.add"
        ]
    );
    assert_eq!(step_names(false).len(), 4);
    let requester = Requester {
        platform: Platform::Amqp,
        user_id: "t".into(),
    };
    let mut job = JobEnvelope::new(
        JobKind::DeploymentManaged,
        Target::Host("hv01".into()),
        obj(json!({"vm_clustered": "Yes"})),
        requester,
    );
    assert_eq!(job.plan().len(), 5);
    job.spec.insert("vm_clustered".into(), json!(false));
    assert_eq!(job.plan().len(), 4);
}

#[test]
fn agent_fields_name_the_vm_only_where_an_operation_targets_one() {
    let vm_create = names(AgentOperation::VmCreate.fields().expect("closed"));
    assert!(vm_create.contains(&"vm_name") && !vm_create.contains(&"vm_id"));
    assert_eq!(
        names(AgentOperation::VmGet.fields().expect("closed")),
        ["vm_id", "vm_name"]
    );
    assert_eq!(AgentOperation::HostInventory.fields(), Some(&[][..]));
    assert_eq!(AgentOperation::Noop.fields(), None);
    assert_eq!(JobKind::Noop.fields(), None);
    assert!(is_placement_field("deployment_target") && is_placement_field("target_host"));
    assert!(!is_placement_field("vm_name"));
    let spec = obj(json!({"vm_name": "a", "vm_id": "x", "target_host": "hv01", "ram_gb": 4}));
    assert_eq!(
        unknown_fields(AgentOperation::VmCreate.fields(), &spec),
        ["ram_gb", "vm_id"]
    );
    assert!(unknown_fields(AgentOperation::Noop.fields(), &spec).is_empty());
}
