//! The vocabulary of operations, written once: for every job kind and every agent operation
//! its typed spec, the fields of that spec (name, required, secret), the agent operation of a
//! single-operation kind, and the plan of steps a job runs.
//!
//! A spec is declared with [`specs!`], which generates both the serde struct (every field
//! optional on the wire, unknown fields tolerated, as AMQP producers rely on) and its field
//! table ([`Spec::fields`]). Adding a field to a kind is one line here plus its form schema in
//! `schemas/`. The bot builds specs with the constructors below and [`Spec::into_spec`]; the
//! worker reads them with [`Spec::from_spec`] and runs [`plan`]; the simulator takes its known
//! fields per operation from [`AgentOperation::fields`]; sealing and redaction take the secret
//! fields from [`secret_fields`].
//!
//! `required` means what the form (or, for agent-only specs, the agent) requires; it is not
//! enforced by deserialization, because sealed secrets are absent from an envelope's spec and
//! the form validation owns the field errors. This module does no I/O.

use crate::redact::redact_with;
use crate::{AgentOperation, JobEnvelope, JobKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::OnceLock;

#[macro_use]
mod spec;
pub use spec::{Field, Secret, Spec, SpecError};

specs! {
    /// The VM an operation targets: `vm_id`, `vm_name` or both (both given must agree).
    pub struct VmRef {
        /// Hyper-V VM id (a GUID).
        vm_id: String,
        /// VM name.
        vm_name: String,
    }

    /// Where a VM request goes: a host or a cluster (the form's `deployment_target` group).
    pub struct Placement {
        /// The Hyper-V host.
        target_host: String,
        /// The failover cluster (the worker places the VM on a member).
        target_cluster: String,
    }

    /// The VM form's fields (`schemas/vm.yaml`).
    pub struct VmFields {
        ..placement: Placement;
        /// VM name (also the guest host name of a managed deployment).
        vm_name: String [required],
        /// Startup memory in GB.
        gb_ram: u64 [required],
        /// Virtual processors.
        cpu_cores: u64 [required],
        /// Where the VM's files go.
        storage_class: String,
        /// Register the VM with the host's failover cluster.
        vm_clustered: bool,
        /// `windows` or `linux`.
        os_family: String,
    }

    /// `vm.create`: the VM form plus the agent's aliases and the notes.
    pub struct VmCreateSpec {
        ..form: VmFields;
        /// Alias of `gb_ram`.
        memory_gb: u64,
        /// Alias of `cpu_cores`.
        cpu: u64,
        /// VM notes; the worker writes the job tag here when absent.
        notes: String,
    }

    /// `vm.update`.
    pub struct VmUpdateSpec {
        ..vm: VmRef;
        /// Virtual processors.
        cpu_cores: u64,
        /// Alias of `cpu_cores`.
        cpu: u64,
        /// Startup memory in GB.
        gb_ram: u64,
        /// Alias of `gb_ram`.
        memory_gb: u64,
        /// VM notes.
        notes: String,
        /// Dynamic memory on or off.
        dynamic_memory: bool,
        /// Secure boot on or off.
        secure_boot: bool,
        /// Virtual TPM on or off.
        tpm: bool,
    }

    /// `vm.delete`.
    pub struct VmDeleteSpec {
        ..vm: VmRef;
        /// Turn the VM off first when it runs.
        force: bool,
        /// Delete its disk files too.
        delete_disks: bool,
    }

    /// `vm.power`.
    pub struct VmPowerSpec {
        ..vm: VmRef;
        /// `start`, `shutdown`, `stop` or `reset`.
        action: String [required],
    }

    /// The disk form's fields a managed deployment takes (`schemas/disk.yaml` without `vm_id`
    /// and `storage_class`).
    pub struct DiskFields {
        /// The image to clone; absent for a blank disk.
        image_name: String,
        /// Size in GB (a minimum for a clone).
        disk_size_gb: u64,
        /// `Dynamic` or `Fixed`.
        disk_type: String,
        /// `SCSI` or `IDE`.
        controller_type: String,
    }

    /// `disk.create`.
    pub struct DiskCreateSpec {
        ..vm: VmRef;
        ..disk: DiskFields;
        /// Where the disk file goes.
        storage_class: String,
        /// Alias of `disk_size_gb`.
        size_gb: u64,
        /// A tag the file name carries (the worker's job tag).
        file_tag: String,
        /// Alias of `file_tag`.
        tag: String,
        /// An explicit file name.
        file_name: String,
        /// A shared (cluster) disk.
        shared: bool,
    }

    /// `disk.update`: expand a disk.
    pub struct DiskUpdateSpec {
        ..vm: VmRef;
        /// The disk id.
        resource_id: String,
        /// Alias of `resource_id`.
        disk_id: String,
        /// The new size in GB.
        disk_size_gb: u64,
        /// Alias of `disk_size_gb`.
        size_gb: u64,
    }

    /// `disk.delete`.
    pub struct DiskDeleteSpec {
        ..vm: VmRef;
        /// The disk id.
        resource_id: String,
        /// Alias of `resource_id`.
        disk_id: String,
    }

    /// The network adapter form's fields (`schemas/nic.yaml` without `vm_id`).
    pub struct NicFields {
        /// The network (virtual switch and VLAN).
        network: String [required],
        /// Adapter name in Hyper-V.
        adapter_name: String,
        /// Overrides the network's VLAN id.
        vlan_id: u64,
    }

    /// `nic.create`.
    pub struct NicCreateSpec {
        ..vm: VmRef;
        ..nic: NicFields;
    }

    /// `nic.update`.
    pub struct NicUpdateSpec {
        ..vm: VmRef;
        /// The adapter id.
        resource_id: String,
        /// Alias of `resource_id`.
        nic_id: String,
        /// Move to this network.
        network: String,
        /// DHCP guard on or off.
        dhcp_guard: bool,
        /// Router guard on or off.
        router_guard: bool,
        /// MAC spoofing on or off.
        mac_spoofing: bool,
        /// A static MAC address.
        mac_address: String,
    }

    /// `nic.delete`.
    pub struct NicDeleteSpec {
        ..vm: VmRef;
        /// The adapter id.
        resource_id: String,
        /// Alias of `resource_id`.
        nic_id: String,
    }

    /// The guest form's fields without `os_family` (`schemas/guest.yaml`).
    pub struct GuestFields {
        /// Local administrator user.
        guest_la_uid: String [required],
        /// Local administrator password.
        guest_la_pw: Secret [required, secret],
        /// Active Directory domain to join.
        guest_domain_join_target: String,
        /// Domain join account.
        guest_domain_join_uid: String,
        /// Domain join password.
        guest_domain_join_pw: Secret [secret],
        /// OU of the computer account.
        guest_domain_join_ou: String,
        /// Ansible SSH user.
        cnf_ansible_ssh_user: String,
        /// The Ansible user's authorized key.
        cnf_ansible_ssh_key: Secret [secret],
        /// Static IPv4 address.
        guest_v4_ip_addr: String,
        /// IPv4 prefix length.
        guest_v4_cidr_prefix: u64,
        /// IPv4 gateway.
        guest_v4_default_gw: String,
        /// Primary DNS server.
        guest_v4_dns1: String,
        /// Secondary DNS server.
        guest_v4_dns2: String,
        /// Connection-specific DNS suffix.
        guest_net_dns_suffix: String,
    }

    /// `vm.initialize`: guest initialization of an existing VM.
    pub struct VmInitializeSpec {
        ..vm: VmRef;
        ..guest: GuestFields;
        /// `windows` or `linux`.
        os_family: String,
    }

    /// `deployment.managed` (`schemas/managed-deployment.yaml`).
    pub struct ManagedDeploymentSpec {
        ..vm: VmFields;
        ..disk: DiskFields;
        ..nic: NicFields;
        ..guest: GuestFields;
        /// Delete what earlier steps created when a later step fails.
        rollback: bool,
    }

    /// `host.inventory`: no arguments.
    pub struct HostInventorySpec {}

    /// `kvp.read`.
    pub struct KvpReadSpec {
        ..vm: VmRef;
        /// The keys to read (all when absent).
        keys: Vec<String>,
        /// `guest` (default) or `host`.
        source: String,
    }

    /// `kvp.write`.
    pub struct KvpWriteSpec {
        ..vm: VmRef;
        /// Key → value.
        items: Map<String, Value>,
    }

    /// `kvp.remove`.
    pub struct KvpRemoveSpec {
        ..vm: VmRef;
        /// The keys to remove.
        keys: Vec<String>,
    }

    /// `iso.attach`.
    pub struct IsoAttachSpec {
        ..vm: VmRef;
        /// An explicit ISO path.
        iso_path: String,
        /// Chooses the provisioning ISO.
        os_family: String,
    }
}

/// `noop`: any fields, echoed back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoopSpec {
    /// Whatever the request carried.
    #[serde(flatten)]
    pub echo: Map<String, Value>,
}

