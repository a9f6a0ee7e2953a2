//! aetherv-slack: the Slack adapter. It only translates between Slack and the conversation
//! engine of `aetherv-bot`: slash commands become engine lines, modals built from the form
//! schemas become form submissions, Approve/Reject buttons become votes, and the engine's
//! output becomes Block Kit messages, edits and file uploads in job threads.
//!
//! - [`app`]: the request handlers, shared by both transports;
//! - [`conversation`]: the engine task, engine output → Slack writes;
//! - [`modal`]: modals from the schemas, submissions back into field values;
//! - [`messages`]: one builder function per message the bot sends;
//! - [`blocks`]: Block Kit rendering from `templates/slack/` and Slack's limits;
//! - [`outbound`]: the ordered, rate-limit-aware write queue;
//! - [`identity`]: user ids and user-group membership → principals;
//! - [`socket`] (default) and [`http`]: the two ways Slack reaches the bot, both served on
//!   the [`ingress`] thread so acknowledgements never queue behind modal or engine work;
//! - [`config`]: the `aetherv slack --config FILE` configuration.
//!
//! It decides nothing about permissions, validation or approvals: the engine does.

pub mod app;
pub mod blocks;
pub mod config;
pub mod conversation;
pub mod http;
pub mod identity;
pub mod ingress;
pub mod messages;
pub mod modal;
pub mod outbound;
mod signature;
pub mod socket;

use aetherv_bot::chat::{self, Inventory};
use aetherv_bot::engine::Engine;
use aetherv_bot::thread::Limits;
use aetherv_core::schema::Forms;
use app::Shared;
use conversation::Conversation;
use identity::Identity;
use slack_morphism::prelude::*;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use socket::Connector;
/// The Web API client.
pub type Client = SlackClient<Connector>;

/// Slack's default Web API base URL.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// The engine limits for Slack: a live log message must fit a section block (3,000
/// characters) with its code fence, and each message is edited at most once per second.
pub const SLACK_LIMITS: Limits = Limits {
    max_message_chars: 2900,
    min_edit_interval: Duration::from_secs(1),
};

/// How Slack reaches the bot.
#[derive(Debug)]
pub enum Mode {
    /// Socket Mode (default): the bot opens WebSockets; no public URL.
    Socket {
        /// WebSocket connections to keep open.
        connections: u32,
    },
    /// The HTTP Events API on this listener (signed requests only).
    Http(tokio::net::TcpListener),
}

/// Everything the adapter needs besides the engine.
#[derive(Debug)]
pub struct Options {
    /// Web API base URL (`https://slack.com/api`, a proxy, or a test fake).
    pub api_url: String,
    /// Bot token (`xoxb-…`).
    pub bot_token: String,
    /// App-level token for Socket Mode (`xapp-…`).
    pub app_token: String,
    /// Signing secret for HTTP mode.
    pub signing_secret: String,
    /// Transport.
    pub mode: Mode,
    /// The channel for replies without a better place.
    pub channel: String,
    /// Where approval requests are posted (besides the request's thread).
    pub approvals_channel: Option<String>,
    /// User-group ids whose membership matters to roles.
    pub slack_groups: Vec<String>,
    /// How often user-group membership is refreshed.
    pub group_refresh: Duration,
    /// This bot's candidate id in the leader election.
    pub candidate: String,
    /// The template override directory (`<dir>/slack/<name>.hbs`,
    /// `<dir>/slack/text/<name>.hbs`).
    pub templates_dir: Option<std::path::PathBuf>,
}

/// A Web API client for `api_url` (HTTP or HTTPS).
pub fn client(api_url: &str) -> anyhow::Result<Arc<Client>> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .build();
    let connector = SlackClientHyperConnector::with_connector(https)
        .with_slack_api_url(api_url.trim_end_matches('/'));
    Ok(Arc::new(SlackClient::new(Connector(connector))))
}

/// Runs the Slack bot until `shutdown` (or until the engine task fails).
pub async fn run(engine: Engine, opts: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = opts.templates_dir.as_deref();
    let blocks = blocks::Blocks::load(dir)?;
    messages::check(&blocks)?;
    let texts =
        aetherv_bot::render::Renderer::load("slack/text", blocks::SLACK_TEXT_TEMPLATES, dir)?;
    let client = client(&opts.api_url)?;
    let token = SlackApiToken::new(SlackApiTokenValue(opts.bot_token.clone()));
    let (tx, rx) = tokio::sync::mpsc::channel(app::INPUT_QUEUE);
    let identity = Arc::new(Identity::new(opts.slack_groups.clone()));
    let shared = Arc::new(Shared {
        client: Arc::clone(&client),
        token: token.clone(),
        forms: Forms::builtin()?,
        blocks,
        texts,
        inventory: RwLock::new(Inventory::default()),
        views: Mutex::new(Default::default()),
        drafts: Mutex::new(Default::default()),
        identity: Arc::clone(&identity),
        tx,
        opening: tokio::sync::Semaphore::new(app::OPENING_CONCURRENCY),
        work: tokio::runtime::Handle::current(),
    });
    let (out, out_task) = outbound::start(Arc::clone(&client), token.clone());
    let stop = shutdown.child_token();
    tokio::spawn(identity.run(Arc::clone(&client), token, opts.group_refresh, stop.clone()));
    let conv = Conversation::new(
        rx,
        Arc::clone(&shared),
        out,
        opts.channel.clone(),
        opts.approvals_channel.clone(),
    );
    let listener = match opts.mode {
        Mode::Socket { connections } => {
            let app_token = SlackApiToken::new(SlackApiTokenValue(opts.app_token.clone()));
            let client = Arc::clone(&client);
            let stop = stop.clone();
            ingress::spawn(move || socket::serve(client, shared, app_token, connections, stop))?
        }
        Mode::Http(l) => {
            // Re-registered with the ingress thread's runtime.
            let l = l.into_std()?;
            let secret = opts.signing_secret.clone();
            let stop = stop.clone();
            ingress::spawn(move || async move {
                let l = tokio::net::TcpListener::from_std(l)?;
                http::serve(l, shared, &secret, stop).await
            })?
        }
    };
    let candidate = opts.candidate.clone();
    chat::run(engine, conv, candidate, listener, out_task, stop, shutdown).await
}
