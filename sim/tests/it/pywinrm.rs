//! pywinrm, the reference WinRM client, against the simulator.

use crate::common::start;
use aetherv_core::contract::command::{agent_command_line, DEFAULT_INSTALL_DIR};
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use aetherv_sim::SimConfig;
use std::path::PathBuf;

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AETHERV_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "python with pywinrm not found at {} (set AETHERV_PYTHON)",
        p.display()
    );
    p
}

const SCRIPT: &str = r#"
import json, sys, winrm
url, user, pw, line = sys.argv[1:5]
out = {}

def session(password):
    # Session() keeps only scheme://host:port/ of its URL and would drop `/<host>/wsman`, so
    # the protocol is rebuilt with the full endpoint.
    s = winrm.Session(url, auth=(user, password), transport='plaintext')
    s.protocol = winrm.Protocol(url, transport='plaintext', username=user, password=password)
    return s

s = session(pw)
r = s.run_cmd(line)
out['agent'] = {'code': r.status_code, 'stdout': r.std_out.decode(), 'stderr': r.std_err.decode()}
r = s.run_ps('Get-Frobnicator -All')
out['unknown'] = {'code': r.status_code, 'stderr': r.std_err.decode()}
p = s.protocol
shell = p.open_shell()
cmd = p.run_command(shell, 'ipconfig', ['/all'])
so, se, code = p.get_command_output(shell, cmd)
p.cleanup_command(shell, cmd)
p.close_shell(shell)
out['protocol'] = {'code': code, 'stderr': se.decode()}
try:
    session('wrong').run_cmd('hostname')
    out['wrong_password'] = 'accepted'
except winrm.exceptions.InvalidCredentialsError as e:
    out['wrong_password'] = 'rejected: ' + str(e)
print(json.dumps(out))
"#;

#[tokio::test]
async fn pywinrm_runs_agent_and_unknown_commands() {
    let r = start(SimConfig::with_hosts(1)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let mut spec = serde_json::Map::new();
    spec.insert("test_field".into(), "py".into());
    let line = agent_command_line(
        &AgentRequest::new(AgentOperation::Noop, spec, &job),
        DEFAULT_INSTALL_DIR,
    );
    let url = format!("http://{}/hv01/wsman", r.addr);
    let output = tokio::process::Command::new(python())
        .arg("-c")
        .arg(SCRIPT)
        .arg(&url)
        .arg("aetherv")
        .arg(aetherv_sim::config::DEFAULT_PASSWORD)
        .arg(&line)
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(v["agent"]["code"], 0, "{v}");
    let result =
        AgentResult::from_output(v["agent"]["stdout"].as_str().expect("stdout")).expect("result");
    assert!(result.is_ok());
    assert_eq!(result.correlation_id, job);
    assert_eq!(result.data["echo"]["test_field"], "py");
    assert_ne!(v["unknown"]["code"], 0);
    let stderr = v["unknown"]["stderr"].as_str().expect("stderr");
    assert!(
        stderr.contains("The term 'Get-Frobnicator' is not recognized as the name of a cmdlet"),
        "{stderr}"
    );
    assert_eq!(v["protocol"]["code"], 1);
    assert!(v["protocol"]["stderr"]
        .as_str()
        .expect("stderr")
        .contains("'ipconfig' is not recognized"));
    assert!(
        v["wrong_password"]
            .as_str()
            .expect("s")
            .starts_with("rejected"),
        "{v}"
    );
    assert_eq!(r.sim.open_shells(), 0);
    assert_eq!(r.sim.stats().hosts["hv01"].jobs, vec![job]);
}

const TLS_SCRIPT: &str = r#"
import json, sys, winrm
url, user, pw, line = sys.argv[1:5]
p = winrm.Protocol(url, transport='basic', username=user, password=pw, server_cert_validation='ignore')
shell = p.open_shell()
parts = line.split(' ')
cmd = p.run_command(shell, parts[0], parts[1:])
so, se, code = p.get_command_output(shell, cmd)
p.cleanup_command(shell, cmd)
p.close_shell(shell)
print(json.dumps({'code': code, 'stdout': so.decode(), 'stderr': se.decode()}))
"#;

#[tokio::test]
async fn pywinrm_over_https_with_command_and_arguments() {
    let r = crate::common::start_tls(
        SimConfig::with_hosts(1).latency(std::time::Duration::from_millis(30)),
    )
    .await;
    let job = uuid::Uuid::new_v4().to_string();
    let line = agent_command_line(
        &AgentRequest::new(AgentOperation::Noop, Default::default(), &job),
        DEFAULT_INSTALL_DIR,
    );
    let url = format!("https://localhost:{}/hv01/wsman", r.addr.port());
    let output = tokio::process::Command::new(python())
        .args([
            "-c",
            TLS_SCRIPT,
            &url,
            "aetherv",
            aetherv_sim::config::DEFAULT_PASSWORD,
            &line,
        ])
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(v["code"], 0, "{v}");
    let result = AgentResult::from_output(v["stdout"].as_str().expect("stdout")).expect("result");
    assert_eq!(result.correlation_id, job);
}

const SESSION_SCRIPT: &str = r#"
import json, sys, winrm
addr, pw, line = sys.argv[1:4]
r = winrm.Session('http://%s/hv02/wsman' % addr, auth=('hv02\\aetherv', pw), transport='plaintext').run_cmd(line)
print(json.dumps({'code': r.status_code, 'stdout': r.std_out.decode()}))
"#;

#[tokio::test]
async fn pywinrm_session_reaches_a_host_by_user_prefix() {
    let r = start(SimConfig::with_hosts(2)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let line = agent_command_line(
        &AgentRequest::new(AgentOperation::Noop, Default::default(), &job),
        DEFAULT_INSTALL_DIR,
    );
    let output = tokio::process::Command::new(python())
        .args([
            "-c",
            SESSION_SCRIPT,
            &r.addr.to_string(),
            aetherv_sim::config::DEFAULT_PASSWORD,
            &line,
        ])
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(v["code"], 0, "{v}");
    let stats = r.sim.stats();
    assert_eq!(stats.hosts["hv02"].jobs, vec![job]);
    assert_eq!(stats.hosts["hv01"].operations, 0);
}
