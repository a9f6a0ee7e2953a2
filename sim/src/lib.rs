//! aetherv-sim: simulated Hyper-V hosts served over WinRM.
//!
//! Each host keeps VMs, disks, NICs, KVP items and its host resources in memory and executes the
//! agent operations of the agent contract with Hyper-V's semantics ([`ops`]). Hosts are served
//! as WS-Management WinRS endpoints (`/<host>/wsman`, Basic auth, HTTP or HTTPS) that understand
//! the PowerShell command line the worker sends ([`powershell`]), and answer like Windows:
//! stdout streams, CLIXML on stderr, exit codes ([`wsman`], [`server`]). Every operation is
//! recorded with its job id so tests can check the host slot and idempotency ([`stats`]).
//!
//! Tour: [`config`] (hosts and resources) → [`state`] (the model) → [`ops`] (operations) →
//! [`sim`] (latency, journal, recording) → [`server`] / [`tls`] (serving).

pub mod auth;
pub mod config;
pub mod deploy;
pub mod guest;
pub mod ops;
pub mod powershell;
pub mod server;
pub mod sim;
pub mod state;
pub mod stats;
pub mod tls;
pub mod wsman;

pub use config::{HostSpec, Image, Network, SimConfig, StorageClass};
pub use guest::{Guest, GuestEvent, KeyFormatChoice, ProvisioningGuest};
pub use sim::{AgentRun, Sim};
pub use state::{Fault, HostState, Vm, VmState};
pub use stats::{HostStats, OpRecord, SimStats};
pub use tls::{SelfSignedTls, TlsError};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use tokio::net::TcpListener;

impl Sim {
    /// The axum router: `POST /<host>/wsman` (and `POST /wsman` or `/` with a `HOST\user`
    /// user name, for pywinrm's `Session`), `GET /sim/stats`, `GET /sim/hosts/<host>`,
    /// `GET /sim/hosts/<host>/records`, `POST /sim/hosts/<host>/faults`.
    pub fn router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// Serves HTTP on `listener` until `shutdown` completes. Pending `Receive` long-polls are
    /// answered at once when shutdown starts.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let closing = self.inner.closing.clone();
        let router = self.router();
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<auth::ConnAuth>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.send_replace(true);
        })
        .await
    }

    /// Serves HTTPS on `listener` with `tls` until `shutdown` completes. Connections already
    /// accepted are not waited for.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: SelfSignedTls,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        let router = self.router();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            // NTLM state is per connection: a fresh ConnAuth for each accepted stream.
            let service = TowerToHyperService::new(router.clone().layer(axum::Extension(
                axum::extract::ConnectInfo(auth::ConnAuth::new(true)),
            )));
            tokio::spawn(async move {
                let tls_stream = match acceptor.accept(stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "tls handshake failed");
                        return;
                    }
                };
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls_stream), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        self.inner.closing.send_replace(true);
        Ok(())
    }

    /// Number of open WinRS shells (all hosts).
    pub fn open_shells(&self) -> usize {
        self.inner.shells.len()
    }

    /// Forgets every open shell, as a host whose WinRM service restarted (or whose idle
    /// timeout reclaimed them) does: their ShellIds are then unknown.
    pub fn forget_shells(&self) {
        self.inner.shells.clear();
    }
}
