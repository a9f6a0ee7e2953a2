//! Issue 16, findings 1 and 5: the host refuses names that would leave its folders, and disk
//! files are named after the request, not the clock.

use crate::journal::{job, req};
use aetherv_core::{AgentOperation as Op, AgentStatus};
use aetherv_sim::{Sim, SimConfig};
use serde_json::{json, Value};

async fn run(sim: &Sim, op: Op, spec: Value, job: &str) -> aetherv_core::AgentResult {
    let key = format!("{job}:{op}:{op}");
    sim.run_agent("hv01", req(op, spec, job, Some(&key)))
        .await
        .expect("host")
        .result
}

#[tokio::test]
async fn vm_create_refuses_a_name_that_leaves_the_vm_folder_even_unvalidated() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    for bad in [
        "..\\..\\..\\Windows\\Temp\\evil",
        "../x",
        "..",
        "a:b",
        "CON",
    ] {
        let r = run(&sim, Op::VmCreate, json!({"vm_name": bad}), &job()).await;
        assert_eq!(r.status, AgentStatus::Error, "{bad:?}: {r:?}");
        assert_eq!(r.code.as_deref(), Some("invalid_argument"), "{bad:?}");
    }
    let inv = run(&sim, Op::HostInventory, json!({}), &job()).await;
    assert_eq!(inv.data["vms"], json!([]), "no VM was created");
}

#[tokio::test]
async fn three_disks_added_within_a_second_get_distinct_files() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    let vm = run(&sim, Op::VmCreate, json!({"vm_name": "web-01"}), &job()).await;
    let id = vm.data["vm_id"].clone();
    let mut paths = Vec::new();
    for _ in 0..3 {
        let r = run(
            &sim,
            Op::DiskCreate,
            json!({"vm_id": id, "disk_size_gb": 10}),
            &job(),
        )
        .await;
        assert_eq!(r.status, AgentStatus::Success, "{r:?}");
        paths.push(r.data["disk_path"].as_str().expect("path").to_string());
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(
        paths.iter().all(|p| p.contains("\\web-01-disk-")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn a_repeated_disk_request_names_the_same_file() {
    let sim = Sim::new(SimConfig::with_hosts(1));
    let vm = run(&sim, Op::VmCreate, json!({"vm_name": "web-02"}), &job()).await;
    let id = vm.data["vm_id"].clone();
    let j = job();
    let key = format!("{j}:disk");
    let spec = json!({"vm_id": id, "disk_size_gb": 10});
    let first = sim
        .run_agent("hv01", req(Op::DiskCreate, spec.clone(), &j, Some(&key)))
        .await
        .expect("host");
    let again = sim
        .run_agent("hv01", req(Op::DiskCreate, spec, &j, Some(&key)))
        .await
        .expect("host");
    assert_eq!(
        first.result.data["disk_path"],
        again.result.data["disk_path"]
    );
    let stem = aetherv_core::validate::resource_name::disk_file_stem("web-02", &key);
    let path = first.result.data["disk_path"].as_str().expect("path");
    assert!(path.ends_with(&format!("\\{stem}.vhdx")), "{path}");
}
