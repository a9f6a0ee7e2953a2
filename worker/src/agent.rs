//! Calling the host agent: one [`AgentRequest`] over WinRM, log lines streamed to the caller,
//! exactly one [`AgentResult`] back.

use crate::deploy::Deployer;
use aetherv_core::contract::agent::RESULT_MARKER;
use aetherv_core::contract::command::{agent_arguments, ENTRY_SCRIPT, POWERSHELL_EXE};
use aetherv_core::{AgentRequest, AgentResult, LogLine, LogStream};
use aetherv_winrm::{OutputLine, RunOptions, Shell, WinrmClient, WinrmError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest a kept shell stays idle before it is not reused (it is deleted instead and a fresh
/// one opened): well inside WinRM's own idle timeout for shells (`IdleTimeout`, 2 hours by
/// default), so a kept shell is rarely found reclaimed.
pub const WARM_SHELL_IDLE: Duration = Duration::from_secs(300);
/// Bound on deleting the kept shell when the slot stops.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The shell a host's job agent keeps open between operations, with when it was last used.
type WarmShell = Arc<Mutex<Option<(Shell, Instant)>>>;

/// Why an agent call produced no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The WinRM exchange failed (connection, auth, fault, timeout, cancel).
    #[error("winrm call failed")]
    Transport(#[from] WinrmError),
    /// The agent ran but its output broke the protocol.
    #[error("agent protocol violation: {0}")]
    Protocol(String),
    /// PowerShell could not find the agent's entry script (not deployed, or removed).
    #[error("the agent is not installed on the host: {0}")]
    AgentMissing(String),
}

impl AgentError {
    /// A stable code for events.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Transport(e) if e.is_auth_rejected() => "host_auth_failed",
            AgentError::Transport(WinrmError::Timeout) => "agent_timeout",
            AgentError::Transport(WinrmError::Cancelled) => "cancelled",
            AgentError::Transport(_) => "host_unreachable",
            AgentError::Protocol(_) => "agent_protocol",
            AgentError::AgentMissing(_) => "agent_missing",
        }
    }

    /// True when retrying later may help (the host was unreachable), false for permanent
    /// failures (authentication, protocol).
    pub fn is_transient(&self) -> bool {
        matches!(self, AgentError::Transport(e) if e.is_transient())
    }
}

/// The agent on one host.
#[derive(Clone)]
pub struct HostAgent {
    /// Host name.
    pub host: String,
    client: WinrmClient,
    install_dir: String,
    timeout: Duration,
    deployer: Option<Arc<Deployer>>,
    /// `Some` when this agent keeps its shell open across operations ([`HostAgent::keep_shell`]).
    warm: Option<WarmShell>,
}

impl HostAgent {
    /// An agent handle over an existing WinRM client.
    pub fn new(host: &str, client: WinrmClient, install_dir: &str, timeout: Duration) -> Self {
        HostAgent {
            host: host.to_string(),
            client,
            install_dir: install_dir.to_string(),
            timeout,
            deployer: None,
            warm: None,
        }
    }

    /// Keeps one WinRS shell open across operations (builder style): an operation then costs a
    /// Command, its Receives and a Signal instead of a new connection, authentication, a shell
    /// created and deleted. Clones share the kept shell; one used at the same moment by another
    /// clone makes this call open its own. A kept shell that turns out to be gone (the host
    /// restarted, or reclaimed it) is replaced before the command runs, so nothing runs twice.
    pub fn keep_shell(mut self) -> Self {
        self.warm = Some(Arc::default());
        self
    }

    /// Deletes the kept shell, if any (bounded); the agent opens a new one when used again.
    pub async fn release(&self) {
        let Some(shell) = self.warm.as_ref().and_then(|w| lock(w).take()) else {
            return;
        };
        if tokio::time::timeout(RELEASE_TIMEOUT, shell.0.close())
            .await
            .is_err()
        {
            tracing::debug!(host = %self.host, "deleting the kept winrm shell timed out");
        }
    }

