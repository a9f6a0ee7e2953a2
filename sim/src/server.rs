//! The HTTP side: WinRM (WS-Management WinRS) at `POST /<host>/wsman` with Basic auth or NTLM
//! with message encryption ([`crate::auth`]) (also `POST /wsman` and `POST /`, routed by a
//! `HOST\user` user name or NTLM domain), and the
//! simulator's own JSON endpoints (`GET /sim/stats`, `GET /sim/hosts/<host>`,
//! `GET /sim/hosts/<host>/records`, `POST /sim/hosts/<host>/faults` with a [`Fault`] body,
//! `POST /sim/hosts/<host>/unreachable?ms=N`: WinRM refused with 503 for N ms, and
//! `GET /sim/hosts/<host>/unreachable`: how many requests were refused so).
//!
//! Shells and commands live in memory. `Command` starts the program in its own task (it runs to
//! completion even if the client goes away); `Receive` long-polls for output up to the
//! request's `OperationTimeout` (capped at [`MAX_RECEIVE_WAIT`]) and answers `w:TimedOut` like
//! Windows when nothing arrived.

use crate::auth::{ConnAuth, NtlmStep};
use crate::powershell::{self, Invocation};
use crate::sim::Sim;
use crate::state::Fault;
use crate::wsman::{self, Operation};
use aetherv_core::AgentResult;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Longest a `Receive` waits for output before answering `w:TimedOut`.
pub const MAX_RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// Default `Receive` wait when the request names no `OperationTimeout`.
pub const DEFAULT_RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// Largest stdout/stderr chunk in one `Receive` response (raw bytes, before base64).
pub const MAX_CHUNK: usize = 32 * 1024;
const SOAP_CONTENT_TYPE: &str = "application/soap+xml;charset=UTF-8";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All open shells, by ShellId.
#[derive(Default)]
pub(crate) struct Shells {
    map: Mutex<HashMap<String, Arc<Shell>>>,
}

struct Shell {
    host: String,
    commands: Mutex<HashMap<String, Arc<Cmd>>>,
}

/// One command's output buffers; `notify` wakes a waiting `Receive`.
#[derive(Default)]
struct Cmd {
    out: Mutex<CmdOut>,
    notify: Notify,
}

#[derive(Default)]
struct CmdOut {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdin: Vec<u8>,
    exit: Option<i32>,
}

impl Cmd {
    fn stdout_line(&self, line: &str) {
        let mut o = lock(&self.out);
        o.stdout.extend_from_slice(line.as_bytes());
        o.stdout.extend_from_slice(b"\r\n");
        drop(o);
        self.notify.notify_waiters();
    }

    fn stderr(&self, text: &str) {
        lock(&self.out).stderr.extend_from_slice(text.as_bytes());
        self.notify.notify_waiters();
    }

    fn finish(&self, code: i32) {
        let mut o = lock(&self.out);
        if o.exit.is_none() {
            o.exit = Some(code);
        }
        drop(o);
        self.notify.notify_waiters();
    }
}

impl Shells {
    fn shell(&self, id: &str) -> Option<Arc<Shell>> {
        lock(&self.map).get(id).cloned()
    }

    /// Number of open shells.
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Forgets every shell (their commands with them).
    pub(crate) fn clear(&self) {
        lock(&self.map).clear();
    }
}

/// The router serving every simulated host.
pub fn router(sim: Sim) -> Router {
    Router::new()
        .route("/{host}/wsman", post(wsman_handler))
        .route("/wsman", post(wsman_handler))
        .route("/", post(wsman_handler))
        .route("/sim/stats", get(stats_handler))
        .route("/sim/hosts/{host}", get(host_handler))
        .route("/sim/hosts/{host}/faults", post(fault_handler))
        .route("/sim/hosts/{host}/records", get(records_handler))
        .route(
            "/sim/hosts/{host}/unreachable",
            post(unreachable_handler).get(refusals_handler),
        )
        .with_state(sim)
}

async fn stats_handler(State(sim): State<Sim>) -> Response {
    Json(sim.stats()).into_response()
}

