//! Integration tests of the Discord adapter: signed interactions posted to its HTTP endpoint,
//! its REST calls recorded by a fake Discord (`fake`), on the in-process broker. One binary.

mod fake;
mod fake_gateway;
mod flow;
mod forms;
mod gateway;
mod http_mode;
mod long_log;
mod rest;
mod snapshots;
mod threads;

use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_broker::{Broker, Topology};
use aetherv_core::approval::Policy;
use aetherv_core::rbac::Rbac;
use aetherv_core::Platform;
use aetherv_discord::outbound::ThreadKeeping;
use aetherv_discord::{Options, DISCORD_LIMITS};
use ed25519_dalek::{Signer, SigningKey};
use fake::FakeDiscord;
use fake_gateway::FakeGateway;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// alice operates; approvers are the members of Discord role 2000…2; eve reads.
pub const ROLES: &str = r#"
groups:
  - name: ops
    roles: [operator]
    members: ["discord:100000000000000001"]
  - name: approvers
    roles: [approver]
    members: ["discord-role:200000000000000002"]
  - name: readers
    roles: [reader]
    members: ["discord:100000000000000005"]
"#;
/// Alice's user id.
pub const ALICE: &str = "100000000000000001";
/// Bob's user id (an approver by role).
pub const BOB: &str = "100000000000000002";
/// Eve's user id (a reader).
pub const EVE: &str = "100000000000000005";
/// The approvers' role id.
pub const APPROVERS: &str = "200000000000000002";
/// The application id of the tests.
pub const APP: &str = "300000000000000003";

/// The application's signing key (the test owns the private half).
pub fn app_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// Another key (a forger's).
pub fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[8u8; 32])
}

/// Hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signature headers for `body` at `ts` under `key`.
pub fn sign(key: &SigningKey, ts: u64, body: &str) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    let sig = key.sign(format!("{ts}{body}").as_bytes());
    vec![
        ("x-signature-ed25519", hex(&sig.to_bytes())),
        ("x-signature-timestamp", ts),
    ]
}

