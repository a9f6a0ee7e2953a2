//! The agent-operation state machine: Hyper-V semantics without any transport.

use aetherv_core::{AgentOperation, AgentOperation as Op, AgentRequest, AgentStatus};
use aetherv_sim::ops::{execute, OpOutput};
use aetherv_sim::{Fault, Guest, GuestEvent, HostSpec, HostState, Vm, VmState};
use serde_json::{json, Value};

fn host() -> HostState {
    HostState::new(HostSpec::with_defaults("hv01"))
}

/// Agent operations run straight on a host's state; `ok` and `code` check the outcome (success,
/// exit 0; error, exit 1) and return the data or the error code.
trait Ops {
    fn run(&mut self, op: AgentOperation, spec: Value) -> OpOutput;

    fn ok(&mut self, op: AgentOperation, spec: Value) -> Value {
        let o = self.run(op, spec);
        assert_eq!(o.result.status, AgentStatus::Success, "{:?}", o.result);
        assert_eq!(o.exit_code(), 0);
        o.result.data
    }

    fn code(&mut self, op: AgentOperation, spec: Value) -> String {
        let o = self.run(op, spec);
        assert_eq!(o.result.status, AgentStatus::Error, "{:?}", o.result);
        assert_eq!(o.exit_code(), 1);
        o.result.code.expect("code")
    }

    /// `op` fails with `code`.
    #[track_caller]
    fn fails_with(&mut self, op: AgentOperation, spec: Value, code: &str) {
        assert_eq!(self.code(op, spec), code);
    }
}

impl Ops for HostState {
    fn run(&mut self, op: AgentOperation, spec: Value) -> OpOutput {
        let Value::Object(spec) = spec else {
            panic!("object spec")
        };
        execute(
            self,
            &AgentRequest::new(op, spec, "job-1"),
            None,
            chrono::Utc::now(),
        )
    }
}

/// A host with one VM named `name`: (the host, the VM's id).
fn host_with_vm(name: &str) -> (HostState, String) {
    let mut h = host();
    let id = create_vm(&mut h, name);
    (h, id)
}

fn create_vm(h: &mut HostState, name: &str) -> String {
    let d = h.ok(
        Op::VmCreate,
        json!({"vm_name": name, "gb_ram": 4, "cpu_cores": 2, "storage_class": "fast", "notes": "aetherv-job:1"}),
    );
    d["vm_id"].as_str().expect("vm_id").to_string()
}

#[test]
fn vm_create_starts_off_in_the_storage_class_folder_with_notes() {
    let (mut h, id) = host_with_vm("web01");
    let vm = h.vm(&id).expect("vm");
    assert_eq!(vm.state, VmState::Off);
    assert_eq!(vm.path, r"C:\ClusterStorage\Volume1\VMs\web01");
    assert_eq!(vm.notes, "aetherv-job:1");
    assert_eq!((vm.cpu_cores, vm.memory_gb), (2, 4));
    let o = h.run(Op::VmCreate, json!({"vm_name": "x"}));
    assert!(
        o.logs.iter().any(|l| l.contains("Creating VM 'x'")),
        "{:?}",
        o.logs
    );
}

#[test]
fn vm_create_name_conflict_is_case_insensitive() {
    let mut h = host();
    create_vm(&mut h, "web01");
    h.fails_with(Op::VmCreate, json!({"vm_name": "WEB01"}), "name_conflict");
    assert_eq!(h.vms.len(), 1);
}

#[test]
fn vm_create_validates_storage_class_and_sizes() {
    let mut h = host();
    h.fails_with(
        Op::VmCreate,
        json!({"vm_name": "a", "storage_class": "nope"}),
        "not_found",
    );
    h.fails_with(
        Op::VmCreate,
        json!({"vm_name": "a", "cpu_cores": 65}),
        "invalid_argument",
    );
    h.fails_with(
        Op::VmCreate,
        json!({"vm_name": "a", "gb_ram": 0}),
        "invalid_argument",
    );
    h.fails_with(Op::VmCreate, json!({}), "invalid_argument");
    h.fails_with(
        Op::VmCreate,
        json!({"vm_name": "a", "os_family": "beos"}),
        "invalid_argument",
    );
    // Default storage class = the first.
    let d = h.ok(Op::VmCreate, json!({"vm_name": "a"}));
    assert_eq!(d["storage_class"], "fast");
}

