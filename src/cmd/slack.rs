//! `aetherv slack --config FILE`: the chat bot on Slack (Socket Mode by default, or the HTTP
//! Events API) against RabbitMQ (`AETHERV_AMQP_URL`, prefix `AETHERV_PREFIX`). Tokens come
//! from the environment variables the file names. One bot is active at a time (leader queue).
//! `--simulated N` runs it on a simulated site instead, as `aetherv demo` does: an in-process
//! broker, N simulated Hyper-V hosts and a worker, all in this process.
use crate::cmd::chat::{self, secret, Common};
use aetherv_core::rbac::RbacConfig;
use aetherv_core::Platform;
use aetherv_slack::config::{ModeName, SlackConfig};
use aetherv_slack::{Mode, Options, SLACK_LIMITS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The Slack configuration (YAML; see docs/slack.md).
    #[arg(long, env = "AETHERV_SLACK_CONFIG")]
    pub config: PathBuf,
    /// `--simulated N`.
    #[command(flatten)]
    pub site: chat::SiteArgs,
}

/// Runs the command.
pub fn run(args: &Args) -> ExitCode {
    let setup = || -> Result<_, String> {
        let cfg = chat::load(&args.config, "slack", SlackConfig::from_yaml)?;
        let common = Common {
            roles: &cfg.roles,
            policy: &cfg.policy,
            hosts: &cfg.hosts,
            channel: &cfg.channel,
        };
        let (ecfg, roles, site) =
            chat::engine_config(&common, args.site.simulated, Platform::Slack, SLACK_LIMITS)?;
        let groups = serde_saphyr::from_str::<RbacConfig>(&roles)
            .map(|r| aetherv_slack::identity::slack_groups(&r))
            .unwrap_or_default();
        let socket = cfg.mode == ModeName::Socket;
        let bot_token = secret(&cfg.bot_token_env, true)?;
        let app_token = secret(&cfg.app_token_env, socket)?;
        let signing_secret = secret(&cfg.signing_secret_env, !socket)?;
        let listen = (cfg.mode, cfg.connections, cfg.listen.clone());
        let opts = move |mode| Options {
            api_url: cfg.api_url.clone(),
            bot_token,
            app_token,
            signing_secret,
            mode,
            channel: cfg.channel.clone(),
            approvals_channel: cfg.approvals_channel.clone(),
            slack_groups: groups,
            group_refresh: Duration::from_secs(cfg.group_refresh_secs.max(10)),
            candidate: chat::candidate("slack"),
            templates_dir: chat::templates(cfg.templates_dir.as_ref()),
        };
        Ok((listen, ecfg, site, opts))
    };
    let ((mode, connections, listen), ecfg, site, opts) = match setup() {
        Ok(s) => s,
        Err(e) => return crate::cmd::fail("slack", 64, e),
    };
    crate::cmd::block_on(async move {
        let mode = match mode {
            ModeName::Socket => Mode::Socket { connections },
            ModeName::Http => match tokio::net::TcpListener::bind(&listen).await {
                Ok(l) => Mode::Http(l),
                Err(e) => {
                    let e = format!("cannot listen on {listen}: {e}");
                    return crate::cmd::fail("slack", 1, e);
                }
            },
        };
        let described = match &mode {
            Mode::Socket { connections } => format!("Socket Mode, {connections} connection(s)"),
            Mode::Http(_) => format!("HTTP Events API on {listen}"),
        };
        let opts = opts(mode);
        chat::serve("slack", &described, site, ecfg, |engine, stop| {
            aetherv_slack::run(engine, opts, stop)
        })
        .await
    })
}
