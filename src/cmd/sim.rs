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
        let (identity_file, recipient) = worker_identity(path)?;
        // Top-level keys go before `hosts:`, so a host list appended to the file stays valid.
        let age = format!(
            "# The worker's age identity; producers seal secrets to its recipient:\n\
             #   AETHERV_AGE_RECIPIENTS=$(cat {}.pub)\n\
             age_identity_file: {}\n",
            identity_file.display(),
            serde_json::to_string(&identity_file.display().to_string())
                .map_err(|e| e.to_string())?
        );
        let yaml = match yaml.find("hosts:\n") {
            Some(i) => format!("{}{age}{}", &yaml[..i], &yaml[i..]),
            None => format!("{age}{yaml}"),
        };
        write_atomically(path, &yaml)?;
        println!("worker age recipient: {recipient}");
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

/// The age identity next to the worker config (`<config>.age`, mode 0600; kept when it exists)
/// and its recipient in `<config>.age.pub`. Returns the identity's absolute path and recipient.
fn worker_identity(config: &Path) -> Result<(std::path::PathBuf, String), String> {
    use aetherv_core::secrets;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = config.as_os_str().to_owned();
    name.push(".age");
    let path = std::path::absolute(std::path::PathBuf::from(name))
        .map_err(|e| format!("cannot resolve the identity path: {e}"))?;
    let identity = match std::fs::read_to_string(&path) {
        Ok(text) => {
            secrets::parse_identity(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(_) => {
            let id = secrets::generate_identity();
            let text = secrets::identity_text(&id);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            writeln!(
                f,
                "# aetherv worker identity (age X25519)\n{}",
                text.as_str()
            )
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            id
        }
    };
    let recipient = identity.to_public().to_string();
    let mut pub_name = path.as_os_str().to_owned();
    pub_name.push(".pub");
    write_atomically(Path::new(&pub_name), &format!("{recipient}\n"))?;
    Ok((path, recipient))
}

/// Writes a file through a temporary sibling and a rename, so readers never see half of it.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
