//! Shared helpers: running a simulator on a free port, a minimal HTTP(S) client and a raw
//! WinRS client that builds SOAP by hand.

use aetherv_core::contract::command::{
    agent_arguments, agent_command_line, DEFAULT_INSTALL_DIR, POWERSHELL_EXE,
};
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use aetherv_sim::{SelfSignedTls, Sim, SimConfig};
use aetherv_winrm::{Auth, ClientConfig, CommandOutput, RunOptions, WinrmClient, WinrmError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

pub const NS: &str = r#"xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell""#;

/// An agent request for `op` with `spec`, which must be a JSON object.
pub fn agent_request(op: AgentOperation, spec: serde_json::Value, job: &str) -> AgentRequest {
    let serde_json::Value::Object(spec) = spec else {
        panic!("object")
    };
    AgentRequest::new(op, spec, job)
}

/// The whole command line of an agent noop with an empty spec for `job`.
pub fn noop_line(job: &str) -> String {
    agent_command_line(
        &AgentRequest::new(AgentOperation::Noop, Default::default(), job),
        DEFAULT_INSTALL_DIR,
    )
}

/// The workspace's own WinRM client for `endpoint`, trusting `ca` when given.
pub fn own_client(endpoint: String, auth: Auth, ca: Option<&str>) -> WinrmClient {
    let mut cfg = ClientConfig::new(endpoint, auth);
    cfg.tls.ca_pem = ca.map(|c| c.as_bytes().to_vec());
    WinrmClient::new(cfg).expect("client")
}

/// Runs the agent with `req` as PowerShell arguments through the workspace's own client.
pub async fn run_agent_with(
    c: &WinrmClient,
    req: &AgentRequest,
    opts: RunOptions,
) -> Result<CommandOutput, WinrmError> {
    c.run_collect(
        POWERSHELL_EXE,
        &agent_arguments(req, DEFAULT_INSTALL_DIR),
        opts,
    )
    .await
}

/// The python with pywinrm and pyspnego: `$AETHERV_PYTHON` or the workspace venv; fails loudly
/// when it is missing.
pub fn python() -> PathBuf {
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

/// The agent's result from one `run` of a python script (`{code, stdout, …}`), which must have
/// exited 0.
pub fn python_agent_result(run: &serde_json::Value) -> AgentResult {
    assert_eq!(run["code"], 0, "{run}");
    AgentResult::from_output(run["stdout"].as_str().expect("stdout")).expect("result")
}

/// What every script of `run_python` starts with: the imports, `run` (one command in a fresh
/// shell of a `winrm.Protocol`), the `out` dict, `attempt`
/// and `wrong_password`.
const PY_PRELUDE: &str = r#"
import json, sys, winrm

def run(p, command, args=()):
    shell = p.open_shell()
    cmd = p.run_command(shell, command, list(args))
    so, se, code = p.get_command_output(shell, cmd)
    p.cleanup_command(shell, cmd)
    p.close_shell(shell)
    return {'code': code, 'stdout': so.decode(), 'stderr': se.decode()}

out = {}

def attempt(key, call, error, verdict):
    # out[key] is 'accepted', or `verdict: <message>` when call() raised `error`.
    try:
        call()
        out[key] = 'accepted'
    except error as e:
        out[key] = verdict + ': ' + str(e)

def wrong_password(call):
    attempt('wrong_password', call, winrm.exceptions.InvalidCredentialsError, 'rejected')
"#;

/// Runs `python -c <PY_PRELUDE><script>` with `args`, which must succeed; the script fills `out`,
/// which is printed as JSON at its end and returned.
pub async fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(python())
        .arg("-c")
        .arg(format!("{PY_PRELUDE}{script}\nprint(json.dumps(out))\n"))
        .args(args)
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

/// A running simulator; stops when dropped.
pub struct Running {
    pub sim: Sim,
    pub addr: SocketAddr,
    pub tls: Option<SelfSignedTls>,
    pub _stop: oneshot::Sender<()>,
}

pub async fn start(cfg: SimConfig) -> Running {
    let sim = Sim::new(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(sim.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    Running {
        sim,
        addr,
        tls: None,
        _stop: tx,
    }
}

pub async fn start_tls(cfg: SimConfig) -> Running {
    let sim = Sim::new(cfg);
    let tls = SelfSignedTls::generate().expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(sim.clone().serve_tls(listener, tls.clone(), async move {
        let _ = rx.await;
    }));
    Running {
        sim,
        addr,
        tls: Some(tls),
        _stop: tx,
    }
}

pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

async fn send_on<IO>(io: IO, req: Request<Full<Bytes>>) -> HttpResponse
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("send");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

impl Running {
    /// One HTTP(S) request on a fresh connection.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        body: String,
    ) -> HttpResponse {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/soap+xml;charset=UTF-8");
        if let Some((u, p)) = auth {
            b = b.header(
                "authorization",
                format!("Basic {}", B64.encode(format!("{u}:{p}"))),
            );
        }
        let req = b.body(Full::new(Bytes::from(body))).expect("request");
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        match &self.tls {
            None => send_on(tcp, req).await,
            Some(tls) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut tls.ca_pem().as_bytes()) {
                    roots.add(c.expect("pem")).expect("add root");
                }
                let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let stream = connector.connect(name, tcp).await.expect("tls connect");
                send_on(stream, req).await
            }
        }
    }

    /// The WinRM endpoint of `host`: `http://<addr>/<host>/wsman`, or
    /// `https://localhost:<port>/<host>/wsman` (the name the certificate is for) with TLS.
    pub fn wsman_url(&self, host: &str) -> String {
        match self.tls {
            None => format!("http://{}/{host}/wsman", self.addr),
            Some(_) => format!("https://localhost:{}/{host}/wsman", self.addr.port()),
        }
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.request("GET", path, None, String::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        serde_json::from_str(&r.body).expect("json")
    }

    pub fn winrs(&self, host: &str) -> Winrs<'_> {
        Winrs {
            running: self,
            path: format!("/{host}/wsman"),
            user: "aetherv".into(),
            password: aetherv_sim::config::DEFAULT_PASSWORD.into(),
        }
    }
}

/// A raw WinRS client.
pub struct Winrs<'a> {
    pub running: &'a Running,
    pub path: String,
    pub user: String,
    pub password: String,
}

