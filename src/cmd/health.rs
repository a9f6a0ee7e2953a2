//! `--health-listen ADDR` (`AETHERV_HEALTH_LISTEN`): `/healthz`, `/readyz` and `/metrics` for
//! the long-running commands (`worker`, `bot`, `slack`, `discord`), and the one line each
//! logs at start saying what it serves and where its health endpoint listens.
use aetherv_broker::Broker;
use aetherv_metrics::health::{self, ReadyCheck};
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

static LISTEN: OnceLock<Option<String>> = OnceLock::new();

/// Records the global `--health-listen` flag (once, in `main`).
pub fn set_listen(addr: Option<String>) {
    let _ = LISTEN.set(addr.filter(|a| !a.trim().is_empty()));
}

/// Starts the endpoints when `--health-listen` is set; returns where they listen, as said in
/// the start line ("off" when not set). A bind failure is an error naming the address.
pub async fn start(ready: ReadyCheck, stop: CancellationToken) -> Result<String, String> {
    let Some(addr) = LISTEN.get().cloned().flatten() else {
        return Ok("off (no --health-listen)".into());
    };
    let bound = health::spawn(&addr, ready, stop).await?;
    Ok(format!("http://{bound}/healthz"))
}

/// A bot is ready when the broker is connected and it is either a standby waiting for
/// leadership or the leader with its replay done.
pub fn bot_ready(broker: Broker) -> ReadyCheck {
    use aetherv_bot::serve::Role;
    Arc::new(move || {
        if !broker.is_connected() {
            return Err("RabbitMQ is not connected".into());
        }
        match aetherv_bot::serve::role() {
            Role::Standby | Role::Leading => Ok(()),
            Role::CatchingUp => Err("leader, replaying the event stream".into()),
            Role::Stopped => Err("not serving yet".into()),
        }
    })
}

/// A worker is ready when the broker is connected and every host's slot is up.
pub fn worker_ready(
    broker: Broker,
    slots: aetherv_worker::SlotRegistry,
    hosts: usize,
) -> ReadyCheck {
    Arc::new(move || {
        if !broker.is_connected() {
            return Err("RabbitMQ is not connected".into());
        }
        let up = slots.snapshot().len();
        if up < hosts {
            return Err(format!("{up} of {hosts} host slots subscribed"));
        }
        Ok(())
    })
}
