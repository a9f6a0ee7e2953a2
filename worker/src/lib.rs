//! aetherv-worker: runs jobs on Hyper-V hosts.
//!
//! Owns the host slots (one consumer per host queue; see [`slot`]), the job executor (jobs →
//! agent operations, events; see [`executor`]), the agent call over WinRM ([`agent`]) and
//! inventory polling ([`inventory`]). It does not validate chat input or talk to chat platforms.
//!
//! Lifecycle: running → quiet (stop taking jobs, let in-flight jobs finish) → terminate (after
//! the grace period, interrupt what still runs and return it to its queue).

pub mod agent;
pub mod cancel;
pub mod config;
pub mod deploy;
pub mod executor;
pub mod guestinit;
pub mod inventory;
pub mod job;
pub mod managed;
pub mod placement;
pub mod placer;
pub mod preflight;
mod prepare;
mod queue;
pub mod reporter;
#[cfg(feature = "simulated")]
pub mod simulated;
pub mod slot;

use aetherv_broker::Broker;
use aetherv_winrm::{Auth, ClientConfig, KerberosSecret, TlsOptions, WinrmClient};
use config::{AuthConfig, ConfigError, HostConfig};
use futures::TryStreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use agent::HostAgent;
pub use config::WorkerConfig;
pub use slot::{SlotRegistry, SlotState};

/// Why the worker stopped, and what it left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopDetails {
    /// True when every in-flight job finished within the grace period.
    pub drained: bool,
}

/// A configured worker, ready to run.
pub struct Worker {
    broker: Broker,
    worker_id: String,
    agents: Vec<HostAgent>,
    inventory_agents: Vec<HostAgent>,
    /// Clusters this worker serves members of, with those members' agents (for placement).
    clusters: Vec<(String, Vec<HostAgent>)>,
    inventory_interval: Duration,
    grace: Duration,
    slots: SlotRegistry,
    opts: executor::ExecOptions,
}

