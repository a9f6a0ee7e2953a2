//! NTLM with MS-WSMV message encryption against the simulator: pywinrm (`transport='ntlm'`,
//! `message_encryption='always'`, pyspnego as the initiator) and the workspace's own client.

use crate::common::{
    noop_line, own_client, python_agent_result, run_agent_with, run_python, start, start_tls,
};
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use aetherv_sim::config::{DEFAULT_PASSWORD, DEFAULT_USERNAME};
use aetherv_sim::SimConfig;
use aetherv_winrm::{Auth, RunOptions, WinrmClient, WinrmError};

const SCRIPT: &str = r#"
base, user, pw, line = sys.argv[1:5]

def proto(url, user, password, encryption='always'):
    # winrm.Session would drop the URL path; Protocol keeps it.
    return winrm.Protocol(url, transport='ntlm', username=user, password=password,
                          message_encryption=encryption)

parts = line.split(' ')
out['agent'] = run(proto(base + '/hv01/wsman', user, pw), parts[0], parts[1:])
# Bare /wsman routed by the NTLM domain.
out['routed'] = run(proto(base + '/wsman', 'hv02\\' + user, pw), parts[0], parts[1:])
wrong_password(lambda: run(proto(base + '/hv01/wsman', user, 'wrong'), 'hostname'))
attempt('unencrypted', lambda: run(proto(base + '/hv01/wsman', user, pw, 'never'), 'hostname'),
        winrm.exceptions.WinRMTransportError, 'refused')
"#;

#[tokio::test]
async fn pywinrm_with_ntlm_and_message_encryption_runs_the_agent() {
    let r = start(SimConfig::with_hosts(2)).await;
    let job = uuid::Uuid::new_v4().to_string();
    let base = format!("http://{}", r.addr);
    let line = noop_line(&job);
    let v = run_python(SCRIPT, &[&base, DEFAULT_USERNAME, DEFAULT_PASSWORD, &line]).await;
    let result = python_agent_result(&v["agent"]);
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
    let auth = Auth::Ntlm {
        username: DEFAULT_USERNAME.into(),
        password: password.into(),
        domain: String::new(),
    };
    own_client(endpoint, auth, ca)
}

async fn run_agent(c: &WinrmClient) -> Result<(String, AgentResult), WinrmError> {
    let job = uuid::Uuid::new_v4().to_string();
    let req = AgentRequest::new(AgentOperation::Noop, Default::default(), &job);
    let out = run_agent_with(c, &req, RunOptions::default()).await?;
    assert_eq!(out.exit_code, 0, "{out:?}");
    Ok((job, AgentResult::from_output(&out.stdout).expect("result")))
}

#[tokio::test]
async fn own_client_with_ntlm_over_http_and_https() {
    let r = start(SimConfig::with_hosts(1)).await;
    let c = ntlm_client(r.wsman_url("hv01"), DEFAULT_PASSWORD, None);
    let (job, result) = run_agent(&c).await.expect("sealed run");
    assert_eq!(result.correlation_id, job);
    let err = run_agent(&ntlm_client(r.wsman_url("hv01"), "wrong", None))
        .await
        .expect_err("wrong password");
    assert!(matches!(err, WinrmError::Auth { status: 401 }), "{err:?}");

    let t = start_tls(SimConfig::with_hosts(1)).await;
    let ca = t.tls.as_ref().expect("tls").ca_pem().to_string();
    let c = ntlm_client(t.wsman_url("hv01"), DEFAULT_PASSWORD, Some(&ca));
    let (job, result) = run_agent(&c).await.expect("https run");
    assert_eq!(result.correlation_id, job);
    assert_eq!(t.sim.open_shells(), 0);
}
