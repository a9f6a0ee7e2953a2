//! Slack request signatures over raw bytes, for bodies slack-morphism's verifier cannot take
//! (it verifies text): a signed body that is not UTF-8 is a bad request (400), not a forgery.

use hmac::{Hmac, Mac};

/// How far a request's timestamp may be from now (Slack's replay window).
const MAX_SKEW_SECS: i64 = 300;

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
        .collect()
}

/// Whether `signature` (`v0=<hex>`) is Slack's signature of `body` at `timestamp` with
/// `secret`, and the timestamp is within the replay window (constant-time compare).
pub(crate) fn valid(secret: &str, signature: &str, timestamp: &str, body: &[u8]) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - ts).abs() > MAX_SKEW_SECS {
        return false;
    }
    let Some(expected) = signature.strip_prefix("v0=").and_then(unhex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}
