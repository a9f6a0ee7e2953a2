//! A simulated site for trying the bot with nothing else running (`aetherv demo`,
//! `aetherv slack --simulated`) and for the adapters' tests: simulated Hyper-V hosts served over
//! WinRM on loopback and an in-process worker serving their queues on a given broker.

use crate::{Worker, WorkerConfig};
use aetherv_broker::Broker;
use aetherv_sim::{Sim, SimConfig};
use tokio_util::sync::CancellationToken;

/// What the site is made of.
#[derive(Debug, Clone)]
pub struct Site {
    /// The simulated hosts (names, latency, faults).
    pub sim: SimConfig,
    /// The worker's age identity (`AGE-SECRET-KEY-…`), which opens sealed secrets.
    pub identity: Option<String>,
    /// Seconds between inventory polls (the worker's default when `None`).
    pub inventory_interval_secs: Option<u64>,
    /// The bot's public job-signing keys the worker accepts (empty: unsigned jobs run).
    pub job_signing_keys: Vec<String>,
    /// Where the simulated hosts listen (`127.0.0.1:0`, a free port, when `None`); their
    /// state is readable at `GET /sim/hosts/<host>` there.
    pub listen: Option<String>,
}

impl Site {
    /// `sim` without an identity, polling inventory at the worker's default interval.
    pub fn new(sim: SimConfig) -> Self {
        Site {
            sim,
            identity: None,
            inventory_interval_secs: None,
            job_signing_keys: Vec::new(),
            listen: None,
        }
    }

    /// The demo's site: `hosts` hosts (`hv01`…), each agent operation taking `latency`,
    /// secrets opened with `identity`, inventory polled every 5 s.
    pub fn demo(hosts: usize, latency: std::time::Duration, identity: String) -> Self {
        let mut sim = SimConfig::with_hosts(hosts);
        sim.latency = latency;
        Site {
            sim,
            identity: Some(identity),
            inventory_interval_secs: Some(5),
            job_signing_keys: Vec::new(),
            listen: None,
        }
    }

    /// The host names.
    pub fn hosts(&self) -> Vec<String> {
        self.sim.hosts.iter().map(|h| h.name.clone()).collect()
    }
}

/// Starts `site` on `broker`: the simulated hosts on loopback, their queues declared, and an
/// in-process worker serving them. Runs until `stop`; the handle ends with the worker.
pub async fn start_site(
    broker: &Broker,
    site: Site,
    stop: &CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let hosts = site.hosts();
    let sim = Sim::new(site.sim);
    let at = site.listen.as_deref().unwrap_or("127.0.0.1:0");
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| format!("cannot listen on {at}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut wc = WorkerConfig::from_yaml(&sim.worker_config_yaml(&format!("http://{addr}")))
        .map_err(|e| aetherv_core::error_chain(&e))?;
    let s = stop.clone();
    tokio::spawn(sim.serve(listener, async move { s.cancelled().await }));
    wc.prefix = broker.topology().prefix.clone();
    if let Some(secs) = site.inventory_interval_secs {
        wc.inventory_interval_secs = secs;
    }
    wc.job_signing_keys = site.job_signing_keys;
    let identity = site.identity;
    let env = move |k: &str| {
        (k == "AETHERV_AGE_IDENTITY")
            .then(|| identity.clone())
            .flatten()
    };
    let worker = Worker::new(&wc, broker.clone(), &env).map_err(|e| e.to_string())?;
    let stop = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = worker.run(stop).await {
            tracing::error!(error = %format!("{e:#}"), "the simulated site's worker stopped");
        }
    });
    for h in &hosts {
        broker
            .declare_host(h)
            .await
            .map_err(|e| aetherv_core::error_chain(&e))?;
    }
    Ok(task)
}
