//! Latency figures for the chat adapters' acknowledgement benchmarks (`slack/benches/ack.rs`,
//! `discord/benches/ack.rs`): percentiles, one line per burst, a summary over bursts against
//! the p99 target, and HTTP bursts of raw requests on one connection each.

use std::time::{Duration, Instant};

/// The p99 target for a burst (the platforms' deadline is 3 s).
pub const TARGET_P99: Duration = Duration::from_millis(25);

/// The `p` quantile of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// Prints one run's percentiles and returns its p99.
pub fn report(what: &str, lat: &mut [Duration], extra: &str) -> Duration {
    lat.sort();
    println!(
        "{what}: {} acknowledged{extra}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        percentile(lat, 0.50).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    percentile(lat, 0.99)
}

/// One line over all bursts of a mode: the worst p99 and how many met the target.
pub fn summary(what: &str, p99s: &[Duration]) {
    let worst = p99s.iter().max().copied().unwrap_or_default();
    let met = p99s.iter().filter(|p| **p <= TARGET_P99).count();
    println!(
        "{what}: worst burst p99 {:.2} ms; p99 ≤ {} ms in {met} of {} bursts",
        worst.as_secs_f64() * 1e3,
        TARGET_P99.as_millis(),
        p99s.len()
    );
}

/// Connects, then times writing `req` until the acknowledgement is read (`None` unless it
/// is a 200).
pub async fn http_post(addr: std::net::SocketAddr, req: String) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.set_nodelay(true).ok()?;
    let start = Instant::now();
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.ok()?;
    let took = start.elapsed();
    std::str::from_utf8(&buf[..n])
        .ok()?
        .starts_with("HTTP/1.1 200")
        .then_some(took)
}

/// `n` requests one at a time (after two to warm up), then `rounds` bursts of `n` at once on
/// `n` connections, `pause` apart so one burst's work is done before the next; `requests(k)`
/// gives `k` fresh requests. Prints each and the summary under `mode`.
pub async fn http_bursts(
    mode: &str,
    addr: std::net::SocketAddr,
    n: usize,
    rounds: usize,
    pause: Duration,
    requests: impl Fn(usize) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<()> {
    let mut seq = Vec::new();
    for (i, r) in requests(n + 2)?.into_iter().enumerate() {
        if let Some(d) = http_post(addr, r).await {
            if i >= 2 {
                seq.push(d);
            }
        }
    }
    report(&format!("{mode}, {n} one at a time"), &mut seq, "");
    tokio::time::sleep(pause).await;
    let mut p99s = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let tasks: Vec<_> = requests(n)?
            .into_iter()
            .map(|r| tokio::spawn(http_post(addr, r)))
            .collect();
        let mut lat = Vec::with_capacity(n);
        for t in tasks {
            if let Some(d) = t.await? {
                lat.push(d);
            }
        }
        p99s.push(report(
            &format!("{mode}, {n} at once on {n} connections"),
            &mut lat,
            "",
        ));
        tokio::time::sleep(pause).await;
    }
    summary(mode, &p99s);
    Ok(())
}
