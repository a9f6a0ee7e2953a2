//! The agent operations, executed against a [`HostState`] with Hyper-V's semantics.
//!
//! [`execute`] is synchronous and free of I/O: it takes the request, changes the host state and
//! returns the log lines the agent would print plus its single result. Latency, recording, the
//! idempotency journal and WinRM live elsewhere ([`crate::sim`], [`crate::server`]).
//!
//! Error codes are the agent contract's stable codes: `invalid_argument`, `not_found`,
//! `name_conflict`, `invalid_state`, `disks_attached`, `shared_disk`, `insufficient_memory`,
//! `no_free_slot`, plus whatever an injected fault says.

use crate::guest::{Guest, GuestEvent};
use crate::state::{disk_view, nic_view, Disk, HostState, Nic, Vm, VmState};
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// What one execution printed and returned.
#[derive(Debug, Clone, PartialEq)]
pub struct OpOutput {
    /// Log lines printed before the result line.
    pub logs: Vec<String>,
    /// The result.
    pub result: AgentResult,
}

impl OpOutput {
    /// The process exit code the agent ends with: 0 on success, 1 on error.
    pub fn exit_code(&self) -> i32 {
        if self.result.is_ok() {
            0
        } else {
            1
        }
    }
}

/// A failed operation: a stable code and a Hyper-V-like message.
#[derive(Debug, Clone, PartialEq)]
struct OpError {
    code: &'static str,
    message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> OpError {
    OpError {
        code,
        message: message.into(),
    }
}

type OpResult = Result<(String, Value), OpError>;

/// Execution context: the request spec, the log sink, the guest and the clock.
struct Ctx<'a> {
    spec: &'a Map<String, Value>,
    logs: Vec<String>,
    guest: Option<&'a dyn Guest>,
    now: DateTime<Utc>,
}

impl Ctx<'_> {
    fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.spec
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    fn req_str(&self, key: &str) -> Result<&str, OpError> {
        self.str(key).ok_or_else(|| {
            err(
                "invalid_argument",
                format!("missing required field '{key}'"),
            )
        })
    }

    /// A non-negative integer given as a number or a numeric string.
    fn uint(&self, key: &str) -> Result<Option<u64>, OpError> {
        match self.spec.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                err(
                    "invalid_argument",
                    format!("field '{key}' must be a non-negative integer"),
                )
            }),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                err(
                    "invalid_argument",
                    format!("field '{key}' must be a non-negative integer"),
                )
            }),
            Some(_) => Err(err(
                "invalid_argument",
                format!("field '{key}' must be a non-negative integer"),
            )),
        }
    }

    /// The first of several alias keys that is present.
    fn uint_any(&self, keys: &[&str]) -> Result<Option<u64>, OpError> {
        for k in keys {
            if let Some(v) = self.uint(k)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, OpError> {
        match self.spec.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" | "1" => Ok(Some(true)),
                "false" | "off" | "no" | "0" => Ok(Some(false)),
                _ => Err(err(
                    "invalid_argument",
                    format!("field '{key}' must be a boolean"),
                )),
            },
            Some(_) => Err(err(
                "invalid_argument",
                format!("field '{key}' must be a boolean"),
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, OpError> {
        match self.spec.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        err(
                            "invalid_argument",
                            format!("field '{key}' must be a list of strings"),
                        )
                    })
                })
                .collect(),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(_) => Err(err(
                "invalid_argument",
                format!("field '{key}' must be a list of strings"),
            )),
        }
    }
}

/// Executes one agent request against `host`.
pub fn execute(
    host: &mut HostState,
    req: &AgentRequest,
    guest: Option<&dyn Guest>,
    now: DateTime<Utc>,
) -> OpOutput {
    let op = req.operation;
    let mut ctx = Ctx {
        spec: &req.spec,
        logs: Vec::new(),
        guest,
        now,
    };
    ctx.log(format!(
        "Aether-V agent {} on {}: {} (correlation {})",
        host.spec.agent_version,
        host.spec.name.to_ascii_uppercase(),
        op,
        req.correlation_id
    ));
    let outcome: Result<(String, Value), (String, String)> = match host.take_fault(op.as_str()) {
        Some(f) => {
            ctx.log(format!("Injected fault for {op}"));
            Err((f.code, f.message))
        }
        None => dispatch(host, op, &mut ctx).map_err(|e| (e.code.to_string(), e.message)),
    };
    let result = match outcome {
        Ok((message, data)) => AgentResult::success(message, data, &req.correlation_id),
        Err((code, message)) => {
            ctx.log(format!("ERROR: {message}"));
            AgentResult::error(&code, message, &req.correlation_id)
        }
    };
    OpOutput {
        logs: ctx.logs,
        result,
    }
}