#[test]
fn vm_get_by_id_or_name_and_mismatch() {
    let (mut h, id) = host_with_vm("web01");
    assert_eq!(
        h.ok(Op::VmGet, json!({"vm_name": "web01"}))["vm_id"],
        id.as_str()
    );
    assert_eq!(h.ok(Op::VmGet, json!({"vm_id": id}))["vm_name"], "web01");
    h.fails_with(Op::VmGet, json!({"vm_name": "nope"}), "not_found");
    create_vm(&mut h, "web02");
    h.fails_with(
        Op::VmGet,
        json!({"vm_id": id, "vm_name": "web02"}),
        "invalid_argument",
    );
}

#[test]
fn vm_update_cpu_and_memory_only_when_off() {
    let (mut h, id) = host_with_vm("web01");
    let d = h.ok(
        Op::VmUpdate,
        json!({"vm_id": id, "cpu_cores": 4, "gb_ram": 8, "notes": "n"}),
    );
    assert_eq!(
        d["updates_applied"],
        json!(["cpu_cores", "memory_gb", "notes"])
    );
    h.ok(Op::VmPower, json!({"vm_id": id, "action": "start"}));
    h.fails_with(
        Op::VmUpdate,
        json!({"vm_id": id, "cpu_cores": 2}),
        "invalid_state",
    );
    let d = h.ok(Op::VmUpdate, json!({"vm_id": id, "secure_boot": false}));
    assert_eq!(d["warnings"].as_array().map(Vec::len), Some(1));
    assert!(h.vm(&id).expect("vm").secure_boot);
}

#[test]
fn power_matrix_matches_hyperv() {
    use VmState::*;
    let actions = ["start", "shutdown", "stop", "reset"];
    // (from, action) -> resulting state, None = invalid_state.
    let expect = |from: VmState, action: &str| -> Option<VmState> {
        match (action, from) {
            ("start", Off | Paused | Saved) => Some(Running),
            ("shutdown", Running) => Some(Off),
            ("stop", Running | Paused | Saved) => Some(Off),
            ("reset", Running) => Some(Running),
            _ => None,
        }
    };
    for from in [Off, Running, Paused, Saved] {
        for action in actions {
            let mut h = host();
            let id = create_vm(&mut h, "vm");
            h.vms[0].state = from;
            let o = h.run(Op::VmPower, json!({"vm_id": id, "action": action}));
            match expect(from, action) {
                Some(to) => {
                    assert_eq!(
                        o.result.status,
                        AgentStatus::Success,
                        "{from:?} {action}: {:?}",
                        o.result
                    );
                    assert_eq!(h.vms[0].state, to, "{from:?} {action}");
                    assert_eq!(o.result.data["state"], to.as_str());
                }
                None => {
                    assert_eq!(
                        o.result.code.as_deref(),
                        Some("invalid_state"),
                        "{from:?} {action}"
                    );
                    assert_eq!(h.vms[0].state, from);
                }
            }
        }
    }
    let mut h = host();
    let id = create_vm(&mut h, "vm");
    h.fails_with(
        Op::VmPower,
        json!({"vm_id": id, "action": "explode"}),
        "invalid_argument",
    );
}

#[test]
fn start_fails_without_memory() {
    let mut h = host();
    h.spec.total_memory_gb = 6;
    let a = create_vm(&mut h, "a");
    let b = create_vm(&mut h, "b");
    h.ok(Op::VmPower, json!({"vm_id": a, "action": "start"}));
    h.fails_with(
        Op::VmPower,
        json!({"vm_id": b, "action": "start"}),
        "insufficient_memory",
    );
}

