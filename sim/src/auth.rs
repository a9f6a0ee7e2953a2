//! WinRM authentication of the simulator: HTTP Basic, and NTLM with MS-WSMV message
//! encryption (sealed `multipart/encrypted` bodies) bound to one TCP connection.
//!
//! NTLM state lives in a [`ConnAuth`] made once per accepted connection (axum's connect-info
//! hook for plain HTTP, a request extension for HTTPS), so a handshake and its sealing keys
//! never leak into another connection. The NTLM acceptor is `aetherv_winrm::ntlm`; pywinrm's
//! initiator (pyspnego) is the independent counterpart in the tests.
//!
//! Like Windows with `AllowUnencrypted=false`, a plain SOAP body on an NTLM-authenticated plain
//! HTTP connection is refused (HTTP 400); over HTTPS it is accepted.

use std::sync::{Arc, Mutex, MutexGuard};

use aetherv_winrm::ntlm::{self, NtlmAcceptor, NtlmIdentity, NtlmSession};
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::TcpListener;

/// Per-connection authentication state (cheap to clone; clones share the state).
#[derive(Clone, Default)]
pub struct ConnAuth {
    inner: Arc<Mutex<ConnState>>,
}

#[derive(Default)]
struct ConnState {
    tls: bool,
    acceptor: Option<NtlmAcceptor>,
    session: Option<NtlmSession>,
    identity: Option<NtlmIdentity>,
}

impl std::fmt::Debug for ConnAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnAuth").finish_non_exhaustive()
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for ConnAuth {
    fn connect_info(_stream: IncomingStream<'_, TcpListener>) -> Self {
        ConnAuth::default()
    }
}

/// The outcome of one NTLM handshake step.
pub(crate) enum NtlmStep {
    /// Send this CHALLENGE token in a 401.
    Challenge(Vec<u8>),
    /// Authenticated; the connection now has a session.
    Authenticated,
    /// The token was bad or the credentials did not verify.
    Rejected,
}

impl ConnAuth {
    /// State for a connection; `tls` says whether bodies may travel unsealed.
    pub fn new(tls: bool) -> Self {
        ConnAuth {
            inner: Arc::new(Mutex::new(ConnState {
                tls,
                ..ConnState::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this connection is TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.lock().tls
    }

    /// Runs one handshake step for an `Authorization: Negotiate|NTLM <token>` header.
    /// `check(user, domain)` returns the password of an acceptable account.
    pub(crate) fn step(
        &self,
        token: &[u8],
        target: &str,
        password_for: impl Fn(&str, &str) -> Option<String>,
    ) -> NtlmStep {
        let mut st = self.lock();
        match token.get(8) {
            Some(1) => {
                st.session = None;
                st.identity = None;
                let mut acceptor = NtlmAcceptor::new(target);
                match acceptor.challenge(token) {
                    Ok(challenge) => {
                        st.acceptor = Some(acceptor);
                        NtlmStep::Challenge(challenge)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "ntlm negotiate rejected");
                        NtlmStep::Rejected
                    }
                }
            }
            Some(3) => {
                let Some(acceptor) = st.acceptor.take() else {
                    return NtlmStep::Rejected;
                };
                match acceptor.authenticate(token, password_for) {
                    Ok((identity, session)) => {
                        tracing::debug!(user = %identity.username, "ntlm authenticated");
                        st.session = Some(session);
                        st.identity = Some(identity);
                        NtlmStep::Authenticated
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "ntlm authentication failed");
                        NtlmStep::Rejected
                    }
                }
            }
            _ => NtlmStep::Rejected,
        }
    }

    /// True once NTLM authenticated this connection.
    pub(crate) fn ntlm_authenticated(&self) -> bool {
        self.lock().session.is_some()
    }

    /// The domain part of the NTLM identity (`HV02` of `HV02\aetherv`), lower case.
    pub(crate) fn ntlm_domain(&self) -> Option<String> {
        self.lock()
            .identity
            .as_ref()
            .map(|i| i.domain.to_ascii_lowercase())
            .filter(|d| !d.is_empty())
    }

    /// Unseals a request body with the connection's session.
    pub(crate) fn unseal(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let mut st = self.lock();
        let session = st
            .session
            .as_mut()
            .ok_or_else(|| "encrypted body on a connection without ntlm".to_string())?;
        ntlm::unseal_body(session, body).map_err(|e| e.to_string())
    }

    /// Seals a response body with the connection's session.
    pub(crate) fn seal(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut st = self.lock();
        st.session
            .as_mut()
            .map(|session| ntlm::seal_body(session, body))
    }
}