impl Spec for NoopSpec {
    const OPEN: bool = true;

    fn fields() -> &'static [Field] {
        &[]
    }
}

impl VmRef {
    /// The VM named `name`, with its id when known (an empty id is left out).
    pub fn new(name: impl Into<String>, id: &str) -> Self {
        VmRef {
            vm_name: Some(name.into()),
            vm_id: (!id.is_empty()).then(|| id.to_string()),
        }
    }

    /// The VM with id `id`.
    pub fn id(id: impl Into<String>) -> Self {
        VmRef {
            vm_id: Some(id.into()),
            vm_name: None,
        }
    }
}

impl VmPowerSpec {
    /// `vm.power` of `vm` with `action` (`start`, `shutdown`, `stop`, `reset`).
    pub fn new(vm: VmRef, action: impl Into<String>) -> Self {
        VmPowerSpec {
            vm,
            action: Some(action.into()),
        }
    }
}

impl VmUpdateSpec {
    /// `vm.update` of `vm`: new startup memory and/or processor count.
    pub fn new(vm: VmRef, gb_ram: Option<u32>, cpu_cores: Option<u32>) -> Self {
        VmUpdateSpec {
            vm,
            gb_ram: gb_ram.map(u64::from),
            cpu_cores: cpu_cores.map(u64::from),
            ..VmUpdateSpec::default()
        }
    }
}

