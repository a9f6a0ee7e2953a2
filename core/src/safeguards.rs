//! The per-host safeguards: whether a schema-valid job spec can run on one host, judged from
//! that host's facts ([`HostFacts`]: its VMs with their disks, images, networks, storage
//! classes and memory). Pure: facts in, field errors out.
//!
//! Two callers, one set of rules:
//! - the bot's gate (`aetherv_bot::gate`) builds the facts from the last `host.inventory` event
//!   and adds what only the bot knows (the host's reachability, names claimed by other open
//!   requests), so a request certain to fail never reaches an approver;
//! - the worker's preflight builds them from a fresh `host.inventory` call just before the
//!   job's first step, since the world may have changed while the job queued or waited for
//!   approval, and fails the job (code `preflight`) before anything is created.
//!
//! What is checked, per kind:
//! 1. a new VM's name is unused on the host (a VM whose notes carry [`Checks::own_tag`], the
//!    job's own from an earlier attempt, is not a conflict);
//! 2. the image, network and storage class are on the host, when its facts list any of them;
//! 3. the VM an operation on an existing VM targets is on the host;
//! 4. a disk never shrinks; a disk to delete or resize is on the VM, when its disks are known;
//!    a new disk's size is within the disk form's limits (when [`Checks::forms`] is given);
//! 5. the memory fits the host, when its facts report the host's memory.
//!
//! Each problem is a [`FieldError`] naming the field of the request, all of them at once, at
//! most one per field.

use crate::ops::{JobSpec, VmRef};
use crate::schema::Forms;
use crate::validate::{ErrorCode, FieldError};
use serde_json::Value;

/// What the safeguards know about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The host's name, as the messages say it.
    pub host: String,
    /// Its VMs.
    pub vms: Vec<VmFacts>,
    /// Image names (empty: not reported, nothing is checked against them).
    pub images: Vec<String>,
    /// Network names (empty: not reported).
    pub networks: Vec<String>,
    /// Storage class names (empty: not reported).
    pub storage_classes: Vec<String>,
    /// The host's memory in GB, when reported.
    pub total_memory_gb: Option<u64>,
    /// Memory of the VMs that run (or are paused), when reported.
    pub memory_in_use_gb: Option<u64>,
}

/// One VM of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmFacts {
    /// VM name.
    pub name: String,
    /// Hyper-V id.
    pub id: String,
    /// Power state (`Running`, `Off`, ...).
    pub state: String,
    /// Memory in GB.
    pub memory_gb: u64,
    /// VM notes (where the worker writes its job tag), when known.
    pub notes: String,
    /// Attached disks; `None` when not known (nothing is checked against them).
    pub disks: Option<Vec<DiskFacts>>,
    /// Network adapters as (id, name); `None` when not known.
    pub nics: Option<Vec<(String, String)>>,
}

/// One attached disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskFacts {
    /// Disk id.
    pub id: String,
    /// File path.
    pub path: String,
    /// Size in GB, when reported.
    pub size_gb: Option<u64>,
}

impl DiskFacts {
    /// Whether `id` names this disk: its id, its path, or its file name (any case), as the
    /// agent finds a disk.
    pub fn is(&self, id: &str) -> bool {
        names_disk(id, &self.id, &self.path)
    }
}

