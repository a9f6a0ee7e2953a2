//! Calling the host agent: one [`AgentRequest`] over WinRM, log lines streamed to the caller,
//! exactly one [`AgentResult`] back.

use crate::deploy::Deployer;
use aetherv_core::contract::agent::RESULT_MARKER;
use aetherv_core::contract::command::{agent_arguments, ENTRY_SCRIPT, POWERSHELL_EXE};
use aetherv_core::{AgentRequest, AgentResult, LogLine, LogStream};
use aetherv_winrm::{OutputLine, RunOptions, WinrmClient, WinrmError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
        let opts = RunOptions {
            stdin: None,
            deadline: Some(self.timeout),
            cancel: Some(cancel.clone()),
        };
        let status = self
            .client
            .run(POWERSHELL_EXE, &args, opts, &mut on_output)
            .await?;
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
