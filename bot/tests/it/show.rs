//! `vm show` with the VM's disks, network adapters and addresses from the last inventory, and
//! `jobs` newest first with a limit.

use super::*;
use aetherv_core::{Event, EventBody};
use serde_json::json;

fn inventory() -> Event {
    Event::for_host(
        0,
        EventBody::HostInventory {
            host: "hv01".into(),
            reachable: true,
            inventory: json!({"host": {}, "vms": [{
                "vm_name": "web-01", "vm_id": "5f1c", "state": "Running",
                "cpu_cores": 2, "memory_gb": 4,
                "disks": [{"disk_id": "d1", "disk_path": "D:\\VMs\\web-01\\os.vhdx", "size_gb": 40}],
                "nics": [
                    {"nic_id": "n1", "adapter_name": "eth0", "network": "prod",
                     "mac_address": "00155D000001", "ip_addresses": ["10.0.0.5", "fe80::1"]},
                    {"nic_id": "n2", "adapter_name": "eth1", "network": "backup",
                     "mac_address": "00155D000002"}
                ]
            }, {"vm_name": "bare", "vm_id": "77aa", "state": "Off", "cpu_cores": 1, "memory_gb": 1}]}),
            error: None,
        },
    )
}

#[tokio::test]
async fn vm_show_lists_disks_nics_and_addresses() {
    let b = broker();
    let mut e = engine(&b, policy(1, 3600), &["hv01"]);
    e.handle_event(&inventory(), tokio::time::Instant::now());
    assert_eq!(
        say(&mut e, "eve", "vm show web-01").await,
        ["web-01 on hv01: Running, 2 vCPU, 4 GB, id 5f1c\n  \
          disk D:\\VMs\\web-01\\os.vhdx, 40 GB, id d1\n  \
          nic eth0 on prod, MAC 00155D000001, 10.0.0.5 fe80::1\n  \
          nic eth1 on backup, MAC 00155D000002, no address reported"]
    );
    // A VM without disks or adapters shows its row only, as before.
    assert_eq!(
        say(&mut e, "eve", "vm show BARE").await,
        ["bare on hv01: Off, 1 vCPU, 1 GB, id 77aa"]
    );
    assert_eq!(
        say(&mut e, "eve", "vm show nope").await,
        ["eve: no VM named nope"]
    );
}
