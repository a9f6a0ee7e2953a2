//! What every chat adapter keeps beside the engine, written once: the inventory its forms and
//! autocomplete are built from (a snapshot the ingress side reads without the engine), where a
//! job's messages go, which approval messages are open, the ordered outbound queue, and the
//! run loop that ties the engine task, the ingress and the queue together. None of it decides
//! anything: it is bookkeeping and plumbing.

use crate::engine::{Engine, EngineError, VoteResult};
use crate::serve::Adapter;
use aetherv_core::rbac::Principal;
use aetherv_core::validate::InventoryChoices;
use aetherv_core::JobId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a chat adapter's configuration file is unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {platform} configuration")]
pub struct ConfigError {
    platform: &'static str,
    #[source]
    source: Box<serde_saphyr::Error>,
}

/// Parses a chat adapter's configuration file (YAML) for `platform`.
pub fn parse_config<T: serde::de::DeserializeOwned>(
    platform: &'static str,
    text: &str,
) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| ConfigError {
        platform,
        source: Box::new(e),
    })
}

/// How long a stopped engine waits for its adapter's ingress to say why it ended.
const INGRESS_REASON_WAIT: Duration = Duration::from_secs(1);

/// How long queued writes may take to go out once the adapter stops.
pub const DRAIN: Duration = Duration::from_secs(5);

/// The inventory forms and autocomplete are built from, refreshed by the engine task.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Choices across all hosts.
    pub all: InventoryChoices,
    /// Choices narrowed to one host.
    pub by_host: BTreeMap<String, InventoryChoices>,
}

impl Inventory {
    /// A snapshot of the engine's inventory.
    pub fn of(engine: &Engine) -> Self {
        Inventory {
            all: engine.form_choices(None),
            by_host: engine
                .hosts()
                .into_iter()
                .map(|h| {
                    let c = engine.form_choices(Some(&h));
                    (h, c)
                })
                .collect(),
        }
    }

    /// The choices for an optional chosen host (all hosts' when none or unknown).
    pub fn for_host(&self, host: Option<&str>) -> &InventoryChoices {
        host.and_then(|h| self.by_host.get(h)).unwrap_or(&self.all)
    }
}

/// Where a job's messages go, and which approval messages this adapter posted and has not
/// yet seen decided.
#[derive(Debug, Clone)]
pub struct Places {
    /// The channel for messages without a better place.
    pub channel: String,
    /// The channel approval requests go to, besides the job's own.
    pub approvals_channel: Option<String>,
    job_channel: HashMap<JobId, String>,
    open_approvals: HashSet<JobId>,
}

impl Places {
    /// Messages go to `channel` unless a job came from elsewhere.
    pub fn new(channel: String, approvals_channel: Option<String>) -> Self {
        Places {
            channel,
            approvals_channel,
            job_channel: HashMap::new(),
            open_approvals: HashSet::new(),
        }
    }

    /// Remembers the channel a job was asked for in.
    pub fn job_in(&mut self, job: JobId, channel: &str) {
        self.job_channel.insert(job, channel.to_string());
    }

    /// The channel of a job (the default one when it came from elsewhere).
    pub fn channel_of(&self, job: JobId) -> String {
        self.job_channel
            .get(&job)
            .cloned()
            .unwrap_or_else(|| self.channel.clone())
    }

    /// Marks a job's approval messages as posted.
    pub fn approval_opened(&mut self, job: JobId) {
        self.open_approvals.insert(job);
    }

    /// Whether this adapter posted a job's approval messages and they are still open.
    pub fn approval_open(&self, job: JobId) -> bool {
        self.open_approvals.contains(&job)
    }

    /// A click on an approval button by `who`: the engine's vote, and what an adapter needs to
    /// answer it (whether it posted the request's messages itself, and whether the request
    /// was undecided before the click: a click that decides a request from before a restart
    /// edits the clicked message).
    pub async fn vote(
        &self,
        engine: &mut Engine,
        who: &Principal,
        job: JobId,
        approve: bool,
    ) -> Result<Click, EngineError> {
        let ours = self.approval_open(job);
        let undecided = engine.decision(job).is_none();
        let result = engine.vote(who, job, approve, None).await?;
        Ok(Click {
            ours,
            undecided,
            result,
        })
    }

    /// Marks a job's approval messages as decided; true when they were open.
    pub fn approval_closed(&mut self, job: JobId) -> bool {
        self.open_approvals.remove(&job)
    }
}

/// A counted, refused or deciding click, and what was known before it.
#[derive(Debug)]
pub struct Click {
    /// This adapter posted the request's messages (they are edited by the decision).
    pub ours: bool,
    /// The request was undecided before the click.
    pub undecided: bool,
    /// The engine's answer.
    pub result: VoteResult,
}

/// The sending side of an adapter's ordered outbound queue: writes go out one at a time, in
/// the order they were queued, by the adapter's own task draining the receiving end.
#[derive(Debug)]
pub struct Outbound<Op> {
    tx: mpsc::UnboundedSender<Op>,
    platform: &'static str,
}

impl<Op> Clone for Outbound<Op> {
    fn clone(&self) -> Self {
        Outbound {
            tx: self.tx.clone(),
            platform: self.platform,
        }
    }
}

impl<Op: Send + 'static> Outbound<Op> {
    /// A queue whose receiving end the caller drains itself (in order, one write at a time).
    pub fn channel(platform: &'static str) -> (Self, mpsc::UnboundedReceiver<Op>) {
        let (tx, rx) = mpsc::unbounded_channel::<Op>();
        (Outbound { tx, platform }, rx)
    }

    /// Queues a write (never blocks; dropped with a warning once the task has ended).
    pub fn send(&self, op: Op) {
        if self.tx.send(op).is_err() {
            tracing::warn!(
                platform = self.platform,
                "outbound queue closed; write dropped"
            );
        }
    }
}

/// Runs an adapter until `shutdown`, its ingress or the engine task ends: the engine on the
/// serve loop under `candidate`, the ingress (`ingress`: the end of a task or thread the
/// caller started with `stop`), then up to [`DRAIN`] for the outbound task to send what is
/// queued.
pub async fn run<A, I, E>(
    engine: Engine,
    mut adapter: A,
    candidate: String,
    ingress: I,
    outbound: JoinHandle<()>,
    stop: CancellationToken,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    A: Adapter + Send + 'static,
    I: Future<Output = Result<anyhow::Result<()>, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let serve_stop = stop.clone();
    let engine_task =
        tokio::spawn(
            async move { crate::serve(engine, &mut adapter, &candidate, serve_stop).await },
        );
    let ingress_result =
        |r: Result<anyhow::Result<()>, E>| r.map_err(anyhow::Error::from).and_then(|r| r);
    tokio::pin!(ingress);
    let result = tokio::select! {
        biased;
        r = &mut ingress => ingress_result(r),
        r = engine_task => match r.map_err(anyhow::Error::from).and_then(|r| r) {
            // The adapter's inputs ended: when its ingress is ending too (a Gateway that
            // refused the token), its reason is the result, not a clean stop.
            Ok(()) => match tokio::time::timeout(INGRESS_REASON_WAIT, &mut ingress).await {
                Ok(r) => ingress_result(r),
                Err(_) => Ok(()),
            },
            Err(e) => Err(e),
        },
        () = shutdown.cancelled() => Ok(()),
    };
    stop.cancel();
    let _ = tokio::time::timeout(DRAIN, outbound).await;
    result
}
