//! WinRM over real HTTP and HTTPS with hand-built SOAP.

use crate::common::{agent_request, envelope, find_text, start, start_tls, Winrs};
use aetherv_core::contract::command::{agent_command_line, DEFAULT_INSTALL_DIR};
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use aetherv_sim::SimConfig;
use hyper::StatusCode;
use serde_json::json;
use std::time::Duration;

fn noop(job: &str) -> AgentRequest {
    let mut spec = serde_json::Map::new();
    spec.insert("test_field".into(), json!("hello"));
    AgentRequest::new(AgentOperation::Noop, spec, job)
}

/// A Create with a bare `<rsp:Shell/>` body: (message id, envelope).
fn bare_create() -> (String, String) {
    envelope(
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
        None,
        "PT20S",
        "<rsp:Shell/>",
    )
}

/// Creates a shell and starts an agent noop in it that sleeps `ms`: (shell id, command id).
async fn sleeping_agent(w: &Winrs<'_>, ms: u64) -> (String, String) {
    let (_, shell) = w.create().await;
    let req = agent_request(AgentOperation::Noop, json!({ "sleep_ms": ms }), "t");
    let cmd = w.agent_command(&shell, &req).await;
    (shell, cmd)
}

#[tokio::test]
async fn agent_noop_over_winrs_with_arguments_elements() {
    let r = start(SimConfig::with_hosts(2)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let req = noop(&job);
    let out = r.winrs("hv02").run_agent(&req).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(out.stderr, "");
    let result = AgentResult::from_output(&out.stdout).expect("result line");
    assert!(result.is_ok());
    assert_eq!(result.correlation_id, job);
    assert_eq!(result.data["echo"]["test_field"], "hello");
    assert!(out.stdout.contains("\r\n"));
    let stats = r.get_json("/sim/stats").await;
    assert_eq!(stats["hosts"]["hv02"]["operations"], 1);
    assert_eq!(stats["hosts"]["hv02"]["jobs"], json!([job]));
    assert_eq!(stats["hosts"]["hv01"]["operations"], 0);
    assert_eq!(r.sim.open_shells(), 0);
}

#[tokio::test]
async fn agent_error_exits_one_and_whole_line_in_command_works() {
    let r = start(SimConfig::with_hosts(1)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let req = agent_request(AgentOperation::VmGet, json!({"vm_name": "ghost"}), &job);
    let out = r
        .winrs("hv01")
        .run(&agent_command_line(&req, DEFAULT_INSTALL_DIR), &[])
        .await;
    assert_eq!(out.exit_code, 1);
    let result = AgentResult::from_output(&out.stdout).expect("result");
    assert_eq!(result.code.as_deref(), Some("not_found"));
}

#[tokio::test]
async fn create_response_carries_shell_id_selector_and_relates_to() {
    let r = start(SimConfig::with_hosts(1)).await;
    let (id, xml) = bare_create();
    let resp = r.winrs("hv01").post(xml).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.headers["content-type"],
        "application/soap+xml;charset=UTF-8"
    );
    let doc = roxmltree::Document::parse(&resp.body).expect("xml");
    let selector = doc
        .descendants()
        .find(|n| n.attribute("Name") == Some("ShellId"))
        .expect("selector");
    let shell = find_text(&resp.body, "ShellId").expect("ShellId element");
    assert_eq!(selector.text(), Some(shell.as_str()));
    assert_eq!(
        find_text(&resp.body, "RelatesTo").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(r.sim.open_shells(), 1);
}

#[tokio::test]
async fn unknown_command_fails_like_powershell() {
    let r = start(SimConfig::with_hosts(1)).await;
    let line = format!(
        "powershell -encodedcommand {}",
        aetherv_core::contract::command::encode_powershell("Get-Frobnicator -All")
    );
    let out = r.winrs("hv01").run(&line, &[]).await;
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.starts_with("#< CLIXML\r\n"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("The term &apos;Get-Frobnicator&apos; is not recognized")
            || out
                .stderr
                .contains("The term 'Get-Frobnicator' is not recognized"),
        "{}",
        out.stderr
    );
    assert_eq!(r.sim.stats().hosts["hv01"].operations, 0);
}

#[tokio::test]
async fn authentication_is_required() {
    let r = start(SimConfig::with_hosts(1)).await;
    let (_, xml) = bare_create();
    let none = r.request("POST", "/hv01/wsman", None, xml.clone()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers["www-authenticate"], "Basic realm=\"WSMAN\"");
    let wrong = r
        .request(
            "POST",
            "/hv01/wsman",
            Some(("aetherv", "wrong")),
            xml.clone(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let unknown_host = r
        .request(
            "POST",
            "/hv77/wsman",
            Some(("aetherv", aetherv_sim::config::DEFAULT_PASSWORD)),
            xml,
        )
        .await;
    assert_eq!(unknown_host.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn receive_times_out_with_wsman_fault_then_completes() {
    let r = start(SimConfig::with_hosts(1)).await;
    let w = r.winrs("hv01");
    let (shell, cmd) = sleeping_agent(&w, 2500).await;
    // The first receive gets the log line at once; the next waits for the result and times out.
    let first = w.receive_once(&shell, &cmd, "PT1S").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second = w.receive_once(&shell, &cmd, "PT1S").await;
    assert_eq!(second.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        second.body.contains("w:TimedOut") && second.body.contains("Code=\"2150858793\""),
        "{}",
        second.body
    );
    let rest = w.receive_all(&shell, &cmd).await;
    assert_eq!(rest.exit_code, 0);
    assert!(rest.stdout.contains("##aetherv-result "));
}

#[tokio::test]
async fn unknown_shell_and_bad_xml_are_faults() {
    let r = start(SimConfig::with_hosts(1)).await;
    let w = r.winrs("hv01");
    let resp = w.receive_once("NOPE", "C", "PT1S").await;
    assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        resp.body.contains("w:InvalidSelectors") && resp.body.contains("2150858843"),
        "{}",
        resp.body
    );
    let bad = w.post("<not-xml".into()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let (_, shell) = w.create().await;
    assert_eq!(w.delete(&shell).await.status, StatusCode::OK);
    assert_eq!(
        w.delete(&shell).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn signal_terminate_ends_a_running_command() {
    let r = start(SimConfig::with_hosts(1)).await;
    let w = r.winrs("hv01");
    let (shell, cmd) = sleeping_agent(&w, 5000).await;
    assert_eq!(w.signal(&shell, &cmd).await.status, StatusCode::OK);
    let after = w.receive_once(&shell, &cmd, "PT1S").await;
    assert_eq!(after.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn sim_host_view_and_fault_endpoint() {
    let r = start(SimConfig::with_hosts(1)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let resp = r
        .request(
            "POST",
            "/sim/hosts/hv01/faults",
            None,
            json!({"operation": "vm.create", "code": "injected"}).to_string(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{}", resp.body);
    let create = agent_request(
        AgentOperation::VmCreate,
        json!({"vm_name": "web01", "notes": job}),
        &job,
    );
    let w = r.winrs("hv01");
    let failed = w
        .run(&agent_command_line(&create, DEFAULT_INSTALL_DIR), &[])
        .await;
    assert_eq!(
        AgentResult::from_output(&failed.stdout)
            .expect("r")
            .code
            .as_deref(),
        Some("injected")
    );
    let ok = w
        .run(&agent_command_line(&create, DEFAULT_INSTALL_DIR), &[])
        .await;
    assert_eq!(ok.exit_code, 0);
    let view = r.get_json("/sim/hosts/hv01").await;
    assert_eq!(view["vms"][0]["vm_name"], "web01");
    assert_eq!(view["vms"][0]["notes"], job.as_str());
    assert_eq!(view["vms"][0]["state"], "Off");
    assert!(view["vms"][0]["applied_config"].is_null());
    let missing = r
        .request("GET", "/sim/hosts/hv42", None, String::new())
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn https_serves_the_same_protocol() {
    let r = start_tls(SimConfig::with_hosts(1)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let out = r.winrs("hv01").run_agent(&noop(&job)).await;
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        AgentResult::from_output(&out.stdout)
            .expect("r")
            .correlation_id,
        job
    );
    let stats = r.get_json("/sim/stats").await;
    assert_eq!(stats["hosts"]["hv01"]["operations"], 1);
}

#[tokio::test]
async fn large_output_is_split_across_receives() {
    let r = start(SimConfig::with_hosts(1)).await;
    let long = "x".repeat(100_000);
    let req = agent_request(AgentOperation::Noop, json!({"blob": long}), "t");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let out = r.winrs("hv01").run_agent(&req).await;
    assert!(out.receives >= 3, "{}", out.receives);
    assert_eq!(
        AgentResult::from_output(&out.stdout).expect("r").data["echo"]["blob"]
            .as_str()
            .map(str::len),
        Some(100_000)
    );
}

/// Rough throughput of sequential agent noops over WinRS (new connection per request).
#[tokio::test]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn measure_sequential_noop_rate() {
    let r = start(SimConfig::with_hosts(1)).await;
    let w = r.winrs("hv01");
    let n = 300;
    let t = std::time::Instant::now();
    for i in 0..n {
        let out = w.run_agent(&noop(&format!("m{i}"))).await;
        assert_eq!(out.exit_code, 0);
    }
    let secs = t.elapsed().as_secs_f64();
    println!("{n} noops in {secs:.2}s = {:.0}/s", f64::from(n) / secs);
}

#[tokio::test]
async fn shutdown_answers_pending_receives_and_stops_serving() {
    let sim = aetherv_sim::Sim::new(SimConfig::with_hosts(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sim.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    let (stop_tx, _stop_rx) = tokio::sync::oneshot::channel::<()>();
    let r = crate::common::Running {
        sim,
        addr,
        tls: None,
        _stop: stop_tx,
    };
    let w = r.winrs("hv01");
    let (shell, cmd) = sleeping_agent(&w, 10_000).await;
    let _ = w.receive_once(&shell, &cmd, "PT20S").await; // the log line
    let started = std::time::Instant::now();
    let pending = w.receive_once(&shell, &cmd, "PT20S");
    let stop = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tx.send(());
    };
    let (resp, ()) = tokio::join!(pending, stop);
    assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .expect("join")
        .expect("serve ok");
}
