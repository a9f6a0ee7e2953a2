//! Request signatures of the HTTP interactions endpoint: Discord signs
//! `X-Signature-Timestamp` + body with the application's Ed25519 key and sends the signature in
//! `X-Signature-Ed25519` (hex). A request is accepted only with both headers, a valid signature
//! under the configured public key, and a timestamp within [`REPLAY_WINDOW`] of now (Discord's
//! own check stops at the signature; the window refuses replays of a captured request).

use ed25519_dalek::{Signature, VerifyingKey};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
/// The timestamp header (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
/// How far a request's timestamp may be from now, either way.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A header is absent or not text.
    #[error("missing signature headers")]
    MissingHeaders,
    /// The signature is not 64 bytes of hex.
    #[error("malformed signature")]
    Malformed,
    /// The timestamp is not a number of seconds.
    #[error("malformed timestamp")]
    BadTimestamp,
    /// The timestamp is outside the replay window.
    #[error("timestamp outside the replay window")]
    Stale,
    /// The signature does not verify under the application's key.
    #[error("signature does not verify")]
    Forged,
}

/// Why a public key is unusable.
#[derive(Debug, thiserror::Error)]
#[error("the application public key must be 64 hex digits of an Ed25519 key: {0}")]
pub struct BadKey(String);

/// Checks requests against one application's public key.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: VerifyingKey,
    window: Duration,
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Verifier {
    /// A verifier for the application public key as the Developer Portal shows it (hex).
    pub fn from_hex(public_key: &str) -> Result<Self, BadKey> {
        let bytes =
            hex_bytes::<32>(public_key).ok_or_else(|| BadKey("not 64 hex digits".into()))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| BadKey(e.to_string()))?;
        Ok(Verifier {
            key,
            window: REPLAY_WINDOW,
        })
    }

    /// The same key with another replay window.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Checks one request's headers and body at `now`.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let (Some(sig), Some(ts)) = (signature, timestamp) else {
            return Err(Refusal::MissingHeaders);
        };
        let sig = hex_bytes::<64>(sig).ok_or(Refusal::Malformed)?;
        let secs: u64 = ts.trim().parse().map_err(|_| Refusal::BadTimestamp)?;
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now.abs_diff(secs) > self.window.as_secs() {
            return Err(Refusal::Stale);
        }
        let mut msg = Vec::with_capacity(ts.len() + body.len());
        msg.extend_from_slice(ts.as_bytes());
        msg.extend_from_slice(body);
        self.key
            .verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| Refusal::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_hex_of_32_bytes() {
        assert!(Verifier::from_hex("abc").is_err());
        assert!(Verifier::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn missing_and_malformed_headers_are_refused() {
        // The Ed25519 base point's encoding: a valid public key.
        let v =
            Verifier::from_hex("5866666666666666666666666666666666666666666666666666666666666666")
                .expect("key");
        let now = SystemTime::now();
        assert_eq!(
            v.verify(None, Some("1"), b"", now),
            Err(Refusal::MissingHeaders)
        );
        assert_eq!(
            v.verify(Some("00"), Some("1"), b"", now),
            Err(Refusal::Malformed)
        );
        let sig = "00".repeat(64);
        assert_eq!(
            v.verify(Some(&sig), Some("soon"), b"", now),
            Err(Refusal::BadTimestamp)
        );
        assert_eq!(
            v.verify(Some(&sig), Some("1"), b"", now),
            Err(Refusal::Stale)
        );
    }
}