fn dispatch(host: &mut HostState, op: AgentOperation, ctx: &mut Ctx<'_>) -> OpResult {
    match op {
        AgentOperation::HostInventory => host_inventory(host, ctx),
        AgentOperation::Noop => noop(ctx),
        AgentOperation::VmCreate => vm_create(host, ctx),
        AgentOperation::VmGet => vm_get(host, ctx),
        AgentOperation::VmUpdate => vm_update(host, ctx),
        AgentOperation::VmDelete => vm_delete(host, ctx),
        AgentOperation::VmPower => vm_power(host, ctx),
        AgentOperation::DiskCreate => disk_create(host, ctx),
        AgentOperation::DiskUpdate => disk_update(host, ctx),
        AgentOperation::DiskDelete => disk_delete(host, ctx),
        AgentOperation::NicCreate => nic_create(host, ctx),
        AgentOperation::NicUpdate => nic_update(host, ctx),
        AgentOperation::NicDelete => nic_delete(host, ctx),
        AgentOperation::KvpRead => kvp_read(host, ctx),
        AgentOperation::KvpWrite => kvp_write(host, ctx),
        AgentOperation::KvpRemove => kvp_remove(host, ctx),
        AgentOperation::IsoAttach => iso_attach(host, ctx),
        AgentOperation::IsoDetach => iso_detach(host, ctx),
        AgentOperation::ClusterAdd => cluster_add(host, ctx),
        AgentOperation::ClusterRemove => cluster_remove(host, ctx),
    }
}

/// Index of the VM named by `vm_id` and/or `vm_name`; both given must agree.
fn find_vm(host: &HostState, ctx: &Ctx<'_>) -> Result<usize, OpError> {
    let id = ctx.str("vm_id");
    let name = ctx.str("vm_name");
    let by_id = id.map(|id| host.vms.iter().position(|v| v.id.eq_ignore_ascii_case(id)));
    let by_name = name.map(|n| host.vms.iter().position(|v| v.name.eq_ignore_ascii_case(n)));
    match (by_id, by_name) {
        (None, None) => Err(err(
            "invalid_argument",
            "missing required field 'vm_id' or 'vm_name'",
        )),
        (Some(None), _) => Err(err(
            "not_found",
            format!(
                "Hyper-V was unable to find a virtual machine with id '{}'.",
                id.unwrap_or_default()
            ),
        )),
        (None, Some(None)) => Err(err(
            "not_found",
            format!(
                "Hyper-V was unable to find a virtual machine with name '{}'.",
                name.unwrap_or_default()
            ),
        )),
        (Some(Some(i)), Some(_)) => {
            let vm = &host.vms[i];
            if name.is_some_and(|n| !vm.name.eq_ignore_ascii_case(n)) {
                Err(err(
                    "invalid_argument",
                    format!(
                        "vm_id '{}' belongs to VM '{}', not '{}'",
                        vm.id,
                        vm.name,
                        name.unwrap_or_default()
                    ),
                ))
            } else {
                Ok(i)
            }
        }
        (Some(Some(i)), None) | (None, Some(Some(i))) => Ok(i),
    }
}

fn host_inventory(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    ctx.log("Collecting host resources and virtual machines");
    let vms: Vec<Value> = host.vms.iter().map(Vm::view).collect();
    ctx.log(format!("Found {} virtual machine(s)", vms.len()));
    Ok((
        "Inventory collected".into(),
        json!({"host": host.host_view(), "vms": vms}),
    ))
}

fn noop(ctx: &mut Ctx<'_>) -> OpResult {
    ctx.log("No-op: validating the request envelope");
    Ok((
        "noop completed".into(),
        json!({"operation_validated": true, "echo": Value::Object(ctx.spec.clone())}),
    ))
}

