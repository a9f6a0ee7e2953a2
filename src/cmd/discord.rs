//! `aetherv discord --config FILE`: the chat bot on Discord (over the Gateway by default, or the
//! HTTP interactions endpoint with `mode: http`) against RabbitMQ (`AETHERV_AMQP_URL`, prefix `AETHERV_PREFIX`). The bot token comes from the
//! environment variable the file names. One bot is active at a time (leader queue).
//! `--simulated N` runs it on a simulated site instead, as `aetherv slack --simulated` does:
//! an in-process broker, N simulated Hyper-V hosts and a worker, all in this process.
use crate::cmd::chat::{self, secret, Common};
use aetherv_core::Platform;
use aetherv_discord::config::{DiscordConfig, ModeName};
use aetherv_discord::{Connection, Options, DISCORD_LIMITS};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The Discord configuration (YAML; see docs/discord.md).
    #[arg(long, env = "AETHERV_DISCORD_CONFIG")]
    pub config: PathBuf,
    /// `--simulated N`.
    #[command(flatten)]
    pub site: chat::SiteArgs,
}

/// Runs the command.
pub fn run(args: &Args) -> ExitCode {
    let setup = || -> Result<_, String> {
        let cfg = chat::load(&args.config, "discord", DiscordConfig::from_yaml)?;
        let common = Common {
            roles: &cfg.roles,
            policy: &cfg.policy,
            hosts: &cfg.hosts,
            channel: &cfg.channel,
        };
        let (ecfg, _, site) = chat::engine_config(
            &common,
            args.site.simulated,
            Platform::Discord,
            DISCORD_LIMITS,
        )?;
        let bot_token = secret(&cfg.bot_token_env, true)?;
        // Refuse a bad public key or Gateway URL before anything starts.
        let listen = match cfg.mode {
            ModeName::Http => {
                aetherv_discord::verify::Verifier::from_hex(&cfg.public_key)
                    .map_err(|e| format!("public_key: {e}"))?;
                Some(cfg.listen.clone())
            }
            ModeName::Gateway => {
                if let Some(url) = &cfg.gateway_url {
                    aetherv_discord::gateway::check_url(url).map_err(|e| e.to_string())?;
                }
                aetherv_discord::gateway::proxy_of(&cfg.api_url).map_err(|e| e.to_string())?;
                None
            }
        };
        let gateway_url = cfg.gateway_url.clone();
        let opts = move |listener: Option<tokio::net::TcpListener>| Options {
            application_id: cfg.application_id,
            public_key: cfg.public_key,
            bot_token,
            api_url: cfg.api_url,
            connection: match listener {
                Some(l) => Connection::Http(l),
                None => Connection::Gateway { url: gateway_url },
            },
            channel: cfg.channel,
            approvals_channel: cfg.approvals_channel,
            candidate: chat::candidate("discord"),
            templates_dir: chat::templates(cfg.templates_dir.as_ref()),
            register_commands: cfg.register_commands,
            guild_id: cfg.guild_id,
            thread_keeping: Default::default(),
        };
        Ok((listen, ecfg, site, opts))
    };
    let (listen, ecfg, site, opts) = match setup() {
        Ok(s) => s,
        Err(e) => return crate::cmd::fail("discord", 64, e),
    };
    crate::cmd::block_on(async move {
        let listener = match listen {
            Some(listen) => match tokio::net::TcpListener::bind(&listen).await {
                Ok(l) => {
                    eprintln!(
                        "aetherv discord: interactions endpoint on {listen} (POST /interactions)"
                    );
                    Some(l)
                }
                Err(e) => {
                    return crate::cmd::fail(
                        "discord",
                        1,
                        format!("cannot listen on {listen}: {e}"),
                    )
                }
            },
            None => {
                eprintln!("aetherv discord: connecting to the Discord Gateway");
                None
            }
        };
        let described = match &listener {
            Some(l) => format!(
                "HTTP interactions endpoint on {}",
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            ),
            None => "Gateway".to_string(),
        };
        let opts = opts(listener);
        chat::serve("discord", &described, site, ecfg, |engine, stop| {
            aetherv_discord::run(engine, opts, stop)
        })
        .await
    })
}
