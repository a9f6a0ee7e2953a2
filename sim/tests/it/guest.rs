//! The provisioning guest playing the KVP exchange through agent operations.

use crate::journal::{job, req};
use aetherv_core::kvp::{checksum, meta};
use aetherv_core::AgentOperation;
use aetherv_sim::ProvisioningGuest;
use aetherv_sim::{Sim, SimConfig};
use serde_json::{json, Value};
use std::sync::Arc;

async fn kvp(sim: &Sim, op: AgentOperation, spec: Value) -> Value {
    let r = sim
        .run_agent("hv01", req(op, spec, "inventory", None))
        .await
        .expect("host");
    assert!(r.result.is_ok(), "{:?}", r.result);
    r.result.data
}

async fn provisioned_vm(version: &str, tamper: bool) -> (Sim, Value) {
    let sim = Sim::new(SimConfig::with_hosts(1));
    sim.set_guest(Arc::new(ProvisioningGuest {
        public_key_b64: "UFVCS0VZ".into(),
        decrypt: None,
        expected_version: Some("1.2.3".into()),
    }));
    let j = job();
    let vm = sim
        .run_agent(
            "hv01",
            req(AgentOperation::VmCreate, json!({"vm_name": "g1"}), &j, None),
        )
        .await
        .expect("host");
    let id = vm.result.data["vm_id"].clone();
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
    if version != "1.2.3" {
        assert_eq!(
            ready["items"][meta::GUEST_ERROR],
            "error validating:manifest"
        );
        return (sim, ready);
    }
    assert_eq!(ready["items"][meta::GUEST_STATE], "waitingforaeskey");
    assert_eq!(ready["items"][meta::GUEST_PUBLIC_KEY], "UFVCS0VZ");
    let long = "k".repeat(150);
    let plain: std::collections::BTreeMap<String, String> = [
        ("hlvmm.data.guest_host_name".to_string(), "g1".to_string()),
        ("hlvmm.data.guest_la_pw".to_string(), "s3cret".to_string()),
        ("hlvmm.data.ansible_ssh_key".to_string(), long.clone()),
    ]
    .into_iter()
    .collect();
    let sum = if tamper {
        "bad".to_string()
    } else {
        checksum(&plain)
    };
    kvp(
        &sim,
        AgentOperation::KvpWrite,
        json!({"vm_id": id, "items": {
            meta::CHECKSUM: sum,
            meta::SHARED_AES_KEY: "wrapped",
            "hlvmm.data.guest_host_name": "g1",
            "hlvmm.data.guest_la_pw": "s3cret",
            "hlvmm.data.ansible_ssh_key._0": &long[..100],
            "hlvmm.data.ansible_ssh_key._1": &long[100..],
        }}),
    )
    .await;
    kvp(
        &sim,
        AgentOperation::KvpWrite,
        json!({"vm_id": id, "items": {meta::HOST_STATE: "provisioningdatapublished"}}),
    )
    .await;
    let done = kvp(&sim, AgentOperation::KvpRead, json!({"vm_id": id})).await;
    (sim, done)
}

#[tokio::test]
async fn provisioning_guest_plays_the_kvp_exchange() {
    let (sim, done) = provisioned_vm("1.2.3", false).await;
    assert_eq!(
        done["items"][meta::GUEST_STATE],
        "provisioningapplied",
        "{done}"
    );
    let view = sim.host_view("hv01").expect("host");
    let applied = &view["vms"][0]["applied_config"];
    assert_eq!(applied["guest_host_name"], "g1");
    assert_eq!(applied["ansible_ssh_key"].as_str().map(str::len), Some(150));
    let pw = applied["guest_la_pw"].as_str().expect("pw");
    assert!(pw.starts_with("sha256:") && !pw.contains("s3cret"));
}

#[tokio::test]
async fn provisioning_guest_reports_checksum_and_manifest_failures() {
    let (_, done) = provisioned_vm("1.2.3", true).await;
    assert_eq!(done["items"][meta::GUEST_STATE], "provisioningfailed");
    assert_eq!(
        done["items"][meta::GUEST_ERROR],
        "error validating:checksum"
    );
    let (_, failed) = provisioned_vm("9.9.9", false).await;
    assert_eq!(failed["items"][meta::GUEST_STATE], "provisioningfailed");
}
