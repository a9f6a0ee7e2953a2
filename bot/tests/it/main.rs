//! Integration tests of the bot engine: approval rules through the engine and the in-process
//! broker, job threads against simulated hosts and an in-process worker, and restarts that
//! rebuild state from the event stream. One integration binary (see STYLE.md).

mod api;
mod approvals;
mod changes;
mod gate;
mod guided;
mod hardening;
mod show;
mod threads;

use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_bot::reply::Reply;
use aetherv_bot::thread::DEFAULT_LIMITS;
use aetherv_broker::{Broker, EventStream, StreamOffset, Topology};
use aetherv_core::approval::Policy;
use aetherv_core::rbac::{Principal, Rbac};
use aetherv_core::Platform;
use std::time::Duration;

/// alice and frank operate, bob/carol/dave approve, eve only reads, root administers.
pub const ROLES: &str = r#"
groups:
  - name: ops
    roles: [operator]
    members: ["console:alice", "console:frank"]
  - name: approvers
    roles: [approver]
    members: ["console:bob", "console:carol", "console:dave", "console:alice"]
  - name: readers
    roles: [reader]
    members: ["console:eve"]
  - name: admins
    roles: [admin]
    members: ["console:root"]
"#;

/// A policy asking `n` approvals from `approvers` for everything, with a TTL.
pub fn policy(n: u32, ttl_secs: u64) -> Policy {
    Policy::from_yaml(&format!(
        "rules:\n  - name: all\n    approvals: {n}\n    groups: [approvers]\n    ttl_secs: {ttl_secs}\n"
    ))
    .expect("policy")
}

/// An engine over `broker`.
pub fn engine(broker: &Broker, policy: Policy, hosts: &[&str]) -> Engine {
    engine_with(broker, policy, hosts, Vec::new())
}

/// An engine over `broker` that seals secret values to `recipients`.
pub fn engine_with(
    broker: &Broker,
    policy: Policy,
    hosts: &[&str],
    recipients: Vec<aetherv_core::secrets::Recipient>,
) -> Engine {
    Engine::new(
        broker.clone(),
        EngineConfig {
            rbac: Rbac::from_yaml(ROLES).expect("roles"),
            policy,
            limits: DEFAULT_LIMITS,
            platform: Platform::Console,
            channel: "console".into(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            recipients,
            signer: None,
        },
    )
    .expect("engine")
}

/// A fresh in-process broker.
pub fn broker() -> Broker {
    Broker::in_process(Topology::new(format!(
        "bot-{}",
        uuid::Uuid::new_v4().simple()
    )))
}

/// Says `line` as `user` and returns the texts of the replies.
pub async fn say(e: &mut Engine, user: &str, line: &str) -> Vec<String> {
    e.handle_line(&Principal::console(user), line)
        .await
        .expect("handled")
        .iter()
        .flat_map(|r| aetherv_bot::console::format_reply(&console(), r))
        .collect()
}

/// The console templates.
pub fn console() -> aetherv_bot::render::Renderer {
    aetherv_bot::render::Renderer::console().expect("templates")
}

/// The console texts of replies.
pub fn texts(out: &[Reply]) -> Vec<String> {
    let r = console();
    out.iter()
        .flat_map(|o| aetherv_bot::console::format_reply(&r, o))
        .collect()
}

/// Feeds events and ticks to the engine until `done` holds (or panics after `limit`).
pub async fn pump(
    e: &mut Engine,
    events: &mut EventStream,
    limit: Duration,
    done: impl Fn(&Engine) -> bool,
) -> Vec<Reply> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while !done(e) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached; got {out:#?}"
        );
        tokio::select! {
            ev = events.next() => {
                let (_, ev) = ev.expect("stream open");
                out.extend(e.handle_event(&ev, tokio::time::Instant::now()));
            }
            _ = tick.tick() => out.extend(e.tick(tokio::time::Instant::now()).await.expect("tick")),
        }
    }
    out
}

/// A replay from the start.
pub async fn replay(b: &Broker) -> EventStream {
    b.replay_events(StreamOffset::First).await.expect("replay")
}
