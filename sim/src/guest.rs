//! The hook through which a simulated guest OS takes part in the KVP exchange.
//!
//! The host side (the agent operations) calls [`Guest::on_host_event`] after every change a guest
//! could observe: the VM started, the host wrote or removed KVP items, an ISO was attached. A
//! guest implementation reads `vm.host_kvp`, publishes into `vm.guest_kvp` and records what it
//! applied in `vm.applied_config`. It runs under the host lock, so it must not block.
//!
//! Every simulator starts with a [`ProvisioningGuest`], which plays the HLVMM/Aether-V exchange
//! with real crypto (RSA-2048 PKCS#1 v1.5 key unwrap, AES-256-CBC values, checksum; see
//! [`aetherv_core::kvp::crypto`]). Its failures are injected per host through the ordinary fault
//! list with the pseudo-operations in [`faults`]: the guest never answers, reports a bad
//! checksum, or fails to apply.
//!
//! Secrets never leave the guest in plain text: `applied_config` (served at
//! `GET /sim/hosts/<host>`) shows secret fields as `sha256:<hex>`; only the library accessor
//! [`crate::Sim::applied_config_unredacted`] returns the plaintext, for in-process tests.

use crate::state::{Fault, Vm, VmState};
use aetherv_core::kvp::crypto::{self, capi_blob, pkcs1_der};
use aetherv_core::kvp::{meta, DATA_PREFIX};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::RsaPrivateKey;
use serde_json::{Map, Value};
use sha2::Digest as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

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

    /// Like [`Guest::on_event`], with the host's pending faults, from which a guest takes the
    /// ones meant for it (see [`faults`]). The default ignores faults.
    fn on_host_event(&self, vm: &mut Vm, event: &GuestEvent, faults: &mut Vec<Fault>) {
        let _ = faults;
        self.on_event(vm, event);
    }

    /// The configuration the guest applied to VM `vm_id`, with secrets in plain text. For
    /// in-process tests only; never served over HTTP.
    fn applied_unredacted(&self, vm_id: &str) -> Option<Value> {
        let _ = vm_id;
        None
    }
}

/// Fault pseudo-operations a [`ProvisioningGuest`] takes from its host's fault list
/// (`POST /sim/hosts/<host>/faults {"operation": "guest.no_answer"}`).
pub mod faults {
    /// The guest never publishes its public key (the host's readiness wait times out).
    pub const NO_ANSWER: &str = "guest.no_answer";
    /// The guest reports `error validating:checksum`.
    pub const BAD_CHECKSUM: &str = "guest.bad_checksum";
    /// The guest decrypts the data but fails to apply it (`error applying:modules`).
    pub const APPLY_FAILED: &str = "guest.apply_failed";
}

/// Which public-key format a guest publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormatChoice {
    /// Like the real guests: Windows VMs publish a CAPI blob, Linux VMs PKCS#1 DER.
    #[default]
    ByOsFamily,
    /// Always a CAPI `PUBLICKEYBLOB`.
    Capi,
    /// Always PKCS#1 DER.
    Pkcs1,
}

