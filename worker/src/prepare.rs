//! Host preparation for jobs: the agent must be current on a host before its jobs run.
//!
//! The slot ([`crate::slot`]) prepares its host once at start ([`at_start`]) and, while the
//! host is not prepared, before each job ([`for_job`]), reporting progress in the job's thread.
//! The deployment itself is [`crate::deploy`]'s; this module only decides what a failure means
//! for the waiting job. Dependencies go one way: slot → prepare → deploy.

use crate::agent::HostAgent;
use crate::deploy::{DeployError, Deployer, MAX_PREPARE_BACKOFF};
use crate::reporter::JobReporter;
use aetherv_core::error_chain;
use aetherv_winrm::WinrmError;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Prepares `agent`'s host once, when the worker starts. True when the host is ready (or has
/// no deployer); false when its jobs must prepare it first.
pub(crate) async fn at_start(agent: &HostAgent) -> bool {
    let Some(d) = agent.deployer() else {
        return true;
    };
    tracing::info!(host = %d.host(), "preparing host");
    match d.ensure_current().await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(host = %d.host(), error = %error_chain(&e),
                "cannot prepare host yet; its jobs wait for it");
            false
        }
    }
}

/// What preparing a host for a waiting job came to.
pub(crate) enum Preparation {
    /// The agent is current.
    Ready,
    /// A permanent failure (credentials, a failing script): fail the job with this.
    Failed {
        /// Stable code.
        code: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The worker is stopping.
    Stopped,
}

/// Prepares `deployer`'s host for the job `reporter` reports on: transient failures are
/// retried with backoff (each one a `job.log` line in the job's thread), permanent ones end it.
pub(crate) async fn for_job(
    deployer: &Deployer,
    reporter: &mut JobReporter,
    quiet: &CancellationToken,
) -> Result<Preparation, aetherv_broker::PublishError> {
    let host = deployer.host().to_string();
    reporter
        .log(format!(
            "host {host} is being prepared: installing or checking agent {}",
            deployer.bundle().version()
        ))
        .await?;
    let mut backoff = Duration::from_millis(500);
    loop {
        let res = tokio::select! {
            biased;
            _ = quiet.cancelled() => return Ok(Preparation::Stopped),
            r = deployer.ensure_current() => r,
        };
        match res {
            Ok(_) => {
                reporter.log(format!("host {host} is ready")).await?;
                return Ok(Preparation::Ready);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(host, error = %error_chain(&e), "cannot prepare host; retrying in {backoff:?}");
                reporter
                    .log(format!(
                        "host {host} is unreachable while being prepared ({}); retrying in {backoff:?}",
                        error_chain(&e)
                    ))
                    .await?;
                tokio::select! {
                    _ = quiet.cancelled() => return Ok(Preparation::Stopped),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_PREPARE_BACKOFF);
            }
            Err(DeployError::Transport(WinrmError::Auth { status })) => {
                return Ok(Preparation::Failed {
                    code: "host_auth_failed",
                    message: format!(
                        "host {host} rejected the worker's credentials (HTTP {status}); fix the \
                         host's auth settings in the worker configuration"
                    ),
                });
            }
            Err(DeployError::Transport(e)) if e.is_auth_rejected() => {
                // The KDC refused a Kerberos password or keytab.
                return Ok(Preparation::Failed {
                    code: "host_auth_failed",
                    message: format!(
                        "the worker's credentials for host {host} were rejected ({e}); fix the \
                         host's auth settings in the worker configuration"
                    ),
                });
            }
            Err(e) => {
                return Ok(Preparation::Failed {
                    code: "host_prepare_failed",
                    message: format!(
                        "the agent cannot be installed on {host}: {}",
                        error_chain(&e)
                    ),
                });
            }
        }
    }
}
