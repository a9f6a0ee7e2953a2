//! The WinRS client: shells, commands, the Receive loop, deadlines and cancellation.
//!
//! [`WinrmClient`] is cheap to clone and holds no connection itself. Each
//! [`Shell`] owns one pinned connection (see `transport`), so concurrent shells
//! of one client never share a socket, and a shell's requests always travel
//! over the same authenticated connection.
//!
//! Cancellation safety:
//! - [`Shell::run`] / [`WinrmClient::run`] with a `deadline` or `cancel`
//!   token is the supported way to stop a command: the command is signalled
//!   `terminate`, the shell deleted (best effort, each step bounded by
//!   [`CLEANUP_TIMEOUT`]) and `Timeout`/`Cancelled` returned.
//! - Dropping a `run` future instead is memory-safe but abrupt: the
//!   in-flight HTTP exchange is abandoned (its connection is replaced before
//!   the next request) and the remote command keeps running until its shell
//!   is deleted. Dropping a [`Shell`] that was not closed spawns a best-effort
//!   Delete on the current tokio runtime.
//! - A `deadline`/`cancel` that fires while [`WinrmClient::run`] is still
//!   opening its shell cannot delete it (no shell id yet); WinRM's idle
//!   shell timeout reclaims it.

use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{
    ClientConfig, CommandOutput, ExitStatus, OutputLine, RunOptions, CODEPAGE_UTF8,
};
use crate::decode::{StderrDecoder, StdoutDecoder};
use crate::envelope::{self, EnvelopeParams, SignalCode};
use crate::error::WinrmError;
use crate::response;
use crate::transport::{Connector, Transport};

/// Added to `operation_timeout` to bound one HTTP exchange (the server may
/// take the full operation timeout before it answers a Receive).
pub const REQUEST_TIMEOUT_SLACK: Duration = Duration::from_secs(10);
/// Bound on each clean-up step (Signal, Delete) after a timeout or cancellation.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

struct Inner {
    connector: Arc<Connector>,
    params: EnvelopeParams,
    codepage: u32,
    max_envelope_size: u32,
}

/// A WinRM client for one endpoint. Clones share configuration and TLS setup.
#[derive(Clone)]
pub struct WinrmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WinrmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinrmClient")
            .field("endpoint", &self.inner.connector.endpoint.url)
            .finish_non_exhaustive()
    }
}

impl WinrmClient {
    /// Validates the configuration and prepares TLS. Does not connect.
    pub fn new(cfg: ClientConfig) -> Result<Self, WinrmError> {
        if cfg.operation_timeout.is_zero() {
            return Err(WinrmError::Config(
                "operation timeout must be positive".into(),
            ));
        }
        if cfg.max_envelope_size < 8192 {
            return Err(WinrmError::Config(
                "max envelope size must be at least 8192".into(),
            ));
        }
        if cfg.codepage != CODEPAGE_UTF8 {
            tracing::warn!(
                codepage = cfg.codepage,
                "winrm codepage is not 65001; output is still decoded as utf-8"
            );
        }
        let connector = Connector::new(&cfg, cfg.operation_timeout + REQUEST_TIMEOUT_SLACK)?;
        let params = EnvelopeParams {
            to: cfg.endpoint,
            max_envelope_size: cfg.max_envelope_size,
            operation_timeout: cfg.operation_timeout,
            locale: "en-US".to_owned(),
        };
        Ok(WinrmClient {
            inner: Arc::new(Inner {
                connector: Arc::new(connector),
                params,
                codepage: cfg.codepage,
                max_envelope_size: cfg.max_envelope_size,
            }),
        })
    }

