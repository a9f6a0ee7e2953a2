//! The status page in a real headless browser against the full stack: `aetherv api
//! --simulated 2` on RabbitMQ (the bot, the API, a worker, simulated hosts over WinRM), a
//! managed deployment running on hv01 with a bare VM queued behind it, a big VM on hv02 waiting
//! for an approval, and Debian's chromium
//! driven over WebDriver by `tests/peers/status_browser.py`. The screenshot is kept at
//! `target/test-artifacts/status.png`.

use super::harness::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn chromium() -> (String, String) {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("/usr/bin/{n}"))
            .find(|p| std::path::Path::new(p).exists())
    };
    let browser = find(&["chromium", "chromium-browser"]);
    let driver = find(&["chromedriver"]);
    match (browser, driver) {
        (Some(b), Some(d)) => (b, d),
        _ => panic!(
            "chromium and chromedriver are missing: run `scripts/test.sh` (it installs Debian's \
             chromium and chromium-driver)"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_hosts_a_growing_log_and_a_queue_in_a_browser() {
    let (browser, driver) = chromium();
    let python = python();
    let url = amqp_url();
    let prefix = prefix();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let token = format!("page-{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(dir.path().join("api.log")).expect("log file");
    let mut api = Proc {
        child: Command::new(bin())
            .args(["api", "--simulated", "2", "--listen", &addr])
            // Slow agent operations: the deployment's log grows while the page is watched.
            .args(["--latency-ms", "1500"])
            .env("AETHERV_API_TOKEN", &token)
            .env("AETHERV_AMQP_URL", &url)
            .env("AETHERV_PREFIX", &prefix)
            .env("AETHERV_LOG", "info")
            // The console chat (approvals) reads stdin: kept open, empty.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start aetherv api"),
        name: "aetherv api".into(),
    };
    wait_until(Duration::from_secs(60), "the API to be ready", || {
        http_get(&addr, "/readyz").is_ok()
    });

    let shot = root().join("target/test-artifacts/status.png");
    let _ = std::fs::remove_file(&shot);
    let (status, out, err) = run_cmd(
        Command::new(&python)
            .arg(root().join("tests/peers/status_browser.py"))
            .args(["--url", &format!("http://{addr}"), "--token", &token])
            .args(["--host", "hv01", "--other-host", "hv02", "--timeout", "90"])
            .args(["--chromium", &browser, "--chromedriver", &driver])
            .arg("--screenshot")
            .arg(&shot),
    );
    api.terminate(Duration::from_secs(10));
    let server_log = std::fs::read_to_string(dir.path().join("api.log")).unwrap_or_default();
    cleanup(&url, &prefix, &["hv01".into(), "hv02".into()]).await;
    assert!(
        status.success(),
        "browser peer failed: {err}\n{out}\nserver log:\n{server_log}"
    );
    let seen: Value = serde_json::from_str(out.trim()).expect("peer JSON");

    assert_eq!(seen["redirected_to"], "/login", "{seen}");
    assert_eq!(seen["wrong_token"], "That token is not valid here.");
    assert_eq!(seen["user"], "api:admin");
    assert_eq!(seen["cookie"]["httpOnly"], true, "{seen}");
    assert_eq!(seen["cookie"]["sameSite"], "Strict", "{seen}");
    assert_eq!(seen["cookie"]["readable_by_script"], false);
    assert_eq!(seen["hosts"], serde_json::json!(["hv01", "hv02"]));
    assert_eq!(seen["host_state"], "up");
    assert!(
        seen["free_memory"]
            .as_str()
            .is_some_and(|m| m.contains("GB free of")),
        "{seen}"
    );
    let running = seen["jobs"]["running"].as_str().expect("running id");
    assert!(
        seen["running"]
            .as_str()
            .is_some_and(|t| t.contains(&running[..8]) && t.contains("deployment.managed")),
        "{seen}"
    );
    assert_eq!(seen["queued_position"], "1", "{seen}");
    assert!(seen["queued"]
        .as_str()
        .is_some_and(|t| t.contains("queued #1") && t.contains("vm.create")));
    assert_eq!(seen["approval_missing"], "1 of 1 from approvers", "{seen}");
    let (first, later) = (
        seen["log_lines_first"].as_u64().expect("first"),
        seen["log_lines_later"].as_u64().expect("later"),
    );
    assert!(first > 0 && later > first, "the log grew: {seen}");
    assert_eq!(
        seen["reloaded"], "navigate",
        "the log grew without a reload"
    );
    assert_eq!(seen["password_on_page"], false, "a secret on the page");
    assert!(
        !server_log.contains(&token),
        "the token in the server's log"
    );
    assert!(
        !server_log.contains("S3cret-Passw0rd!"),
        "a secret in the log"
    );
    let png = std::fs::read(&shot).expect("screenshot kept");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
}
