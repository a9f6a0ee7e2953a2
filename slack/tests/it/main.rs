//! Integration tests of the Slack adapter against a fake Slack (Web API + Socket Mode
//! WebSocket, in `fake`), driven through slack-morphism, with the in-process broker and, for
//! the full flow, simulated Hyper-V hosts and a worker. One integration binary.

mod docs_payloads;
mod fake;
mod flow;
mod http_mode;
mod modal_flow;
mod replies;
mod restart;
mod snapshots;
mod socket;
mod templates;
mod throttle;

use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_broker::{Broker, Topology};
use aetherv_core::approval::Policy;
use aetherv_core::rbac::Rbac;
use aetherv_core::Platform;
use aetherv_slack::{Mode, Options, SLACK_LIMITS};
use fake::FakeSlack;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// alice operates; approvers are the members of the Slack user group S0APPROVERS; eve reads.
pub const ROLES: &str = r#"
groups:
  - name: ops
    roles: [operator]
    members: ["slack:U0ALICE"]
  - name: approvers
    roles: [approver]
    members: ["slack-group:S0APPROVERS"]
  - name: readers
    roles: [reader]
    members: ["slack:U0EVE"]
"#;

/// The signing secret of HTTP-mode tests.
pub const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A policy asking one approval from `approvers` for everything.
pub fn one_approval() -> Policy {
    Policy::from_yaml(
        "rules:\n  - name: all\n    approvals: 1\n    groups: [approvers]\n    ttl_secs: 3600\n",
    )
    .expect("policy")
}

/// The engine configuration of the tests (one place to adapt when EngineConfig changes).
pub fn engine(broker: &Broker, policy: Policy) -> Engine {
    Engine::new(
        broker.clone(),
        EngineConfig {
            rbac: Rbac::from_yaml(ROLES).expect("roles"),
            policy,
            limits: SLACK_LIMITS,
            platform: Platform::Slack,
            channel: "C0OPS".into(),
            hosts: vec!["hv01".into(), "hv02".into()],
            recipients: Vec::new(),
            signer: None,
        },
    )
    .expect("engine")
}

/// The RabbitMQ URL of the tests.
pub fn amqp_url() -> String {
    std::env::var("AETHERV_AMQP_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A fresh in-process broker.
pub fn broker() -> Broker {
    Broker::in_process(Topology::new(format!(
        "slack-{}",
        uuid::Uuid::new_v4().simple()
    )))
}

/// A running bot and its fake Slack.
pub struct Bot {
    /// The fake.
    pub fake: FakeSlack,
    /// Stops the bot.
    pub stop: CancellationToken,
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Adapter options against `fake`.
pub fn options(fake: &FakeSlack, mode: Mode) -> Options {
    Options {
        api_url: fake.api_url.clone(),
        bot_token: "xoxb-test".into(),
        app_token: "xapp-test".into(),
        signing_secret: SECRET.into(),
        mode,
        channel: "C0OPS".into(),
        approvals_channel: Some("C0APPROVALS".into()),
        slack_groups: vec!["S0APPROVERS".into()],
        group_refresh: Duration::from_secs(60),
        candidate: format!("slack-{}", uuid::Uuid::new_v4().simple()),
        templates_dir: None,
    }
}

/// Starts the bot over `broker` in Socket Mode and waits for its WebSocket.
pub async fn socket_bot(broker: &Broker, policy: Policy) -> Bot {
    let fake = FakeSlack::start().await;
    fake.set_usergroup("S0APPROVERS", &["U0BOB", "U0CAROL"]);
    let stop = CancellationToken::new();
    let opts = options(&fake, Mode::Socket { connections: 1 });
    tokio::spawn(aetherv_slack::run(
        engine(broker, policy),
        opts,
        stop.clone(),
    ));
    fake.connected().await;
    replayed().await;
    Bot { fake, stop }
}

/// Waits until a bot on an empty stream has replayed it (idle for `REPLAY_IDLE`): before,
/// it answers that it is catching up.
pub async fn replayed() {
    tokio::time::sleep(aetherv_bot::serve::REPLAY_IDLE + Duration::from_millis(400)).await;
}

/// Starts the bot over `broker` in HTTP mode (user group S0APPROVERS = bob); returns it and
/// the address it listens on.
pub async fn http_bot(broker: &Broker, policy: Policy) -> (Bot, std::net::SocketAddr) {
    let fake = FakeSlack::start().await;
    fake.set_usergroup("S0APPROVERS", &["U0BOB"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(aetherv_slack::run(
        engine(broker, policy),
        options(&fake, Mode::Http(listener)),
        stop.clone(),
    ));
    replayed().await;
    (Bot { fake, stop }, addr)
}
