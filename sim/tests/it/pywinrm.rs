//! pywinrm, the reference WinRM client, against the simulator.

use crate::common::{noop_line, python_agent_result, run_python, start};
use aetherv_core::contract::command::{agent_command_line, DEFAULT_INSTALL_DIR};
use aetherv_core::{AgentOperation, AgentRequest};
use aetherv_sim::config::DEFAULT_PASSWORD;
use aetherv_sim::SimConfig;

const SCRIPT: &str = r#"
url, user, pw, line = sys.argv[1:5]

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
out['protocol'] = run(s.protocol, 'ipconfig', ['/all'])
wrong_password(lambda: session('wrong').run_cmd('hostname'))
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
    let url = r.wsman_url("hv01");
    let v = run_python(SCRIPT, &[&url, "aetherv", DEFAULT_PASSWORD, &line]).await;
    let result = python_agent_result(&v["agent"]);
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
url, user, pw, line = sys.argv[1:5]
p = winrm.Protocol(url, transport='basic', username=user, password=pw, server_cert_validation='ignore')
parts = line.split(' ')
out.update(run(p, parts[0], parts[1:]))
"#;

#[tokio::test]
async fn pywinrm_over_https_with_command_and_arguments() {
    let r = crate::common::start_tls(
        SimConfig::with_hosts(1).latency(std::time::Duration::from_millis(30)),
    )
    .await;
    let job = uuid::Uuid::new_v4().to_string();
    let url = r.wsman_url("hv01");
    let line = noop_line(&job);
    let v = run_python(TLS_SCRIPT, &[&url, "aetherv", DEFAULT_PASSWORD, &line]).await;
    let result = python_agent_result(&v);
    assert_eq!(result.correlation_id, job);
}

const SESSION_SCRIPT: &str = r#"
addr, pw, line = sys.argv[1:4]
r = winrm.Session('http://%s/hv02/wsman' % addr, auth=('hv02\\aetherv', pw), transport='plaintext').run_cmd(line)
out.update({'code': r.status_code, 'stdout': r.std_out.decode()})
"#;

#[tokio::test]
async fn pywinrm_session_reaches_a_host_by_user_prefix() {
    let r = start(SimConfig::with_hosts(2)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let addr = r.addr.to_string();
    let line = noop_line(&job);
    let v = run_python(SESSION_SCRIPT, &[&addr, DEFAULT_PASSWORD, &line]).await;
    assert_eq!(v["code"], 0, "{v}");
    let stats = r.sim.stats();
    assert_eq!(stats.hosts["hv02"].jobs, vec![job]);
    assert_eq!(stats.hosts["hv01"].operations, 0);
}
