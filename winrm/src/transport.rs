//! One pinned HTTP/1.1 connection to a WinRM endpoint, plain or TLS.
//!
//! A [`Transport`] owns at most one live connection (hyper's low-level
//! `client::conn::http1`, no pool) and sends every request of its shell over
//! it. Pinning matters for NTLM: authentication and MS-WSMV message sealing
//! are bound to one TCP connection, so each connection runs its own NTLM
//! handshake (empty-body POSTs) and keeps its own sealing state; a reconnect
//! re-authenticates, and a 401 on an authenticated connection triggers one
//! re-authentication before the request is sent again (the server did not
//! process it). Over `http://` NTLM bodies are sealed; over `https://` not, and
//! the handshake carries channel bindings of the server certificate (EPA).
//!
//! Reconnects happen only *before* a request is written: when the pinned
//! connection was closed by the server (idle keep-alive expiry), or when the
//! previous exchange was abandoned mid-flight (its future dropped by a
//! timeout or cancellation), which leaves an unread response on the wire.
//! A request that hyper reports as never sent is retried once on a fresh
//! connection; anything else is returned, never silently replayed, because
//! WinRS requests are not idempotent.
//!
//! This module does no SOAP: it moves envelopes and returns status + body.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT, WWW_AUTHENTICATE};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsConnector;

use crate::config::{Auth, ClientConfig};
use crate::error::WinrmError;
#[cfg(feature = "kerberos")]
use crate::kerberos::{self, KerberosAuth, KerberosSession};
use crate::ntlm::{self, NtlmCredentials, NtlmInitiator, NtlmSession};
use crate::tls;

/// Largest response body accepted (a Receive answer is bounded by MaxEnvelopeSize).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The `User-Agent` header.
const USER_AGENT_VALUE: &str = concat!("aetherv-winrm/", env!("CARGO_PKG_VERSION"));
/// `Content-Type` of a plain SOAP body.
const SOAP_CONTENT_TYPE: &str = "application/soap+xml;charset=UTF-8";

/// The parsed endpoint URL.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The URL as configured (used as `wsa:To`).
    pub url: String,
    https: bool,
    /// Host name or IP address, without IPv6 brackets.
    host: String,
    port: u16,
    /// `host:port` for the `Host` header.
    authority: String,
    /// Path and query, the HTTP request target.
    path: String,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Self, WinrmError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| WinrmError::Config("endpoint is not a valid url".into()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(WinrmError::Config(
                    "endpoint scheme must be http or https".into(),
                ))
            }
        };
        let raw_host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| WinrmError::Config("endpoint has no host".into()))?;
        let port = uri.port_u16().unwrap_or(if https { 5986 } else { 5985 });
        let host = raw_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|p| !p.is_empty() && p != "/")
            .unwrap_or_else(|| "/wsman".to_owned());
        Ok(Endpoint {
            url: url.to_owned(),
            https,
            host,
            port,
            authority: format!("{raw_host}:{port}"),
            path,
        })
    }
}

/// How requests on a connection are authenticated.
#[derive(Clone)]
pub(crate) enum AuthHeader {
    /// Stateless: the same `Authorization` header on every request.
    Basic { authorization: HeaderValue },
    /// Per connection: an NTLM handshake on each new connection, then sealing (over HTTP).
    Ntlm(NtlmCredentials),
    /// Per connection: a Kerberos context on each new connection, then sealing (over HTTP).
    #[cfg(feature = "kerberos")]
    Kerberos(Arc<KerberosAuth>),
}

impl AuthHeader {
    fn new(auth: &Auth, endpoint: &Endpoint) -> Result<Self, WinrmError> {
        match auth {
            Auth::Basic { username, password } => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                let mut value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                    WinrmError::Config("credentials are not valid header text".into())
                })?;
                value.set_sensitive(true);
                Ok(AuthHeader::Basic {
                    authorization: value,
                })
            }
            Auth::Ntlm {
                username,
                password,
                domain,
            } => {
                if username.is_empty() {
                    return Err(WinrmError::Config("ntlm user name is empty".into()));
                }
                Ok(AuthHeader::Ntlm(NtlmCredentials::new(
                    username, password, domain,
                )))
            }
            #[cfg(feature = "kerberos")]
            Auth::Kerberos {
                principal,
                secret,
                spn,
            } => Ok(AuthHeader::Kerberos(Arc::new(KerberosAuth::new(
                principal,
                secret,
                spn.as_deref(),
                &endpoint.host,
            )?))),
            #[cfg(not(feature = "kerberos"))]
            Auth::Kerberos { .. } => {
                let _ = endpoint;
                Err(WinrmError::Config(
                    "kerberos authentication needs aetherv-winrm built with the `kerberos` feature"
                        .into(),
                ))
            }
        }
    }
}

