//! The crate's error type.
//!
//! Messages are lowercase and never contain credentials, request bodies or
//! command lines: only status codes, fault codes and short, server-provided
//! snippets. Callers branch on the variant (for example retry on
//! [`WinrmError::Connect`], give up on [`WinrmError::Auth`]), never on the text.

use std::io;

/// Everything that can go wrong talking WinRM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WinrmError {
    /// The configuration is unusable (bad endpoint URL, unreadable CA PEM, …).
    #[error("invalid winrm client configuration: {0}")]
    Config(String),
    /// The TCP connection could not be established (or timed out connecting).
    #[error("cannot connect to the winrm endpoint")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed, typically an untrusted or mismatched certificate.
    #[error("tls handshake with the winrm endpoint failed")]
    Tls(#[source] io::Error),
    /// The server rejected the credentials (HTTP 401).
    #[error("winrm authentication rejected (http {status})")]
    Auth {
        /// The HTTP status (401).
        status: u16,
    },
    /// An HTTP status the protocol does not expect, with a short body excerpt.
    #[error("unexpected http status {status} from the winrm endpoint")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// At most a few hundred characters of the response body.
        body_snippet: String,
    },
    /// The HTTP exchange failed after the connection was up (reset, closed mid-response).
    #[error("http exchange with the winrm endpoint failed")]
    Transport(#[source] hyper::Error),
    /// The NTLM security layer failed: an unsupported negotiation, or a sealed message that
    /// did not verify (tampering, or sealing state out of step).
    #[error("winrm ntlm security layer failed")]
    Ntlm(#[source] crate::ntlm::NtlmError),
    /// Kerberos failed: the KDC refused the credentials (`credentials_rejected`), no KDC or
    /// service ticket could be had, the host did not prove its identity, or a sealed message did
    /// not verify. The message names principals and GSSAPI's reason, never a password.
    #[error("winrm kerberos authentication failed: {message}")]
    Kerberos {
        /// What failed, for people.
        message: String,
        /// True when the KDC refused the principal's password or keys.
        credentials_rejected: bool,
    },
    /// The server answered with a SOAP fault.
    #[error("winrm fault {code}: {reason}")]
    Fault {
        /// The SOAP fault code as sent, for example `s:Receiver` or `s:Sender`.
        code: String,
        /// The SOAP subcode, for example `w:TimedOut` or `w:InvalidSelectors`.
        subcode: Option<String>,
        /// The human-readable fault reason sent by the server.
        reason: String,
    },
    /// The command or operation ran past its deadline (the command was terminated).
    #[error("winrm operation timed out")]
    Timeout,
    /// The caller cancelled the command (the command was terminated).
    #[error("winrm operation cancelled")]
    Cancelled,
    /// The server's answer did not follow the protocol.
    #[error("winrm protocol error: {0}")]
    Protocol(String),
    /// A command line would exceed what WinRS (through `cmd.exe`) accepts.
    #[error("command line too long ({len} characters, at most {max})")]
    CommandTooLong {
        /// Characters the encoded command would take.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The shell was already deleted (after a timeout or cancellation) and cannot run more commands.
    #[error("winrm shell is closed")]
    ShellClosed,
}

impl WinrmError {
    /// The error's class, a bounded metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            WinrmError::Config(_) => "config",
            WinrmError::Connect(_) => "connect",
            WinrmError::Tls(_) => "tls",
            WinrmError::Auth { .. } | WinrmError::Ntlm(_) | WinrmError::Kerberos { .. } => "auth",
            WinrmError::Http { .. } => "http",
            WinrmError::Transport(_) => "transport",
            WinrmError::Fault { .. } => "fault",
            WinrmError::Timeout => "timeout",
            WinrmError::Cancelled => "cancelled",
            WinrmError::Protocol(_)
            | WinrmError::CommandTooLong { .. }
            | WinrmError::ShellClosed => "protocol",
        }
    }

    /// True for errors where the remote side may never have seen the request
    /// and a retry on a new connection is reasonable (connect and TLS failures).
    pub fn is_connect(&self) -> bool {
        matches!(self, WinrmError::Connect(_) | WinrmError::Tls(_))
    }

    /// True when the host was unreachable or too slow (connect, HTTP exchange, unexpected HTTP
    /// status, deadline): retrying later may help. Authentication, TLS, protocol and fault
    /// errors are permanent.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            WinrmError::Connect(..)
                | WinrmError::Transport(..)
                | WinrmError::Http { .. }
                | WinrmError::Timeout
        )
    }

    /// True when the credentials were refused (HTTP 401, or a KDC refusing a Kerberos
    /// password or keytab): retrying with the same credentials cannot help.
    pub fn is_auth_rejected(&self) -> bool {
        matches!(
            self,
            WinrmError::Auth { .. }
                | WinrmError::Kerberos {
                    credentials_rejected: true,
                    ..
                }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_and_slow_hosts_are_transient_the_rest_permanent() {
        let io = || io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let transient = [
            WinrmError::Connect(io()),
            WinrmError::Http {
                status: 503,
                body_snippet: String::new(),
            },
            WinrmError::Timeout,
        ];
        for e in &transient {
            assert!(e.is_transient(), "{e:?}");
        }
        let permanent = [
            WinrmError::Auth { status: 401 },
            WinrmError::Tls(io()),
            WinrmError::Config("bad url".into()),
            WinrmError::Cancelled,
            WinrmError::Protocol("no body".into()),
            WinrmError::ShellClosed,
            WinrmError::Fault {
                code: "s:Receiver".into(),
                subcode: None,
                reason: "x".into(),
            },
            WinrmError::Kerberos {
                message: "kdc".into(),
                credentials_rejected: false,
            },
        ];
        for e in &permanent {
            assert!(!e.is_transient(), "{e:?}");
        }
    }
}
