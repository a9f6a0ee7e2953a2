//! Agent deployment: keeps the `Powershell/` bundle ([`aetherv_core::bundle::Bundle`])
//! installed and intact on every host.
//!
//! One [`Deployer`] per host. [`Deployer::ensure_current`] runs the check script (one WinRM
//! call: read `manifest.json`, `Get-FileHash` every file); when the host is not current it
//! stages a fresh copy next to the install directory (unchanged files copied on the host,
//! changed files and the manifest written in base64 chunks), verifies the staging directory by
//! hash, switches it into place with two renames and verifies again.
//!
//! The worker prepares every host at start and, while a host is not prepared, before each of
//! its jobs (`crate::prepare`), so no job runs against a stale agent; an agent call
//! that finds the agent missing or corrupt redeploys and retries (see
//! [`crate::agent::HostAgent::call`]). Deployments of one host are serialized.

use aetherv_core::bundle::script::{
    deploy_script, parse_check_reply, parse_reply, script_arguments, sibling_dirs, write_scripts,
    DeployAction, StepReply, DEPLOY_MARKER,
};
use aetherv_core::bundle::{AgentStatus, Assessment, Bundle, Installed, MANIFEST_FILE};
use aetherv_core::contract::command::POWERSHELL_EXE;
use aetherv_core::error_chain;
use aetherv_winrm::{OutputLine, RunOptions, Shell, WinrmClient, WinrmError};
use std::sync::Arc;
use std::time::Duration;

/// Deadline of one deployment script.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait between attempts to prepare an unreachable host.
pub const MAX_PREPARE_BACKOFF: Duration = Duration::from_secs(30);

/// Why a deployment step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The WinRM exchange failed (connection, auth, timeout).
    #[error("winrm call failed")]
    Transport(#[from] WinrmError),
    /// A deployment script failed or printed no reply.
    #[error("deployment script failed: {0}")]
    Script(String),
    /// Files did not verify by hash (`stage` is `staging` or `installed`).
    #[error("files failed verification in the {stage} directory: {}", files.join(", "))]
    Verify {
        /// Which directory.
        stage: String,
        /// The files.
        files: Vec<String>,
    },
}

impl DeployError {
    /// True when the host was unreachable (retrying later may help).
    pub fn is_transient(&self) -> bool {
        matches!(self, DeployError::Transport(e) if e.is_transient())
    }
}

/// What a deployment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployReport {
    /// The host's state before.
    pub before: AgentStatus,
    /// Files written (changed or missing), `manifest.json` included; empty when current.
    pub written: Vec<String>,
    /// Files copied unchanged from the previous installation.
    pub copied: Vec<String>,
    /// WinRM calls made.
    pub calls: usize,
}

/// One host's answer to [`Deployer::probe`] (for `aetherv hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProbe {
    /// Host name.
    pub host: String,
    /// The WinRM endpoint answered.
    pub reachable: bool,
    /// Authentication result (`None` when unreachable).
    pub auth_ok: Option<bool>,
    /// Installed bundle version, when a manifest is installed.
    pub installed_version: Option<String>,
    /// The agent's state (when the check ran).
    pub status: Option<AgentStatus>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Deploys the agent bundle to one host.
pub struct Deployer {
    host: String,
    client: WinrmClient,
    install_dir: String,
    bundle: Arc<Bundle>,
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Deployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployer")
            .field("host", &self.host)
            .field("install_dir", &self.install_dir)
            .field("bundle", &self.bundle.id())
            .finish_non_exhaustive()
    }
}