/// Everything needed to open a connection; shared by all shells of a client.
pub(crate) struct Connector {
    pub endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    auth: AuthHeader,
    connect_timeout: Duration,
    /// Bound on one HTTP exchange (request written, response fully read).
    request_timeout: Duration,
}

impl Connector {
    pub(crate) fn new(cfg: &ClientConfig, request_timeout: Duration) -> Result<Self, WinrmError> {
        let endpoint = Endpoint::parse(&cfg.endpoint)?;
        let tls = if endpoint.https {
            let config = tls::client_config(&cfg.tls)?;
            let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| {
                WinrmError::Config("endpoint host is not a valid tls server name".into())
            })?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let auth = AuthHeader::new(&cfg.auth, &endpoint)?;
        Ok(Connector {
            endpoint,
            tls,
            auth,
            connect_timeout: cfg.connect_timeout,
            request_timeout,
        })
    }

    /// Opens a new connection: TCP, TLS when https, HTTP/1.1 handshake. Over TLS also
    /// returns the NTLM channel bindings of the server certificate.
    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, Option<[u8; 16]>), WinrmError> {
        let attempt = async {
            let tcp = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
                .await
                .map_err(WinrmError::Connect)?;
            // Small request/response exchanges: do not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(WinrmError::Tls)?;
                    let bindings = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .map(|cert| ntlm::tls_channel_bindings(cert));
                    Ok((handshake(stream).await?, bindings))
                }
                None => Ok((handshake(tcp).await?, None)),
            }
        };
        match timeout(self.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(WinrmError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out",
            ))),
        }
    }

    /// True when bodies are sealed (NTLM or Kerberos over plain HTTP).
    fn seals(&self) -> bool {
        !matches!(self.auth, AuthHeader::Basic { .. }) && !self.endpoint.https
    }

    fn request(
        &self,
        body: Bytes,
        content_type: &str,
        authorization: Option<HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, WinrmError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.path.as_str())
            .header(HOST, self.endpoint.authority.as_str())
            .header(CONTENT_TYPE, content_type)
            .header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder
            .body(Full::new(body))
            .map_err(|_| WinrmError::Config("cannot build an http request for the endpoint".into()))
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, WinrmError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(WinrmError::Transport)?;
    // The connection task ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "winrm connection ended with an error");
        }
    });
    Ok(sender)
}

/// `Negotiate <base64>` (raw NTLMSSP inside the Negotiate scheme, as Windows accepts).
fn negotiate_header(token: &[u8]) -> Result<HeaderValue, WinrmError> {
    let value = format!(
        "Negotiate {}",
        base64::engine::general_purpose::STANDARD.encode(token)
    );
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| WinrmError::Protocol("ntlm token is not valid header text".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The token of a `WWW-Authenticate: Negotiate <b64>` (or `NTLM`/`Kerberos <b64>`) challenge.
fn challenge_token(headers: &[String]) -> Option<Vec<u8>> {
    headers
        .iter()
        .flat_map(|h| h.split(','))
        .filter_map(|part| part.trim().split_once(' '))
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("negotiate")
                || scheme.eq_ignore_ascii_case("ntlm")
                || scheme.eq_ignore_ascii_case("kerberos")
        })
        .find_map(|(_, token)| {
            base64::engine::general_purpose::STANDARD
                .decode(token.trim())
                .ok()
        })
}

/// An HTTP reply: status and UTF-8 body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
}

/// A raw HTTP reply.
struct Raw {
    status: u16,
    content_type: String,
    www_authenticate: Vec<String>,
    body: Bytes,
}

/// Why a round trip failed.
enum SendError {
    /// The connection closed before the request was written (safe to retry once).
    NotSent(hyper::Error),
    Failed(WinrmError),
}

impl From<SendError> for WinrmError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotSent(err) => WinrmError::Transport(err),
            SendError::Failed(err) => err,
        }
    }
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// Set while an exchange is in flight; still set afterwards means the
    /// exchange was abandoned and the connection must not be reused.
    busy: bool,
    /// The security context of this connection (NTLM or Kerberos), once authenticated.
    session: Option<Session>,
    /// NTLM channel bindings of the TLS server certificate (https only).
    channel_bindings: Option<[u8; 16]>,
}

