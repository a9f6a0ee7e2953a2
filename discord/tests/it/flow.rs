//! Commands and approvals end to end: signed interactions in, REST calls to the fake out.

use super::*;
use serde_json::json;

/// A click on an approval button by `who` (with `roles`) in the approvals channel, which
/// is acknowledged as a deferred update.
async fn vote(b: &Bot, who: &str, roles: &[&str], approve: bool, job: &str, token: &str) {
    let verb = if approve { "approve" } else { "reject" };
    let id = format!("aether:{verb}:{job}");
    let c = click(who, roles, &id, APPROVALS, "1", token);
    assert_eq!(b.post(&c).await.1, json!({ "type": 6 }));
}

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
    let (status, answer) = b.post(&body).await;
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
    assert_eq!(b.post(&body).await.1, json!({ "type": 5 }));
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
    forms::deploy(
        &b,
        ALICE,
        "vm",
        &json!([
            { "name": "gb_ram", "type": 4, "value": 4 },
            { "name": "cpu_cores", "type": 4, "value": 2 },
            { "name": "target_host", "type": 3, "value": "hv01" }
        ]),
        &[&[("vm_name", "web07")]],
        "tok-deploy",
    )
    .await;
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
        vote(&b, who, &[], true, &job, token).await;
        let f = b
            .fake
            .wait_for(Duration::from_secs(5), |c| {
                c.method == "POST" && c.path == format!("/webhooks/{APP}/{token}")
            })
            .await;
        assert_eq!(f.body["flags"], json!(64), "{}", f.body);
    }

    // Bob (an approver by role) approves: the request message is edited, buttons gone.
    vote(&b, BOB, &[APPROVERS], true, &job, "tok-bob").await;
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
    // The copy in the job's thread is edited the same way.
    let copy = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "PATCH"
                && c.path.starts_with("/channels/")
                && !c.path.starts_with(&format!("/channels/{APPROVALS}/"))
                && c.body["components"] == json!([])
        })
        .await;
    assert_eq!(copy.body["content"], edit.body["content"]);

    // A late click on the decided request: answered to the clicker only, nothing re-edited.
    vote(&b, BOB, &[APPROVERS], false, &job, "tok-late").await;
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

