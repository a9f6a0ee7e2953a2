//! aetherv-discord: the Discord adapter. It only translates between Discord and the
//! conversation engine of `aetherv-bot`: `/aether` commands become engine lines, Approve /
//! Reject buttons become votes, and the engine's typed replies become REST writes (the
//! command's deferred answer, approval messages, job messages, the log file).
//!
//! - [`commands`]: the `/aether` definition and its registration at start;
//! - [`config`]: the `aetherv discord --config FILE` configuration;
//! - [`gateway`]: the Gateway connection through serenity (`mode: gateway`, the default);
//! - [`http`]: the signed HTTP interactions endpoint (`mode: http`) and the answer to an
//!   interaction, shared by both modes;
//! - [`verify`]: Ed25519 request signatures and the replay window;
//! - [`interaction`]: interaction payloads and their translation into the engine's vocabulary;
//! - [`form`]: the deploy forms as command options and chained modal pages, and the drafts;
//! - [`conversation`]: the adapter on the serve loop, engine replies → Discord writes;
//! - [`messages`]: the message JSON the bot sends;
//! - [`outbound`]: the ordered write queue (edits coalesced, job threads kept open);
//! - [`rest`]: the REST client on serenity (configurable base URL, deadlines, rate-limit
//!   buckets and 429s, no retry of refusals).
//!
//! It decides nothing about permissions, validation or approvals: the engine does.

pub mod commands;
pub mod config;
pub mod conversation;
pub mod form;
pub mod gateway;
pub mod http;
pub mod interaction;
pub mod messages;
pub mod outbound;
pub mod rest;
pub mod verify;

use aetherv_bot::engine::Engine;
use aetherv_bot::render::Renderer;
use aetherv_bot::thread::Limits;
use conversation::{Conversation, Inventory};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use rest::DEFAULT_API_URL;

/// The engine limits for Discord: a live log message must fit the 2,000-character content
/// limit with its code fence. Edits are not paced by the engine: the REST client waits for
/// each rate-limit bucket (`X-RateLimit-*`) and the outbound queue sends only the newest of
/// the edits of one message that waited meanwhile.
pub const DISCORD_LIMITS: Limits = Limits {
    max_message_chars: 1900,
    min_edit_interval: Duration::ZERO,
};

/// How many acknowledged interactions may wait for the engine.
pub const INPUT_QUEUE: usize = 256;

/// The Discord text templates, by name (`templates/discord/`).
pub const DISCORD_TEMPLATES: &[(&str, &str)] = aetherv_bot::builtin_templates!("discord":
    help, refused, parse_error, form_errors, approval_request, vote_counted, approved, rejected,
    expired, vote_refused, job_status, job_log, job_succeeded, job_failed, job_cancelled,
    vm_list, vm_show, hosts, jobs, notice, attachment, thread_root, guided_intro, guided_field,
    guided_set, guided_required, guided_cancelled, form_page,
);

/// How Discord reaches the bot.
#[derive(Debug)]
pub enum Connection {
    /// The Gateway (the default): a WebSocket out to `url` (`None`: what `GET /gateway`
    /// answers, normally `wss://gateway.discord.gg`).
    Gateway {
        /// The WebSocket URL.
        url: Option<String>,
    },
    /// The HTTP interactions endpoint on this listener.
    Http(tokio::net::TcpListener),
}

/// Everything the adapter needs besides the engine.
#[derive(Debug)]
pub struct Options {
    /// The application id (snowflake).
    pub application_id: String,
    /// The application's public key (hex), for request signatures (HTTP mode).
    pub public_key: String,
    /// The bot token.
    pub bot_token: String,
    /// REST base URL (`https://discord.com/api/v10`, a proxy, or a test fake).
    pub api_url: String,
    /// The Gateway or the HTTP interactions endpoint.
    pub connection: Connection,
    /// The channel for job messages without a better place.
    pub channel: String,
    /// Where approval requests are posted (else the job's channel).
    pub approvals_channel: Option<String>,
    /// This bot's candidate id in the leader election.
    pub candidate: String,
    /// The template override directory (`<dir>/discord/<name>.hbs`).
    pub templates_dir: Option<std::path::PathBuf>,
    /// Register `/aether` at start (bulk overwrite).
    pub register_commands: bool,
    /// Register it in this guild (immediate) instead of globally.
    pub guild_id: Option<String>,
    /// How running jobs' threads are kept from archiving.
    pub thread_keeping: outbound::ThreadKeeping,
}

/// Runs the Discord bot (over the Gateway or the HTTP interactions endpoint) until `shutdown`
/// or until a task fails (the Gateway refusing the token or the intents included).
pub async fn run(engine: Engine, opts: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let texts = Arc::new(Renderer::load(
        "discord",
        DISCORD_TEMPLATES,
        opts.templates_dir.as_deref(),
    )?);
    let rest = rest::Rest::new(&opts.api_url, &opts.bot_token, &opts.application_id)?;
    if opts.register_commands {
        let (rest, guild) = (rest.clone(), opts.guild_id.clone());
        let forms = aetherv_core::schema::Forms::builtin()?;
        tokio::spawn(async move {
            match commands::register(&rest, guild.as_deref(), &forms).await {
                Ok(()) => tracing::info!(guild = ?guild, "/aether registered"),
                Err(e) => tracing::error!(error = %e, "/aether could not be registered"),
            }
        });
    }
    let (out, out_task) = outbound::start(rest, opts.thread_keeping);
    let (tx, rx) = tokio::sync::mpsc::channel(INPUT_QUEUE);
    let handlers = http::Handlers {
        tx,
        inventory: Arc::new(RwLock::new(Inventory::default())),
        forms: Arc::new(aetherv_core::schema::Forms::builtin()?),
        drafts: Arc::default(),
    };
    let conv = Conversation::new(
        rx,
        out,
        texts,
        Arc::clone(&handlers.inventory),
        opts.channel.clone(),
        opts.approvals_channel.clone(),
        Arc::clone(&handlers.drafts),
        Arc::clone(&handlers.forms),
    );
    let stop = shutdown.child_token();
    let listener = match opts.connection {
        Connection::Http(listener) => {
            let verifier = verify::Verifier::from_hex(&opts.public_key)?;
            let router = http::router(verifier, handlers);
            tokio::spawn(http::serve(listener, router, stop.clone()))
        }
        Connection::Gateway { url } => {
            let gw = gateway::Gateway {
                url,
                api_url: opts.api_url.clone(),
                token: opts.bot_token.clone(),
                application_id: opts.application_id.clone(),
            };
            tokio::spawn(gateway::run(gw, handlers, stop.clone()))
        }
    };
    let candidate = opts.candidate.clone();
    aetherv_bot::chat::run(engine, conv, candidate, listener, out_task, stop, shutdown).await
}
