//! A simulated site for trying the bot with nothing else running (`aetherv demo`,
//! `aetherv slack --simulated`): simulated Hyper-V hosts served over WinRM on loopback and an
//! in-process worker serving their queues on a given broker.

use crate::{Worker, WorkerConfig};
use aetherv_broker::Broker;
use aetherv_sim::{Sim, SimConfig};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A simulated site on `broker`: simulated Hyper-V hosts `hosts` on loopback (each agent
/// operation taking `latency`), their queues declared, and an in-process worker serving them
/// that opens secrets with the age identity `identity_text`. Runs until `stop`; the handle
/// ends with the worker.
pub async fn start_site(
    broker: &Broker,
    hosts: &[String],
    latency: Duration,
    identity_text: String,
    stop: &CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut sim_cfg = SimConfig::with_hosts(hosts.len());
    sim_cfg.latency = latency;
    let sim = Sim::new(sim_cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut wc = WorkerConfig::from_yaml(&sim.worker_config_yaml(&format!("http://{addr}")))
        .map_err(|e| aetherv_core::error_chain(&e))?;
    let s = stop.clone();
    tokio::spawn(sim.serve(listener, async move { s.cancelled().await }));
    wc.prefix = broker.topology().prefix.clone();
    wc.inventory_interval_secs = 5;
    let env = move |k: &str| (k == "AETHERV_AGE_IDENTITY").then(|| identity_text.clone());
    let worker = Worker::new(&wc, broker.clone(), &env).map_err(|e| e.to_string())?;
    let stop = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = worker.run(stop).await {
            tracing::error!(error = %format!("{e:#}"), "the simulated site's worker stopped");
        }
    });
    for h in hosts {
        broker
            .declare_host(h)
            .await
            .map_err(|e| aetherv_core::error_chain(&e))?;
    }
    Ok(task)
}