async fn host_handler(State(sim): State<Sim>, Path(host): Path<String>) -> Response {
    match sim.host_view(&host) {
        Some(v) => Json(v).into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown host {host}\n")).into_response(),
    }
}

async fn records_handler(State(sim): State<Sim>, Path(host): Path<String>) -> Response {
    if sim.has_host(&host) {
        Json(sim.records(&host)).into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("unknown host {host}\n")).into_response()
    }
}

async fn fault_handler(State(sim): State<Sim>, Path(host): Path<String>, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("invalid fault: {e}\n")).into_response()
        }
    };
    if sim.inject_fault(&host, fault) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("unknown host {host}\n")).into_response()
    }
}

/// The query of `POST /sim/hosts/<host>/unreachable`.
#[derive(serde::Deserialize)]
struct UnreachableFor {
    ms: u64,
}

async fn unreachable_handler(
    State(sim): State<Sim>,
    Path(host): Path<String>,
    query: Result<axum::extract::Query<UnreachableFor>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return (StatusCode::BAD_REQUEST, "give ?ms=N\n").into_response();
    };
    if sim.make_unreachable(&host, std::time::Duration::from_millis(q.ms)) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("unknown host {host}\n")).into_response()
    }
}

async fn refusals_handler(State(sim): State<Sim>, Path(host): Path<String>) -> Response {
    match sim.unreachable_refusals(&host) {
        Some(n) => Json(serde_json::json!({ "refused": n })).into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown host {host}\n")).into_response(),
    }
}

fn soap(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, SOAP_CONTENT_TYPE)], body).into_response()
}

fn unauthorized() -> Response {
    // Two headers, as Windows sends them; Basic first.
    let mut resp = StatusCode::UNAUTHORIZED.into_response();
    let h = resp.headers_mut();
    h.append(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"WSMAN\""),
    );
    h.append(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Negotiate"),
    );
    resp
}

/// How a request authenticated.
enum Authn {
    Basic,
    /// NTLM on this connection (the request may carry the AUTHENTICATE token, or nothing).
    Ntlm(ConnAuth),
    /// Answer with this (a 401 challenge or rejection).
    Respond(Response),
}

/// The user name without `HOST\` or `@domain`, compared case-insensitively.
fn user_matches(sim: &Sim, user: &str) -> bool {
    let user = user.rsplit('\\').next().unwrap_or(user);
    let user = user.split('@').next().unwrap_or(user);
    user.eq_ignore_ascii_case(&sim.config().username)
}

fn authenticate(sim: &Sim, conn: Option<&ConnAuth>, headers: &HeaderMap) -> Authn {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some((scheme, token)) = value.and_then(|v| v.trim().split_once(' ')) {
        if scheme.eq_ignore_ascii_case("negotiate") || scheme.eq_ignore_ascii_case("ntlm") {
            let (Some(conn), Ok(raw)) = (conn, B64.decode(token.trim())) else {
                return Authn::Respond(unauthorized());
            };
            let password = |user: &str, _domain: &str| {
                user_matches(sim, user).then(|| sim.config().password.clone())
            };
            return match conn.step(&raw, "sim", password) {
                NtlmStep::Challenge(challenge) => {
                    let value = format!("{scheme} {}", B64.encode(challenge));
                    let mut resp = StatusCode::UNAUTHORIZED.into_response();
                    if let Ok(v) = header::HeaderValue::from_str(&value) {
                        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                    }
                    Authn::Respond(resp)
                }
                NtlmStep::Authenticated => Authn::Ntlm(conn.clone()),
                NtlmStep::Rejected => {
                    sim.note_auth_rejection();
                    Authn::Respond(unauthorized())
                }
            };
        }
    }
    if authorized(sim, headers) {
        return Authn::Basic;
    }
    match conn {
        Some(conn) if value.is_none() && conn.ntlm_authenticated() => Authn::Ntlm(conn.clone()),
        _ => {
            if value.is_some() {
                sim.note_auth_rejection();
            }
            Authn::Respond(unauthorized())
        }
    }
}

