//! The modal's dynamic parts: choices narrowed to the chosen host (`views.update`), a
//! parameter set pushed as its own view (`views.push`), its values merged into the main
//! submission, and secrets never sent back to Slack.

use super::*;
use aetherv_core::{Event, EventBody};
use fake::{submission, view_state};
use serde_json::{json, Value};

fn options_of(view: &Value, block: &str) -> Vec<String> {
    view["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["block_id"] == block)
        .and_then(|b| b["element"]["options"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|o| o["value"].as_str().map(str::to_string))
        .collect()
}

async fn inventory(b: &Broker, host: &str, networks: &[&str]) {
    let nets: Vec<Value> = networks.iter().map(|n| json!({"name": n})).collect();
    let ev = Event {
        job_id: None,
        ..Event::for_job(
            aetherv_core::JobId::new(),
            0,
            EventBody::HostInventory {
                host: host.into(),
                reachable: true,
                inventory: json!({"host": {"networks": nets, "storage_classes": [{"name": "fast"}]}, "vms": []}),
                error: None,
            },
        )
    };
    b.publish_event(&ev).await.expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_choice_narrows_networks_and_parameter_sets_are_pushed_views() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    inventory(&b, "hv01", &["lan01"]).await;
    inventory(&b, "hv02", &["dmz02"]).await;
    // The inventory snapshot follows the event stream.
    let view = loop {
        fake.slash("U0ALICE", "C0OPS", "deploy managed").await;
        let opened = fake
            .wait_for("views.open", Duration::from_secs(3), |_| true)
            .await;
        let n = fake.calls_of("views.open").len();
        let v = fake.calls_of("views.open")[n - 1].body["view"].clone();
        let _ = opened;
        if options_of(&v, "network").len() == 2 {
            break v;
        }
        assert!(n < 50, "inventory never reached the modal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(options_of(&view, "network"), ["dmz02", "lan01"]);
    assert_eq!(options_of(&view, "target_host"), ["hv01", "hv02"]);

    // Choosing hv02 narrows the networks to hv02's.
    let mut stateful = view.clone();
    stateful["id"] = json!("V0MAIN");
    stateful["team_id"] = json!("T0FAKE");
    stateful["hash"] = json!("h");
    let pick = json!({"type": "block_actions", "team": {"id": "T0FAKE"}, "user": {"id": "U0ALICE"},
        "api_app_id": "A0FAKE", "trigger_id": "trigger.pick",
        "container": {"type": "view", "view_id": "V0MAIN"}, "view": stateful,
        "actions": [{"type": "static_select", "action_id": "v", "block_id": "target_host",
            "selected_option": {"text": {"type": "plain_text", "text": "hv02"}, "value": "hv02"}}]});
    fake.interact(pick).await;
    let upd = fake
        .wait_for("views.update", Duration::from_secs(3), |b| {
            b["view_id"] == "V0MAIN"
        })
        .await;
    assert_eq!(options_of(&upd.body["view"], "network"), ["dmz02"]);

    // The static IPv4 button pushes that set's view.
    let push = json!({"type": "block_actions", "team": {"id": "T0FAKE"}, "user": {"id": "U0ALICE"},
        "api_app_id": "A0FAKE", "trigger_id": "trigger.push",
        "container": {"type": "view", "view_id": "V0MAIN"}, "view": stateful,
        "actions": [{"type": "button", "action_id": "push_set:static_ipv4", "block_id": "parameter_sets",
            "value": "static_ipv4"}]});
    fake.interact(push).await;
    let pushed = fake
        .wait_for("views.push", Duration::from_secs(3), |b| {
            b["trigger_id"] == "trigger.push"
        })
        .await;
    let set_view = pushed.body["view"].clone();
    let blocks: Vec<&str> = set_view["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["block_id"].as_str())
        .collect();
    assert!(
        blocks.contains(&"guest_v4_ip_addr") && !blocks.contains(&"vm_name"),
        "{blocks:?}"
    );

    // Saving the pushed view keeps its values; the main submission includes them, so the
    // incomplete set is reported (on the main view's first block, as the set is not shown).
    let mut sub = submission(
        "U0ALICE",
        &set_view,
        view_state(&[("guest_v4_ip_addr", "10.0.0.5")], &[]),
        "V0SET",
    );
    sub["view"]["root_view_id"] = json!("V0MAIN");
    let ack = fake.interact(sub).await;
    assert!(
        ack.is_null() || ack.get("response_action").is_none(),
        "{ack}"
    );
    let main = submission(
        "U0ALICE",
        &view,
        view_state(
            &[
                ("vm_name", "web01"),
                ("target_host", "hv02"),
                ("guest_la_uid", "admin"),
                ("guest_la_pw", "S3cret!pass"),
            ],
            &["target_host"],
        ),
        "V0MAIN",
    );
    let reply = fake.interact(main).await;
    assert_eq!(reply["response_action"], "errors", "{reply}");
    let errors = reply["errors"].to_string();
    assert!(
        errors.contains("Gateway") || errors.contains("prefix") || errors.contains("DNS"),
        "{errors}"
    );

    // No secret ever went back to Slack.
    for c in fake.calls() {
        assert!(
            !c.body.to_string().contains("S3cret!pass"),
            "{} echoed a secret",
            c.method
        );
    }
}

/// A host with more networks than a static select holds: the network field is an external
/// select, and Slack's `block_suggestion` is answered from that host's inventory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_choice_lists_are_searched_as_the_user_types() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    let many: Vec<String> = (0..150).map(|i| format!("vlan{i:03}")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    inventory(&b, "hv01", &names).await;
    let element_type = |v: &Value| {
        v["blocks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["block_id"] == "network")
            .map(|b| b["element"]["type"].clone())
            .unwrap_or(Value::Null)
    };
    let view = loop {
        fake.slash("U0ALICE", "C0OPS", "deploy managed").await;
        fake.wait_for("views.open", Duration::from_secs(3), |_| true)
            .await;
        let opened = fake.calls_of("views.open");
        let v = opened[opened.len() - 1].body["view"].clone();
        if element_type(&v) == "external_select" {
            break v;
        }
        assert!(opened.len() < 50, "the inventory never reached the modal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stateful = view.clone();
    stateful["id"] = json!("V0MAIN");
    stateful["team_id"] = json!("T0FAKE");
    stateful["hash"] = json!("h");
    let ask = |typed: &str, block: &str| {
        json!({"type": "block_suggestion", "team": {"id": "T0FAKE"}, "user": {"id": "U0ALICE"},
            "api_app_id": "A0FAKE", "container": {"type": "view", "view_id": "V0MAIN"},
            "view": stateful, "action_id": "v", "block_id": block, "value": typed})
    };
    let values = |ack: &Value| -> Vec<String> {
        ack["options"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["value"].as_str().map(str::to_string))
            .collect()
    };
    let found = values(&fake.interact(ask("vlan12", "network")).await);
    assert_eq!(found.len(), 10, "{found:?}");
    assert!(found.iter().all(|v| v.starts_with("vlan12")), "{found:?}");
    let all = values(&fake.interact(ask("", "network")).await);
    assert_eq!(all.len(), 100, "at most the 100 options Slack shows");
    let none = values(&fake.interact(ask("vlan12", "no_such_field")).await);
    assert!(none.is_empty());
}
