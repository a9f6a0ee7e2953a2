//! A bot restarted while a request awaits approval: the old message's button still works and
//! that message is updated with the decision.

use super::*;
use fake::button_click;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_posted_before_a_restart_is_decided_after_it() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let first = socket_bot(&b, one_approval()).await;
    first
        .fake
        .slash(
            "U0ALICE",
            "C0OPS",
            "deploy vm vm_name=web07 target_host=hv01",
        )
        .await;
    let approval = first
        .fake
        .wait_for("chat.postMessage", Duration::from_secs(5), |b| {
            b["channel"] == "C0APPROVALS"
        })
        .await;
    let job = fake::approval_job(&approval.body);
    let old_ts = approval.ts.clone();
    first.stop.cancel();
    drop(first);

    let second = socket_bot(&b, one_approval()).await;
    // Give the new bot its leadership and the replay.
    tokio::time::sleep(Duration::from_millis(800)).await;
    second
        .fake
        .interact(button_click(
            "U0BOB",
            "C0APPROVALS",
            &old_ts,
            "approve",
            &job,
        ))
        .await;
    let upd = second
        .fake
        .wait_for("chat.update", Duration::from_secs(10), |b| {
            b["channel"] == "C0APPROVALS" && b["ts"] == old_ts.as_str()
        })
        .await;
    let t = upd.body.to_string();
    assert!(t.contains("Approved") && t.contains("<@U0BOB>"), "{t}");
    let buttons = upd.body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b: &Value| b["type"] == "actions");
    assert!(!buttons, "the buttons are gone");
}

/// A reject vetoes and an unanswered request expires; both approval messages say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_expired_requests_update_their_messages() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let policy = Policy::from_yaml(
        "rules:\n  - name: short\n    approvals: 1\n    groups: [approvers]\n    ttl_secs: 2\n",
    )
    .expect("policy");
    let bot = socket_bot(&b, policy).await;
    let fake = &bot.fake;
    let mut jobs = Vec::new();
    for name in ["web10", "web11"] {
        fake.slash(
            "U0ALICE",
            "C0OPS",
            &format!("deploy vm vm_name={name} target_host=hv01"),
        )
        .await;
        let a = fake
            .wait_for("chat.postMessage", Duration::from_secs(5), |b| {
                b["channel"] == "C0APPROVALS" && b.to_string().contains(name)
            })
            .await;
        let job = a.body["blocks"][4]["elements"][0]["value"]
            .as_str()
            .expect("job")
            .to_string();
        jobs.push((a.ts, job));
    }
    let (rejected_ts, rejected_job) = &jobs[0];
    fake.interact(button_click(
        "U0CAROL",
        "C0APPROVALS",
        rejected_ts,
        "reject",
        rejected_job,
    ))
    .await;
    let upd = fake
        .wait_for("chat.update", Duration::from_secs(5), |b| {
            b["ts"] == rejected_ts.as_str()
        })
        .await;
    let t = upd.body.to_string();
    assert!(t.contains("Rejected") && t.contains("<@U0CAROL>"), "{t}");
    let (expired_ts, _) = &jobs[1];
    let upd = fake
        .wait_for("chat.update", Duration::from_secs(10), |b| {
            b["ts"] == expired_ts.as_str()
        })
        .await;
    assert!(upd.body.to_string().contains("Expired"), "{}", upd.body);
    // A click after the decision changes nothing and tells the clicker alone who decided.
    fake.interact(button_click(
        "U0BOB",
        "C0APPROVALS",
        rejected_ts,
        "approve",
        rejected_job,
    ))
    .await;
    let told = fake
        .wait_for("chat.postEphemeral", Duration::from_secs(5), |b| {
            b.to_string().contains("already rejected by U0CAROL")
        })
        .await;
    assert_eq!(told.body["user"], "U0BOB");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let updates = fake
        .calls_of("chat.update")
        .into_iter()
        .filter(|c| c.ts == *rejected_ts)
        .count();
    assert_eq!(updates, 1, "the decided message is not edited again");
}
