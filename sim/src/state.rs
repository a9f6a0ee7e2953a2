//! The in-memory model of one Hyper-V host: its resources, VMs, disks, NICs, KVP items and
//! injected faults, plus the JSON views of them (`vm.get`, `host.inventory`, `/sim/hosts/<host>`).
//!
//! No I/O and no clock other than what callers pass in. The operations that change this model
//! live in [`crate::ops`].

use crate::config::HostSpec;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A VM's power state, named as `Get-VM` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    /// Stopped.
    Off,
    /// Running.
    Running,
    /// Paused (memory kept in RAM).
    Paused,
    /// Saved (memory written to disk).
    Saved,
}

impl VmState {
    /// The name `Get-VM` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Off => "Off",
            VmState::Running => "Running",
            VmState::Paused => "Paused",
            VmState::Saved => "Saved",
        }
    }
}

/// A virtual hard disk attached to a VM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disk {
    /// Stable id (a UUID here; Hyper-V uses a drive instance id).
    pub id: String,
    /// VHDX path.
    pub path: String,
    /// Virtual size.
    pub size_gb: u64,
    /// `Dynamic` or `Fixed`.
    pub disk_type: String,
    /// The image it was cloned from, if any.
    pub image: Option<String>,
    /// Always `SCSI` (generation 2 VMs).
    pub controller_type: String,
    /// SCSI controller number.
    pub controller_number: u8,
    /// Location on the controller (0..63).
    pub controller_location: u8,
    /// A shared VHDX (`SupportPersistentReservations`); guards `vm.delete`.
    pub shared: bool,
}

/// A synthetic network adapter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Nic {
    /// Stable id.
    pub id: String,
    /// Adapter name (`Network Adapter 1`).
    pub name: String,
    /// Logical network it was resolved from.
    pub network: Option<String>,
    /// Virtual switch.
    pub virtual_switch: String,
    /// Access VLAN; `None` = untagged.
    pub vlan_id: Option<u16>,
    /// MAC address (`00155D……`).
    pub mac_address: String,
    /// DHCP guard.
    pub dhcp_guard: bool,
    /// Router guard.
    pub router_guard: bool,
    /// MAC address spoofing.
    pub mac_spoofing: bool,
    /// Addresses the guest configured on this adapter (the static address a guest
    /// initialization applied); Hyper-V reports them only while the VM runs.
    pub ip_addresses: Vec<String>,
}

/// One VM and everything attached to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vm {
    /// VM id (UUID).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Power state.
    pub state: VmState,
    /// Virtual processors.
    pub cpu_cores: u32,
    /// Startup memory.
    pub memory_gb: u64,
    /// Dynamic memory enabled.
    pub dynamic_memory: bool,
    /// `windows` or `linux`.
    pub os_family: String,
    /// Notes (the worker tags resources with the job id here).
    pub notes: String,
    /// VM folder (`<storage class path>\<name>`).
    pub path: String,
    /// Storage class it was placed in.
    pub storage_class: String,
    /// Always 2.
    pub generation: u8,
    /// Secure boot.
    pub secure_boot: bool,
    /// Virtual TPM.
    pub tpm: bool,
    /// Registered with the failover cluster.
    pub clustered: bool,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Attached disks.
    pub disks: Vec<Disk>,
    /// Network adapters.
    pub nics: Vec<Nic>,
    /// ISO in the DVD drive.
    pub dvd_iso: Option<String>,
    /// KVP items the host wrote (`HostExchangeItems`).
    pub host_kvp: BTreeMap<String, String>,
    /// KVP items the guest published (`GuestExchangeItems`).
    pub guest_kvp: BTreeMap<String, String>,
    /// The configuration the guest reports it applied (set by a guest hook).
    pub applied_config: Option<Value>,
}

