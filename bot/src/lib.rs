//! aetherv-bot: the chat side of Aether-V ChatOps.
//!
//! Owns the conversation engine ([`engine`]: one dispatch from a chat line to replies, jobs and
//! events; approvals; job threads), the job-thread message bookkeeping with throttled log
//! streaming ([`thread`]), the state rebuilt from the event stream ([`state`]), rendering from
//! handlebars templates ([`render`]), the typed replies every adapter renders ([`reply`]), the
//! one serve loop every adapter runs in ([`serve`]), and the console adapter ([`console`]),
//! which is both the reference adapter and the test double. The command grammar, roles and approval rules are
//! pure code in `aetherv-core`. This crate must not talk WinRM or know a host's internals.
//!
//! [`serve`] is the bot's main loop for every adapter: wait for leadership (one active bot),
//! replay the event stream from the start (no database), then serve inputs, events and ticks.
//! [`run_console`] runs it with the console adapter.

pub mod chat;
pub mod console;
pub mod engine;
pub mod gate;
pub mod render;
pub mod reply;
pub mod serve;
pub mod state;
pub mod thread;

pub use console::{Console, ConsoleAdapter, ConsoleLine, ConsoleSession};
pub use engine::{Engine, EngineConfig, EngineError};
pub use reply::Reply;
pub use serve::{serve, Adapter, Flow, LEADER_ROLE, TICK};

use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// The longest a `/wait` (or the end of input) waits for job threads to finish.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Console options.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The user before any `/as`.
    pub first_user: String,
    /// Where attachments go.
    pub attach_dir: Option<PathBuf>,
    /// This bot's candidate id in the leader election.
    pub candidate: String,
    /// The template override directory (`<dir>/console/<name>.hbs`).
    pub templates_dir: Option<PathBuf>,
}

/// Runs the bot on a console until input ends (after waiting for running jobs), `/quit`, or
/// `shutdown`.
pub async fn run_console<R, W>(
    engine: Engine,
    input: R,
    out: W,
    opts: ConsoleOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    R: AsyncBufRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let render = render::Renderer::load(
        "console",
        render::CONSOLE_TEMPLATES,
        opts.templates_dir.as_deref(),
    )?;
    let mut adapter = ConsoleAdapter::new(
        input,
        Console::new(out, render, opts.attach_dir),
        &opts.first_user,
    );
    serve(engine, &mut adapter, &opts.candidate, shutdown).await
}
