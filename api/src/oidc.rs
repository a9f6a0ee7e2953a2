//! OIDC access tokens: a [`Verifier`] checks a JWT against one configured issuer, audience and
//! key set (a JWKS file, or an HTTP(S) URL fetched with a deadline and cached, fetched again
//! when a token names a key it does not know), and maps a configured claim to roles.
//!
//! Only asymmetric signatures are accepted (RS256, ES256): `none` and the HMAC algorithms are
//! refused before any key is looked at, and a key is used only for the algorithm of its own
//! type (an RSA key for RS256, a P-256 key for ES256), so a public key can never serve as an
//! HMAC secret. The registered claims are read into strict types (a string `exp` is refused,
//! never skipped) and checked against the caller's clock with a small leeway.
//!
//! No error carries the token or any part of it: messages are fixed texts.
//! This module decides who a token names and which roles it claims; what those roles may do is
//! the engine's business.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most a key set may weigh (a real one is a few kilobytes).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long a fetch of the key set may take, unless configured.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `exp`, `nbf` and `iat`, unless configured.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// The least time between two fetches caused by unknown key ids: a stream of tokens with made-up
/// `kid`s must not turn the API into a load generator against the identity provider.
pub const DEFAULT_MIN_REFETCH: Duration = Duration::from_secs(30);

/// The `oidc` section of the API configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer (`iss`) tokens must name, exactly.
    pub issuer: String,
    /// The audience tokens must be for (`aud`, a string or one of an array).
    pub audience: String,
    /// A JWKS document on disk (read at start, and again for an unknown key id).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (`https://` or `http://`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted signature algorithms: `RS256`, `ES256` (default both). Nothing else is allowed.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim holding the roles, as a dotted path (`roles`, `realm_access.roles`): an array
    /// of strings, or one string of space-separated names.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Clock skew tolerated, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The deadline of one JWKS fetch, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub jwks_timeout_ms: u64,
    /// The least time between two fetches caused by unknown key ids, in seconds.
    #[serde(default = "default_min_refetch")]
    pub jwks_min_refetch_secs: u64,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}
fn default_timeout_ms() -> u64 {
    DEFAULT_JWKS_TIMEOUT.as_millis() as u64
}
fn default_min_refetch() -> u64 {
    DEFAULT_MIN_REFETCH.as_secs()
}

impl OidcConfig {
    /// A configuration with the defaults for everything but issuer, audience and key set.
    pub fn new(issuer: &str, audience: &str, jwks: JwksSource) -> Self {
        let (jwks_file, jwks_url) = match jwks {
            JwksSource::File(p) => (Some(p), None),
            JwksSource::Url(u) => (None, Some(u)),
        };
        OidcConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_file,
            jwks_url,
            algorithms: default_algorithms(),
            roles_claim: default_roles_claim(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            jwks_timeout_ms: default_timeout_ms(),
            jwks_min_refetch_secs: default_min_refetch(),
        }
    }
}

/// Where the key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file.
    File(PathBuf),
    /// An `http://` or `https://` URL.
    Url(String),
}

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The `sub` claim.
    pub subject: String,
    /// The roles from the configured claim (empty when the token has none).
    pub roles: Vec<String>,
}

/// Why a token (or the configuration) was refused. Fixed texts: nothing of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// Not three base64url parts with JSON header and claims.
    #[error("the token is not a well-formed jwt")]
    Malformed,
    /// `alg` is not one of the allowed asymmetric algorithms.
    #[error("the token's signature algorithm is not allowed")]
    Algorithm,
    /// No key of the set has the token's `kid` (also after fetching the set again).
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    /// The signature does not verify with the issuer's key.
    #[error("the token's signature does not verify")]
    Signature,
    /// `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is ahead.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// `iss` is another issuer.
    #[error("the token is from another issuer")]
    Issuer,
    /// `aud` does not name this API.
    #[error("the token is for another audience")]
    Audience,
    /// A required claim is absent.
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong JSON type.
    #[error("the token's {0} claim has the wrong type")]
    ClaimType(&'static str),
    /// The key set could not be fetched or read.
    #[error("the issuer's key set could not be read: {0}")]
    Jwks(String),
    /// The key set did not answer in time.
    #[error("the issuer's key set did not answer within {0:?}")]
    JwksTimeout(Duration),
    /// The configuration is wrong.
    #[error("oidc configuration: {0}")]
    Config(&'static str),
}

/// The signature algorithms a [`Verifier`] may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
    fn jwt(self) -> Algorithm {
        match self {
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
        }
    }
}