/// Fixed RSA-2048 keys of the simulated guests (simulator only; they protect nothing real).
/// Fixed keys keep tests fast: generating RSA keys in a debug build takes seconds.
const WINDOWS_GUEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDJgPa37QAka/Kp
wBuHC5VfyXj5Uq4FOwOVVP8qTbCugTFnTPxX0RMkeAk9LkzlB2ODmeTIGu8XTNX6
toXOVXq9pZls9fMXZAj9hl/e13mP91vRbITNEixPgnZhBJ9AJTpw4svdmRlu2zXD
2I3hzKn7eaMNuA0aEMGZOJHFDJzvC2jzTumxrvGzD9yV7lLRlK8JKWFaL7krZTtb
i0teKqbTeh+Els/U07n8nsBqPZFoyJraZzCruv7AdsDriUAmiISMvB2xsPJiv9jt
WPAmjdiHVIFUcYZFoSJai7GlK3Rgb84zOVFRugTZDzxnCZVk7eTkXBOGwKXaXf/r
6b7is6yDAgMBAAECggEAY9caZ5ducp1p5uHgwdDjekqBPkfRIZZT+DHdHEDSQiSR
LfXfMkPNkExJh57hSrmWfSZLTTrLLGhNvaOiONHxtvXOR0a14+kU60khR3DMMqEF
RYbXZiSS//JMZVW88jN/+V7mVC3/hAXpZdhutGqL7qYePDXth/S1eA2nbFMLjwTe
RZOgTt60zBllbIALFTdydJr4P3Z+CdVjbQyApXGhwWXNzVJDFyPL+/Cf47mzIXOk
6aed8+3DEnAZ1wQLHCayC2Rv0fe6V3dkNdKAlI8HVbWpcaMxscjk2ZekY2dAFolm
vwKi/tCS8e9UfbRNRuwnR24IbRAphWHzfFCpShIAwQKBgQD4m+kXAh2i7l5Y78KI
ShXn5RD7mr1vMBi/2g2o0MrkBRRrNW7X4Og7BfrBZhlN3gkfj2w35SpmLhq8TJlv
Nm0i/Wrz5UioRdgIN4Zeo3Hs9TUJ7WzRyPZ6NXcm9t2UCfcLWBNBD2CPEz3NffAp
1cm5k3dbB6gAItb+Czp03ospXwKBgQDPfoyQgYjT0sWvPzK7agWPe0coLDBGUi6L
wjNrikQEP6yJtmaX8xvYhkbwKRaGDkIMgCztFG04xGlrDZPoJWL6vV6yrB6G6yE+
KH5R4dfGMjexHeJORlfbZqMohTeVzotzgtcVm9E3MBKYv8hJ+wrUUIlFTocoGfOr
bDmu19t7XQKBgHYJMGYoLwIIwurfCzHCWxw6+hE7qu17nISadxnL6EjS0JsGR5Zf
xmMft6rTWvhJj3NYmT0ApVzWTwNQKxlOcgrG31zlY9XhM2zTUAzm9VRYJ9KK07vW
+o+TivsJArMi+BR+wMWHE4Va0WEbhkeWpaxig6zIuc82u3Tqx9ptPw1pAoGAGV0D
u6pJ2nK6PWjBP81+7oIIOa3lHMNw8x6DAJM/KzHJWnAUbGCIN9h6FWNAYJSfmD2W
wEgt7bF8nVxkhw0C41mAmOCXPrDBOILkpgewQ4bh7eGURzMsDCKosQxPth0wSKdm
uTp5wYA71bYjun9YXImXrgQiW1GIypyJFIlIR/UCgYEAzeVh8NsQn6TvBt3VlRvr
KeVTdmOfHOO7qAbY5wMxXjHTuZrzXHQoZOPgQkyHdNp275sa3n2Fgsx9wtgfgEvs
zW9mhN5Yq2w/bI2eUpCXBhYMhRzutv73YgR2WnSkM/IYfuAgx0SiE9S5D12r0RK5
hCX1oP6xpwI4Ct2OEj6IJ34=
-----END PRIVATE KEY-----";
const LINUX_GUEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC/N7uPKG7gZV4O
5VWnbk7/BFeYR1ntK3HIiXnokVeAJ+xS4bzMtJmr1aChKQS/xu0qZbDlUcY2rG0P
dmvnZV8XSjDyUSaYeAUYOAuigOvw8KAEorehMzVsCzHflm3rznNfx3XMaUq2wj1e
huK3J5uqkL7tVZK55LPwCc3IRpGRI+5xdjKAMPffv7kMdMbxh1QtKloSl6e9kmIm
ODqqtpDaoieCvbGqKwnIc2ocPgPSJ1MpmJWjqswqN3VhclTSTXkEkA2a9AcQxPRy
lIa98oOeLnxH4fRrCAMYcaf+ZfiFUklIjMJUXyjOQjBxULxyPMVPs5qb61HXUFMU
Tm5uOlXjAgMBAAECggEAGq4T4+zK0lF3zGaa9b0SQEp3+bMpl3TNL/i1Q0oVkOKW
epas8/erogpbxWYb7QbnAYLl1Iv9NuoGX4wbkHztmyogETdZxhf88fz5QUfGuTwB
v75/wPoMVVJsjNtdjp4kLUl/JLHORG4ZXPk/ZI8eDQWcNjDkmOkRuDIjUx3m4qld
0KUK0fRA86qLUIf7ldf6hwWNOd94aBbOrQg8oeMVYn8O0ICYrpiYFI3TPlqlDTkV
iZW5J2/rUXSmSGg4T6Nk1rCm33YK1ay3e6kVvaQdcww2hcMKiotwfsWz+2t4sFpQ
QD+TWlf9rrqny7dsCUfW2HaNmWN1epoOtgkVJ/Q5YQKBgQDniu0CgJLl85lTKxs9
FWoDtASI4qbTQ9A8IZbLFpXsLPTC/1UZVaMCzTx154ypa0E+iFoq504jrDgqFAY+
K6Jzx/2+MJ+heGOdSxKh6+nTkSDH5r4SSIP3kzChIazas7y65FcCXNS5PcuJ4oPZ
Vmj4QJQG1loOswjTgS2hKpZKIQKBgQDTamRENQD1ipt/FEe3PwXF+O7mlnAZ7DRl
u2xs7fXp7c7zfLXwKYf3YiY0ORT6wK/6+eP269TuXncf0rTVqY4jeX7oQGrZxvWf
F+z8ZWUV/52WiVOeCqBd0qOCc6Q25N5juUyeqJ13uUDlylPlOK0QpZ0swemOVlXJ
RFM/+NuHgwKBgQDHJu4eldpD4ReCunPuQSnzT3YLCu+0jQJhhf5+ZcnD3xMTWayn
YsoX0dFsFCIfYno2v+7WMic6dZnFT33jIYLUFTNBz+6tYrBDjVvUW+a9q3lHl0bq
0OZ5HmfYX++eGLR/B4FzLcdmISmdSnBfknws8tafXuUM+Z7g1J4bnlawIQKBgAsB
uv6iE860zKutDp7HtTE9aJKwul1fIss5GsgBC5CGRQQANiiuwNlsTrjhT+pOJdtX
LzsnxAo0+Na7TZbiIPhP1v+YevejmB4UTM5HKSAgEsBHngbYXskDsmeURbRl7f4b
I5YPCUO2bV6JThzc+oWnWat+3P4AGK9F01+9QRCpAoGBAN7w5DbMXpRUZyq9ihsS
pI0CPLy40tdP5oum0uA6Wx2GMXa4INY317gA+AsZK1JIjWoq14ZUp7sww0DP8opS
iJ8wi7iiKs73nJMVKAtzwRJ1HzYz5UpPQXLIVdz2+IAbr2KMuQ93TLlrY28v7CSe
DHPTw/VTSna8BUjSG71eo0pr
-----END PRIVATE KEY-----";