/// An authenticated connection's security context, which seals and unseals bodies.
enum Session {
    Ntlm(Box<NtlmSession>),
    #[cfg(feature = "kerberos")]
    Kerberos(KerberosSession),
}

impl Session {
    /// The mechanism's name, for logs and errors.
    fn name(&self) -> &'static str {
        match self {
            Session::Ntlm(_) => "ntlm",
            #[cfg(feature = "kerberos")]
            Session::Kerberos(_) => "kerberos",
        }
    }

    /// The sealed body and its content type.
    fn seal(&mut self, soap: &[u8]) -> Result<(Bytes, &'static str), WinrmError> {
        match self {
            Session::Ntlm(s) => Ok((
                Bytes::from(ntlm::seal_body(s, soap)),
                ntlm::ENCRYPTED_CONTENT_TYPE,
            )),
            #[cfg(feature = "kerberos")]
            Session::Kerberos(s) => Ok((
                Bytes::from(kerberos::seal_body(s, soap)?),
                kerberos::ENCRYPTED_CONTENT_TYPE,
            )),
        }
    }

    fn unseal(&mut self, body: &[u8]) -> Result<Vec<u8>, WinrmError> {
        match self {
            Session::Ntlm(s) => ntlm::unseal_body(s, body).map_err(WinrmError::Ntlm),
            #[cfg(feature = "kerberos")]
            Session::Kerberos(s) => kerberos::unseal_body(s, body),
        }
    }
}

/// True when a `Content-Type` announces a sealed body.
fn is_encrypted_content_type(value: &str) -> bool {
    #[cfg(feature = "kerberos")]
    if kerberos::is_encrypted_content_type(value) {
        return true;
    }
    ntlm::is_encrypted_content_type(value)
}

/// A single pinned connection (re-opened on loss) for one shell.
pub(crate) struct Transport {
    connector: Arc<Connector>,
    conn: Option<Conn>,
}

impl Transport {
    pub(crate) fn new(connector: Arc<Connector>) -> Self {
        Transport {
            connector,
            conn: None,
        }
    }

    /// Makes sure `self.conn` holds an idle connection ready for a request.
    async fn ensure_ready(&mut self) -> Result<(), WinrmError> {
        if let Some(conn) = &mut self.conn {
            let reusable =
                !conn.busy && !conn.sender.is_closed() && conn.sender.ready().await.is_ok();
            if !reusable {
                tracing::debug!("winrm connection lost or abandoned, reconnecting");
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let (mut sender, channel_bindings) = self.connector.connect().await?;
            timeout(self.connector.connect_timeout, sender.ready())
                .await
                .map_err(|_| {
                    WinrmError::Connect(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connect timed out",
                    ))
                })?
                .map_err(WinrmError::Transport)?;
            self.conn = Some(Conn {
                sender,
                busy: false,
                session: None,
                channel_bindings,
            });
        }
        Ok(())
    }

