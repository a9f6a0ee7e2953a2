//! aetherv-bot: the chat side of Aether-V ChatOps.
//!
//! Owns the conversation engine ([`engine`]: one dispatch from a chat line to replies, jobs and
//! events; approvals; job threads), the job-thread message bookkeeping with throttled log
//! streaming ([`thread`]), the state rebuilt from the event stream ([`state`]), rendering from
//! handlebars templates ([`render`]), and the console adapter ([`console`]), which is both the
//! reference adapter and the test double. The command grammar, roles and approval rules are
//! pure code in `aetherv-core`. This crate must not talk WinRM or know a host's internals.
//!
//! [`run_console`] is the bot's main loop: wait for leadership (one active bot), replay the
//! event stream from the start (no database), then serve chat lines, events and ticks.

pub mod console;
pub mod engine;
pub mod render;
pub mod state;
pub mod thread;

pub use console::{Console, ConsoleLine, ConsoleSession};
pub use engine::{Engine, EngineConfig, EngineError, Outgoing};

use aetherv_broker::StreamOffset;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// How often throttled edits and expiries are checked.
pub const TICK: Duration = Duration::from_millis(100);

/// The longest a `/wait` (or the end of input) waits for job threads to finish.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The leader-election role name of the bot.
pub const LEADER_ROLE: &str = "bot";

/// Console options.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The user before any `/as`.
    pub first_user: String,
    /// Where attachments go.
    pub attach_dir: Option<PathBuf>,
    /// This bot's candidate id in the leader election.
    pub candidate: String,
}

/// Runs the bot on a console until input ends (after waiting for running jobs), `/quit`, or
/// `shutdown`.
pub async fn run_console<R, W>(
    mut engine: Engine,
    input: R,
    out: W,
    opts: ConsoleOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut console = Console::new(out, opts.attach_dir.clone());
    let mut leadership = engine
        .broker()
        .leadership(LEADER_ROLE, &opts.candidate)
        .await?;
    tokio::select! {
        ok = leadership.acquire() => if !ok { anyhow::bail!("the broker closed before this bot became leader") },
        () = shutdown.cancelled() => return Ok(()),
    }
    let mut events = engine.broker().replay_events(StreamOffset::First).await?;
    let mut session = ConsoleSession::new(&opts.first_user);
    let mut lines = input.lines();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Reading input pauses while waiting (`/wait`, `/sleep`, end of input).
    let mut wait_until_idle: Option<tokio::time::Instant> = None;
    let mut sleep_until: Option<tokio::time::Instant> = None;
    let mut input_done = false;
    loop {
        let now = tokio::time::Instant::now();
        let reading =
            !input_done && wait_until_idle.is_none() && sleep_until.is_none_or(|t| now >= t);
        tokio::select! {
            line = lines.next_line(), if reading => {
                sleep_until = None;
                let line = match line {
                    Ok(Some(l)) => l,
                    Ok(None) => {
                        input_done = true;
                        wait_until_idle = Some(now + MAX_WAIT);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                match session.parse(&line) {
                    ConsoleLine::Chat(who, text) => {
                        for o in engine.handle_line(&who, &text).await? {
                            console.deliver(&o).await?;
                        }
                    }
                    ConsoleLine::Wait => wait_until_idle = Some(now + MAX_WAIT),
                    ConsoleLine::Sleep(d) => sleep_until = Some(now + d),
                    ConsoleLine::Quit => return Ok(()),
                    ConsoleLine::Nothing => {}
                }
            }
            ev = events.next() => {
                let Some((_, ev)) = ev else { anyhow::bail!("the event stream ended") };
                for o in engine.handle_event(&ev, tokio::time::Instant::now()) {
                    console.deliver(&o).await?;
                }
            }
            _ = tick.tick() => {
                for o in engine.tick(tokio::time::Instant::now()).await? {
                    console.deliver(&o).await?;
                }
                if let Some(deadline) = wait_until_idle {
                    if engine.is_idle() || tokio::time::Instant::now() >= deadline {
                        wait_until_idle = None;
                        if input_done {
                            return Ok(());
                        }
                    }
                }
            }
            () = leadership.lost() => anyhow::bail!("lost leadership; another bot took over"),
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
