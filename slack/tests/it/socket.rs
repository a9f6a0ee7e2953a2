//! The Socket Mode transport: Slack's `disconnect` (refresh) and dropped connections.

use super::*;

/// Slack sends `disconnect` and closes the connection a little later: the bot must open the
/// new connection before the old one goes, and keep acknowledging on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_opens_the_new_connection_before_the_old_one_closes() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    fake.wait_connections(1).await;
    fake.refresh_newest(Duration::from_secs(1));
    fake.wait_connections(2).await;
    // The command goes out on the new connection (the fake writes to the newest).
    let ack = fake.slash("U0ALICE", "C0OPS", "vm list").await;
    assert!(ack.to_string().contains("vm list"), "ack: {ack}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let conns = fake.connections();
    assert_eq!(conns.len(), 2, "one refresh, one new connection");
    let old_closed = conns[0]
        .closed
        .expect("the old connection was closed by the fake");
    assert!(
        conns[1].opened < old_closed,
        "the new connection opened before the old one closed"
    );
    assert!(conns[1].closed.is_none(), "the new connection stays open");
}

/// A connection the server drops without warning is reopened and serves again; one that
/// keeps failing right after opening is retried with growing waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_reopened() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    fake.wait_connections(1).await;
    for n in 2..=3 {
        fake.drop_newest();
        fake.wait_connections(n).await;
        let ack = fake.slash("U0ALICE", "C0OPS", "vm list").await;
        assert!(ack.to_string().contains("vm list"), "ack: {ack}");
    }
    let conns = fake.connections();
    assert!(conns[..2].iter().all(|c| c.closed.is_some()));
    assert!(conns[2].closed.is_none());
    // Each lived under 5 s: the bot backed off (1 s, then 2 s) instead of spinning.
    let gap = |i: usize| conns[i + 1].opened - conns[i].closed.expect("closed");
    assert!(gap(0) >= Duration::from_millis(900), "{:?}", gap(0));
    assert!(gap(1) >= Duration::from_millis(1900), "{:?}", gap(1));
    assert_eq!(
        fake.calls_of("apps.connections.open").len(),
        3,
        "each connection asked apps.connections.open for its URL"
    );
}

/// Issue 16, finding 10: an envelope of a type the bot does not know is acknowledged (else
/// Slack redelivers it), and the connection goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_of_an_unknown_type_is_acknowledged() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    let rx = fake.send_envelope("some_future_type", &serde_json::json!({"x": 1}));
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("acknowledged within 5 s")
        .expect("ack");
    let ack = fake.slash("U0ALICE", "C0OPS", "vm list").await;
    assert!(ack.to_string().contains("vm list"), "ack: {ack}");
}