    /// Sends one request on the pinned connection and reads the whole reply. Any failure
    /// drops the connection (and with it its NTLM session).
    async fn round_trip(&mut self, request: Request<Full<Bytes>>) -> Result<Raw, SendError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::Failed(WinrmError::Protocol(
                "no connection after connect".into(),
            )));
        };
        conn.busy = true;
        let deadline = Instant::now() + self.connector.request_timeout;
        // The previous exchange's response may be read while the connection task has not yet
        // made the connection idle again: wait for it, or hyper refuses the request.
        match timeout_at(deadline, conn.sender.ready()).await {
            Err(_) => {
                self.conn = None;
                return Err(SendError::Failed(WinrmError::Timeout));
            }
            Ok(Err(err)) => {
                self.conn = None;
                return Err(SendError::NotSent(err));
            }
            Ok(Ok(())) => {}
        }
        let response = match timeout_at(deadline, conn.sender.send_request(request)).await {
            Err(_) => {
                self.conn = None;
                return Err(SendError::Failed(WinrmError::Timeout));
            }
            Ok(Err(err)) => {
                self.conn = None;
                return Err(if err.is_canceled() {
                    SendError::NotSent(err)
                } else {
                    SendError::Failed(WinrmError::Transport(err))
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let www_authenticate = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let collected = timeout_at(
            deadline,
            Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect(),
        )
        .await;
        let body = match collected {
            Err(_) => {
                self.conn = None;
                return Err(SendError::Failed(WinrmError::Timeout));
            }
            Ok(Err(err)) => {
                self.conn = None;
                return Err(SendError::Failed(match err.downcast::<hyper::Error>() {
                    Ok(err) => WinrmError::Transport(*err),
                    Err(_) => WinrmError::Protocol("response body too large".into()),
                }));
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        conn.busy = false;
        Ok(Raw {
            status,
            content_type,
            www_authenticate,
            body,
        })
    }

    /// Runs the NTLM handshake on the current connection (empty bodies, as pywinrm and
    /// pypsrp do) and stores the resulting session on it.
    async fn ntlm_handshake(&mut self, creds: &NtlmCredentials) -> Result<(), WinrmError> {
        let mut initiator = NtlmInitiator::new(creds.clone());
        if let Some(hash) = self.conn.as_ref().and_then(|c| c.channel_bindings) {
            initiator = initiator.with_channel_bindings(hash);
        }
        let raw = self.post_token(&initiator.negotiate()).await?;
        if raw.status != 401 {
            return Err(unexpected(&raw));
        }
        let Some(challenge) = challenge_token(&raw.www_authenticate) else {
            tracing::warn!("winrm endpoint does not offer negotiate/ntlm authentication");
            return Err(WinrmError::Auth { status: 401 });
        };
        let (authenticate, session) = initiator
            .authenticate(&challenge)
            .map_err(WinrmError::Ntlm)?;
        let raw = self.post_token(&authenticate).await?;
        match raw.status {
            200..=299 => {}
            401 => {
                tracing::warn!("winrm ntlm authentication rejected (wrong user name or password?)");
                return Err(WinrmError::Auth { status: 401 });
            }
            _ => return Err(unexpected(&raw)),
        }
        self.keep_session(Session::Ntlm(Box::new(session)))
    }

    /// Posts an empty body with `token` in the `Authorization: Negotiate` header (one
    /// handshake leg).
    async fn post_token(&mut self, token: &[u8]) -> Result<Raw, WinrmError> {
        let request = self.connector.request(
            Bytes::new(),
            SOAP_CONTENT_TYPE,
            Some(negotiate_header(token)?),
        )?;
        Ok(self.round_trip(request).await?)
    }

    /// Stores an established security context on the current connection.
    fn keep_session(&mut self, session: Session) -> Result<(), WinrmError> {
        let name = session.name();
        let Some(conn) = self.conn.as_mut() else {
            return Err(WinrmError::Protocol(format!(
                "connection lost after {name}"
            )));
        };
        conn.session = Some(session);
        tracing::debug!("winrm {name} authentication succeeded");
        Ok(())
    }

    /// Establishes a Kerberos context on the current connection (an empty-body POST carrying
    /// the AP-REQ; the `200` answer must carry the AP-REP) and stores it on the connection.
    #[cfg(feature = "kerberos")]
    async fn kerberos_handshake(&mut self, auth: &Arc<KerberosAuth>) -> Result<(), WinrmError> {
        let starter = Arc::clone(auth);
        // Blocking: may ask the KDC for a ticket-granting and a service ticket.
        let (mut session, token) = tokio::task::spawn_blocking(move || starter.start(None))
            .await
            .map_err(|_| WinrmError::Protocol("kerberos task failed".into()))??;
        let raw = self.post_token(&token).await?;
        match raw.status {
            200..=299 => {}
            401 => {
                tracing::warn!(
                    spn = %auth.spn,
                    "winrm kerberos ticket rejected by the host (service principal or its keytab?)"
                );
                // Fresh tickets next time.
                auth.forget_credentials();
                return Err(WinrmError::Auth { status: 401 });
            }
            _ => return Err(unexpected(&raw)),
        }
        session.finish(challenge_token(&raw.www_authenticate).as_deref())?;
        self.keep_session(Session::Kerberos(session))
    }

    /// Posts one envelope and reads the whole reply.
    ///
    /// HTTP 401 becomes [`WinrmError::Auth`] (with NTLM, after one re-authentication on the
    /// connection); every other status is returned to the caller, which knows whether a fault
    /// is expected.
    ///
    /// Cancel safety: dropping the future mid-exchange is safe; the connection
    /// is then marked abandoned and replaced before the next request.
    pub(crate) async fn exchange(&mut self, envelope: String) -> Result<Reply, WinrmError> {
        let connector = Arc::clone(&self.connector);
        let body = Bytes::from(envelope);
        let mut retried = false;
        let mut reauthenticated = false;
        loop {
            self.ensure_ready().await?;
            let request = match &connector.auth {
                AuthHeader::Basic { authorization } => connector.request(
                    body.clone(),
                    SOAP_CONTENT_TYPE,
                    Some(authorization.clone()),
                )?,
                _ => {
                    if self.conn.as_ref().is_some_and(|c| c.session.is_none()) {
                        match &connector.auth {
                            AuthHeader::Ntlm(creds) => self.ntlm_handshake(creds).await?,
                            #[cfg(feature = "kerberos")]
                            AuthHeader::Kerberos(auth) => self.kerberos_handshake(auth).await?,
                            AuthHeader::Basic { .. } => {}
                        }
                    }
                    let session = self.conn.as_mut().and_then(|c| c.session.as_mut());
                    match session {
                        Some(session) if connector.seals() => {
                            let (sealed, content_type) = session.seal(&body)?;
                            connector.request(sealed, content_type, None)?
                        }
                        Some(_) => connector.request(body.clone(), SOAP_CONTENT_TYPE, None)?,
                        None => {
                            return Err(WinrmError::Protocol(
                                "no security context after authentication".into(),
                            ));
                        }
                    }
                }
            };
            let raw = match self.round_trip(request).await {
                Ok(raw) => raw,
                Err(SendError::NotSent(_)) if !retried => {
                    // The connection closed before the request was written.
                    retried = true;
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            if raw.status == 401 {
                if !matches!(connector.auth, AuthHeader::Basic { .. }) && !reauthenticated {
                    // The server dropped the security context: authenticate again.
                    tracing::debug!(
                        "winrm answered 401 on an authenticated connection, re-authenticating"
                    );
                    reauthenticated = true;
                    if let Some(conn) = self.conn.as_mut() {
                        conn.session = None;
                    }
                    continue;
                }
                return Err(WinrmError::Auth { status: 401 });
            }
            let bytes = if is_encrypted_content_type(&raw.content_type) {
                let session = self.conn.as_mut().and_then(|c| c.session.as_mut());
                let Some(session) = session else {
                    return Err(WinrmError::Protocol(
                        "encrypted response without a security context".into(),
                    ));
                };
                match session.unseal(&raw.body) {
                    Ok(plain) => Bytes::from(plain),
                    Err(err) => {
                        // The sealing state is out of step: never reuse this connection.
                        self.conn = None;
                        return Err(err);
                    }
                }
            } else if connector.seals() && !raw.body.is_empty() && raw.status < 300 {
                // A success must be sealed; an error answer may come in plain text and
                // becomes an error anyway.
                self.conn = None;
                return Err(WinrmError::Protocol(
                    "unencrypted response on an ntlm-sealed connection".into(),
                ));
            } else {
                raw.body
            };
            let body = String::from_utf8(bytes.to_vec())
                .map_err(|_| WinrmError::Protocol("response body is not utf-8".into()))?;
            return Ok(Reply {
                status: raw.status,
                body,
            });
        }
    }
}

fn unexpected(raw: &Raw) -> WinrmError {
    WinrmError::Http {
        status: raw.status,
        body_snippet: String::from_utf8_lossy(&raw.body)
            .chars()
            .take(300)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parsing_defaults_and_ipv6() {
        let e = Endpoint::parse("https://hv01.example.com/wsman").unwrap();
        assert!(e.https);
        assert_eq!((e.host.as_str(), e.port), ("hv01.example.com", 5986));
        assert_eq!(e.authority, "hv01.example.com:5986");
        assert_eq!(e.path, "/wsman");
        let e = Endpoint::parse("http://[::1]:8080/hv01/wsman?x=1").unwrap();
        assert!(!e.https);
        assert_eq!((e.host.as_str(), e.port), ("::1", 8080));
        assert_eq!(e.authority, "[::1]:8080");
        assert_eq!(e.path, "/hv01/wsman?x=1");
        let e = Endpoint::parse("http://hv02").unwrap();
        assert_eq!((e.port, e.path.as_str()), (5985, "/wsman"));
        assert!(matches!(
            Endpoint::parse("ftp://x/"),
            Err(WinrmError::Config(_))
        ));
        assert!(matches!(
            Endpoint::parse("not a url"),
            Err(WinrmError::Config(_))
        ));
    }

    #[test]
    fn basic_auth_header_is_sensitive() {
        let h = AuthHeader::new(
            &Auth::Basic {
                username: "user".into(),
                password: "pass".into(),
            },
            &Endpoint::parse("http://hv01/wsman").unwrap(),
        )
        .unwrap();
        let AuthHeader::Basic { authorization } = h else {
            panic!("basic expected");
        };
        assert_eq!(authorization.to_str().unwrap(), "Basic dXNlcjpwYXNz");
        assert!(authorization.is_sensitive());
        assert!(!format!("{authorization:?}").contains("dXNl"));
    }
}
