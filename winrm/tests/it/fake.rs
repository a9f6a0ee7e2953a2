//! A small scripted WinRM server for the end-to-end tests (hyper, HTTP/1.1,
//! optional TLS, Basic auth). It records every request it receives.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
const WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
pub const SHELL_ID: &str = "0A6D9B7C-1111-2222-3333-444455556666";

/// One scripted Receive answer.
#[derive(Clone, Debug)]
pub enum Step {
    /// Stream chunks (name, bytes) and, when `Some`, the exit code of a finished command.
    Output(Vec<(&'static str, Vec<u8>)>, Option<i32>),
    /// A `w:TimedOut` fault (HTTP 500), as WinRM sends when OperationTimeout expires.
    TimedOut,
}

/// One request as the fake understood it.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub action: String,
    pub shell_id: Option<String>,
    pub command_id: Option<String>,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub options: Vec<(String, String)>,
    pub signal_code: Option<String>,
    pub stdin: Vec<u8>,
    pub stdin_end: Option<String>,
    pub connection: usize,
}

#[derive(Default)]
pub struct State {
    pub requests: Vec<Recorded>,
    pub connections: usize,
    /// Receive scripts per command name; a command without one never finishes.
    pub scripts: HashMap<String, VecDeque<Step>>,
    running: HashMap<String, (String, Vec<u8>)>,
    next_command: usize,
}

impl State {
    pub fn actions(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|r| r.action.rsplit('/').next().unwrap_or("").to_owned())
            .collect()
    }
}