fn vm_create(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let name = ctx.req_str("vm_name")?.to_string();
    if let Some(existing) = host
        .vm(&name)
        .filter(|v| v.name.eq_ignore_ascii_case(&name))
    {
        return Err(err(
            "name_conflict",
            format!(
                "A virtual machine named '{}' already exists on {} (id {}).",
                existing.name, host.spec.name, existing.id
            ),
        ));
    }
    let memory_gb = ctx.uint_any(&["gb_ram", "memory_gb"])?.unwrap_or(2);
    let cpu = ctx.uint_any(&["cpu_cores", "cpu"])?.unwrap_or(1);
    if memory_gb == 0 || memory_gb > host.spec.total_memory_gb {
        return Err(err(
            "invalid_argument",
            format!(
                "memory {memory_gb} GB is outside 1..{} GB",
                host.spec.total_memory_gb
            ),
        ));
    }
    let cpu_cores = u32::try_from(cpu)
        .ok()
        .filter(|c| (1..=host.spec.total_cpu_cores).contains(c))
        .ok_or_else(|| {
            err(
                "invalid_argument",
                format!(
                    "processor count {cpu} is outside 1..{} (logical processors of the host)",
                    host.spec.total_cpu_cores
                ),
            )
        })?;
    let class = match ctx.str("storage_class") {
        Some(c) => host
            .spec
            .storage_classes
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(c))
            .ok_or_else(|| {
                err(
                    "not_found",
                    format!("storage class '{c}' is not defined on {}", host.spec.name),
                )
            })?,
        None => host
            .spec
            .storage_classes
            .first()
            .ok_or_else(|| err("not_found", "the host defines no storage class"))?,
    }
    .clone();
    let os_family = ctx
        .str("os_family")
        .unwrap_or("windows")
        .to_ascii_lowercase();
    if os_family != "windows" && os_family != "linux" {
        return Err(err(
            "invalid_argument",
            format!("os_family '{os_family}' is not windows or linux"),
        ));
    }
    let notes = ctx.str("notes").unwrap_or_default().to_string();
    let path = format!("{}\\{}", class.path.trim_end_matches('\\'), name);
    ctx.log(format!(
        "Creating VM '{name}' with {memory_gb} GB memory and {cpu_cores} vCPU in {path}"
    ));
    if os_family == "linux" {
        ctx.log("Setting secure boot template MicrosoftUEFICertificateAuthority");
    }
    let vm = Vm {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.clone(),
        state: VmState::Off,
        cpu_cores,
        memory_gb,
        dynamic_memory: false,
        os_family,
        notes,
        path: path.clone(),
        storage_class: class.name.clone(),
        generation: 2,
        secure_boot: true,
        tpm: false,
        clustered: false,
        created_at: ctx.now.to_rfc3339(),
        disks: Vec::new(),
        nics: Vec::new(),
        dvd_iso: None,
        host_kvp: Default::default(),
        guest_kvp: Default::default(),
        applied_config: None,
    };
    let data = json!({"vm_id": vm.id, "vm_name": vm.name, "status": "created",
                      "state": "Off", "path": path, "storage_class": class.name});
    ctx.log(format!("VM '{name}' created with id {}", vm.id));
    host.vms.push(vm);
    Ok((format!("VM '{name}' created"), data))
}

fn vm_get(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let vm = &host.vms[i];
    ctx.log(format!("Found VM '{}' ({})", vm.name, vm.state.as_str()));
    Ok((format!("VM '{}' found", vm.name), vm.view()))
}

fn vm_update(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let total_cpu = host.spec.total_cpu_cores;
    let total_mem = host.spec.total_memory_gb;
    let cpu = ctx.uint_any(&["cpu_cores", "cpu"])?;
    let mem = ctx.uint_any(&["gb_ram", "memory_gb"])?;
    let notes = ctx
        .spec
        .get("notes")
        .and_then(Value::as_str)
        .map(str::to_string);
    let dynamic = ctx.bool("dynamic_memory")?;
    let secure_boot = ctx.bool("secure_boot")?;
    let tpm = ctx.bool("tpm")?;
    let vm = &mut host.vms[i];
    let running = vm.state != VmState::Off;
    let mut applied = Vec::new();
    let mut warnings = Vec::new();
    if let Some(c) = cpu {
        let c = u32::try_from(c)
            .ok()
            .filter(|c| (1..=total_cpu).contains(c))
            .ok_or_else(|| {
                err(
                    "invalid_argument",
                    format!("processor count {c} is outside 1..{total_cpu}"),
                )
            })?;
        if c != vm.cpu_cores {
            if running {
                return Err(err(
                    "invalid_state",
                    format!(
                        "Cannot change the processor count of VM '{}' while it is {}.",
                        vm.name,
                        vm.state.as_str()
                    ),
                ));
            }
            ctx.log(format!("Set-VMProcessor -Count {c}"));
            vm.cpu_cores = c;
            applied.push("cpu_cores");
        }
    }
    if let Some(m) = mem {
        if m == 0 || m > total_mem {
            return Err(err(
                "invalid_argument",
                format!("memory {m} GB is outside 1..{total_mem} GB"),
            ));
        }
        if m != vm.memory_gb {
            if running && !vm.dynamic_memory {
                return Err(err(
                    "invalid_state",
                    format!(
                        "Cannot change the startup memory of VM '{}' while it is {}.",
                        vm.name,
                        vm.state.as_str()
                    ),
                ));
            }
            ctx.log(format!("Set-VMMemory -StartupBytes {m}GB"));
            vm.memory_gb = m;
            applied.push("memory_gb");
        }
    }
    if let Some(d) = dynamic {
        if d != vm.dynamic_memory {
            if running {
                warnings.push("dynamic memory can only be changed while the VM is Off".to_string());
            } else {
                vm.dynamic_memory = d;
                applied.push("dynamic_memory");
            }
        }
    }
    for (key, want, field) in [
        ("secure_boot", secure_boot, &mut vm.secure_boot),
        ("tpm", tpm, &mut vm.tpm),
    ] {
        if let Some(w) = want {
            if w != *field {
                if running {
                    warnings.push(format!("{key} can only be changed while the VM is Off"));
                } else {
                    *field = w;
                    applied.push(key);
                }
            }
        }
    }
    if let Some(n) = notes {
        if n != vm.notes {
            vm.notes = n;
            applied.push("notes");
        }
    }
    for w in &warnings {
        ctx.log(format!("WARNING: {w}"));
    }
    let message = if applied.is_empty() {
        format!("No changes applied to VM '{}'", vm.name)
    } else {
        format!("Updated VM '{}': {}", vm.name, applied.join(", "))
    };
    ctx.log(message.clone());
    Ok((
        message.clone(),
        json!({"vm_id": vm.id, "vm_name": vm.name, "updates_applied": applied,
               "warnings": warnings, "message": message}),
    ))
}

