//! Kerberos for WinRM through MIT GSSAPI (the `libgssapi` crate; feature `kerberos`).
//!
//! - Credentials: a principal with a password (`gss_acquire_cred_with_password`: MIT keeps the
//!   ticket-granting ticket in a private in-memory credential cache, nothing is written to disk
//!   and no environment is read for it), or a principal with a keytab. For a keytab MIT's
//!   *client keytab* is used: the process must name it in `KRB5_CLIENT_KTNAME` before any
//!   thread starts ([`install_client_keytab`]); libgssapi offers no safe `gss_acquire_cred_from`.
//!   Credentials are acquired once per client and re-acquired shortly before they expire.
//! - The context: the raw Kerberos 5 mechanism (no SPNEGO wrapper, as pywinrm and
//!   requests-kerberos send it) under the `Negotiate` HTTP scheme, with mutual authentication:
//!   the `200` answer carries the AP-REP, and a context that does not complete is an error.
//!   The target is `HTTP/<endpoint host>` unless another service principal is configured.
//! - Sealing ([`seal_body`] / [`unseal_body`]): MS-WSMV 2.2.9.1.1 `multipart/encrypted` with
//!   `protocol="application/HTTP-SPNEGO-session-encrypted"`; the part is a 4-byte little-endian
//!   header length, the GSS wrap header, then the encrypted data, made with `gss_wrap_iov`
//!   HEADER | DATA | PADDING (the trailer travels in the header, RRC), exactly as Windows and
//!   pyspnego do. Responses are unwrapped as one token (header followed by data), which is
//!   what RFC 4121 tokens with AES allow; RC4 (arcfour) is not supported for sealing.
//!
//! Passwords never appear in `Debug` output, errors or logs.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext as _};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{OidSet, GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};
use libgssapi::util::{GssIov, GssIovType};

use crate::config::KerberosSecret;
use crate::error::WinrmError;

/// The environment variable MIT reads for the client keytab.
pub const CLIENT_KEYTAB_ENV: &str = "KRB5_CLIENT_KTNAME";
/// The environment variable MIT reads for the default credential cache.
pub const CCACHE_ENV: &str = "KRB5CCNAME";
/// Credentials are re-acquired when they have less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(120);

// MIT krb5 error codes (com_err table base -1765328384) that mean "cannot reach or find the KDC",
// as opposed to "the KDC refused these credentials".
const KRB5_REALM_UNKNOWN: i32 = -1765328230;
const KRB5_KDC_UNREACH: i32 = -1765328228;
const KRB5_REALM_CANT_RESOLVE: i32 = -1765328164;
const KRB5_CONFIG_CANTOPEN: i32 = -1765328248;

/// Names `keytab` as this process's MIT client keytab (`KRB5_CLIENT_KTNAME`) and, unless a
/// credential cache is already configured, keeps tickets in memory (`KRB5CCNAME=MEMORY:…`).
///
/// Call it at process start, before any other thread exists: it changes the process
/// environment, which C code (libkrb5) reads without Rust's lock.
#[expect(
    clippy::disallowed_methods,
    reason = "MIT reads the client keytab only from its environment or profile, and libgssapi has \
              no safe gss_acquire_cred_from; callers run this before any thread starts"
)]
pub fn install_client_keytab(keytab: &Path) {
    std::env::set_var(CLIENT_KEYTAB_ENV, keytab_name(keytab));
    if std::env::var_os(CCACHE_ENV).is_none() {
        std::env::set_var(CCACHE_ENV, "MEMORY:aetherv-winrm");
    }
}

fn keytab_name(keytab: &Path) -> String {
    format!("FILE:{}", keytab.display())
}

/// True when `KRB5_CLIENT_KTNAME` names `keytab` (with or without the `FILE:` prefix).
fn client_keytab_installed(keytab: &Path) -> bool {
    std::env::var(CLIENT_KEYTAB_ENV).is_ok_and(|v| {
        let v = v.strip_prefix("FILE:").unwrap_or(&v);
        Path::new(v) == keytab
    })
}

/// The validated Kerberos settings of a client, with a cache for the acquired credentials.
pub(crate) struct KerberosAuth {
    principal: String,
    secret: KerberosSecret,
    /// The target service principal, `HTTP/host` or `HTTP/host@REALM`.
    pub(crate) spn: String,
    cred: Mutex<Option<Cred>>,
}

