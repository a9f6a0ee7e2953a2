//! Guest configuration → KVP items (the Aether-V/HLVMM guest protocol, data half).
//!
//! [`guest_config`] turns a validated request into the flat guest configuration: which fields are
//! emitted when (reference §6). [`data_items`] maps it to `hlvmm.data.*` keys, [`checksum`] computes
//! the integrity value the guest verifies, and [`chunk`] splits long values into the `._N` items.
//! Encryption (RSA key wrap, AES-CBC per item) is [`crypto`].

pub mod crypto;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Prefix of every data item key.
pub const DATA_PREFIX: &str = "hlvmm.data.";
/// Meta keys of the exchange.
pub mod meta {
    /// Host-written protocol version (must equal the guest ISO's version).
    pub const VERSION: &str = "hlvmm.meta.version";
    /// Host state: `waitingforpublickey` → `provisioningdatapublished`.
    pub const HOST_STATE: &str = "hlvmm.meta.host_provisioning_system_state";
    /// Guest state: `waitingforaeskey` → `applying` → `provisioningapplied` | `provisioningfailed`.
    pub const GUEST_STATE: &str = "hlvmm.meta.guest_provisioning_system_state";
    /// Guest error summary.
    pub const GUEST_ERROR: &str = "hlvmm.meta.guest_provisioning_error";
    /// Guest RSA public key (CAPI PUBLICKEYBLOB or PKCS#1 DER, base64).
    pub const GUEST_PUBLIC_KEY: &str = "hlvmm.meta.guest_provisioning_public_key";
    /// RSA-wrapped AES key.
    pub const SHARED_AES_KEY: &str = "hlvmm.meta.shared_aes_key";
    /// Checksum over the plaintext data items.
    pub const CHECKSUM: &str = "hlvmm.meta.provisioning_system_checksum";
}
/// Longest plaintext stored in one item; longer values are chunked.
pub const CHUNK_CHARS: usize = 100;
/// Most chunks per value (so at most 3,000 characters).
pub const MAX_CHUNKS: usize = 30;

/// Errors building KVP items.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvpError {
    /// A value needs more than [`MAX_CHUNKS`] chunks.
    #[error("value of {key} is {len} characters; the guest protocol allows at most {max}")]
    TooLong {
        /// The item key.
        key: String,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Field groups: (trigger field, members emitted when the trigger is set).
const DOMAIN_JOIN: [&str; 4] = [
    "guest_domain_join_target",
    "guest_domain_join_uid",
    "guest_domain_join_pw",
    "guest_domain_join_ou",
];
const ANSIBLE: [&str; 2] = ["cnf_ansible_ssh_user", "cnf_ansible_ssh_key"];
const STATIC_IP: [&str; 4] = [
    "guest_v4_ip_addr",
    "guest_v4_cidr_prefix",
    "guest_v4_default_gw",
    "guest_v4_dns1",
];
const STATIC_IP_OPTIONAL: [&str; 2] = ["guest_v4_dns2", "guest_net_dns_suffix"];

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The flat guest configuration for a validated request (reference §6): `vm_name`, local admin
/// always; the domain-join, Ansible and static-IP groups only when their trigger field is set;
/// `guest_v4_dns2` and `guest_net_dns_suffix` only with a static IP. Empty values are left out.
pub fn guest_config(request: &Map<String, Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |k: &str| {
        if let Some(v) = text(request.get(k)) {
            out.insert(k.to_string(), v);
        }
    };
    put("vm_name");
    put("guest_la_uid");
    put("guest_la_pw");
    if text(request.get(DOMAIN_JOIN[0])).is_some() {
        DOMAIN_JOIN.iter().for_each(|k| put(k));
    }
    if text(request.get(ANSIBLE[0])).is_some() {
        ANSIBLE.iter().for_each(|k| put(k));
    }
    if text(request.get(STATIC_IP[0])).is_some() {
        STATIC_IP
            .iter()
            .chain(STATIC_IP_OPTIONAL.iter())
            .for_each(|k| put(k));
    }
    out
}

/// The KVP key for a guest configuration field (`vm_name` → `hlvmm.data.guest_host_name`,
/// `cnf_ansible_ssh_user` → `hlvmm.data.ansible_ssh_user`, others `hlvmm.data.<field>`).
pub fn data_key(field: &str) -> String {
    let name = match field {
        "vm_name" => "guest_host_name",
        "cnf_ansible_ssh_user" => "ansible_ssh_user",
        "cnf_ansible_ssh_key" => "ansible_ssh_key",
        other => other,
    };
    format!("{DATA_PREFIX}{name}")
}

/// Guest configuration → `(kvp key, plaintext)` items, sorted by key, empty values skipped.
pub fn data_items(config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    config
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (data_key(k), v.clone()))
        .collect()
}

