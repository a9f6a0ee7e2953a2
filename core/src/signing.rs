//! Job signing: the bot signs every job it publishes (Ed25519 over the envelope's canonical
//! bytes), workers run only jobs signed by a key they were given.
//!
//! Canonical bytes: the envelope as JSON with every object's keys sorted, no whitespace. The
//! signature and the key id travel in AMQP headers ([`KEY_ID_HEADER`], [`SIGNATURE_HEADER`]),
//! so the envelope contract does not change. Key texts: a signing key is
//! `aetherv-sign-1:<key id>:<base64 PKCS#8>` (a secret: never logged), a public key
//! `<key id>:<base64 public key>`.

use crate::JobEnvelope;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde_json::Value;
use std::collections::BTreeMap;

/// The AMQP header carrying the id of the signing key.
pub const KEY_ID_HEADER: &str = "x-aetherv-key-id";
/// The AMQP header carrying the base64 Ed25519 signature.
pub const SIGNATURE_HEADER: &str = "x-aetherv-signature";
/// Set by a worker's placer when it re-publishes a cluster job to a member host: the
/// routing key the job was signed with (`cluster.<name>`), so the signature still verifies.
pub const PLACED_FROM_HEADER: &str = "x-aetherv-placed-from";

const SECRET_PREFIX: &str = "aetherv-sign-1:";

/// Why a key text or a signature is refused. Never echoes key material.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// A key text is not in the documented form.
    #[error("not a valid {0} key text")]
    BadKey(&'static str),
    /// The job carries no signature or no key id.
    #[error("the job is not signed")]
    Unsigned,
    /// The key id is not configured, or the signature does not verify.
    #[error("the job's signature does not verify ({0})")]
    BadSignature(&'static str),
}

impl SignError {
    /// The dead-letter reason code: `unsigned` or `bad_signature`.
    pub fn code(&self) -> &'static str {
        match self {
            SignError::Unsigned => "unsigned",
            SignError::BadSignature(_) => "bad_signature",
            SignError::BadKey(_) => "bad_key",
        }
    }
}

/// The envelope's canonical bytes: keys sorted at every level, compact.
pub fn canonical_bytes(env: &JobEnvelope) -> Vec<u8> {
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let s: BTreeMap<String, Value> =
                    m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(s.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    let v = serde_json::to_value(env).map(sorted).unwrap_or(Value::Null);
    // serde_json writes maps in their iteration order; a BTreeMap-backed or insertion-ordered
    // map built from sorted entries both iterate sorted.
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A signing key with its id.
pub struct SigningKey {
    id: String,
    pair: Ed25519KeyPair,
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key named `id`.
    pub fn generate(id: &str) -> Result<Self, SignError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SignError::BadKey("signing"))?;
        Self::from_pkcs8(id, pkcs8.as_ref().to_vec())
    }

    fn from_pkcs8(id: &str, pkcs8: Vec<u8>) -> Result<Self, SignError> {
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SignError::BadKey("signing"))?;
        if id.is_empty() || id.contains(':') {
            return Err(SignError::BadKey("signing"));
        }
        Ok(SigningKey {
            id: id.to_owned(),
            pair,
            pkcs8: zeroize::Zeroizing::new(pkcs8),
        })
    }

    /// Reads `aetherv-sign-1:<key id>:<base64 PKCS#8>`.
    pub fn parse(text: &str) -> Result<Self, SignError> {
        let bad = SignError::BadKey("signing");
        let rest = text.trim().strip_prefix(SECRET_PREFIX).ok_or(bad.clone())?;
        let (id, b64) = rest.split_once(':').ok_or(bad.clone())?;
        let pkcs8 = B64.decode(b64).map_err(|_| bad)?;
        Self::from_pkcs8(id, pkcs8)
    }

    /// The key text (a secret).
    pub fn to_text(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!(
            "{SECRET_PREFIX}{}:{}",
            self.id,
            B64.encode(&*self.pkcs8)
        ))
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key text `<key id>:<base64>`, for workers.
    pub fn public_text(&self) -> String {
        format!(
            "{}:{}",
            self.id,
            B64.encode(self.pair.public_key().as_ref())
        )
    }

    /// The headers to publish `env` with: key id and signature.
    pub fn sign(&self, env: &JobEnvelope) -> [(&'static str, String); 2] {
        let sig = self.pair.sign(&canonical_bytes(env));
        [
            (KEY_ID_HEADER, self.id.clone()),
            (SIGNATURE_HEADER, B64.encode(sig.as_ref())),
        ]
    }
}