fn vm_delete(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let force = ctx.bool("force")?.unwrap_or(false);
    let delete_disks = ctx.bool("delete_disks")?.unwrap_or(false);
    let vm = &host.vms[i];
    if vm.state != VmState::Off && !force {
        return Err(err(
            "invalid_state",
            format!(
                "VM '{}' is {}; stop it first or pass force",
                vm.name,
                vm.state.as_str()
            ),
        ));
    }
    if !vm.disks.is_empty() && !delete_disks {
        return Err(err(
            "disks_attached",
            format!(
                "VM '{}' has {} disk(s) attached; pass delete_disks to delete them",
                vm.name,
                vm.disks.len()
            ),
        ));
    }
    if let Some(d) = vm.disks.iter().find(|d| d.shared) {
        return Err(err(
            "shared_disk",
            format!(
                "disk '{}' is a shared VHDX (persistent reservations); refusing to delete it",
                d.path
            ),
        ));
    }
    let vm = host.vms.remove(i);
    if vm.state != VmState::Off {
        ctx.log(format!("Stop-VM -Force '{}'", vm.name));
    }
    if vm.clustered {
        ctx.log(format!("Removing '{}' from cluster", vm.name));
    }
    for d in &vm.disks {
        ctx.log(format!("Removing disk {}", d.path));
    }
    ctx.log(format!("Remove-VM -Force '{}'", vm.name));
    Ok((
        format!("VM '{}' deleted", vm.name),
        json!({"vm_id": vm.id, "vm_name": vm.name, "status": "deleted",
               "disks_deleted": !vm.disks.is_empty(), "disk_count": vm.disks.len()}),
    ))
}

fn vm_power(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let action = ctx.req_str("action")?.to_ascii_lowercase();
    let in_use = host.memory_in_use_gb();
    let total = host.spec.total_memory_gb;
    let vm = &mut host.vms[i];
    let from = vm.state;
    use VmState::*;
    let (allowed, to, cmdlet): (&[VmState], VmState, &str) = match action.as_str() {
        "start" => (&[Off, Paused, Saved], Running, "Start-VM"),
        "shutdown" => (&[Running], Off, "Stop-VM"),
        "stop" => (&[Running, Paused, Saved], Off, "Stop-VM -TurnOff"),
        "reset" => (&[Running], Running, "Restart-VM -Force"),
        "pause" => (&[Running], Paused, "Suspend-VM"),
        "resume" => (&[Paused], Running, "Resume-VM"),
        "save" => (&[Running, Paused], Saved, "Save-VM"),
        other => {
            return Err(err(
                "invalid_argument",
                format!("unknown power action '{other}' (start, shutdown, stop, reset)"),
            ))
        }
    };
    if !allowed.contains(&from) {
        return Err(err(
            "invalid_state",
            format!(
                "Cannot {action} VM '{}' because it is {}.",
                vm.name,
                from.as_str()
            ),
        ));
    }
    if matches!(from, Off | Saved) && to == Running && in_use + vm.memory_gb > total {
        return Err(err(
            "insufficient_memory",
            format!(
                "'{}' could not initialize: not enough memory in the system to start the virtual machine ({} GB needed, {} GB free).",
                vm.name,
                vm.memory_gb,
                total.saturating_sub(in_use)
            ),
        ));
    }
    ctx.log(format!("{cmdlet} '{}'", vm.name));
    vm.state = to;
    if action == "start" || action == "reset" {
        if let Some(g) = ctx.guest {
            g.on_event(vm, &GuestEvent::Started);
        }
    }
    Ok((
        format!(
            "VM '{}' {action}: {} -> {}",
            vm.name,
            from.as_str(),
            to.as_str()
        ),
        json!({"vm_id": vm.id, "vm_name": vm.name, "action": action,
               "previous_state": from.as_str(), "state": to.as_str()}),
    ))
}

