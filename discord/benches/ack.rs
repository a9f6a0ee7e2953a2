//! Acknowledgement latency of 200 concurrent Discord interactions in HTTP mode and over one
//! Gateway connection (fake Discord REST and Gateway on loopback, in-process broker): half `/aether deploy managed` (a draft started and
//! its first modal page built from the form's layout), half `/aether vm list` (queued for the
//! engine, answered with a deferred message). Each request is signed with Ed25519 as Discord
//! signs; the bot verifies every one.
//!
//! The bot runs on a runtime of its own (2 worker threads, as `aetherv discord` has on a
//! 2-core machine); the fake Discord on a runtime with one worker; the load generator on the
//! main thread. All of it shares this machine's cores, so the figures include that contention.
//!
//! HTTP mode: latency is from writing the request to reading the answer's status line, one
//! connection per request. Gateway mode (serenity's client): from the fake Gateway writing the
//! INTERACTION_CREATE dispatch to the fake REST API receiving its callback
//! (`POST /interactions/{id}/{token}/callback`), all 200 dispatches written back to back on the
//! one connection. Each mode one at a time, then bursts of 200 at once. Prints p50/p99;
//! Discord's deadline is 3 s, the target is p99 ≤ 25 ms.
//! Run: `cargo bench -p aetherv-discord --bench ack` (`-- N` repeats the burst N times).

#[path = "../../tests/support/latency.rs"]
mod latency;

#[path = "../tests/it/fake.rs"]
#[allow(dead_code, reason = "the fake serves the integration tests too")]
mod fake;

#[path = "../tests/it/fake_gateway.rs"]
#[allow(dead_code, reason = "the fake serves the integration tests too")]
mod fake_gateway;

use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_broker::{Broker, Topology};
use aetherv_core::approval::Policy;
use aetherv_core::rbac::Rbac;
use aetherv_core::Platform;
use aetherv_discord::{Options, DISCORD_LIMITS};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

const INTERACTIONS: usize = 200;
const APP: &str = "300000000000000003";
const GUILD: &str = "290926798626357999";
const TOKEN: &str = "bench-token";
const ROLES: &str = "groups:\n  - name: ops\n    roles: [operator]\n    members: [\"discord:100000000000000001\"]\n";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn engine() -> anyhow::Result<Engine> {
    let broker = Broker::in_process(Topology::new(format!(
        "bench-{}",
        uuid::Uuid::new_v4().simple()
    )));
    Ok(Engine::new(
        broker,
        EngineConfig {
            rbac: Rbac::from_yaml(ROLES)?,
            policy: Policy::from_yaml("rules:\n  - name: free\n    approvals: 0\n")?,
            limits: DISCORD_LIMITS,
            platform: Platform::Discord,
            channel: "400000000000000004".into(),
            hosts: vec!["hv01".into(), "hv02".into()],
            recipients: Vec::new(),
            signer: None,
        },
    )?)
}

/// The `i`-th interaction: half open the managed-deployment form, half are queued.
fn interaction(i: usize) -> String {
    let sub = if i.is_multiple_of(2) {
        json!({ "name": "deploy", "type": 2, "options": [{ "name": "managed", "type": 1, "options": [
            { "name": "target_host", "type": 3, "value": "hv01" },
            { "name": "gb_ram", "type": 4, "value": 4 }
        ]}]})
    } else {
        json!({ "name": "vm", "type": 2, "options": [{ "name": "list", "type": 1, "options": [] }]})
    };
    json!({
        "id": format!("{}", 786_008_729_715_212_338_u64 + i as u64),
        "application_id": APP,
        "type": 2,
        "token": format!("tok-{i}"),
        "version": 1,
        "guild_id": "290926798626357999",
        "channel_id": "400000000000000004",
        "member": { "user": { "id": "100000000000000001", "username": "alice" }, "roles": [] },
        "data": { "id": "771825006014889984", "name": "aether", "type": 1, "options": [sub] },
    })
    .to_string()
}