fn guest_keys() -> Option<&'static (RsaPrivateKey, RsaPrivateKey)> {
    static KEYS: OnceLock<Option<(RsaPrivateKey, RsaPrivateKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        Some((
            RsaPrivateKey::from_pkcs8_pem(WINDOWS_GUEST_KEY).ok()?,
            RsaPrivateKey::from_pkcs8_pem(LINUX_GUEST_KEY).ok()?,
        ))
    })
    .as_ref()
}

/// A guest that plays the provisioning exchange (reference §5.2) from the guest side:
///
/// 1. when the VM runs and the host state is `waitingforpublickey`, it checks
///    `hlvmm.meta.version` (if an expected version is set), publishes its RSA public key and
///    sets `waitingforaeskey`;
/// 2. when the host state becomes `provisioningdatapublished`, it unwraps the AES key, decrypts
///    every `hlvmm.data.*` value (reassembling `._N` chunks), verifies the checksum, records the
///    result in `applied_config` (secrets as `sha256:<hex>`), and sets `provisioningapplied`,
///    or `provisioningfailed` with `hlvmm.meta.guest_provisioning_error`.
#[derive(Default)]
pub struct ProvisioningGuest {
    /// The key format it publishes.
    pub key_format: KeyFormatChoice,
    /// The version baked into its ISO; a different `hlvmm.meta.version` fails the manifest check.
    pub expected_version: Option<String>,
    applied: Mutex<HashMap<String, Map<String, Value>>>,
}

