//! Simulator configuration: which hosts exist, their host resources (storage classes, networks,
//! images), capacity, per-operation latency and the WinRM credentials.
//!
//! Pure data with defaults; nothing here runs or serves anything.

use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// User name the simulator accepts by default.
pub const DEFAULT_USERNAME: &str = "aetherv";
/// Password the simulator accepts by default. A development value for the simulator only.
pub const DEFAULT_PASSWORD: &str = "aetherv-sim-dev";
/// Cluster every default host belongs to.
pub const DEFAULT_CLUSTER: &str = "clu01";
/// Memory of a default host.
pub const DEFAULT_MEMORY_GB: u64 = 256;
/// Logical processors of a default host.
pub const DEFAULT_CPU_CORES: u32 = 64;

/// A storage class from `hostresources.json`: a name and the folder VMs of that class go to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageClass {
    /// Unique name (`fast`, `bulk`).
    pub name: String,
    /// Windows folder (`C:\ClusterStorage\Volume1\VMs`).
    pub path: String,
    /// Size of the volume, for the inventory's free-space figure.
    pub capacity_gb: u64,
}

/// A logical network from `hostresources.json` (`model: vlan`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    /// Logical name (`prod`).
    pub name: String,
    /// Hyper-V virtual switch the adapter connects to.
    pub virtual_switch: String,
    /// Access VLAN (1..4094).
    pub vlan_id: u16,
}

/// A golden image a disk can be cloned from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    /// Display name, also the file stem (`Windows Server 2022`).
    pub name: String,
    /// `windows` or `linux`.
    pub os_family: String,
    /// Virtual size of the VHDX; a clone is at least this large.
    pub size_gb: u64,
    /// Path of the image file.
    pub path: String,
}

/// One simulated Hyper-V host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSpec {
    /// Host name, lower case (`hv01`); also the URL path segment.
    pub name: String,
    /// Failover cluster the host belongs to, if any.
    pub cluster: Option<String>,
    /// Physical memory.
    pub total_memory_gb: u64,
    /// Logical processors.
    pub total_cpu_cores: u32,
    /// Storage classes; the first is the default for `vm.create`.
    pub storage_classes: Vec<StorageClass>,
    /// Logical networks.
    pub networks: Vec<Network>,
    /// Golden images.
    pub images: Vec<Image>,
    /// `virtual_machines_path` of `hostresources.json` (reported, not used for placement).
    pub virtual_machines_path: String,
    /// The agent version the host reports.
    pub agent_version: String,
}