/// Whether `wanted` names the disk of id `id` at `path`: its id, its path, or its file name
/// (any case), as the agent finds a disk.
pub fn names_disk(wanted: &str, id: &str, path: &str) -> bool {
    let wanted = wanted.trim();
    !wanted.is_empty()
        && (id.eq_ignore_ascii_case(wanted)
            || path.eq_ignore_ascii_case(wanted)
            || path
                .rsplit(['\\', '/'])
                .next()
                .is_some_and(|f| f.eq_ignore_ascii_case(wanted)))
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl HostFacts {
    /// Reads a `host.inventory` result (`{"host": {...}, "vms": [...]}`) of `host`. Missing
    /// parts are left empty (and then checked against nothing).
    pub fn from_inventory(host: &str, inventory: &Value) -> Self {
        let h = inventory.get("host");
        let figure = |key: &str| h.and_then(|h| h.get(key)).and_then(Value::as_u64);
        let names = |key: &str| -> Vec<String> {
            h.and_then(|h| h.get(key))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|x| text(x, "name"))
                        .filter(|n| !n.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let vms = inventory
            .get("vms")
            .and_then(Value::as_array)
            .map(|vms| vms.iter().map(VmFacts::from_view).collect())
            .unwrap_or_default();
        HostFacts {
            host: host.to_string(),
            vms,
            images: names("images"),
            networks: names("networks"),
            storage_classes: names("storage_classes"),
            total_memory_gb: figure("total_memory_gb"),
            memory_in_use_gb: figure("memory_in_use_gb"),
        }
    }

    /// The VM named `name` (any case).
    pub fn vm_named(&self, name: &str) -> Option<&VmFacts> {
        let name = name.trim();
        self.vms.iter().find(|v| v.name.eq_ignore_ascii_case(name))
    }
}

impl VmFacts {
    /// Reads one VM of an inventory (or a `vm.get` view).
    pub fn from_view(v: &Value) -> Self {
        VmFacts {
            name: text(v, "vm_name"),
            id: text(v, "vm_id"),
            state: text(v, "state"),
            memory_gb: v.get("memory_gb").and_then(Value::as_u64).unwrap_or(0),
            notes: text(v, "notes"),
            disks: v.get("disks").and_then(Value::as_array).map(|ds| {
                ds.iter()
                    .map(|d| DiskFacts {
                        id: text(d, "disk_id"),
                        path: text(d, "disk_path"),
                        size_gb: d.get("size_gb").and_then(Value::as_u64),
                    })
                    .collect()
            }),
            nics: v.get("nics").and_then(Value::as_array).map(|ns| {
                ns.iter()
                    .map(|n| (text(n, "nic_id"), text(n, "adapter_name")))
                    .collect()
            }),
        }
    }
}

/// What the caller adds to the checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks<'a> {
    /// The form limits a new disk's size is checked against (none: not checked).
    pub forms: Option<&'a Forms>,
    /// The tag of the job being checked (`aetherv:job=<id>`): a VM of the new name whose
    /// notes carry it is the job's own, from an earlier attempt, and resumes.
    pub own_tag: Option<&'a str>,
}

/// The name a job creates a VM under (`vm.create`, `deployment.managed`), when it names one.
pub fn new_vm_name(spec: &JobSpec) -> Option<&str> {
    let name = match spec {
        JobSpec::VmCreate(s) => s.form.vm_name.as_deref(),
        JobSpec::DeploymentManaged(s) => s.vm.vm_name.as_deref(),
        _ => None,
    };
    name.map(str::trim).filter(|n| !n.is_empty())
}

/// Collects at most one error per field (the first one found wins).
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    /// Adds a problem with `field`, unless that field has one already.
    pub fn add(&mut self, field: &str, code: ErrorCode, message: String) {
        if !self.has(field) {
            self.0.push(FieldError {
                field: field.to_string(),
                code,
                message,
            });
        }
    }

    /// Whether `field` has a problem.
    pub fn has(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }
}

