//! insta snapshots of the payloads the bot sends to Discord, built from fixed inputs: every
//! reply kind's message (the engine's samples, rendered with `templates/discord/`), approval
//! requests and their decided form, the deploy forms' modal pages and progress answers, the
//! `/aether` definition, and the interaction answers. Each is also checked against Discord's
//! limits.

use aetherv_bot::render::Renderer;
use aetherv_bot::reply::Reply;
use aetherv_core::command::DeployForm;
use aetherv_core::rbac::Principal;
use aetherv_core::schema::Forms;
use aetherv_core::{JobId, Platform, Requester};
use aetherv_discord::form::{Drafts, Layout};
use aetherv_discord::{commands, messages, DISCORD_TEMPLATES};
use serde_json::{json, Map, Value};

fn texts() -> Renderer {
    Renderer::load("discord", DISCORD_TEMPLATES, None).expect("templates")
}

/// Discord's message limits: content ≤ 2,000 characters, ≤ 5 rows of ≤ 5 buttons, labels
/// ≤ 80, custom ids ≤ 100.
fn within_limits(v: &Value) -> Value {
    let content = v["content"].as_str().map_or(0, |s| s.chars().count());
    assert!(content <= 2000, "{content}");
    let rows = v["components"].as_array().cloned().unwrap_or_default();
    assert!(rows.len() <= 5);
    for row in rows {
        let items = row["components"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 5);
        for b in items {
            assert!(b["label"].as_str().map_or(0, |s| s.chars().count()) <= 80);
            assert!(b["custom_id"].as_str().map_or(0, str::len) <= 100);
        }
    }
    v.clone()
}

/// A modal within Discord's limits: title ≤ 45, ≤ 5 components, labels ≤ 45.
fn modal_within_limits(v: &Value) -> Value {
    let d = &v["data"];
    assert!(d["title"].as_str().map_or(0, |s| s.chars().count()) <= 45);
    let comps = d["components"].as_array().cloned().unwrap_or_default();
    assert!(!comps.is_empty() && comps.len() <= 5, "{v}");
    for c in comps {
        assert!(c["label"].as_str().map_or(0, |s| s.chars().count()) <= 45);
        assert!(c["description"].as_str().map_or(0, |s| s.chars().count()) <= 100);
    }
    v.clone()
}

#[test]
fn every_reply_kind_as_a_message() {
    let t = texts();
    let mut all = Map::new();
    for (i, r) in Reply::samples().iter().enumerate() {
        let (Some(text), Some((name, _))) = (t.text(r), r.text_view()) else {
            continue;
        };
        all.insert(
            format!("{i:02}_{name}"),
            within_limits(&messages::text(&text)),
        );
    }
    insta::assert_json_snapshot!("reply_messages", Value::Object(all));
}

#[test]
fn approval_request_and_decision() {
    let job: JobId = "1a2b3c4d-0000-4000-8000-000000000000"
        .parse()
        .expect("uuid");
    let request = "Approval needed: deployment.managed on hv01 for web01";
    insta::assert_json_snapshot!(
        "approval_request",
        within_limits(&messages::approval_request(request, job))
    );
    insta::assert_json_snapshot!(
        "approval_decided",
        within_limits(&messages::approval_decided(
            request,
            "Approved by <@100000000000000002>."
        ))
    );
    insta::assert_json_snapshot!(
        "ephemeral",
        within_limits(&messages::ephemeral(
            "You may not approve your own request."
        ))
    );
}

fn alice() -> Principal {
    Principal {
        id: Requester {
            platform: Platform::Discord,
            user_id: "100000000000000001".into(),
        },
        platform_groups: Vec::new(),
    }
}

#[test]
fn deploy_form_pages() {
    let forms = Forms::builtin().expect("forms");
    let drafts = Drafts::default();
    let mut pages = Map::new();
    for form in [DeployForm::Vm, DeployForm::Managed] {
        let layout = Layout::of_form(&forms, form).expect("layout");
        let id = drafts.start(alice(), form, &layout, Map::new(), None);
        for i in 0..layout.pages.len() {
            let modal = drafts.modal(&forms, id, i, &alice()).expect("modal");
            let text = modal_within_limits(&modal)
                .to_string()
                .replace(&id.to_string(), "DRAFT");
            pages.insert(
                format!("{}_{i}", form.form_id()),
                serde_json::from_str(&text).expect("json"),
            );
        }
    }
    insta::assert_json_snapshot!("deploy_pages", Value::Object(pages));
    let buttons = [
        (
            "Submit".to_string(),
            "aether:submit:DRAFT".to_string(),
            messages::PRIMARY,
        ),
        (
            "Add Domain join".to_string(),
            "aether:open:DRAFT:1".to_string(),
            messages::SECONDARY,
        ),
    ];
    insta::assert_json_snapshot!(
        "form_progress",
        within_limits(&messages::ephemeral_with_buttons(
            &texts().render(
                "form_page",
                &json!({ "page": "Managed deployment", "ready": true, "errors": [] })
            ),
            &buttons
        ))
    );
}

#[test]
fn a_job_threads_start_and_keep_alive() {
    insta::assert_json_snapshot!(
        "thread_start",
        messages::thread_start("Job 1a2b3c4d · deployment.managed on hv01")
    );
    insta::assert_json_snapshot!("thread_reopen", messages::thread_reopen());
}

#[test]
fn the_command_definition() {
    let forms = Forms::builtin().expect("forms");
    insta::assert_json_snapshot!("command", commands::definition(&forms));
}