#[test]
fn vm_delete_guards() {
    let (mut h, id) = host_with_vm("web01");
    h.ok(Op::DiskCreate, json!({"vm_id": id, "disk_size_gb": 20}));
    h.ok(Op::VmPower, json!({"vm_id": id, "action": "start"}));
    h.fails_with(Op::VmDelete, json!({"vm_id": id}), "invalid_state");
    h.fails_with(
        Op::VmDelete,
        json!({"vm_id": id, "force": true}),
        "disks_attached",
    );
    h.vms[0].disks[0].shared = true;
    h.fails_with(
        Op::VmDelete,
        json!({"vm_id": id, "force": true, "delete_disks": true}),
        "shared_disk",
    );
    h.vms[0].disks[0].shared = false;
    let d = h.ok(
        Op::VmDelete,
        json!({"vm_id": id, "force": true, "delete_disks": true}),
    );
    assert_eq!(d["status"], "deleted");
    assert_eq!(d["disk_count"], 1);
    assert!(h.vms.is_empty());
    h.fails_with(Op::VmDelete, json!({"vm_id": id}), "not_found");
}

#[test]
fn disk_create_blank_and_clone_use_first_free_scsi_slot() {
    let (mut h, id) = host_with_vm("web01");
    let a = h.ok(
        Op::DiskCreate,
        json!({"vm_id": id, "disk_size_gb": 20, "file_tag": "job1"}),
    );
    assert_eq!(a["controller_location"], 0);
    let path = a["disk_path"].as_str().expect("path");
    assert!(
        path.starts_with(r"C:\ClusterStorage\Volume1\VMs\web01\web01-disk-")
            && path.ends_with("-job1.vhdx"),
        "{path}"
    );
    let b = h.ok(
        Op::DiskCreate,
        json!({"vm_id": id, "image_name": "ubuntu 24.04"}),
    );
    assert_eq!(b["controller_location"], 1);
    assert_eq!(b["size_gb"], 30);
    assert!(b["disk_path"]
        .as_str()
        .expect("path")
        .contains(r"\Ubuntu 24.04-"));
    // Free the first slot; the next disk takes it.
    h.ok(
        Op::DiskDelete,
        json!({"vm_id": id, "resource_id": a["disk_id"]}),
    );
    let c = h.ok(
        Op::DiskCreate,
        json!({"vm_id": id, "disk_size_gb": 5, "file_name": "data.vhdx"}),
    );
    assert_eq!(c["controller_location"], 0);
    h.fails_with(
        Op::DiskCreate,
        json!({"vm_id": id, "disk_size_gb": 5, "file_name": "data.vhdx"}),
        "name_conflict",
    );
    // A clone is at least as large as its image: a smaller size keeps the image's size.
    let small = h.ok(
        Op::DiskCreate,
        json!({"vm_id": id, "image_name": "Ubuntu 24.04", "disk_size_gb": 10}),
    );
    assert_eq!(small["size_gb"], 30);
    h.fails_with(
        Op::DiskCreate,
        json!({"vm_id": id, "image_name": "Nope"}),
        "not_found",
    );
    h.fails_with(
        Op::DiskCreate,
        json!({"vm_id": id, "disk_size_gb": 5, "controller_type": "IDE"}),
        "invalid_argument",
    );
    h.fails_with(Op::DiskCreate, json!({"vm_id": id}), "invalid_argument");
}

#[test]
fn disk_update_expands_only() {
    let (mut h, id) = host_with_vm("web01");
    let d = h.ok(Op::DiskCreate, json!({"vm_id": id, "disk_size_gb": 20}));
    let disk = d["disk_id"].clone();
    h.fails_with(
        Op::DiskUpdate,
        json!({"vm_id": id, "resource_id": disk, "disk_size_gb": 10}),
        "invalid_argument",
    );
    let u = h.ok(
        Op::DiskUpdate,
        json!({"vm_id": id, "resource_id": disk, "disk_size_gb": 40}),
    );
    assert_eq!(u["size_gb"], 40);
    let same = h.ok(
        Op::DiskUpdate,
        json!({"vm_id": id, "resource_id": disk, "disk_size_gb": 40}),
    );
    assert_eq!(same["updates_applied"], json!([]));
    h.fails_with(
        Op::DiskUpdate,
        json!({"vm_id": id, "resource_id": "nope", "disk_size_gb": 40}),
        "not_found",
    );
}

