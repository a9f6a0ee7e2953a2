//! The gate's safeguards against inventory: one pure function every front door (console,
//! Slack, Discord, later AMQP and HTTP) calls after schema validation and before policy, so a
//! request certain to fail never reaches an approver.
//!
//! [`check`] reads only what the bot knows from the event stream ([`State`]: hosts with their
//! last inventory, open jobs) and the form limits ([`Forms`]); it does no I/O. Each problem is a
//! [`FieldError`] naming the field of the request, all of them at once, at most one per field.
//!
//! What is checked, per kind:
//! 1. the target host is known, and its last inventory poll answered;
//! 2. a new VM's name is unused on the host and not claimed by another open request
//!    (awaiting approval, queued, running or interrupted) for the same host;
//! 3. the image, network and storage class are on that host, when its inventory lists them;
//! 4. the VM an operation on an existing VM targets is on the host;
//! 5. a disk never shrinks; a new disk's size is within the disk form's limits;
//! 6. the memory fits the host, when its inventory reports the host's memory;
//! 7. a VM's new memory and processor count are within the VM form's limits;
//! 8. the disk or network adapter a removal names is the VM's, when the inventory listed them.
//!
//! The world may change between this check and the job's first step; the worker's preflight
//! checks again against fresh inventory.

use crate::state::{HostInfo, Phase, State};
use aetherv_core::ops::{JobSpec, VmRef};
use aetherv_core::schema::Forms;
use aetherv_core::validate::{ErrorCode, FieldError};
use aetherv_core::{JobKind, Target};
use serde_json::{Map, Value};

/// The field that names the host of a request.
const HOST_FIELD: &str = "target_host";

fn error(field: &str, code: ErrorCode, message: String) -> FieldError {
    FieldError {
        field: field.to_string(),
        code,
        message,
    }
}

/// Collects at most one error per field (the first one found wins).
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: &str, code: ErrorCode, message: String) {
        if !self.0.iter().any(|e| e.field == field) {
            self.0.push(error(field, code, message));
        }
    }
}