/// `n` signed interaction requests.
fn signed_requests(addr: std::net::SocketAddr, n: usize) -> anyhow::Result<Vec<String>> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let key = key();
    Ok((0..n)
        .map(|i| {
            let body = interaction(i);
            let sig = key.sign(format!("{ts}{body}").as_bytes());
            let hex: String = sig.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "POST /interactions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-signature-timestamp: {ts}\r\nx-signature-ed25519: {hex}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        })
        .collect())
}

fn main() -> anyhow::Result<()> {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(10);
    let bot = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bot")
        .enable_all()
        .build()?;
    let discord = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-discord")
        .enable_all()
        .build()?;
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fake = discord.block_on(fake::FakeDiscord::start());
    let listener = bot.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let public: String = key()
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let opts = Options {
        application_id: APP.into(),
        public_key: public,
        bot_token: TOKEN.into(),
        api_url: fake.api_url,
        connection: aetherv_discord::Connection::Http(listener),
        channel: "400000000000000004".into(),
        approvals_channel: None,
        candidate: "bench".into(),
        templates_dir: None,
        register_commands: false,
        guild_id: None,
        thread_keeping: Default::default(),
    };
    {
        let _in_bot = bot.enter();
        let engine = engine()?;
        bot.spawn(aetherv_discord::run(engine, opts, stop.clone()));
    }
    load.block_on(async {
        tokio::time::sleep(aetherv_bot::serve::REPLAY_IDLE + Duration::from_millis(400)).await;
        latency::http_bursts(
            "HTTP mode",
            addr,
            INTERACTIONS,
            rounds,
            Duration::from_millis(500),
            |n| signed_requests(addr, n),
        )
        .await
    })?;
    stop.cancel();
    std::thread::sleep(Duration::from_millis(500));

    // The Gateway half: another bot, over one connection to the fake Gateway.
    let gw = discord.block_on(fake_gateway::FakeGateway::start(TOKEN, 1));
    let rest = discord.block_on(fake::FakeDiscord::start());
    let stop = CancellationToken::new();
    let opts = Options {
        application_id: APP.into(),
        public_key: String::new(),
        bot_token: TOKEN.into(),
        api_url: rest.api_url.clone(),
        connection: aetherv_discord::Connection::Gateway {
            url: Some(gw.url.clone()),
        },
        channel: "400000000000000004".into(),
        approvals_channel: None,
        candidate: "bench-gateway".into(),
        templates_dir: None,
        register_commands: false,
        guild_id: None,
        thread_keeping: Default::default(),
    };
    {
        let _in_bot = bot.enter();
        let engine = engine()?;
        bot.spawn(aetherv_discord::run(engine, opts, stop.clone()));
    }
    load.block_on(async {
        gw.wait_until(Duration::from_secs(10), |s| s.iter().any(|f| f.op == 2))
            .await;
        tokio::time::sleep(aetherv_bot::serve::REPLAY_IDLE + Duration::from_millis(400)).await;
        gateway_bursts(&gw, &rest, rounds).await
    })?;
    stop.cancel();
    Ok(())
}

/// The `k`-th Gateway interaction (unique id and token), as Discord sends it.
fn dispatched(i: usize, k: u64) -> (String, serde_json::Value) {
    let mut ia: serde_json::Value = serde_json::from_str(&interaction(i)).unwrap_or_default();
    ia["id"] = json!(format!("{}", 900_000_000_000_000_000_u64 + k));
    ia["token"] = json!(format!("gw-tok-{k}"));
    (
        "INTERACTION_CREATE".to_string(),
        fake_gateway::as_discord_sends(ia),
    )
}

/// Dispatches `events` at once and waits (up to 10 s) for their callbacks: each one's latency
/// from its dispatch to its callback. The figures are the fakes' own timestamps; the calls are
/// first looked at `first` after the dispatch (reading them holds the fake's lock, which would
/// delay the callbacks still arriving), then every 100 ms.
async fn gateway_round(
    gw: &fake_gateway::FakeGateway,
    rest: &fake::FakeDiscord,
    events: Vec<(String, serde_json::Value)>,
    first: Duration,
) -> Vec<Duration> {
    let ids: Vec<String> = events
        .iter()
        .filter_map(|(_, d)| d["id"].as_str().map(str::to_string))
        .collect();
    gw.dispatch(events).await;
    tokio::time::sleep(first).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let calls = rest.calls();
        let lat: Vec<Duration> = ids
            .iter()
            .filter_map(|id| {
                let sent = gw.dispatched_at(id)?;
                let prefix = format!("/interactions/{id}/");
                let c = calls
                    .iter()
                    .find(|c| c.path.starts_with(&prefix) && c.path.ends_with("/callback"))?;
                Some(c.at.saturating_duration_since(sent))
            })
            .collect();
        if lat.len() == ids.len() || tokio::time::Instant::now() > until {
            return lat;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 200 one at a time (after two to warm up), then `rounds` bursts of 200 at once.
async fn gateway_bursts(
    gw: &fake_gateway::FakeGateway,
    rest: &fake::FakeDiscord,
    rounds: usize,
) -> anyhow::Result<()> {
    let mode = "Gateway mode";
    let mut k = 0u64;
    let mut seq = Vec::new();
    for i in 0..INTERACTIONS + 2 {
        k += 1;
        let lat = gateway_round(gw, rest, vec![dispatched(i, k)], Duration::from_millis(20)).await;
        if i >= 2 {
            seq.extend(lat);
        }
    }
    latency::report(
        &format!("{mode}, {INTERACTIONS} one at a time"),
        &mut seq,
        "",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut p99s = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let events: Vec<_> = (0..INTERACTIONS)
            .map(|i| {
                k += 1;
                dispatched(i, k)
            })
            .collect();
        let mut lat = gateway_round(gw, rest, events, Duration::from_millis(400)).await;
        let lost = INTERACTIONS - lat.len();
        let extra = if lost > 0 {
            format!(" ({lost} not answered in 10 s)")
        } else {
            String::new()
        };
        p99s.push(latency::report(
            &format!("{mode}, {INTERACTIONS} at once on one connection"),
            &mut lat,
            &extra,
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    latency::summary(mode, &p99s);
    Ok(())
}
