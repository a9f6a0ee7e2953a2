//! Client configuration, per-command options and the result types.
//!
//! Plain data only: validation happens in `WinrmClient::new`, I/O elsewhere.
//! `Debug` output never contains a password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Default TCP + TLS connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default WS-Management `OperationTimeout` (how long one Receive long-poll may wait).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `MaxEnvelopeSize` in bytes.
pub const DEFAULT_MAX_ENVELOPE_SIZE: u32 = 512_000;
/// UTF-8, the only codepage the output decoders understand.
pub const CODEPAGE_UTF8: u32 = 65001;

/// How the client authenticates.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// HTTP Basic (local accounts; WinRM needs `Auth/Basic=true`, and
    /// `AllowUnencrypted=true` over plain HTTP, so prefer HTTPS).
    Basic {
        /// The user name (`user` or `HOST\user`).
        username: String,
        /// The password. Never printed by `Debug`.
        password: String,
    },
    /// NTLMv2, negotiated once per pinned connection (re-negotiated on 401). Over `http://`
    /// every request and response body is sealed (MS-WSMV message encryption), so the host
    /// needs no `AllowUnencrypted`; over `https://` TLS protects the bodies.
    Ntlm {
        /// The account (`user`, `DOMAIN\user` when `domain` is empty, or `user@domain`).
        username: String,
        /// The password. Never printed by `Debug`.
        password: String,
        /// The domain, or the host name for a local account; may be empty.
        domain: String,
    },
    /// Kerberos through MIT GSSAPI (needs the crate feature `kerberos`; without it
    /// `WinrmClient::new` refuses this variant). A context is established once per pinned
    /// connection with mutual authentication (re-established on 401); over `http://` every
    /// body is sealed (MS-WSMV message encryption). See the `kerberos` module.
    Kerberos {
        /// The client principal, `user@REALM`.
        principal: String,
        /// A password or a keytab.
        secret: KerberosSecret,
        /// The host's service principal; `HTTP/<endpoint host>` when `None`.
        spn: Option<String>,
    },
}

/// How a Kerberos principal proves its identity.
#[derive(Clone, PartialEq, Eq)]
pub enum KerberosSecret {
    /// The principal's password. Never printed by `Debug`.
    Password(String),
    /// A keytab file with the principal's keys (MIT's client keytab; see
    /// `kerberos::install_client_keytab`).
    Keytab(PathBuf),
}

impl fmt::Debug for KerberosSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KerberosSecret::Password(_) => f.write_str("Password(<redacted>)"),
            KerberosSecret::Keytab(path) => f.debug_tuple("Keytab").field(path).finish(),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Ntlm {
                username, domain, ..
            } => f
                .debug_struct("Ntlm")
                .field("username", username)
                .field("password", &"<redacted>")
                .field("domain", domain)
                .finish(),
            Auth::Kerberos {
                principal,
                secret,
                spn,
            } => f
                .debug_struct("Kerberos")
                .field("principal", principal)
                .field("secret", secret)
                .field("spn", spn)
                .finish(),
        }
    }
}

/// TLS settings for `https://` endpoints.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM with one or more CA certificates. When set, *only* these roots are
    /// trusted (the usual case for an internal CA); otherwise the Mozilla roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip certificate and host name validation (a warning is logged when the
    /// client is built). Signatures are still checked. For labs only.
    pub accept_invalid_certs: bool,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())),
            )
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

/// Everything needed to talk to one WinRM endpoint.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http(s)://host:port/path`, for example `https://hv01:5986/wsman`.
    /// Without a port, 5985 (http) or 5986 (https) is used.
    pub endpoint: String,
    /// Credentials.
    pub auth: Auth,
    /// TLS settings (ignored for `http://`).
    pub tls: TlsOptions,
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// WS-Management `OperationTimeout` for Receive long-polls. Each HTTP
    /// exchange is bounded by this plus [`crate::REQUEST_TIMEOUT_SLACK`].
    pub operation_timeout: Duration,
    /// `MaxEnvelopeSize` sent with every request.
    pub max_envelope_size: u32,
    /// `WINRS_CODEPAGE`; keep 65001 (UTF-8), the decoders assume it.
    pub codepage: u32,
}

impl ClientConfig {
    /// A configuration with the defaults above.
    pub fn new(endpoint: impl Into<String>, auth: Auth) -> Self {
        ClientConfig {
            endpoint: endpoint.into(),
            auth,
            tls: TlsOptions::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            max_envelope_size: DEFAULT_MAX_ENVELOPE_SIZE,
            codepage: CODEPAGE_UTF8,
        }
    }
}

/// Options for one command.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Bytes written to the command's stdin, which is then closed.
    pub stdin: Option<Vec<u8>>,
    /// Bound on the whole command (Command, Send and every Receive). On expiry
    /// the command is terminated, the shell deleted and [`crate::WinrmError::Timeout`] returned.
    pub deadline: Option<Duration>,
    /// Cancels the command the same way, returning [`crate::WinrmError::Cancelled`].
    pub cancel: Option<CancellationToken>,
}

/// One complete, decoded, non-blank output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputLine {
    /// A stdout line.
    Stdout(String),
    /// A stderr line (CLIXML already decoded).
    Stderr(String),
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The process exit code.
    pub code: i32,
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// The collected result of [`crate::WinrmClient::run_collect`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// The process exit code.
    pub exit_code: i32,
    /// Decoded stdout lines, each terminated by `\n` (blank lines dropped).
    pub stdout: String,
    /// Decoded stderr lines, each terminated by `\n` (blank lines dropped).
    pub stderr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_password() {
        let cfg = ClientConfig::new(
            "https://hv01:5986/wsman",
            Auth::Basic {
                username: "admin".into(),
                password: "s3cr3t-pw".into(),
            },
        );
        let text = format!("{cfg:?}");
        assert!(text.contains("admin"));
        assert!(!text.contains("s3cr3t-pw"));
        assert_eq!(cfg.codepage, 65001);
        assert_eq!(cfg.operation_timeout, Duration::from_secs(20));
        let ntlm = Auth::Ntlm {
            username: "svc".into(),
            password: "n7lm-s3cret".into(),
            domain: "LAB".into(),
        };
        let text = format!("{ntlm:?}");
        assert!(text.contains("svc") && text.contains("LAB"));
        assert!(!text.contains("n7lm-s3cret"));
        let krb = Auth::Kerberos {
            principal: "svc@LAB.TEST".into(),
            secret: KerberosSecret::Password("kRb-s3cret".into()),
            spn: None,
        };
        let text = format!("{krb:?}");
        assert!(text.contains("svc@LAB.TEST") && text.contains("<redacted>"));
        assert!(!text.contains("kRb-s3cret"));
    }
}