impl Deployer {
    /// A deployer for `host` over `client`, installing `bundle` into `install_dir`.
    pub fn new(host: &str, client: WinrmClient, install_dir: &str, bundle: Arc<Bundle>) -> Self {
        Deployer {
            host: host.to_string(),
            client,
            install_dir: install_dir.trim_end_matches('\\').to_string(),
            bundle,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The bundle it installs.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Runs one script, in `shell` when given (a deployment keeps one WinRS shell open for
    /// all its steps), else in a shell of its own. Returns its stdout.
    async fn run(&self, shell: Option<&mut Shell>, script: &str) -> Result<String, DeployError> {
        let opts = RunOptions {
            deadline: Some(SCRIPT_TIMEOUT),
            ..RunOptions::default()
        };
        let args = script_arguments(script);
        let mut stdout = String::new();
        let mut stderr = String::new();
        let status = {
            let mut collect = |line: OutputLine| match line {
                OutputLine::Stdout(l) => {
                    stdout.push_str(&l);
                    stdout.push('\n');
                }
                OutputLine::Stderr(l) => {
                    stderr.push_str(&l);
                    stderr.push('\n');
                }
            };
            match shell {
                Some(sh) => sh.run(POWERSHELL_EXE, &args, opts, &mut collect).await?,
                None => {
                    self.client
                        .run(POWERSHELL_EXE, &args, opts, &mut collect)
                        .await?
                }
            }
        };
        if status.code != 0 && !stdout.contains(DEPLOY_MARKER) {
            let first = stderr.lines().take(2).collect::<Vec<_>>().join(" ");
            return Err(DeployError::Script(format!(
                "exit code {}: {}",
                status.code,
                first.trim()
            )));
        }
        Ok(stdout)
    }

    async fn step(&self, shell: &mut Shell, script: &str) -> Result<StepReply, DeployError> {
        let stdout = self.run(Some(shell), script).await?;
        let reply: StepReply = parse_reply(&stdout).map_err(DeployError::Script)?;
        if let Some(e) = &reply.error {
            return Err(DeployError::Script(e.clone()));
        }
        if !reply.ok {
            return Err(DeployError::Verify {
                stage: reply.stage.unwrap_or_default(),
                files: reply.bad,
            });
        }
        Ok(reply)
    }

    /// Reads the host's installation: its manifest and the hash of every file (one call).
    pub async fn check(&self) -> Result<Installed, DeployError> {
        let script = deploy_script(
            &DeployAction::Check {
                install_dir: self.install_dir.clone(),
                names: self.bundle.installed_names(),
            },
            None,
        );
        let stdout = self.run(None, &script).await?;
        parse_check_reply(&stdout).map_err(DeployError::Script)
    }

    /// Makes the host current: checks, and deploys when the installation differs from the
    /// bundle (missing, stale or corrupt files). Concurrent calls for one host are serialized;
    /// the second finds the host current.
    pub async fn ensure_current(&self) -> Result<DeployReport, DeployError> {
        let _guard = self.lock.lock().await;
        let installed = self.check().await?;
        let assessment = self.bundle.assess(&installed);
        let mut report = DeployReport {
            before: assessment.status.clone(),
            written: Vec::new(),
            copied: Vec::new(),
            calls: 1,
        };
        if assessment.status == AgentStatus::Current {
            return Ok(report);
        }
        tracing::info!(host = %self.host, status = %assessment.status, bundle = %self.bundle.id(),
            changed = assessment.changed.len(), "preparing host: deploying the agent");
        let mut shell = self.client.open_shell().await?;
        let res = self.install(&mut shell, &assessment, &mut report).await;
        if !shell.is_closed() {
            if let Err(e) = shell.close().await {
                tracing::debug!(host = %self.host, error = %e, "closing the deployment shell failed");
            }
        }
        res?;
        report.copied = assessment.unchanged;
        tracing::info!(host = %self.host, bundle = %self.bundle.id(), written = report.written.len(),
            calls = report.calls, "agent deployed and verified");
        Ok(report)
    }

    /// Stage, write, commit: the steps of one deployment, in one shell.
    async fn install(
        &self,
        shell: &mut Shell,
        assessment: &Assessment,
        report: &mut DeployReport,
    ) -> Result<(), DeployError> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let (staging, backup) = sibling_dirs(&self.install_dir, &nonce[..8]);
        let stage = DeployAction::Stage {
            install_dir: self.install_dir.clone(),
            staging: staging.clone(),
            copy: assessment.unchanged.clone(),
        };
        self.step(shell, &deploy_script(&stage, None)).await?;
        report.calls += 1;
        let mut writes: Vec<(&str, &[u8])> = Vec::new();
        for name in &assessment.changed {
            if let Some(f) = self.bundle.file(name) {
                writes.push((&f.name, &f.content));
            }
        }
        writes.push((MANIFEST_FILE, self.bundle.manifest_json().as_bytes()));
        for (name, content) in writes {
            for script in write_scripts(&staging, name, content) {
                self.step(shell, &script).await?;
                report.calls += 1;
            }
            report.written.push(name.to_string());
        }
        let commit = DeployAction::Commit {
            install_dir: self.install_dir.clone(),
            staging,
            backup,
            manifest_sha256: self.bundle.manifest_sha256().to_string(),
        };
        self.step(shell, &deploy_script(&commit, None)).await?;
        report.calls += 1;
        Ok(())
    }

    /// Reachability, authentication and agent state, without changing anything.
    pub async fn probe(&self) -> HostProbe {
        let mut p = HostProbe {
            host: self.host.clone(),
            reachable: false,
            auth_ok: None,
            installed_version: None,
            status: None,
            error: None,
        };
        match self.check().await {
            Ok(installed) => {
                p.reachable = true;
                p.auth_ok = Some(true);
                p.installed_version = installed.manifest.as_ref().map(|m| m.version.clone());
                p.status = Some(self.bundle.assess(&installed).status);
            }
            Err(DeployError::Transport(WinrmError::Auth { status })) => {
                p.reachable = true;
                p.auth_ok = Some(false);
                p.error = Some(format!("authentication rejected (http {status})"));
            }
            Err(DeployError::Transport(e)) if e.is_auth_rejected() => {
                p.reachable = true;
                p.auth_ok = Some(false);
                p.error = Some(e.to_string());
            }
            Err(e @ DeployError::Transport(WinrmError::Tls(_) | WinrmError::Config(_))) => {
                // The endpoint may answer, but no authenticated exchange happened.
                p.reachable = matches!(e, DeployError::Transport(WinrmError::Tls(_)));
                p.error = Some(error_chain(&e));
            }
            Err(e) if e.is_transient() => {
                p.error = Some(error_chain(&e));
            }
            Err(e) => {
                // A SOAP fault or a failing script: the host answered an authenticated request.
                p.reachable = true;
                p.auth_ok = Some(true);
                p.error = Some(error_chain(&e));
            }
        }
        p
    }
}

impl Deployer {
    /// The same host and credentials with another bundle (tests, staged rollouts).
    pub fn with_bundle(&self, bundle: Arc<Bundle>) -> Deployer {
        Deployer::new(&self.host, self.client.clone(), &self.install_dir, bundle)
    }
}