fn find_disk(vm: &Vm, ctx: &Ctx<'_>) -> Result<usize, OpError> {
    let id = ctx
        .str("resource_id")
        .or_else(|| ctx.str("disk_id"))
        .ok_or_else(|| err("invalid_argument", "missing required field 'resource_id'"))?;
    vm.disks
        .iter()
        .position(|d| d.id.eq_ignore_ascii_case(id) || d.path.eq_ignore_ascii_case(id))
        .ok_or_else(|| {
            err(
                "not_found",
                format!("disk '{id}' is not attached to VM '{}'", vm.name),
            )
        })
}

fn disk_create(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let controller = ctx
        .str("controller_type")
        .unwrap_or("SCSI")
        .to_ascii_uppercase();
    if controller == "IDE" {
        return Err(err(
            "invalid_argument",
            "Generation 2 virtual machines do not support IDE controllers; use SCSI",
        ));
    }
    if controller != "SCSI" {
        return Err(err(
            "invalid_argument",
            format!("unknown controller_type '{controller}'"),
        ));
    }
    let disk_type = match ctx.str("disk_type").map(str::to_ascii_lowercase).as_deref() {
        None | Some("dynamic") => "Dynamic",
        Some("fixed") => "Fixed",
        Some(other) => {
            return Err(err(
                "invalid_argument",
                format!("disk_type '{other}' is not Dynamic or Fixed"),
            ))
        }
    };
    let image = match ctx.str("image_name") {
        Some(n) => Some(
            host.spec
                .images
                .iter()
                .find(|im| im.name.eq_ignore_ascii_case(n))
                .cloned()
                .ok_or_else(|| {
                    err(
                        "not_found",
                        format!(
                            "image '{n}' is not in the image catalogue of {}",
                            host.spec.name
                        ),
                    )
                })?,
        ),
        None => None,
    };
    let size = ctx.uint_any(&["disk_size_gb", "size_gb"])?;
    let size_gb = match (&image, size) {
        (Some(im), Some(s)) if s < im.size_gb => {
            return Err(err(
                "invalid_argument",
                format!(
                    "disk_size_gb {s} is smaller than image '{}' ({} GB)",
                    im.name, im.size_gb
                ),
            ))
        }
        (Some(im), s) => s.unwrap_or(im.size_gb),
        (None, Some(s)) if s > 0 && s <= 65536 => s,
        (None, Some(s)) => {
            return Err(err(
                "invalid_argument",
                format!("disk_size_gb {s} is outside 1..65536"),
            ))
        }
        (None, None) => {
            return Err(err(
                "invalid_argument",
                "missing required field 'disk_size_gb'",
            ))
        }
    };
    let vm = &host.vms[i];
    let used: Vec<u8> = vm.disks.iter().map(|d| d.controller_location).collect();
    let location = (0u8..64).find(|l| !used.contains(l)).ok_or_else(|| {
        err(
            "no_free_slot",
            format!(
                "no free location on the SCSI controller of VM '{}'",
                vm.name
            ),
        )
    })?;
    let tag = ctx.str("file_tag").or_else(|| ctx.str("tag"));
    let stem = match (ctx.str("file_name"), &image) {
        (Some(f), _) => f.trim_end_matches(".vhdx").to_string(),
        (None, Some(im)) => format!(
            "{}-{}",
            im.name,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        (None, None) => format!("{}-disk-{}", vm.name, ctx.now.format("%Y%m%d-%H%M%S")),
    };
    let file = match tag {
        Some(t) => format!("{stem}-{t}.vhdx"),
        None => format!("{stem}.vhdx"),
    };
    if file.contains(['\\', '/', ':']) {
        return Err(err(
            "invalid_argument",
            format!("file name '{file}' is not a plain file name"),
        ));
    }
    let path = format!("{}\\{file}", vm.path);
    if host
        .vms
        .iter()
        .flat_map(|v| v.disks.iter())
        .any(|d| d.path.eq_ignore_ascii_case(&path))
    {
        return Err(err(
            "name_conflict",
            format!("The file '{path}' already exists."),
        ));
    }
    match &image {
        Some(im) => ctx.log(format!("Copying image '{}' to {path}", im.path)),
        None => ctx.log(format!(
            "New-VHD -Path '{path}' -SizeBytes {size_gb}GB -{disk_type}"
        )),
    }
    if let Some(im) = &image {
        if size_gb > im.size_gb {
            ctx.log(format!("Resize-VHD -SizeBytes {size_gb}GB"));
        }
    }
    let disk = Disk {
        id: uuid::Uuid::new_v4().to_string(),
        path: path.clone(),
        size_gb,
        disk_type: disk_type.into(),
        image: image.as_ref().map(|im| im.name.clone()),
        controller_type: "SCSI".into(),
        controller_number: 0,
        controller_location: location,
        shared: ctx.bool("shared")?.unwrap_or(false),
    };
    ctx.log(format!("Add-VMHardDiskDrive -ControllerType SCSI -ControllerNumber 0 -ControllerLocation {location}"));
    let vm = &mut host.vms[i];
    let mut data = disk_view(&disk);
    if let Some(o) = data.as_object_mut() {
        o.insert("vm_id".into(), json!(vm.id));
        o.insert("vm_name".into(), json!(vm.name));
        o.insert("status".into(), json!("created"));
    }
    vm.disks.push(disk);
    Ok((format!("Disk {path} attached to VM '{}'", vm.name), data))
}

fn disk_update(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let j = find_disk(&host.vms[i], ctx)?;
    let want = ctx
        .uint_any(&["disk_size_gb", "size_gb"])?
        .ok_or_else(|| err("invalid_argument", "missing required field 'disk_size_gb'"))?;
    let vm = &mut host.vms[i];
    let (vm_id, disk) = (vm.id.clone(), &mut vm.disks[j]);
    let mut warnings = Vec::new();
    let mut applied = Vec::new();
    if want < disk.size_gb {
        return Err(err(
            "invalid_argument",
            format!(
                "disk '{}' is {} GB; shrinking to {want} GB is not supported (expand only)",
                disk.path, disk.size_gb
            ),
        ));
    }
    if want == disk.size_gb {
        warnings.push(format!("disk is already {want} GB"));
    } else {
        ctx.log(format!(
            "Resize-VHD -Path '{}' -SizeBytes {want}GB",
            disk.path
        ));
        disk.size_gb = want;
        applied.push("disk_size_gb");
    }
    let message = format!("Disk {} is {} GB", disk.path, disk.size_gb);
    Ok((
        message.clone(),
        json!({"vm_id": vm_id, "resource_id": disk.id, "size_gb": disk.size_gb,
               "updates_applied": applied, "warnings": warnings, "message": message}),
    ))
}

fn disk_delete(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let j = find_disk(&host.vms[i], ctx)?;
    let vm = &mut host.vms[i];
    let disk = vm.disks.remove(j);
    ctx.log(format!(
        "Remove-VMHardDiskDrive '{}' from '{}'",
        disk.path, vm.name
    ));
    ctx.log(format!("Remove-Item '{}'", disk.path));
    Ok((
        format!("Disk {} deleted", disk.path),
        json!({"disk_id": disk.id, "disk_path": disk.path, "vm_id": vm.id, "status": "deleted"}),
    ))
}

fn resolve_network(host: &HostState, name: &str) -> Result<(String, String, u16), OpError> {
    host.spec
        .networks
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(name))
        .map(|n| (n.name.clone(), n.virtual_switch.clone(), n.vlan_id))
        .ok_or_else(|| {
            err(
                "not_found",
                format!("network '{name}' is not defined on {}", host.spec.name),
            )
        })
}

