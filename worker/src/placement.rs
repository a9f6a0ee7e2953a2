//! Cluster placement (reference §8): for a job that targets a cluster, pick the member host
//! with the most free memory that still fits the VM.
//!
//! Free memory = total − Σ VM startup memory (falling back to assigned memory, then 0); only the
//! cluster's connected members count; the largest free figure that is ≥ the request wins (ties:
//! the first host by name). Pure: inventory in, host name out; [`crate::placer`] runs it on the
//! broker for jobs published to a cluster.

use serde_json::Value;

/// Memory figures of one VM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmMemory {
    /// Assigned memory in GB.
    pub memory_gb: Option<f64>,
    /// Startup memory in GB (preferred when present).
    pub memory_startup_gb: Option<f64>,
}

/// What placement needs to know about one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCapacity {
    /// Host name.
    pub host: String,
    /// Failover cluster it belongs to.
    pub cluster: Option<String>,
    /// Whether the host answered its last inventory poll.
    pub connected: bool,
    /// Physical memory in GB.
    pub total_memory_gb: f64,
    /// Its VMs.
    pub vms: Vec<VmMemory>,
}

impl HostCapacity {
    /// Free memory in GB.
    pub fn available_gb(&self) -> f64 {
        let used: f64 = self
            .vms
            .iter()
            .map(|v| v.memory_startup_gb.or(v.memory_gb).unwrap_or(0.0))
            .sum();
        self.total_memory_gb - used
    }

    /// Reads a host from a `host.inventory` result (`{"host": {...}, "vms": [...]}`).
    pub fn from_inventory(data: &Value, connected: bool) -> Option<Self> {
        let host = data.get("host")?;
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
        Some(HostCapacity {
            host: host.get("computer_name")?.as_str()?.to_ascii_lowercase(),
            cluster: host
                .get("cluster_name")
                .and_then(Value::as_str)
                .map(str::to_string),
            connected,
            total_memory_gb: num(host, "total_memory_gb")?,
            vms: data
                .get("vms")
                .and_then(Value::as_array)
                .map(|vms| {
                    vms.iter()
                        .map(|v| VmMemory {
                            memory_gb: num(v, "memory_gb"),
                            memory_startup_gb: num(v, "memory_startup_gb"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Why no host was chosen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// No host belongs to the cluster.
    #[error("cluster {0} is unknown")]
    UnknownCluster(String),
    /// The cluster has members, but none is connected.
    #[error("cluster {0} has no connected hosts")]
    NoConnectedHosts(String),
    /// No connected member has enough free memory.
    #[error(
        "insufficient memory in cluster {cluster}: {need_gb} gb needed, at most {best_gb} gb free"
    )]
    InsufficientMemory {
        /// The cluster.
        cluster: String,
        /// Memory requested.
        need_gb: f64,
        /// The most free memory on any member.
        best_gb: f64,
    },
}

/// Picks the member of `cluster` (case-insensitive) with the most free memory ≥ `need_gb`.
pub fn place(
    cluster: &str,
    hosts: &[HostCapacity],
    need_gb: f64,
) -> Result<String, PlacementError> {
    let mut members: Vec<&HostCapacity> = hosts
        .iter()
        .filter(|h| {
            h.cluster
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(cluster))
        })
        .collect();
    if members.is_empty() {
        return Err(PlacementError::UnknownCluster(cluster.to_string()));
    }
    members.retain(|h| h.connected);
    if members.is_empty() {
        return Err(PlacementError::NoConnectedHosts(cluster.to_string()));
    }
    members.sort_by(|a, b| a.host.cmp(&b.host));
    let mut best: Option<(&HostCapacity, f64)> = None;
    for h in members {
        let free = h.available_gb();
        if best.is_none_or(|(_, f)| free > f) {
            best = Some((h, free));
        }
    }
    match best {
        Some((h, free)) if free >= need_gb => Ok(h.host.clone()),
        other => Err(PlacementError::InsufficientMemory {
            cluster: cluster.to_string(),
            need_gb,
            best_gb: other.map(|(_, f)| f).unwrap_or(0.0),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host(name: &str, total: f64, used: &[f64]) -> HostCapacity {
        HostCapacity {
            host: name.into(),
            cluster: Some("c1".into()),
            connected: true,
            total_memory_gb: total,
            vms: used
                .iter()
                .map(|u| VmMemory {
                    memory_gb: Some(*u),
                    memory_startup_gb: None,
                })
                .collect(),
        }
    }

    #[test]
    fn reference_case_8_picks_the_most_free_memory() {
        let hosts = [
            host("host1", 64.0, &[32.0]),
            host("host2", 128.0, &[64.0]),
            host("host3", 96.0, &[80.0]),
        ];
        assert_eq!(place("C1", &hosts, 16.0).as_deref(), Ok("host2"));
    }

    #[test]
    fn an_exact_fit_is_enough_and_startup_memory_wins() {
        assert_eq!(
            place("c1", &[host("h1", 64.0, &[48.0])], 16.0).as_deref(),
            Ok("h1")
        );
        let mut h = host("h1", 64.0, &[]);
        h.vms.push(VmMemory {
            memory_gb: Some(32.0),
            memory_startup_gb: Some(16.0),
        });
        assert_eq!(h.available_gb(), 48.0);
        assert!(matches!(
            place("c1", &[host("h1", 64.0, &[50.0])], 16.0),
            Err(PlacementError::InsufficientMemory { best_gb, .. }) if best_gb == 14.0
        ));
    }

    #[test]
    fn disconnected_and_foreign_hosts_are_ignored() {
        let mut off = host("big", 1024.0, &[]);
        off.connected = false;
        let mut foreign = host("other", 1024.0, &[]);
        foreign.cluster = Some("c2".into());
        let small = host("small", 32.0, &[]);
        assert_eq!(
            place("c1", &[off.clone(), foreign.clone(), small], 16.0).as_deref(),
            Ok("small")
        );
        assert_eq!(
            place("c1", &[off], 1.0),
            Err(PlacementError::NoConnectedHosts("c1".into()))
        );
        assert_eq!(
            place("c9", &[foreign], 1.0),
            Err(PlacementError::UnknownCluster("c9".into()))
        );
    }

    #[test]
    fn hosts_are_read_from_inventory_results() {
        let data = json!({
            "host": {"computer_name": "HV01", "cluster_name": "c1", "total_memory_gb": 256},
            "vms": [{"memory_gb": 8}, {"memory_gb": 4}]
        });
        let h = HostCapacity::from_inventory(&data, true).expect("parses");
        assert_eq!(h.host, "hv01");
        assert_eq!(h.available_gb(), 244.0);
    }
}
