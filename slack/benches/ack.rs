//! Acknowledgement latency of 200 concurrent slash commands (fake Slack on loopback,
//! in-process broker): half `deploy managed` (modal built from the cached inventory and opened),
//! half `vm list` (queued for the engine). Two runs:
//!
//! - HTTP mode: 200 signed requests on 200 connections at once; latency from writing the
//!   request to reading the acknowledgement (signature check, parsing, handler, response).
//! - Socket Mode, one at a time: latency from writing an envelope to reading its
//!   acknowledgement (the adapter's own latency over the WebSocket).
//! - Socket Mode, 200 envelopes written at once on one WebSocket. slack-morphism's WebSocket
//!   client keeps Nagle's algorithm on and handles one envelope at a time per connection, so
//!   acknowledgements written back-to-back wait for the peer's delayed TCP ACK (about 40 ms
//!   on Linux): this run shows that transport effect, not the handler's cost.
//!
//! Prints p50/p99; Slack's deadline is 3 s, the target is p99 ≤ 25 ms.
//! Run: `cargo bench -p aetherv-slack --bench ack`.

#[path = "../tests/it/fake.rs"]
#[allow(dead_code, reason = "the fake serves the integration tests too")]
mod fake;

use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_broker::{Broker, Topology};
use aetherv_core::approval::Policy;
use aetherv_core::rbac::Rbac;
use aetherv_core::Platform;
use aetherv_slack::{Mode, Options, SLACK_LIMITS};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const COMMANDS: usize = 200;

/// The `i`-th command of a run: half open the managed-deployment modal, half are queued.
fn command_text(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "deploy managed"
    } else {
        "vm list"
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn report(what: &str, lat: &mut [Duration], extra: &str) {
    lat.sort();
    println!(
        "{what}: {} acknowledged{extra}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        percentile(lat, 0.50).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn engine() -> anyhow::Result<Engine> {
    let broker = Broker::in_process(Topology::new(format!(
        "bench-{}",
        uuid::Uuid::new_v4().simple()
    )));
    let engine = Engine::new(
        broker,
        EngineConfig {
            rbac: Rbac::from_yaml(
                "groups:\n  - name: ops\n    roles: [operator]\n    members: [\"slack:U0ALICE\"]\n",
            )?,
            policy: Policy::default(),
            limits: SLACK_LIMITS,
            platform: Platform::Slack,
            channel: "C0OPS".into(),
            hosts: vec!["hv01".into(), "hv02".into()],
            recipients: Vec::new(),
        },
    )?;
    Ok(engine)
}

fn options(fake: &fake::FakeSlack, mode: Mode) -> Options {
    Options {
        api_url: fake.api_url.clone(),
        bot_token: "xoxb-bench".into(),
        app_token: "xapp-bench".into(),
        signing_secret: "secret".into(),
        mode,
        channel: "C0OPS".into(),
        approvals_channel: None,
        slack_groups: Vec::new(),
        group_refresh: Duration::from_secs(300),
        candidate: "bench".into(),
    }
}

async fn socket_mode() -> anyhow::Result<()> {
    let fake = fake::FakeSlack::start().await;
    let stop = CancellationToken::new();
    let opts = options(&fake, Mode::Socket { connections: 1 });
    tokio::spawn(aetherv_slack::run(engine()?, opts, stop.clone()));
    fake.connected().await;
    // Warm up (first modal build, connection pools).
    fake.slash("U0ALICE", "C0OPS", "deploy vm").await;
    fake.slash("U0ALICE", "C0OPS", "vm list").await;

    // One at a time: the adapter's own acknowledgement latency over the WebSocket.
    let mut seq = Vec::new();
    for i in 0..COMMANDS {
        let text = command_text(i);
        let rx = fake.send_envelope(
            "slash_commands",
            &fake::slash_payload("U0ALICE", "C0OPS", text),
        );
        if let Ok((_, d)) = rx.await {
            seq.push(d);
        }
    }
    report("Socket Mode, 200 commands one at a time", &mut seq, "");
    let mut tasks = Vec::with_capacity(COMMANDS);
    for i in 0..COMMANDS {
        let text = command_text(i);
        let rx = fake.send_envelope(
            "slash_commands",
            &fake::slash_payload("U0ALICE", "C0OPS", text),
        );
        tasks.push(tokio::spawn(
            async move { rx.await.ok().map(|(_, took)| took) },
        ));
    }
    let mut lat = Vec::with_capacity(COMMANDS);
    for t in tasks {
        if let Some(d) = t.await? {
            lat.push(d);
        }
    }
    let opened = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = fake.calls_of("views.open").len();
            if n > COMMANDS || Instant::now() > deadline {
                break n - 1 - COMMANDS / 2;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    report(
        "Socket Mode, 200 concurrent commands on one WebSocket",
        &mut lat,
        &format!(", {opened} modals opened"),
    );
    stop.cancel();
    Ok(())
}

fn sign(secret: &str, ts: &str, body: &str) -> anyhow::Result<String> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("v0={hex}"))
}

async fn http_post(addr: std::net::SocketAddr, req: String) -> Option<Duration> {
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

async fn http_mode() -> anyhow::Result<()> {
    let fake = fake::FakeSlack::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let opts = options(&fake, Mode::Http(listener));
    tokio::spawn(aetherv_slack::run(engine()?, opts, stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut reqs = Vec::with_capacity(COMMANDS + 1);
    let ts = chrono::Utc::now().timestamp().to_string();
    for i in 0..=COMMANDS {
        let text = command_text(i);
        let p = fake::slash_payload("U0ALICE", "C0OPS", text);
        let pairs: Vec<(String, String)> = p
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let body = serde_urlencoded::to_string(pairs)?;
        let sig = sign("secret", &ts, &body)?;
        reqs.push(format!(
            "POST /slack/commands HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nx-slack-request-timestamp: {ts}\r\nx-slack-signature: {sig}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
    }
    // Warm up with one.
    let first = reqs.pop().unwrap_or_default();
    http_post(addr, first).await;
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|r| tokio::spawn(http_post(addr, r)))
        .collect();
    let mut lat = Vec::with_capacity(COMMANDS);
    for t in tasks {
        if let Some(d) = t.await? {
            lat.push(d);
        }
    }
    report(
        "HTTP mode, 200 concurrent commands on 200 connections",
        &mut lat,
        "",
    );
    stop.cancel();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(http_mode())?;
    rt.block_on(socket_mode())
}