impl Vm {
    /// The JSON view used by `vm.get`, `host.inventory` and `/sim/hosts/<host>`.
    pub fn view(&self) -> Value {
        json!({
            "vm_id": self.id,
            "vm_name": self.name,
            "state": self.state.as_str(),
            "cpu_cores": self.cpu_cores,
            "memory_gb": self.memory_gb,
            "dynamic_memory": self.dynamic_memory,
            "os_family": self.os_family,
            "notes": self.notes,
            "path": self.path,
            "storage_class": self.storage_class,
            "generation": self.generation,
            "secure_boot": self.secure_boot,
            "tpm": self.tpm,
            "clustered": self.clustered,
            "created_at": self.created_at,
            "dvd_iso": self.dvd_iso,
            "disks": self.disks.iter().map(disk_view).collect::<Vec<_>>(),
            "nics": self.nics.iter().map(|n| {
                let mut v = nic_view(n);
                // The integration services report a guest's addresses only while it runs.
                let running = matches!(self.state, VmState::Running | VmState::Paused);
                if let Some(o) = v.as_object_mut() {
                    let shown = if running { n.ip_addresses.clone() } else { Vec::new() };
                    o.insert("ip_addresses".into(), json!(shown));
                }
                v
            }).collect::<Vec<_>>(),
        })
    }
}

/// JSON view of a disk.
pub fn disk_view(d: &Disk) -> Value {
    json!({
        "disk_id": d.id,
        "disk_path": d.path,
        "size_gb": d.size_gb,
        "disk_type": d.disk_type,
        "image_name": d.image,
        "controller_type": d.controller_type,
        "controller_number": d.controller_number,
        "controller_location": d.controller_location,
        "shared": d.shared,
    })
}

/// JSON view of a NIC.
pub fn nic_view(n: &Nic) -> Value {
    json!({
        "nic_id": n.id,
        "adapter_name": n.name,
        "network": n.network,
        "virtual_switch": n.virtual_switch,
        "vlan_id": n.vlan_id,
        "mac_address": n.mac_address,
        "dhcp_guard": n.dhcp_guard,
        "router_guard": n.router_guard,
        "mac_spoofing": n.mac_spoofing,
    })
}

/// An injected failure: the next `times` executions of `operation` fail with `code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Wire name of the operation to fail (`disk.create`).
    pub operation: String,
    /// How many executions fail (each one consumes one).
    #[serde(default = "one")]
    pub times: u32,
    /// Error code in the agent result.
    #[serde(default = "injected")]
    pub code: String,
    /// Error message in the agent result.
    #[serde(default = "injected_message")]
    pub message: String,
}

fn one() -> u32 {
    1
}
fn injected() -> String {
    "injected".into()
}
fn injected_message() -> String {
    "injected fault".into()
}

impl Fault {
    /// A fault failing `operation` once with code `injected`.
    pub fn once(operation: &str) -> Self {
        Fault {
            operation: operation.to_string(),
            times: 1,
            code: injected(),
            message: injected_message(),
        }
    }
}

/// The state of one host.
#[derive(Debug, Clone)]
pub struct HostState {
    /// The host's configuration and resources.
    pub spec: HostSpec,
    /// VMs in creation order.
    pub vms: Vec<Vm>,
    /// Pending injected faults.
    pub faults: Vec<Fault>,
    /// Counter for generated MAC addresses.
    pub(crate) next_mac: u32,
    /// The host's files (the installed agent bundle; see [`crate::deploy`]).
    pub files: crate::deploy::HostFiles,
}

impl HostState {
    /// An empty host.
    pub fn new(spec: HostSpec) -> Self {
        HostState {
            spec,
            vms: Vec::new(),
            faults: Vec::new(),
            next_mac: 1,
            files: Default::default(),
        }
    }

    /// Finds a VM by id (exact) or name (case-insensitive, as Hyper-V matches names).
    pub fn vm(&self, id_or_name: &str) -> Option<&Vm> {
        self.vms
            .iter()
            .find(|v| v.id.eq_ignore_ascii_case(id_or_name))
            .or_else(|| {
                self.vms
                    .iter()
                    .find(|v| v.name.eq_ignore_ascii_case(id_or_name))
            })
    }

    /// Memory of running (or paused) VMs.
    pub fn memory_in_use_gb(&self) -> u64 {
        self.vms
            .iter()
            .filter(|v| matches!(v.state, VmState::Running | VmState::Paused))
            .map(|v| v.memory_gb)
            .sum()
    }

