//! `aetherv demo`: the whole system in one process: a broker (in-process, or RabbitMQ when
//! `AETHERV_AMQP_URL` is set), simulated Hyper-V hosts on loopback, an in-process worker, and
//! the console chat on stdin/stdout. Switch users with `/as bob` or a `bob> ` prefix.
use crate::cmd::{bot, env_lookup, topology};
use aetherv_bot::EngineConfig;
use aetherv_broker::Broker;
use aetherv_worker::simulated::Site;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The demo's users: alice operates, bob and carol approve, eve reads, root administers.
pub const DEMO_ROLES: &str = include_str!("demo-roles.yaml");

/// The demo's policy: big VMs need two approvals from `approvers`, every other change one,
/// within 15 minutes.
pub const DEMO_POLICY: &str = include_str!("demo-policy.yaml");

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Number of simulated hosts (hv01…).
    #[arg(long, default_value_t = 3)]
    pub hosts: usize,
    /// Simulated time per agent operation, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub latency_ms: u64,
    /// The console user before any `/as`.
    #[arg(long, default_value = "alice")]
    pub user: String,
    /// Where full job logs are written (default: the temp directory).
    #[arg(long)]
    pub attach_dir: Option<PathBuf>,
    /// Name prefix of the broker objects (default: `demo-` and a random suffix).
    #[arg(long)]
    pub prefix: Option<String>,
    /// A roles file replacing the demo's users (e.g. to add `amqp:<user>` producers).
    #[arg(long)]
    pub roles: Option<PathBuf>,
    /// An approval policy file replacing the demo's.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Where the simulated hosts listen (default: a free loopback port); their state is at
    /// `GET /sim/hosts/<host>` there.
    #[arg(long, value_name = "ADDR")]
    pub sim_listen: Option<String>,
}

/// A configuration file named on the command line, or the built-in text.
fn text_or(path: Option<&PathBuf>, builtin: &str) -> Result<String, String> {
    match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())),
        None => Ok(builtin.to_owned()),
    }
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let hosts: Vec<String> = (1..=args.hosts.clamp(1, 99))
        .map(|i| format!("hv{i:02}"))
        .collect();
    // The demo's worker gets a fresh age identity; the bot seals secret form values to it.
    let identity = aetherv_core::secrets::generate_identity();
    let recipient = identity.to_public().to_string();
    let texts = text_or(args.roles.as_ref(), DEMO_ROLES)
        .and_then(|r| Ok((r, text_or(args.policy.as_ref(), DEMO_POLICY)?)));
    let (roles, policy) = match texts {
        Ok(t) => t,
        Err(e) => return crate::cmd::fail("demo", 66, e),
    };
    let mut cfg = match EngineConfig::from_texts(&roles, &policy, hosts.clone(), &recipient) {
        Ok(c) => c,
        Err(e) => return crate::cmd::fail("demo", 64, e),
    };
    // A fresh job-signing key per run: the bot signs, the worker accepts only its jobs.
    let signer = match crate::cmd::run_signing_key() {
        Ok(k) => k,
        Err(e) => return crate::cmd::fail("demo", 1, e),
    };
    let public_key = signer.public_text();
    cfg.signer = Some(signer);
    crate::cmd::block_on(async move {
        let prefix = args
            .prefix
            .clone()
            .unwrap_or_else(|| format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let broker = match env_lookup("AETHERV_AMQP_URL").filter(|u| !u.is_empty()) {
            Some(url) => match Broker::connect(&url, topology(&prefix)).await {
                Ok(b) => b,
                Err(e) => {
                    return crate::cmd::fail(
                        "demo",
                        1,
                        format!("cannot reach RabbitMQ: {}", aetherv_core::error_chain(&e)),
                    )
                }
            },
            None => Broker::in_process(topology(&prefix)),
        };
        let stop = CancellationToken::new();
        let identity_text = aetherv_core::secrets::identity_text(&identity);
        let mut site = Site::demo(
            hosts.len(),
            Duration::from_millis(args.latency_ms),
            identity_text.to_string(),
        );
        site.job_signing_keys = vec![public_key];
        site.listen = args.sim_listen.clone();
        let worker_task = match aetherv_worker::simulated::start_site(&broker, site, &stop).await {
            Ok(t) => t,
            Err(e) => return crate::cmd::fail("demo", 1, e),
        };
        println!(
            "Aether-V demo: hosts {}; users alice (operator), bob and carol (approvers), eve (reader), root (admin).\nType `help`. Switch users with `/as NAME` or `NAME> command`; `/wait` waits for running jobs.",
            hosts.join(", ")
        );
        let attach_dir = args.attach_dir.unwrap_or_else(std::env::temp_dir);
        let code = bot::serve_console(broker.clone(), cfg, args.user, Some(attach_dir)).await;
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), worker_task).await;
        broker.close().await;
        code
    })
}
