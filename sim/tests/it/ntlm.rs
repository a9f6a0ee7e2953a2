//! NTLM with MS-WSMV message encryption against the simulator: pywinrm (`transport='ntlm'`,
//! `message_encryption='always'`, pyspnego as the initiator) and the workspace's own client.

use crate::common::{start, start_tls};
use aetherv_core::contract::command::{
    agent_arguments, agent_command_line, DEFAULT_INSTALL_DIR, POWERSHELL_EXE,
};
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use aetherv_sim::config::{DEFAULT_PASSWORD, DEFAULT_USERNAME};
use aetherv_sim::SimConfig;
use aetherv_winrm::{Auth, ClientConfig, RunOptions, WinrmClient, WinrmError};
use std::path::PathBuf;

fn python() -> PathBuf {
    let p = std::env::var_os("AETHERV_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        p.exists(),
        "python with pywinrm not found at {} (set AETHERV_PYTHON)",
        p.display()
    );
    p
}

const SCRIPT: &str = r#"
import json, sys, winrm
base, user, pw, line = sys.argv[1:5]
out = {}

def proto(url, user, password, encryption='always'):
    # winrm.Session would drop the URL path; Protocol keeps it.
    return winrm.Protocol(url, transport='ntlm', username=user, password=password,
                          message_encryption=encryption)

def run(p, command, args=()):
    shell = p.open_shell()
    cmd = p.run_command(shell, command, list(args))
    so, se, code = p.get_command_output(shell, cmd)
    p.cleanup_command(shell, cmd)
    p.close_shell(shell)
    return {'code': code, 'stdout': so.decode(), 'stderr': se.decode()}

parts = line.split(' ')
out['agent'] = run(proto(base + '/hv01/wsman', user, pw), parts[0], parts[1:])
# Bare /wsman routed by the NTLM domain.
out['routed'] = run(proto(base + '/wsman', 'hv02\\' + user, pw), parts[0], parts[1:])
try:
    run(proto(base + '/hv01/wsman', user, 'wrong'), 'hostname')
    out['wrong_password'] = 'accepted'
except winrm.exceptions.InvalidCredentialsError as e:
    out['wrong_password'] = 'rejected: ' + str(e)
try:
    run(proto(base + '/hv01/wsman', user, pw, 'never'), 'hostname')
    out['unencrypted'] = 'accepted'
except winrm.exceptions.WinRMTransportError as e:
    out['unencrypted'] = 'refused: ' + str(e)
print(json.dumps(out))
"#;

#[tokio::test]
async fn pywinrm_with_ntlm_and_message_encryption_runs_the_agent() {
    let r = start(SimConfig::with_hosts(2)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let line = agent_command_line(
        &AgentRequest::new(AgentOperation::Noop, Default::default(), &job),
        DEFAULT_INSTALL_DIR,
    );
    let output = tokio::process::Command::new(python())
        .args([
            "-c",
            SCRIPT,
            &format!("http://{}", r.addr),
            DEFAULT_USERNAME,
            DEFAULT_PASSWORD,
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
    assert_eq!(v["agent"]["code"], 0, "{v}");
    let result =
        AgentResult::from_output(v["agent"]["stdout"].as_str().expect("stdout")).expect("result");
    assert!(result.is_ok());
    assert_eq!(result.correlation_id, job);
    assert_eq!(v["routed"]["code"], 0, "{v}");
    let wrong = v["wrong_password"].as_str().expect("s");
    assert!(wrong.starts_with("rejected"), "{v}");
    assert!(
        v["unencrypted"].as_str().expect("s").starts_with("refused"),
        "plain bodies after ntlm must be refused over http: {v}"
    );
    let stats = r.sim.stats();
    assert_eq!(stats.hosts["hv01"].jobs, vec![job.clone()]);
    assert_eq!(stats.hosts["hv02"].jobs, vec![job]);
    assert_eq!(r.sim.open_shells(), 0);
}

fn ntlm_client(endpoint: String, password: &str, ca: Option<&str>) -> WinrmClient {
    let mut cfg = ClientConfig::new(
        endpoint,
        Auth::Ntlm {
            username: DEFAULT_USERNAME.into(),
            password: password.into(),
            domain: String::new(),
        },
    );
    cfg.tls.ca_pem = ca.map(|c| c.as_bytes().to_vec());
    WinrmClient::new(cfg).expect("client")
}

async fn run_agent(c: &WinrmClient) -> Result<(String, AgentResult), WinrmError> {
    let job = uuid::Uuid::new_v4().to_string();
    let args = agent_arguments(
        &AgentRequest::new(AgentOperation::Noop, Default::default(), &job),
        DEFAULT_INSTALL_DIR,
    );
    let out = c
        .run_collect(POWERSHELL_EXE, &args, RunOptions::default())
        .await?;
    assert_eq!(out.exit_code, 0, "{out:?}");
    Ok((job, AgentResult::from_output(&out.stdout).expect("result")))
}

#[tokio::test]
async fn own_client_with_ntlm_over_http_and_https() {
    let r = start(SimConfig::with_hosts(1)).await;
    let c = ntlm_client(
        format!("http://{}/hv01/wsman", r.addr),
        DEFAULT_PASSWORD,
        None,
    );
    let (job, result) = run_agent(&c).await.expect("sealed run");
    assert_eq!(result.correlation_id, job);
    let err = run_agent(&ntlm_client(
        format!("http://{}/hv01/wsman", r.addr),
        "wrong",
        None,
    ))
    .await
    .expect_err("wrong password");
    assert!(matches!(err, WinrmError::Auth { status: 401 }), "{err:?}");

    let t = start_tls(SimConfig::with_hosts(1)).await;
    let ca = t.tls.as_ref().expect("tls").ca_pem().to_string();
    let c = ntlm_client(
        format!("https://localhost:{}/hv01/wsman", t.addr.port()),
        DEFAULT_PASSWORD,
        Some(&ca),
    );
    let (job, result) = run_agent(&c).await.expect("https run");
    assert_eq!(result.correlation_id, job);
    assert_eq!(t.sim.open_shells(), 0);
}
