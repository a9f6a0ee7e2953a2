//! The whole flow through Socket Mode: slash command → modal → inline errors → corrected
//! submission → approval message → button click by an approver → job thread → final message
//! with resource ids → log file.

use super::*;
use aetherv_sim::SimConfig;
use aetherv_slack::blocks::{check_message, check_modal};
use aetherv_worker::simulated::Site;
use fake::{button_click, submission, view_state};
use serde_json::Value;
use std::collections::HashMap;

/// Simulated hosts on loopback and an in-process worker serving them.
pub struct World {
    pub broker: Broker,
    stop: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn world(broker: Broker) -> World {
    let stop = CancellationToken::new();
    let site = Site::new(SimConfig::with_hosts(2));
    aetherv_worker::simulated::start_site(&broker, site, &stop)
        .await
        .expect("site");
    World { broker, stop }
}

fn has_button(body: &Value, action: &str) -> bool {
    body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["elements"].as_array().into_iter().flatten())
        .any(|e| e["action_id"] == action)
}

fn text_of(body: &Value) -> String {
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_to_approved_job_thread_and_log_file() {
    full_flow(broker()).await;
}

/// The same flow on a real RabbitMQ (`AETHERV_AMQP_URL`, default the local one), with a
/// per-test name prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_on_rabbitmq() {
    let prefix = format!("slack-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let b = Broker::connect(&amqp_url(), Topology::new(&prefix))
        .await
        .expect("RabbitMQ reachable (set AETHERV_AMQP_URL or run scripts/test.sh)");
    full_flow(b.clone()).await;
    b.close().await;
    let deleted = aetherv_broker::delete_topology(
        &amqp_url(),
        &Topology::new(&prefix),
        &["hv01", "hv02", "cluster.clu01"],
        &[aetherv_bot::LEADER_ROLE],
    )
    .await;
    assert!(
        deleted >= 5,
        "the test's queues and exchanges are removed ({deleted})"
    );
}

async fn full_flow(broker: Broker) {
    let w = world(broker).await;
    let bot = socket_bot(&w.broker, one_approval()).await;
    let fake = &bot.fake;

    // 1. The slash command is acknowledged and the modal opens with the trigger id.
    let ack = fake.slash("U0ALICE", "C0OPS", "deploy vm").await;
    assert_eq!(ack["response_type"], "ephemeral", "{ack}");
    assert_eq!(ack["text"], "Opening the Virtual machine form…");
    let open = fake
        .wait_for("views.open", Duration::from_secs(3), |_| true)
        .await;
    assert!(open.body["trigger_id"]
        .as_str()
        .is_some_and(|t| t.starts_with("trigger.")));
    let view = open.body["view"].clone();
    check_modal(&view).expect("modal within Slack's limits");
    assert_eq!(view["callback_id"], "aetherv_form");
    let blocks: Vec<&str> = view["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter_map(|b| b["block_id"].as_str())
        .collect();
    for f in ["vm_name", "gb_ram", "cpu_cores", "target_host"] {
        assert!(blocks.contains(&f), "{f} in {blocks:?}");
    }

    // 2. An invalid value comes back as an inline error on its field.
    let bad = view_state(
        &[
            ("vm_name", "web01"),
            ("gb_ram", "0"),
            ("cpu_cores", "1"),
            ("target_host", "hv01"),
        ],
        &["target_host"],
    );
    let reply = fake
        .interact(submission("U0ALICE", &view, bad, "V0MAIN"))
        .await;
    assert_eq!(reply["response_action"], "errors", "{reply}");
    let errors = reply["errors"].as_object().expect("errors");
    assert_eq!(errors.len(), 1, "{reply}");
    assert!(errors["gb_ram"].as_str().is_some_and(|m| m.contains("512")));
    assert!(
        fake.calls_of("chat.postMessage").is_empty(),
        "nothing posted for an invalid form"
    );

    // 3. The corrected submission closes the modal and asks for approval, in the approvals
    // channel and in the request's thread, with Approve/Reject buttons.
    let good = view_state(
        &[
            ("vm_name", "web01"),
            ("gb_ram", "2"),
            ("cpu_cores", "1"),
            ("target_host", "hv01"),
        ],
        &["target_host"],
    );
    let reply = fake
        .interact(submission("U0ALICE", &view, good, "V0MAIN"))
        .await;
    assert!(reply.get("response_action").is_none(), "{reply}");
    let root = fake
        .wait_for("chat.postMessage", Duration::from_secs(5), |b| {
            b["channel"] == "C0OPS" && b.get("thread_ts").is_none()
        })
        .await;
    let approval = fake
        .wait_for("chat.postMessage", Duration::from_secs(5), |b| {
            b["channel"] == "C0APPROVALS" && has_button(b, "approve")
        })
        .await;
    assert!(text_of(&root.body).contains("vm.create"));
    let in_thread = fake
        .wait_for("chat.postMessage", Duration::from_secs(5), |b| {
            b.get("thread_ts").is_some() && has_button(b, "approve")
        })
        .await;
    let thread_ts = in_thread.body["thread_ts"]
        .as_str()
        .expect("ts")
        .to_string();
    let job = fake::approval_job(&approval.body);
    assert!(text_of(&approval.body).contains("web01"));

    // 4. A reader's click is refused and decides nothing; only the reader is told, where
    //    they clicked.
    fake.interact(button_click("U0EVE", "C0APPROVALS", "1.1", "approve", &job))
        .await;
    let refused = fake
        .wait_for("chat.postEphemeral", Duration::from_secs(5), |b| {
            text_of(b).contains("approver")
        })
        .await;
    assert_eq!(refused.body["user"], "U0EVE");
    assert_eq!(refused.body["channel"], "C0APPROVALS");
    assert!(fake.calls_of("chat.update").is_empty());
    assert!(
        !fake
            .calls_of("chat.postMessage")
            .iter()
            .any(|c| text_of(&c.body).contains("may not approve")
                || text_of(&c.body).contains("needs the approver")),
        "the refusal is not posted for everyone"
    );
    assert!(
        refused.body.get("thread_ts").is_none(),
        "clicked outside the thread"
    );
    // Clicked on the copy in the request's thread: the answer shows in that thread.
    fake.interact(button_click("U0EVE", "C0OPS", "1.2", "approve", &job))
        .await;
    let in_place = fake
        .wait_for("chat.postEphemeral", Duration::from_secs(5), |b| {
            b["channel"] == "C0OPS"
        })
        .await;
    assert_eq!(in_place.body["thread_ts"], thread_ts.as_str());

    // 5. An approver (through the user group) approves; both approval messages show who.
    fake.interact(button_click("U0BOB", "C0APPROVALS", "1.1", "approve", &job))
        .await;
    let decided = fake
        .wait_for("chat.update", Duration::from_secs(5), |b| {
            b["channel"] == "C0APPROVALS"
        })
        .await;
    let t = text_of(&decided.body);
    assert!(t.contains("Approved") && t.contains("<@U0BOB>"), "{t}");
    assert!(!has_button(&decided.body, "approve"), "buttons removed");
    fake.wait_for("chat.update", Duration::from_secs(5), |b| {
        b["channel"] == "C0OPS" && text_of(b).contains("<@U0BOB>")
    })
    .await;

    // 6. The job thread: status and log messages, the final message with resource ids, the log.
    let done = fake
        .wait_for("chat.postMessage", Duration::from_secs(60), |b| {
            b["thread_ts"] == thread_ts.as_str() && text_of(b).contains("succeeded")
        })
        .await;
    let t = text_of(&done.body);
    assert!(
        t.contains("vm_id"),
        "resource ids in the final message: {t}"
    );
    let upload = fake
        .wait_for(
            "files.completeUploadExternal",
            Duration::from_secs(10),
            |b| b["thread_ts"] == thread_ts.as_str(),
        )
        .await;
    let file_id = upload.body["files"][0]["id"].as_str().expect("file id");
    let uploads = fake.uploads();
    let log = String::from_utf8_lossy(&uploads[file_id]).to_string();
    assert!(!log.trim().is_empty(), "the full log was uploaded");
    let status_posts = fake
        .calls_of("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["thread_ts"] == thread_ts.as_str())
        .count();
    assert!(
        status_posts >= 3,
        "approval, status, log and final in the thread"
    );

    // The status message is edited to its final state.
    let status_ts = fake
        .calls_of("chat.postMessage")
        .into_iter()
        .find(|c| c.body["thread_ts"] == thread_ts.as_str() && text_of(&c.body).contains("queued"))
        .map(|c| c.ts)
        .expect("status posted");
    fake.wait_for("chat.update", Duration::from_secs(5), |b| {
        b["ts"] == status_ts.as_str() && text_of(b).contains("succeeded")
    })
    .await;

    // Every message the bot sent is within Slack's limits; no message edited twice in 1 s.
    let mut last: HashMap<String, tokio::time::Instant> = HashMap::new();
    for c in fake.calls() {
        if c.method == "chat.postMessage" || c.method == "chat.update" {
            let mut body = c.body.clone();
            if let Some(o) = body.as_object_mut() {
                o.retain(|k, _| k == "text" || k == "blocks");
            }
            check_message(&body).expect("message within limits");
        }
        if c.method == "chat.update" {
            let ts = c.body["ts"].as_str().unwrap_or_default().to_string();
            if let Some(prev) = last.insert(ts.clone(), c.at) {
                assert!(
                    c.at - prev >= Duration::from_millis(990),
                    "{ts} edited twice in 1 s"
                );
            }
        }
    }
}