/// Checks a schema-valid request of `kind` for `target` against what the bot knows. `Ok` when
/// nothing known dooms it; otherwise every problem, each naming its field.
pub fn check(
    state: &State,
    forms: &Forms,
    kind: JobKind,
    target: &Target,
    spec: &Map<String, Value>,
) -> Result<(), Vec<FieldError>> {
    let parsed = match JobSpec::parse(kind, spec) {
        Ok(p) => p,
        // Schema validation owns type errors; this names no value it could not read.
        Err(_) => {
            return Err(vec![error(
                "",
                ErrorCode::InvalidType,
                format!("the request does not match the fields of {}", kind.as_str()),
            )])
        }
    };
    let Target::Host(host_name) = target else {
        // A cluster request is placed on a member by the worker: the bot does not know which,
        // so nothing host-specific is checked here (the worker's preflight does it).
        return Ok(());
    };
    let mut errors = Errors::default();
    let Some(host) = state.hosts.get(&host_name.to_ascii_lowercase()) else {
        errors.add(
            HOST_FIELD,
            ErrorCode::UnknownChoice,
            format!("{host_name} is not a known host (see `hosts`)"),
        );
        return Err(errors.0);
    };
    match host.reachable {
        Some(false) => {
            let reason = host
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            errors.add(
                HOST_FIELD,
                ErrorCode::HostUnreachable,
                format!("host {host_name} did not answer its last inventory poll{reason}"),
            );
            return Err(errors.0);
        }
        // Never polled yet (a configured host before its first inventory): allowed, since
        // nothing is known against it; the worker's preflight checks the fresh inventory.
        None => return Ok(()),
        Some(true) => {}
    }
    let ctx = Ctx {
        state,
        host,
        host_name,
    };
    match &parsed {
        JobSpec::VmCreate(s) => {
            ctx.new_name(&mut errors, s.form.vm_name.as_deref());
            ctx.present(
                &mut errors,
                "storage_class",
                s.form.storage_class.as_deref(),
            );
            let ram = s.form.gb_ram.or(s.memory_gb);
            let field = if s.form.gb_ram.is_some() {
                "gb_ram"
            } else {
                "memory_gb"
            };
            // vm.create leaves the VM off: refused only when it could never start here.
            ctx.memory_total(&mut errors, field, ram);
        }
        JobSpec::DeploymentManaged(s) => {
            ctx.new_name(&mut errors, s.vm.vm_name.as_deref());
            ctx.present(&mut errors, "storage_class", s.vm.storage_class.as_deref());
            ctx.present(&mut errors, "image_name", s.disk.image_name.as_deref());
            ctx.present(&mut errors, "network", s.nic.network.as_deref());
            // A managed deployment starts the VM: it must fit next to the running ones.
            ctx.memory_free(&mut errors, "gb_ram", s.vm.gb_ram);
            ctx.disk_size(forms, &mut errors, "disk_size_gb", s.disk.disk_size_gb);
        }
        JobSpec::VmUpdate(s) => {
            if ctx.vm(&mut errors, &s.vm).is_some() {
                let (field, ram) = match (s.gb_ram, s.memory_gb) {
                    (Some(r), _) => ("gb_ram", Some(r)),
                    (None, r) => ("memory_gb", r),
                };
                // Hyper-V changes the memory of a VM that is off; it must fit the host to
                // start again.
                ctx.form_limit(forms, &mut errors, field, "gb_ram", ram);
                ctx.memory_total(&mut errors, field, ram);
                let (field, cpu) = match (s.cpu_cores, s.cpu) {
                    (Some(c), _) => ("cpu_cores", Some(c)),
                    (None, c) => ("cpu", c),
                };
                ctx.form_limit(forms, &mut errors, field, "cpu_cores", cpu);
            }
        }
        JobSpec::VmPower(s) => {
            if let Some(vm) = ctx.vm(&mut errors, &s.vm) {
                let starts =
                    matches!(s.action.as_deref(), Some(a) if a.eq_ignore_ascii_case("start"));
                let off = matches!(vm.state.to_ascii_lowercase().as_str(), "off" | "saved");
                if starts && off {
                    ctx.memory_free(&mut errors, "vm_name", Some(vm.memory_gb));
                }
            }
        }
        JobSpec::VmDelete(s) => {
            ctx.vm(&mut errors, &s.vm);
        }
        JobSpec::VmInitialize(s) => {
            ctx.vm(&mut errors, &s.vm);
        }
        JobSpec::DiskCreate(s) => {
            ctx.vm(&mut errors, &s.vm);
            ctx.present(&mut errors, "image_name", s.disk.image_name.as_deref());
            ctx.present(&mut errors, "storage_class", s.storage_class.as_deref());
            let (field, size) = match (s.disk.disk_size_gb, s.size_gb) {
                (Some(n), _) => ("disk_size_gb", Some(n)),
                (None, n) => ("size_gb", n),
            };
            ctx.disk_size(forms, &mut errors, field, size);
        }
        JobSpec::DiskUpdate(s) => {
            if let Some(vm) = ctx.vm(&mut errors, &s.vm) {
                let (field, size) = match (s.disk_size_gb, s.size_gb) {
                    (Some(n), _) => ("disk_size_gb", Some(n)),
                    (None, n) => ("size_gb", n),
                };
                ctx.disk_size(forms, &mut errors, field, size);
                let (id_field, id) = match (&s.resource_id, &s.disk_id) {
                    (Some(id), _) => ("resource_id", Some(id.as_str())),
                    (None, id) => ("disk_id", id.as_deref()),
                };
                ctx.no_shrink(&mut errors, &vm.name, (id_field, id), (field, size));
            }
        }
        JobSpec::DiskDelete(s) => {
            if let Some(vm) = ctx.vm(&mut errors, &s.vm) {
                let (field, id) = match (&s.resource_id, &s.disk_id) {
                    (Some(id), _) => ("resource_id", Some(id.as_str())),
                    (None, id) => ("disk_id", id.as_deref()),
                };
                ctx.disk(&mut errors, &vm.name, field, id);
            }
        }
        JobSpec::NicCreate(s) => {
            ctx.vm(&mut errors, &s.vm);
            ctx.present(&mut errors, "network", s.nic.network.as_deref());
        }
        JobSpec::NicUpdate(s) => {
            ctx.vm(&mut errors, &s.vm);
            ctx.present(&mut errors, "network", s.network.as_deref());
        }
        JobSpec::NicDelete(s) => {
            if let Some(vm) = ctx.vm(&mut errors, &s.vm) {
                let (field, id) = match (&s.resource_id, &s.nic_id) {
                    (Some(id), _) => ("resource_id", Some(id.as_str())),
                    (None, id) => ("nic_id", id.as_deref()),
                };
                ctx.nic(&mut errors, &vm.name, field, id);
            }
        }
        JobSpec::Noop(_) => {}
    }
    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(errors.0)
    }
}