/// The checksum the guest verifies: plaintext values sorted by full key name (ordinal), joined
/// with `|`, SHA-256 over UTF-8, base64.
pub fn checksum(items: &BTreeMap<String, String>) -> String {
    let joined = items
        .values()
        .filter(|v| !v.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("|");
    B64.encode(Sha256::digest(joined.as_bytes()))
}

/// Splits one item for publishing: up to 100 characters stay under `key`; longer values become
/// `key._0`, `key._1`, … of 100 characters each (at most 30).
pub fn chunk(key: &str, value: &str) -> Result<Vec<(String, String)>, KvpError> {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= CHUNK_CHARS {
        return Ok(vec![(key.to_string(), value.to_string())]);
    }
    if chars.len() > CHUNK_CHARS * MAX_CHUNKS {
        return Err(KvpError::TooLong {
            key: key.to_string(),
            len: chars.len(),
            max: CHUNK_CHARS * MAX_CHUNKS,
        });
    }
    Ok(chars
        .chunks(CHUNK_CHARS)
        .enumerate()
        .map(|(i, c)| (format!("{key}._{i}"), c.iter().collect()))
        .collect())
}

/// Reassembles a value the way guests read it: `key` itself, else `key._0..` until the first gap.
pub fn unchunk(items: &BTreeMap<String, String>, key: &str) -> Option<String> {
    if let Some(v) = items.get(key) {
        return Some(v.clone());
    }
    let mut out = String::new();
    let mut any = false;
    for i in 0..MAX_CHUNKS {
        match items.get(&format!("{key}._{i}")) {
            Some(part) => {
                out.push_str(part);
                any = true;
            }
            None => break,
        }
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn minimal_config_has_only_name_and_admin() {
        let c = guest_config(&map(json!({
            "vm_name": "web-01", "guest_la_uid": "admin", "guest_la_pw": "pw",
            "gb_ram": 4, "guest_net_dns_suffix": "corp.example", "guest_v4_dns2": "10.0.0.3"
        })));
        assert_eq!(
            c.keys().cloned().collect::<Vec<_>>(),
            ["guest_la_pw", "guest_la_uid", "vm_name"]
        );
    }

    #[test]
    fn static_ip_without_optional_fields_emits_no_optional_keys() {
        let c = guest_config(&map(json!({
            "vm_name": "web-01", "guest_la_uid": "a", "guest_la_pw": "p",
            "guest_v4_ip_addr": "10.0.0.5", "guest_v4_cidr_prefix": 24,
            "guest_v4_default_gw": "10.0.0.1", "guest_v4_dns1": "10.0.0.2", "guest_v4_dns2": "  "
        })));
        assert_eq!(
            c.get("guest_v4_cidr_prefix").map(String::as_str),
            Some("24")
        );
        assert!(!c.contains_key("guest_v4_dns2"));
        assert!(!c.contains_key("guest_net_dns_suffix"));
        assert_eq!(c.len(), 7);
    }

    #[test]
    fn keys_are_mapped_to_kvp_names() {
        let c = guest_config(&map(json!({
            "vm_name": "lnx", "guest_la_uid": "a", "guest_la_pw": "p",
            "cnf_ansible_ssh_user": "ansible", "cnf_ansible_ssh_key": "ssh-ed25519 AAAA"
        })));
        let items = data_items(&c);
        assert!(items.contains_key("hlvmm.data.guest_host_name"));
        assert!(items.contains_key("hlvmm.data.ansible_ssh_user"));
        assert!(items.contains_key("hlvmm.data.ansible_ssh_key"));
    }

    #[test]
    fn checksum_matches_reference_case_19() {
        let c = guest_config(&map(
            json!({"vm_name": "vm1", "guest_la_pw": "p", "guest_la_uid": "admin"}),
        ));
        let expected = B64.encode(Sha256::digest(b"vm1|p|admin"));
        assert_eq!(checksum(&data_items(&c)), expected);
    }

    #[test]
    fn long_values_are_chunked_and_reassembled() {
        let v: String = "x".repeat(250);
        let parts = chunk("hlvmm.data.k", &v).expect("fits");
        let lens: Vec<_> = parts.iter().map(|(_, p)| p.len()).collect();
        assert_eq!(lens, [100, 100, 50]);
        assert_eq!(parts[2].0, "hlvmm.data.k._2");
        let items: BTreeMap<_, _> = parts.into_iter().collect();
        assert_eq!(unchunk(&items, "hlvmm.data.k").as_deref(), Some(v.as_str()));
        assert_eq!(chunk("k", &"y".repeat(100)).expect("fits").len(), 1);
        assert!(matches!(
            chunk("k", &"z".repeat(3001)),
            Err(KvpError::TooLong { len: 3001, .. })
        ));
        assert_eq!(chunk("k", &"z".repeat(3000)).expect("fits").len(), 30);
    }

    #[test]
    fn chunking_counts_characters_not_bytes() {
        let v: String = "é".repeat(150);
        let parts = chunk("k", &v).expect("fits");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1.chars().count(), 100);
    }
}
