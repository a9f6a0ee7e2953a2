//! The workspace's own WinRM client (`aetherv-winrm`, what the worker uses) against the
//! simulator: the agent call, PowerShell errors, deadlines, wrong credentials and HTTPS.

use crate::common::{agent_request, own_client, run_agent_with, start, start_tls};
use aetherv_core::contract::command::POWERSHELL_EXE;
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use aetherv_sim::config::{DEFAULT_PASSWORD, DEFAULT_USERNAME};
use aetherv_sim::SimConfig;
use aetherv_winrm::{Auth, RunOptions, WinrmClient, WinrmError};
use serde_json::json;
use std::time::Duration;

fn client(endpoint: String, password: &str, ca: Option<&str>) -> WinrmClient {
    let auth = Auth::Basic {
        username: DEFAULT_USERNAME.into(),
        password: password.into(),
    };
    own_client(endpoint, auth, ca)
}

fn request(spec: serde_json::Value, cid: &str) -> AgentRequest {
    agent_request(AgentOperation::Noop, spec, cid)
}

#[tokio::test]
async fn worker_client_runs_the_agent_and_sees_powershell_errors() {
    let r = start(SimConfig::with_hosts(1).latency(Duration::from_millis(20))).await;
    let c = client(r.wsman_url("hv01"), DEFAULT_PASSWORD, None);
    let job = uuid::Uuid::new_v4().to_string();
    let out = run_agent_with(&c, &request(json!({"x": 1}), &job), RunOptions::default())
        .await
        .expect("run");
    assert_eq!(out.exit_code, 0, "{out:?}");
    let result = AgentResult::from_output(&out.stdout).expect("result");
    assert_eq!(result.correlation_id, job);
    let bad = c
        .run_collect(
            POWERSHELL_EXE,
            &[
                "-NoProfile".into(),
                "-Command".into(),
                "Get-Frobnicator".into(),
            ],
            RunOptions::default(),
        )
        .await
        .expect("run");
    assert_eq!(bad.exit_code, 1);
    assert!(
        bad.stderr
            .contains("The term 'Get-Frobnicator' is not recognized"),
        "{bad:?}"
    );
    assert_eq!(r.sim.open_shells(), 0);
}

#[tokio::test]
async fn worker_client_deadline_terminates_and_closes_the_shell() {
    let r = start(SimConfig::with_hosts(1)).await;
    let c = client(r.wsman_url("hv01"), DEFAULT_PASSWORD, None);
    let opts = RunOptions {
        deadline: Some(Duration::from_millis(400)),
        ..RunOptions::default()
    };
    let err = run_agent_with(&c, &request(json!({"sleep_ms": 3000}), "slow"), opts)
        .await
        .expect_err("times out");
    assert!(matches!(err, WinrmError::Timeout), "{err:?}");
    assert_eq!(r.sim.open_shells(), 0);
}

#[tokio::test]
async fn worker_client_reports_wrong_credentials() {
    let r = start(SimConfig::with_hosts(1)).await;
    let c = client(r.wsman_url("hv01"), "wrong", None);
    let err = c
        .run_collect("hostname", &[], RunOptions::default())
        .await
        .expect_err("401");
    assert!(matches!(err, WinrmError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn worker_client_over_https_trusting_the_sim_ca() {
    let r = start_tls(SimConfig::with_hosts(1)).await;
    let ca = r.tls.as_ref().expect("tls").ca_pem().to_string();
    let c = client(r.wsman_url("hv01"), DEFAULT_PASSWORD, Some(&ca));
    let out = run_agent_with(&c, &request(json!({}), "tls"), RunOptions::default())
        .await
        .expect("run");
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(
        AgentResult::from_output(&out.stdout)
            .expect("result")
            .correlation_id,
        "tls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hosts_in_parallel_one_job_at_a_time_each() {
    let hosts = 20;
    let jobs_per_host = 5;
    let r = start(SimConfig::with_hosts(hosts).latency(Duration::from_millis(20))).await;
    let mut tasks = Vec::new();
    for h in 1..=hosts {
        let c = client(
            format!("http://{}/hv{h:02}/wsman", r.addr),
            DEFAULT_PASSWORD,
            None,
        );
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..jobs_per_host {
                let job = uuid::Uuid::new_v4().to_string();
                let out = run_agent_with(&c, &request(json!({}), &job), RunOptions::default())
                    .await
                    .expect("run");
                assert_eq!(out.exit_code, 0);
                ids.push(job);
            }
            ids
        }));
    }
    let mut expected = Vec::new();
    for t in tasks {
        expected.push(t.await.expect("task"));
    }
    // Hosts ran in parallel: some operation on one host overlapped one on another host
    // (asserted from the sim's records, not from wall time, so machine load cannot flake it).
    let windows: Vec<(String, _, _)> = (1..=hosts)
        .flat_map(|h| {
            let host = format!("hv{h:02}");
            r.sim
                .records(&host)
                .into_iter()
                .filter_map(move |rec| rec.ended_at.map(|end| (host.clone(), rec.started_at, end)))
        })
        .collect();
    let overlapping = windows.iter().any(|(h1, s1, e1)| {
        windows
            .iter()
            .any(|(h2, s2, e2)| h1 != h2 && s1 < e2 && s2 < e1)
    });
    assert!(
        overlapping,
        "no two hosts ever ran an operation at the same time"
    );
    let stats = r.sim.stats();
    for (h, ids) in (1..=hosts).zip(expected) {
        let s = &stats.hosts[&format!("hv{h:02}")];
        assert_eq!(
            (s.max_concurrent_jobs, s.operations, s.duplicate_executions),
            (1, 5, 0)
        );
        assert_eq!(s.jobs, ids);
    }
}