/// Builds the WinRM client for one host from its configuration.
pub fn winrm_client(
    host: &HostConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WinrmClient, ConfigError> {
    let ca_pem = match &host.tls.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let auth = match &host.auth {
        AuthConfig::Basic { username, .. } => Auth::Basic {
            username: username.clone(),
            password: host.auth.password(env)?,
        },
        AuthConfig::Ntlm {
            username, domain, ..
        } => Auth::Ntlm {
            username: username.clone(),
            password: host.auth.password(env)?,
            domain: domain.clone().unwrap_or_default(),
        },
        AuthConfig::Kerberos {
            principal,
            keytab,
            spn,
            ..
        } => Auth::Kerberos {
            principal: principal.clone(),
            secret: match keytab {
                Some(k) => KerberosSecret::Keytab(k.clone()),
                None => KerberosSecret::Password(host.auth.password(env)?),
            },
            spn: spn.clone(),
        },
    };
    let mut cfg = ClientConfig::new(&host.endpoint, auth);
    cfg.tls = TlsOptions {
        ca_pem,
        accept_invalid_certs: host.tls.insecure_skip_verify,
    };
    WinrmClient::new(cfg).map_err(|e| ConfigError::Invalid(format!("host {}: {e}", host.name)))
}

/// Makes the Kerberos keytab of the configured hosts this process's client keytab (MIT reads it
/// from the environment). Call it before any thread starts; a no-op when no host uses a keytab.
/// All keytab hosts of one worker must name the same keytab.
pub fn install_kerberos_keytab(cfg: &WorkerConfig) -> Result<(), ConfigError> {
    let mut keytabs = cfg.hosts.iter().filter_map(|h| h.auth.keytab());
    let Some(first) = keytabs.next() else {
        return Ok(());
    };
    if keytabs.any(|k| k != first) {
        return Err(ConfigError::Invalid(
            "all kerberos hosts of one worker must use the same keytab".into(),
        ));
    }
    #[cfg(feature = "kerberos")]
    {
        aetherv_winrm::kerberos::install_client_keytab(first);
        Ok(())
    }
    #[cfg(not(feature = "kerberos"))]
    Err(ConfigError::Invalid(
        "kerberos authentication needs aetherv built with the `kerberos` feature".into(),
    ))
}

impl Worker {
    /// Builds a worker: one WinRM client per host, shared by its job slot (which keeps a shell
    /// open between jobs), its inventory poller, its deployer and its cluster's placer.
    pub fn new(
        cfg: &WorkerConfig,
        broker: Broker,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        cfg.check()?;
        let mut agents = Vec::new();
        let mut inventory_agents = Vec::new();
        let mut clusters: Vec<(String, Vec<HostAgent>)> = Vec::new();
        let bundle = Arc::new(aetherv_core::bundle::Bundle::embedded().clone());
        for h in &cfg.hosts {
            let name = h.name.trim().to_ascii_lowercase();
            // One client per host: clones share its configuration and TLS setup, and each
            // shell still has a connection of its own.
            let client = winrm_client(h, env)?;
            let deployer = Arc::new(deploy::Deployer::new(
                &name,
                client.clone(),
                &cfg.install_dir,
                bundle.clone(),
            ));
            let agent = HostAgent::new(
                &name,
                client.clone(),
                &cfg.install_dir,
                cfg.operation_timeout(),
            )
            .with_deployer(deployer.clone());
            agents.push(if cfg.keep_shells {
                agent.keep_shell()
            } else {
                agent
            });
            inventory_agents.push(
                HostAgent::new(
                    &name,
                    client.clone(),
                    &cfg.install_dir,
                    Duration::from_secs(120),
                )
                .with_deployer(deployer.clone()),
            );
            if let Some(c) = h.cluster.as_deref().map(|c| c.trim().to_ascii_lowercase()) {
                let member = HostAgent::new(
                    &name,
                    client.clone(),
                    &cfg.install_dir,
                    Duration::from_secs(60),
                )
                .with_deployer(deployer);
                match clusters.iter_mut().find(|(n, _)| *n == c) {
                    Some((_, members)) => members.push(member),
                    None => clusters.push((c, vec![member])),
                }
            }
        }
        let opts = executor::ExecOptions {
            identity: cfg.age_identity(env)?.map(Arc::new),
            verifier: Arc::new(cfg.job_verifier(env)?),
            ..Default::default()
        };
        if opts.verifier.is_empty() {
            tracing::warn!("no job_signing_keys configured: unsigned jobs will run");
        }
        if opts.identity.is_none() {
            tracing::warn!(
                "no age identity configured: jobs with sealed secrets (guest passwords) will fail"
            );
        }
        Ok(Worker {
            broker,
            worker_id: cfg.worker_id(),
            agents,
            inventory_agents,
            clusters,
            inventory_interval: Duration::from_secs(cfg.inventory_interval_secs),
            grace: Duration::from_secs(cfg.shutdown_grace_secs),
            slots: SlotRegistry::default(),
            opts,
        })
    }

    /// Deploys `bundle` instead of the embedded one (tests and staged rollouts).
    pub fn with_bundle(mut self, bundle: aetherv_core::bundle::Bundle) -> Self {
        let bundle = Arc::new(bundle);
        for (a, i) in self.agents.iter_mut().zip(self.inventory_agents.iter_mut()) {
            if let Some(d) = a.deployer() {
                let d = Arc::new(d.with_bundle(bundle.clone()));
                a.set_deployer(d.clone());
                i.set_deployer(d);
            }
        }
        self
    }

    /// The slot registry (for diagnostics).
    pub fn slots(&self) -> SlotRegistry {
        self.slots.clone()
    }

    /// Declares every host queue, then serves until `quiet` is cancelled; then drains within the
    /// grace period and interrupts what is left.
    pub async fn run(self, quiet: CancellationToken) -> anyhow::Result<StopDetails> {
        // Every queue this worker serves, declared a few at a time (a quorum queue's first
        // declaration takes the broker tens of milliseconds; a thousand in a row is half a
        // minute before the first slot could start).
        let keys: Vec<String> = self
            .agents
            .iter()
            .map(|a| a.host.clone())
            .chain(self.clusters.iter().map(|(c, _)| placer::cluster_key(c)))
            .collect();
        futures::stream::iter(keys.iter().map(Ok::<_, aetherv_broker::BrokerError>))
            .try_for_each_concurrent(DECLARE_AT_ONCE, |key| self.broker.declare_host(key))
            .await?;
        let terminate = CancellationToken::new();
        let ctx = Arc::new(slot::SlotCtx {
            broker: self.broker.clone(),
            worker_id: self.worker_id.clone(),
            slots: self.slots.clone(),
            opts: self.opts.clone(),
            preparing: tokio::sync::Semaphore::new(slot::START_PREPARATIONS),
            subscribing: tokio::sync::Semaphore::new(slot::START_SUBSCRIPTIONS),
        });
        let served: Vec<String> = self.agents.iter().map(|a| a.host.clone()).collect();
        let mut slots = tokio::task::JoinSet::new();
        for agent in self.agents {
            slots.spawn(slot::host_slot(
                ctx.clone(),
                agent,
                quiet.clone(),
                terminate.clone(),
            ));
        }
        let mut pollers = tokio::task::JoinSet::new();
        pollers.spawn(cancel::watch(
            self.broker.clone(),
            self.opts.cancels.clone(),
            cancel::DEFAULT_LOOKBACK,
            quiet.clone(),
        ));
        for (cluster, members) in self.clusters {
            pollers.spawn(placer::cluster_placer(
                self.broker.clone(),
                cluster,
                members,
                self.worker_id.clone(),
                quiet.clone(),
            ));
        }
        pollers.spawn(watch_queue_depths(
            self.broker.clone(),
            served,
            quiet.clone(),
        ));
        if !self.inventory_interval.is_zero() {
            let n = self.inventory_agents.len().max(1) as u32;
            for (i, agent) in self.inventory_agents.into_iter().enumerate() {
                let offset = self.inventory_interval / n * i as u32;
                let job_ended = self.slots.job_ended(&agent.host);
                pollers.spawn(inventory::poll_host(
                    self.broker.clone(),
                    agent,
                    inventory::Schedule {
                        interval: self.inventory_interval,
                        offset,
                        job_ended,
                    },
                    quiet.clone(),
                ));
            }
        }
        tracing::info!(worker = %self.worker_id, "worker running");
        quiet.cancelled().await;
        tracing::info!(
            "quiet: no new jobs; waiting up to {:?} for running jobs",
            self.grace
        );
        let drained = tokio::time::timeout(self.grace, async {
            while slots.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!("grace period over; interrupting running jobs");
            terminate.cancel();
            while slots.join_next().await.is_some() {}
        }
        pollers.abort_all();
        Ok(StopDetails { drained })
    }
}

/// Most queue declarations in flight at once when a worker starts.
const DECLARE_AT_ONCE: usize = 16;

/// How often the host queues' depths are read for `/metrics`.
const QUEUE_DEPTH_INTERVAL: Duration = Duration::from_secs(15);

/// Reads each served host queue's depth into the `host_queue_depth` gauge every
/// [`QUEUE_DEPTH_INTERVAL`], each read with a deadline, until `quiet`.
async fn watch_queue_depths(broker: Broker, hosts: Vec<String>, quiet: CancellationToken) {
    loop {
        for host in &hosts {
            let read = tokio::time::timeout(Duration::from_secs(2), broker.queue_depth(host));
            if let Ok(Ok(depth)) = read.await {
                aetherv_metrics::metrics().set_queue_depth(host, u64::from(depth.ready));
            }
        }
        tokio::select! {
            () = quiet.cancelled() => return,
            () = tokio::time::sleep(QUEUE_DEPTH_INTERVAL) => {}
        }
    }
}