    /// The configured endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.inner.connector.endpoint.url
    }

    /// Opens a `cmd` shell on its own connection.
    pub async fn open_shell(&self) -> Result<Shell, WinrmError> {
        let mut transport = Transport::new(Arc::clone(&self.inner.connector));
        let request =
            envelope::create_shell(&self.inner.params, self.inner.codepage, Uuid::new_v4());
        let body = soap(&mut transport, request).await?;
        let shell_id = response::parse_shell_id(&body)?;
        tracing::debug!(shell_id = %shell_id, "winrm shell opened");
        Ok(Shell {
            inner: Arc::clone(&self.inner),
            transport,
            shell_id,
            closed: false,
            started: false,
        })
    }

    /// [`WinrmClient::open_shell`] bounded by `deadline` (`Timeout`) and `cancel`
    /// (`Cancelled`). A shell opened by a call that lost the race is not deleted (no shell id
    /// yet); WinRM's idle shell timeout reclaims it.
    pub async fn open_shell_until(
        &self,
        deadline: Option<Instant>,
        cancel: Option<&CancellationToken>,
    ) -> Result<Shell, WinrmError> {
        tokio::select! {
            biased;
            () = cancelled(cancel) => Err(WinrmError::Cancelled),
            () = expired(deadline) => Err(WinrmError::Timeout),
            shell = self.open_shell() => shell,
        }
    }

    /// Opens a shell, runs one command streaming its lines to `on_output`,
    /// and closes the shell. The deadline also bounds opening the shell.
    pub async fn run(
        &self,
        command: &str,
        args: &[String],
        opts: RunOptions,
        on_output: &mut (dyn FnMut(OutputLine) + Send),
    ) -> Result<ExitStatus, WinrmError> {
        let deadline = opts.deadline.map(|d| Instant::now() + d);
        let cancel = opts.cancel.as_ref();
        let mut shell = self.open_shell_until(deadline, cancel).await?;
        let result = shell
            .run_until(
                command,
                args,
                opts.stdin.as_deref(),
                deadline,
                cancel,
                on_output,
            )
            .await;
        if !shell.closed {
            if let Err(err) = shell.close().await {
                tracing::warn!(error = %err, "closing the winrm shell failed");
            }
        }
        result
    }

    /// Like [`WinrmClient::run`], collecting the decoded lines. Each line of
    /// `stdout`/`stderr` ends with `\n`; blank lines are dropped.
    pub async fn run_collect(
        &self,
        command: &str,
        args: &[String],
        opts: RunOptions,
    ) -> Result<CommandOutput, WinrmError> {
        let mut out = CommandOutput::default();
        let status = {
            let mut collect = |line: OutputLine| match line {
                OutputLine::Stdout(l) => {
                    out.stdout.push_str(&l);
                    out.stdout.push('\n');
                }
                OutputLine::Stderr(l) => {
                    out.stderr.push_str(&l);
                    out.stderr.push('\n');
                }
            };
            self.run(command, args, opts, &mut collect).await?
        };
        out.exit_code = status.code;
        Ok(out)
    }
}

