//! The provisioning guest playing the KVP exchange through agent operations, with real crypto:
//! the host side seals the data with `aetherv_core::kvp::crypto::seal` for the key the guest
//! published, the guest decrypts and applies it.

use crate::journal::{job, req};
use aetherv_core::kvp::crypto::{seal, GuestPublicKey, KeyFormat};
use aetherv_core::kvp::meta;
use aetherv_core::AgentOperation;
use aetherv_sim::guest::{faults, secret_digest};
use aetherv_sim::{Fault, ProvisioningGuest, Sim, SimConfig};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

async fn kvp(sim: &Sim, op: AgentOperation, spec: Value) -> Value {
    let r = sim
        .run_agent("hv01", req(op, spec, "inventory", None))
        .await
        .expect("host");
    assert!(r.result.is_ok(), "{:?}", r.result);
    r.result.data
}

struct Run {
    sim: Sim,
    items: Value,
    format: Option<KeyFormat>,
}

/// Creates and starts a VM of `family`, runs the exchange with `version`, and returns the guest's
/// final items. `tamper` replaces the checksum with a wrong one.
async fn provisioned_vm(sim: Sim, family: &str, version: &str, tamper: bool) -> Run {
    let j = job();
    let vm = sim
        .run_agent(
            "hv01",
            req(
                AgentOperation::VmCreate,
                json!({"vm_name": "g1", "os_family": family}),
                &j,
                None,
            ),
        )
        .await
        .expect("host");
    let id = vm.result.data["vm_id"].clone();
    sim.run_agent(
        "hv01",
        req(
            AgentOperation::NicCreate,
            json!({"vm_id": id, "network": "prod"}),
            &j,
            None,
        ),
    )
    .await
    .expect("host");
    kvp(&sim, AgentOperation::KvpWrite, json!({"vm_id": id, "items": {meta::VERSION: version, meta::HOST_STATE: "waitingforpublickey"}})).await;
    // The guest only answers once the VM runs.
    let before = kvp(&sim, AgentOperation::KvpRead, json!({"vm_id": id})).await;
    assert_eq!(before["items"], json!({}));
    sim.run_agent(
        "hv01",
        req(
            AgentOperation::VmPower,
            json!({"vm_id": id, "action": "start"}),
            &j,
            None,
        ),
    )
    .await
    .expect("host");
    let ready = kvp(&sim, AgentOperation::KvpRead, json!({"vm_id": id})).await;
    if ready["items"][meta::GUEST_STATE] != "waitingforaeskey" {
        return Run {
            sim,
            items: ready["items"].clone(),
            format: None,
        };
    }
    let key = GuestPublicKey::from_base64(
        ready["items"][meta::GUEST_PUBLIC_KEY]
            .as_str()
            .expect("public key"),
    )
    .expect("guest key parses");
    let long = "k".repeat(150);
    let plain: BTreeMap<String, String> = [
        ("hlvmm.data.guest_host_name", "g1"),
        ("hlvmm.data.guest_la_pw", "s3cret"),
        ("hlvmm.data.guest_v4_ip_addr", "10.0.0.5"),
        ("hlvmm.data.ansible_ssh_key", long.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut items = seal(&key, &plain).expect("seal");
    assert!(items.contains_key("hlvmm.data.ansible_ssh_key._1"));
    if tamper {
        items.insert(meta::CHECKSUM.into(), "bad".into());
    }
    kvp(
        &sim,
        AgentOperation::KvpWrite,
        json!({"vm_id": id, "items": items}),
    )
    .await;
    kvp(
        &sim,
        AgentOperation::KvpWrite,
        json!({"vm_id": id, "items": {meta::HOST_STATE: "provisioningdatapublished"}}),
    )
    .await;
    let done = kvp(&sim, AgentOperation::KvpRead, json!({"vm_id": id})).await;
    Run {
        sim,
        items: done["items"].clone(),
        format: Some(key.format()),
    }
}

fn sim() -> Sim {
    Sim::new(SimConfig::with_hosts(1))
}

#[tokio::test]
async fn default_guest_decrypts_and_applies_for_both_key_formats() {
    for (family, format) in [
        ("windows", KeyFormat::CapiBlob),
        ("linux", KeyFormat::Pkcs1Der),
    ] {
        let run = provisioned_vm(sim(), family, "1.2.3", false).await;
        assert_eq!(run.format, Some(format));
        assert_eq!(
            run.items[meta::GUEST_STATE],
            "provisioningapplied",
            "{}",
            run.items
        );
        let view = run.sim.host_view("hv01").expect("host");
        let applied = &view["vms"][0]["applied_config"];
        assert_eq!(applied["guest_host_name"], "g1");
        // Secrets are hashed in the served view, plaintext only through the library accessor.
        assert_eq!(applied["guest_la_pw"], secret_digest("s3cret"));
        assert_eq!(applied["ansible_ssh_key"], secret_digest(&"k".repeat(150)));
        assert!(!view.to_string().contains("s3cret"));
        // The applied static address is what the first adapter reports while the VM runs.
        let nic = &view["vms"][0]["nics"][0];
        assert_eq!(nic["ip_addresses"], json!(["10.0.0.5"]));
        assert_eq!(nic["virtual_switch"], "External");
        let j = job();
        let id = view["vms"][0]["vm_id"].clone();
        let stop = json!({"vm_id": id, "action": "stop"});
        run.sim
            .run_agent("hv01", req(AgentOperation::VmPower, stop, &j, None))
            .await
            .expect("host");
        let inv = kvp(&run.sim, AgentOperation::HostInventory, json!({})).await;
        assert_eq!(inv["vms"][0]["nics"][0]["ip_addresses"], json!([]));
        let full = run
            .sim
            .applied_config_unredacted("hv01", "g1")
            .expect("applied");
        assert_eq!(full["guest_la_pw"], "s3cret");
        assert_eq!(full["ansible_ssh_key"].as_str().map(str::len), Some(150));
    }
}

#[tokio::test]
async fn checksum_manifest_and_injected_failures_are_reported() {
    let run = provisioned_vm(sim(), "windows", "1.2.3", true).await;
    assert_eq!(run.items[meta::GUEST_STATE], "provisioningfailed");
    assert_eq!(run.items[meta::GUEST_ERROR], "error validating:checksum");

    let s = sim();
    s.set_guest(Arc::new(
        ProvisioningGuest::new().expecting_version("1.2.3"),
    ));
    let run = provisioned_vm(s, "windows", "9.9.9", false).await;
    assert_eq!(run.items[meta::GUEST_STATE], "provisioningfailed");
    assert_eq!(run.items[meta::GUEST_ERROR], "error validating:manifest");

    for (fault, summary) in [
        (faults::BAD_CHECKSUM, "error validating:checksum"),
        (faults::APPLY_FAILED, "error applying:modules"),
    ] {
        let s = sim();
        assert!(s.inject_fault("hv01", Fault::once(fault)));
        let run = provisioned_vm(s, "linux", "1.2.3", false).await;
        assert_eq!(run.items[meta::GUEST_STATE], "provisioningfailed");
        assert_eq!(run.items[meta::GUEST_ERROR], summary);
        assert!(run.sim.host_view("hv01").expect("host")["vms"][0]["applied_config"].is_null());
    }

    let s = sim();
    assert!(s.inject_fault("hv01", Fault::once(faults::NO_ANSWER)));
    let run = provisioned_vm(s, "windows", "1.2.3", false).await;
    assert!(run.items.get(meta::GUEST_PUBLIC_KEY).is_none());
    assert_ne!(run.items[meta::GUEST_STATE], "waitingforaeskey");
}
