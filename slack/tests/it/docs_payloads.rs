//! Slack's own documented request payloads (`tests/fixtures/slack-docs/`), signed with the test
//! secret and a fresh timestamp, posted to the bot's HTTP endpoints; then every Web API call
//! the bot made is checked against what Slack requires of it.

use super::http_mode::{now, post};
use super::*;
use aetherv_slack::blocks::{check_message, check_modal};
use fake::sign;
use serde_json::Value;
use slack_morphism::prelude::*;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/slack-docs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim_end()
        .to_string()
}

/// An interaction fixture as Slack posts it: `payload=<json>`, form-encoded.
fn interaction(name: &str) -> String {
    serde_urlencoded::to_string([("payload", fixture(name))]).expect("form")
}

#[test]
fn the_documented_interaction_payloads_parse() {
    for name in [
        "block_actions.json",
        "block_actions_view.json",
        "view_submission.json",
        "view_closed.json",
        "block_suggestion.json",
    ] {
        let parsed = serde_json::from_str::<SlackInteractionEvent>(&fixture(name));
        assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
    }
}

/// Web API methods the bot may call, and whether each takes a JSON body.
const METHODS: &[(&str, bool)] = &[
    ("chat.postMessage", true),
    ("chat.update", true),
    ("chat.postEphemeral", true),
    ("views.open", true),
    ("views.push", true),
    ("views.update", true),
    ("files.getUploadURLExternal", false),
    ("files.completeUploadExternal", true),
    ("usergroups.users.list", false),
    ("apps.connections.open", false),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_payloads_are_served_and_the_calls_meet_slacks_rules() {
    let b = broker();
    let (bot, addr) = http_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    let ts = now();
    let send = |path: &'static str, body: String, ctype: &'static str| async move {
        let sig = sign(SECRET, &ts.to_string(), &body);
        post(addr, path, ts, &sig, &body, ctype).await
    };

    // Each payload on the path the docs give it, and again on one shared Request URL.
    for path in ["documented", "/slack"] {
        let at = |documented: &'static str| {
            if path == "/slack" {
                "/slack"
            } else {
                documented
            }
        };

        // `/weather 94070`: not a command of ours; answered at once, only to the user.
        let (status, body) = send(at("/slack/commands"), fixture("slash_command.txt"), FORM).await;
        assert_eq!(status, 200, "{body}");
        let ack: Value = serde_json::from_str(&body).expect("JSON acknowledgement");
        assert_eq!(ack["response_type"], "ephemeral", "{ack}");
        // The refused word is not repeated (it could be anything, a secret included).
        let text = ack["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("unknown command") && !text.contains("94070"),
            "{ack}"
        );

        // The signing page's example has empty text: `/aether` alone means `help`.
        let (status, body) = send(
            at("/slack/commands"),
            fixture("slash_command_signing.txt"),
            FORM,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("help"), "{body}");

        let (status, body) = send(at("/slack/commands"), fixture("ssl_check.txt"), FORM).await;
        assert_eq!((status, body.as_str()), (200, ""), "ssl_check");

        for name in [
            "block_actions.json",
            "block_actions_view.json",
            "view_submission.json",
            "view_closed.json",
        ] {
            let (status, body) = send(at("/slack/interactions"), interaction(name), FORM).await;
            // Not ours (unknown action, foreign callback id): acknowledged, nothing done.
            assert_eq!((status, body.as_str()), (200, ""), "{name}");
        }
        let (status, body) = send(
            at("/slack/interactions"),
            interaction("block_suggestion.json"),
            FORM,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let options: Value = serde_json::from_str(&body).expect("options JSON");
        assert_eq!(
            options["options"],
            serde_json::json!([]),
            "unknown select: no options"
        );

        let (status, body) =
            send(at("/slack/events"), fixture("url_verification.json"), JSON).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).expect("challenge JSON");
        assert_eq!(
            v["challenge"],
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        );
        let (status, _) = send(at("/slack/events"), fixture("app_mention.json"), JSON).await;
        assert_eq!(status, 200);
    }

    // Bad input: a clear reason, nothing done; a forged signature: refused.
    let (status, body) = send("/slack", "hello=world".into(), FORM).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("no `command`, `payload` or `ssl_check`"),
        "{body}"
    );
    let body = fixture("slash_command.txt");
    let forged = sign("not-the-secret", &ts.to_string(), &body);
    let (status, _) = post(addr, "/slack/commands", ts, &forged, &body, FORM).await;
    assert_eq!(status, 401);

    // `help` was answered in the request's channel (twice: once per round).
    let help = fake
        .wait_for("chat.postMessage", Duration::from_secs(10), |b| {
            b["channel"] == "G8PSS9T3V"
        })
        .await;
    assert!(
        help.body.to_string().contains("Commands you may run"),
        "{}",
        help.body
    );

    // Every call the bot made is one Slack has, authenticated with the bot token, with the
    // body type Slack expects and within Block Kit's limits.
    let calls = fake.calls();
    assert!(!calls.is_empty());
    for c in &calls {
        let Some((_, json_body)) = METHODS.iter().find(|(m, _)| *m == c.method) else {
            panic!(
                "the bot called `{}`, which is not a method it should use",
                c.method
            );
        };
        assert_eq!(c.auth, "Bearer xoxb-test", "{} auth", c.method);
        if *json_body {
            assert!(
                c.content_type.starts_with("application/json"),
                "{}: content-type {}",
                c.method,
                c.content_type
            );
        }
        match c.method.as_str() {
            "chat.postMessage" => {
                assert!(c.body["channel"].as_str().is_some_and(|s| !s.is_empty()));
                assert!(
                    c.body["text"].as_str().is_some_and(|s| !s.is_empty()),
                    "fallback text is required with blocks: {}",
                    c.body
                );
                check_message(&c.body).expect("within Slack's message limits");
            }
            "views.open" => {
                assert!(c.body["trigger_id"].as_str().is_some());
                check_modal(&c.body["view"]).expect("within Slack's modal limits");
            }
            _ => {}
        }
    }
    // The documented payloads opened no modal.
    assert!(fake.calls_of("views.open").is_empty());
}

/// The fake's echo of a view (what `views.open` answers) parses as slack-morphism's answer, for
/// every form the bot opens: the benchmark's lean echo uses the same splice.
#[test]
fn the_fakes_view_echo_is_a_valid_views_open_answer() {
    use aetherv_core::schema::Forms;
    use aetherv_core::validate::InventoryChoices;
    use aetherv_slack::modal::{build, ViewMeta};
    let forms = Forms::builtin().expect("forms");
    for form in forms.iter() {
        let meta = ViewMeta {
            form: form.id().to_string(),
            channel: "C0OPS".into(),
            set: None,
            host: None,
        };
        let view = build(form, &InventoryChoices::default(), &meta).expect("view");
        let raw = serde_json::to_string(&view).expect("json");
        let echo = fake::splice_view(&raw, "V1");
        let parsed = serde_json::from_str::<SlackApiViewsOpenResponse>(&echo);
        assert!(parsed.is_ok(), "{}: {:?}", form.id(), parsed.err());
    }
}
