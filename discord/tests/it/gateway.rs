//! The Gateway mode through serenity against the fake Gateway and the fake REST API: the
//! IDENTIFY, interactions answered through the REST callback, RESUME after a reconnect (op 7)
//! or a resumable close, and a refused token or intents stopping the bot for good.

use super::*;
use fake_gateway::SESSION;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_identifies_with_its_token_and_guilds_only_and_answers_through_the_callback() {
    let b = gateway_bot(&broker(), one_approval()).await;
    let gw = b.gateway.clone().expect("gateway");
    let identify = gw
        .received()
        .into_iter()
        .find(|s| s.op == 2)
        .expect("identify");
    assert_eq!(identify.d["intents"], json!(GUILDS_INTENT));
    // serenity asks for payload compression: the fake sent READY zlib-compressed, and the
    // session it carries is the one resumed in the reconnect tests.
    assert_eq!(identify.d["compress"], json!(true));
    let token = identify.d["token"].as_str().unwrap_or_default();
    assert_eq!(token.strip_prefix("Bot ").unwrap_or(token), TOKEN);
    // A command: the callback defers it at once, the answer edits @original later.
    let started = tokio::time::Instant::now();
    let (_, answer) = b
        .post(&command(ALICE, &[], &["hosts"], &json!([]), "tok-gw-hosts"))
        .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(answer, json!({ "type": 5 }));
    let callback = b
        .fake
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/tok-gw-hosts/callback"))
        .expect("callback");
    assert_eq!(
        callback.path,
        "/interactions/786008729715212338/tok-gw-hosts/callback"
    );
    let edit = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.path == format!("/webhooks/{APP}/tok-gw-hosts/messages/@original")
        })
        .await;
    let text = edit.body["content"].as_str().unwrap_or_default();
    assert!(text.contains("hv01") && text.contains("hv02"), "{text}");
    // Heartbeats are sent at the interval HELLO asked for, and acknowledged.
    gw.wait_until(Duration::from_secs(5), |s| s.iter().any(|f| f.op == 1))
        .await;
    // `/aether` is registered at start over REST, as in HTTP mode.
    b.fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "PUT" && c.path == format!("/applications/{APP}/guilds/{GUILD}/commands")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_payloads_over_the_gateway_are_parsed_and_answered() {
    let b = gateway_bot(&broker(), one_approval()).await;
    http_mode::documented_payloads_answered(&b).await;
}

/// Waits for a RESUME of the fake's session on a later connection; no second IDENTIFY.
async fn resumed(gw: &FakeGateway) {
    gw.wait_until(Duration::from_secs(10), |s| {
        s.iter()
            .any(|f| f.op == 6 && f.connection > 1 && f.d["session_id"] == SESSION)
    })
    .await;
    let sent = gw.received();
    let resume = sent.iter().find(|f| f.op == 6).expect("resume");
    assert!(
        resume.d["seq"].as_u64().is_some_and(|s| s >= 1),
        "{:?}",
        resume.d
    );
    let token = resume.d["token"].as_str().unwrap_or_default();
    assert_eq!(token.strip_prefix("Bot ").unwrap_or(token), TOKEN);
    assert_eq!(sent.iter().filter(|f| f.op == 2).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_request_is_resumed_and_interactions_keep_coming() {
    let b = gateway_bot(&broker(), one_approval()).await;
    let gw = b.gateway.clone().expect("gateway");
    gw.reconnect().await;
    resumed(&gw).await;
    let (_, answer) = b
        .post(&command(
            ALICE,
            &[],
            &["hosts"],
            &json!([]),
            "tok-after-op7",
        ))
        .await;
    assert_eq!(answer, json!({ "type": 5 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_close_is_resumed_and_interactions_keep_coming() {
    let b = gateway_bot(&broker(), one_approval()).await;
    let gw = b.gateway.clone().expect("gateway");
    // 4000 "unknown error": Discord's docs say reconnect (and resume).
    gw.close(4000).await;
    resumed(&gw).await;
    let (_, answer) = b
        .post(&command(
            ALICE,
            &[],
            &["hosts"],
            &json!([]),
            "tok-after-4000",
        ))
        .await;
    assert_eq!(answer, json!({ "type": 5 }));
}

/// The bot against a Gateway that refuses its IDENTIFY: its error, and how many connections it
/// made by a while after it stopped.
async fn refused(gw: FakeGateway) -> (String, usize) {
    let mut b = start_gateway_bot(&broker(), one_approval(), gw.clone()).await;
    let out = tokio::time::timeout(Duration::from_secs(15), &mut b.run)
        .await
        .expect("the bot stops")
        .expect("the bot's task");
    let err = out.expect_err("a refused identify is an error");
    // serenity would boot a shard again 5 s after a restart: nothing comes.
    tokio::time::sleep(Duration::from_secs(6)).await;
    (format!("{err:#}"), gw.connections())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4004_authentication_failed_stops_the_bot_with_a_clear_error_and_no_reconnect() {
    let gw = FakeGateway::start("another-token", GUILDS_INTENT).await;
    let (err, connections) = refused(gw).await;
    assert!(err.contains("4004") && err.contains("token"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    assert_eq!(connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4014_disallowed_intents_stops_the_bot_with_a_clear_error_and_no_reconnect() {
    let gw = FakeGateway::start(TOKEN, GUILDS_INTENT).await;
    gw.refuse_next_identify(4014);
    let (err, connections) = refused(gw).await;
    assert!(err.contains("4014") && err.contains("intent"), "{err}");
    assert_eq!(connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_flow_over_the_gateway_ends_with_the_job_thread_and_its_log_file() {
    flow::approved_job_flow(true).await;
}
