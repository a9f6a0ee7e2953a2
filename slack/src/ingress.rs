//! The ingress thread: where Slack's requests are read and acknowledged.
//!
//! Slack wants a slash command acknowledged within 3 s, and the target here is p99 ≤ 25 ms
//! under a burst of 200. The transport (the HTTP server, or the Socket Mode WebSockets) and the
//! request handlers, which only acknowledge, run on a runtime of their own with
//! [`INGRESS_THREADS`] workers. The work behind a request (building and opening a modal, the
//! engine, the outbound write queue) runs on the main runtime ([`crate::app::Shared::work`]).
//! A burst of modal work then queues on the main runtime's workers instead of in front of the
//! acknowledgements, and the OS scheduler, which favours threads that mostly sleep, runs these
//! promptly when requests arrive.
//!
//! Measured with `cargo bench -p aetherv-slack --bench ack` on 2 cores (200 commands at once,
//! half of them opening modals): HTTP mode p99 was 29–44 ms with everything on one runtime,
//! 16–36 ms with a single ingress thread (200 connections are then accepted and answered one
//! after another), and 11–30 ms with two; docs/slack.md has the final figures.

use std::future::Future;
use tokio::sync::oneshot;

/// Ingress worker threads: two, so one connection's handler never waits behind another's on a
/// two-core machine.
pub const INGRESS_THREADS: usize = 2;

/// Runs `make()` to completion on the ingress runtime. The receiver yields its result (or the
/// reason the thread's runtime could not start).
pub fn spawn<F, Fut>(make: F) -> anyhow::Result<oneshot::Receiver<anyhow::Result<()>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("slack-ingress".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(INGRESS_THREADS)
                .thread_name("slack-ingress")
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(make()),
                Err(e) => Err(anyhow::anyhow!(
                    "the Slack ingress runtime did not start: {e}"
                )),
            };
            // Nobody listens once `run` has returned; the result is then moot.
            let _ = tx.send(result);
        })?;
    Ok(rx)
}
