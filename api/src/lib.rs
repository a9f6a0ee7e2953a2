//! aetherv-api: the HTTP API, one more front door of the bot process.
//!
//! The API does not hold an engine of its own: [`WithApi`] wraps the bot's chat adapter in the
//! one serve loop (leadership, replay, inputs, events, ticks), so writes go through the
//! engine's request path ([`aetherv_bot::Engine::submit_request`]: validation, the gate,
//! roles, policy, approval in that chat) with the caller's principal `api:<name>`. Reads are
//! served from a snapshot ([`store`]) the serve loop refreshes, so readers never queue behind
//! the engine. A standby bot (another one leads) answers `503` with `Retry-After`.
//!
//! Routes are in [`routes`]; errors are RFC 9457 problems ([`problem`]); authentication is
//! [`auth`]; the OpenAPI 3.1 document is generated from the code ([`openapi`]).

pub mod adapter;
pub mod auth;
pub mod docs;
pub mod forms;
pub mod oidc;
pub mod openapi;
pub mod problem;
pub mod requests;
pub mod routes;
pub mod status;
pub mod store;

pub use adapter::WithApi;
pub use auth::{Authenticator, BearerToken, Oidc, OidcSettings};
pub use store::Store;

use std::sync::Arc;
use tokio::sync::mpsc;

/// How many API calls may wait for the serve loop.
pub const CALL_QUEUE: usize = 1024;

/// The API's shared parts: the snapshot store, the way into the serve loop, who is who.
#[derive(Debug, Clone)]
pub struct Api {
    /// Reads come from here.
    pub store: Arc<Store>,
    calls: mpsc::Sender<requests::Call>,
    auth: Arc<Authenticator>,
}

impl Api {
    /// A new API and the receiver [`WithApi`] reads its calls from.
    pub fn new(auth: Authenticator) -> (Api, mpsc::Receiver<requests::Call>) {
        let (tx, rx) = mpsc::channel(CALL_QUEUE);
        (
            Api {
                store: Arc::new(Store::new()),
                calls: tx,
                auth: Arc::new(auth),
            },
            rx,
        )
    }

    /// Wraps a chat adapter so the API's calls are served in its loop.
    pub fn wrap<A: aetherv_bot::Adapter>(
        &self,
        inner: A,
        calls: mpsc::Receiver<requests::Call>,
    ) -> WithApi<A> {
        WithApi::new(inner, calls, self.store.clone())
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The router of every route.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
