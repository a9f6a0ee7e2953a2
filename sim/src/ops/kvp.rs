//! Guest-facing operations: KVP items (`kvp.read|write|remove`), the provisioning ISO
//! (`iso.attach|detach`) and failover-cluster registration (`cluster.add|remove`).

use super::*;

pub(super) fn kvp_read(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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

pub(super) fn kvp_write(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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
        g.on_host_event(
            vm,
            &GuestEvent::HostKvpWritten { keys: keys.clone() },
            &mut host.faults,
        );
    }
    Ok((
        format!("{} item(s) written", keys.len()),
        json!({"vm_id": vm.id, "vm_name": vm.name, "written": keys}),
    ))
}

pub(super) fn kvp_remove(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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
        g.on_host_event(
            vm,
            &GuestEvent::HostKvpRemoved {
                keys: removed.clone(),
            },
            &mut host.faults,
        );
    }
    Ok((
        format!("{} item(s) removed", removed.len()),
        json!({"vm_id": vm.id, "vm_name": vm.name, "removed": removed}),
    ))
}

pub(super) fn iso_attach(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let version = host.spec.agent_version.clone();
    let vm = &mut host.vms[i];
    let iso = match ctx.str("iso_path") {
        Some(p) => p.to_string(),
        None => {
            let family = ctx.str("os_family").unwrap_or(&vm.os_family);
            let os = if family.eq_ignore_ascii_case("linux") {
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
        g.on_host_event(vm, &GuestEvent::IsoAttached, &mut host.faults);
    }
    Ok((
        format!("ISO attached to VM '{}'", vm.name),
        json!({"vm_id": vm.id, "vm_name": vm.name, "iso_path": iso, "version": version}),
    ))
}

pub(super) fn iso_detach(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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

pub(super) fn cluster_add(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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

pub(super) fn cluster_remove(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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
