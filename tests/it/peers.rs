//! Independent peers: pywinrm runs `aetherv agent-command` against the sim, and a pika producer
//! that knows only `schemas/json/` publishes a job the worker runs.

use crate::harness::*;
use aetherv_core::{AgentResult, JobId};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

fn sim_credentials(sim: &SimProc) -> (String, String) {
    let cfg = aetherv_worker::WorkerConfig::load(&sim.worker_config).expect("worker config");
    let host = &cfg.hosts[0];
    let aetherv_worker::config::AuthConfig::Basic { username, .. } = &host.auth else {
        panic!("the sim's worker config uses basic auth");
    };
    let pw = host.auth.password(|_| None).expect("inline password");
    (username.clone(), pw)
}

#[test]
fn pywinrm_runs_the_agent_command_against_the_sim() {
    let sim = start_sim(1, 0);
    let (user, pw) = sim_credentials(&sim);
    let (st, line, err) = run_cmd(Command::new(bin()).args([
        "agent-command",
        "--operation",
        "noop",
        "--spec",
        r#"{"echo":"from pywinrm"}"#,
        "--correlation-id",
        "pywinrm-1",
    ]));
    assert!(st.success(), "{err}");
    let endpoint = format!("http://{}/hv01/wsman", sim.addr);
    let (st, out, err) = run_cmd(
        Command::new(python())
            .arg(root().join("tests/peers/winrm_run.py"))
            .args([&endpoint, &user, &pw, line.trim()]),
    );
    assert!(st.success(), "pywinrm failed: {err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).expect("json from peer");
    assert_eq!(r["status_code"], 0, "{r}");
    let result =
        AgentResult::from_output(r["std_out"].as_str().unwrap_or("")).expect("result line");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(result.correlation_id, "pywinrm-1");

    // A command the host does not know fails the way PowerShell does.
    let (_, out, _) = run_cmd(
        Command::new(python())
            .arg(root().join("tests/peers/winrm_run.py"))
            .args([&endpoint, &user, &pw, "Get-Frobnicator -All"]),
    );
    let r: serde_json::Value = serde_json::from_str(out.trim()).expect("json from peer");
    assert_ne!(r["status_code"], 0, "{r}");
    assert!(
        r["std_err"]
            .as_str()
            .unwrap_or("")
            .contains("is not recognized"),
        "{r}"
    );

    // Wrong password: refused.
    let (st, _, err) = run_cmd(
        Command::new(python())
            .arg(root().join("tests/peers/winrm_run.py"))
            .args([&endpoint, &user, "wrong-password", line.trim()]),
    );
    assert!(!st.success());
    assert!(
        err.contains("401") || err.contains("Unauthorized") || err.contains("credentials"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pika_producer_using_only_the_json_schemas_gets_its_job_run() {
    let hosts = vec!["hv01".to_string()];
    let (url, prefix, sim, broker) = e2e(1, 0).await;
    let w = start_worker(&sim.worker_config, &prefix, &url, "w1");
    let mut job_id = None;
    for _ in 0..100 {
        let (st, out, err) = run_cmd(
            Command::new(python())
                .arg(root().join("tests/peers/publish_job.py"))
                .args([&url, &prefix, "hv01"]),
        );
        if st.success() {
            job_id = Some(out.trim().parse::<JobId>().expect("job id from peer"));
            break;
        }
        // Until the worker declared the queue, the mandatory publish is returned.
        assert!(
            err.contains("Unroutable") || err.contains("NO_ROUTE"),
            "{err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job_id = job_id.expect("the queue never appeared");
    let ids: HashSet<JobId> = [job_id].into();
    let events = collect_until_done(&broker, &ids, Duration::from_secs(30)).await;
    assert!(succeeded(&events[&job_id]), "{:?}", events[&job_id]);
    broker.close().await;
    // The worker first: alive, it would declare its queues again once they are deleted.
    drop(w);
    cleanup(&url, &prefix, &hosts).await;
}