/// One usable key: what it verifies and the only algorithm it is used with.
struct Key {
    kid: Option<String>,
    alg: Alg,
    key: DecodingKey,
}

/// The keys of one fetch.
#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// The keys of a JWKS document; keys of other types, curves, uses or algorithms are left
    /// out (an `oct` key, a P-384 key, an encryption key).
    fn parse(body: &[u8]) -> Result<KeySet, OidcError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc = serde_json::from_slice(body)
            .map_err(|_| OidcError::Jwks("not a jwks document".into()))?;
        let keys = doc
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| Self::usable(&jwk))
            .collect();
        Ok(KeySet { keys })
    }

    fn usable(jwk: &Jwk) -> Option<Key> {
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Alg::Rs256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Alg::Es256,
            _ => return None,
        };
        // A key that says its algorithm is used with that one only.
        if let Some(declared) = jwk.common.key_algorithm {
            let same = matches!(
                (declared, alg),
                (KeyAlgorithm::RS256, Alg::Rs256) | (KeyAlgorithm::ES256, Alg::Es256)
            );
            if !same {
                return None;
            }
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        })
    }

    /// The key for a token's `kid` and algorithm. Without a `kid`, the only key of that
    /// algorithm, if there is exactly one.
    fn find(&self, kid: Option<&str>, alg: Alg) -> Option<&Key> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.alg == alg),
            None => {
                let mut of_alg = self.keys.iter().filter(|k| k.alg == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(k), None) => Some(k),
                    _ => None,
                }
            }
        }
    }
}

/// Checks access tokens of one issuer. Cheap to share (`Arc`); `verify` may run concurrently.
pub struct Verifier {
    issuer: String,
    audience: String,
    source: JwksSource,
    algorithms: HashSet<Alg>,
    roles_path: Vec<String>,
    leeway: u64,
    timeout: Duration,
    min_refetch: Duration,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When an unknown key id last caused a fetch; held while fetching, so concurrent requests
    /// naming the same new key cause one fetch.
    refetched: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Checks the configuration and reads the key set once (a URL within the deadline).
    pub async fn new(cfg: &OidcConfig) -> Result<Verifier, OidcError> {
        let source = match (&cfg.jwks_file, &cfg.jwks_url) {
            (Some(p), None) => JwksSource::File(p.clone()),
            (None, Some(u)) if u.starts_with("https://") || u.starts_with("http://") => {
                JwksSource::Url(u.clone())
            }
            (None, Some(_)) => return Err(OidcError::Config("jwks_url must be http(s)")),
            _ => {
                return Err(OidcError::Config(
                    "exactly one of jwks_file and jwks_url is needed",
                ))
            }
        };
        if cfg.issuer.is_empty() || cfg.audience.is_empty() {
            return Err(OidcError::Config("issuer and audience must not be empty"));
        }
        let mut algorithms = HashSet::new();
        for a in &cfg.algorithms {
            match Alg::parse(a) {
                Some(alg) => algorithms.insert(alg),
                None => {
                    return Err(OidcError::Config(
                        "algorithms may name only RS256 and ES256",
                    ))
                }
            };
        }
        if algorithms.is_empty() {
            return Err(OidcError::Config("algorithms must name at least one"));
        }
        let roles_path: Vec<String> = cfg.roles_claim.split('.').map(str::to_owned).collect();
        if roles_path.iter().any(String::is_empty) {
            return Err(OidcError::Config("roles_claim must be a dotted claim path"));
        }
        let timeout = Duration::from_millis(cfg.jwks_timeout_ms.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| OidcError::Config("no http client"))?;
        let v = Verifier {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            source,
            algorithms,
            roles_path,
            leeway: cfg.leeway_secs,
            timeout,
            min_refetch: Duration::from_secs(cfg.jwks_min_refetch_secs),
            http,
            keys: RwLock::new(Arc::new(KeySet::default())),
            refetched: tokio::sync::Mutex::new(None),
        };
        let set = v.load().await?;
        v.store(set);
        Ok(v)
    }

