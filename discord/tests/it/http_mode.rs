//! HTTP mode: signatures, the replay window, PING, and Discord's documented payload shapes.

use super::*;

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect("fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_pong() {
    let b = bot(&broker(), one_approval()).await;
    let body = fixture("ping.json");
    let (status, answer) = post_signed(b.addr, &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer, serde_json::json!({ "type": 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_wrong_key_stale_and_missing_headers_are_refused() {
    let b = bot(&broker(), one_approval()).await;
    let body = fixture("ping.json");
    // No headers at all.
    assert_eq!(post(b.addr, &body, &[]).await.0, 401);
    // Only the timestamp.
    let ts = vec![("x-signature-timestamp", now().to_string())];
    assert_eq!(post(b.addr, &body, &ts).await.0, 401);
    // Signed by another key.
    assert_eq!(
        post(b.addr, &body, &sign(&other_key(), now(), &body))
            .await
            .0,
        401
    );
    // A valid signature over another body (forged body).
    let forged = sign(&app_key(), now(), &body);
    let tampered = body.replace("\"type\": 1", "\"type\": 2");
    assert_ne!(tampered, body);
    assert_eq!(post(b.addr, &tampered, &forged).await.0, 401);
    // A valid signature, but the timestamp changed after signing.
    let mut moved = sign(&app_key(), now(), &body);
    moved[1].1 = (now() - 1).to_string();
    assert_eq!(post(b.addr, &body, &moved).await.0, 401);
    // Stale: signed correctly ten minutes ago (a replay).
    assert_eq!(
        post(b.addr, &body, &sign(&app_key(), now() - 600, &body))
            .await
            .0,
        401
    );
    // Garbage signature.
    let garbage = vec![
        ("x-signature-ed25519", "nothex".to_string()),
        ("x-signature-timestamp", now().to_string()),
    ];
    assert_eq!(post(b.addr, &body, &garbage).await.0, 401);
    // And nothing reached Discord (besides the command registration at start).
    assert!(
        b.fake.calls().iter().all(|c| c.method == "PUT"),
        "{:?}",
        b.fake.calls()
    );
    // The correctly signed one passes.
    assert_eq!(post_signed(b.addr, &body).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_payloads_are_parsed_and_answered() {
    documented_payloads_answered(&bot(&broker(), one_approval()).await).await;
}

/// Discord's documented payloads sent to `b` (signed to its endpoint, or over the Gateway).
pub async fn documented_payloads_answered(b: &Bot) {
    // An application command with a subcommand group, subcommand and option: deferred.
    let (status, answer) = b.post(&fixture("application_command.json")).await;
    assert_eq!(
        (status, answer["type"].clone()),
        (200, serde_json::json!(5))
    );
    let edit = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "PATCH" && c.path.ends_with("/messages/@original")
        })
        .await;
    assert_eq!(
        edit.path,
        format!("/webhooks/{APP}/A_UNIQUE_TOKEN/messages/@original")
    );
    assert!(edit.body["content"].is_string(), "{}", edit.body);
    // Autocomplete on the host option: choices from the inventory, at most 25.
    let (status, answer) = b.post(&fixture("autocomplete.json")).await;
    assert_eq!(
        (status, answer["type"].clone()),
        (200, serde_json::json!(8))
    );
    let choices = answer["data"]["choices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(choices.len() <= 25);
    let names: Vec<&str> = choices.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["hv01", "hv02"], "{answer}");
    // A button that is not ours: answered to the clicker alone.
    let (status, answer) = b.post(&fixture("button.json")).await;
    assert_eq!(
        (status, answer["type"].clone()),
        (200, serde_json::json!(4))
    );
    assert_eq!(answer["data"]["flags"], serde_json::json!(64));
    // Modal submits (both shapes) are read and answered ephemerally (forms are not built yet).
    for f in ["modal_submit_action_row.json", "modal_submit_label.json"] {
        let (status, answer) = b.post(&fixture(f)).await;
        assert_eq!(
            (status, answer["type"].clone()),
            (200, serde_json::json!(4)),
            "{f}"
        );
        assert_eq!(answer["data"]["flags"], serde_json::json!(64), "{f}");
    }
}