fn find_nic(vm: &Vm, ctx: &Ctx<'_>) -> Result<usize, OpError> {
    let id = ctx
        .str("resource_id")
        .or_else(|| ctx.str("nic_id"))
        .ok_or_else(|| err("invalid_argument", "missing required field 'resource_id'"))?;
    vm.nics
        .iter()
        .position(|n| n.id.eq_ignore_ascii_case(id) || n.name.eq_ignore_ascii_case(id))
        .ok_or_else(|| {
            err(
                "not_found",
                format!("network adapter '{id}' is not on VM '{}'", vm.name),
            )
        })
}

fn nic_create(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let (network, switch, vlan) = resolve_network(host, ctx.req_str("network")?)?;
    let mac = host.allocate_mac();
    let vm = &mut host.vms[i];
    let name = match ctx.str("adapter_name") {
        Some(n) => n.to_string(),
        None => {
            let mut n = vm.nics.len() + 1;
            while vm
                .nics
                .iter()
                .any(|x| x.name == format!("Network Adapter {n}"))
            {
                n += 1;
            }
            format!("Network Adapter {n}")
        }
    };
    ctx.log(format!(
        "Add-VMNetworkAdapter -Name '{name}' -SwitchName '{switch}'"
    ));
    ctx.log(format!("Set-VMNetworkAdapterVlan -Access -VlanId {vlan}"));
    let nic = Nic {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        network: Some(network),
        virtual_switch: switch,
        vlan_id: Some(vlan),
        mac_address: mac,
        dhcp_guard: false,
        router_guard: false,
        mac_spoofing: false,
    };
    let mut data = nic_view(&nic);
    if let Some(o) = data.as_object_mut() {
        o.insert("vm_id".into(), json!(vm.id));
        o.insert("vm_name".into(), json!(vm.name));
        o.insert("status".into(), json!("created"));
    }
    let message = format!("Network adapter '{}' added to VM '{}'", nic.name, vm.name);
    vm.nics.push(nic);
    Ok((message, data))
}

