//! `aetherv bot --roles FILE --policy FILE --hosts H,…`: the bot with the console chat on
//! stdin/stdout against RabbitMQ (`AETHERV_AMQP_URL`, prefix `AETHERV_PREFIX`). One bot is
//! active at a time (leader queue); a second one waits. State comes from the event stream.
//! With `api.listen` in `--config` it serves the HTTP API too (as `aetherv api --config`).
use crate::cmd::{amqp_url, env_lookup, templates_dir, topology};
use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_bot::ConsoleOptions;
use aetherv_broker::Broker;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// An `aetherv.yaml`: roles, policy, hosts and age recipients from its `bot` section, the
    /// broker from its `broker` section (flags and the environment win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Roles configuration (YAML: groups with roles and members).
    #[arg(long, env = "AETHERV_ROLES", required_unless_present = "config")]
    pub roles: Option<PathBuf>,
    /// Approval policy (YAML: rules).
    #[arg(
        long,
        env = "AETHERV_APPROVAL_POLICY",
        required_unless_present = "config"
    )]
    pub policy: Option<PathBuf>,
    /// Hosts offered in forms before the first inventory arrives (comma-separated).
    #[arg(long, env = "AETHERV_HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// The console user before any `/as`.
    #[arg(long, default_value = "alice")]
    pub user: String,
    /// Where full job logs are written.
    #[arg(long)]
    pub attach_dir: Option<PathBuf>,
    /// The workers' age recipients (`age1…`, comma-separated): secret form values are sealed
    /// to them. Without any, requests with secret values are refused.
    #[arg(
        long = "age-recipients",
        env = "AETHERV_AGE_RECIPIENTS",
        default_value = ""
    )]
    pub age_recipients: String,
}

/// Checks that `dir` is a directory this process can write a file in.
fn writable_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    let probe = dir.join(format!(".aetherv-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Runs the console bot on `broker` until input ends or a signal arrives.
pub async fn serve_console(
    broker: Broker,
    cfg: EngineConfig,
    user: String,
    attach_dir: Option<PathBuf>,
) -> ExitCode {
    if let Some(dir) = &attach_dir {
        if let Err(e) = writable_dir(dir) {
            return crate::cmd::fail("bot", 64, format!("--attach-dir {}: {e}", dir.display()));
        }
    }
    let engine = match Engine::new(broker.clone(), cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("aetherv: {}", aetherv_core::error_chain(&e));
            return ExitCode::from(64);
        }
    };
    let stop = CancellationToken::new();
    tokio::spawn(crate::cmd::signal::on_shutdown(stop.clone()));
    let ready = crate::cmd::health::bot_ready(broker.clone());
    let health = match crate::cmd::health::start(ready, stop.child_token()).await {
        Ok(h) => h,
        Err(e) => return crate::cmd::fail("bot", 64, e),
    };
    tracing::info!(target: "aetherv::start", %health, "aetherv bot serving the console chat; health: {health}");
    let opts = ConsoleOptions {
        first_user: user,
        attach_dir,
        candidate: format!("bot-{}", std::process::id()),
        templates_dir: templates_dir(None),
    };
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    match aetherv_bot::run_console(engine, stdin, tokio::io::stdout(), opts, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aetherv: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The roles and policy files and the hosts: the flags, else the `bot` section of `--config`.
fn bot_files(args: &Args) -> Result<(PathBuf, PathBuf, Vec<String>), String> {
    let section = match &args.config {
        Some(path) => match crate::cmd::config::Unified::load(path, &env_lookup)? {
            Some(u) => u.section("bot"),
            None => {
                return Err(format!(
                    "{}: not an aetherv.yaml (no broker/bot/… sections)",
                    path.display()
                ))
            }
        },
        None => serde_json::Map::new(),
    };
    let file = |flag: &Option<PathBuf>, key: &str| {
        flag.clone()
            .or_else(|| section.get(key).and_then(|v| v.as_str()).map(PathBuf::from))
            .ok_or_else(|| format!("no {key} file: give --{key} or bot.{key} in --config"))
    };
    let hosts = if args.hosts.is_empty() {
        section
            .get("hosts")
            .and_then(|h| h.as_array())
            .map(|h| {
                h.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        args.hosts.clone()
    };
    Ok((
        file(&args.roles, "roles")?,
        file(&args.policy, "policy")?,
        hosts,
    ))
}

/// Whether `--config` sets `api.listen`: then the bot serves the HTTP API too.
fn api_listen(args: &Args) -> Option<String> {
    let path = args.config.as_ref()?;
    let u = crate::cmd::config::Unified::load(path, &env_lookup).ok()??;
    u.section("api")
        .get("listen")
        .and_then(|v| v.as_str())
        .map(String::from)
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    if let Some(listen) = api_listen(&args) {
        // The same bot with the API as one more front door (`aetherv api`).
        return crate::cmd::api::run(crate::cmd::api::Args {
            config: args.config,
            simulated: None,
            listen: Some(listen),
            roles: args.roles,
            policy: args.policy,
            user: args.user,
            sim_listen: None,
            latency_ms: 0,
        });
    }
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let recipients = if args.age_recipients.is_empty() {
        env_lookup("AETHERV_AGE_RECIPIENTS").unwrap_or_default()
    } else {
        args.age_recipients.clone()
    };
    let cfg = match bot_files(&args)
        .and_then(|(roles, policy, hosts)| Ok((read(&roles)?, read(&policy)?, hosts)))
        .and_then(|(r, p, hosts)| EngineConfig::from_texts(&r, &p, hosts, &recipients))
    {
        Ok(c) => c,
        Err(e) => return crate::cmd::fail("bot", 64, e),
    };
    let mut cfg = cfg;
    cfg.signer = match crate::cmd::configured_signing_key() {
        Ok(k) => k,
        Err(e) => return crate::cmd::fail("bot", 64, e),
    };
    crate::cmd::block_on(async move {
        let prefix = env_lookup("AETHERV_PREFIX").unwrap_or_else(|| "aetherv".into());
        let broker = match Broker::connect(&amqp_url(), topology(&prefix)).await {
            Ok(b) => b,
            Err(e) => {
                return crate::cmd::fail(
                    "bot",
                    1,
                    format!("cannot reach RabbitMQ: {}", aetherv_core::error_chain(&e)),
                )
            }
        };
        let code = serve_console(broker.clone(), cfg, args.user, args.attach_dir).await;
        broker.close().await;
        code
    })
}