impl HostSpec {
    /// A host with the default resources: storage classes `fast` and `bulk`, networks `prod`
    /// (switch `External`, VLAN 100) and `dev` (VLAN 200), a Windows and a Linux image,
    /// 256 GB memory, 64 cores, cluster `clu01`.
    pub fn with_defaults(name: &str) -> Self {
        let images_dir = r"C:\ClusterStorage\Volume1\DiskImages";
        HostSpec {
            name: name.to_ascii_lowercase(),
            cluster: Some(DEFAULT_CLUSTER.to_string()),
            total_memory_gb: DEFAULT_MEMORY_GB,
            total_cpu_cores: DEFAULT_CPU_CORES,
            storage_classes: vec![
                StorageClass {
                    name: "fast".into(),
                    path: r"C:\ClusterStorage\Volume1\VMs".into(),
                    capacity_gb: 4096,
                },
                StorageClass {
                    name: "bulk".into(),
                    path: r"C:\ClusterStorage\Volume2\VMs".into(),
                    capacity_gb: 16384,
                },
            ],
            networks: vec![
                Network {
                    name: "prod".into(),
                    virtual_switch: "External".into(),
                    vlan_id: 100,
                },
                Network {
                    name: "dev".into(),
                    virtual_switch: "External".into(),
                    vlan_id: 200,
                },
            ],
            images: vec![
                Image {
                    name: "Windows Server 2022".into(),
                    os_family: "windows".into(),
                    size_gb: 127,
                    path: format!(r"{images_dir}\Windows Server 2022.vhdx"),
                },
                Image {
                    name: "Ubuntu 24.04".into(),
                    os_family: "linux".into(),
                    size_gb: 30,
                    path: format!(r"{images_dir}\Ubuntu 24.04.vhdx"),
                },
            ],
            virtual_machines_path: r"C:\ClusterStorage\Volume1\VMs".into(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The name of the `n`-th default host (1-based): `hv01`, …, `hv99`, `hv100`.
pub fn host_name(n: usize) -> String {
    format!("hv{n:02}")
}

/// Everything the simulator needs to start.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The hosts served, each at `/<name>/wsman`.
    pub hosts: Vec<HostSpec>,
    /// Time every agent operation stays in flight.
    pub latency: Duration,
    /// Per-operation overrides of `latency`, by wire name (`vm.create`).
    pub op_latency: HashMap<String, Duration>,
    /// Basic-auth user name.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
    /// Refuse agent invocations unless the agent bundle is installed (by the worker's
    /// deployment scripts) and verifies against its manifest, as a real host would. Off by
    /// default, so tests that talk to a fresh simulator directly keep working.
    pub require_agent: bool,
}

impl SimConfig {
    /// `n` default hosts `hv01..hvNN` (see [`HostSpec::with_defaults`]), no latency, default
    /// credentials.
    pub fn with_hosts(n: usize) -> Self {
        SimConfig {
            hosts: (1..=n)
                .map(|i| HostSpec::with_defaults(&host_name(i)))
                .collect(),
            latency: Duration::ZERO,
            op_latency: HashMap::new(),
            username: DEFAULT_USERNAME.to_string(),
            password: DEFAULT_PASSWORD.to_string(),
            require_agent: false,
        }
    }

    /// Sets [`SimConfig::require_agent`] (builder style).
    pub fn require_agent(mut self, on: bool) -> Self {
        self.require_agent = on;
        self
    }

    /// Sets the default latency (builder style).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the latency of one operation (builder style).
    pub fn op_latency(mut self, operation: &str, latency: Duration) -> Self {
        self.op_latency.insert(operation.to_string(), latency);
        self
    }

    /// The latency of an operation: its override, else the default.
    pub fn latency_for(&self, operation: &str) -> Duration {
        self.op_latency
            .get(operation)
            .copied()
            .unwrap_or(self.latency)
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::with_hosts(3)
    }
}

/// Renders a worker config (YAML) pointing at the hosts served under `base_url`
/// (`http://127.0.0.1:5985`); with `ca_file`, each host trusts that CA (for `--tls`).
/// Strings are written as JSON strings, which are valid YAML double-quoted scalars, so no value
/// can break the document.
pub fn worker_config_yaml(cfg: &SimConfig, base_url: &str, ca_file: Option<&str>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let base = base_url.trim_end_matches('/');
    let mut out = String::from(
        "# Worker config for the Aether-V simulator (`aetherv sim`).\n\
         # The broker comes from AETHERV_AMQP_URL (or amqp_url: here).\n\
         hosts:\n",
    );
    for h in &cfg.hosts {
        out.push_str(&format!("  - name: {}\n", q(&h.name)));
        out.push_str(&format!(
            "    endpoint: {}\n",
            q(&format!("{base}/{}/wsman", h.name))
        ));
        out.push_str(&format!(
            "    auth: {{ kind: basic, username: {}, password: {} }}\n",
            q(&cfg.username),
            q(&cfg.password)
        ));
        if let Some(c) = &h.cluster {
            out.push_str(&format!("    cluster: {}\n", q(c)));
        }
        if let Some(ca) = ca_file {
            out.push_str(&format!("    tls: {{ ca_file: {} }}\n", q(ca)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_hosts_are_numbered_with_two_digits() {
        let cfg = SimConfig::with_hosts(3);
        let names: Vec<_> = cfg.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["hv01", "hv02", "hv03"]);
    }

    #[test]
    fn op_latency_overrides_default() {
        let cfg = SimConfig::with_hosts(1)
            .latency(Duration::from_millis(5))
            .op_latency("vm.create", Duration::from_millis(50));
        assert_eq!(cfg.latency_for("vm.create"), Duration::from_millis(50));
        assert_eq!(cfg.latency_for("noop"), Duration::from_millis(5));
    }

    #[test]
    fn worker_config_quotes_values() {
        let mut cfg = SimConfig::with_hosts(1);
        cfg.password = "p\"w: #x".into();
        let y = worker_config_yaml(&cfg, "http://127.0.0.1:5985/", Some("/tmp/ca.pem"));
        assert!(y.contains("endpoint: \"http://127.0.0.1:5985/hv01/wsman\""));
        assert!(y.contains(r#"password: "p\"w: #x""#));
        assert!(y.contains("    cluster: \"clu01\"\n    tls: { ca_file: \"/tmp/ca.pem\" }\n"));
    }
}