impl VmDeleteSpec {
    /// `vm.delete` of `vm`.
    pub fn new(vm: VmRef, delete_disks: bool, force: bool) -> Self {
        VmDeleteSpec {
            vm,
            force: Some(force),
            delete_disks: Some(delete_disks),
        }
    }
}

impl DiskDeleteSpec {
    /// `disk.delete` of disk `disk_id` of `vm`.
    pub fn new(vm: VmRef, disk_id: impl Into<String>) -> Self {
        DiskDeleteSpec {
            vm,
            resource_id: Some(disk_id.into()),
            disk_id: None,
        }
    }
}

impl NicDeleteSpec {
    /// `nic.delete` of adapter `nic_id` of `vm`.
    pub fn new(vm: VmRef, nic_id: impl Into<String>) -> Self {
        NicDeleteSpec {
            vm,
            resource_id: Some(nic_id.into()),
            nic_id: None,
        }
    }
}

impl DiskCreateSpec {
    /// `disk.create`: a blank disk of `size_gb` attached to `vm`.
    pub fn new(vm: VmRef, size_gb: u32) -> Self {
        DiskCreateSpec {
            vm,
            disk: DiskFields {
                disk_size_gb: Some(size_gb.into()),
                ..DiskFields::default()
            },
            ..DiskCreateSpec::default()
        }
    }
}

impl DiskUpdateSpec {
    /// `disk.update`: expand disk `disk_id` of `vm` to `size_gb`.
    pub fn new(vm: VmRef, disk_id: impl Into<String>, size_gb: u32) -> Self {
        DiskUpdateSpec {
            vm,
            disk_id: Some(disk_id.into()),
            disk_size_gb: Some(size_gb.into()),
            ..DiskUpdateSpec::default()
        }
    }
}

impl NicCreateSpec {
    /// `nic.create`: an adapter of `vm` on `network`.
    pub fn new(vm: VmRef, network: impl Into<String>) -> Self {
        NicCreateSpec {
            vm,
            nic: NicFields {
                network: Some(network.into()),
                ..NicFields::default()
            },
        }
    }
}

