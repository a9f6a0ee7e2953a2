//! The gate's safeguards against inventory: each doomed request of issue 13 is refused before
//! approval, naming the field, and publishes no `approval.requested`; a request that passes
//! still reaches approval.

use super::*;
use aetherv_bot::engine::FormOutcome;
use aetherv_bot::state::State;
use aetherv_broker::StreamOffset;
use aetherv_core::command::DeployForm;
use aetherv_core::schema::Forms;
use aetherv_core::validate::ErrorCode;
use aetherv_core::{Event, EventBody, JobKind, Target};
use serde_json::{json, Map, Value};

const DISK: &str = "6b0d2c1e-0000-4000-8000-000000000001";

/// hv01's inventory: 64 GB with 8 in use, network `prod`, storage class `fast`, image
/// `WinSrv2022`, and web-01 (2 GB, off) with a 40 GB disk.
fn hv01() -> Value {
    json!({
        "host": {
            "total_memory_gb": 64, "memory_in_use_gb": 8,
            "networks": [{"name": "prod"}],
            "storage_classes": [{"name": "fast"}],
            "images": [{"name": "WinSrv2022"}]
        },
        "vms": [{
            "vm_name": "web-01", "vm_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "state": "Off", "cpu_cores": 2, "memory_gb": 2,
            "disks": [{"disk_id": DISK, "disk_path": "D:\\VMs\\web-01\\web-01.vhdx", "size_gb": 40}],
            "nics": [{"nic_id": "n1", "adapter_name": "eth0", "network": "prod",
                      "mac_address": "00155D000001"}]
        }]
    })
}

fn inventory_event(host: &str, reachable: bool, inventory: Value, error: Option<&str>) -> Event {
    Event::for_host(
        0,
        EventBody::HostInventory {
            host: host.into(),
            reachable,
            inventory,
            error: error.map(String::from),
        },
    )
}

/// An engine asking one approval for everything, hv01 inventoried, hv02 reporting only the
/// network `dmz`, hv03 never polled.
async fn setup() -> (Broker, Engine) {
    let b = broker();
    for h in ["hv01", "hv02", "hv03"] {
        b.declare_host(h).await.expect("declare");
    }
    let mut e = engine(&b, policy(1, 3600), &["hv01", "hv02", "hv03"]);
    let now = tokio::time::Instant::now();
    e.handle_event(&inventory_event("hv01", true, hv01(), None), now);
    let hv02 = json!({"host": {"networks": [{"name": "dmz"}]}, "vms": []});
    e.handle_event(&inventory_event("hv02", true, hv02, None), now);
    (b, e)
}

async fn line(e: &mut Engine, user: &str, text: &str) -> Vec<Reply> {
    e.handle_line(&Principal::console(user), text)
        .await
        .expect("handled")
}

/// How many `approval.requested` events the stream holds.
async fn approvals_requested(b: &Broker) -> usize {
    let mut s = b.replay_events(StreamOffset::First).await.expect("replay");
    let mut n = 0;
    while let Ok(Some((_, ev))) = tokio::time::timeout(Duration::from_millis(200), s.next()).await {
        if matches!(ev.body, EventBody::ApprovalRequested { .. }) {
            n += 1;
        }
    }
    n
}

/// The single form-errors reply: `(field, code, message)` of each error.
fn form_errors(out: &[Reply]) -> Vec<(String, String, String)> {
    match out {
        [Reply::FormErrors { errors, .. }] => errors
            .iter()
            .map(|e| (e.field.clone(), e.code.clone(), e.message.clone()))
            .collect(),
        other => panic!("expected form errors, got {other:#?}"),
    }
}

/// The single notice's text.
fn notice_text(out: &[Reply]) -> String {
    match out {
        [Reply::Notice { message, .. }] => message.clone(),
        other => panic!("expected a notice, got {other:#?}"),
    }
}

#[tokio::test]
async fn a_deploy_of_a_name_that_exists_is_refused_on_vm_name() {
    let (b, mut e) = setup().await;
    let out = line(
        &mut e,
        "alice",
        "deploy vm vm_name=web-01 target_host=hv01 gb_ram=2 cpu_cores=1",
    )
    .await;
    let errors = form_errors(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "vm_name");
    assert_eq!(errors[0].1, "name_in_use");
    assert!(errors[0].2.contains("already exists on hv01"), "{errors:?}");
    // Names are compared as Hyper-V does, in any case.
    let out = line(
        &mut e,
        "alice",
        "deploy vm vm_name=WEB-01 target_host=hv01 gb_ram=2 cpu_cores=1",
    )
    .await;
    assert_eq!(form_errors(&out)[0].1, "name_in_use");
    assert!(e.jobs().is_empty());
    assert_eq!(approvals_requested(&b).await, 0);
}