/// Checks `spec` against the facts of its host; every problem, each naming its field, into
/// `errors`.
pub fn check(facts: &HostFacts, spec: &JobSpec, checks: Checks<'_>, errors: &mut Errors) {
    let ctx = Ctx { facts, checks };
    match spec {
        JobSpec::VmCreate(s) => {
            ctx.new_name(errors, s.form.vm_name.as_deref());
            ctx.present(errors, "storage_class", s.form.storage_class.as_deref());
            let (field, ram) = match (s.form.gb_ram, s.memory_gb) {
                (Some(r), _) => ("gb_ram", Some(r)),
                (None, r) => ("memory_gb", r),
            };
            // vm.create leaves the VM off: refused only when it could never start here.
            ctx.memory_total(errors, field, ram);
        }
        JobSpec::DeploymentManaged(s) => {
            ctx.new_name(errors, s.vm.vm_name.as_deref());
            ctx.present(errors, "storage_class", s.vm.storage_class.as_deref());
            ctx.present(errors, "image_name", s.disk.image_name.as_deref());
            ctx.present(errors, "network", s.nic.network.as_deref());
            // A managed deployment starts the VM: it must fit next to the running ones (its
            // own VM from an earlier attempt already counts there).
            if ctx.own_vm(s.vm.vm_name.as_deref()).is_none() {
                ctx.memory_free(errors, "gb_ram", s.vm.gb_ram);
            }
            ctx.disk_size(errors, "disk_size_gb", s.disk.disk_size_gb);
        }
        JobSpec::VmUpdate(s) => {
            if ctx.vm(errors, &s.vm).is_some() {
                let (field, ram) = match (s.gb_ram, s.memory_gb) {
                    (Some(r), _) => ("gb_ram", Some(r)),
                    (None, r) => ("memory_gb", r),
                };
                // Hyper-V changes the memory of a VM that is off; it must fit the host to
                // start again.
                ctx.form_limit(errors, ("vm", "gb_ram"), field, ram);
                ctx.memory_total(errors, field, ram);
                let (field, cpu) = match (s.cpu_cores, s.cpu) {
                    (Some(c), _) => ("cpu_cores", Some(c)),
                    (None, c) => ("cpu", c),
                };
                ctx.form_limit(errors, ("vm", "cpu_cores"), field, cpu);
            }
        }
        JobSpec::VmPower(s) => {
            if let Some(vm) = ctx.vm(errors, &s.vm) {
                let starts =
                    matches!(s.action.as_deref(), Some(a) if a.eq_ignore_ascii_case("start"));
                let off = matches!(vm.state.to_ascii_lowercase().as_str(), "off" | "saved");
                if starts && off {
                    ctx.memory_free(errors, "vm_name", Some(vm.memory_gb));
                }
            }
        }
        JobSpec::VmDelete(s) => {
            ctx.vm(errors, &s.vm);
        }
        JobSpec::VmInitialize(s) => {
            ctx.vm(errors, &s.vm);
        }
        JobSpec::DiskCreate(s) => {
            ctx.vm(errors, &s.vm);
            ctx.present(errors, "image_name", s.disk.image_name.as_deref());
            ctx.present(errors, "storage_class", s.storage_class.as_deref());
            let (field, size) = match (s.disk.disk_size_gb, s.size_gb) {
                (Some(n), _) => ("disk_size_gb", Some(n)),
                (None, n) => ("size_gb", n),
            };
            ctx.disk_size(errors, field, size);
        }
        JobSpec::DiskUpdate(s) => {
            if let Some(vm) = ctx.vm(errors, &s.vm) {
                let (field, size) = match (s.disk_size_gb, s.size_gb) {
                    (Some(n), _) => ("disk_size_gb", Some(n)),
                    (None, n) => ("size_gb", n),
                };
                ctx.disk_size(errors, field, size);
                let (id_field, id) = match (&s.resource_id, &s.disk_id) {
                    (Some(id), _) => ("resource_id", Some(id.as_str())),
                    (None, id) => ("disk_id", id.as_deref()),
                };
                ctx.no_shrink(errors, vm, (id_field, id), (field, size));
            }
        }
        JobSpec::DiskDelete(s) => {
            if let Some(vm) = ctx.vm(errors, &s.vm) {
                let (field, id) = match (&s.resource_id, &s.disk_id) {
                    (Some(id), _) => ("resource_id", Some(id.as_str())),
                    (None, id) => ("disk_id", id.as_deref()),
                };
                ctx.disk(errors, vm, field, id);
            }
        }
        JobSpec::NicCreate(s) => {
            ctx.vm(errors, &s.vm);
            ctx.present(errors, "network", s.nic.network.as_deref());
        }
        JobSpec::NicUpdate(s) => {
            ctx.vm(errors, &s.vm);
            ctx.present(errors, "network", s.network.as_deref());
        }
        JobSpec::NicDelete(s) => {
            if let Some(vm) = ctx.vm(errors, &s.vm) {
                let (field, id) = match (&s.resource_id, &s.nic_id) {
                    (Some(id), _) => ("resource_id", Some(id.as_str())),
                    (None, id) => ("nic_id", id.as_deref()),
                };
                ctx.nic(errors, vm, field, id);
            }
        }
        JobSpec::Noop(_) => {}
    }
}

