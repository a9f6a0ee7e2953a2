//! Integration tests of the simulated Hyper-V host: the agent-operation state machine, the
//! journal and recording, WinRM over real HTTP(S) with raw SOAP, and pywinrm as the reference
//! client.

mod client;
mod common;
mod guest;
mod journal;
mod names;
mod ntlm;
mod ops;
mod pywinrm;
mod winrm;