pub fn envelope(action: &str, shell: Option<&str>, timeout: &str, body: &str) -> (String, String) {
    let id = format!("uuid:{}", uuid::Uuid::new_v4().to_string().to_uppercase());
    let selector = shell
        .map(|s| {
            format!(r#"<w:SelectorSet><w:Selector Name="ShellId">{s}</w:Selector></w:SelectorSet>"#)
        })
        .unwrap_or_default();
    let xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope {NS}><s:Header><a:To>http://localhost/wsman</a:To><a:ReplyTo><a:Address s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:MaxEnvelopeSize s:mustUnderstand="true">153600</w:MaxEnvelopeSize><a:MessageID>{id}</a:MessageID><w:OperationTimeout>{timeout}</w:OperationTimeout><w:ResourceURI s:mustUnderstand="true">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI><a:Action s:mustUnderstand="true">{action}</a:Action>{selector}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    );
    (id, xml)
}

pub fn find_text(xml: &str, local: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let n = doc.descendants().find(|n| n.tag_name().name() == local)?;
    Some(n.text().unwrap_or_default().to_string())
}

/// The output of one command collected over Receives.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    pub receives: usize,
}

impl Winrs<'_> {
    pub async fn post(&self, xml: String) -> HttpResponse {
        self.running
            .request("POST", &self.path, Some((&self.user, &self.password)), xml)
            .await
    }

    pub async fn create(&self) -> (HttpResponse, String) {
        let (_, xml) = envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
            None,
            "PT20S",
            "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
        );
        let r = self.post(xml).await;
        let id = find_text(&r.body, "ShellId").unwrap_or_default();
        (r, id)
    }

    pub async fn command(&self, shell: &str, command: &str, args: &[String]) -> String {
        let args: String = args
            .iter()
            .map(|a| format!("<rsp:Arguments>{a}</rsp:Arguments>"))
            .collect();
        let (_, xml) = envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command",
            Some(shell),
            "PT20S",
            &format!(
                "<rsp:CommandLine><rsp:Command>{command}</rsp:Command>{args}</rsp:CommandLine>"
            ),
        );
        let r = self.post(xml).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        find_text(&r.body, "CommandId").expect("command id")
    }

    pub async fn receive_once(&self, shell: &str, cmd: &str, timeout: &str) -> HttpResponse {
        let (_, xml) = envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive",
            Some(shell),
            timeout,
            &format!(
                r#"<rsp:Receive><rsp:DesiredStream CommandId="{cmd}">stdout stderr</rsp:DesiredStream></rsp:Receive>"#
            ),
        );
        self.post(xml).await
    }

    pub async fn receive_all(&self, shell: &str, cmd: &str) -> Output {
        let mut out = Output::default();
        let (mut so, mut se) = (Vec::new(), Vec::new());
        loop {
            let r = self.receive_once(shell, cmd, "PT20S").await;
            out.receives += 1;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let doc = roxmltree::Document::parse(&r.body).expect("xml");
            for s in doc
                .descendants()
                .filter(|n| n.tag_name().name() == "Stream")
            {
                let data = B64.decode(s.text().unwrap_or_default()).expect("b64");
                match s.attribute("Name") {
                    Some("stdout") => so.extend(data),
                    Some("stderr") => se.extend(data),
                    _ => {}
                }
            }
            let done = doc.descendants().find(|n| {
                n.tag_name().name() == "CommandState"
                    && n.attribute("State")
                        .is_some_and(|s| s.ends_with("CommandState/Done"))
            });
            if let Some(d) = done {
                let code = d
                    .descendants()
                    .find(|n| n.tag_name().name() == "ExitCode")
                    .and_then(|n| n.text())
                    .expect("exit code");
                out.exit_code = code.parse().expect("int");
                break;
            }
        }
        out.stdout = String::from_utf8(so).expect("utf8");
        out.stderr = String::from_utf8(se).expect("utf8");
        out
    }

    pub async fn signal(&self, shell: &str, cmd: &str) -> HttpResponse {
        let (_, xml) = envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal",
            Some(shell),
            "PT20S",
            &format!(
                r#"<rsp:Signal CommandId="{cmd}"><rsp:Code>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate</rsp:Code></rsp:Signal>"#
            ),
        );
        self.post(xml).await
    }

    pub async fn delete(&self, shell: &str) -> HttpResponse {
        let (_, xml) = envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
            Some(shell),
            "PT20S",
            "",
        );
        self.post(xml).await
    }

    /// Starts the agent with `req` as PowerShell arguments in `shell`; returns the command id.
    pub async fn agent_command(&self, shell: &str, req: &AgentRequest) -> String {
        self.command(
            shell,
            POWERSHELL_EXE,
            &agent_arguments(req, DEFAULT_INSTALL_DIR),
        )
        .await
    }

    /// Runs the agent with `req` as PowerShell arguments (see `run`).
    pub async fn run_agent(&self, req: &AgentRequest) -> Output {
        self.run(POWERSHELL_EXE, &agent_arguments(req, DEFAULT_INSTALL_DIR))
            .await
    }

    /// Create, Command, Receive until done, Signal, Delete.
    pub async fn run(&self, command: &str, args: &[String]) -> Output {
        let (r, shell) = self.create().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let cmd = self.command(&shell, command, args).await;
        let out = self.receive_all(&shell, &cmd).await;
        assert_eq!(self.signal(&shell, &cmd).await.status, StatusCode::OK);
        assert_eq!(self.delete(&shell).await.status, StatusCode::OK);
        out
    }
}