/// Simulated hosts on loopback and an in-process worker serving them.
struct World {
    stop: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn world(broker: &Broker) -> World {
    let stop = CancellationToken::new();
    let mut site = aetherv_worker::simulated::Site::new(aetherv_sim::SimConfig::with_hosts(2));
    site.identity = Some(aetherv_core::secrets::identity_text(worker_identity()).to_string());
    aetherv_worker::simulated::start_site(broker, site, &stop)
        .await
        .expect("site");
    World { stop }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_job_gets_a_thread_with_status_and_log_messages_a_final_message_and_its_log_file(
) {
    approved_job_flow(false).await;
}

/// The same flow on a real RabbitMQ (`AETHERV_AMQP_URL`, default the local one) under a
/// per-test prefix, whose queues and exchanges are deleted afterwards. Fails without a broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_flow_on_rabbitmq() {
    let url = std::env::var("AETHERV_AMQP_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let prefix = format!(
        "discord-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let br = Broker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ is not reachable at AETHERV_AMQP_URL ({e}): run scripts/test.sh or start one")
        });
    full_flow(br.clone(), false).await;
    br.close().await;
    let deleted = aetherv_broker::delete_topology(
        &url,
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

/// The full flow on a simulated site, in HTTP mode or over the Gateway: autocomplete, a page
/// with errors corrected, a parameter set, Submit, the approval, the job's thread to its end.
pub async fn approved_job_flow(gateway: bool) {
    full_flow(broker(), gateway).await;
}

async fn full_flow(br: Broker, gateway: bool) {
    let _w = world(&br).await;
    let b = if gateway {
        gateway_bot(&br, one_approval()).await
    } else {
        bot(&br, one_approval()).await
    };
    // Autocomplete from the hosts' inventory, narrowed by the host chosen.
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    let choices = loop {
        let (_, c) = b
            .post(&forms::autocomplete(ALICE, "image_name", "ub"))
            .await;
        if c["data"]["choices"][0].is_object() || tokio::time::Instant::now() > until {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        choices["data"]["choices"][0]["value"], "Ubuntu 24.04",
        "{choices}"
    );
    let (_, nets) = b.post(&forms::autocomplete(ALICE, "network", "")).await;
    assert_eq!(
        nets["data"]["choices"],
        json!([{ "name": "dev", "value": "dev" }, { "name": "prod", "value": "prod" }])
    );
    let secret = "Flow-S3cret-pw";
    forms::correcting_deploy(&b, "web09", secret, "tok-job").await;
    let approval = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "POST" && c.path == format!("/channels/{APPROVALS}/messages")
        })
        .await;
    let job = approval_job(&approval.body);
    vote(&b, BOB, &[APPROVERS], true, &job, "tok-b").await;
    // The job's thread starts from its root message in the command's channel.
    let start = b
        .fake
        .wait_for(Duration::from_secs(10), |c| {
            c.method == "POST"
                && c.path.starts_with(&format!("/channels/{OPS}/messages/"))
                && c.path.ends_with("/threads")
        })
        .await;
    assert!(
        start.body["name"]
            .as_str()
            .is_some_and(|n| n.contains("deployment.managed") && n.chars().count() <= 100),
        "{}",
        start.body
    );
    let thread = start.answer["id"].as_str().expect("thread id").to_string();
    let root = b
        .fake
        .calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.path == format!("/channels/{OPS}/messages"))
        .expect("root");
    assert!(
        root.body["content"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("<@{ALICE}>"))),
        "{}",
        root.body
    );
    let upload = b
        .fake
        .wait_for(Duration::from_secs(30), |c| {
            c.path == format!("/channels/{thread}/messages")
                && c.content_type.starts_with("multipart/")
        })
        .await;
    assert!(
        upload.body["attachments"][0]["filename"].is_string(),
        "{}",
        upload.body
    );
    let calls = b.fake.calls();
    let ops: Vec<_> = calls
        .iter()
        .filter(|c| c.path.starts_with(&format!("/channels/{thread}/messages")))
        .collect();
    // Every message fits Discord's limit.
    for c in &ops {
        let n = c.body["content"].as_str().map_or(0, |s| s.chars().count());
        assert!(n <= 2000, "{n}");
    }
    // The status message is edited in place (at the engine's pace) to its final state.
    let edit = b
        .fake
        .wait_for(Duration::from_secs(10), |c| {
            c.method == "PATCH"
                && c.path.starts_with(&format!("/channels/{thread}/messages/"))
                && c.body["content"]
                    .as_str()
                    .is_some_and(|s| s.contains("100%"))
        })
        .await;
    assert!(
        edit.body["content"]
            .as_str()
            .is_some_and(|s| s.contains("100%")),
        "{}",
        edit.body
    );
    assert!(
        ops.iter().any(|c| c.body["content"]
            .as_str()
            .is_some_and(|s| s.contains("succeeded") && s.contains("vm_id"))),
        "final message"
    );
    // The password went to the worker sealed; Discord never saw it.
    for c in b.fake.calls() {
        assert!(
            !String::from_utf8_lossy(&c.raw).contains(secret),
            "{}",
            c.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_is_registered_at_start_by_bulk_overwrite_in_the_guild() {
    let b = bot(&broker(), one_approval()).await;
    let put = b
        .fake
        .wait_for(Duration::from_secs(5), |c| c.method == "PUT")
        .await;
    assert_eq!(
        put.path,
        format!("/applications/{APP}/guilds/{GUILD}/commands")
    );
    assert_eq!(put.auth, "Bot bot-token-secret");
    let cmds = put.body.as_array().cloned().unwrap_or_default();
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0]["name"], "aether");
    let subs: Vec<&str> = cmds[0]["options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["name"].as_str())
        .collect();
    for s in ["deploy", "vm", "jobs", "cancel", "hosts", "help"] {
        assert!(subs.contains(&s), "{subs:?}");
    }
}