    /// Memory assigned to all VMs (the upstream placement figure).
    pub fn memory_assigned_gb(&self) -> u64 {
        self.vms.iter().map(|v| v.memory_gb).sum()
    }

    /// Takes one matching fault, if any is pending for `operation`.
    pub fn take_fault(&mut self, operation: &str) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|f| f.operation == operation && f.times > 0)?;
        let f = self.faults.get_mut(i)?;
        f.times -= 1;
        let fault = f.clone();
        if f.times == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }

    /// A fresh MAC address in Hyper-V's `00-15-5D` range.
    pub(crate) fn allocate_mac(&mut self) -> String {
        let n = self.next_mac;
        self.next_mac = self.next_mac.wrapping_add(1);
        let host_byte = self
            .spec
            .name
            .bytes()
            .fold(0u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
        format!(
            "00155D{host_byte:02X}{:02X}{:02X}",
            (n >> 8) & 0xff,
            n & 0xff
        )
    }

    /// The host part of the inventory (`host.inventory` `data.host`).
    pub fn host_view(&self) -> Value {
        let s = &self.spec;
        json!({
            "computer_name": s.name,
            "cluster_name": s.cluster,
            "total_cpu_cores": s.total_cpu_cores,
            "total_memory_gb": s.total_memory_gb,
            "memory_assigned_gb": self.memory_assigned_gb(),
            "memory_in_use_gb": self.memory_in_use_gb(),
            "available_memory_gb": s.total_memory_gb.saturating_sub(self.memory_assigned_gb()),
            "version": s.agent_version,
            "schema_name": "hostresources",
            "virtual_machines_path": s.virtual_machines_path,
            "storage_classes": s.storage_classes.iter().map(|c| {
                let used: u64 = self.vms.iter()
                    .flat_map(|v| v.disks.iter())
                    .filter(|d| d.path.starts_with(&c.path))
                    .map(|d| d.size_gb)
                    .sum();
                json!({"name": c.name, "path": c.path, "capacity_gb": c.capacity_gb,
                       "free_gb": c.capacity_gb.saturating_sub(used)})
            }).collect::<Vec<_>>(),
            "networks": s.networks.iter().map(|n| json!({
                "name": n.name, "model": "vlan",
                "configuration": {"virtual_switch": n.virtual_switch, "vlan_id": n.vlan_id}
            })).collect::<Vec<_>>(),
            "images": s.images.iter().map(|i| json!({
                "name": i.name, "os_family": i.os_family, "size_gb": i.size_gb, "path": i.path
            })).collect::<Vec<_>>(),
        })
    }

    /// The whole host for `/sim/hosts/<host>`: resources plus every VM with its KVP items and
    /// the configuration its guest applied.
    pub fn full_view(&self) -> Value {
        json!({
            "host": self.host_view(),
            "vms": self.vms.iter().map(|v| {
                let mut view = v.view();
                if let Some(o) = view.as_object_mut() {
                    o.insert("host_kvp".into(), json!(v.host_kvp));
                    o.insert("guest_kvp".into(), json!(v.guest_kvp));
                    o.insert("applied_config".into(), v.applied_config.clone().unwrap_or(Value::Null));
                }
                view
            }).collect::<Vec<_>>(),
            "faults": self.faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed() {
        let mut h = HostState::new(HostSpec::with_defaults("hv01"));
        h.faults.push(Fault {
            times: 2,
            ..Fault::once("disk.create")
        });
        assert!(h.take_fault("vm.create").is_none());
        assert!(h.take_fault("disk.create").is_some());
        assert!(h.take_fault("disk.create").is_some());
        assert!(h.take_fault("disk.create").is_none());
        assert!(h.faults.is_empty());
    }

    #[test]
    fn macs_are_unique_and_hyperv_prefixed() {
        let mut h = HostState::new(HostSpec::with_defaults("hv01"));
        let a = h.allocate_mac();
        let b = h.allocate_mac();
        assert_ne!(a, b);
        assert!(a.starts_with("00155D") && a.len() == 12);
    }
}
