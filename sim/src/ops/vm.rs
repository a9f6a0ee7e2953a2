//! VM operations: `vm.create`, `vm.get`, `vm.update`, `vm.delete`, `vm.power`.

use super::*;

pub(super) fn vm_create(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let name = ctx.req_str("vm_name")?.to_string();
    if let Some(problem) = aetherv_core::validate::resource_name::path_name_problem(&name) {
        // Refused even when the caller skipped validation: the name becomes the VM's folder.
        return Err(err("invalid_argument", format!("vm_name {problem}")));
    }
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
        Some(c) => storage_class(host, c)?,
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
    let clustered = ctx.bool("vm_clustered")?.unwrap_or(false);
    let cluster = host.spec.cluster.clone();
    if clustered && cluster.is_none() {
        return Err(err(
            "invalid_state",
            format!(
                "host {} is not a member of a failover cluster",
                host.spec.name
            ),
        ));
    }
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
        clustered,
        created_at: ctx.now.to_rfc3339(),
        disks: Vec::new(),
        nics: Vec::new(),
        dvd_iso: None,
        host_kvp: Default::default(),
        guest_kvp: Default::default(),
        applied_config: None,
    };
    let data = json!({"vm_id": vm.id, "vm_name": vm.name, "status": "created",
                      "state": "Off", "path": path, "storage_class": class.name,
                      "clustered": clustered});
    ctx.log(format!("VM '{name}' created with id {}", vm.id));
    if let (true, Some(c)) = (clustered, &cluster) {
        ctx.log(format!(
            "MSCluster_Cluster.AddVirtualMachine '{name}' on {c}"
        ));
    }
    host.vms.push(vm);
    Ok((format!("VM '{name}' created"), data))
}

pub(super) fn vm_get(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let vm = &host.vms[i];
    ctx.log(format!("Found VM '{}' ({})", vm.name, vm.state.as_str()));
    Ok((format!("VM '{}' found", vm.name), vm.view()))
}

pub(super) fn vm_update(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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

pub(super) fn vm_delete(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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

pub(super) fn vm_power(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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
            g.on_host_event(vm, &GuestEvent::Started, &mut host.faults);
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
