//! `aetherv slack --config FILE`: the chat bot on Slack (Socket Mode by default, or the HTTP
//! Events API) against RabbitMQ (`AETHERV_AMQP_URL`, prefix `AETHERV_PREFIX`). Tokens come
//! from the environment variables the file names. One bot is active at a time (leader queue).
//! `--simulated N` runs it on a simulated site instead, as `aetherv demo` does: an in-process
//! broker, N simulated Hyper-V hosts and a worker, all in this process.
use crate::cmd::{amqp_url, env_lookup, topology};
use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_broker::Broker;
use aetherv_core::rbac::RbacConfig;
use aetherv_core::Platform;
use aetherv_slack::config::{ModeName, SlackConfig};
use aetherv_slack::{Mode, Options, SLACK_LIMITS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The Slack configuration (YAML; see docs/slack.md).
    #[arg(long, env = "AETHERV_SLACK_CONFIG")]
    pub config: PathBuf,
    /// Run on a simulated site (in-process broker, this many simulated hosts hv01…, an
    /// in-process worker) instead of RabbitMQ and real hosts: to try the Slack app.
    #[arg(long, value_name = "HOSTS")]
    pub simulated: Option<usize>,
}

fn read(p: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn secret(var: &str, needed: bool) -> Result<String, String> {
    match env_lookup(var) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ if needed => Err(format!("{var} is not set")),
        _ => Ok(String::new()),
    }
}

/// Runs the command.
pub fn run(args: &Args) -> ExitCode {
    let setup = || -> Result<_, String> {
        let cfg = SlackConfig::from_yaml(&read(&args.config)?).map_err(|e| {
            format!(
                "{}: {}",
                args.config.display(),
                aetherv_core::error_chain(&e)
            )
        })?;
        let roles = read(&cfg.roles)?;
        let policy = read(&cfg.policy)?;
        // A simulated site gets a fresh age identity; the bot seals secrets to it.
        let site = args.simulated.map(|n| {
            let hosts: Vec<String> = (1..=n.clamp(1, 99)).map(|i| format!("hv{i:02}")).collect();
            (hosts, aetherv_core::secrets::generate_identity())
        });
        let (hosts, recipients) = match &site {
            Some((hosts, id)) => (hosts.clone(), id.to_public().to_string()),
            None => (
                cfg.hosts.clone(),
                env_lookup("AETHERV_AGE_RECIPIENTS").unwrap_or_default(),
            ),
        };
        let mut ecfg = EngineConfig::from_texts(&roles, &policy, hosts, &recipients)?;
        ecfg.limits = SLACK_LIMITS;
        ecfg.platform = Platform::Slack;
        ecfg.channel = cfg.channel.clone();
        ecfg.signer = match site {
            Some(_) => Some(crate::cmd::run_signing_key()?),
            None => crate::cmd::configured_signing_key()?,
        };
        let groups = serde_saphyr::from_str::<RbacConfig>(&roles)
            .map(|r| aetherv_slack::identity::slack_groups(&r))
            .unwrap_or_default();
        let socket = cfg.mode == ModeName::Socket;
        let bot_token = secret(&cfg.bot_token_env, true)?;
        let app_token = secret(&cfg.app_token_env, socket)?;
        let signing_secret = secret(&cfg.signing_secret_env, !socket)?;
        Ok((
            cfg,
            ecfg,
            groups,
            bot_token,
            app_token,
            signing_secret,
            site,
        ))
    };
    let (cfg, ecfg, groups, bot_token, app_token, signing_secret, site) = match setup() {
        Ok(s) => s,
        Err(e) => return crate::cmd::fail("slack", 64, e),
    };
    // The simulated site's worker accepts the run's key.
    let signer_public = site
        .as_ref()
        .and(ecfg.signer.as_ref())
        .map(|k| k.public_text());
    crate::cmd::block_on(async move {
        let mode = match cfg.mode {
            ModeName::Socket => Mode::Socket {
                connections: cfg.connections,
            },
            ModeName::Http => match tokio::net::TcpListener::bind(&cfg.listen).await {
                Ok(l) => Mode::Http(l),
                Err(e) => {
                    eprintln!("aetherv slack: cannot listen on {}: {e}", cfg.listen);
                    return ExitCode::from(1);
                }
            },
        };
        let prefix = env_lookup("AETHERV_PREFIX").unwrap_or_else(|| "aetherv".into());
        let site_stop = CancellationToken::new();
        let broker = match &site {
            Some((hosts, identity)) => {
                let broker = Broker::in_process(topology(&prefix));
                let text = aetherv_core::secrets::identity_text(identity).to_string();
                let mut site = aetherv_worker::simulated::Site::demo(
                    hosts.len(),
                    Duration::from_millis(300),
                    text,
                );
                site.job_signing_keys = signer_public.clone().into_iter().collect();
                if let Err(e) =
                    aetherv_worker::simulated::start_site(&broker, site, &site_stop).await
                {
                    eprintln!("aetherv slack: the simulated site did not start: {e}");
                    return ExitCode::from(1);
                }
                eprintln!(
                    "aetherv slack: simulated site with hosts {} (in-process broker)",
                    hosts.join(", ")
                );
                broker
            }
            None => match Broker::connect(&amqp_url(), topology(&prefix)).await {
                Ok(b) => b,
                Err(e) => {
                    return crate::cmd::fail(
                        "slack",
                        1,
                        format!("cannot reach RabbitMQ: {}", aetherv_core::error_chain(&e)),
                    )
                }
            },
        };
        let engine = match Engine::new(broker.clone(), ecfg) {
            Ok(e) => e,
            Err(e) => return crate::cmd::fail("slack", 64, aetherv_core::error_chain(&e)),
        };
        let stop = CancellationToken::new();
        tokio::spawn(crate::cmd::signal::on_shutdown(stop.clone()));
        let opts = Options {
            api_url: cfg.api_url.clone(),
            bot_token,
            app_token,
            signing_secret,
            mode,
            channel: cfg.channel.clone(),
            approvals_channel: cfg.approvals_channel.clone(),
            slack_groups: groups,
            group_refresh: Duration::from_secs(cfg.group_refresh_secs.max(10)),
            candidate: format!("slack-{}", std::process::id()),
            templates_dir: crate::cmd::templates_dir(cfg.templates_dir.as_deref()),
        };
        let code = match aetherv_slack::run(engine, opts, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("aetherv slack: {e:#}");
                ExitCode::from(1)
            }
        };
        site_stop.cancel();
        broker.close().await;
        code
    })
}
