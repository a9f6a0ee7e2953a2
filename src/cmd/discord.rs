//! `aetherv discord --config FILE`: the chat bot on Discord (the HTTP interactions endpoint)
//! against RabbitMQ (`AETHERV_AMQP_URL`, prefix `AETHERV_PREFIX`). The bot token comes from the
//! environment variable the file names. One bot is active at a time (leader queue).
//! `--simulated N` runs it on a simulated site instead, as `aetherv slack --simulated` does:
//! an in-process broker, N simulated Hyper-V hosts and a worker, all in this process.
use crate::cmd::{amqp_url, env_lookup, topology};
use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_broker::Broker;
use aetherv_core::Platform;
use aetherv_discord::config::DiscordConfig;
use aetherv_discord::{Options, DISCORD_LIMITS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The Discord configuration (YAML; see docs/discord.md).
    #[arg(long, env = "AETHERV_DISCORD_CONFIG")]
    pub config: PathBuf,
    /// Run on a simulated site (in-process broker, this many simulated hosts hv01…, an
    /// in-process worker) instead of RabbitMQ and real hosts: to try the Discord app.
    #[arg(long, value_name = "HOSTS")]
    pub simulated: Option<usize>,
}

fn read(p: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Runs the command.
pub fn run(args: &Args) -> ExitCode {
    let setup = || -> Result<_, String> {
        let cfg = DiscordConfig::from_yaml(&read(&args.config)?).map_err(|e| {
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
        ecfg.limits = DISCORD_LIMITS;
        ecfg.platform = Platform::Discord;
        ecfg.channel = cfg.channel.clone();
        let bot_token = match env_lookup(&cfg.bot_token_env) {
            Some(v) if !v.trim().is_empty() => v,
            _ => return Err(format!("{} is not set", cfg.bot_token_env)),
        };
        // Refuse a bad public key before anything starts.
        aetherv_discord::verify::Verifier::from_hex(&cfg.public_key)
            .map_err(|e| format!("public_key: {e}"))?;
        Ok((cfg, ecfg, bot_token, site))
    };
    let (cfg, ecfg, bot_token, site) = match setup() {
        Ok(s) => s,
        Err(e) => return crate::cmd::fail("discord", 64, e),
    };
    crate::cmd::block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&cfg.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("aetherv discord: cannot listen on {}: {e}", cfg.listen);
                return ExitCode::from(1);
            }
        };
        let prefix = env_lookup("AETHERV_PREFIX").unwrap_or_else(|| "aetherv".into());
        let site_stop = CancellationToken::new();
        let broker = match &site {
            Some((hosts, identity)) => {
                let broker = Broker::in_process(topology(&prefix));
                let text = aetherv_core::secrets::identity_text(identity).to_string();
                let site = aetherv_worker::simulated::Site::demo(
                    hosts.len(),
                    Duration::from_millis(300),
                    text,
                );
                if let Err(e) =
                    aetherv_worker::simulated::start_site(&broker, site, &site_stop).await
                {
                    eprintln!("aetherv discord: the simulated site did not start: {e}");
                    return ExitCode::from(1);
                }
                eprintln!(
                    "aetherv discord: simulated site with hosts {} (in-process broker)",
                    hosts.join(", ")
                );
                broker
            }
            None => match Broker::connect(&amqp_url(), topology(&prefix)).await {
                Ok(b) => b,
                Err(e) => {
                    return crate::cmd::fail(
                        "discord",
                        1,
                        format!("cannot reach RabbitMQ: {}", aetherv_core::error_chain(&e)),
                    )
                }
            },
        };
        let engine = match Engine::new(broker.clone(), ecfg) {
            Ok(e) => e,
            Err(e) => return crate::cmd::fail("discord", 64, aetherv_core::error_chain(&e)),
        };
        let stop = CancellationToken::new();
        tokio::spawn(crate::cmd::signal::on_shutdown(stop.clone()));
        eprintln!(
            "aetherv discord: interactions endpoint on {} (POST /interactions)",
            cfg.listen
        );
        let opts = Options {
            application_id: cfg.application_id.clone(),
            public_key: cfg.public_key.clone(),
            bot_token,
            api_url: cfg.api_url.clone(),
            listener,
            channel: cfg.channel.clone(),
            approvals_channel: cfg.approvals_channel.clone(),
            candidate: format!("discord-{}", std::process::id()),
            templates_dir: crate::cmd::templates_dir(cfg.templates_dir.as_deref()),
            register_commands: cfg.register_commands,
            guild_id: cfg.guild_id.clone(),
        };
        let code = match aetherv_discord::run(engine, opts, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("aetherv discord: {e:#}");
                ExitCode::from(1)
            }
        };
        site_stop.cancel();
        broker.close().await;
        code
    })
}
