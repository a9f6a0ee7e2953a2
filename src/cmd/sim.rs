//! `aetherv sim --hosts N --listen ADDR [--latency-ms MS]`: serves simulated Hyper-V hosts
//! `hv01…hvNN` over WinRM, each at `http://ADDR/<host>/wsman`, plus `GET /sim/stats` and
//! `GET /sim/hosts/<host>`. Runs until Ctrl-C or SIGTERM.

use aetherv_sim::{SelfSignedTls, Sim, SimConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Number of hosts (`hv01` … `hvNN`).
    #[arg(long, default_value_t = 3)]
    pub hosts: usize,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5985")]
    pub listen: SocketAddr,
    /// Time every agent operation stays in flight, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Write a worker config (YAML) for the served hosts to this file.
    #[arg(long)]
    pub write_worker_config: Option<PathBuf>,
    /// Basic-auth user name the hosts accept.
    #[arg(long, default_value = aetherv_sim::config::DEFAULT_USERNAME)]
    pub username: String,
    /// Basic-auth password the hosts accept (a fixed development default for the simulator).
    #[arg(long, env = "AETHERV_SIM_PASSWORD", default_value = aetherv_sim::config::DEFAULT_PASSWORD, hide_env_values = true)]
    pub password: String,
    /// Serve HTTPS with a generated certificate for localhost / 127.0.0.1.
    #[arg(long)]
    pub tls: bool,
    /// With `--tls`: write the CA certificate (PEM) clients should trust to this file.
    #[arg(long, requires = "tls")]
    pub write_ca: Option<PathBuf>,
    /// Refuse agent invocations until the worker has deployed the agent bundle (as a real host).
    #[arg(long)]
    pub require_agent: bool,
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    if args.hosts == 0 {
        eprintln!("aetherv sim: --hosts must be at least 1");
        return ExitCode::from(2);
    }
    let runtime = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aetherv sim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let mut cfg = SimConfig::with_hosts(args.hosts);
    cfg.latency = Duration::from_millis(args.latency_ms);
    cfg.username = args.username;
    cfg.password = args.password;
    cfg.require_agent = args.require_agent;
    let sim = Sim::new(cfg);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let scheme = if args.tls { "https" } else { "http" };
    let base = format!("{scheme}://{addr}");
    let tls = if args.tls {
        let tls = SelfSignedTls::generate().map_err(|e| format!("cannot build tls: {e}"))?;
        if let Some(path) = &args.write_ca {
            write_atomically(path, tls.ca_pem())?;
        }
        Some(tls)
    } else {
        None
    };
    if let Some(path) = &args.write_worker_config {
        let yaml = match &args.write_ca {
            Some(ca) if args.tls => {
                let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
                sim.worker_config_yaml_tls(&base, &ca.display().to_string())
            }
            _ => sim.worker_config_yaml(&base),
        };
        write_atomically(path, &yaml)?;
    }
    let names = sim.host_names();
    println!(
        "sim listening on {base} (hosts {}..{})",
        names.first().map(String::as_str).unwrap_or_default(),
        names.last().map(String::as_str).unwrap_or_default()
    );
    let token = CancellationToken::new();
    tokio::spawn(crate::cmd::signal::on_shutdown(token.clone()));
    let shutdown = token.cancelled_owned();
    let served = match tls {
        Some(tls) => sim.serve_tls(listener, tls, shutdown).await,
        None => sim.serve(listener, shutdown).await,
    };
    served.map_err(|e| format!("serving failed: {e}"))
}

/// Writes a file through a temporary sibling and a rename, so readers never see half of it.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