    /// The issuer this verifier accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies `token` at time `now`: header, key, signature, then `iss`, `aud`, `exp`, `nbf`,
    /// `iat`, `sub`; returns the subject and roles.
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, OidcError> {
        let header = Header::parse(token)?;
        let alg = Alg::parse(&header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or(OidcError::Algorithm)?;
        let claims = match self.check_signature(token, &header, alg) {
            Some(result) => result?,
            None => {
                self.refetch_for(header.kid.as_deref(), alg).await?;
                self.check_signature(token, &header, alg)
                    .ok_or(OidcError::UnknownKey)??
            }
        };
        self.check_claims(&claims, now)
    }

    /// Verifies `token` with the keys at hand, without waiting on the network: for a caller
    /// that cannot await (a synchronous authenticator). An unknown key id starts one fetch of
    /// the key set in the background (same rate limit as [`Verifier::verify`]) and is refused
    /// now; the next request with that key passes once the fetch is done.
    pub fn verify_cached(
        self: &Arc<Self>,
        token: &str,
        now: SystemTime,
    ) -> Result<Claims, OidcError> {
        let header = Header::parse(token)?;
        let alg = Alg::parse(&header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or(OidcError::Algorithm)?;
        match self.check_signature(token, &header, alg) {
            Some(result) => self.check_claims(&result?, now),
            None => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let me = Arc::clone(self);
                    let kid = header.kid.clone();
                    rt.spawn(async move {
                        if let Err(e) = me.refetch_for(kid.as_deref(), alg).await {
                            tracing::debug!(error = %e, "jwks refetch for an unknown key id");
                        }
                    });
                }
                Err(OidcError::UnknownKey)
            }
        }
    }

