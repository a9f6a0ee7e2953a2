//! Who is calling: a bearer token from the `Authorization` header turned into a principal
//! (`api:<name>`), or refused. Two kinds of token, one seam: a configured token (stored as
//! the SHA-256 hex of the token, compared in constant time) and an OIDC access token (a JWT
//! checked by the OIDC verifier against the configured issuer, audience and keys; its subject
//! is the principal and its roles claim's values the principal's groups, `api-group:<value>`
//! in the roles file). Roles and policy come from the roles and policy files as for chat.

use aetherv_core::rbac::Principal;
use sha2::{Digest, Sha256};

/// One configured bearer token: its name (the principal `api:<name>`) and the SHA-256 of the
/// token text. The token itself is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    /// The principal's name.
    pub name: String,
    /// SHA-256 of the token (32 bytes).
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BearerToken {
    /// A token from its name and the hex SHA-256 written in the configuration. The error
    /// never repeats the text.
    pub fn from_hex(name: &str, hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "api token {name}: sha256 must be 64 hexadecimal digits"
            ));
        }
        let mut sha256 = [0u8; 32];
        for (i, byte) in sha256.iter_mut().enumerate() {
            let pair = hex.get(i * 2..i * 2 + 2).unwrap_or("00");
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| format!("api token {name}: bad sha256"))?;
        }
        Ok(BearerToken {
            name: name.to_owned(),
            sha256,
        })
    }

    /// A token from its plain text (for `AETHERV_API_TOKEN` on a simulated site): only the
    /// hash is kept.
    pub fn from_plain(name: &str, token: &str) -> Self {
        BearerToken {
            name: name.to_owned(),
            sha256: sha256(token),
        }
    }
}

/// The SHA-256 of a token.
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The SHA-256 of a token as lower-case hex (what the configuration holds).
pub fn sha256_hex(token: &str) -> String {
    sha256(token).iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality of two hashes in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The OIDC settings (`api.oidc`): the verifier checks tokens against them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidcSettings {
    /// The expected `iss`.
    pub issuer: String,
    /// The expected `aud`.
    pub audience: String,
    /// A JWKS document on disk.
    pub jwks_file: Option<std::path::PathBuf>,
    /// A JWKS document over HTTPS.
    pub jwks_url: Option<String>,
    /// The claim whose values are the principal's groups (default `roles`).
    pub roles_claim: String,
}

/// What an OIDC token proved: its subject and its roles claim's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    /// `sub`.
    pub subject: String,
    /// The roles claim's values.
    pub roles: Vec<String>,
}

/// Checks OIDC access tokens (the verifier is plugged in here; see `crate::Authenticator`).
pub type OidcCheck = std::sync::Arc<
    dyn Fn(&str, chrono::DateTime<chrono::Utc>) -> Result<OidcIdentity, String> + Send + Sync,
>;

/// How OIDC tokens are checked.
#[derive(Clone)]
pub enum Oidc {
    /// OIDC is not configured: a JWT is an unknown token.
    Off,
    /// Configured, but no verifier is built into this binary: every JWT is refused with
    /// "OIDC not configured".
    Unavailable(OidcSettings),
    /// Configured with a verifier.
    Verifier(OidcSettings, OidcCheck),
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Oidc::Off => f.write_str("Off"),
            Oidc::Unavailable(s) => f.debug_tuple("Unavailable").field(s).finish(),
            Oidc::Verifier(s, _) => f.debug_tuple("Verifier").field(s).finish(),
        }
    }
}

/// Why a request is not authenticated (always 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("an Authorization: Bearer token is required")]
    Missing,
    /// Not `Bearer <token>`.
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    /// No configured token matches.
    #[error("the token is not known")]
    Unknown,
    /// A JWT, but OIDC is not configured with a verifier.
    #[error("OIDC not configured")]
    OidcNotConfigured,
    /// The OIDC verifier refused the token (expired, wrong audience, bad signature, …).
    #[error("the token was refused: {0}")]
    Refused(String),
}

/// Turns an `Authorization` header into a principal.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Vec<BearerToken>,
    oidc: Oidc,
}

impl Authenticator {
    /// Bearer tokens and the OIDC setting.
    pub fn new(tokens: Vec<BearerToken>, oidc: Oidc) -> Self {
        Authenticator { tokens, oidc }
    }

    /// The OIDC setting (apiweb: `oidc::attach` plugs the verifier in from it at start).
    pub fn oidc(&self) -> &Oidc {
        &self.oidc
    }

    /// Plugs an OIDC verifier in for configured OIDC settings.
    pub fn with_oidc(mut self, oidc: Oidc) -> Self {
        self.oidc = oidc;
        self
    }

    /// The principal of an `Authorization` header value.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        let hash = sha256(token);
        // Every token is compared (no early exit), each in constant time.
        let mut found: Option<&BearerToken> = None;
        for t in &self.tokens {
            if same(&t.sha256, &hash) {
                found = Some(t);
            }
        }
        if let Some(t) = found {
            return Ok(Principal::api(&t.name, Vec::new()));
        }
        if !looks_like_jwt(token) {
            return Err(AuthError::Unknown);
        }
        match &self.oidc {
            Oidc::Off => Err(AuthError::Unknown),
            Oidc::Unavailable(_) => Err(AuthError::OidcNotConfigured),
            Oidc::Verifier(_, check) => {
                let id = check(token, now).map_err(AuthError::Refused)?;
                Ok(Principal::api(&id.subject, id.roles))
            }
        }
    }
}

/// Three base64url parts separated by dots.
fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            vec![
                BearerToken::from_hex("ci", &sha256_hex("s3cret-token")).expect("hex"),
                BearerToken::from_plain("reader", "read-only"),
            ],
            Oidc::Off,
        )
    }

    #[test]
    fn a_configured_token_is_its_principal_and_others_are_refused() {
        let now = chrono::Utc::now();
        let a = auth();
        let p = a
            .authenticate(Some("Bearer s3cret-token"), now)
            .expect("ci");
        assert_eq!(p.id.user_id, "ci");
        assert_eq!(p.id.platform, aetherv_core::Platform::Api);
        let p = a
            .authenticate(Some("bearer read-only"), now)
            .expect("reader");
        assert_eq!(p.id.user_id, "reader");
        assert_eq!(a.authenticate(None, now), Err(AuthError::Missing));
        assert_eq!(
            a.authenticate(Some("Basic abc"), now),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            a.authenticate(Some("Bearer s3cret-tokeN"), now),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn a_jwt_without_a_verifier_is_refused_as_oidc_not_configured() {
        let now = chrono::Utc::now();
        let a = auth().with_oidc(Oidc::Unavailable(OidcSettings::default()));
        assert_eq!(
            a.authenticate(Some("Bearer aGVhZA.Ym9keQ.c2ln"), now),
            Err(AuthError::OidcNotConfigured)
        );
        assert_eq!(
            auth().authenticate(Some("Bearer aGVhZA.Ym9keQ.c2ln"), now),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn a_bad_hash_is_refused_without_repeating_it() {
        let e = BearerToken::from_hex("ci", "not-hex-at-all").expect_err("refused");
        assert!(!e.contains("not-hex"), "{e}");
    }
}