/// One host's facts and the caller's additions.
struct Ctx<'a> {
    facts: &'a HostFacts,
    checks: Checks<'a>,
}

impl Ctx<'_> {
    /// The VM of `name` when it is the job's own (its notes carry the job's tag).
    fn own_vm(&self, name: Option<&str>) -> Option<&VmFacts> {
        let tag = self.checks.own_tag?;
        self.facts
            .vm_named(name?)
            .filter(|v| !tag.is_empty() && v.notes.contains(tag))
    }

    /// A new VM's name is not on the host (unless it is the job's own VM).
    fn new_name(&self, errors: &mut Errors, name: Option<&str>) {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return;
        };
        if self.facts.vm_named(name).is_some() && self.own_vm(Some(name)).is_none() {
            errors.add(
                "vm_name",
                ErrorCode::NameInUse,
                format!("a VM named {name} already exists on {}", self.facts.host),
            );
        }
    }

    /// An image, network or storage class named in `field` is on the host. Checked only when
    /// the host's facts list any of that kind.
    fn present(&self, errors: &mut Errors, field: &str, value: Option<&str>) {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return;
        };
        let (known, what) = match field {
            "image_name" => (&self.facts.images, "image"),
            "network" => (&self.facts.networks, "network"),
            _ => (&self.facts.storage_classes, "storage class"),
        };
        if known.is_empty() || known.iter().any(|k| k.eq_ignore_ascii_case(value)) {
            return;
        }
        errors.add(
            field,
            ErrorCode::UnknownChoice,
            format!(
                "host {} has no {what} {value}; it has {}",
                self.facts.host,
                known.join(", ")
            ),
        );
    }

    /// The VM `vm` names on the host, or a `not_found` error on its field.
    fn vm(&self, errors: &mut Errors, vm: &VmRef) -> Option<&VmFacts> {
        let by_name = vm
            .vm_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let by_id = vm.vm_id.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let found = match (by_name, by_id) {
            (Some(name), _) => self.facts.vm_named(name),
            (None, Some(id)) => self
                .facts
                .vms
                .iter()
                .find(|v| v.id.eq_ignore_ascii_case(id)),
            (None, None) => return None,
        };
        if found.is_some() {
            return found;
        }
        let (field, what) = match by_name {
            Some(name) => ("vm_name", format!("no VM named {name}")),
            None => ("vm_id", "no VM with that id".to_string()),
        };
        errors.add(
            field,
            ErrorCode::NotFound,
            format!("{what} on {}", self.facts.host),
        );
        None
    }

    /// The disk `id` of `vm`, when the VM's disks are known.
    fn disk<'v>(
        &self,
        errors: &mut Errors,
        vm: &'v VmFacts,
        field: &str,
        id: Option<&str>,
    ) -> Option<&'v DiskFacts> {
        let id = id.map(str::trim).filter(|i| !i.is_empty())?;
        let disks = vm.disks.as_ref()?;
        if let Some(d) = disks.iter().find(|d| d.is(id)) {
            return Some(d);
        }
        errors.add(
            field,
            ErrorCode::NotFound,
            format!("VM {} has no disk {id}", vm.name),
        );
        None
    }

    /// A resized disk does not shrink: checked when the disk's size is known.
    fn no_shrink(
        &self,
        errors: &mut Errors,
        vm: &VmFacts,
        (id_field, id): (&str, Option<&str>),
        (field, size): (&str, Option<u64>),
    ) {
        let Some(disk) = self.disk(errors, vm, id_field, id) else {
            return;
        };
        if let (Some(now), Some(want)) = (disk.size_gb, size) {
            if want < now {
                errors.add(
                    field,
                    ErrorCode::DiskShrink,
                    format!("the disk is {now} GB; a disk can only grow, not shrink to {want} GB"),
                );
            }
        }
    }

    /// A disk size within the disk form's limits.
    fn disk_size(&self, errors: &mut Errors, field: &str, size: Option<u64>) {
        if let Some((min, max)) = self.out_of(("disk", "disk_size_gb"), size) {
            let max = max.map_or_else(|| "any size".to_string(), |m| m.to_string());
            errors.add(
                field,
                ErrorCode::OutOfRange,
                format!("a disk is {min} to {max} GB"),
            );
        }
    }

    /// A value within the limits of `form`'s field `form_field` (`vm`'s `gb_ram`, …).
    fn form_limit(&self, errors: &mut Errors, form: (&str, &str), field: &str, value: Option<u64>) {
        if let Some((min, max)) = self.out_of(form, value) {
            let max = max.map_or_else(|| "any".to_string(), |m| m.to_string());
            errors.add(
                field,
                ErrorCode::OutOfRange,
                format!("{} is {min} to {max}", form.1),
            );
        }
    }

    /// The limits (min, max) of `form`'s field when `value` is outside them.
    fn out_of(
        &self,
        (form, field): (&str, &str),
        value: Option<u64>,
    ) -> Option<(u64, Option<u64>)> {
        let value = value?;
        let limits = self.checks.forms?.get(form)?.field(field)?;
        let min = limits.min.and_then(|m| u64::try_from(m).ok()).unwrap_or(0);
        let max = limits.max.and_then(|m| u64::try_from(m).ok());
        (value < min || max.is_some_and(|m| value > m)).then_some((min, max))
    }

    /// The network adapter a removal names is the VM's, when the inventory listed them.
    fn nic(&self, errors: &mut Errors, vm: &VmFacts, field: &str, id: Option<&str>) {
        let Some(id) = id.map(str::trim).filter(|i| !i.is_empty()) else {
            return;
        };
        let Some(nics) = &vm.nics else { return };
        let found = nics
            .iter()
            .any(|(nid, name)| nid.eq_ignore_ascii_case(id) || name.eq_ignore_ascii_case(id));
        if !found {
            errors.add(
                field,
                ErrorCode::NotFound,
                format!("VM {} has no network adapter {id}", vm.name),
            );
        }
    }

    /// Memory a VM that will start needs: it must fit next to the VMs running on the host.
    fn memory_free(&self, errors: &mut Errors, field: &str, gb: Option<u64>) {
        let (Some(gb), Some(total)) = (gb, self.facts.total_memory_gb) else {
            return;
        };
        let in_use = self.facts.memory_in_use_gb.unwrap_or(0);
        let free = total.saturating_sub(in_use);
        if gb > free {
            errors.add(
                field,
                ErrorCode::InsufficientMemory,
                format!(
                    "{gb} GB of memory does not fit host {}: {free} of {total} GB are free",
                    self.facts.host
                ),
            );
        }
    }

    /// Memory of a VM that stays off: it must not exceed the host's memory.
    fn memory_total(&self, errors: &mut Errors, field: &str, gb: Option<u64>) {
        let (Some(gb), Some(total)) = (gb, self.facts.total_memory_gb) else {
            return;
        };
        if gb > total {
            errors.add(
                field,
                ErrorCode::InsufficientMemory,
                format!(
                    "{gb} GB of memory is more than host {} has ({total} GB)",
                    self.facts.host
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
