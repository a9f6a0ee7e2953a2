//! The [`Sim`] handle: the hosts' state behind one `Arc`, and agent-operation execution with
//! latency, recording and the idempotency journal around the pure [`crate::ops::execute`].
//!
//! Locks are `std::sync::Mutex`es held only for short synchronous sections, never across an
//! `.await`.

use crate::config::SimConfig;
use crate::guest::Guest;
use crate::ops::{self, OpOutput};
use crate::server::Shells;
use crate::state::{Fault, HostState};
use crate::stats::{is_read_only, OpRecord, Recorder, SimStats};
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use chrono::Utc;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Longest extra sleep a `noop` may ask for with `sleep_ms`.
pub const MAX_NOOP_SLEEP: Duration = Duration::from_secs(60);

/// A simulated fleet of Hyper-V hosts. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: SimConfig,
    hosts: BTreeMap<String, Mutex<HostEntry>>,
    pub(crate) shells: Shells,
    /// Set when serving stops, so long-polling `Receive`s return at once.
    pub(crate) closing: watch::Sender<bool>,
    /// Requests whose credentials were rejected (wrong user or password).
    auth_rejections: std::sync::atomic::AtomicU64,
    guest: RwLock<Option<Arc<dyn Guest>>>,
}

struct HostEntry {
    state: HostState,
    rec: Recorder,
    journal: HashMap<String, Journaled>,
    /// Set by [`Sim::make_unreachable`]: WinRM requests until then get 503.
    unreachable_until: Option<std::time::Instant>,
    /// WinRM requests refused because the host was unreachable.
    unreachable_refusals: u64,
}

/// An idempotency-journal entry: still running, or finished with this output.
enum Journaled {
    Pending(watch::Receiver<Option<OpOutput>>),
    Done(OpOutput),
}