fn authorized(sim: &Sim, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, cred)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = B64.decode(cred.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    let cfg = sim.config();
    match decoded.split_once(':') {
        Some((user, pass)) => {
            // Windows accepts `user`, `HOST\user` and `user@domain` forms of the name.
            let user = user.rsplit('\\').next().unwrap_or(user);
            let user = user.split('@').next().unwrap_or(user);
            user.eq_ignore_ascii_case(&cfg.username) && pass == cfg.password
        }
        None => false,
    }
}

/// The host a request to `/wsman` (or `/`) is for: the `HOST` of a `HOST\user` Basic user
/// name, else the only host. pywinrm's `Session` drops any URL path, so this is how it reaches
/// a host: `Session('http://ADDR/wsman', auth=('hv02\\aetherv', pw))`.
fn host_from_user(sim: &Sim, headers: &HeaderMap) -> Option<String> {
    let from_user = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .and_then(|(_, cred)| B64.decode(cred.trim()).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| {
            let (user, _) = d.split_once(':')?;
            let (host, _) = user.split_once('\\')?;
            Some(host.to_ascii_lowercase())
        })
        .filter(|h| sim.has_host(h));
    from_user.or_else(|| match sim.host_names().as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    })
}

/// `/{host}/wsman`, and `/wsman` or `/` without a host in the path (`Option<Path>` is `None`
/// on a route without parameters).
async fn wsman_handler(
    State(sim): State<Sim>,
    host: Option<Path<String>>,
    conn: Option<Extension<ConnectInfo<ConnAuth>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let conn = conn.map(|Extension(ConnectInfo(c))| c);
    let host = host.map(|Path(h)| h);
    wsman_entry(&sim, host, conn.as_ref(), &headers, &body).await
}

/// Authentication, host routing and (un)sealing around [`wsman_request`].
async fn wsman_entry(
    sim: &Sim,
    path_host: Option<String>,
    conn: Option<&ConnAuth>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let path_host = path_host.map(|h| h.to_ascii_lowercase());
    if path_host.as_ref().is_some_and(|h| !sim.has_host(h)) {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    if path_host
        .as_ref()
        .is_some_and(|h| sim.refuse_unreachable(h))
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "").into_response();
    }
    let ntlm = match authenticate(sim, conn, headers) {
        Authn::Respond(resp) => return resp,
        Authn::Basic => None,
        Authn::Ntlm(conn) => Some(conn),
    };
    let host = path_host
        .or_else(|| {
            ntlm.as_ref()
                .and_then(ConnAuth::ntlm_domain)
                .filter(|d| sim.has_host(d))
        })
        .or_else(|| host_from_user(sim, headers));
    let Some(host) = host else {
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    let encrypted = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(aetherv_winrm::ntlm::is_encrypted_content_type);
    let Some(conn) = ntlm else {
        if encrypted {
            return (StatusCode::BAD_REQUEST, "encrypted body without ntlm\n").into_response();
        }
        return wsman_request(sim, host, body).await;
    };
    let plain = if encrypted {
        match conn.unseal(body) {
            Ok(plain) => plain,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        }
    } else if body.is_empty() {
        // The authenticating POST of pywinrm and aetherv-winrm carries no envelope.
        return StatusCode::OK.into_response();
    } else if !conn.is_tls() {
        // Windows with AllowUnencrypted=false.
        return (
            StatusCode::BAD_REQUEST,
            "unencrypted request on an ntlm connection refused\n",
        )
            .into_response();
    } else {
        body.to_vec()
    };
    let resp = wsman_request(sim, host, &plain).await;
    if !encrypted {
        return resp;
    }
    let (mut parts, resp_body) = resp.into_parts();
    let bytes = axum::body::to_bytes(resp_body, usize::MAX)
        .await
        .unwrap_or_default();
    let Some(sealed) = conn.seal(&bytes) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(aetherv_winrm::ntlm::ENCRYPTED_CONTENT_TYPE),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(sealed))
}

