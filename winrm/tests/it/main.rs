//! Integration tests of aetherv-winrm (one test binary, see STYLE "build speed").
//!
//! - `pywinrm`: conformance with pywinrm's recorded fixtures (read at test time);
//! - `e2e`: the client against an in-test fake WinRM server (`fake`);
//! - `ntlm_peer`: NTLM + message encryption against the pyspnego peer in `tests/peers/`.
#![expect(clippy::unwrap_used, reason = "tests unwrap known-good values")]

mod e2e;
mod fake;
mod ntlm_peer;
mod pywinrm;
#[path = "../support/mod.rs"]
mod support;
