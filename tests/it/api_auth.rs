//! Who may call the API: no token, an unknown token and a JWT without OIDC are 401 (with a
//! `WWW-Authenticate` challenge), a reader reads but cannot write (403); and a request the
//! policy says needs approval waits for a vote on the console (the chat), then runs.

use crate::api::{ApiSite, ADMIN, READER};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn api_refuses_unauthenticated_and_unknown_tokens_and_a_reader_cannot_write() {
    let site = ApiSite::start(1).await;
    let vm = json!({"values": {"vm_name": "auth-01", "gb_ram": 2, "cpu_cores": 1, "target_host": "hv01"}});
    for token in [None, Some("not-a-token"), Some("aGVhZA.Ym9keQ.c2ln")] {
        for (method, path) in [
            (reqwest::Method::GET, "/api/v1/hosts"),
            (reqwest::Method::GET, "/api/v1/jobs"),
            (reqwest::Method::POST, "/api/v1/resources/vms"),
        ] {
            let r = site.call(method.clone(), path, token, Some(&vm), &[]).await;
            assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.text);
            assert_eq!(r.content_type, "application/problem+json");
            assert!(r.headers.get("www-authenticate").is_some(), "a challenge");
        }
    }
    let r = site
        .call(
            reqwest::Method::GET,
            "/api/v1/hosts",
            None,
            None,
            &[("authorization", "Basic YWRtaW46eA==")],
        )
        .await;
    assert_eq!(r.status, 401);
    // The reader reads…
    let r = site.get("/api/v1/hosts", Some(READER)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = site.get("/api/v1/schema/vm", Some(READER)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // …and cannot write: 403, and nothing was made.
    let r = site
        .call(
            reqwest::Method::POST,
            "/api/v1/resources/vms",
            Some(READER),
            Some(&vm),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.content_type, "application/problem+json");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(site.sim_vm("hv01", "auth-01").is_none());
    let r = site.get("/api/v1/jobs", Some(ADMIN)).await;
    assert_eq!(
        r.json()["jobs"].as_array().map(Vec::len),
        Some(0),
        "{}",
        r.text
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_request_that_needs_approval_waits_for_the_console_then_runs() {
    let mut site = ApiSite::start(1).await;
    // 64 GB: the simulated site's policy asks one approver.
    let job = site
        .accepted(
            "/api/v1/resources/vms",
            json!({"values": {"vm_name": "big-01", "gb_ram": 64, "cpu_cores": 8, "target_host": "hv01"}}),
        )
        .await;
    let doc = site
        .get(&format!("/api/v1/jobs/{job}"), Some(ADMIN))
        .await
        .json();
    assert_eq!(doc["state"], "awaiting_approval", "{doc:#}");
    assert_eq!(doc["approval"]["required"], 1);
    assert_eq!(doc["approval"]["groups"][0], "approvers");
    site.out.wait_for(&job[..8], 0, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let doc = site
        .get(&format!("/api/v1/jobs/{job}"), Some(ADMIN))
        .await
        .json();
    assert_eq!(
        doc["state"], "awaiting_approval",
        "nothing runs before the vote"
    );
    assert!(site.sim_vm("hv01", "big-01").is_none());
    site.say(&format!("bob> approve {job}"));
    let doc = site.finished(&job, "succeeded").await;
    assert_eq!(doc["approval"]["approved_by"][0], "bob", "{doc:#}");
    let vm = site
        .sim_vm("hv01", "big-01")
        .expect("the VM after approval");
    assert_eq!(vm["memory_gb"], 64);
    // A request awaiting approval is withdrawn with DELETE; a finished job has nothing to cancel.
    let big = site
        .accepted(
            "/api/v1/resources/vms",
            json!({"values": {"vm_name": "big-02", "gb_ram": 64, "cpu_cores": 8, "target_host": "hv01"}}),
        )
        .await;
    let r = site
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/jobs/{big}"),
            Some(READER),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "a reader cannot cancel: {}", r.text);
    let r = site
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/jobs/{big}"),
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    site.finished(&big, "cancelled").await;
    let r = site
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/jobs/{job}"),
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(site.sim_vm("hv01", "big-02").is_none());
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_of_a_standby_bot_answers_503_with_retry_after() {
    let leader = ApiSite::start(1).await;
    let standby = ApiSite::standby(&leader).await;
    for path in ["/readyz", "/api/v1/hosts"] {
        let r = standby.get(path, Some(ADMIN)).await;
        assert_eq!(r.status, 503, "{path}: {}", r.text);
        assert!(
            r.headers.get("retry-after").is_some(),
            "{path}: Retry-After"
        );
    }
    let r = standby
        .call(
            reqwest::Method::POST,
            "/api/v1/resources/vms",
            Some(ADMIN),
            Some(&json!({"values": {"vm_name": "sb-01", "gb_ram": 2, "cpu_cores": 1, "target_host": "hv01"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.content_type, "application/problem+json");
    // The leader serves meanwhile.
    assert_eq!(leader.get("/readyz", None).await.status, 200);
    standby.kill();
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_restarted_answers_for_jobs_it_did_not_see_start() {
    let site = ApiSite::start(1).await;
    let job = site
        .accepted(
            "/api/v1/resources/vms",
            json!({"values": {"vm_name": "before-01", "gb_ram": 2, "cpu_cores": 1, "target_host": "hv01"}}),
        )
        .await;
    let before = site.finished(&job, "succeeded").await;
    let site = site.restart().await;
    let r = site.get(&format!("/api/v1/jobs/{job}"), Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = r.json();
    assert_eq!(after["state"], "succeeded");
    assert_eq!(after["result"]["vm_id"], before["result"]["vm_id"]);
    assert_eq!(after["steps"], before["steps"]);
    assert_eq!(after["log"], before["log"]);
    let listed = site.get("/api/v1/jobs", Some(ADMIN)).await.json();
    assert_eq!(listed["jobs"][0]["job_id"], job.as_str(), "{listed:#}");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_the_bot_with_api_listen_in_its_config_serves_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roles = "groups:\n  - name: pipelines\n    roles: [operator]\n    members: [\"api:ci\"]\n";
    std::fs::write(dir.path().join("roles.yaml"), roles).expect("roles");
    std::fs::write(dir.path().join("policy.yaml"), "rules: []\n").expect("policy");
    let prefix = crate::harness::prefix();
    let port = crate::harness::free_port();
    let config = format!(
        "broker:\n  prefix: {prefix}\nbot:\n  roles: {roles}\n  policy: {policy}\n  hosts: [hvcfg1]\napi:\n  listen: 127.0.0.1:{port}\n  tokens:\n    - name: ci\n      sha256: {hash}\n",
        roles = dir.path().join("roles.yaml").display(),
        policy = dir.path().join("policy.yaml").display(),
        hash = crate::api::sha256_hex("ci-token-77"),
    );
    std::fs::write(dir.path().join("aetherv.yaml"), config).expect("config");
    let url = crate::harness::amqp_url();
    let mut child = std::process::Command::new(crate::harness::bin())
        .arg("bot")
        .arg("--config")
        .arg(dir.path().join("aetherv.yaml"))
        .env_remove("AETHERV_PREFIX")
        .env("AETHERV_AMQP_URL", &url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("aetherv bot");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = http.get(format!("{base}/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the bot's API did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = http
        .get(format!("{base}/api/v1/hosts"))
        .header("authorization", "Bearer ci-token-77")
        .send()
        .await
        .expect("hosts");
    assert_eq!(r.status(), 200);
    let hosts: serde_json::Value =
        serde_json::from_str(&r.text().await.expect("body")).expect("json");
    assert_eq!(hosts["hosts"][0]["name"], "hvcfg1", "{hosts:#}");
    let _ = child.kill();
    let _ = child.wait();
    crate::harness::cleanup(&url, &prefix, &["hvcfg1".to_string()]).await;
}