/// One authenticated, plain SOAP request for `host`.
async fn wsman_request(sim: &Sim, host: String, body: &[u8]) -> Response {
    let text = String::from_utf8_lossy(body);
    let req = match wsman::parse_request(&text) {
        Ok(r) => r,
        Err(e) => {
            return soap(
                StatusCode::BAD_REQUEST,
                wsman::fault(
                    "",
                    "s:Sender",
                    "w:SchemaValidationError",
                    wsman::FAULT_BAD_XML,
                    &host,
                    &format!("The WS-Management service cannot process the request: {e}."),
                ),
            )
        }
    };
    let relates = req.message_id.clone();
    if req.resource_uri != wsman::RESOURCE_CMD {
        return soap(
            StatusCode::INTERNAL_SERVER_ERROR,
            wsman::fault(
                &relates,
                "s:Sender",
                "w:DestinationUnreachable",
                wsman::FAULT_BAD_RESOURCE,
                &host,
                "The WS-Management service cannot process the request. The resource URI is not supported by this simulated host (only the cmd shell is). ",
            ),
        );
    }
    let shells = &sim.inner.shells;
    let shell_id = match req.operation {
        Operation::Create => {
            let id = uuid::Uuid::new_v4().to_string().to_ascii_uppercase();
            lock(&shells.map).insert(
                id.clone(),
                Arc::new(Shell {
                    host: host.clone(),
                    commands: Mutex::new(HashMap::new()),
                }),
            );
            let address = format!("http://{host}:5985/wsman");
            let owner = &sim.config().username;
            return soap(
                StatusCode::OK,
                wsman::create_response(&relates, &address, &id, owner),
            );
        }
        Operation::Unsupported(action) => {
            return soap(
                StatusCode::INTERNAL_SERVER_ERROR,
                wsman::fault(
                    &relates,
                    "s:Sender",
                    "a:ActionNotSupported",
                    wsman::FAULT_BAD_ACTION,
                    &host,
                    &format!("The action {action} is not supported by the service. "),
                ),
            )
        }
        _ => req.shell_id.clone().unwrap_or_default(),
    };
    let Some(shell) = shells.shell(&shell_id).filter(|s| s.host == host) else {
        return soap(
            StatusCode::INTERNAL_SERVER_ERROR,
            wsman::shell_not_found_fault(&relates, &host, &shell_id),
        );
    };
    let ctx = Ctx {
        sim,
        host: &host,
        relates: &relates,
    };
    in_shell(ctx, &shell_id, &shell, req.operation, req.timeout).await
}

/// Who a request is for and what it answers.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    sim: &'a Sim,
    host: &'a str,
    relates: &'a str,
}

/// Operations on an existing shell: Delete, Command, Send, Signal, Receive.
async fn in_shell(
    ctx: Ctx<'_>,
    shell_id: &str,
    shell: &Shell,
    operation: Operation,
    timeout: Option<Duration>,
) -> Response {
    let relates = ctx.relates;
    match operation {
        Operation::Delete => {
            lock(&ctx.sim.inner.shells.map).remove(shell_id);
            soap(StatusCode::OK, wsman::delete_response(relates))
        }
        Operation::Command {
            command_id,
            command,
            arguments,
        } => {
            let id =
                command_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string().to_ascii_uppercase());
            let cmd = Arc::new(Cmd::default());
            lock(&shell.commands).insert(id.clone(), cmd.clone());
            let line = powershell::join_command_line(&command, &arguments);
            tokio::spawn(run_command(
                ctx.sim.clone(),
                ctx.host.to_string(),
                line,
                cmd,
            ));
            soap(StatusCode::OK, wsman::command_response(relates, &id))
        }
        Operation::Send {
            command_id, data, ..
        } => {
            if let Some(cmd) = lock(&shell.commands).get(&command_id) {
                lock(&cmd.out).stdin.extend_from_slice(&data);
            }
            soap(StatusCode::OK, wsman::send_response(relates))
        }
        Operation::Signal { command_id, .. } => {
            // Terminate (or Ctrl-C): the command is gone for the client; an agent operation
            // already running completes on its own, as a host process killed mid-step would
            // have done its work or not.
            if let Some(cmd) = lock(&shell.commands).remove(&command_id) {
                cmd.finish(-1);
            }
            soap(StatusCode::OK, wsman::signal_response(relates))
        }
        Operation::Receive { command_id } => {
            let cmd = lock(&shell.commands).get(&command_id).cloned();
            match cmd {
                Some(cmd) => receive(ctx, &command_id, &cmd, timeout).await,
                None => soap(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    wsman::fault(
                        relates,
                        "s:Sender",
                        "w:InvalidParameter",
                        wsman::FAULT_SHELL_NOT_FOUND,
                        ctx.host,
                        &format!(
                            "The command with CommandId {command_id} was not found in the shell. "
                        ),
                    ),
                ),
            }
        }
        // Answered before a shell is looked up.
        Operation::Create | Operation::Unsupported(_) => soap(
            StatusCode::INTERNAL_SERVER_ERROR,
            wsman::shell_not_found_fault(relates, ctx.host, shell_id),
        ),
    }
}

