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
                     "virtual_switch": "vSwitch-Prod", "mac_address": "00155D000001", "ip_addresses": ["10.0.0.5", "fe80::1"]},
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
          addresses 10.0.0.5 fe80::1\n  \
          disk D:\\VMs\\web-01\\os.vhdx, 40 GB, id d1\n  \
          nic eth0 on prod (switch vSwitch-Prod), MAC 00155D000001, 10.0.0.5 fe80::1, id n1\n  \
          nic eth1 on backup, MAC 00155D000002, no address reported, id n2"]
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

#[tokio::test]
async fn jobs_lists_newest_first_with_a_limit_or_all() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let mut e = engine(&b, policy(1, 3600), &["hv01"]);
    let mut shorts = Vec::new();
    for name in ["a1", "a2", "a3"] {
        let out = e
            .handle_line(
                &aetherv_core::rbac::Principal::console("alice"),
                &format!("deploy vm vm_name={name} target_host=hv01 gb_ram=1 cpu_cores=1"),
            )
            .await
            .expect("handled");
        let short = out
            .iter()
            .find_map(|r| match r {
                Reply::JobOpened(v) => Some(v.short.clone()),
                _ => None,
            })
            .expect("a job");
        shorts.push(short);
    }
    let firsts = |out: Vec<String>| -> Vec<String> {
        out.join("\n")
            .lines()
            .filter(|l| !l.contains(" more; "))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect()
    };
    let newest_first: Vec<String> = shorts.iter().rev().cloned().collect();
    assert_eq!(firsts(say(&mut e, "eve", "jobs").await), newest_first);
    let cut = say(&mut e, "eve", "jobs --limit 2").await;
    assert!(
        cut.join("\n")
            .ends_with("1 more; `jobs --limit N` or `jobs --all` shows them"),
        "{cut:?}"
    );
    assert_eq!(firsts(cut), newest_first[..2]);
    // Each row says when the job was requested.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let all = say(&mut e, "eve", "jobs").await.join("\n");
    assert_eq!(all.matches(&today).count(), 3, "{all}");
    assert!(!all.contains(" more; "), "{all}");
    assert_eq!(
        firsts(say(&mut e, "eve", "jobs --all --limit 1").await),
        newest_first
    );
    let bad = say(&mut e, "eve", "jobs --limit 0").await.join("\n");
    assert!(
        bad.contains("--limit must be a positive whole number"),
        "{bad}"
    );
}
