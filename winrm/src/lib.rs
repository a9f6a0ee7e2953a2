//! aetherv-winrm: a WinRM (WS-Management WinRS) client.
//!
//! Runs commands on Windows hosts the way `winrs` does: Create a `cmd` shell,
//! send a Command (plus optional stdin), long-poll Receive until the command
//! is done, Signal terminate, Delete the shell. Over HTTP or HTTPS (rustls,
//! `ring`), with Basic auth, NTLM ([`Auth::Ntlm`]) or Kerberos ([`Auth::Kerberos`], feature
//! `kerberos`, same sealing with a Kerberos wrap token): NTLMv2 is negotiated once per pinned
//! connection and, over plain HTTP, every body is sealed as MS-WSMV `multipart/encrypted`;
//! over HTTPS the handshake carries channel bindings of the server certificate (see [`ntlm`]).
//!
//! Output is decoded incrementally into complete lines ([`OutputLine`]):
//! UTF-8 stdout, CLIXML stderr from `powershell.exe` with `_xHHHH_` escapes,
//! whatever the chunk boundaries (see [`decode`]).
//!
//! Layout:
//! - [`config`]: configuration, options and result types;
//! - [`envelope`]: SOAP request builders; [`response`]: response and fault parsers;
//! - [`decode`]: the pure stream decoders; [`powershell`]: `-EncodedCommand` helpers;
//! - [`ntlm`]: NTLMv2 initiator and acceptor, sealing, MS-WSMV encrypted framing;
//! - `kerberos` (feature `kerberos`): Kerberos through MIT GSSAPI, with the same sealing;
//! - `transport` (private): the pinned HTTP/1.1 connection and auth headers; `tls` (private);
//! - `client`: [`WinrmClient`] and [`Shell`], deadlines and cancellation.
//!
//! This crate knows nothing about Aether-V jobs or agents: it runs a command
//! line and reports lines and an exit code.
//!
//! ```no_run
//! use std::time::Duration;
//! use aetherv_winrm::{Auth, ClientConfig, OutputLine, RunOptions, WinrmClient};
//!
//! # async fn demo() -> Result<(), aetherv_winrm::WinrmError> {
//! let mut cfg = ClientConfig::new(
//!     "https://hv01.example.com:5986/wsman",
//!     Auth::Basic { username: "svc-aether".into(), password: "…".into() },
//! );
//! cfg.tls.ca_pem = Some(std::fs::read("/etc/aetherv/ca.pem").unwrap_or_default());
//! let client = WinrmClient::new(cfg)?;
//! let opts = RunOptions { deadline: Some(Duration::from_secs(600)), ..RunOptions::default() };
//! let status = client
//!     .run("powershell.exe", &["-NoProfile".into(), "-Command".into(), "hostname".into()], opts,
//!         &mut |line| match line {
//!             OutputLine::Stdout(l) => println!("{l}"),
//!             OutputLine::Stderr(l) => eprintln!("{l}"),
//!         })
//!     .await?;
//! assert!(status.success());
//! # Ok(())
//! # }
//! ```

#![cfg_attr(
    test,
    expect(clippy::unwrap_used, reason = "tests unwrap known-good fixtures")
)]

mod client;
pub mod config;
pub mod decode;
pub mod envelope;
mod error;
#[cfg(feature = "kerberos")]
pub mod kerberos;
pub mod ntlm;
pub mod powershell;
pub mod response;
mod tls;
mod transport;

pub use client::{Shell, WinrmClient, CLEANUP_TIMEOUT, REQUEST_TIMEOUT_SLACK};
pub use config::{
    Auth, ClientConfig, CommandOutput, ExitStatus, KerberosSecret, OutputLine, RunOptions,
    TlsOptions,
};
pub use envelope::SignalCode;
pub use error::WinrmError;
pub use tokio_util::sync::CancellationToken;