/// Declares the kinds: the typed spec of each, and the agent operation of the
/// single-operation ones.
macro_rules! kinds {
    ($( $Kind:ident => $Spec:ident $(, $Op:ident)?; )+) => {
        /// A job's spec, typed by its kind.
        #[derive(Debug, Clone, PartialEq)]
        #[expect(
            clippy::large_enum_variant,
            reason = "one per job, built and consumed at once; boxing would only add noise"
        )]
        pub enum JobSpec {
            $(
                #[doc = concat!("[`JobKind::", stringify!($Kind), "`].")]
                $Kind($Spec),
            )+
        }

        impl JobSpec {
            /// Its job kind.
            pub fn kind(&self) -> JobKind {
                match self {
                    $( JobSpec::$Kind(_) => JobKind::$Kind, )+
                }
            }

            /// Reads `spec` as the spec of `kind`.
            pub fn parse(kind: JobKind, spec: &Map<String, Value>) -> Result<Self, SpecError> {
                Ok(match kind {
                    $( JobKind::$Kind => JobSpec::$Kind($Spec::from_spec(spec)?), )+
                })
            }

            /// The map a job envelope carries.
            pub fn into_spec(self) -> Map<String, Value> {
                match self {
                    $( JobSpec::$Kind(s) => s.into_spec(), )+
                }
            }
        }

        impl JobKind {
            /// The agent operation of a single-operation kind (`None` for the orchestrated
            /// `deployment.managed` and `vm.initialize`).
            pub fn operation(self) -> Option<AgentOperation> {
                match self {
                    $( JobKind::$Kind => None $(.or(Some(AgentOperation::$Op)))?, )+
                }
            }

            /// The fields of its spec; `None` when any field is accepted (`noop`).
            pub fn fields(self) -> Option<&'static [Field]> {
                match self {
                    $( JobKind::$Kind => fields_of::<$Spec>(), )+
                }
            }
        }
    };
}

impl JobKind {
    /// Whether a job of this kind may change what the host holds (every kind but `noop`):
    /// after one, the host's inventory is read again at once, so reads see what it did.
    pub fn changes_host(self) -> bool {
        self != JobKind::Noop
    }
}

kinds! {
    DeploymentManaged => ManagedDeploymentSpec;
    VmCreate => VmCreateSpec, VmCreate;
    VmUpdate => VmUpdateSpec, VmUpdate;
    VmDelete => VmDeleteSpec, VmDelete;
    VmPower => VmPowerSpec, VmPower;
    DiskCreate => DiskCreateSpec, DiskCreate;
    DiskUpdate => DiskUpdateSpec, DiskUpdate;
    DiskDelete => DiskDeleteSpec, DiskDelete;
    NicCreate => NicCreateSpec, NicCreate;
    NicUpdate => NicUpdateSpec, NicUpdate;
    NicDelete => NicDeleteSpec, NicDelete;
    VmInitialize => VmInitializeSpec;
    Noop => NoopSpec, Noop;
}

fn fields_of<S: Spec>() -> Option<&'static [Field]> {
    (!S::OPEN).then(S::fields)
}

impl AgentOperation {
    /// The fields the operation reads; `None` when it accepts any (`noop` echoes its spec).
    /// Besides these, every operation tolerates the placement fields ([`is_placement_field`]).
    pub fn fields(self) -> Option<&'static [Field]> {
        use AgentOperation as Op;
        match self {
            Op::HostInventory => fields_of::<HostInventorySpec>(),
            Op::Noop => fields_of::<NoopSpec>(),
            Op::VmCreate => fields_of::<VmCreateSpec>(),
            Op::VmGet | Op::IsoDetach | Op::ClusterAdd | Op::ClusterRemove => fields_of::<VmRef>(),
            Op::VmUpdate => fields_of::<VmUpdateSpec>(),
            Op::VmDelete => fields_of::<VmDeleteSpec>(),
            Op::VmPower => fields_of::<VmPowerSpec>(),
            Op::DiskCreate => fields_of::<DiskCreateSpec>(),
            Op::DiskUpdate => fields_of::<DiskUpdateSpec>(),
            Op::DiskDelete => fields_of::<DiskDeleteSpec>(),
            Op::NicCreate => fields_of::<NicCreateSpec>(),
            Op::NicUpdate => fields_of::<NicUpdateSpec>(),
            Op::NicDelete => fields_of::<NicDeleteSpec>(),
            Op::KvpRead => fields_of::<KvpReadSpec>(),
            Op::KvpWrite => fields_of::<KvpWriteSpec>(),
            Op::KvpRemove => fields_of::<KvpRemoveSpec>(),
            Op::IsoAttach => fields_of::<IsoAttachSpec>(),
        }
    }
}