/// An open WinRS shell; runs any number of commands one after another.
pub struct Shell {
    inner: Arc<Inner>,
    transport: Transport,
    shell_id: String,
    /// Deleted (or a Delete was attempted); no more commands.
    closed: bool,
    /// The last `run` got as far as the server accepting its command.
    started: bool,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("shell_id", &self.shell_id)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Shell {
    /// The server-assigned shell id.
    pub fn shell_id(&self) -> &str {
        &self.shell_id
    }

    /// True once the shell was deleted (after a timeout or cancellation).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True when the server accepted the last `run`'s command (it got a command id). A `run`
    /// that failed before that ran nothing on the host, so running it again is safe, for
    /// instance in a fresh shell when this one turned out to be gone (the host's idle timeout
    /// reclaimed it).
    pub fn command_started(&self) -> bool {
        self.started
    }

    /// Runs one command, streaming complete decoded lines to `on_output` in
    /// arrival order, and returns its exit status. On deadline or
    /// cancellation the command is terminated and this shell deleted.
    pub async fn run(
        &mut self,
        command: &str,
        args: &[String],
        opts: RunOptions,
        on_output: &mut (dyn FnMut(OutputLine) + Send),
    ) -> Result<ExitStatus, WinrmError> {
        let deadline = opts.deadline.map(|d| Instant::now() + d);
        self.run_until(
            command,
            args,
            opts.stdin.as_deref(),
            deadline,
            opts.cancel.as_ref(),
            on_output,
        )
        .await
    }

    /// Sends a signal (terminate, Ctrl+C) to a command of this shell.
    pub async fn signal(&mut self, command_id: &str, code: SignalCode) -> Result<(), WinrmError> {
        let request = envelope::signal(
            &self.inner.params,
            &self.shell_id,
            command_id,
            code,
            Uuid::new_v4(),
        );
        let body = soap(&mut self.transport, request).await?;
        response::expect_envelope(&body)
    }

    /// Deletes the shell (terminating anything still running in it).
    pub async fn close(mut self) -> Result<(), WinrmError> {
        let result = self.delete().await;
        // Even a failed Delete is not retried from Drop.
        self.closed = true;
        result
    }

    async fn delete(&mut self) -> Result<(), WinrmError> {
        let request = envelope::delete_shell(&self.inner.params, &self.shell_id, Uuid::new_v4());
        let body = soap(&mut self.transport, request).await?;
        tracing::debug!(shell_id = %self.shell_id, "winrm shell deleted");
        response::expect_envelope(&body)
    }

    async fn run_until(
        &mut self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
        deadline: Option<Instant>,
        cancel: Option<&CancellationToken>,
        on_output: &mut (dyn FnMut(OutputLine) + Send),
    ) -> Result<ExitStatus, WinrmError> {
        self.started = false;
        if self.closed {
            return Err(WinrmError::ShellClosed);
        }
        let mut command_id: Option<String> = None;
        let outcome = {
            let work = self.execute(command, args, stdin, &mut command_id, on_output);
            tokio::select! {
                biased;
                () = cancelled(cancel) => Err(WinrmError::Cancelled),
                () = expired(deadline) => Err(WinrmError::Timeout),
                result = work => result,
            }
        };
        self.started = command_id.is_some();
        match outcome {
            Ok(status) => {
                // Release the finished command's resources, as WinRS clients do.
                if let Some(id) = &command_id {
                    self.best_effort_terminate(id).await;
                }
                Ok(status)
            }
            Err(err @ (WinrmError::Timeout | WinrmError::Cancelled)) => {
                tracing::info!(shell_id = %self.shell_id, error = %err, "terminating winrm command");
                if let Some(id) = &command_id {
                    self.best_effort_terminate(id).await;
                }
                match timeout(CLEANUP_TIMEOUT, self.delete()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "deleting the winrm shell failed"),
                    Err(_) => tracing::warn!("deleting the winrm shell timed out"),
                }
                self.closed = true;
                Err(err)
            }
            Err(err) => {
                if let Some(id) = &command_id {
                    self.best_effort_terminate(id).await;
                }
                Err(err)
            }
        }
    }