    /// `None` when no key matches; else the signature check's outcome and the claims.
    fn check_signature(
        &self,
        token: &str,
        header: &Header,
        alg: Alg,
    ) -> Option<Result<Value, OidcError>> {
        let keys = self.current();
        let key = keys.find(header.kid.as_deref(), alg)?;
        let mut validation = Validation::new(alg.jwt());
        // Every claim is checked here, on strict types, against the caller's clock.
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Some(
            jsonwebtoken::decode::<Value>(token, &key.key, &validation)
                .map(|d| d.claims)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => OidcError::Signature,
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => OidcError::Algorithm,
                    _ => OidcError::Malformed,
                }),
        )
    }

    fn check_claims(&self, claims: &Value, now: SystemTime) -> Result<Claims, OidcError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let leeway = self.leeway as f64;
        let obj = claims.as_object().ok_or(OidcError::Malformed)?;
        match obj.get("iss") {
            None => return Err(OidcError::MissingClaim("iss")),
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(Value::String(_)) => return Err(OidcError::Issuer),
            Some(_) => return Err(OidcError::ClaimType("iss")),
        }
        let aud_ok = match obj.get("aud") {
            None => return Err(OidcError::MissingClaim("aud")),
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => {
                let mut any = false;
                for a in list {
                    match a {
                        Value::String(s) => any |= *s == self.audience,
                        _ => return Err(OidcError::ClaimType("aud")),
                    }
                }
                any
            }
            Some(_) => return Err(OidcError::ClaimType("aud")),
        };
        if !aud_ok {
            return Err(OidcError::Audience);
        }
        let exp = numeric_date(obj, "exp")?.ok_or(OidcError::MissingClaim("exp"))?;
        if exp + leeway <= now {
            return Err(OidcError::Expired);
        }
        if let Some(nbf) = numeric_date(obj, "nbf")? {
            if nbf > now + leeway {
                return Err(OidcError::NotYetValid);
            }
        }
        if let Some(iat) = numeric_date(obj, "iat")? {
            if iat > now + leeway {
                return Err(OidcError::IssuedInFuture);
            }
        }
        let subject = match obj.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(OidcError::MissingClaim("sub")),
            Some(_) => return Err(OidcError::ClaimType("sub")),
        };
        Ok(Claims {
            subject,
            roles: roles_at(claims, &self.roles_path),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn store(&self, set: KeySet) {
        let set = Arc::new(set);
        match self.keys.write() {
            Ok(mut k) => *k = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }

    /// Fetches the key set again for a key id it lacks, at most once per `min_refetch`;
    /// concurrent callers wait for the one fetch. A failed fetch keeps the old keys.
    async fn refetch_for(&self, kid: Option<&str>, alg: Alg) -> Result<(), OidcError> {
        let mut last = self.refetched.lock().await;
        // Another request may have fetched while this one waited.
        if self.current().find(kid, alg).is_some() {
            return Ok(());
        }
        if matches!(*last, Some(t) if t.elapsed() < self.min_refetch) {
            return Err(OidcError::UnknownKey);
        }
        *last = Some(Instant::now());
        let set = self.load().await?;
        self.store(set);
        Ok(())
    }

    async fn load(&self) -> Result<KeySet, OidcError> {
        match &self.source {
            JwksSource::File(path) => {
                let body = tokio::fs::read(path)
                    .await
                    .map_err(|e| OidcError::Jwks(format!("jwks_file: {}", e.kind())))?;
                KeySet::parse(&body)
            }
            JwksSource::Url(url) => {
                let body = tokio::time::timeout(self.timeout, self.fetch(url))
                    .await
                    .map_err(|_| OidcError::JwksTimeout(self.timeout))??;
                KeySet::parse(&body)
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, OidcError> {
        let timeout = |e: &reqwest::Error| e.is_timeout();
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                if timeout(&e) {
                    OidcError::JwksTimeout(self.timeout)
                } else {
                    OidcError::Jwks("jwks_url unreachable".into())
                }
            })?;
        if !resp.status().is_success() {
            return Err(OidcError::Jwks(format!(
                "jwks_url answered {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(OidcError::Jwks("jwks document too large".into()));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) if timeout(&e) => return Err(OidcError::JwksTimeout(self.timeout)),
                Err(_) => return Err(OidcError::Jwks("jwks_url broke off".into())),
            }
        }
    }
}

/// Plugs a verifier into the API's authenticator when it has OIDC settings (`api.oidc`):
/// builds it (reading the key set once, within the deadline) and returns the authenticator
/// checking JWTs with it ([`Verifier::verify_cached`]). Without OIDC settings, unchanged.
pub async fn attach(
    auth: crate::auth::Authenticator,
) -> Result<crate::auth::Authenticator, OidcError> {
    use crate::auth::{Oidc, OidcCheck, OidcIdentity};
    let settings = match auth.oidc() {
        Oidc::Unavailable(s) | Oidc::Verifier(s, _) => s.clone(),
        Oidc::Off => return Ok(auth),
    };
    let mut cfg = OidcConfig::new(
        &settings.issuer,
        &settings.audience,
        JwksSource::Url(String::new()),
    );
    cfg.jwks_file = settings.jwks_file.clone();
    cfg.jwks_url = settings.jwks_url.clone();
    if !settings.roles_claim.is_empty() {
        cfg.roles_claim = settings.roles_claim.clone();
    }
    let verifier = Arc::new(Verifier::new(&cfg).await?);
    let check: OidcCheck = Arc::new(move |token: &str, now: chrono::DateTime<chrono::Utc>| {
        verifier
            .verify_cached(token, SystemTime::from(now))
            .map(|c| OidcIdentity {
                subject: c.subject,
                roles: c.roles,
            })
            .map_err(|e| e.to_string())
    });
    Ok(auth.with_oidc(Oidc::Verifier(settings, check)))
}

/// What the verifier reads from a token's header before choosing a key.
#[derive(Debug)]
struct Header {
    alg: String,
    kid: Option<String>,
}

impl Header {
    fn parse(token: &str) -> Result<Header, OidcError> {
        use base64::Engine as _;
        let mut parts = token.split('.');
        let (Some(head), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OidcError::Malformed);
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .map_err(|_| OidcError::Malformed)?;
        #[derive(Deserialize)]
        struct Raw {
            alg: String,
            #[serde(default)]
            kid: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(&bytes).map_err(|_| OidcError::Malformed)?;
        Ok(Header {
            alg: raw.alg,
            kid: raw.kid,
        })
    }
}

/// A NumericDate claim: a JSON number (seconds since the epoch, fractions allowed).
fn numeric_date(
    obj: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<f64>, OidcError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(OidcError::ClaimType(name)),
        Some(_) => Err(OidcError::ClaimType(name)),
    }
}

/// The roles at a dotted path: an array of strings (other items ignored) or one string of
/// space-separated names; nothing when absent or of another type.
fn roles_at(claims: &Value, path: &[String]) -> Vec<String> {
    let mut at = claims;
    for seg in path {
        match at.get(seg) {
            Some(v) => at = v,
            None => return Vec::new(),
        }
    }
    let mut seen = HashSet::new();
    let names: Vec<String> = match at {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    names
        .into_iter()
        .filter(|n| !n.is_empty() && seen.insert(n.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