fn nic_update(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let j = find_nic(&host.vms[i], ctx)?;
    let network = match ctx.str("network") {
        Some(n) => Some(resolve_network(host, n)?),
        None => None,
    };
    let guards = [
        ("dhcp_guard", ctx.bool("dhcp_guard")?),
        ("router_guard", ctx.bool("router_guard")?),
        ("mac_spoofing", ctx.bool("mac_spoofing")?),
    ];
    let mac = ctx
        .str("mac_address")
        .map(|m| m.replace([':', '-'], "").to_ascii_uppercase());
    if let Some(m) = &mac {
        if m.len() != 12 || !m.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(err(
                "invalid_argument",
                format!("'{m}' is not a MAC address"),
            ));
        }
    }
    let vm = &mut host.vms[i];
    let nic = &mut vm.nics[j];
    let mut applied = Vec::new();
    if let Some((name, switch, vlan)) = network {
        if nic.network.as_deref() != Some(name.as_str()) {
            ctx.log(format!(
                "Connect-VMNetworkAdapter -SwitchName '{switch}'; VLAN {vlan}"
            ));
            nic.network = Some(name);
            nic.virtual_switch = switch;
            nic.vlan_id = Some(vlan);
            applied.push("network");
        }
    }
    for (key, want) in guards {
        let field = match key {
            "dhcp_guard" => &mut nic.dhcp_guard,
            "router_guard" => &mut nic.router_guard,
            _ => &mut nic.mac_spoofing,
        };
        if let Some(w) = want.filter(|w| w != field) {
            *field = w;
            applied.push(key);
        }
    }
    if let Some(m) = mac.filter(|m| *m != nic.mac_address) {
        if vm.state != VmState::Off {
            return Err(err(
                "invalid_state",
                "the MAC address can only be changed while the VM is Off",
            ));
        }
        nic.mac_address = m;
        applied.push("mac_address");
    }
    let message = format!(
        "Network adapter '{}' updated: {}",
        nic.name,
        if applied.is_empty() {
            "no changes".to_string()
        } else {
            applied.join(", ")
        }
    );
    ctx.log(message.clone());
    Ok((
        message.clone(),
        json!({"vm_id": vm.id, "resource_id": nic.id, "updates_applied": applied,
               "warnings": Vec::<String>::new(), "message": message}),
    ))
}

fn nic_delete(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let j = find_nic(&host.vms[i], ctx)?;
    let vm = &mut host.vms[i];
    let nic = vm.nics.remove(j);
    ctx.log(format!(
        "Remove-VMNetworkAdapter '{}' from '{}'",
        nic.name, vm.name
    ));
    Ok((
        format!("Network adapter '{}' removed", nic.name),
        json!({"nic_id": nic.id, "vm_id": vm.id, "status": "deleted"}),
    ))
}

fn kvp_read(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let keys = ctx.strings("keys")?;
    let source = ctx.str("source").unwrap_or("guest").to_ascii_lowercase();
    let vm = &host.vms[i];
    let pool = match source.as_str() {
        "guest" => &vm.guest_kvp,
        "host" => &vm.host_kvp,
        other => {
            return Err(err(
                "invalid_argument",
                format!("source '{other}' is not guest or host"),
            ))
        }
    };
    let items: Map<String, Value> = pool
        .iter()
        .filter(|(k, _)| keys.is_empty() || keys.iter().any(|w| w == *k))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    ctx.log(format!(
        "Read {} {source} KVP item(s) of '{}'",
        items.len(),
        vm.name
    ));
    Ok((
        format!("{} item(s)", items.len()),
        json!({"vm_id": vm.id, "vm_name": vm.name, "source": source, "items": items}),
    ))
}

