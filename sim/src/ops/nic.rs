//! Network adapter operations: `nic.create` (logical network → switch + VLAN), `nic.update`,
//! `nic.delete`.

use super::*;

pub(super) fn resolve_network(
    host: &HostState,
    name: &str,
) -> Result<(String, String, u16), OpError> {
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

pub(super) fn find_nic(vm: &Vm, ctx: &Ctx<'_>) -> Result<usize, OpError> {
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

pub(super) fn nic_create(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    let i = find_vm(host, ctx)?;
    let (network, switch, mut vlan) = resolve_network(host, ctx.req_str("network")?)?;
    if let Some(v) = ctx.uint("vlan_id")? {
        vlan = u16::try_from(v)
            .ok()
            .filter(|v| (1..=4094).contains(v))
            .ok_or_else(|| {
                err(
                    "invalid_argument",
                    format!("vlan_id {v} is outside 1..4094"),
                )
            })?;
    }
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
        ip_addresses: Vec::new(),
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

pub(super) fn nic_update(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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

pub(super) fn nic_delete(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
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