impl fmt::Debug for KerberosAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KerberosAuth")
            .field("principal", &self.principal)
            .field("secret", &self.secret)
            .field("spn", &self.spn)
            .finish_non_exhaustive()
    }
}

impl KerberosAuth {
    pub(crate) fn new(
        principal: &str,
        secret: &KerberosSecret,
        spn: Option<&str>,
        host: &str,
    ) -> Result<Self, WinrmError> {
        if principal.trim().is_empty() {
            return Err(WinrmError::Config("kerberos principal is empty".into()));
        }
        if let KerberosSecret::Keytab(path) = secret {
            if !client_keytab_installed(path) {
                return Err(WinrmError::Config(format!(
                    "kerberos keytab {} is not this process's client keytab ({CLIENT_KEYTAB_ENV}); \
                     the worker installs it at start",
                    path.display()
                )));
            }
        }
        let spn = match spn.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => s.to_owned(),
            None => format!("HTTP/{host}"),
        };
        Ok(KerberosAuth {
            principal: principal.trim().to_owned(),
            secret: secret.clone(),
            spn,
            cred: Mutex::new(None),
        })
    }

    /// The cached credentials, or freshly acquired ones (blocking: may talk to the KDC).
    fn credentials(&self) -> Result<Cred, WinrmError> {
        let mut cached = self
            .cred
            .lock()
            .map_err(|_| WinrmError::Protocol("kerberos credential cache poisoned".into()))?;
        if let Some(cred) = cached.as_ref() {
            if cred.lifetime().is_ok_and(|left| left > REFRESH_MARGIN) {
                return Ok(cred.clone());
            }
        }
        let cred = self.acquire()?;
        *cached = Some(cred.clone());
        Ok(cred)
    }

    /// Forgets the cached credentials (after the host refused a ticket made from them).
    pub(crate) fn forget_credentials(&self) {
        if let Ok(mut cached) = self.cred.lock() {
            *cached = None;
        }
    }

    fn acquire(&self) -> Result<Cred, WinrmError> {
        let name = Name::new(self.principal.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
            .map_err(|e| config_error("the kerberos principal is not a valid name", &e))?;
        let mechs = krb5_mechs()?;
        let acquired = match &self.secret {
            KerberosSecret::Password(password) => Cred::acquire_with_password(
                Some(&name),
                password,
                None,
                CredUsage::Initiate,
                Some(&mechs),
            ),
            KerberosSecret::Keytab(_) => {
                Cred::acquire(Some(&name), None, CredUsage::Initiate, Some(&mechs))
            }
        };
        let reject = |e: libgssapi::error::Error| {
            let unreachable = matches!(
                e.minor as i32,
                KRB5_REALM_UNKNOWN
                    | KRB5_KDC_UNREACH
                    | KRB5_REALM_CANT_RESOLVE
                    | KRB5_CONFIG_CANTOPEN
            );
            if unreachable {
                tracing::warn!(principal = %self.principal, error = %e, "kerberos: cannot reach a kdc");
                WinrmError::Kerberos {
                    message: format!("cannot get a ticket for {}: {e}", self.principal),
                    credentials_rejected: false,
                }
            } else {
                tracing::warn!(principal = %self.principal, error = %e, "kerberos: credentials rejected");
                WinrmError::Kerberos {
                    message: format!(
                        "the kdc rejected the credentials of {}: {e}",
                        self.principal
                    ),
                    credentials_rejected: true,
                }
            }
        };
        let cred = acquired.map_err(reject)?;
        // With a keytab MIT may fetch the ticket-granting ticket lazily: asking for the
        // lifetime resolves it now, so a bad keytab fails here, as a credential error.
        cred.lifetime().map_err(reject)?;
        tracing::debug!(principal = %self.principal, "kerberos credentials acquired");
        Ok(cred)
    }

    /// Starts a security context for the target (blocking: fetches a service ticket).
    /// Returns the context and the first token (the AP-REQ).
    pub(crate) fn start(
        &self,
        channel_bindings: Option<&[u8]>,
    ) -> Result<(KerberosSession, Vec<u8>), WinrmError> {
        let cred = self.credentials()?;
        let target = Name::new(self.spn.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
            .map_err(|e| config_error("the kerberos service principal is not a valid name", &e))?;
        let flags = CtxFlags::GSS_C_MUTUAL_FLAG
            | CtxFlags::GSS_C_REPLAY_FLAG
            | CtxFlags::GSS_C_SEQUENCE_FLAG
            | CtxFlags::GSS_C_CONF_FLAG
            | CtxFlags::GSS_C_INTEG_FLAG;
        let mut ctx = ClientCtx::new(Some(cred), target, flags, Some(GSS_MECH_KRB5));
        let token = ctx.step(None, channel_bindings).map_err(|e| {
            tracing::warn!(spn = %self.spn, error = %e, "kerberos: no service ticket");
            WinrmError::Kerberos {
                message: format!("cannot get a service ticket for {}: {e}", self.spn),
                credentials_rejected: false,
            }
        })?;
        let token = token.map(|t| t.to_vec()).unwrap_or_default();
        if token.is_empty() {
            return Err(WinrmError::Protocol(
                "kerberos produced no initial token".into(),
            ));
        }
        Ok((
            KerberosSession {
                ctx,
                complete: false,
            },
            token,
        ))
    }
}

fn krb5_mechs() -> Result<OidSet, WinrmError> {
    let mut mechs = OidSet::new();
    mechs
        .add(GSS_MECH_KRB5)
        .map_err(|e| config_error("gssapi", &e))?;
    Ok(mechs)
}

fn config_error(what: &str, e: &libgssapi::error::Error) -> WinrmError {
    WinrmError::Config(format!("{what}: {e}"))
}

/// One connection's Kerberos security context.
pub struct KerberosSession {
    ctx: ClientCtx,
    complete: bool,
}

impl fmt::Debug for KerberosSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KerberosSession")
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl KerberosSession {
    /// Feeds the server's answer token (the AP-REP); the context must then be complete.
    pub(crate) fn finish(&mut self, token: Option<&[u8]>) -> Result<(), WinrmError> {
        let Some(token) = token else {
            return Err(WinrmError::Kerberos {
                message: "the host did not prove its identity (no mutual authentication token)"
                    .into(),
                credentials_rejected: false,
            });
        };
        match self.ctx.step(Some(token), None) {
            Ok(None) if self.ctx.is_complete() => {
                self.complete = true;
                Ok(())
            }
            Ok(_) => Err(WinrmError::Protocol(
                "kerberos context needs more than one round trip".into(),
            )),
            Err(e) => Err(WinrmError::Kerberos {
                message: format!("the host's mutual authentication token is invalid: {e}"),
                credentials_rejected: false,
            }),
        }
    }

    /// Encrypts `data` with `gss_wrap_iov` (HEADER | DATA | PADDING): (header, data + padding).
    pub fn wrap(&mut self, data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), WinrmError> {
        let mut buf = data.to_vec();
        let (header, padding) = {
            let mut iovs = [
                GssIov::new_alloc(GssIovType::Header),
                GssIov::new(GssIovType::Data, &mut buf),
                GssIov::new_alloc(GssIovType::Padding),
            ];
            self.ctx
                .wrap_iov(true, &mut iovs)
                .map_err(|e| sealing_error("wrap", &e))?;
            (iovs[0].to_vec(), iovs[2].to_vec())
        };
        buf.extend_from_slice(&padding);
        Ok((header, buf))
    }

    /// Decrypts and verifies one wrap token given as its header and encrypted data.
    pub fn unwrap(&mut self, header: &[u8], data: &[u8]) -> Result<Vec<u8>, WinrmError> {
        let mut token = Vec::with_capacity(header.len() + data.len());
        token.extend_from_slice(header);
        token.extend_from_slice(data);
        let plain = self
            .ctx
            .unwrap(&token)
            .map_err(|e| sealing_error("unwrap", &e))?;
        Ok(plain.to_vec())
    }
}

fn sealing_error(what: &str, e: &libgssapi::error::Error) -> WinrmError {
    WinrmError::Kerberos {
        message: format!("message {what} failed: {e}"),
        credentials_rejected: false,
    }
}

// ---------------------------------------------------------------------------------------------
// MS-WSMV framing

/// `Content-Type` of a Kerberos-sealed WinRM body (negotiated under the `Negotiate` scheme).
pub const ENCRYPTED_CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";
const PROTOCOLS: [&str; 2] = [
    "application/HTTP-SPNEGO-session-encrypted",
    "application/HTTP-Kerberos-session-encrypted",
];
const BOUNDARY: &[u8] = b"--Encrypted Boundary";

/// Seals a SOAP envelope into an MS-WSMV `multipart/encrypted` body.
pub fn seal_body(session: &mut KerberosSession, soap: &[u8]) -> Result<Vec<u8>, WinrmError> {
    let (header, data) = session.wrap(soap)?;
    let header_len = u32::try_from(header.len())
        .map_err(|_| WinrmError::Protocol("kerberos wrap header too long".into()))?;
    let mut out = Vec::with_capacity(data.len() + header.len() + 256);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: ");
    out.extend_from_slice(PROTOCOLS[0].as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(
        format!(
            "\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={}\r\n",
            soap.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: application/octet-stream\r\n");
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"--\r\n");
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn framing(what: &str) -> WinrmError {
    WinrmError::Protocol(format!("kerberos-sealed body: {what}"))
}

/// Splits an MS-WSMV `multipart/encrypted` body into (original length, wrap header, data).
///
/// The encrypted data runs to the closing boundary (with or without a CRLF before it).
pub fn split_body(body: &[u8]) -> Result<(usize, &[u8], &[u8]), WinrmError> {
    let first = find(body, BOUNDARY, 0).ok_or_else(|| framing("no boundary"))?;
    let header_start = first + BOUNDARY.len();
    let second = find(body, BOUNDARY, header_start).ok_or_else(|| framing("one part only"))?;
    let header = std::str::from_utf8(&body[header_start..second])
        .map_err(|_| framing("part header is not text"))?;
    if !PROTOCOLS.iter().any(|p| header.contains(p)) {
        return Err(framing("not a kerberos/spnego-encrypted part"));
    }
    let length: usize = header
        .split("Length=")
        .nth(1)
        .map(str::trim_start)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| framing("no original length"))?;
    let after = second + BOUNDARY.len();
    let line1 = find(body, b"\r\n", after).ok_or_else(|| framing("truncated"))? + 2;
    let payload_at = find(body, b"\r\n", line1).ok_or_else(|| framing("truncated"))? + 2;
    let end = find(body, BOUNDARY, payload_at).ok_or_else(|| framing("no closing boundary"))?;
    let mut payload = &body[payload_at..end];
    let len_bytes: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| framing("truncated"))?;
    let header_len = u32::from_le_bytes(len_bytes) as usize;
    let wrap_header = payload
        .get(4..4 + header_len)
        .ok_or_else(|| framing("truncated wrap header"))?;
    payload = &payload[4 + header_len..];
    // A CRLF before the closing boundary is not part of the data.
    if payload.len() > length && payload.ends_with(b"\r\n") {
        payload = &payload[..payload.len() - 2];
    }
    Ok((length, wrap_header, payload))
}

/// Unseals and verifies an MS-WSMV `multipart/encrypted` body.
pub fn unseal_body(session: &mut KerberosSession, body: &[u8]) -> Result<Vec<u8>, WinrmError> {
    let (length, header, data) = split_body(body)?;
    let plain = session.unwrap(header, data)?;
    if plain.len() != length {
        return Err(framing(
            "decrypted length differs from the announced length",
        ));
    }
    Ok(plain)
}

/// True when a `Content-Type` announces a Kerberos- or SPNEGO-sealed body.
pub fn is_encrypted_content_type(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    v.starts_with("multipart/encrypted")
        && PROTOCOLS
            .iter()
            .any(|p| v.contains(&p.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_splits_header_and_data() {
        let mut body = Vec::new();
        body.extend_from_slice(b"--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=5\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n");
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"HDRdata5--Encrypted Boundary--\r\n");
        let (len, h, d) = split_body(&body).unwrap();
        assert_eq!((len, h, d), (5, &b"HDR"[..], &b"data5"[..]));
        assert!(is_encrypted_content_type(ENCRYPTED_CONTENT_TYPE));
        assert!(is_encrypted_content_type(
            "multipart/encrypted;protocol=\"application/HTTP-Kerberos-session-encrypted\""
        ));
        assert!(split_body(b"--Encrypted Boundary\r\nnothing").is_err());
    }
}
