//! One pinned HTTP/1.1 connection to a WinRM endpoint, plain or TLS.
//!
//! A [`Transport`] owns at most one live connection (hyper's low-level
//! `client::conn::http1`, no pool) and sends every request of its shell over
//! it. Pinning matters for the NTLM follow-up: NTLM authentication and
//! MS-WSMV message sealing are bound to one TCP connection, so the auth layer
//! (see [`AuthHeader`]) will hook in exactly here, per connection.
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
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsConnector;

use crate::config::{Auth, ClientConfig};
use crate::error::WinrmError;
use crate::tls;

/// Largest response body accepted (a Receive answer is bounded by MaxEnvelopeSize).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The `User-Agent` header.
const USER_AGENT_VALUE: &str = concat!("aetherv-winrm/", env!("CARGO_PKG_VERSION"));

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

/// The per-request authentication data. Basic is stateless; NTLM will keep
/// per-connection state (handshake, sealing keys) next to the connection.
#[derive(Clone)]
pub(crate) struct AuthHeader {
    authorization: HeaderValue,
}

impl AuthHeader {
    fn new(auth: &Auth) -> Result<Self, WinrmError> {
        match auth {
            Auth::Basic { username, password } => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                let mut value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                    WinrmError::Config("credentials are not valid header text".into())
                })?;
                value.set_sensitive(true);
                Ok(AuthHeader {
                    authorization: value,
                })
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
        Ok(Connector {
            endpoint,
            tls,
            auth: AuthHeader::new(&cfg.auth)?,
            connect_timeout: cfg.connect_timeout,
            request_timeout,
        })
    }

    /// Opens a new connection: TCP, TLS when https, HTTP/1.1 handshake.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, WinrmError> {
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
                    handshake(stream).await
                }
                None => handshake(tcp).await,
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

    fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, WinrmError> {
        Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.path.as_str())
            .header(HOST, self.endpoint.authority.as_str())
            .header(CONTENT_TYPE, "application/soap+xml;charset=UTF-8")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(AUTHORIZATION, self.auth.authorization.clone())
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

/// An HTTP reply: status and UTF-8 body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// Set while an exchange is in flight; still set afterwards means the
    /// exchange was abandoned and the connection must not be reused.
    busy: bool,
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
            let mut sender = self.connector.connect().await?;
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
            });
        }
        Ok(())
    }

    /// Posts one envelope and reads the whole reply.
    ///
    /// HTTP 401 becomes [`WinrmError::Auth`]; every other status is returned
    /// to the caller, which knows whether a fault is expected.
    ///
    /// Cancel safety: dropping the future mid-exchange is safe; the connection
    /// is then marked abandoned and replaced before the next request.
    pub(crate) async fn exchange(&mut self, envelope: String) -> Result<Reply, WinrmError> {
        let connector = Arc::clone(&self.connector);
        let body = Bytes::from(envelope);
        let mut retried = false;
        loop {
            self.ensure_ready().await?;
            let request = connector.request(body.clone())?;
            let Some(conn) = self.conn.as_mut() else {
                return Err(WinrmError::Protocol("no connection after connect".into()));
            };
            conn.busy = true;
            let deadline = Instant::now() + connector.request_timeout;
            let response = match timeout_at(deadline, conn.sender.send_request(request)).await {
                Err(_) => {
                    self.conn = None;
                    return Err(WinrmError::Timeout);
                }
                Ok(Err(err)) => {
                    self.conn = None;
                    if err.is_canceled() && !retried {
                        // The connection closed before the request was written.
                        retried = true;
                        continue;
                    }
                    return Err(WinrmError::Transport(err));
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status().as_u16();
            let collected = timeout_at(
                deadline,
                Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect(),
            )
            .await;
            let bytes = match collected {
                Err(_) => {
                    self.conn = None;
                    return Err(WinrmError::Timeout);
                }
                Ok(Err(err)) => {
                    self.conn = None;
                    return Err(match err.downcast::<hyper::Error>() {
                        Ok(err) => WinrmError::Transport(*err),
                        Err(_) => WinrmError::Protocol("response body too large".into()),
                    });
                }
                Ok(Ok(collected)) => collected.to_bytes(),
            };
            conn.busy = false;
            if status == 401 {
                return Err(WinrmError::Auth { status });
            }
            let body = String::from_utf8(bytes.to_vec())
                .map_err(|_| WinrmError::Protocol("response body is not utf-8".into()))?;
            return Ok(Reply { status, body });
        }
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
        let h = AuthHeader::new(&Auth::Basic {
            username: "user".into(),
            password: "pass".into(),
        })
        .unwrap();
        assert_eq!(h.authorization.to_str().unwrap(), "Basic dXNlcjpwYXNz");
        assert!(h.authorization.is_sensitive());
        assert!(!format!("{:?}", h.authorization).contains("dXNl"));
    }
}
