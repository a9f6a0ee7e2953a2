//! HTTP mode: signed requests only, within the five-minute replay window.

use super::*;
use fake::command_body as form;
use fake::sign;

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Sends a signed POST with a raw HTTP/1.1 request; returns (status, body).
pub async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    ts: i64,
    sig: &str,
    body: &str,
    ctype: &str,
) -> (u16, String) {
    post_bytes(addr, path, (ts, sig), body.as_bytes(), ctype).await
}

/// [`post`] of any bytes.
pub async fn post_bytes(
    addr: std::net::SocketAddr,
    path: &str,
    (ts, sig): (i64, &str),
    body: &[u8],
    ctype: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nx-slack-request-timestamp: {ts}\r\nx-slack-signature: {sig}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let out = String::from_utf8_lossy(&out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

fn command_body(user: &str, text: &str) -> String {
    form(user, "C0OPS", text)
}

fn interaction_body(payload: &serde_json::Value) -> String {
    serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form")
}

/// Slash command → modal → signed view submission with an error → inline errors as the HTTP
/// response → corrected submission → approval → signed button click, all over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_interactions_drive_the_flow_over_http() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let (bot, addr) = http_bot(&b, one_approval()).await;
    let fake = &bot.fake;
    let form = "application/x-www-form-urlencoded";
    let ts = now();
    let signed = |body: &str| sign(SECRET, &ts.to_string(), body);

    // Slack's documented slash-command fields, including ones the bot does not use.
    let body = "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&team_domain=example&enterprise_id=E0001&enterprise_name=Globular%20Construct%20Inc&channel_id=C0OPS&channel_name=ops&user_id=U0ALICE&user_name=alice&command=%2Faether&text=deploy%20vm&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678&trigger_id=13345224609.738474920.8088930838d88f008e0&api_app_id=A123456&is_enterprise_install=false";
    let (status, ack) = post(addr, "/slack/commands", ts, &signed(body), body, form).await;
    assert_eq!(status, 200, "{ack}");
    let open = fake
        .wait_for("views.open", Duration::from_secs(3), |_| true)
        .await;
    assert_eq!(
        open.body["trigger_id"],
        "13345224609.738474920.8088930838d88f008e0"
    );
    let view = open.body["view"].clone();

    // The vm form for web01 on hv01 with `cpu` cores, submitted by alice.
    let vm_form = |cpu: &str| {
        let state = fake::view_state(
            &[
                ("vm_name", "web01"),
                ("cpu_cores", cpu),
                ("target_host", "hv01"),
            ],
            &["target_host"],
        );
        fake::submission("U0ALICE", &view, state, "V0HTTP")
    };
    let body = interaction_body(&vm_form("65"));
    let (status, reply) = post(addr, "/slack/interactions", ts, &signed(&body), &body, form).await;
    assert_eq!(status, 200);
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("json");
    assert_eq!(reply["response_action"], "errors");
    assert!(reply["errors"]["cpu_cores"].as_str().is_some(), "{reply}");

    let body = interaction_body(&vm_form("2"));
    let (status, reply) = post(addr, "/slack/interactions", ts, &signed(&body), &body, form).await;
    assert_eq!(
        (status, reply.as_str()),
        (200, ""),
        "an empty 200 closes the modal"
    );
    let approval = fake
        .wait_for("chat.postMessage", Duration::from_secs(5), |b| {
            b["channel"] == "C0APPROVALS"
        })
        .await;
    let job = approval.body["blocks"][4]["elements"][0]["value"]
        .as_str()
        .expect("job on the button")
        .to_string();
    let click = fake::button_click("U0BOB", "C0APPROVALS", &approval.ts, "approve", &job);
    let body = interaction_body(&click);
    let (status, _) = post(addr, "/slack/interactions", ts, &signed(&body), &body, form).await;
    assert_eq!(status, 200);
    fake.wait_for("chat.update", Duration::from_secs(5), |b| {
        b["ts"] == approval.ts.as_str() && b.to_string().contains("Approved")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_requests_are_refused_valid_ones_served() {
    let b = broker();
    let (bot, addr) = http_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    let form = "application/x-www-form-urlencoded";
    let body = command_body("U0ALICE", "deploy vm");
    let ts = now();

    // A signature made with another secret.
    let forged = sign("not-the-secret", &ts.to_string(), &body);
    let (status, _) = post(addr, "/slack/commands", ts, &forged, &body, form).await;
    assert_eq!(status, 401);
    // A valid signature over a different body (tampered payload).
    let other = command_body("U0ALICE", "vm delete web01 --force");
    let sig = sign(SECRET, &ts.to_string(), &other);
    let (status, _) = post(addr, "/slack/commands", ts, &sig, &body, form).await;
    assert_eq!(status, 401);
    // A correctly signed request replayed after the five-minute window.
    let stale = ts - 301;
    let sig = sign(SECRET, &stale.to_string(), &body);
    let (status, _) = post(addr, "/slack/commands", stale, &sig, &body, form).await;
    assert_eq!(status, 401);
    assert!(
        fake.calls_of("views.open").is_empty(),
        "nothing done for refused requests"
    );

    // A valid request is acknowledged and opens the modal.
    let sig = sign(SECRET, &ts.to_string(), &body);
    let (status, ack) = post(addr, "/slack/commands", ts, &sig, &body, form).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ack).expect("json ack")["response_type"],
        "ephemeral"
    );
    fake.wait_for("views.open", Duration::from_secs(3), |_| true)
        .await;

    // The Events API URL check.
    let ev = r#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let sig = sign(SECRET, &ts.to_string(), ev);
    let (status, out) = post(addr, "/slack/events", ts, &sig, ev, "application/json").await;
    assert_eq!(status, 200);
    assert!(out.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"));

    // A signed interaction with a bad signature is refused too.
    let payload = format!(
        "payload={}",
        serde_urlencoded::to_string([("x", "{}")])
            .expect("enc")
            .trim_start_matches("x=")
    );
    let (status, _) = post(addr, "/slack/interactions", ts, &forged, &payload, form).await;
    assert_eq!(status, 401);
}

/// Issue 16, finding 10: a correctly signed body that is not UTF-8 is a bad request (400); the
/// same body with a wrong signature is still 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_body_that_is_not_utf8_is_a_bad_request() {
    let b = broker();
    let (_bot, addr) = http_bot(&b, Policy::default()).await;
    let form = "application/x-www-form-urlencoded";
    let body: &[u8] = b"command=%2Faether&user_id=U0ALICE&text=\xff\xfe";
    let ts = now();
    let sig = fake::sign_bytes(SECRET, &ts.to_string(), body);
    let (status, _) = post_bytes(addr, "/slack/commands", (ts, &sig), body, form).await;
    assert_eq!(status, 400);
    let forged = fake::sign_bytes("not-the-secret", &ts.to_string(), body);
    let (status, _) = post_bytes(addr, "/slack/commands", (ts, &forged), body, form).await;
    assert_eq!(status, 401);
}