impl std::fmt::Debug for ProvisioningGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisioningGuest")
            .field("key_format", &self.key_format)
            .field("expected_version", &self.expected_version)
            .finish_non_exhaustive()
    }
}

/// The default guest every simulator starts with.
pub fn default_guest() -> Arc<dyn Guest> {
    Arc::new(ProvisioningGuest::default())
}

fn fail(vm: &mut Vm, summary: &str) {
    vm.guest_kvp
        .insert(meta::GUEST_STATE.into(), "provisioningfailed".into());
    vm.guest_kvp
        .insert(meta::GUEST_ERROR.into(), summary.into());
}

/// Takes one pending fault named `operation` (consuming one of its `times`).
fn take(faults: &mut Vec<Fault>, operation: &str) -> bool {
    let Some(i) = faults
        .iter()
        .position(|f| f.operation == operation && f.times > 0)
    else {
        return false;
    };
    faults[i].times -= 1;
    if faults[i].times == 0 {
        faults.remove(i);
    }
    true
}

/// True for the data items whose values are secrets (shown hashed).
pub fn is_secret_item(name: &str) -> bool {
    name.ends_with("_pw") || name == "ansible_ssh_key"
}

/// `sha256:<hex>` of a secret, as `applied_config` shows it.
pub fn secret_digest(value: &str) -> String {
    let digest = sha2::Sha256::digest(value.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl ProvisioningGuest {
    /// A guest publishing keys by OS family, without a version check.
    pub fn new() -> Self {
        Self::default()
    }

    /// This guest with a manifest check against `version`.
    pub fn expecting_version(mut self, version: &str) -> Self {
        self.expected_version = Some(version.to_string());
        self
    }

    /// This guest publishing its key in `format`.
    pub fn with_key_format(mut self, format: KeyFormatChoice) -> Self {
        self.key_format = format;
        self
    }

    fn private_key(&self, vm: &Vm) -> Option<&'static RsaPrivateKey> {
        let (windows, linux) = guest_keys()?;
        Some(if vm.os_family.eq_ignore_ascii_case("linux") {
            linux
        } else {
            windows
        })
    }

    fn public_key_b64(&self, vm: &Vm) -> Option<String> {
        let public = self.private_key(vm)?.to_public_key();
        let capi = match self.key_format {
            KeyFormatChoice::Capi => true,
            KeyFormatChoice::Pkcs1 => false,
            KeyFormatChoice::ByOsFamily => !vm.os_family.eq_ignore_ascii_case("linux"),
        };
        let bytes = if capi {
            capi_blob(&public)
        } else {
            pkcs1_der(&public).ok()?
        };
        Some(B64.encode(bytes))
    }

    fn apply(&self, vm: &mut Vm, faults: &mut Vec<Fault>) -> Result<(), String> {
        let private = self.private_key(vm).ok_or("error generating:rsa_keys")?;
        let data: BTreeMap<String, String> = vm
            .host_kvp
            .iter()
            .filter(|(k, _)| {
                k.starts_with(DATA_PREFIX) || *k == meta::CHECKSUM || *k == meta::SHARED_AES_KEY
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let plain = crypto::open(private, &data).map_err(|e| e.summary())?;
        if take(faults, faults::BAD_CHECKSUM) {
            return Err("error validating:checksum".into());
        }
        if take(faults, faults::APPLY_FAILED) {
            return Err("error applying:modules".into());
        }
        let mut shown = Map::new();
        let mut full = Map::new();
        for (k, v) in plain {
            let name = k.trim_start_matches(DATA_PREFIX).to_string();
            let display = if is_secret_item(&name) {
                secret_digest(&v)
            } else {
                v.clone()
            };
            shown.insert(name.clone(), Value::String(display));
            full.insert(name, Value::String(v));
        }
        // A static address applied to the guest is what its first adapter reports.
        if let (Some(Value::String(ip)), Some(nic)) =
            (shown.get("guest_v4_ip_addr"), vm.nics.first_mut())
        {
            nic.ip_addresses = vec![ip.clone()];
        }
        vm.applied_config = Some(Value::Object(shown));
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vm.id.clone(), full);
        Ok(())
    }
}

impl Guest for ProvisioningGuest {
    fn on_event(&self, vm: &mut Vm, event: &GuestEvent) {
        self.on_host_event(vm, event, &mut Vec::new());
    }

    fn on_host_event(&self, vm: &mut Vm, _event: &GuestEvent, faults: &mut Vec<Fault>) {
        if vm.state != VmState::Running {
            return;
        }
        let host_state = vm.host_kvp.get(meta::HOST_STATE).cloned();
        let guest_state = vm.guest_kvp.get(meta::GUEST_STATE).cloned();
        match (host_state.as_deref(), guest_state.as_deref()) {
            (Some("waitingforpublickey"), None) => {
                if take(faults, faults::NO_ANSWER) {
                    // The guest stays silent for this whole exchange.
                    vm.guest_kvp
                        .insert(meta::GUEST_STATE.into(), "silent".into());
                    return;
                }
                if let Some(expected) = &self.expected_version {
                    if vm.host_kvp.get(meta::VERSION) != Some(expected) {
                        fail(vm, "error validating:manifest");
                        return;
                    }
                }
                let Some(key) = self.public_key_b64(vm) else {
                    fail(vm, "error publishing:public_key");
                    return;
                };
                vm.guest_kvp.insert(meta::GUEST_PUBLIC_KEY.into(), key);
                vm.guest_kvp
                    .insert(meta::GUEST_STATE.into(), "waitingforaeskey".into());
            }
            (Some("provisioningdatapublished"), Some("waitingforaeskey")) => {
                vm.guest_kvp
                    .insert(meta::GUEST_STATE.into(), "applying".into());
                match self.apply(vm, faults) {
                    Ok(()) => {
                        vm.guest_kvp
                            .insert(meta::GUEST_STATE.into(), "provisioningapplied".into());
                    }
                    Err(summary) => fail(vm, &summary),
                }
            }
            _ => {}
        }
    }

    fn applied_unredacted(&self, vm_id: &str) -> Option<Value> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(vm_id)
            .cloned()
            .map(Value::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_keys_load_and_publish_in_both_formats() {
        let (w, l) = guest_keys().expect("embedded keys parse");
        assert_ne!(w, l);
        for (choice, family, format) in [
            (
                KeyFormatChoice::ByOsFamily,
                "windows",
                crypto::KeyFormat::CapiBlob,
            ),
            (
                KeyFormatChoice::ByOsFamily,
                "linux",
                crypto::KeyFormat::Pkcs1Der,
            ),
            (
                KeyFormatChoice::Pkcs1,
                "windows",
                crypto::KeyFormat::Pkcs1Der,
            ),
            (KeyFormatChoice::Capi, "linux", crypto::KeyFormat::CapiBlob),
        ] {
            let g = ProvisioningGuest {
                key_format: choice,
                ..ProvisioningGuest::default()
            };
            let vm = test_vm(family);
            let key = g.public_key_b64(&vm).expect("key");
            let parsed = crypto::GuestPublicKey::from_base64(&key).expect("parses");
            assert_eq!(parsed.format(), format);
            assert_eq!(parsed.bits(), 2048);
        }
    }

    fn test_vm(family: &str) -> Vm {
        Vm {
            id: "id".into(),
            name: "vm".into(),
            state: VmState::Running,
            cpu_cores: 1,
            memory_gb: 1,
            dynamic_memory: false,
            os_family: family.into(),
            notes: String::new(),
            path: String::new(),
            storage_class: String::new(),
            generation: 2,
            secure_boot: true,
            tpm: false,
            clustered: false,
            created_at: String::new(),
            disks: Vec::new(),
            nics: Vec::new(),
            dvd_iso: None,
            host_kvp: BTreeMap::new(),
            guest_kvp: BTreeMap::new(),
            applied_config: None,
        }
    }

    #[test]
    fn faults_are_taken_once_per_time() {
        let mut f = vec![Fault {
            times: 2,
            ..Fault::once(faults::NO_ANSWER)
        }];
        assert!(!take(&mut f, faults::APPLY_FAILED));
        assert!(take(&mut f, faults::NO_ANSWER));
        assert!(take(&mut f, faults::NO_ANSWER));
        assert!(!take(&mut f, faults::NO_ANSWER));
        assert!(f.is_empty());
    }
}
