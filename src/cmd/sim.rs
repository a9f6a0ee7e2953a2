//! `aetherv sim --hosts N --listen ADDR [--latency-ms MS]`: serves simulated Hyper-V hosts
//! `hv01…hvNN` over WinRM, each at `http://ADDR/<host>/wsman`, plus `GET /sim/stats` and
//! `GET /sim/hosts/<host>`. Runs until Ctrl-C or SIGTERM.

use aetherv_sim::{SelfSignedTls, Sim, SimConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    if args.hosts == 0 {
        eprintln!("aetherv sim: --hosts must be at least 1");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aetherv sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
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
    let sim = Sim::new(cfg);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let scheme = if args.tls { "https" } else { "http" };
    let base = format!("{scheme}://{addr}");
    if let Some(path) = &args.write_worker_config {
        std::fs::write(path, sim.worker_config_yaml(&base))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let names = sim.host_names();
    println!(
        "sim listening on {base} (hosts {}..{})",
        names.first().map(String::as_str).unwrap_or_default(),
        names.last().map(String::as_str).unwrap_or_default()
    );
    if args.tls {
        let tls = SelfSignedTls::generate().map_err(|e| format!("cannot build tls: {e}"))?;
        if let Some(path) = &args.write_ca {
            std::fs::write(path, tls.ca_pem())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        sim.serve_tls(listener, tls, shutdown_signal())
            .await
            .map_err(|e| format!("serving failed: {e}"))
    } else {
        sim.serve(listener, shutdown_signal())
            .await
            .map_err(|e| format!("serving failed: {e}"))
    }
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
