//! Commands and approvals end to end: signed interactions in, REST calls to the fake out.

use super::*;
use serde_json::json;

fn approval_job(body: &Value) -> String {
    body["components"][0]["components"][0]["custom_id"]
        .as_str()
        .and_then(|s| s.strip_prefix("aether:approve:"))
        .expect("approve button")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_deferred_then_answered_by_editing_the_original() {
    let b = bot(&broker(), one_approval()).await;
    let body = command(ALICE, &[], &["hosts"], &json!([]), "tok-hosts");
    let started = tokio::time::Instant::now();
    let (status, answer) = post_signed(b.addr, &body).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!((status, answer), (200, json!({ "type": 5 })));
    let edit = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.path == format!("/webhooks/{APP}/tok-hosts/messages/@original")
        })
        .await;
    assert_eq!(edit.method, "PATCH");
    let text = edit.body["content"].as_str().unwrap_or_default();
    assert!(text.contains("hv01") && text.contains("hv02"), "{text}");
    assert_eq!(edit.body["allowed_mentions"], json!({ "parse": [] }));
    // The token is the bot's header, never in a body.
    assert!(!edit.raw.windows(16).any(|w| w == b"bot-token-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_caller_may_not_run_is_answered_with_the_refusal() {
    let b = bot(&broker(), one_approval()).await;
    let body = command(
        EVE,
        &[],
        &["vm", "start"],
        &json!([{ "name": "name", "type": 3, "value": "web01" }]),
        "tok-eve",
    );
    assert_eq!(post_signed(b.addr, &body).await.1, json!({ "type": 5 }));
    let edit = b
        .fake
        .wait_for(Duration::from_secs(5), |c| c.path.contains("/tok-eve/"))
        .await;
    let text = edit.body["content"].as_str().unwrap_or_default();
    assert!(text.contains("operator"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_buttons_vote_refusals_go_to_the_clicker_and_the_decision_removes_them() {
    let br = broker();
    br.declare_host("hv01").await.expect("declare");
    let b = bot(&br, one_approval()).await;
    let body = command(
        ALICE,
        &[],
        &["deploy", "vm"],
        &json!([
            { "name": "vm_name", "type": 3, "value": "web07" },
            { "name": "target_host", "type": 3, "value": "hv01" }
        ]),
        "tok-deploy",
    );
    assert_eq!(post_signed(b.addr, &body).await.1, json!({ "type": 5 }));
    let approval = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "POST" && c.path == format!("/channels/{APPROVALS}/messages")
        })
        .await;
    assert_eq!(approval.auth, "Bot bot-token-secret");
    let job = approval_job(&approval.body);
    let buttons = &approval.body["components"][0]["components"];
    assert_eq!(buttons[0]["label"], "Approve");
    assert_eq!(buttons[1]["custom_id"], format!("aether:reject:{job}"));

    // Alice may not approve her own request; eve may not approve at all: the clicker alone.
    for (who, token) in [(ALICE, "tok-alice"), (EVE, "tok-eve")] {
        let c = click(
            who,
            &[],
            &format!("aether:approve:{job}"),
            APPROVALS,
            "1",
            token,
        );
        assert_eq!(post_signed(b.addr, &c).await.1, json!({ "type": 6 }));
        let f = b
            .fake
            .wait_for(Duration::from_secs(5), |c| {
                c.method == "POST" && c.path == format!("/webhooks/{APP}/{token}")
            })
            .await;
        assert_eq!(f.body["flags"], json!(64), "{}", f.body);
    }

    // Bob (an approver by role) approves: the request message is edited, buttons gone.
    let c = click(
        BOB,
        &[APPROVERS],
        &format!("aether:approve:{job}"),
        APPROVALS,
        "1",
        "tok-bob",
    );
    assert_eq!(post_signed(b.addr, &c).await.1, json!({ "type": 6 }));
    let edit = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "PATCH"
                && c.path
                    .starts_with(&format!("/channels/{APPROVALS}/messages/"))
        })
        .await;
    assert_eq!(edit.body["components"], json!([]));
    let text = edit.body["content"].as_str().unwrap_or_default();
    assert!(text.to_lowercase().contains("approved"), "{text}");

    // A late click on the decided request: answered to the clicker only, nothing re-edited.
    let c = click(
        BOB,
        &[APPROVERS],
        &format!("aether:reject:{job}"),
        APPROVALS,
        "1",
        "tok-late",
    );
    post_signed(b.addr, &c).await;
    let late = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.path == format!("/webhooks/{APP}/tok-late")
        })
        .await;
    assert_eq!(late.body["flags"], json!(64));
    let edits = b
        .fake
        .calls()
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.starts_with(&format!("/channels/{APPROVALS}/")))
        .count();
    assert_eq!(edits, 1);
}