fn kvp_write(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let Some(Value::Object(items)) = ctx.spec.get("items") else {
        return Err(err(
            "invalid_argument",
            "field 'items' must be an object of strings",
        ));
    };
    let mut pairs = Vec::with_capacity(items.len());
    for (k, v) in items {
        let v = v.as_str().ok_or_else(|| {
            err(
                "invalid_argument",
                format!("KVP item '{k}' must be a string"),
            )
        })?;
        if k.is_empty() || k.len() > 256 || v.len() > 1024 {
            return Err(err(
                "invalid_argument",
                format!("KVP item '{k}' exceeds the KVP size limits (name 256, value 1024)"),
            ));
        }
        pairs.push((k.clone(), v.to_string()));
    }
    let vm = &mut host.vms[i];
    if vm.state != VmState::Running {
        ctx.log(format!(
            "WARNING: VM '{}' is {}; the guest will read the items when it runs",
            vm.name,
            vm.state.as_str()
        ));
    }
    let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in pairs {
        vm.host_kvp.insert(k, v);
    }
    ctx.log(format!("Wrote {} KVP item(s) to '{}'", keys.len(), vm.name));
    if let Some(g) = ctx.guest {
        g.on_event(vm, &GuestEvent::HostKvpWritten { keys: keys.clone() });
    }
    Ok((
        format!("{} item(s) written", keys.len()),
        json!({"vm_id": vm.id, "vm_name": vm.name, "written": keys}),
    ))
}

fn kvp_remove(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let keys = ctx.strings("keys")?;
    let vm = &mut host.vms[i];
    let removed: Vec<String> = keys
        .into_iter()
        .filter(|k| vm.host_kvp.remove(k).is_some())
        .collect();
    ctx.log(format!(
        "Removed {} KVP item(s) from '{}'",
        removed.len(),
        vm.name
    ));
    if let Some(g) = ctx.guest {
        g.on_event(
            vm,
            &GuestEvent::HostKvpRemoved {
                keys: removed.clone(),
            },
        );
    }
    Ok((
        format!("{} item(s) removed", removed.len()),
        json!({"vm_id": vm.id, "vm_name": vm.name, "removed": removed}),
    ))
}

fn iso_attach(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let vm = &mut host.vms[i];
    let iso = match ctx.str("iso_path") {
        Some(p) => p.to_string(),
        None => {
            let os = if vm.os_family == "linux" {
                "Linux"
            } else {
                "Windows"
            };
            format!(
                "{}\\{os}Provisioning-{}-{}.iso",
                vm.path,
                vm.name,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            )
        }
    };
    ctx.log(format!("Add-VMDvdDrive -Path '{iso}' to '{}'", vm.name));
    vm.dvd_iso = Some(iso.clone());
    if let Some(g) = ctx.guest {
        g.on_event(vm, &GuestEvent::IsoAttached);
    }
    Ok((
        format!("ISO attached to VM '{}'", vm.name),
        json!({"vm_id": vm.id, "vm_name": vm.name, "iso_path": iso}),
    ))
}

fn iso_detach(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let vm = &mut host.vms[i];
    let (message, iso) = match vm.dvd_iso.take() {
        Some(iso) => {
            ctx.log(format!(
                "Remove-VMDvdDrive from '{}'; Remove-Item '{iso}'",
                vm.name
            ));
            (format!("ISO detached from VM '{}'", vm.name), Some(iso))
        }
        None => {
            ctx.log(format!("WARNING: VM '{}' has no ISO attached", vm.name));
            (format!("VM '{}' has no ISO attached", vm.name), None)
        }
    };
    Ok((
        message,
        json!({"vm_id": vm.id, "vm_name": vm.name, "iso_path": iso, "detached": iso.is_some()}),
    ))
}

fn cluster_add(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let cluster = host.spec.cluster.clone().ok_or_else(|| {
        err(
            "invalid_state",
            format!(
                "host {} is not a member of a failover cluster",
                host.spec.name
            ),
        )
    })?;
    let vm = &mut host.vms[i];
    let warnings: Vec<String> = if vm.clustered {
        vec![format!("VM '{}' is already clustered", vm.name)]
    } else {
        ctx.log(format!(
            "MSCluster_Cluster.AddVirtualMachine '{}' on {cluster}",
            vm.name
        ));
        vm.clustered = true;
        Vec::new()
    };
    Ok((
        format!("VM '{}' is clustered on {cluster}", vm.name),
        json!({"vm_id": vm.id, "vm_name": vm.name, "cluster": cluster, "clustered": true, "warnings": warnings}),
    ))
}

fn cluster_remove(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let vm = &mut host.vms[i];
    let warnings: Vec<String> = if vm.clustered {
        ctx.log(format!(
            "Deleting cluster resources and group of '{}'",
            vm.name
        ));
        vm.clustered = false;
        Vec::new()
    } else {
        vec![format!("VM '{}' is not clustered", vm.name)]
    };
    Ok((
        format!("VM '{}' is not clustered", vm.name),
        json!({"vm_id": vm.id, "vm_name": vm.name, "clustered": false, "warnings": warnings}),
    ))
}