#[tokio::test]
async fn a_deploy_to_a_host_shown_unreachable_is_refused_with_the_reason() {
    let (b, mut e) = setup().await;
    e.handle_event(
        &inventory_event(
            "hv01",
            false,
            Value::Null,
            Some("WinRM: connection refused"),
        ),
        tokio::time::Instant::now(),
    );
    let out = line(
        &mut e,
        "alice",
        "deploy vm vm_name=web-02 target_host=hv01 gb_ram=2 cpu_cores=1",
    )
    .await;
    let errors = form_errors(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "target_host");
    assert_eq!(errors[0].1, "host_unreachable");
    assert!(
        errors[0].2.contains("WinRM: connection refused"),
        "{errors:?}"
    );
    // The console shows it under the field.
    let shown = texts(&out).join("\n");
    assert!(shown.contains("target_host: "), "{shown}");
    assert_eq!(approvals_requested(&b).await, 0);
}

#[tokio::test]
async fn nic_add_on_a_network_the_host_lacks_is_refused_on_network() {
    let (b, mut e) = setup().await;
    let msg = notice_text(&line(&mut e, "alice", "nic add web-01 nonet").await);
    assert!(
        msg.contains("network: host hv01 has no network nonet"),
        "{msg}"
    );
    assert!(msg.contains("prod"), "the host's networks are named: {msg}");
    assert_eq!(approvals_requested(&b).await, 0);
    assert!(e.jobs().is_empty());
}

#[tokio::test]
async fn disk_add_beyond_the_forms_limit_is_refused_on_disk_size_gb() {
    let (b, mut e) = setup().await;
    let msg = notice_text(&line(&mut e, "alice", "disk add web-01 999999").await);
    assert!(
        msg.contains("disk_size_gb: a disk is 1 to 65536 GB"),
        "{msg}"
    );
    assert_eq!(approvals_requested(&b).await, 0);
    assert!(e.jobs().is_empty());
}

#[tokio::test]
async fn a_disk_shrink_is_refused_and_an_unknown_disk_too() {
    let (b, mut e) = setup().await;
    let msg = notice_text(&line(&mut e, "alice", &format!("disk resize web-01 {DISK} 20")).await);
    assert!(msg.contains("disk_size_gb: the disk is 40 GB"), "{msg}");
    // By file name, as the agent finds disks.
    let msg = notice_text(&line(&mut e, "alice", "disk resize web-01 web-01.vhdx 39").await);
    assert!(msg.contains("disk_size_gb: the disk is 40 GB"), "{msg}");
    let msg = notice_text(&line(&mut e, "alice", "disk resize web-01 other.vhdx 80").await);
    assert!(
        msg.contains("disk_id: VM web-01 has no disk other.vhdx"),
        "{msg}"
    );
    assert_eq!(approvals_requested(&b).await, 0);
    // Growing it passes the gate.
    let out = line(&mut e, "alice", &format!("disk resize web-01 {DISK} 80")).await;
    assert!(
        out.iter()
            .any(|r| matches!(r, Reply::ApprovalRequested { .. })),
        "{out:#?}"
    );
    assert_eq!(approvals_requested(&b).await, 1);
}

#[tokio::test]
async fn two_requests_for_one_new_name_the_second_is_refused_while_the_first_is_pending() {
    let (b, mut e) = setup().await;
    let deploy = "deploy vm vm_name=web-02 target_host=hv01 gb_ram=2 cpu_cores=1";
    let first = line(&mut e, "alice", deploy).await;
    assert!(
        first
            .iter()
            .any(|r| matches!(r, Reply::ApprovalRequested { .. })),
        "{first:#?}"
    );
    let short = e.jobs()[0].view.short.clone();
    let second = line(&mut e, "frank", deploy).await;
    let errors = form_errors(&second);
    assert_eq!(errors[0].0, "vm_name");
    assert_eq!(errors[0].1, "name_in_use");
    assert!(
        errors[0]
            .2
            .contains(&format!("claimed on hv01 by job {short}")),
        "{errors:?}"
    );
    // The same name on another host is another VM.
    let other = line(
        &mut e,
        "frank",
        "deploy vm vm_name=web-02 target_host=hv03 gb_ram=2 cpu_cores=1",
    )
    .await;
    assert!(other
        .iter()
        .any(|r| matches!(r, Reply::ApprovalRequested { .. })));
    assert_eq!(approvals_requested(&b).await, 2);
    // Once the first is rejected, the name is free again.
    say(&mut e, "bob", &format!("reject {short} not now")).await;
    let again = line(&mut e, "frank", deploy).await;
    assert!(
        again
            .iter()
            .any(|r| matches!(r, Reply::ApprovalRequested { .. })),
        "{again:#?}"
    );
}

