//! `aetherv discord --simulated 2` in HTTP interactions mode, checked from outside: a Python
//! peer (`tests/peers/discord_check.py`) records the REST calls as a fake Discord and posts an
//! `/aether deploy vm` command in Discord's documented form, signed with Ed25519 as Discord
//! signs. The deploy runs on the simulated site; its answer, messages and log file arrive at
//! the recorder; unsigned and stale requests are refused.

use crate::harness::*;
use serde_json::Value;

/// The test's Ed25519 seed (32 bytes of 7) and its public key.
const SEED: &str = "0707070707070707070707070707070707070707070707070707070707070707";
const PUBLIC: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

#[test]
fn a_deploy_command_over_http_runs_on_the_simulated_site_and_its_log_reaches_discord() {
    let (bot_port, api_port) = (free_port(), free_port());
    let config = |roles: &std::path::Path, policy: &std::path::Path| {
        format!(
            "mode: http\napplication_id: \"300000000000000003\"\npublic_key: {PUBLIC}\nlisten: 127.0.0.1:{bot_port}\nchannel: \"400000000000000004\"\nroles: {}\npolicy: {}\napi_url: http://127.0.0.1:{api_port}/api/v10\n",
            roles.display(),
            policy.display()
        )
    };
    let peer = [
        root().join("tests/peers/discord_check.py").into_os_string(),
        "--bot".into(),
        format!("http://127.0.0.1:{bot_port}/interactions").into(),
        "--seed-hex".into(),
        SEED.into(),
        "--recorder-port".into(),
        api_port.to_string().into(),
        "--payload".into(),
        root()
            .join("tests/peers/discord_deploy.json")
            .into_os_string(),
        "--modal-values".into(),
        r#"{"vm_name": "web01"}"#.into(),
        "--until-contains".into(),
        "attached as job-".into(),
        "--timeout".into(),
        "90".into(),
    ];
    let (report, arrived) = ChatCheck {
        command: "discord",
        member: "discord:100000000000000001",
        config: &config,
        peer: peer.to_vec(),
        env: vec![("DISCORD_BOT_TOKEN", "bot-outside")],
    }
    .run();
    assert!(arrived, "the log file never arrived: {report:#}");
    assert_eq!(report["pong"][0], 200, "{report:#}");
    assert_eq!(report["unsigned"], 401);
    assert_eq!(report["stale"], 401);
    assert_eq!(report["status"], 200);
    let answer: Value =
        serde_json::from_str(report["answer"].as_str().unwrap_or("{}")).expect("answer");
    // The deploy form's first page, then its page answer with Submit, then the submission.
    assert_eq!(answer["type"], 9, "{answer}");
    assert_eq!(report["page"]["status"], 200, "{report:#}");
    assert_eq!(report["page"]["submit"][0], 200, "{report:#}");
    let calls = report["calls"].as_array().cloned().unwrap_or_default();
    for c in &calls {
        assert_eq!(c["auth"], "Bot bot-outside", "{c}");
    }
    assert!(calls.iter().any(|c| c["method"] == "PATCH"
        && c["path"] == "/api/v10/webhooks/300000000000000003/SUBMIT_TOKEN/messages/@original"));
    assert!(calls.iter().any(|c| c["body"]
        .as_str()
        .is_some_and(|b| b.contains("succeeded") && b.contains("vm_id"))));
    assert!(calls.iter().any(|c| c["content_type"]
        .as_str()
        .is_some_and(|t| t.starts_with("multipart/form-data"))));
}

/// The fake Gateway of the adapter's own tests.
#[path = "../../discord/tests/it/fake_gateway.rs"]
#[allow(dead_code, reason = "the fake serves the adapter's tests too")]
mod fake_gateway;

/// The application id the fake Gateway's READY names.
const APP: &str = "300000000000000003";
/// The guild the fake Gateway's READY names.
const GUILD: &str = "290926798626357999";

#[test]
fn the_default_gateway_mode_stops_with_a_clear_error_when_discord_refuses_the_token() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let gw = rt.block_on(fake_gateway::FakeGateway::start("the-right-token", 1));
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| write_in(dir.path(), name, text);
    let roles = write(
        "roles.yaml",
        "groups:\n  - name: ops\n    roles: [operator]\n    members: [\"discord:1\"]\n",
    );
    let policy = write("policy.yaml", "rules:\n  - name: free\n    approvals: 0\n");
    // No `mode`: the Gateway is the default. REST goes to a closed port (nothing needs it).
    let config = write(
        "discord.yaml",
        &format!(
            "application_id: \"{APP}\"\nchannel: \"400000000000000004\"\nroles: {}\npolicy: {}\napi_url: http://127.0.0.1:{}/api/v10\ngateway_url: {}\nregister_commands: false\n",
            roles.display(),
            policy.display(),
            free_port(),
            gw.url
        ),
    );
    let mut child = std::process::Command::new(bin())
        .args(["discord", "--config"])
        .arg(&config)
        .args(["--simulated", "1"])
        .env("AETHERV_PREFIX", prefix())
        .env("DISCORD_BOT_TOKEN", "a-wrong-token")
        .env_remove("AETHERV_AMQP_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("aetherv discord");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("aetherv discord kept running after close 4004");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("Gateway close 4004"), "{stderr}");
    assert!(!stderr.contains("a-wrong-token"), "{stderr}");
    // It connected once, identified with GUILDS only, and did not try again.
    assert_eq!(gw.connections(), 1, "{stderr}");
    let identify = gw
        .received()
        .into_iter()
        .find(|s| s.op == 2)
        .expect("identify");
    assert_eq!(identify.d["intents"], 1);
}
