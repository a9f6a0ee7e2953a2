//! Disk operations: `disk.create` (blank or cloned, first free SCSI slot), `disk.update`
//! (expand only), `disk.delete` (detach and delete the file).

use super::*;

pub(super) fn find_disk(vm: &Vm, ctx: &Ctx<'_>) -> Result<usize, OpError> {
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

pub(super) fn disk_create(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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
        // A clone is at least as large as its image (VHDX resize only expands): a smaller
        // requested size keeps the image's size, with a warning.
        (Some(im), Some(s)) if s < im.size_gb => {
            ctx.log(format!(
                "WARNING: disk_size_gb {s} is smaller than image '{}' ({} GB); keeping the image size",
                im.name, im.size_gb
            ));
            im.size_gb
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
        (None, None) => aetherv_core::validate::resource_name::disk_file_stem(&vm.name, ctx.key),
    };
    let file = match tag {
        Some(t) => format!("{stem}-{t}.vhdx"),
        None => format!("{stem}.vhdx"),
    };
    if let Some(problem) = aetherv_core::validate::resource_name::path_name_problem(&file) {
        return Err(err(
            "invalid_argument",
            format!("the disk's file name {problem}"),
        ));
    }
    let dir = match ctx.str("storage_class") {
        Some(c) => {
            let class = storage_class(host, c)?;
            format!("{}\\{}", class.path.trim_end_matches('\\'), vm.name)
        }
        None => vm.path.clone(),
    };
    let path = format!("{dir}\\{file}");
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

pub(super) fn disk_update(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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

pub(super) fn disk_delete(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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
