//! Acknowledgement latency of 200 concurrent slash commands (fake Slack on loopback,
//! in-process broker): half `deploy managed` (modal built from the cached inventory and opened),
//! half `vm list` (queued for the engine).
//!
//! The bot runs on a runtime of its own (2 worker threads, as `aetherv slack` has on a 2-core
//! machine, plus its ingress thread). The fake Slack (Web API and Socket Mode server) runs on a
//! runtime with one worker, and the HTTP load generator on the main thread: both stand in for
//! Slack, which is another machine, so their work must not delay reading the replies. All of it
//! shares this machine's cores, so the figures include that contention. The fake is `lean`:
//! it echoes each `views.open` view as Slack does (the bot parses the full echo) without
//! parsing it into a tree or keeping it.
//!
//! - HTTP mode, one at a time, then 200 signed requests on 200 connections at once: latency
//!   from writing the request to reading the acknowledgement (signature check, parsing,
//!   handler, response).
//! - Socket Mode, one at a time, then 200 envelopes written at once on one WebSocket: latency
//!   from writing an envelope to reading its acknowledgement.
//!
//! Prints p50/p99; Slack's deadline is 3 s, the target is p99 ≤ 25 ms.
//! Run: `cargo bench -p aetherv-slack --bench ack` (`-- N` repeats each burst N times).

#[path = "../../tests/support/latency.rs"]
mod latency;

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
            signer: None,
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
        templates_dir: None,
    }
}

/// The bot's runtime; the fake Slack Web API and Socket Mode server's; the load generator's
/// (the HTTP clients that post the slash commands, current-thread on the main thread).
struct Runtimes {
    bot: tokio::runtime::Runtime,
    slack: tokio::runtime::Runtime,
    load: tokio::runtime::Runtime,
}

/// Starts the bot against `fake` on the bot's runtime.
fn start_bot(
    rt: &Runtimes,
    fake: &fake::FakeSlack,
    mode: Mode,
) -> anyhow::Result<CancellationToken> {
    let stop = CancellationToken::new();
    let _in_bot = rt.bot.enter();
    let engine = engine()?;
    rt.bot.spawn(aetherv_slack::run(
        engine,
        options(fake, mode),
        stop.clone(),
    ));
    Ok(stop)
}

fn socket_mode(rt: &Runtimes, rounds: usize) -> anyhow::Result<()> {
    let fake = rt.slack.block_on(fake::FakeSlack::start());
    fake.lean();
    let stop = start_bot(rt, &fake, Mode::Socket { connections: 1 })?;
    rt.load.block_on(async {
        fake.connected().await;
        // Warm up (first modal build, connection pools).
        fake.slash("U0ALICE", "C0OPS", "deploy vm").await;
        fake.slash("U0ALICE", "C0OPS", "vm list").await;

        // One at a time: the adapter's own acknowledgement latency over the WebSocket.
        let mut seq = Vec::new();
        for i in 0..COMMANDS {
            let rx = fake.send_envelope(
                "slash_commands",
                &fake::slash_payload("U0ALICE", "C0OPS", command_text(i)),
            );
            if let Ok((_, d)) = rx.await {
                seq.push(d);
            }
        }
        latency::report("Socket Mode, 200 commands one at a time", &mut seq, "");
        let mut p99s = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let before = fake.count_of("views.open");
            let rxs: Vec<_> = (0..COMMANDS)
                .map(|i| {
                    fake.send_envelope(
                        "slash_commands",
                        &fake::slash_payload("U0ALICE", "C0OPS", command_text(i)),
                    )
                })
                .collect();
            let mut lat = Vec::with_capacity(COMMANDS);
            for rx in rxs {
                if let Ok((_, took)) = rx.await {
                    lat.push(took);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            let opened = loop {
                let n = fake.count_of("views.open") - before;
                if n >= COMMANDS / 2 || Instant::now() > deadline {
                    break n;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            p99s.push(latency::report(
                "Socket Mode, 200 concurrent commands on one WebSocket",
                &mut lat,
                &format!(", {opened} modals opened"),
            ));
        }
        latency::summary("Socket Mode", &p99s);
    });
    stop.cancel();
    Ok(())
}

/// `n` signed slash-command requests.
fn signed_requests(addr: std::net::SocketAddr, n: usize) -> anyhow::Result<Vec<String>> {
    let ts = chrono::Utc::now().timestamp().to_string();
    (0..n)
        .map(|i| {
            let body = fake::command_body("U0ALICE", "C0OPS", command_text(i));
            let sig = fake::sign("secret", &ts, &body);
            Ok(format!(
                "POST /slack/commands HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nx-slack-request-timestamp: {ts}\r\nx-slack-signature: {sig}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            ))
        })
        .collect()
}

fn http_mode(rt: &Runtimes, rounds: usize) -> anyhow::Result<()> {
    let fake = rt.slack.block_on(fake::FakeSlack::start());
    fake.lean();
    // As `aetherv slack` binds it (tokio's listen backlog of 1024; std's 128 would overflow
    // under 200 connections at once).
    let listener = rt
        .bot
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let stop = start_bot(rt, &fake, Mode::Http(listener))?;
    rt.load.block_on(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A burst's modals finish before the next burst.
        let pause = Duration::from_millis(500);
        latency::http_bursts("HTTP mode", addr, COMMANDS, rounds, pause, |n| {
            signed_requests(addr, n)
        })
        .await
    })?;
    stop.cancel();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(10);
    let rt = Runtimes {
        bot: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bot")
            .enable_all()
            .build()?,
        slack: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-slack")
            .enable_all()
            .build()?,
        load: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    http_mode(&rt, rounds)?;
    socket_mode(&rt, rounds)
}