    /// The kept shell when there is a fresh one, else a new shell (within the deadline).
    async fn shell(
        &self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<(Shell, bool), WinrmError> {
        if let Some((shell, used)) = self.warm.as_ref().and_then(|w| lock(w).take()) {
            if used.elapsed() < WARM_SHELL_IDLE && !shell.is_closed() {
                return Ok((shell, true));
            }
            // Dropping it deletes it in the background.
        }
        let shell = self
            .client
            .open_shell_until(Some(deadline), Some(cancel))
            .await?;
        Ok((shell, false))
    }

    /// Keeps `shell` for the next operation when none is kept yet; else it is dropped (deleted
    /// in the background: a clone used the agent at the same moment, which is rare).
    fn put_back(&self, shell: Shell) {
        if shell.is_closed() {
            return;
        }
        if let Some(w) = &self.warm {
            let mut kept = lock(w);
            if kept.is_none() {
                *kept = Some((shell, Instant::now()));
            }
        }
    }

    /// Attaches the host's deployer: a call that finds the agent missing or corrupt then
    /// redeploys it and retries once.
    pub fn with_deployer(mut self, deployer: Arc<Deployer>) -> Self {
        self.deployer = Some(deployer);
        self
    }

    /// Replaces the host's deployer.
    pub fn set_deployer(&mut self, deployer: Arc<Deployer>) {
        self.deployer = Some(deployer);
    }

    /// The host's deployer, if attached.
    pub fn deployer(&self) -> Option<&Arc<Deployer>> {
        self.deployer.as_ref()
    }

    /// Runs one operation. Log lines (everything but the result line) go to `log` as they
    /// arrive. An error result from the agent is `Ok` with `status: error`; `Err` means no result.
    ///
    /// When the agent turns out to be missing (PowerShell does not recognise its entry script)
    /// or corrupt (result code `agent_corrupt`) and a deployer is attached, the host is
    /// prepared again (a log line says so) and the call retried once; neither case ran the
    /// operation, so the retry is safe.
    ///
    /// Cancel safety: not cancel-safe; cancel through `cancel`, which signals the remote command
    /// to terminate.
    pub async fn call(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        log: &mut (dyn FnMut(LogLine) + Send),
    ) -> Result<AgentResult, AgentError> {
        let first = self.call_once(req, cancel, log).await;
        let broken = match &first {
            Err(AgentError::AgentMissing(_)) => true,
            Ok(r) => r.code.as_deref() == Some("agent_corrupt"),
            Err(_) => false,
        };
        let Some(deployer) = self.deployer.as_ref().filter(|_| broken) else {
            return first;
        };
        log(LogLine {
            stream: LogStream::Worker,
            text: format!(
                "host {} is being prepared: the agent is missing or corrupt; deploying agent {}",
                self.host,
                deployer.bundle().id()
            ),
        });
        match deployer.ensure_current().await {
            Ok(_) => self.call_once(req, cancel, log).await,
            Err(e) => {
                log(LogLine {
                    stream: LogStream::Worker,
                    text: format!("preparing host {} failed: {e}", self.host),
                });
                first
            }
        }
    }

    async fn call_once(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        log: &mut (dyn FnMut(LogLine) + Send),
    ) -> Result<AgentResult, AgentError> {
        let args = agent_arguments(req, &self.install_dir);
        let mut result_line: Option<String> = None;
        let mut extra_results = 0usize;
        let mut missing: Option<String> = None;
        let mut on_output = |line: OutputLine| match line {
            OutputLine::Stdout(text) => {
                if text.starts_with(RESULT_MARKER) {
                    if result_line.is_some() {
                        extra_results += 1;
                    } else {
                        result_line = Some(text);
                    }
                } else {
                    log(LogLine {
                        stream: LogStream::Stdout,
                        text,
                    });
                }
            }
            OutputLine::Stderr(text) => {
                let lower = text.to_ascii_lowercase();
                if lower.contains("is not recognized")
                    && lower.contains(&ENTRY_SCRIPT.to_ascii_lowercase())
                {
                    missing = Some(text.clone());
                }
                log(LogLine {
                    stream: LogStream::Stderr,
                    text,
                })
            }
        };
        let deadline = Instant::now() + self.timeout;
        let opts = || RunOptions {
            stdin: None,
            deadline: Some(deadline.saturating_duration_since(Instant::now())),
            cancel: Some(cancel.clone()),
        };
        let (mut shell, reused) = self.shell(deadline, cancel).await?;
        let mut status = shell
            .run(POWERSHELL_EXE, &args, opts(), &mut on_output)
            .await;
        let stale = matches!(&status, Err(e) if !matches!(e, WinrmError::Timeout | WinrmError::Cancelled))
            && reused
            && !shell.command_started();
        if stale {
            // The kept shell is gone on the host and the command never started: a fresh shell.
            tracing::debug!(host = %self.host, "the kept winrm shell is gone; opening a new one");
            let _ = shell.close().await;
            shell = self.shell(deadline, cancel).await?.0;
            status = shell
                .run(POWERSHELL_EXE, &args, opts(), &mut on_output)
                .await;
        }
        match (&status, &self.warm) {
            (Ok(_), Some(_)) => self.put_back(shell),
            _ if shell.is_closed() => {}
            // Deleted here, on its own connection, as a WinRS client does after each command.
            _ => {
                if let Err(e) = shell.close().await {
                    tracing::debug!(host = %self.host, error = %e, "closing the winrm shell failed");
                }
            }
        }
        let status = status?;
        if extra_results > 0 {
            return Err(AgentError::Protocol("more than one result line".into()));
        }
        let Some(line) = result_line else {
            if let Some(text) = missing {
                return Err(AgentError::AgentMissing(text));
            }
            return Err(AgentError::Protocol(format!(
                "agent exited with code {} without a result line",
                status.code
            )));
        };
        let result =
            AgentResult::from_output(&line).map_err(|e| AgentError::Protocol(e.to_string()))?;
        if result.is_ok() && status.code != 0 {
            return Err(AgentError::Protocol(format!(
                "agent reported success but exited with code {}",
                status.code
            )));
        }
        Ok(result)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