    async fn best_effort_terminate(&mut self, command_id: &str) {
        match timeout(
            CLEANUP_TIMEOUT,
            self.signal(command_id, SignalCode::Terminate),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "terminate signal failed"),
            Err(_) => tracing::debug!("terminate signal timed out"),
        }
    }

    /// Command, optional Send, then Receive until the command is done.
    async fn execute(
        &mut self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
        command_id: &mut Option<String>,
        on_output: &mut (dyn FnMut(OutputLine) + Send),
    ) -> Result<ExitStatus, WinrmError> {
        let inner = Arc::clone(&self.inner);
        let p = &inner.params;
        let request = envelope::command(p, &self.shell_id, command, args, Uuid::new_v4());
        let body = soap(&mut self.transport, request).await?;
        let id = response::parse_command_id(&body)?;
        // Only the program name: arguments may carry job data.
        tracing::debug!(shell_id = %self.shell_id, command_id = %id, command, "winrm command started");
        *command_id = Some(id.clone());

        if let Some(data) = stdin {
            let chunk = envelope::max_stdin_chunk(inner.max_envelope_size);
            let pieces: Vec<&[u8]> = if data.is_empty() {
                vec![data]
            } else {
                data.chunks(chunk).collect()
            };
            let last = pieces.len() - 1;
            for (i, piece) in pieces.into_iter().enumerate() {
                let request =
                    envelope::send_stdin(p, &self.shell_id, &id, piece, i == last, Uuid::new_v4());
                let body = soap(&mut self.transport, request).await?;
                response::expect_envelope(&body)?;
            }
        }

        let mut stdout = StdoutDecoder::default();
        let mut stderr = StderrDecoder::default();
        loop {
            let request = envelope::receive(p, &self.shell_id, &id, Uuid::new_v4());
            let reply = self.transport.exchange(request).await?;
            let parsed = if reply.status == 200 {
                response::parse_receive(&reply.body)
            } else {
                Err(response::error_from_reply(reply.status, &reply.body))
            };
            let output = match parsed {
                Ok(output) => output,
                Err(err) => match response::parse_fault(&reply.body) {
                    // The long-poll expired without output: poll again.
                    Some(fault) if fault.is_operation_timeout() => continue,
                    _ => return Err(err),
                },
            };
            for chunk in output.streams {
                if chunk.command_id.as_deref().is_some_and(|c| c != id) {
                    continue;
                }
                match chunk.name.as_str() {
                    "stdout" => stdout
                        .push(&chunk.data)
                        .into_iter()
                        .for_each(|l| on_output(OutputLine::Stdout(l))),
                    "stderr" => stderr
                        .push(&chunk.data)
                        .into_iter()
                        .for_each(|l| on_output(OutputLine::Stderr(l))),
                    _ => {}
                }
            }
            if let Some(state) = output.state.filter(|s| s.done) {
                stdout
                    .finish()
                    .into_iter()
                    .for_each(|l| on_output(OutputLine::Stdout(l)));
                stderr
                    .finish()
                    .into_iter()
                    .for_each(|l| on_output(OutputLine::Stderr(l)));
                let code = state.exit_code.ok_or_else(|| {
                    WinrmError::Protocol("finished command without exit code".into())
                })?;
                tracing::debug!(command_id = %id, exit_code = code, "winrm command finished");
                return Ok(ExitStatus { code });
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(shell_id = %self.shell_id, "winrm shell dropped outside a runtime; not deleted");
            return;
        };
        let mut transport = std::mem::replace(
            &mut self.transport,
            Transport::new(Arc::clone(&self.inner.connector)),
        );
        let request = envelope::delete_shell(&self.inner.params, &self.shell_id, Uuid::new_v4());
        let shell_id = std::mem::take(&mut self.shell_id);
        handle.spawn(async move {
            match timeout(CLEANUP_TIMEOUT, soap(&mut transport, request)).await {
                Ok(Ok(_)) => tracing::debug!(shell_id = %shell_id, "dropped winrm shell deleted"),
                Ok(Err(e)) => tracing::warn!(shell_id = %shell_id, error = %e, "deleting a dropped winrm shell failed"),
                Err(_) => tracing::warn!(shell_id = %shell_id, "deleting a dropped winrm shell timed out"),
            }
        });
    }
}

/// One request whose success is HTTP 200; anything else becomes a fault or HTTP error.
async fn soap(transport: &mut Transport, request: String) -> Result<String, WinrmError> {
    let started = Instant::now();
    let result = match transport.exchange(request).await {
        Ok(reply) if reply.status == 200 => Ok(reply.body),
        Ok(reply) => Err(response::error_from_reply(reply.status, &reply.body)),
        Err(e) => Err(e),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    aetherv_metrics::metrics().winrm_call(outcome, started.elapsed().as_secs_f64());
    result
}

/// Completes when `token` is cancelled; never without a token. Cancel-safe.
async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => pending().await,
    }
}

/// Completes at `deadline`; never without one. Cancel-safe.
async fn expired(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn run_futures_are_send() {
        let client = WinrmClient::new(ClientConfig::new(
            "http://127.0.0.1:1/wsman",
            crate::Auth::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        ))
        .unwrap();
        let mut sink = |_line: OutputLine| {};
        let fut = client.run("x", &[], RunOptions::default(), &mut sink);
        assert_send(&fut);
        drop(fut);
        let fut = client.run_collect("x", &[], RunOptions::default());
        assert_send(&fut);
    }

    #[test]
    fn new_rejects_bad_configuration() {
        let auth = crate::Auth::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let mut cfg = ClientConfig::new("gopher://x/", auth);
        assert!(matches!(
            WinrmClient::new(cfg.clone()),
            Err(WinrmError::Config(_))
        ));
        cfg.endpoint = "https://hv01:5986/wsman".into();
        cfg.operation_timeout = Duration::ZERO;
        assert!(matches!(
            WinrmClient::new(cfg.clone()),
            Err(WinrmError::Config(_))
        ));
        cfg.operation_timeout = Duration::from_secs(20);
        let client = WinrmClient::new(cfg).unwrap();
        assert_eq!(client.endpoint(), "https://hv01:5986/wsman");
        assert!(!format!("{client:?}").contains('p'.to_string().repeat(2).as_str()));
    }
}