/// Posts `body` to the endpoint with `headers`; the status and JSON answer.
pub async fn post(addr: SocketAddr, body: &str, headers: &[(&str, String)]) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::post(format!("http://{addr}/interactions"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client.request(req).await.expect("post");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Posts `body` signed with the application's key, now.
pub async fn post_signed(addr: SocketAddr, body: &str) -> (u16, Value) {
    post(addr, body, &sign(&app_key(), now(), body)).await
}

/// A policy asking one approval from `approvers` for everything.
pub fn one_approval() -> Policy {
    Policy::from_yaml(
        "rules:\n  - name: all\n    approvals: 1\n    groups: [approvers]\n    ttl_secs: 3600\n",
    )
    .expect("policy")
}

/// The engine of the tests.
pub fn engine(broker: &Broker, policy: Policy) -> Engine {
    Engine::new(
        broker.clone(),
        EngineConfig {
            rbac: Rbac::from_yaml(ROLES).expect("roles"),
            policy,
            limits: DISCORD_LIMITS,
            platform: Platform::Discord,
            channel: "400000000000000004".into(),
            hosts: vec!["hv01".into(), "hv02".into()],
            recipients: vec![worker_identity().to_public()],
            signer: None,
        },
    )
    .expect("engine")
}

/// The simulated workers' age identity (the engine seals secrets to it).
pub fn worker_identity() -> &'static aetherv_core::secrets::Identity {
    static ID: std::sync::OnceLock<aetherv_core::secrets::Identity> = std::sync::OnceLock::new();
    ID.get_or_init(aetherv_core::secrets::generate_identity)
}

/// A fresh in-process broker.
pub fn broker() -> Broker {
    Broker::in_process(Topology::new(format!(
        "discord-{}",
        uuid::Uuid::new_v4().simple()
    )))
}

/// The guild of the tests.
pub const GUILD: &str = "290926798626357999";

/// The job channel of the tests.
pub const OPS: &str = "400000000000000004";
/// The approvals channel of the tests.
pub const APPROVALS: &str = "400000000000000009";

/// A running bot and its fake Discord.
pub struct Bot {
    /// The fake.
    pub fake: FakeDiscord,
    /// The endpoint's address (HTTP mode).
    pub addr: SocketAddr,
    /// The fake Gateway (Gateway mode).
    pub gateway: Option<FakeGateway>,
    /// The bot's task.
    pub run: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Stops the bot.
    pub stop: CancellationToken,
}

impl Bot {
    /// Sends interaction `body` the way this bot takes them: signed to its endpoint (HTTP
    /// mode), or as INTERACTION_CREATE on the fake Gateway; the status and the answer (the
    /// HTTP response, or the body of the REST callback).
    pub async fn post(&self, body: &str) -> (u16, Value) {
        let Some(gw) = &self.gateway else {
            return post_signed(self.addr, body).await;
        };
        let mut ia: Value = serde_json::from_str(body).expect("interaction json");
        if ia["type"] == 5 {
            // The bot's modals are action rows over the Gateway; Discord's submit mirrors them.
            rows_of_labels(&mut ia["data"]["components"]);
        }
        let path = format!(
            "/interactions/{}/{}/callback",
            ia["id"].as_str().unwrap_or_default(),
            ia["token"].as_str().unwrap_or_default()
        );
        let before = self.fake.calls().len();
        gw.interaction(ia).await;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let calls = self.fake.calls();
            if let Some(c) = calls.iter().skip(before).find(|c| c.path == path) {
                assert_eq!(c.method, "POST");
                return (200, c.body.clone());
            }
            assert!(
                tokio::time::Instant::now() < until,
                "no callback on {path} within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Label components (type 18) of a modal submit as action rows (type 1).
fn rows_of_labels(components: &mut Value) {
    for c in components.as_array_mut().into_iter().flatten() {
        if c["type"] == 18 {
            *c = serde_json::json!({ "type": 1, "components": [c["component"].clone()] });
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the bot over `broker` in HTTP mode against a fresh fake.
pub async fn bot(broker: &Broker, policy: Policy) -> Bot {
    bot_with(broker, policy, ThreadKeeping::default()).await
}

/// [`bot`] keeping job threads open as `keeping` says.
pub async fn bot_with(broker: &Broker, policy: Policy, keeping: ThreadKeeping) -> Bot {
    let fake = FakeDiscord::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let opts = Options {
        application_id: APP.into(),
        public_key: hex(app_key().verifying_key().as_bytes()),
        bot_token: "bot-token-secret".into(),
        api_url: fake.api_url.clone(),
        connection: aetherv_discord::Connection::Http(listener),
        channel: OPS.into(),
        approvals_channel: Some(APPROVALS.into()),
        candidate: format!("discord-{}", uuid::Uuid::new_v4().simple()),
        templates_dir: None,
        register_commands: true,
        guild_id: Some(GUILD.into()),
        thread_keeping: keeping,
    };
    let run = tokio::spawn(aetherv_discord::run(
        engine(broker, policy),
        opts,
        stop.clone(),
    ));
    // Leadership and the replay: an empty stream is replayed once it has been idle for
    // `REPLAY_IDLE`; until then the bot answers that it is catching up.
    tokio::time::sleep(aetherv_bot::serve::REPLAY_IDLE + Duration::from_millis(400)).await;
    Bot {
        fake,
        addr,
        gateway: None,
        run,
        stop,
    }
}

/// The bot's token in the tests.
pub const TOKEN: &str = "bot-token-secret";

/// Starts the bot over `broker` in Gateway mode against a fresh fake REST API and `gateway`,
/// without waiting for anything.
pub async fn start_gateway_bot(broker: &Broker, policy: Policy, gateway: FakeGateway) -> Bot {
    let fake = FakeDiscord::start().await;
    let stop = CancellationToken::new();
    let opts = Options {
        application_id: APP.into(),
        public_key: String::new(),
        bot_token: TOKEN.into(),
        api_url: fake.api_url.clone(),
        connection: aetherv_discord::Connection::Gateway {
            url: Some(gateway.url.clone()),
        },
        channel: OPS.into(),
        approvals_channel: Some(APPROVALS.into()),
        candidate: format!("discord-{}", uuid::Uuid::new_v4().simple()),
        templates_dir: None,
        register_commands: true,
        guild_id: Some(GUILD.into()),
        thread_keeping: ThreadKeeping::default(),
    };
    let run = tokio::spawn(aetherv_discord::run(
        engine(broker, policy),
        opts,
        stop.clone(),
    ));
    Bot {
        fake,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        gateway: Some(gateway),
        run,
        stop,
    }
}

/// Starts the bot in Gateway mode and waits for its session (IDENTIFY answered with READY)
/// and the engine's replay.
pub async fn gateway_bot(broker: &Broker, policy: Policy) -> Bot {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let gw = FakeGateway::start(TOKEN, GUILDS_INTENT).await;
    let b = start_gateway_bot(broker, policy, gw.clone()).await;
    gw.wait_until(Duration::from_secs(10), |s| s.iter().any(|f| f.op == 2))
        .await;
    tokio::time::sleep(aetherv_bot::serve::REPLAY_IDLE + Duration::from_millis(400)).await;
    b
}

/// The `GUILDS` intent bit.
pub const GUILDS_INTENT: u64 = 1;

/// An `/aether` command interaction by `user` (with `roles`): `sub` is the subcommand path
/// (`["vm", "list"]`), `options` its leaf options (name, type, value).
pub fn command(user: &str, roles: &[&str], sub: &[&str], options: &Value, token: &str) -> String {
    let mut leaf = serde_json::json!({ "name": sub.last().copied().unwrap_or_default(), "type": 1, "options": options });
    for g in sub.iter().rev().skip(1) {
        leaf = serde_json::json!({ "name": g, "type": 2, "options": [leaf] });
    }
    serde_json::json!({
        "id": "786008729715212338",
        "application_id": APP,
        "type": 2,
        "token": token,
        "version": 1,
        "guild_id": "290926798626357999",
        "channel_id": OPS,
        "member": { "user": { "id": user, "username": "someone" }, "roles": roles },
        "data": { "id": "771825006014889984", "name": "aether", "type": 1, "options": [leaf] },
    })
    .to_string()
}

/// A button click by `user` on message `message` in `channel`.
pub fn click(
    user: &str,
    roles: &[&str],
    custom_id: &str,
    channel: &str,
    message: &str,
    token: &str,
) -> String {
    serde_json::json!({
        "id": "846462639134605312",
        "application_id": APP,
        "type": 3,
        "token": token,
        "version": 1,
        "guild_id": "290926798626357999",
        "channel_id": channel,
        "member": { "user": { "id": user, "username": "someone" }, "roles": roles },
        "message": { "id": message, "channel_id": channel, "content": "" },
        "data": { "custom_id": custom_id, "component_type": 2 },
    })
    .to_string()
}
