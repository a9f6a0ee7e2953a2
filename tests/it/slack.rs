//! `aetherv slack --simulated` in HTTP mode, checked from outside: a Python peer
//! (`tests/peers/slack_check.py`) records the Web API calls as a fake Slack and posts a slash
//! command in Slack's documented form, signed as Slack signs. The typed `deploy` runs on the
//! simulated site and its thread, final message and log file arrive at the recorder.

use crate::harness::*;
use serde_json::Value;
use std::process::{Command, Stdio};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

#[test]
fn a_typed_deploy_over_http_runs_on_the_simulated_site_and_its_thread_reaches_slack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bot_port, api_port) = (free_port(), free_port());
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let roles = write(
        "roles.yaml",
        "groups:\n  - name: ops\n    roles: [operator]\n    members: [\"slack:U2147483697\"]\n"
            .into(),
    );
    let policy = write(
        "policy.yaml",
        "rules:\n  - name: free\n    approvals: 0\n".into(),
    );
    let config = write(
        "slack.yaml",
        format!(
            "mode: http\nlisten: 127.0.0.1:{bot_port}\nchannel: C0OPS\nroles: {}\npolicy: {}\napi_url: http://127.0.0.1:{api_port}/api\n",
            roles.display(),
            policy.display()
        ),
    );
    let check = Command::new(python())
        .arg(root().join("tests/peers/slack_check.py"))
        .args(["--bot", &format!("http://127.0.0.1:{bot_port}/slack")])
        .args(["--secret", SECRET])
        .args(["--recorder-port", &api_port.to_string()])
        .arg("--payload")
        .arg(root().join("slack/tests/fixtures/slack-docs/slash_command.txt"))
        .args([
            "--text",
            "deploy vm vm_name=web01 target_host=hv02 gb_ram=8",
        ])
        .args(["--until-method", "files.completeUploadExternal"])
        .args(["--until-contains", "job-"])
        .args(["--timeout", "90"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python peer");
    let _bot = Proc {
        child: Command::new(bin())
            .args(["slack", "--config"])
            .arg(&config)
            .args(["--simulated", "2"])
            .env("SLACK_BOT_TOKEN", "xoxb-outside")
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env("AETHERV_PREFIX", prefix())
            .env_remove("AETHERV_AMQP_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("aetherv slack"),
        name: "aetherv slack".into(),
    };
    let out = check.wait_with_output().expect("python peer output");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "peer report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "the log file never arrived: {report:#}"
    );
    assert_eq!(report["status"], 200);
    let ack: Value = serde_json::from_str(report["ack"].as_str().unwrap_or("{}")).expect("ack");
    assert_eq!(ack["response_type"], "ephemeral", "{ack}");

    let calls = report["calls"].as_array().cloned().unwrap_or_default();
    for c in &calls {
        assert_eq!(c["auth"], "Bearer xoxb-outside", "{c}");
    }
    let posts: Vec<&Value> = calls
        .iter()
        .filter(|c| c["method"] == "chat.postMessage")
        .map(|c| &c["body"])
        .collect();
    // The thread root goes to the channel of the command; everything else is in its thread.
    let root = posts.first().expect("a thread root");
    assert_eq!(root["channel"], "C2147483705", "{root}");
    assert!(root.get("thread_ts").is_none());
    let root_ts = "1700000000.000001";
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
