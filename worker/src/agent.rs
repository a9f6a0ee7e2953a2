//! Calling the host agent: one [`AgentRequest`] over WinRM, log lines streamed to the caller,
//! exactly one [`AgentResult`] back.

use aetherv_core::contract::agent::RESULT_MARKER;
use aetherv_core::contract::command::{agent_arguments, POWERSHELL_EXE};
use aetherv_core::{AgentRequest, AgentResult, LogLine, LogStream};
use aetherv_winrm::{OutputLine, RunOptions, WinrmClient, WinrmError};
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
}

impl AgentError {
    /// A stable code for events.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Transport(WinrmError::Auth { .. }) => "host_auth_failed",
            AgentError::Transport(WinrmError::Timeout) => "agent_timeout",
            AgentError::Transport(WinrmError::Cancelled) => "cancelled",
            AgentError::Transport(_) => "host_unreachable",
            AgentError::Protocol(_) => "agent_protocol",
        }
    }

    /// True when retrying later may help (the host was unreachable), false for permanent
    /// failures (authentication, protocol).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AgentError::Transport(
                WinrmError::Connect(..)
                    | WinrmError::Transport(..)
                    | WinrmError::Http { .. }
                    | WinrmError::Timeout
            )
        )
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
}

impl HostAgent {
    /// An agent handle over an existing WinRM client.
    pub fn new(host: &str, client: WinrmClient, install_dir: &str, timeout: Duration) -> Self {
        HostAgent {
            host: host.to_string(),
            client,
            install_dir: install_dir.to_string(),
            timeout,
        }
    }

    /// Runs one operation. Log lines (everything but the result line) go to `log` as they
    /// arrive. An error result from the agent is `Ok` with `status: error`; `Err` means no result.
    ///
    /// Cancel safety: not cancel-safe; cancel through `cancel`, which signals the remote command
    /// to terminate.
    pub async fn call(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        log: &mut (dyn FnMut(LogLine) + Send),
    ) -> Result<AgentResult, AgentError> {
        let args = agent_arguments(req, &self.install_dir);
        let mut result_line: Option<String> = None;
        let mut extra_results = 0usize;
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
            OutputLine::Stderr(text) => log(LogLine {
                stream: LogStream::Stderr,
                text,
            }),
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
