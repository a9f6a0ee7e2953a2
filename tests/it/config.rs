//! `aetherv config check` on the example configuration and on one with ten seeded mistakes;
//! `aetherv worker --config aetherv.yaml` serving jobs from the one file.

use crate::harness::*;
use std::process::Command;

const SECRETS: &[(&str, &str)] = &[
    (
        "AETHERV_AMQP_URL",
        "amqp://u:pw-amqp-9f2c@127.0.0.1:5672/%2f",
    ),
    ("SLACK_BOT_TOKEN", "xoxb-token-3a1e"),
    ("SLACK_APP_TOKEN", "xapp-token-77d0"),
    ("AETHERV_HV01_PASSWORD", "pw-hv01-51b7"),
    ("AETHERV_HV02_PASSWORD", "pw-hv02-c9e4"),
];

fn check(file: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("config").arg("check").arg(file);
    for (k, _) in SECRETS {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, out, err) = run_cmd(&mut cmd);
    (status.code().unwrap_or(-1), format!("{out}{err}"))
}

#[test]
fn the_example_configuration_checks_clean() {
    let (code, out) = check(&root().join("config/aetherv.example.yaml"), SECRETS);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn ten_seeded_mistakes_are_all_reported_with_lines_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("roles.yaml"),
        "groups:\n  - name: ops\n    roles: [operator]\n",
    )
    .expect("roles");
    std::fs::write(dir.path().join("policy.yaml"), "rules: []\n").expect("policy");
    let text = "\
broker:
  prefix: aetherv
  url: amqp://u:pw-amqp-9f2c@rabbit/%2f
log:
  format: xml
bot:
  roles: roles.yaml
  policy: missing-policy.yaml
slack:
  chanel: C1
worker:
  shutdown_grace_secs: soon
  hosts:
    - name: hv01
      endpoint: hv01.corp:5985
      auth:
        kind: ntlm
        username: svc
    - name: hv01
      endpoint: http://hv02:5985/wsman
      auth:
        kind: ntlm
        username: svc
        password: pw-hv02-c9e4
";
    let file = dir.path().join("aetherv.yaml");
    std::fs::write(&file, text).expect("config");
    let (code, out) = check(&file, &[("SLACK_BOT_TOKEN", "xoxb-token-3a1e")]);
    assert_eq!(code, 1, "{out}");
    // Ten mistakes; three of them are also missing secrets or a missing key (14 lines).
    let expect = [
        (2, "broker.url_env", "AETHERV_AMQP_URL is not set"),
        (3, "broker.url", "a secret in the file"),
        (5, "log.format", "must be one of text, json"),
        (7, "bot.roles", "names no one"),
        (8, "bot.policy", "cannot read"),
        (10, "slack.chanel", "did you mean `channel`"),
        (10, "slack.channel", "missing"),
        (10, "slack.app_token_env", "SLACK_APP_TOKEN is not set"),
        (12, "worker.shutdown_grace_secs", "whole number"),
        (14, "worker.hosts[0].endpoint", "http:// or https://"),
        (17, "worker.hosts[0].auth", "no credentials"),
        (19, "worker.hosts[1].name", "a second host"),
        (22, "worker.hosts[1].auth", "no credentials"),
        (24, "worker.hosts[1].auth.password", "a secret in the file"),
    ];
    for (line, path, what) in expect {
        let want = format!("aetherv.yaml:{line}: {path}: ");
        assert!(
            out.lines().any(|l| l.contains(&want) && l.contains(what)),
            "no `{want}… {what}` in:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("{} problem(s)", expect.len())),
        "{out}"
    );
    for (_, secret) in SECRETS {
        assert!(!out.contains(secret), "a secret in the output:\n{out}");
    }
}

/// `aetherv bot --config aetherv.yaml`: the console bot takes its roles, policy, hosts and
/// broker prefix from the one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_bot_runs_from_aetherv_yaml() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    write_in(
        dir.path(),
        "roles.yaml",
        "groups:\n  - name: ops\n    roles: [operator]\n    members: [\"console:alice\"]\n",
    );
    write_in(dir.path(), "policy.yaml", "rules: []\n");
    let prefix = prefix();
    let file = write_in(
        dir.path(),
        "aetherv.yaml",
        &format!(
            "broker:\n  prefix: {prefix}\nbot:\n  roles: roles.yaml\n  policy: policy.yaml\n  hosts: [hvcfg1, hvcfg2]\n"
        ),
    );
    let url = amqp_url();
    let mut child = Command::new(bin())
        .arg("bot")
        .arg("--config")
        .arg(&file)
        .env_remove("AETHERV_PREFIX")
        .env("AETHERV_AMQP_URL", &url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("aetherv bot");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hosts\n")
        .expect("write");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    cleanup(&url, &prefix, &[]).await;
    assert!(out.status.success(), "{text}\n{err}");
    assert!(
        text.contains("hvcfg1") && text.contains("hvcfg2"),
        "{text}\n{err}"
    );
}
