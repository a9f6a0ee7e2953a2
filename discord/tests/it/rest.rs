//! The REST client (serenity's routes, requests and rate-limit buckets, our retry rules)
//! against the fake: a 429 waited out, a global 429 holding every bucket, a bucket with
//! nothing remaining waited for, 401/403 never retried (nothing more sent after a 401), a
//! refused write not retried, one Discord's edge did not take (503) retried, a file as
//! multipart.

use super::*;
use aetherv_discord::rest::{Body, Rest, RestError};
use serde_json::json;

async fn client() -> (FakeDiscord, Rest) {
    let fake = FakeDiscord::start().await;
    let rest = Rest::new(&fake.api_url, "bot-token-secret", APP).expect("client");
    (fake, rest)
}

async fn post(rest: &Rest, channel: &str, body: Value) -> Result<Value, RestError> {
    rest.post_message(channel, Body::Json(body)).await
}

fn count(fake: &FakeDiscord, path: &str) -> usize {
    fake.calls().iter().filter(|c| c.path == path).count()
}

#[tokio::test]
async fn a_429_is_waited_out_for_its_retry_after_and_nothing_is_lost() {
    let (fake, rest) = client().await;
    fake.script(
        "POST",
        "/channels/1/messages",
        vec![(429, json!({ "message": "You are being rate limited.", "retry_after": 0.3, "global": false }))],
    );
    let msg = post(&rest, "1", json!({ "content": "hi" }))
        .await
        .expect("posted");
    assert!(msg["id"].is_string());
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    // The fake's `Retry-After` is the body's 0.3 s rounded up to whole seconds, as Discord's.
    let gap = calls[1].at.duration_since(calls[0].at);
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    assert_eq!(calls[1].body["content"], "hi");
    assert_eq!(calls[1].auth, "Bot bot-token-secret");
    assert!(calls[1].path == "/channels/1/messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_429_holds_the_calls_of_every_bucket() {
    let (fake, rest) = client().await;
    fake.script_with_headers(
        "POST",
        "/channels/20/",
        vec![(
            429,
            json!({ "message": "You are being rate limited.", "retry_after": 1.0, "global": true }),
            vec![
                ("retry-after", "1".into()),
                ("x-ratelimit-global", "true".into()),
                ("x-ratelimit-scope", "global".into()),
            ],
        )],
    );
    let first = {
        let rest = rest.clone();
        tokio::spawn(async move { post(&rest, "20", json!({ "content": "a" })).await })
    };
    fake.wait_for(Duration::from_secs(5), |c| c.status == 429)
        .await;
    // Another channel (another bucket) waits for the global limit too.
    post(&rest, "21", json!({ "content": "b" }))
        .await
        .expect("posted after the global wait");
    first.await.expect("task").expect("posted after the wait");
    let calls = fake.calls();
    let limited = calls.iter().find(|c| c.status == 429).expect("the 429");
    let other = calls
        .iter()
        .find(|c| c.path == "/channels/21/messages")
        .expect("the other call");
    let gap = other.at.duration_since(limited.at);
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    assert_eq!(count(&fake, "/channels/20/messages"), 2);
    assert_eq!(count(&fake, "/channels/21/messages"), 1);
}

#[tokio::test]
async fn a_401_stops_every_later_call_and_a_403_is_not_retried() {
    let (fake, rest) = client().await;
    fake.script(
        "PATCH",
        "/channels/3/",
        vec![(403, json!({ "message": "Missing Access", "code": 50001 }))],
    );
    fake.script(
        "POST",
        "/channels/2/",
        vec![(401, json!({ "message": "401: Unauthorized", "code": 0 }))],
    );
    let e = rest.edit_message("3", "4", json!({})).await;
    assert!(matches!(e, Err(RestError::Unauthorized(_))), "{e:?}");
    // A 403 is about one resource: other calls still go.
    post(&rest, "9", json!({})).await.expect("posted");
    let e = post(&rest, "2", json!({})).await;
    assert!(matches!(e, Err(RestError::Unauthorized(_))), "{e:?}");
    // The token is revoked: nothing more is sent.
    for ch in ["2", "9", "10"] {
        let e = post(&rest, ch, json!({})).await;
        assert!(matches!(e, Err(RestError::Stopped)), "{e:?}");
    }
    assert_eq!(fake.calls().len(), 3);
    // The token is not in the error text.
    assert!(!format!("{e:?}").contains("bot-token-secret"));
}

#[tokio::test]
async fn a_refused_write_is_not_retried_and_an_unreceived_one_is() {
    let (fake, rest) = client().await;
    fake.script(
        "POST",
        "/channels/5/",
        vec![(
            400,
            json!({ "message": "Invalid Form Body", "code": 50035 }),
        )],
    );
    fake.script(
        "POST",
        "/channels/6/",
        vec![(500, json!({ "message": "500: Internal Server Error" }))],
    );
    fake.script(
        "POST",
        "/channels/7/",
        vec![(503, json!({})), (502, json!({}))],
    );
    fake.script(
        "POST",
        "/channels/8/",
        vec![(404, json!({ "message": "Unknown Channel", "code": 10003 }))],
    );
    let e = post(&rest, "5", json!({})).await;
    assert!(
        matches!(
            e,
            Err(RestError::Refused {
                code: Some(50035),
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(count(&fake, "/channels/5/messages"), 1);
    let e = post(&rest, "8", json!({})).await;
    assert!(e.is_err());
    assert_eq!(count(&fake, "/channels/8/messages"), 1);
    // A 500 to a post may have created the message: not posted twice.
    let e = post(&rest, "6", json!({})).await;
    assert!(e.is_err());
    assert_eq!(count(&fake, "/channels/6/messages"), 1);
    // 503/502 from the edge: Discord did not take it; retried until it does.
    post(&rest, "7", json!({ "content": "x" }))
        .await
        .expect("posted after retries");
    assert_eq!(count(&fake, "/channels/7/messages"), 3);
    // A 500 to an edit (idempotent) is retried.
    fake.script(
        "PATCH",
        "/channels/12/",
        vec![(500, json!({ "message": "500: Internal Server Error" }))],
    );
    rest.edit_message("12", "1", json!({ "content": "y" }))
        .await
        .expect("edited after a retry");
    assert_eq!(count(&fake, "/channels/12/messages/1"), 2);
}

#[tokio::test]
async fn a_post_that_never_reached_discord_is_retried_then_reported_unreachable() {
    // A closed port: the connection is never made, so retrying cannot post twice.
    let rest = Rest::new("http://127.0.0.1:9/api/v10", "t", APP)
        .expect("client")
        .with_deadline(Duration::from_millis(500));
    let started = tokio::time::Instant::now();
    let e = post(&rest, "1", json!({})).await;
    assert!(matches!(e, Err(RestError::Unreachable(_))), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_post_past_its_deadline_is_not_sent_again() {
    // A listener that accepts and never answers: the post may have arrived.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
        }
    });
    let rest = Rest::new(&format!("http://{addr}/api/v10"), "t", APP)
        .expect("client")
        .with_deadline(Duration::from_millis(300));
    let e = post(&rest, "1", json!({})).await;
    assert!(matches!(e, Err(RestError::Unreachable(_))), "{e:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_file_is_sent_as_multipart_with_payload_json() {
    let (fake, rest) = client().await;
    rest.post_message(
        "8",
        Body::File {
            payload: json!({ "content": "log" }),
            name: "job.log".into(),
            content: b"line 1\nline 2\n".to_vec(),
        },
    )
    .await
    .expect("uploaded");
    let c = &fake.calls()[0];
    assert_eq!(c.path, "/channels/8/messages");
    assert!(
        c.content_type.starts_with("multipart/form-data; boundary="),
        "{}",
        c.content_type
    );
    assert_eq!(
        c.body["attachments"],
        json!([{ "id": 0, "filename": "job.log" }])
    );
    let raw = String::from_utf8_lossy(&c.raw);
    assert!(
        raw.contains("name=\"files[0]\"; filename=\"job.log\"") && raw.contains("line 2"),
        "{raw}"
    );
}

#[tokio::test]
async fn a_bucket_with_no_requests_remaining_waits_for_its_reset() {
    let (fake, rest) = client().await;
    let limited = vec![
        ("x-ratelimit-limit", "5".to_string()),
        ("x-ratelimit-remaining", "0".to_string()),
        ("x-ratelimit-reset-after", "0.4".to_string()),
        ("x-ratelimit-bucket", "abcd1234".to_string()),
    ];
    fake.script_with_headers(
        "PATCH",
        "/channels/11/messages/",
        vec![(200, json!({ "id": "1" }), limited)],
    );
    for m in ["1", "2"] {
        rest.edit_message("11", m, json!({ "content": "x" }))
            .await
            .expect("edited");
    }
    // Another channel is another bucket: not held.
    let before = tokio::time::Instant::now();
    rest.edit_message("13", "1", json!({ "content": "x" }))
        .await
        .expect("edited");
    assert!(before.elapsed() < Duration::from_millis(300));
    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    let gap = calls[1].at.duration_since(calls[0].at);
    assert!(gap >= Duration::from_millis(350), "{gap:?}");
}

#[tokio::test]
async fn interaction_answers_go_to_their_webhook_routes_with_the_application_id() {
    let (fake, rest) = client().await;
    rest.respond("786008729715212338", "itok", json!({ "type": 5 }))
        .await
        .expect("answered (204)");
    rest.edit_original("itok", json!({ "content": "done" }))
        .await
        .expect("edited");
    rest.followup("itok", json!({ "content": "more", "flags": 64 }))
        .await
        .expect("followed up");
    rest.put_commands(None, json!([]))
        .await
        .expect("registered globally");
    let calls: Vec<(String, String)> = fake
        .calls()
        .into_iter()
        .map(|c| (c.method, c.path))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "POST".into(),
                "/interactions/786008729715212338/itok/callback".into()
            ),
            (
                "PATCH".into(),
                format!("/webhooks/{APP}/itok/messages/@original")
            ),
            ("POST".into(), format!("/webhooks/{APP}/itok")),
            ("PUT".into(), format!("/applications/{APP}/commands")),
        ]
    );
    // Ids that are not snowflakes are refused before anything is sent, without echoing them.
    let e = rest.respond("x<y", "itok", json!({})).await;
    assert!(matches!(e, Err(RestError::Invalid(_))), "{e:?}");
    assert!(!format!("{e:?}").contains("x<y"));
    assert_eq!(fake.calls().len(), 4);
}
