//! The REST client against the fake: 429 waited out, 401/403 never retried, a refused write
//! not retried, one Discord's edge did not take (503) retried.

use super::*;
use aetherv_discord::rest::{Body, Rest, RestError};
use hyper::Method;
use serde_json::json;

async fn client() -> (FakeDiscord, Rest) {
    let fake = FakeDiscord::start().await;
    let rest = Rest::new(&fake.api_url, "bot-token-secret").expect("client");
    (fake, rest)
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
    let started = tokio::time::Instant::now();
    let msg = rest
        .call(
            Method::POST,
            "/channels/1/messages",
            Some(Body::Json(json!({ "content": "hi" }))),
        )
        .await
        .expect("posted");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(msg["id"].is_string());
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].body["content"], "hi");
    assert_eq!(calls[1].auth, "Bot bot-token-secret");
}

#[tokio::test]
async fn unauthorized_and_forbidden_are_never_retried() {
    let (fake, rest) = client().await;
    fake.script(
        "POST",
        "/channels/2/",
        vec![(401, json!({ "message": "401: Unauthorized", "code": 0 }))],
    );
    fake.script(
        "PATCH",
        "/channels/3/",
        vec![(403, json!({ "message": "Missing Access", "code": 50001 }))],
    );
    let e = rest
        .call(
            Method::POST,
            "/channels/2/messages",
            Some(Body::Json(json!({}))),
        )
        .await;
    assert!(matches!(e, Err(RestError::Unauthorized(_))), "{e:?}");
    let e = rest
        .call(
            Method::PATCH,
            "/channels/3/messages/4",
            Some(Body::Json(json!({}))),
        )
        .await;
    assert!(matches!(e, Err(RestError::Unauthorized(_))), "{e:?}");
    assert_eq!(fake.calls().len(), 2);
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
    let e = rest
        .call(
            Method::POST,
            "/channels/5/messages",
            Some(Body::Json(json!({}))),
        )
        .await;
    assert!(matches!(e, Err(RestError::Refused { .. })), "{e:?}");
    assert_eq!(count(&fake, "/channels/5/messages"), 1);
    // A 500 to a post may have created the message: not posted twice.
    let e = rest
        .call(
            Method::POST,
            "/channels/6/messages",
            Some(Body::Json(json!({}))),
        )
        .await;
    assert!(e.is_err());
    assert_eq!(count(&fake, "/channels/6/messages"), 1);
    // 503/502 from the edge: Discord did not take it; retried until it does.
    rest.call(
        Method::POST,
        "/channels/7/messages",
        Some(Body::Json(json!({ "content": "x" }))),
    )
    .await
    .expect("posted after retries");
    assert_eq!(count(&fake, "/channels/7/messages"), 3);
}

#[tokio::test]
async fn a_post_that_never_reached_discord_is_retried_then_reported_unreachable() {
    // A closed port: the connection is never made, so retrying cannot post twice.
    let rest = Rest::new("http://127.0.0.1:9/api/v10", "t")
        .expect("client")
        .with_deadline(Duration::from_millis(500));
    let e = rest
        .call(
            Method::POST,
            "/channels/1/messages",
            Some(Body::Json(json!({}))),
        )
        .await;
    assert!(matches!(e, Err(RestError::Unreachable(_))), "{e:?}");
}

#[tokio::test]
async fn a_file_is_sent_as_multipart_with_payload_json() {
    let (fake, rest) = client().await;
    rest.call(
        Method::POST,
        "/channels/8/messages",
        Some(Body::File {
            payload: json!({ "content": "log" }),
            name: "job.log".into(),
            content: b"line 1\nline 2\n".to_vec(),
        }),
    )
    .await
    .expect("uploaded");
    let c = &fake.calls()[0];
    assert!(c.content_type.starts_with("multipart/form-data; boundary="));
    assert_eq!(
        c.body["attachments"],
        json!([{ "id": 0, "filename": "job.log" }])
    );
    let raw = String::from_utf8_lossy(&c.raw);
    assert!(raw.contains("name=\"files[0]\"; filename=\"job.log\"") && raw.contains("line 2"));
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
    for _ in 0..2 {
        rest.call(
            Method::PATCH,
            "/channels/11/messages/1",
            Some(Body::Json(json!({ "content": "x" }))),
        )
        .await
        .expect("edited");
    }
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let gap = calls[1].at.duration_since(calls[0].at);
    assert!(gap >= Duration::from_millis(350), "{gap:?}");
}