/// The id of the form's one-of group of the placement fields; producers may send it.
pub const DEPLOYMENT_TARGET: &str = "deployment_target";

/// Whether `name` is a job-level placement field, which any spec may carry.
pub fn is_placement_field(name: &str) -> bool {
    name == DEPLOYMENT_TARGET || Placement::fields().iter().any(|f| f.name == name)
}

/// The keys of `spec` that are neither in `fields` nor placement fields, in key order: what a
/// reader of the spec ignores. `fields` of `None` (an open spec) reads everything.
pub fn unknown_fields<'a>(fields: Option<&[Field]>, spec: &'a Map<String, Value>) -> Vec<&'a str> {
    let Some(fields) = fields else {
        return Vec::new();
    };
    spec.keys()
        .map(String::as_str)
        .filter(|k| !(fields.iter().any(|f| f.name == *k) || is_placement_field(k)))
        .collect()
}

/// Every secret field id of the vocabulary, sorted. A field name means the same in every kind,
/// so sealing and redaction use this one set whatever the kind.
pub fn secret_fields() -> &'static [&'static str] {
    static IDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    IDS.get_or_init(|| {
        let kinds = JobKind::ALL.into_iter().filter_map(JobKind::fields);
        let ops = AgentOperation::ALL
            .into_iter()
            .filter_map(AgentOperation::fields);
        let mut ids: Vec<&str> = kinds
            .chain(ops)
            .flatten()
            .filter(|f| f.secret)
            .map(|f| f.name)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    })
}

/// The secret fields of one kind's spec.
pub fn secret_fields_of(kind: JobKind) -> Vec<&'static str> {
    kind.fields()
        .unwrap_or_default()
        .iter()
        .filter(|f| f.secret)
        .map(|f| f.name)
        .collect()
}

/// Whether `name` is a secret field.
pub fn is_secret(name: &str) -> bool {
    secret_fields().contains(&name)
}

/// Replaces every secret value in `value` (at any depth) with [`crate::redact::REDACTED`]: the
/// view of a spec for approvers, logs and events.
pub fn redact(value: &mut Value) {
    redact_with(value, &is_secret);
}

/// One step of a job, named as its `step.*` events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepName {
    /// One agent operation; the step carries the operation's name (`vm.create`, ...).
    Op(AgentOperation),
    /// The KVP exchange with the guest (`guest.initialize`).
    GuestInitialize,
}

impl StepName {
    /// The name events carry.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Op(op) => op.as_str(),
            StepName::GuestInitialize => "guest.initialize",
        }
    }
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The steps a job of `kind` runs: one for a single-operation kind; `deployment.managed` is
/// VM → disk → NIC → guest initialization, then cluster registration when `clustered` (only
/// after initialization, so the VM does not migrate mid-handshake); `vm.initialize` is the
/// guest initialization alone.
pub fn plan(kind: JobKind, clustered: bool) -> Vec<StepName> {
    use AgentOperation as Op;
    match kind {
        JobKind::DeploymentManaged => {
            let mut steps = vec![
                StepName::Op(Op::VmCreate),
                StepName::Op(Op::DiskCreate),
                StepName::Op(Op::NicCreate),
                StepName::GuestInitialize,
            ];
            if clustered {
                steps.push(StepName::Op(Op::ClusterAdd));
            }
            steps
        }
        JobKind::VmInitialize => vec![StepName::GuestInitialize],
        single => single.operation().map(StepName::Op).into_iter().collect(),
    }
}

impl JobEnvelope {
    /// The job's steps ([`plan`]); `vm_clustered` is read as the form reads a boolean.
    pub fn plan(&self) -> Vec<StepName> {
        let clustered = match self.spec.get("vm_clustered") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => {
                matches!(
                    s.trim().to_ascii_lowercase().as_str(),
                    "true" | "yes" | "on" | "1"
                )
            }
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            _ => false,
        };
        plan(self.kind, clustered)
    }
}

#[cfg(test)]
mod tests;
