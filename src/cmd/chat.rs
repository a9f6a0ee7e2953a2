//! What the chat bot commands (`aetherv slack`, `aetherv discord`) share: the files their
//! configuration names, the engine's configuration, the site they run against (RabbitMQ, or a
//! simulated site with `--simulated N`: an in-process broker, N simulated hosts and a worker,
//! all in this process), and the run until a signal.
use crate::cmd::{amqp_url, env_lookup, topology};
use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_bot::thread::Limits;
use aetherv_broker::Broker;
use aetherv_core::secrets::Identity;
use aetherv_core::Platform;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `--simulated N`, shared by the chat commands.
#[derive(clap::Args)]
pub struct SiteArgs {
    /// Run on a simulated site (in-process broker, this many simulated hosts hv01…, an
    /// in-process worker) instead of RabbitMQ and real hosts: to try the app.
    #[arg(long, value_name = "HOSTS")]
    pub simulated: Option<usize>,
}

/// Reads and parses a configuration file (the `platform` section of an `aetherv.yaml`, or a
/// per-command file); the error names the file.
pub fn load<T, E: std::error::Error + 'static>(
    path: &Path,
    platform: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, String> {
    let text = match crate::cmd::config::Unified::load(path, &env_lookup)? {
        Some(u) => u.chat_json(platform).to_string(),
        None => read(path)?,
    };
    parse(&text).map_err(|e| format!("{}: {}", path.display(), aetherv_core::error_chain(&e)))
}

/// Reads a file the configuration names.
pub fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// A secret from the environment variable `var`: an error when `needed` and unset or blank.
pub fn secret(var: &str, needed: bool) -> Result<String, String> {
    match env_lookup(var) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ if needed => Err(format!("{var} is not set")),
        _ => Ok(String::new()),
    }
}

/// A simulated site: its host names and the age identity its worker opens secrets with.
pub struct Site {
    hosts: Vec<String>,
    identity: Identity,
}

/// What a chat configuration says about the engine.
pub struct Common<'a> {
    /// The roles file.
    pub roles: &'a Path,
    /// The approval policy file.
    pub policy: &'a Path,
    /// Hosts offered before the first inventory arrives (ignored on a simulated site).
    pub hosts: &'a [String],
    /// The default channel.
    pub channel: &'a str,
}

/// The engine's configuration for a platform, the roles file's text (adapters read their
/// group mappings from it), and the simulated site when `simulated` asks for one (its hosts
/// hv01…, at most 99, and a fresh age identity the bot seals secrets to).
pub fn engine_config(
    common: &Common<'_>,
    simulated: Option<usize>,
    platform: Platform,
    limits: Limits,
) -> Result<(EngineConfig, String, Option<Site>), String> {
    let roles = read(common.roles)?;
    let policy = read(common.policy)?;
    let site = simulated.map(|n| Site {
        hosts: (1..=n.clamp(1, 99)).map(|i| format!("hv{i:02}")).collect(),
        identity: aetherv_core::secrets::generate_identity(),
    });
    let (hosts, recipients) = match &site {
        Some(s) => (s.hosts.clone(), s.identity.to_public().to_string()),
        None => (
            common.hosts.to_vec(),
            env_lookup("AETHERV_AGE_RECIPIENTS").unwrap_or_default(),
        ),
    };
    let mut ecfg = EngineConfig::from_texts(&roles, &policy, hosts, &recipients)?;
    ecfg.limits = limits;
    ecfg.platform = platform;
    ecfg.channel = common.channel.to_string();
    // The bot signs every job it publishes: with a key made for this run on a simulated site
    // (its worker is given the public half), else the configured one.
    ecfg.signer = match site {
        Some(_) => Some(crate::cmd::run_signing_key()?),
        None => crate::cmd::configured_signing_key()?,
    };
    Ok((ecfg, roles, site))
}

/// The configured template override directory, else `AETHERV_TEMPLATES`.
pub fn templates(configured: Option<&PathBuf>) -> Option<PathBuf> {
    crate::cmd::templates_dir(configured.map(PathBuf::as_path))
}

/// This process's candidate id in the leader election.
pub fn candidate(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Starts the site (the simulated one, or RabbitMQ at `AETHERV_AMQP_URL` under
/// `AETHERV_PREFIX`), builds the engine, and runs `adapter` with it until a signal; then stops
/// the site. Failures are printed as `aetherv NAME: …`.
pub async fn serve<F, Fut>(
    name: &str,
    mode: &str,
    site: Option<Site>,
    ecfg: EngineConfig,
    adapter: F,
) -> ExitCode
where
    F: FnOnce(Engine, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let prefix = env_lookup("AETHERV_PREFIX").unwrap_or_else(|| "aetherv".into());
    let site_stop = CancellationToken::new();
    let signer_public = ecfg.signer.as_ref().map(|k| k.public_text());
    let broker = match &site {
        Some(s) => {
            let broker = Broker::in_process(topology(&prefix));
            let text = aetherv_core::secrets::identity_text(&s.identity).to_string();
            let mut sim = aetherv_worker::simulated::Site::demo(
                s.hosts.len(),
                Duration::from_millis(300),
                text,
            );
            sim.job_signing_keys = signer_public.into_iter().collect();
            if let Err(e) = aetherv_worker::simulated::start_site(&broker, sim, &site_stop).await {
                return crate::cmd::fail(name, 1, format!("the simulated site did not start: {e}"));
            }
            eprintln!(
                "aetherv {name}: simulated site with hosts {} (in-process broker)",
                s.hosts.join(", ")
            );
            broker
        }
        None => match Broker::connect(&amqp_url(), topology(&prefix)).await {
            Ok(b) => b,
            Err(e) => {
                let e = aetherv_core::error_chain(&e);
                return crate::cmd::fail(name, 1, format!("cannot reach RabbitMQ: {e}"));
            }
        },
    };
    let engine = match Engine::new(broker.clone(), ecfg) {
        Ok(e) => e,
        Err(e) => return crate::cmd::fail(name, 64, aetherv_core::error_chain(&e)),
    };
    let stop = CancellationToken::new();
    tokio::spawn(crate::cmd::signal::on_shutdown(stop.clone()));
    let health = match crate::cmd::health::start(
        crate::cmd::health::bot_ready(broker.clone()),
        stop.child_token(),
    )
    .await
    {
        Ok(h) => h,
        Err(e) => return crate::cmd::fail(name, 64, e),
    };
    let on = match &site {
        Some(s) => format!("a simulated site ({})", s.hosts.join(", ")),
        None => crate::cmd::worker::redact_url(&amqp_url()),
    };
    tracing::info!(
        target: "aetherv::start",
        prefix = %prefix,
        %mode,
        "aetherv {name} serving chat ({mode}) on {on} (prefix {prefix}); health: {health}"
    );
    let code = match adapter(engine, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::cmd::fail(name, 1, format!("{e:#}")),
    };
    site_stop.cancel();
    broker.close().await;
    code
}