/// Runs one command line to completion, writing into `cmd`.
async fn run_command(sim: Sim, host: String, line: String, cmd: Arc<Cmd>) {
    let code = match sim.prepare_command(&host, &line) {
        Invocation::Agent(req) => {
            tracing::debug!(host, operation = %req.operation, correlation_id = %req.correlation_id, "agent operation");
            let c = cmd.clone();
            sim.run_agent_streaming(&host, *req, &move |l: String| c.stdout_line(&l))
                .await
                .unwrap_or(1)
        }
        Invocation::BadRequest(msg) => {
            cmd.stdout_line(&AgentResult::error("invalid_request", msg, "").to_line());
            1
        }
        Invocation::BadEncoding => {
            cmd.stderr(&powershell::clixml_error(&powershell::bad_encoding_lines()));
            1
        }
        Invocation::Completed(out) => {
            for l in &out.stdout {
                cmd.stdout_line(l);
            }
            if !out.stderr.is_empty() {
                cmd.stderr(&powershell::clixml_error(&out.stderr));
            }
            out.exit_code
        }
        Invocation::NotRecognized { term } => {
            tracing::debug!(host, term, "command not recognized");
            cmd.stderr(&powershell::clixml_error(
                &powershell::not_recognized_lines(&term),
            ));
            1
        }
    };
    cmd.finish(code);
}

/// Waits for output (or the end) of `cmd` and answers one `Receive`.
async fn receive(ctx: Ctx<'_>, command_id: &str, cmd: &Cmd, timeout: Option<Duration>) -> Response {
    let Ctx {
        sim, host, relates, ..
    } = ctx;
    let wait = timeout
        .unwrap_or(DEFAULT_RECEIVE_WAIT)
        .min(MAX_RECEIVE_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut closing = sim.inner.closing.subscribe();
    loop {
        let notified = cmd.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut o = lock(&cmd.out);
            if !o.stdout.is_empty() || !o.stderr.is_empty() || o.exit.is_some() {
                let out_n = o.stdout.len().min(MAX_CHUNK);
                let err_n = o.stderr.len().min(MAX_CHUNK);
                let stdout: Vec<u8> = o.stdout.drain(..out_n).collect();
                let stderr: Vec<u8> = o.stderr.drain(..err_n).collect();
                let exit = o
                    .exit
                    .filter(|_| o.stdout.is_empty() && o.stderr.is_empty());
                return soap(
                    StatusCode::OK,
                    wsman::receive_response(relates, command_id, &stdout, &stderr, exit),
                );
            }
        }
        if *closing.borrow_and_update() {
            return soap(
                StatusCode::INTERNAL_SERVER_ERROR,
                wsman::timed_out_fault(relates, host),
            );
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = closing.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                return soap(StatusCode::INTERNAL_SERVER_ERROR, wsman::timed_out_fault(relates, host));
            }
        }
    }
}