#[derive(Clone)]
pub struct FakeOptions {
    pub username: String,
    pub password: String,
    pub tls: Option<TlsAcceptor>,
    /// How long a Receive for a never-finishing command waits before `TimedOut`.
    pub hang: Duration,
    /// Answer Create with `Connection: close` (forces the client to reconnect).
    pub close_after_create: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            username: "aether".into(),
            password: "pa55:word".into(),
            tls: None,
            hang: Duration::from_millis(300),
            close_after_create: false,
        }
    }
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    pub async fn start(options: FakeOptions) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let connection = {
                    let mut s = shared.lock().unwrap();
                    s.connections += 1;
                    s.connections
                };
                let state = Arc::clone(&shared);
                let options = options.clone();
                tokio::spawn(async move {
                    let svc = {
                        let options = options.clone();
                        service_fn(move |req| {
                            handle(req, Arc::clone(&state), options.clone(), connection)
                        })
                    };
                    let builder = hyper::server::conn::http1::Builder::new();
                    match &options.tls {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        Fake { addr, state }
    }

    pub fn script(&self, command: &str, steps: Vec<Step>) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .insert(command.to_owned(), steps.into());
    }

    pub fn http_url(&self) -> String {
        format!("http://{}/hv01/wsman", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn actions(&self) -> Vec<String> {
        self.state.lock().unwrap().actions()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/soap+xml;charset=UTF-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn envelope(action: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope xml:lang="en-US" xmlns:s="{SOAP}" xmlns:a="{WSA}" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xmlns:w="{WSMAN}" xmlns:rsp="{SHELL}"><s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:9A2B0000-0000-0000-0000-000000000000</a:MessageID><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

pub fn fault(subcode: &str, wsman_code: u32, reason: &str) -> String {
    envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        &format!(
            r#"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{wsman_code}" Machine="hv01"><f:Message>{reason}</f:Message></f:WSManFault></s:Detail></s:Fault>"#
        ),
    )
}

fn timed_out() -> String {
    fault(
        "w:TimedOut",
        2_150_858_793,
        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
    )
}

fn receive_response(command_id: &str, streams: &[(&str, Vec<u8>)], exit: Option<i32>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body = String::from("<rsp:ReceiveResponse>");
    for (name, data) in streams {
        body.push_str(&format!(
            r#"<rsp:Stream Name="{name}" CommandId="{command_id}">{}</rsp:Stream>"#,
            b64.encode(data)
        ));
    }
    match exit {
        Some(code) => body.push_str(&format!(
            r#"<rsp:Stream Name="stdout" CommandId="{command_id}" End="true"/><rsp:Stream Name="stderr" CommandId="{command_id}" End="true"/><rsp:CommandState CommandId="{command_id}" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>"#
        )),
        None => body.push_str(&format!(
            r#"<rsp:CommandState CommandId="{command_id}" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"/>"#
        )),
    }
    body.push_str("</rsp:ReceiveResponse>");
    envelope(
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
        &body,
    )
}

fn parse_request(xml: &str, connection: usize) -> Recorded {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let find = |ns: &str, name: &str| doc.descendants().find(|n| n.has_tag_name((ns, name)));
    let text = |ns: &str, name: &str| find(ns, name).and_then(|n| n.text()).map(str::to_owned);
    let mut rec = Recorded {
        action: text(WSA, "Action").unwrap_or_default(),
        shell_id: doc
            .descendants()
            .find(|n| n.has_tag_name((WSMAN, "Selector")) && n.attribute("Name") == Some("ShellId"))
            .and_then(|n| n.text())
            .map(str::to_owned),
        command: text(SHELL, "Command"),
        args: doc
            .descendants()
            .filter(|n| n.has_tag_name((SHELL, "Arguments")))
            .map(|n| n.text().unwrap_or("").to_owned())
            .collect(),
        options: doc
            .descendants()
            .filter(|n| n.has_tag_name((WSMAN, "Option")))
            .map(|n| {
                (
                    n.attribute("Name").unwrap_or("").to_owned(),
                    n.text().unwrap_or("").to_owned(),
                )
            })
            .collect(),
        signal_code: text(SHELL, "Code"),
        connection,
        ..Recorded::default()
    };
    for tag in ["Signal", "DesiredStream", "Stream"] {
        if let Some(node) = find(SHELL, tag) {
            rec.command_id = node.attribute("CommandId").map(str::to_owned);
            if tag == "Stream" {
                rec.stdin = base64::engine::general_purpose::STANDARD
                    .decode(node.text().unwrap_or("").trim())
                    .unwrap();
                rec.stdin_end = node.attribute("End").map(str::to_owned);
            }
        }
    }
    rec
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    options: FakeOptions,
    connection: usize,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", options.username, options.password))
    );
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    let has_host = req.headers().contains_key("host");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if !authorized {
        return Ok(Response::builder()
            .status(401)
            .header("www-authenticate", "Basic realm=\"WSMAN\"")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    assert!(has_host, "requests must carry a Host header");
    let xml = String::from_utf8(body.to_vec()).unwrap();
    let rec = parse_request(&xml, connection);
    let action = rec.action.rsplit('/').next().unwrap_or("").to_owned();
    state.lock().unwrap().requests.push(rec.clone());
    let shell_ok = rec.shell_id.as_deref() == Some(SHELL_ID);
    match action.as_str() {
        "Create" => {
            let body = envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
                &format!(
                    r#"<x:ResourceCreated><a:Address>http://hv01:5985/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">{SHELL_ID}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated><rsp:Shell><rsp:ShellId>{SHELL_ID}</rsp:ShellId><rsp:ResourceUri>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</rsp:ResourceUri><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"#
                ),
            );
            let mut response = reply(200, body);
            if options.close_after_create {
                response.headers_mut().insert(
                    "connection",
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok(response)
        }
        _ if !shell_ok => Ok(reply(
            500,
            fault(
                "w:InvalidSelectors",
                2_150_858_843,
                "The shell was not found.",
            ),
        )),
        "Command" => {
            let command = rec.command.clone().unwrap_or_default();
            if command == "http503" {
                return Ok(Response::builder()
                    .status(503)
                    .header("content-type", "text/html")
                    .body(Full::new(Bytes::from_static(
                        b"<html><body>\n  Service   Unavailable\n</body></html>",
                    )))
                    .unwrap());
            }
            if command == "fail" {
                return Ok(reply(
                    500,
                    fault(
                        "w:InternalError",
                        2_147_942_402,
                        "The system cannot find the file specified.",
                    ),
                ));
            }
            let id = {
                let mut s = state.lock().unwrap();
                s.next_command += 1;
                let id = format!("C0FFEE00-0000-0000-0000-{:012}", s.next_command);
                s.running.insert(id.clone(), (command, Vec::new()));
                id
            };
            Ok(reply(
                200,
                envelope(
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
                    &format!("<rsp:CommandResponse><rsp:CommandId>{id}</rsp:CommandId></rsp:CommandResponse>"),
                ),
            ))
        }
        "Send" => {
            let id = rec.command_id.clone().unwrap_or_default();
            if let Some((_, stdin)) = state.lock().unwrap().running.get_mut(&id) {
                stdin.extend_from_slice(&rec.stdin);
            }
            Ok(reply(
                200,
                envelope(
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
                    "<rsp:SendResponse/>",
                ),
            ))
        }
        "Receive" => {
            let id = rec.command_id.clone().unwrap_or_default();
            let step = {
                let mut s = state.lock().unwrap();
                let (command, stdin) = s.running.get(&id).cloned().unwrap_or_default();
                if command == "cat" {
                    Some(Step::Output(vec![("stdout", stdin)], Some(0)))
                } else {
                    s.scripts.get_mut(&command).and_then(VecDeque::pop_front)
                }
            };
            match step {
                Some(Step::Output(streams, exit)) => {
                    Ok(reply(200, receive_response(&id, &streams, exit)))
                }
                Some(Step::TimedOut) => Ok(reply(500, timed_out())),
                None => {
                    tokio::time::sleep(options.hang).await;
                    Ok(reply(500, timed_out()))
                }
            }
        }
        "Signal" => Ok(reply(
            200,
            envelope(
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
                "<rsp:SignalResponse/>",
            ),
        )),
        "Delete" => Ok(reply(
            200,
            envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
                "",
            ),
        )),
        other => panic!("fake winrm got unexpected action {other}"),
    }
}