#[test]
fn nic_network_resolution_and_default_names() {
    let (mut h, id) = host_with_vm("web01");
    let a = h.ok(Op::NicCreate, json!({"vm_id": id, "network": "prod"}));
    assert_eq!(
        (a["virtual_switch"].as_str(), a["vlan_id"].as_u64()),
        (Some("External"), Some(100))
    );
    assert_eq!(a["adapter_name"], "Network Adapter 1");
    assert!(a["mac_address"]
        .as_str()
        .expect("mac")
        .starts_with("00155D"));
    let b = h.ok(Op::NicCreate, json!({"vm_id": id, "network": "dev"}));
    assert_eq!(b["adapter_name"], "Network Adapter 2");
    assert_eq!(b["vlan_id"], 200);
    h.fails_with(
        Op::NicCreate,
        json!({"vm_id": id, "network": "dmz"}),
        "not_found",
    );
    let u = h.ok(
        Op::NicUpdate,
        json!({"vm_id": id, "resource_id": b["nic_id"], "network": "prod", "dhcp_guard": true}),
    );
    assert_eq!(u["updates_applied"], json!(["network", "dhcp_guard"]));
    assert_eq!(h.vms[0].nics[1].vlan_id, Some(100));
    h.ok(
        Op::NicDelete,
        json!({"vm_id": id, "resource_id": a["nic_id"]}),
    );
    assert_eq!(h.vms[0].nics.len(), 1);
    h.fails_with(
        Op::NicDelete,
        json!({"vm_id": id, "resource_id": a["nic_id"]}),
        "not_found",
    );
}

struct EchoGuest;
impl Guest for EchoGuest {
    fn on_event(&self, vm: &mut Vm, event: &GuestEvent) {
        if let GuestEvent::HostKvpWritten { keys } = event {
            for k in keys {
                if let Some(v) = vm.host_kvp.get(k).cloned() {
                    vm.guest_kvp.insert(format!("echo.{k}"), v);
                }
            }
            vm.applied_config = Some(json!({"keys": keys}));
        }
    }
}

#[test]
fn kvp_write_read_remove_and_the_guest_hook() {
    let (mut h, id) = host_with_vm("web01");
    let spec = json!({"vm_id": id, "items": {"hlvmm.meta.version": "1.0"}});
    let req = AgentRequest::new(
        Op::KvpWrite,
        spec.as_object().cloned().expect("obj"),
        "job-1",
    );
    let o = execute(&mut h, &req, Some(&EchoGuest), chrono::Utc::now());
    assert!(o.result.is_ok());
    let r = h.ok(Op::KvpRead, json!({"vm_id": id}));
    assert_eq!(r["items"], json!({"echo.hlvmm.meta.version": "1.0"}));
    let r = h.ok(
        Op::KvpRead,
        json!({"vm_id": id, "source": "host", "keys": ["hlvmm.meta.version"]}),
    );
    assert_eq!(r["items"], json!({"hlvmm.meta.version": "1.0"}));
    let r = h.ok(
        Op::KvpRemove,
        json!({"vm_id": id, "keys": ["hlvmm.meta.version", "absent"]}),
    );
    assert_eq!(r["removed"], json!(["hlvmm.meta.version"]));
    assert!(h.vms[0].host_kvp.is_empty());
    assert_eq!(
        h.vms[0].applied_config,
        Some(json!({"keys": ["hlvmm.meta.version"]}))
    );
    h.fails_with(
        Op::KvpWrite,
        json!({"vm_id": id, "items": {"k": 1}}),
        "invalid_argument",
    );
}

#[test]
fn iso_and_cluster_operations() {
    let (mut h, id) = host_with_vm("web01");
    let a = h.ok(Op::IsoAttach, json!({"vm_id": id}));
    assert!(a["iso_path"]
        .as_str()
        .expect("iso")
        .contains("WindowsProvisioning-web01-"));
    assert_eq!(h.ok(Op::IsoDetach, json!({"vm_id": id}))["detached"], true);
    assert_eq!(h.ok(Op::IsoDetach, json!({"vm_id": id}))["detached"], false);
    assert_eq!(
        h.ok(Op::ClusterAdd, json!({"vm_id": id}))["cluster"],
        "clu01"
    );
    assert!(h.vms[0].clustered);
    h.ok(Op::ClusterRemove, json!({"vm_id": id}));
    assert!(!h.vms[0].clustered);
    h.spec.cluster = None;
    h.fails_with(Op::ClusterAdd, json!({"vm_id": id}), "invalid_state");
}

