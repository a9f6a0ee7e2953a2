//! The one serve loop every adapter runs in: wait for leadership (one active bot), replay the
//! event stream from the start (no database), then select over the adapter's inputs, AMQP
//! producers' requests, broker events and ticks until the adapter stops, leadership is lost or `shutdown`.
//!
//! An adapter is inputs in, typed replies out: [`Adapter::recv`] yields its platform's
//! requests, [`Adapter::handle`] turns one into engine calls and delivers what they return,
//! [`Adapter::deliver`] renders what events and ticks produce. It never reads the engine's
//! insides: the engine's methods say what it may know.

use crate::engine::Engine;
use crate::reply::Reply;
use aetherv_broker::StreamOffset;
use aetherv_core::Event;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio_util::sync::CancellationToken;

/// How often throttled edits and expiries are checked.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// A replay with no event for this long has read the whole stream (the replay is done).
pub const REPLAY_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The leader-election role name of the bot.
pub const LEADER_ROLE: &str = "bot";

/// Whether the serve loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep serving.
    Continue,
    /// Stop: the adapter is done.
    Stop,
}

/// One chat platform (or other front door) on the engine.
pub trait Adapter: Send {
    /// One request from the platform.
    type Input: Send;

    /// Whether inputs are read now (a scripted console pauses while it waits for jobs).
    fn reading(&self) -> bool {
        true
    }

    /// Whether inputs are read while the event stream is being replayed (they are answered
    /// "catching up"). An adapter that says `false` has its inputs wait until the replay is
    /// done instead (the console: one person's lines, often scripted).
    fn answers_while_catching_up(&self) -> bool {
        true
    }

    /// The next input; `None` when the platform's inputs ended.
    fn recv(&mut self) -> impl Future<Output = Option<Self::Input>> + Send;

    /// Handles one input: engine calls, and delivering what they return.
    fn handle(
        &mut self,
        engine: &mut Engine,
        input: Self::Input,
    ) -> impl Future<Output = anyhow::Result<Flow>> + Send;

    /// Delivers replies the engine produced on its own (events, ticks).
    fn deliver(
        &mut self,
        engine: &Engine,
        replies: Vec<Reply>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Called once the replay started, before the first input is read.
    fn started(&mut self, _engine: &Engine) {}

    /// Called after each broker event was applied (e.g. to refresh cached inventory).
    fn applied(&mut self, _engine: &Engine, _event: &Event) {}

    /// Called after each tick; may stop the loop (a console whose input ended and whose jobs
    /// are done).
    fn ticked(&mut self, _engine: &Engine) -> Flow {
        Flow::Continue
    }

    /// Called once when [`Adapter::recv`] returned `None`.
    fn ended(&mut self) -> Flow {
        Flow::Stop
    }
}

/// Where this process's serve loop is (for `/readyz`; one serve loop per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not serving (before the loop started, or after it ended).
    Stopped,
    /// Waiting for leadership behind another bot.
    Standby,
    /// Leader, replaying the event stream.
    CatchingUp,
    /// Leader with its replay done.
    Leading,
}

static ROLE: AtomicU8 = AtomicU8::new(0);

fn set_role(role: Role) {
    ROLE.store(role as u8, Ordering::Relaxed);
    aetherv_metrics::metrics().set_bot_leader(role == Role::Leading);
}

/// The serve loop's role in this process.
pub fn role() -> Role {
    match ROLE.load(Ordering::Relaxed) {
        1 => Role::Standby,
        2 => Role::CatchingUp,
        3 => Role::Leading,
        _ => Role::Stopped,
    }
}

/// Serves `adapter` on `engine` as leadership candidate `candidate` until the adapter stops,
/// leadership is lost (an error) or `shutdown`.
pub async fn serve<A: Adapter>(
    engine: Engine,
    adapter: &mut A,
    candidate: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let served = serve_as_leader(engine, adapter, candidate, shutdown).await;
    set_role(Role::Stopped);
    served
}

async fn serve_as_leader<A: Adapter>(
    mut engine: Engine,
    adapter: &mut A,
    candidate: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut leadership = engine.broker().leadership(LEADER_ROLE, candidate).await?;
    set_role(Role::Standby);
    tokio::select! {
        ok = leadership.acquire() => if !ok { anyhow::bail!("the broker closed before this bot became leader") },
        () = shutdown.cancelled() => return Ok(()),
    }
    let mut events = engine.broker().replay_events(StreamOffset::First).await?;
    // Only the leader consumes requests (single active consumer besides).
    let mut requests = engine.broker().consume_requests(candidate).await?;
    // Until the replay is done (an event newer than its start, or the stream idle for
    // REPLAY_IDLE), lines are answered "catching up" instead of from a partial state.
    let replay_started = chrono::Utc::now();
    let mut last_event = tokio::time::Instant::now();
    engine.set_catching_up(true);
    set_role(Role::CatchingUp);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inputs_open = true;
    adapter.started(&engine);
    loop {
        let reading = inputs_open
            && adapter.reading()
            && (adapter.answers_while_catching_up() || !engine.is_catching_up());
        let flow = tokio::select! {
            input = adapter.recv(), if reading => match input {
                Some(input) => adapter.handle(&mut engine, input).await?,
                None => {
                    inputs_open = false;
                    adapter.ended()
                }
            },
            // Requests wait for the replay: the gate must see the whole state.
            req = next_request(&mut requests), if !engine.is_catching_up() => {
                let Some(req) = req else { anyhow::bail!("the requests queue ended") };
                let replies = engine.handle_request(req).await?;
                adapter.deliver(&engine, replies).await?;
                Flow::Continue
            }
            ev = events.next() => {
                let Some((_, ev)) = ev else { anyhow::bail!("the event stream ended") };
                last_event = tokio::time::Instant::now();
                if ev.at >= replay_started {
                    engine.set_catching_up(false);
                }
                let replies = engine.handle_event(&ev, tokio::time::Instant::now());
                adapter.applied(&engine, &ev);
                adapter.deliver(&engine, replies).await?;
                Flow::Continue
            }
            _ = tick.tick() => {
                if last_event.elapsed() >= REPLAY_IDLE {
                    engine.set_catching_up(false);
                }
                let replies = engine.tick(tokio::time::Instant::now()).await?;
                adapter.deliver(&engine, replies).await?;
                adapter.ticked(&engine)
            }
            () = leadership.lost() => anyhow::bail!("lost leadership; another bot took over"),
            () = shutdown.cancelled() => return Ok(()),
        };
        if flow == Flow::Stop {
            return Ok(());
        }
        if role() == Role::CatchingUp && !engine.is_catching_up() {
            set_role(Role::Leading);
        }
    }
}

/// The next AMQP request; never resolves without a requests queue (in-process broker).
async fn next_request(
    requests: &mut Option<aetherv_broker::RequestConsumer>,
) -> Option<aetherv_broker::RequestDelivery> {
    match requests {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}
