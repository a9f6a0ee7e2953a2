//! Integration tests of the Discord adapter: signed interactions posted to its HTTP endpoint,
//! its REST calls recorded by a fake Discord (`fake`), on the in-process broker. One binary.

mod fake;
mod flow;
mod forms;
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
    /// The endpoint's address.
    pub addr: SocketAddr,
    /// Stops the bot.
    pub stop: CancellationToken,
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
        listener,
        channel: OPS.into(),
        approvals_channel: Some(APPROVALS.into()),
        candidate: format!("discord-{}", uuid::Uuid::new_v4().simple()),
        templates_dir: None,
        register_commands: true,
        guild_id: Some(GUILD.into()),
        thread_keeping: keeping,
    };
    tokio::spawn(aetherv_discord::run(
        engine(broker, policy),
        opts,
        stop.clone(),
    ));
    // Leadership and the replay: an empty stream is replayed once it has been idle for
    // `REPLAY_IDLE`; until then the bot answers that it is catching up.
    tokio::time::sleep(aetherv_bot::serve::REPLAY_IDLE + Duration::from_millis(400)).await;
    Bot { fake, addr, stop }
}

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