#[tokio::test]
async fn a_form_with_a_network_another_host_has_is_invalid_inline() {
    let (b, _) = setup().await;
    let worker = aetherv_core::secrets::generate_identity();
    let mut e = engine_with(&b, policy(1, 3600), &["hv01"], vec![worker.to_public()]);
    let now = tokio::time::Instant::now();
    e.handle_event(&inventory_event("hv01", true, hv01(), None), now);
    let hv02 = json!({"host": {"networks": [{"name": "dmz"}]}, "vms": []});
    e.handle_event(&inventory_event("hv02", true, hv02, None), now);
    let fields: Map<String, Value> = json!({
        "vm_name": "app01", "target_host": "hv01", "guest_la_uid": "admin",
        "guest_la_pw": "Sup3rSecret!", "network": "dmz", "disk_size_gb": "40"
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let FormOutcome::Invalid(errors) = e
        .submit_form(&Principal::console("alice"), DeployForm::Managed, &fields)
        .await
        .expect("engine")
    else {
        panic!("a doomed form reached the policy");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "network");
    assert_eq!(errors[0].code, ErrorCode::UnknownChoice);
    assert_eq!(approvals_requested(&b).await, 0);
}

#[tokio::test]
async fn memory_must_fit_the_host() {
    let (b, mut e) = setup().await;
    // A VM left off may use all of the host's memory, not more.
    let out = line(
        &mut e,
        "alice",
        "deploy vm vm_name=big target_host=hv01 gb_ram=100 cpu_cores=1",
    )
    .await;
    let errors = form_errors(&out);
    assert_eq!(
        (errors[0].0.as_str(), errors[0].1.as_str()),
        ("gb_ram", "insufficient_memory")
    );
    assert!(errors[0].2.contains("(64 GB)"), "{errors:?}");
    // A managed deployment starts its VM: it must fit next to the 8 GB in use.
    let worker = aetherv_core::secrets::generate_identity();
    let mut e = engine_with(&b, policy(1, 3600), &["hv01"], vec![worker.to_public()]);
    e.handle_event(
        &inventory_event("hv01", true, hv01(), None),
        tokio::time::Instant::now(),
    );
    let out = line(
        &mut e,
        "alice",
        "deploy managed vm_name=app01 target_host=hv01 guest_la_uid=admin \
         guest_la_pw=Sup3rSecret! network=prod disk_size_gb=40 gb_ram=60",
    )
    .await;
    let errors = form_errors(&out);
    assert_eq!(errors[0].0, "gb_ram", "{errors:?}");
    assert!(errors[0].2.contains("56 of 64 GB are free"), "{errors:?}");
    assert_eq!(approvals_requested(&b).await, 0);
}

#[tokio::test]
async fn a_request_that_passes_the_gate_reaches_approval_also_on_a_host_never_polled() {
    let (b, mut e) = setup().await;
    let out = line(
        &mut e,
        "alice",
        "deploy vm vm_name=web-02 target_host=hv01 gb_ram=4 cpu_cores=2 storage_class=fast",
    )
    .await;
    assert!(
        out.iter()
            .any(|r| matches!(r, Reply::ApprovalRequested { .. })),
        "{out:#?}"
    );
    // hv03 never answered an inventory poll: nothing is known against it.
    let out = line(
        &mut e,
        "alice",
        "deploy vm vm_name=anything target_host=hv03 gb_ram=500 cpu_cores=2",
    )
    .await;
    assert!(
        out.iter()
            .any(|r| matches!(r, Reply::ApprovalRequested { .. })),
        "{out:#?}"
    );
    let out = line(&mut e, "alice", "nic add web-01 prod").await;
    assert!(out
        .iter()
        .any(|r| matches!(r, Reply::ApprovalRequested { .. })));
    assert_eq!(approvals_requested(&b).await, 3);
}

/// The gate itself, as AMQP requests will meet it: a VM that is not on the host, a storage
/// class the host lacks, a cluster target (not checked by the bot).
#[test]
fn the_gate_is_a_pure_function_of_state_and_request() {
    let mut st = State::new(aetherv_bot::thread::DEFAULT_LIMITS);
    st.apply(&inventory_event("hv01", true, hv01(), None), false);
    let forms = Forms::builtin().expect("forms");
    let spec = |v: Value| v.as_object().cloned().unwrap_or_default();
    let host = Target::Host("hv01".into());
    let errors = aetherv_bot::gate::check(
        &st,
        &forms,
        JobKind::VmDelete,
        &host,
        &spec(json!({"vm_name": "gone"})),
    )
    .expect_err("no such VM");
    assert_eq!(errors[0].field, "vm_name");
    assert_eq!(errors[0].code, ErrorCode::NotFound);
    let errors = aetherv_bot::gate::check(
        &st,
        &forms,
        JobKind::VmCreate,
        &host,
        &spec(json!({"vm_name": "new", "gb_ram": 2, "cpu_cores": 1, "storage_class": "slow"})),
    )
    .expect_err("no such storage class");
    assert_eq!(errors[0].field, "storage_class");
    assert_eq!(errors[0].code, ErrorCode::UnknownChoice);
    let errors = aetherv_bot::gate::check(
        &st,
        &forms,
        JobKind::VmPower,
        &Target::Host("hv09".into()),
        &spec(json!({"vm_name": "web-01", "action": "start"})),
    )
    .expect_err("unknown host");
    assert_eq!(errors[0].field, "target_host");
    assert!(aetherv_bot::gate::check(
        &st,
        &forms,
        JobKind::VmCreate,
        &Target::Cluster("c1".into()),
        &spec(json!({"vm_name": "web-01", "gb_ram": 2, "cpu_cores": 1})),
    )
    .is_ok());
    assert!(aetherv_bot::gate::check(
        &st,
        &forms,
        JobKind::VmPower,
        &host,
        &spec(json!({"vm_name": "web-01", "action": "start"})),
    )
    .is_ok());
}

/// The checks for `vm.update` and `nic.delete` (any front door: chat resolves names first, an
/// AMQP producer sends ids): the VM form's limits, the host's memory, an adapter the VM has.
#[test]
fn vm_update_and_nic_delete_are_checked_against_the_form_and_the_inventory() {
    let mut st = State::new(aetherv_bot::thread::DEFAULT_LIMITS);
    st.apply(&inventory_event("hv01", true, hv01(), None), false);
    let forms = Forms::builtin().expect("forms");
    let host = Target::Host("hv01".into());
    let check = |kind, v: Value| {
        let spec = v.as_object().cloned().unwrap_or_default();
        aetherv_bot::gate::check(&st, &forms, kind, &host, &spec)
    };
    let fields =
        |r: Result<(), Vec<aetherv_core::validate::FieldError>>| -> Vec<(String, ErrorCode)> {
            r.expect_err("refused")
                .into_iter()
                .map(|e| (e.field, e.code))
                .collect()
        };
    // Over the form's 512 GB and 64 processors; both named at once.
    assert_eq!(
        fields(check(
            JobKind::VmUpdate,
            json!({"vm_name": "web-01", "gb_ram": 600, "cpu_cores": 65})
        )),
        [
            ("gb_ram".to_string(), ErrorCode::OutOfRange),
            ("cpu_cores".to_string(), ErrorCode::OutOfRange)
        ]
    );
    // Within the form but more than hv01's 64 GB; the agent's alias names its own field.
    assert_eq!(
        fields(check(
            JobKind::VmUpdate,
            json!({"vm_name": "web-01", "memory_gb": 100})
        )),
        [("memory_gb".to_string(), ErrorCode::InsufficientMemory)]
    );
    assert_eq!(
        fields(check(
            JobKind::VmUpdate,
            json!({"vm_name": "gone", "gb_ram": 4})
        )),
        [("vm_name".to_string(), ErrorCode::NotFound)]
    );
    assert!(check(
        JobKind::VmUpdate,
        json!({"vm_name": "web-01", "gb_ram": 8, "cpu_cores": 4})
    )
    .is_ok());
    assert_eq!(
        fields(check(
            JobKind::NicDelete,
            json!({"vm_name": "web-01", "resource_id": "n9"})
        )),
        [("resource_id".to_string(), ErrorCode::NotFound)]
    );
    // By id or by adapter name, as the agent finds one.
    for id in ["n1", "ETH0"] {
        assert!(check(
            JobKind::NicDelete,
            json!({"vm_name": "web-01", "nic_id": id})
        )
        .is_ok());
    }
}
