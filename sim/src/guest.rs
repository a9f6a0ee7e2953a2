//! The hook through which a simulated guest OS takes part in the KVP exchange.
//!
//! The host side (the agent operations) calls [`Guest::on_event`] after every change a guest
//! could observe: the VM started, the host wrote or removed KVP items, an ISO was attached. A
//! guest implementation reads `vm.host_kvp`, publishes into `vm.guest_kvp` and records what it
//! applied in `vm.applied_config`. It runs under the host lock, so it must not block.
//!
//! No guest is installed by default: the simulator then behaves like a VM whose guest never
//! answers (the worker's readiness wait times out). [`ProvisioningGuest`] plays the
//! HLVMM/Aether-V exchange; the RSA/AES decryption is a pluggable [`Decryptor`] because the
//! workspace has no RSA implementation to decrypt with here.

use crate::state::{Vm, VmState};
use aetherv_core::kvp::{meta, DATA_PREFIX};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Something the host did to a VM that its guest may react to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GuestEvent {
    /// The VM was started (or reset).
    Started,
    /// The host wrote these KVP items.
    HostKvpWritten {
        /// Names of the items written.
        keys: Vec<String>,
    },
    /// The host removed these KVP items.
    HostKvpRemoved {
        /// Names of the items removed.
        keys: Vec<String>,
    },
    /// An ISO was inserted into the DVD drive.
    IsoAttached,
}

/// A simulated guest operating system.
pub trait Guest: Send + Sync {
    /// Reacts to a host-side change of `vm`. Must not block.
    fn on_event(&self, vm: &mut Vm, event: &GuestEvent);
}

/// Decrypts one published value: `(shared_aes_key item, value item) → plaintext`. It holds
/// the guest's RSA private key; the simulator itself has no RSA.
pub type Decryptor = Arc<dyn Fn(&str, &str) -> Result<String, String> + Send + Sync>;

/// A guest that plays the provisioning exchange (reference §5.2) from the guest side:
///
/// 1. when the VM runs and the host state is `waitingforpublickey`, it checks
///    `hlvmm.meta.version` (if an expected version is set), publishes its public key and sets
///    `waitingforaeskey`;
/// 2. when the host state becomes `provisioningdatapublished`, it decrypts every
///    `hlvmm.data.*` value (reassembling `._N` chunks), verifies the checksum, records the
///    result in `applied_config` (passwords as `sha256:<hex>`), and sets `provisioningapplied`,
///    or `provisioningfailed` with `hlvmm.meta.guest_provisioning_error`.
///
/// Without a [`Decryptor`] values are taken as plaintext, which suits tests of the sequence.
#[derive(Clone, Default)]
pub struct ProvisioningGuest {
    /// The base64 public key it publishes.
    pub public_key_b64: String,
    /// Decrypts values; `None` = plaintext.
    pub decrypt: Option<Decryptor>,
    /// The version baked into its ISO; a different `hlvmm.meta.version` fails the manifest check.
    pub expected_version: Option<String>,
}

impl std::fmt::Debug for ProvisioningGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisioningGuest")
            .field("expected_version", &self.expected_version)
            .finish_non_exhaustive()
    }
}

fn fail(vm: &mut Vm, summary: &str) {
    vm.guest_kvp
        .insert(meta::GUEST_STATE.into(), "provisioningfailed".into());
    vm.guest_kvp
        .insert(meta::GUEST_ERROR.into(), summary.into());
}

impl ProvisioningGuest {
    fn plaintext(&self, aes: &str, value: &str) -> Result<String, String> {
        match &self.decrypt {
            Some(d) => d(aes, value),
            None => Ok(value.to_string()),
        }
    }

    fn apply(&self, vm: &mut Vm) -> Result<(), &'static str> {
        let aes = vm
            .host_kvp
            .get(meta::SHARED_AES_KEY)
            .cloned()
            .unwrap_or_default();
        let mut bases: Vec<String> = vm
            .host_kvp
            .keys()
            .filter(|k| k.starts_with(DATA_PREFIX))
            .map(|k| match k.rsplit_once("._") {
                Some((base, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                    base.to_string()
                }
                _ => k.clone(),
            })
            .collect();
        bases.sort();
        bases.dedup();
        let mut plain = BTreeMap::new();
        for base in bases {
            let value = if let Some(v) = vm.host_kvp.get(&base) {
                self.plaintext(&aes, v)
                    .map_err(|_| "error decrypting:provisioning_data")?
            } else {
                let mut out = String::new();
                for i in 0..aetherv_core::kvp::MAX_CHUNKS {
                    match vm.host_kvp.get(&format!("{base}._{i}")) {
                        Some(part) => out.push_str(
                            &self
                                .plaintext(&aes, part)
                                .map_err(|_| "error decrypting:provisioning_data")?,
                        ),
                        None => break,
                    }
                }
                out
            };
            plain.insert(base, value);
        }
        if let Some(expected) = vm.host_kvp.get(meta::CHECKSUM) {
            if *expected != aetherv_core::kvp::checksum(&plain) {
                return Err("error validating:checksum");
            }
        }
        let applied: serde_json::Map<String, serde_json::Value> = plain
            .into_iter()
            .map(|(k, v)| {
                let name = k.trim_start_matches(DATA_PREFIX).to_string();
                let shown = if name.ends_with("_pw") {
                    let digest = sha2::Sha256::digest(v.as_bytes());
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    format!("sha256:{hex}")
                } else {
                    v
                };
                (name, serde_json::Value::String(shown))
            })
            .collect();
        vm.applied_config = Some(serde_json::Value::Object(applied));
        Ok(())
    }
}

impl Guest for ProvisioningGuest {
    fn on_event(&self, vm: &mut Vm, _event: &GuestEvent) {
        if vm.state != VmState::Running {
            return;
        }
        let host_state = vm.host_kvp.get(meta::HOST_STATE).cloned();
        let guest_state = vm.guest_kvp.get(meta::GUEST_STATE).cloned();
        match (host_state.as_deref(), guest_state.as_deref()) {
            (Some("waitingforpublickey"), None) => {
                if let Some(expected) = &self.expected_version {
                    if vm.host_kvp.get(meta::VERSION) != Some(expected) {
                        fail(vm, "error validating:manifest");
                        return;
                    }
                }
                vm.guest_kvp
                    .insert(meta::GUEST_PUBLIC_KEY.into(), self.public_key_b64.clone());
                vm.guest_kvp
                    .insert(meta::GUEST_STATE.into(), "waitingforaeskey".into());
            }
            (Some("provisioningdatapublished"), Some("waitingforaeskey")) => {
                vm.guest_kvp
                    .insert(meta::GUEST_STATE.into(), "applying".into());
                match self.apply(vm) {
                    Ok(()) => {
                        vm.guest_kvp
                            .insert(meta::GUEST_STATE.into(), "provisioningapplied".into());
                    }
                    Err(summary) => fail(vm, summary),
                }
            }
            _ => {}
        }
    }
}
