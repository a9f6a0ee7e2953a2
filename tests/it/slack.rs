//! `aetherv slack --simulated` in HTTP mode, checked from outside: a Python peer
//! (`tests/peers/slack_check.py`) records the Web API calls as a fake Slack and posts a slash
//! command in Slack's documented form, signed as Slack signs. The typed `deploy` runs on the
//! simulated site and its thread, final message and log file arrive at the recorder.

use crate::harness::*;
use serde_json::Value;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

#[test]
fn a_typed_deploy_over_http_runs_on_the_simulated_site_and_its_thread_reaches_slack() {
    let (bot_port, api_port) = (free_port(), free_port());
    let config = |roles: &std::path::Path, policy: &std::path::Path| {
        format!(
            "mode: http\nlisten: 127.0.0.1:{bot_port}\nchannel: C0OPS\nroles: {}\npolicy: {}\napi_url: http://127.0.0.1:{api_port}/api\n",
            roles.display(),
            policy.display()
        )
    };
    let peer = [
        root().join("tests/peers/slack_check.py").into_os_string(),
        "--bot".into(),
        format!("http://127.0.0.1:{bot_port}/slack").into(),
        "--secret".into(),
        SECRET.into(),
        "--recorder-port".into(),
        api_port.to_string().into(),
        "--payload".into(),
        root()
            .join("slack/tests/fixtures/slack-docs/slash_command.txt")
            .into_os_string(),
        "--text".into(),
        "deploy vm vm_name=web01 target_host=hv02 gb_ram=8".into(),
        "--until-method".into(),
        "files.completeUploadExternal".into(),
        "--until-contains".into(),
        "job-".into(),
        "--timeout".into(),
        "90".into(),
    ];
    let (report, arrived) = ChatCheck {
        command: "slack",
        member: "slack:U2147483697",
        config: &config,
        peer: peer.to_vec(),
        env: vec![
            ("SLACK_BOT_TOKEN", "xoxb-outside"),
            ("SLACK_SIGNING_SECRET", SECRET),
        ],
    }
    .run();
    assert!(arrived, "the log file never arrived: {report:#}");
    assert_eq!(report["status"], 200);
    let ack: Value = serde_json::from_str(report["ack"].as_str().unwrap_or("{}")).expect("ack");
    assert_eq!(ack["response_type"], "ephemeral", "{ack}");

    let calls = report["calls"].as_array().cloned().unwrap_or_default();
    for c in &calls {
        assert_eq!(c["auth"], "Bearer xoxb-outside", "{c}");
    }
    // (Answers "catching up" while the bot replays its stream were asked again.)
    let posts: Vec<&Value> = calls
        .iter()
        .filter(|c| c["method"] == "chat.postMessage")
        .map(|c| &c["body"])
        .filter(|b| !b.to_string().contains("catching up"))
        .collect();
    // The thread root goes to the channel of the command; everything else is in its thread.
    let root = posts.first().expect("a thread root");
    assert_eq!(root["channel"], "C2147483705", "{root}");
    assert!(root.get("thread_ts").is_none());
    let root_ts = posts
        .get(1)
        .map(|p| p["thread_ts"].clone())
        .unwrap_or_default();
    assert!(root_ts.is_string(), "{posts:#?}");
    assert!(
        posts[1..].iter().all(|p| p["thread_ts"] == root_ts),
        "{posts:#?}"
    );
    let done = posts
        .iter()
        .find(|p| p["text"].as_str().is_some_and(|t| t.contains("succeeded")))
        .expect("a final message");
    let text = done["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("vm.create on hv02") && text.contains("vm_id"),
        "{text}"
    );
    // The log went up as a file in that thread.
    let complete = calls
        .iter()
        .find(|c| c["method"] == "files.completeUploadExternal")
        .expect("upload completed");
    assert_eq!(complete["body"]["thread_ts"], root_ts, "{complete}");
    let uploads = report["uploads"].as_object().cloned().unwrap_or_default();
    assert!(
        uploads
            .values()
            .any(|v| v.as_str().is_some_and(|s| s.contains("web01"))),
        "{uploads:?}"
    );
}
