//! Simulated hosts served inside the test process, shared by the `it` tests and
//! `benches/jobs.rs` (which includes this file).

use aetherv_sim::Sim;
use aetherv_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

/// Serves `sim` over WinRM on a free loopback port until `stop` is cancelled; returns the worker
/// configuration for its hosts, with the inventory loop off.
pub async fn serve_sim(sim: &Sim, stop: &CancellationToken) -> WorkerConfig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let s = stop.clone();
    tokio::spawn(
        sim.clone()
            .serve(listener, async move { s.cancelled().await }),
    );
    let mut cfg =
        WorkerConfig::from_yaml(&sim.worker_config_yaml(&format!("http://{addr}"))).expect("cfg");
    cfg.inventory_interval_secs = 0;
    cfg
}
