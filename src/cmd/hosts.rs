//! `aetherv hosts --config FILE`: per configured host, whether its WinRM endpoint answers,
//! whether the credentials are accepted, the installed agent version and whether it is the
//! bundle this binary carries (verified by hash). Read-only. Exit 1 when a host is unreachable.
use crate::cmd::env_lookup;
use aetherv_core::bundle::{AgentStatus, Bundle};
use aetherv_worker::deploy::{Deployer, HostProbe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Worker configuration (YAML) naming the hosts; `AETHERV_*` variables override it.
    #[arg(long, env = "AETHERV_WORKER_CONFIG")]
    pub config: PathBuf,
    /// One JSON object per host instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn row(p: &HostProbe) -> [String; 6] {
    let auth = match p.auth_ok {
        Some(true) => "ok",
        Some(false) => "failed",
        None => "-",
    };
    let current = match &p.status {
        Some(AgentStatus::Current) => "yes".to_string(),
        Some(other) => format!("no ({other})"),
        None => "-".to_string(),
    };
    [
        p.host.clone(),
        yes_no(p.reachable).to_string(),
        auth.to_string(),
        p.installed_version.clone().unwrap_or_else(|| "-".into()),
        current,
        p.error.clone().unwrap_or_default(),
    ]
}

fn json(p: &HostProbe) -> serde_json::Value {
    serde_json::json!({
        "host": p.host,
        "reachable": p.reachable,
        "auth_ok": p.auth_ok,
        "agent_version": p.installed_version,
        "current": matches!(p.status, Some(AgentStatus::Current)),
        "status": p.status.as_ref().map(ToString::to_string),
        "error": p.error,
    })
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let Args {
        config,
        json: as_json,
    } = args;
    let cfg = match crate::cmd::worker::load_config("hosts", &config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let bundle = Arc::new(Bundle::embedded().clone());
    let mut deployers = Vec::new();
    for h in &cfg.hosts {
        let client = match aetherv_worker::winrm_client(h, &env_lookup) {
            Ok(c) => c,
            Err(e) => return crate::cmd::fail("hosts", 64, e),
        };
        let name = h.name.trim().to_ascii_lowercase();
        deployers.push(Deployer::new(
            &name,
            client,
            &cfg.install_dir,
            bundle.clone(),
        ));
    }
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let probes: Vec<HostProbe> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, d) in deployers.into_iter().enumerate() {
            set.spawn(async move { (i, d.probe().await) });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(x) = r {
                out.push(x);
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, p)| p).collect()
    });
    if as_json {
        for p in &probes {
            println!("{}", json(p));
        }
    } else {
        println!("bundle {}", bundle.id());
        let header = ["HOST", "REACHABLE", "AUTH", "AGENT", "CURRENT", "DETAIL"].map(String::from);
        let rows: Vec<[String; 6]> = std::iter::once(header)
            .chain(probes.iter().map(row))
            .collect();
        let mut widths = [0usize; 6];
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        for r in &rows {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    line.push_str(&format!("{c:<w$}  ", w = widths[i]));
                }
            }
            println!("{}", line.trim_end());
        }
    }
    if probes.len() == cfg.hosts.len() && probes.iter().all(|p| p.reachable) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