/// The public keys a worker accepts, by key id.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: BTreeMap<String, Vec<u8>>,
}

impl Verifier {
    /// Reads public key texts (`<key id>:<base64>`).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, SignError> {
        let mut keys = BTreeMap::new();
        for t in texts {
            let bad = SignError::BadKey("public");
            let (id, b64) = t.trim().split_once(':').ok_or(bad.clone())?;
            let key = B64.decode(b64).map_err(|_| bad.clone())?;
            if id.is_empty() || key.len() != 32 {
                return Err(bad);
            }
            keys.insert(id.to_owned(), key);
        }
        Ok(Verifier { keys })
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `env` against the signature headers (`header(name)` reads one). A job placed on
    /// a member host by a worker is checked with the target it was signed with.
    pub fn verify(
        &self,
        env: &JobEnvelope,
        header: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SignError> {
        let (Some(id), Some(sig)) = (header(KEY_ID_HEADER), header(SIGNATURE_HEADER)) else {
            return Err(SignError::Unsigned);
        };
        let key = self
            .keys
            .get(&id)
            .ok_or(SignError::BadSignature("unknown key id"))?;
        let sig = B64
            .decode(sig)
            .map_err(|_| SignError::BadSignature("not base64"))?;
        let signed = match header(PLACED_FROM_HEADER) {
            Some(key) => {
                let mut original = env.clone();
                let name = key.strip_prefix("cluster.").unwrap_or(&key);
                original.target = crate::Target::Cluster(name.to_owned());
                canonical_bytes(&original)
            }
            None => canonical_bytes(env),
        };
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&signed, &sig)
            .map_err(|_| SignError::BadSignature("signature mismatch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobKind, Platform, Requester, Target};

    fn env() -> JobEnvelope {
        let mut spec = serde_json::Map::new();
        spec.insert("b".into(), Value::from(1));
        spec.insert(
            "a".into(),
            serde_json::json!({"z": 1, "y": [2, {"d": 1, "c": 2}]}),
        );
        JobEnvelope::new(
            JobKind::Noop,
            Target::Cluster("clu01".into()),
            spec,
            Requester {
                platform: Platform::Console,
                user_id: "alice".into(),
            },
        )
    }

    #[test]
    fn signed_jobs_verify_and_changed_ones_do_not() {
        let key = SigningKey::generate("bot-1").expect("key");
        let again = SigningKey::parse(&key.to_text()).expect("round trip");
        assert_eq!(again.public_text(), key.public_text());
        let v = Verifier::from_texts([key.public_text().as_str()]).expect("verifier");
        let job = env();
        let headers: BTreeMap<&str, String> = key.sign(&job).into_iter().collect();
        let get = |h: &BTreeMap<&str, String>, n: &str| h.get(n).cloned();
        assert_eq!(v.verify(&job, |n| get(&headers, n)), Ok(()));
        // Bytes re-ordered on the wire still verify: the canonical form sorts keys.
        let reparsed: JobEnvelope =
            serde_json::from_slice(&serde_json::to_vec(&job).expect("json")).expect("parse");
        assert_eq!(v.verify(&reparsed, |n| get(&headers, n)), Ok(()));
        let mut changed = job.clone();
        changed.spec.insert("b".into(), Value::from(2));
        assert_eq!(
            v.verify(&changed, |n| get(&headers, n))
                .map_err(|e| e.code()),
            Err("bad_signature")
        );
        assert_eq!(
            v.verify(&job, |_| None).map_err(|e| e.code()),
            Err("unsigned")
        );
        let other = SigningKey::generate("bot-1").expect("key");
        let forged: BTreeMap<&str, String> = other.sign(&job).into_iter().collect();
        assert!(v.verify(&job, |n| get(&forged, n)).is_err());
        // Placed on a member host by a worker: verified with the cluster target.
        let mut placed = job.clone();
        placed.target = Target::Host("hv02".into());
        let mut with_origin = headers.clone();
        with_origin.insert(PLACED_FROM_HEADER, "cluster.clu01".into());
        assert_eq!(v.verify(&placed, |n| get(&with_origin, n)), Ok(()));
        assert!(v.verify(&placed, |n| get(&headers, n)).is_err());
    }

    #[test]
    fn key_texts_never_echo_what_they_refuse() {
        let e = SigningKey::parse("aetherv-sign-1:id:not*base64").expect_err("bad");
        assert!(!e.to_string().contains("base64*"));
        assert!(Verifier::from_texts(["k:AAAA"]).is_err());
        assert!(format!("{:?}", SigningKey::generate("k").expect("key")).contains("\"k\""));
    }
}