#[test]
fn host_inventory_reports_resources_capacity_and_vms() {
    let mut h = host();
    create_vm(&mut h, "web01");
    let d = h.ok(Op::HostInventory, json!({}));
    assert_eq!(d["host"]["total_memory_gb"], 256);
    assert_eq!(d["host"]["total_cpu_cores"], 64);
    assert_eq!(d["host"]["available_memory_gb"], 252);
    assert_eq!(d["host"]["cluster_name"], "clu01");
    assert_eq!(
        d["host"]["networks"][0]["configuration"],
        json!({"virtual_switch": "External", "vlan_id": 100})
    );
    assert_eq!(d["host"]["images"][1]["os_family"], "linux");
    assert_eq!(d["vms"][0]["vm_name"], "web01");
    assert_eq!(d["vms"][0]["state"], "Off");
}

#[test]
fn injected_fault_fails_once_without_changing_state() {
    let mut h = host();
    h.faults.push(Fault {
        code: "disk_full".into(),
        message: "There is not enough space on the disk.".into(),
        ..Fault::once("vm.create")
    });
    h.fails_with(Op::VmCreate, json!({"vm_name": "a"}), "disk_full");
    assert!(h.vms.is_empty());
    create_vm(&mut h, "a");
}

#[test]
fn noop_echoes_spec() {
    let mut h = host();
    let d = h.ok(Op::Noop, json!({"test_field": "x"}));
    assert_eq!(d["echo"], json!({"test_field": "x"}));
}

#[test]
fn unknown_fields_are_ignored_with_a_warning() {
    let mut h = host();
    let o = h.run(Op::VmCreate, json!({"vm_name": "a", "ram_gb": 4}));
    assert!(o.result.is_ok());
    assert!(
        o.logs
            .iter()
            .any(|l| l == "WARNING: ignoring unknown field 'ram_gb'"),
        "{:?}",
        o.logs
    );
    let o = h.run(Op::VmGet, json!({"vm_name": "a"}));
    assert!(
        !o.logs.iter().any(|l| l.contains("WARNING")),
        "{:?}",
        o.logs
    );
}

#[test]
fn form_fields_are_honoured() {
    let mut h = host();
    let o = h.run(
        Op::VmCreate,
        json!({"vm_name": "c1", "vm_clustered": true, "target_host": "hv01"}),
    );
    assert!(
        !o.logs.iter().any(|l| l.contains("WARNING")),
        "{:?}",
        o.logs
    );
    let d = o.result.data;
    assert_eq!(d["clustered"], true);
    let id = d["vm_id"].as_str().expect("id").to_string();
    let o = h.run(
        Op::DiskCreate,
        json!({"vm_id": id, "disk_size_gb": 8, "storage_class": "bulk", "target_host": "hv01"}),
    );
    assert!(
        o.result.is_ok() && !o.logs.iter().any(|l| l.contains("WARNING")),
        "{:?}",
        o.logs
    );
    assert!(o.result.data["disk_path"]
        .as_str()
        .expect("path")
        .starts_with(r"C:\ClusterStorage\Volume2\VMs\c1\"));
    let n = h.ok(
        Op::NicCreate,
        json!({"vm_id": id, "network": "prod", "vlan_id": 123}),
    );
    assert_eq!(
        (n["virtual_switch"].as_str(), n["vlan_id"].as_u64()),
        (Some("External"), Some(123))
    );
    h.fails_with(
        Op::NicCreate,
        json!({"vm_id": id, "network": "prod", "vlan_id": 5000}),
        "invalid_argument",
    );
    h.spec.cluster = None;
    h.fails_with(
        Op::VmCreate,
        json!({"vm_name": "c2", "vm_clustered": true}),
        "invalid_state",
    );
}
