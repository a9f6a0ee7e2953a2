//! `/healthz`, `/readyz` and `/metrics` on one listener.
//!
//! - `/healthz`: 200 while the process serves requests at all (liveness).
//! - `/readyz`: 200 when the process's own check says ready, else 503 with the reason (the
//!   check is the caller's: the worker's is "broker connected and every slot subscribed", the
//!   bot's "broker connected, and leader or a standby whose replay is done").
//! - `/metrics`: the process's [`crate::metrics`] in the Prometheus text format.
//!
//! Every answer is plain text and carries nothing but states and counts: no secret, no URL
//! with a password, no request.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What says whether the process is ready: `Ok` or the reason it is not.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The content type of `/metrics` (what `prometheus-client` encodes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The router, for tests and for embedding in another server.
pub fn router(ready: ReadyCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
                    crate::metrics().encode(),
                )
                    .into_response()
            }),
        )
}

/// Serves the endpoints on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ready: ReadyCheck,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(ready))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

/// Binds `addr` and serves the endpoints in a task until `stop`; the bound address is returned
/// (so `127.0.0.1:0` can be used). A bind error names the address.
pub async fn spawn(
    addr: &str,
    ready: ReadyCheck,
    stop: CancellationToken,
) -> Result<std::net::SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the health endpoints: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("health listener: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = serve(listener, ready, stop).await {
            tracing::warn!(error = %e, "the health endpoints stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::sync::atomic::{AtomicBool, Ordering};

    async fn get_path(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(http_body_util::Empty::<axum::body::Bytes>::new())
            .expect("request");
        let resp = send.send_request(req).await.expect("send");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_follows_the_check_and_metrics_are_served() {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let check: ReadyCheck = Arc::new(move || {
            if f.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("broker not connected".into())
            }
        });
        let stop = CancellationToken::new();
        let addr = spawn("127.0.0.1:0", check, stop.clone())
            .await
            .expect("bind");
        assert_eq!(get_path(addr, "/healthz").await.0, 200);
        let (code, body) = get_path(addr, "/readyz").await;
        assert_eq!(
            (code, body.as_str()),
            (503, "not ready: broker not connected\n")
        );
        flag.store(true, Ordering::SeqCst);
        assert_eq!(get_path(addr, "/readyz").await.0, 200);
        crate::metrics().dead_lettered("malformed");
        let (code, text) = get_path(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            text.contains("aetherv_dead_letters_total{reason=\"malformed\"}"),
            "{text}"
        );
        assert_eq!(get_path(addr, "/nothing").await.0, 404);
        stop.cancel();
    }
}