/// One host's view for the checks.
struct Ctx<'a> {
    state: &'a State,
    host: &'a HostInfo,
    host_name: &'a str,
}

impl Ctx<'_> {
    /// A new VM's name: not on the host, not claimed by another open request for it.
    fn new_name(&self, errors: &mut Errors, name: Option<&str>) {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return;
        };
        let host = self.host_name;
        if self.host.vms.contains_key(&name.to_ascii_lowercase()) {
            errors.add(
                "vm_name",
                ErrorCode::NameInUse,
                format!("a VM named {name} already exists on {host}"),
            );
            return;
        }
        // Jobs rebuilt from events after a restart carry their envelope only when they asked
        // for approval (`approval.requested` holds it); a queued job without one is not seen.
        let claim = self.state.jobs.values().find(|j| {
            matches!(
                j.phase,
                Phase::AwaitingApproval | Phase::Queued | Phase::Running | Phase::Interrupted
            ) && matches!(j.kind.as_str(), "vm.create" | "deployment.managed")
                && j.target.eq_ignore_ascii_case(host)
                && j.envelope
                    .as_ref()
                    .and_then(|e| e.spec.get("vm_name"))
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        });
        if let Some(j) = claim {
            errors.add(
                "vm_name",
                ErrorCode::NameInUse,
                format!(
                    "{name} is claimed on {host} by job {} ({})",
                    j.short(),
                    j.phase.as_str()
                ),
            );
        }
    }

    /// An image, network or storage class named in `field` is on the host. Checked only when
    /// the host's inventory listed any of that kind (an inventory without the list says
    /// nothing about it).
    fn present(&self, errors: &mut Errors, field: &str, value: Option<&str>) {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return;
        };
        let (known, what) = match field {
            "image_name" => (&self.host.images, "image"),
            "network" => (&self.host.networks, "network"),
            _ => (&self.host.storage_classes, "storage class"),
        };
        if known.is_empty() || known.iter().any(|k| k.eq_ignore_ascii_case(value)) {
            return;
        }
        errors.add(
            field,
            ErrorCode::UnknownChoice,
            format!(
                "host {} has no {what} {value}; it has {}",
                self.host_name,
                known.join(", ")
            ),
        );
    }

    /// The VM `vm` names on the host, or a `not_found` error on its field.
    fn vm(&self, errors: &mut Errors, vm: &VmRef) -> Option<crate::reply::VmRow> {
        let by_name = vm
            .vm_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let by_id = vm.vm_id.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let found = match (by_name, by_id) {
            (Some(name), _) => self.host.vms.get(&name.to_ascii_lowercase()),
            (None, Some(id)) => self
                .host
                .vms
                .values()
                .find(|v| v.id.eq_ignore_ascii_case(id)),
            (None, None) => return None,
        };
        if let Some(row) = found {
            return Some(row.clone());
        }
        let (field, what) = match (by_name, by_id) {
            (Some(name), _) => ("vm_name", format!("no VM named {name}")),
            (None, _) => ("vm_id", "no VM with that id".to_string()),
        };
        errors.add(
            field,
            ErrorCode::NotFound,
            format!("{what} on {}", self.host_name),
        );
        None
    }

    /// The disk `id` of VM `vm` when the inventory listed the VM's disks.
    fn disk(
        &self,
        errors: &mut Errors,
        vm: &str,
        field: &str,
        id: Option<&str>,
    ) -> Option<crate::state::DiskInfo> {
        let id = id.map(str::trim).filter(|i| !i.is_empty())?;
        let detail = self.host.details.get(&vm.to_ascii_lowercase())?;
        if let Some(d) = detail.disks.iter().find(|d| d.is(id)) {
            return Some(d.clone());
        }
        errors.add(
            field,
            ErrorCode::NotFound,
            format!("VM {vm} has no disk {id}"),
        );
        None
    }

    /// The network adapter `id` (its id or name, as the agent finds one) of VM `vm`, when the
    /// inventory listed the VM's adapters.
    fn nic(&self, errors: &mut Errors, vm: &str, field: &str, id: Option<&str>) {
        let Some(id) = id.map(str::trim).filter(|i| !i.is_empty()) else {
            return;
        };
        let Some(detail) = self.host.details.get(&vm.to_ascii_lowercase()) else {
            return;
        };
        let found = detail
            .nics
            .iter()
            .any(|n| n.id.eq_ignore_ascii_case(id) || n.name.eq_ignore_ascii_case(id));
        if !found {
            errors.add(
                field,
                ErrorCode::NotFound,
                format!("VM {vm} has no network adapter {id}"),
            );
        }
    }

    /// A VM value within the limits of the VM form's field `form_field` (`gb_ram`,
    /// `cpu_cores`).
    fn form_limit(
        &self,
        forms: &Forms,
        errors: &mut Errors,
        field: &str,
        form_field: &str,
        value: Option<u64>,
    ) {
        let Some(value) = value else {
            return;
        };
        let Some(limits) = forms.get("vm").and_then(|f| f.field(form_field)) else {
            return;
        };
        let min = limits.min.and_then(|m| u64::try_from(m).ok()).unwrap_or(0);
        let max = limits.max.and_then(|m| u64::try_from(m).ok());
        if value < min || max.is_some_and(|m| value > m) {
            let max = max.map_or_else(|| "any".to_string(), |m| m.to_string());
            errors.add(
                field,
                ErrorCode::OutOfRange,
                format!("{form_field} is {min} to {max}"),
            );
        }
    }

    /// A resized disk does not shrink: checked when the inventory reported the disk's size.
    fn no_shrink(
        &self,
        errors: &mut Errors,
        vm: &str,
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
    fn disk_size(&self, forms: &Forms, errors: &mut Errors, field: &str, size: Option<u64>) {
        let Some(size) = size else {
            return;
        };
        let Some(limits) = forms.get("disk").and_then(|f| f.field("disk_size_gb")) else {
            return;
        };
        let min = limits.min.and_then(|m| u64::try_from(m).ok()).unwrap_or(0);
        let max = limits.max.and_then(|m| u64::try_from(m).ok());
        if size < min || max.is_some_and(|m| size > m) {
            let max = max.map_or_else(|| "any size".to_string(), |m| m.to_string());
            errors.add(
                field,
                ErrorCode::OutOfRange,
                format!("a disk is {min} to {max} GB"),
            );
        }
    }

    /// Memory a VM that will start needs: it must fit next to the VMs running on the host.
    fn memory_free(&self, errors: &mut Errors, field: &str, gb: Option<u64>) {
        let (Some(gb), Some(total)) = (gb, self.host.total_memory_gb) else {
            return;
        };
        let in_use = self.host.memory_in_use_gb.unwrap_or(0);
        let free = total.saturating_sub(in_use);
        if gb > free {
            errors.add(
                field,
                ErrorCode::InsufficientMemory,
                format!(
                    "{gb} GB of memory does not fit host {}: {free} of {total} GB are free",
                    self.host_name
                ),
            );
        }
    }

    /// Memory of a VM that stays off: it must not exceed the host's memory.
    fn memory_total(&self, errors: &mut Errors, field: &str, gb: Option<u64>) {
        let (Some(gb), Some(total)) = (gb, self.host.total_memory_gb) else {
            return;
        };
        if gb > total {
            errors.add(
                field,
                ErrorCode::InsufficientMemory,
                format!(
                    "{gb} GB of memory is more than host {} has ({total} GB)",
                    self.host_name
                ),
            );
        }
    }
}