/// Everything one agent run printed, for callers that use the simulator without WinRM.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRun {
    /// Stdout lines, the result line last.
    pub stdout: Vec<String>,
    /// The parsed result.
    pub result: AgentResult,
    /// Process exit code (0 success, 1 error).
    pub exit_code: i32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    /// Builds the simulator; hosts start empty.
    pub fn new(cfg: SimConfig) -> Self {
        let hosts = cfg
            .hosts
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    Mutex::new(HostEntry {
                        state: HostState::new(h.clone()),
                        rec: Recorder::default(),
                        journal: HashMap::new(),
                        unreachable_until: None,
                        unreachable_refusals: 0,
                    }),
                )
            })
            .collect();
        Sim {
            inner: Arc::new(Inner {
                cfg,
                hosts,
                shells: Shells::default(),
                closing: watch::channel(false).0,
                auth_rejections: Default::default(),
                guest: RwLock::new(Some(crate::guest::default_guest())),
            }),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    /// Host names, sorted.
    pub fn host_names(&self) -> Vec<String> {
        self.inner.hosts.keys().cloned().collect()
    }

    /// Whether `host` (case-insensitive) is simulated.
    pub fn has_host(&self, host: &str) -> bool {
        self.inner.hosts.contains_key(&host.to_ascii_lowercase())
    }

    fn entry(&self, host: &str) -> Option<&Mutex<HostEntry>> {
        self.inner.hosts.get(&host.to_ascii_lowercase())
    }

    /// Installs the guest OS simulation every VM runs (see [`crate::guest`]).
    pub fn set_guest(&self, guest: Arc<dyn Guest>) {
        *self.inner.guest.write().unwrap_or_else(|e| e.into_inner()) = Some(guest);
    }

    /// The configuration the guest of VM `vm` (id or name) on `host` applied, secrets in plain
    /// text. In-process tests only: `GET /sim/hosts/<host>` shows secrets as `sha256:<hex>`.
    pub fn applied_config_unredacted(&self, host: &str, vm: &str) -> Option<serde_json::Value> {
        let id = self
            .entry(host)
            .and_then(|e| lock(e).state.vm(vm).map(|v| v.id.clone()))?;
        let guest = self
            .inner
            .guest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        guest.applied_unredacted(&id)
    }

    /// Makes the next `fault.times` executions of `fault.operation` on `host` fail.
    /// Returns false when the host is unknown.
    pub fn inject_fault(&self, host: &str, fault: Fault) -> bool {
        match self.entry(host) {
            Some(e) => {
                lock(e).state.faults.push(fault);
                true
            }
            None => false,
        }
    }

    /// Makes `host` unreachable over WinRM for `for_`: every request until then is refused
    /// with 503 Service Unavailable (what a load balancer or proxy in front of a host that
    /// went away answers; the worker treats it as a transient transport failure). Operations
    /// already running finish. Returns false when the host is unknown.
    pub fn make_unreachable(&self, host: &str, for_: std::time::Duration) -> bool {
        match self.entry(host) {
            Some(e) => {
                lock(e).unreachable_until = Some(std::time::Instant::now() + for_);
                true
            }
            None => false,
        }
    }

    /// True (and the refusal counted) while `host` is unreachable ([`Sim::make_unreachable`]).
    pub fn refuse_unreachable(&self, host: &str) -> bool {
        let Some(e) = self.entry(host) else {
            return false;
        };
        let mut e = lock(e);
        match e.unreachable_until {
            Some(until) if std::time::Instant::now() < until => {
                e.unreachable_refusals += 1;
                true
            }
            _ => false,
        }
    }

    /// WinRM requests refused while `host` was unreachable (`None`: unknown host).
    pub fn unreachable_refusals(&self, host: &str) -> Option<u64> {
        self.entry(host).map(|e| lock(e).unreachable_refusals)
    }

    /// Every host's figures.
    pub fn stats(&self) -> SimStats {
        SimStats {
            hosts: self
                .inner
                .hosts
                .iter()
                .map(|(name, e)| (name.clone(), lock(e).rec.stats()))
                .collect(),
        }
    }

    /// The operations `host` executed, in start order (the most recent
    /// [`crate::stats::MAX_RECORDS`]).
    pub fn records(&self, host: &str) -> Vec<OpRecord> {
        self.entry(host)
            .map(|e| lock(e).rec.records())
            .unwrap_or_default()
    }

    /// The JSON view of one host served at `/sim/hosts/<host>`: resources, VMs with disks,
    /// NICs, notes, state, KVP items and the configuration their guest applied.
    pub fn host_view(&self, host: &str) -> Option<serde_json::Value> {
        self.entry(host).map(|e| lock(e).state.full_view())
    }

    /// How many requests carried credentials that were rejected.
    pub fn auth_rejections(&self) -> u64 {
        self.inner
            .auth_rejections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn note_auth_rejection(&self) {
        self.inner
            .auth_rejections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A copy of one host's state (for assertions).
    pub fn host_state(&self, host: &str) -> Option<HostState> {
        self.entry(host).map(|e| lock(e).state.clone())
    }

    /// Runs `f` on one host's state under its lock (for tests and setup: e.g. mark a disk shared).
    pub fn with_host<R>(&self, host: &str, f: impl FnOnce(&mut HostState) -> R) -> Option<R> {
        self.entry(host).map(|e| f(&mut lock(e).state))
    }

    /// Worker config YAML for the hosts served under `base_url` (`http://127.0.0.1:5985`).
    pub fn worker_config_yaml(&self, base_url: &str) -> String {
        crate::config::worker_config_yaml(&self.inner.cfg, base_url, None)
    }

    /// Like [`Sim::worker_config_yaml`] for HTTPS: each host trusts the CA in `ca_file`.
    pub fn worker_config_yaml_tls(&self, base_url: &str, ca_file: &str) -> String {
        crate::config::worker_config_yaml(&self.inner.cfg, base_url, Some(ca_file))
    }

    /// Runs one agent request on `host` without WinRM and collects its output.
    /// `None` when the host is unknown.
    pub async fn run_agent(&self, host: &str, req: AgentRequest) -> Option<AgentRun> {
        let lines = Mutex::new(Vec::new());
        let exit_code = self
            .run_agent_streaming(host, req, &|l: String| lock(&lines).push(l))
            .await?;
        let stdout = lines.into_inner().unwrap_or_else(|e| e.into_inner());
        let result = AgentResult::from_output(&stdout.join("\n")).ok()?;
        Some(AgentRun {
            stdout,
            result,
            exit_code,
        })
    }

    /// Runs one agent request on `host`, handing each stdout line to `out` as it is produced.
    /// Returns the exit code, or `None` when the host is unknown.
    ///
    /// Idempotency journal: a request with an `idempotency_key` (read-only operations aside)
    /// whose key already succeeded gets the journaled result without running again; if the
    /// first run is still in flight it waits for it. Failures are not journaled, so a retry
    /// under the same key runs again.
    ///
    /// Not cancellation safe: dropping the future mid-run leaves the operation recorded as in
    /// flight. The WinRM server runs it in its own task to completion.
    pub async fn run_agent_streaming(
        &self,
        host: &str,
        req: AgentRequest,
        out: &(dyn Fn(String) + Sync),
    ) -> Option<i32> {
        let entry = self.entry(host)?;
        let key = req
            .idempotency_key
            .clone()
            .filter(|_| !is_read_only(req.operation));
        let mut done_tx = None;
        if let Some(key) = &key {
            let waiting = {
                let mut e = lock(entry);
                match e.journal.get(key) {
                    Some(Journaled::Done(o)) => {
                        let o = o.clone();
                        e.rec.replay();
                        drop(e);
                        return Some(emit_replay(key, &o, out));
                    }
                    Some(Journaled::Pending(rx)) => Some(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        e.journal.insert(key.clone(), Journaled::Pending(rx));
                        done_tx = Some(tx);
                        None
                    }
                }
            };
            if let Some(mut rx) = waiting {
                out(format!(
                    "Idempotency key '{key}' is being executed by another request; waiting"
                ));
                let output = rx
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|o| o.clone());
                return Some(match output {
                    Some(o) => {
                        lock(entry).rec.replay();
                        emit_replay(key, &o, out)
                    }
                    None => {
                        let r = AgentResult::error(
                            "journal_abandoned",
                            format!("the first execution of idempotency key '{key}' was abandoned"),
                            &req.correlation_id,
                        );
                        out(r.to_line());
                        1
                    }
                });
            }
        }
        let guest = self
            .inner
            .guest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (output, index) = {
            let mut e = lock(entry);
            let index = e.rec.begin(&req, Utc::now());
            let output = ops::execute(&mut e.state, &req, guest.as_deref(), Utc::now());
            (output, index)
        };
        for l in &output.logs {
            out(l.clone());
        }
        let mut latency = self.inner.cfg.latency_for(req.operation.as_str());
        if req.operation == AgentOperation::Noop {
            if let Some(ms) = req.spec.get("sleep_ms").and_then(serde_json::Value::as_u64) {
                latency += Duration::from_millis(ms).min(MAX_NOOP_SLEEP);
            }
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        out(output.result.to_line());
        {
            let mut e = lock(entry);
            e.rec.end(index, &req, &output.result, Utc::now());
            if let Some(key) = &key {
                // Only successes are journaled: a failed operation left nothing behind, so a
                // retry under the same key runs again.
                if output.result.is_ok() {
                    e.journal
                        .insert(key.clone(), Journaled::Done(output.clone()));
                } else {
                    e.journal.remove(key);
                }
            }
        }
        let code = output.exit_code();
        if let Some(tx) = done_tx {
            let _ = tx.send(Some(output));
        }
        Some(code)
    }
}

fn emit_replay(key: &str, o: &OpOutput, out: &(dyn Fn(String) + Sync)) -> i32 {
    out(format!(
        "Idempotency key '{key}' was already executed; returning the journaled result"
    ));
    out(o.result.to_line());
    o.exit_code()
}

#[cfg(test)]
mod unreachable_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_host_made_unreachable_refuses_until_the_time_is_up_and_counts_it() {
        let sim = Sim::new(SimConfig::with_hosts(2));
        assert!(!sim.make_unreachable("hv09", Duration::from_secs(1)));
        assert!(sim.make_unreachable("HV01", Duration::from_millis(150)));
        assert!(sim.refuse_unreachable("hv01"));
        assert!(sim.refuse_unreachable("hv01"));
        assert!(!sim.refuse_unreachable("hv02"), "only the host named");
        std::thread::sleep(Duration::from_millis(200));
        assert!(!sim.refuse_unreachable("hv01"), "reachable again");
        assert_eq!(sim.unreachable_refusals("hv01"), Some(2));
        assert_eq!(sim.unreachable_refusals("hv02"), Some(0));
        assert_eq!(sim.unreachable_refusals("hv09"), None);
    }
}
