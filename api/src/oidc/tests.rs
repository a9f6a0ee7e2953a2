//! The verifier against keys made here (P-256 with ring, RSA with the `openssl` tool), JWKS
//! documents on disk and served over real HTTP, and a server that never answers.

use super::*;
use jsonwebtoken::{encode, EncodingKey, Header as JwtHeader};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const ISS: &str = "https://idp.example.test/realms/aetherv";
const AUD: &str = "aetherv-api";

/// A signing key and its public JWK (with `kid`).
struct TestKey {
    enc: EncodingKey,
    alg: Algorithm,
    jwk: Value,
    kid: String,
}

fn es256(kid: &str) -> TestKey {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("generate a P-256 key");
    let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
    with_jwk(enc, Algorithm::ES256, kid)
}

fn rs256(kid: &str) -> TestKey {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("the openssl tool makes the test's RSA key");
    assert!(out.status.success(), "openssl genrsa failed");
    let enc = EncodingKey::from_rsa_pem(&out.stdout).expect("an RSA PEM");
    with_jwk(enc, Algorithm::RS256, kid)
}

fn with_jwk(enc: EncodingKey, alg: Algorithm, kid: &str) -> TestKey {
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&enc, alg).expect("a public jwk"))
        .expect("jwk json");
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    TestKey {
        enc,
        alg,
        jwk,
        kid: kid.into(),
    }
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims valid for an hour, with nested roles.
fn claims() -> Value {
    let now = now_secs();
    json!({
        "iss": ISS, "aud": AUD, "sub": "u-1234", "iat": now, "nbf": now, "exp": now + 3600,
        "realm_access": { "roles": ["operator", "reader", 7] },
    })
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut h = JwtHeader::new(key.alg);
    h.kid = Some(key.kid.clone());
    encode(&h, claims, &key.enc).expect("sign a token")
}

fn write_jwks(doc: &Value) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, doc.to_string()).expect("write jwks");
    (dir, path)
}

async fn file_verifier(doc: &Value) -> (tempfile::TempDir, Verifier) {
    let (dir, path) = write_jwks(doc);
    let mut cfg = OidcConfig::new(ISS, AUD, JwksSource::File(path));
    cfg.roles_claim = "realm_access.roles".into();
    (dir, Verifier::new(&cfg).await.expect("verifier"))
}

/// A JWKS endpoint over real HTTP whose document the test may change; counts its requests.
struct JwksServer {
    url: String,
    doc: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(doc: Value) -> JwksServer {
    let doc = Arc::new(Mutex::new(doc));
    let hits = Arc::new(AtomicUsize::new(0));
    let (d, h) = (Arc::clone(&doc), Arc::clone(&hits));
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let (d, h) = (Arc::clone(&d), Arc::clone(&h));
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let body = d.lock().expect("doc").to_string();
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer {
        url: format!("http://{addr}/certs"),
        doc,
        hits,
    }
}

#[tokio::test]
async fn a_valid_es256_token_gives_its_subject_and_roles() {
    let key = es256("k1");
    let (_dir, v) = file_verifier(&jwks(&[&key])).await;
    let got = v
        .verify(&sign(&key, &claims()), SystemTime::now())
        .await
        .expect("valid");
    assert_eq!(
        got,
        Claims {
            subject: "u-1234".into(),
            roles: vec!["operator".into(), "reader".into()],
        }
    );
}

#[tokio::test]
async fn a_valid_rs256_token_verifies_against_a_jwks_url() {
    let key = rs256("rsa-1");
    let srv = jwks_server(jwks(&[&key])).await;
    let mut cfg = OidcConfig::new(ISS, AUD, JwksSource::Url(srv.url.clone()));
    cfg.roles_claim = "scope".into();
    let v = Verifier::new(&cfg).await.expect("verifier");
    let mut c = claims();
    c["scope"] = json!("reader  operator reader");
    c["aud"] = json!(["other", AUD]);
    let got = v.verify(&sign(&key, &c), SystemTime::now()).await;
    assert_eq!(
        got,
        Ok(Claims {
            subject: "u-1234".into(),
            roles: vec!["reader".into(), "operator".into()],
        })
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_beyond_the_leeway_only() {
    let key = es256("k1");
    let (_dir, v) = file_verifier(&jwks(&[&key])).await;
    let mut c = claims();
    c["exp"] = json!(now_secs() - 30);
    assert!(v.verify(&sign(&key, &c), SystemTime::now()).await.is_ok());
    c["exp"] = json!(now_secs() - 120);
    assert_eq!(
        v.verify(&sign(&key, &c), SystemTime::now()).await,
        Err(OidcError::Expired)
    );
    // The caller's clock decides: the same token was fine two hours ago.
    let earlier = SystemTime::now() - Duration::from_secs(7200);
    c["iat"] = json!(now_secs() - 7300);
    c["nbf"] = json!(now_secs() - 7300);
    assert!(v.verify(&sign(&key, &c), earlier).await.is_ok());
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let key = es256("k1");
    let (_dir, v) = file_verifier(&jwks(&[&key])).await;
    for aud in [json!("another-api"), json!(["a", "b"]), json!([])] {
        let mut c = claims();
        c["aud"] = aud;
        assert_eq!(
            v.verify(&sign(&key, &c), SystemTime::now()).await,
            Err(OidcError::Audience)
        );
    }
    let mut c = claims();
    c.as_object_mut().expect("object").remove("aud");
    assert_eq!(
        v.verify(&sign(&key, &c), SystemTime::now()).await,
        Err(OidcError::MissingClaim("aud"))
    );
}

#[tokio::test]
async fn a_token_of_another_issuer_is_refused() {
    let key = es256("k1");
    let (_dir, v) = file_verifier(&jwks(&[&key])).await;
    let mut c = claims();
    c["iss"] = json!("https://idp.example.test/realms/other");
    assert_eq!(
        v.verify(&sign(&key, &c), SystemTime::now()).await,
        Err(OidcError::Issuer)
    );
}

#[tokio::test]
async fn a_forged_signature_is_refused() {
    let key = es256("k1");
    let (_dir, v) = file_verifier(&jwks(&[&key])).await;
    // Another key claiming the trusted key's id.
    let forger = es256("k1");
    assert_eq!(
        v.verify(&sign(&forger, &claims()), SystemTime::now()).await,
        Err(OidcError::Signature)
    );
    // The trusted signature over changed claims.
    let good = sign(&key, &claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["realm_access"]["roles"] = json!(["admin"]);
    let forged_claims = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    parts[1] = &forged_claims;
    assert_eq!(
        v.verify(&parts.join("."), SystemTime::now()).await,
        Err(OidcError::Signature)
    );
}

#[tokio::test]
async fn alg_none_and_hmac_with_the_public_key_are_refused() {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let key = rs256("rsa-1");
    let (_dir, v) = file_verifier(&jwks(&[&key])).await;
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        b64(&claims())
    );
    assert_eq!(
        v.verify(&none, SystemTime::now()).await,
        Err(OidcError::Algorithm)
    );
    // HS256 keyed with the RSA public key's bytes (the classic confusion).
    let secret = key.jwk["n"].as_str().expect("n").as_bytes().to_vec();
    let mut h = JwtHeader::new(Algorithm::HS256);
    h.kid = Some("rsa-1".into());
    let hs = encode(
        &h,
        &claims(),
        &EncodingKey::from_secret(&secret).expect("hmac key"),
    )
    .expect("hs256");
    assert_eq!(
        v.verify(&hs, SystemTime::now()).await,
        Err(OidcError::Algorithm)
    );
    // An ES256 header naming the RSA key: the key is only for RS256.
    let ec = es256("rsa-1");
    assert_eq!(
        v.verify(&sign(&ec, &claims()), SystemTime::now()).await,
        Err(OidcError::UnknownKey)
    );
}

#[tokio::test]
async fn strings_where_numbers_belong_are_refused_not_skipped() {
    let key = es256("k1");
    let (_dir, v) = file_verifier(&jwks(&[&key])).await;
    for claim in ["exp", "nbf", "iat"] {
        let mut c = claims();
        c[claim] = json!("0");
        let got = v.verify(&sign(&key, &c), SystemTime::now()).await;
        assert!(
            matches!(got, Err(OidcError::ClaimType(n)) if n == claim),
            "{claim}: {got:?}"
        );
    }
    let mut c = claims();
    c["nbf"] = json!(now_secs() + 600);
    assert_eq!(
        v.verify(&sign(&key, &c), SystemTime::now()).await,
        Err(OidcError::NotYetValid)
    );
    let mut c = claims();
    c["iat"] = json!(now_secs() + 600);
    assert_eq!(
        v.verify(&sign(&key, &c), SystemTime::now()).await,
        Err(OidcError::IssuedInFuture)
    );
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_key_set_once_more() {
    let old = es256("2026-old");
    let srv = jwks_server(jwks(&[&old])).await;
    let cfg = OidcConfig::new(ISS, AUD, JwksSource::Url(srv.url.clone()));
    let v = Verifier::new(&cfg).await.expect("verifier");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1, "read at start");
    assert!(v
        .verify(&sign(&old, &claims()), SystemTime::now())
        .await
        .is_ok());
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1, "cached");

    // The provider rotates: a token with the new kid makes one fetch, concurrent ones share it.
    let new = es256("2026-new");
    *srv.doc.lock().expect("doc") = jwks(&[&old, &new]);
    let token = sign(&new, &claims());
    let (a, b) = tokio::join!(
        v.verify(&token, SystemTime::now()),
        v.verify(&token, SystemTime::now())
    );
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);

    // A made-up kid right after: refused without another fetch.
    let stranger = es256("made-up");
    assert_eq!(
        v.verify(&sign(&stranger, &claims()), SystemTime::now())
            .await,
        Err(OidcError::UnknownKey)
    );
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_jwks_url_that_never_answers_hits_the_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts and holds every connection, never writes a byte.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut cfg = OidcConfig::new(ISS, AUD, JwksSource::Url(format!("http://{addr}/certs")));
    cfg.jwks_timeout_ms = 300;
    let started = Instant::now();
    let got = Verifier::new(&cfg).await;
    assert_eq!(
        got.map(|_| ()),
        Err(OidcError::JwksTimeout(Duration::from_millis(300)))
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn errors_never_echo_the_token() {
    let key = es256("k1");
    let (_dir, v) = file_verifier(&jwks(&[&key])).await;
    let mut bad = Vec::new();
    let mut c = claims();
    c["aud"] = json!("elsewhere");
    bad.push(sign(&key, &c));
    c = claims();
    c["exp"] = json!(1);
    bad.push(sign(&key, &c));
    bad.push(sign(&es256("k1"), &claims()));
    bad.push(sign(&es256("k9"), &claims()));
    bad.push("eyJhbGciOiJFUzI1NiJ9.not-base64!.sig".into());
    for token in bad {
        let err = v
            .verify(&token, SystemTime::now())
            .await
            .expect_err("refused");
        let text = format!("{err} {err:?}");
        for part in token.split('.').filter(|p| p.len() > 3) {
            assert!(!text.contains(part), "{text}");
        }
    }
}

#[tokio::test]
async fn the_configuration_allows_only_asymmetric_algorithms() {
    let key = es256("k1");
    let (_dir, path) = write_jwks(&jwks(&[&key]));
    for algs in [vec!["none"], vec!["HS256"], vec!["RS256", "HS512"], vec![]] {
        let mut cfg = OidcConfig::new(ISS, AUD, JwksSource::File(path.clone()));
        cfg.algorithms = algs.iter().map(|s| s.to_string()).collect();
        let err = Verifier::new(&cfg).await.expect_err("refused");
        assert!(matches!(err, OidcError::Config(_)), "{err:?}");
    }
    // ES256 only: an RS256 token is refused by algorithm, even with a matching key.
    let rsa = rs256("rsa-1");
    let (_dir2, path2) = write_jwks(&jwks(&[&key, &rsa]));
    let mut cfg = OidcConfig::new(ISS, AUD, JwksSource::File(path2));
    cfg.algorithms = vec!["ES256".into()];
    let v = Verifier::new(&cfg).await.expect("verifier");
    assert_eq!(
        v.verify(&sign(&rsa, &claims()), SystemTime::now()).await,
        Err(OidcError::Algorithm)
    );
}

#[tokio::test]
async fn the_synchronous_check_fetches_a_new_key_in_the_background() {
    let old = es256("old");
    let srv = jwks_server(jwks(&[&old])).await;
    let cfg = OidcConfig::new(ISS, AUD, JwksSource::Url(srv.url.clone()));
    let v = Arc::new(Verifier::new(&cfg).await.expect("verifier"));
    assert!(v
        .verify_cached(&sign(&old, &claims()), SystemTime::now())
        .is_ok());
    let new = es256("new");
    *srv.doc.lock().expect("doc") = jwks(&[&old, &new]);
    let token = sign(&new, &claims());
    assert_eq!(
        v.verify_cached(&token, SystemTime::now()),
        Err(OidcError::UnknownKey),
        "refused while the key set is fetched"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while v.verify_cached(&token, SystemTime::now()).is_err() {
        assert!(Instant::now() < deadline, "the new key never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_api_takes_a_valid_token_and_refuses_expired_foreign_and_forged_ones() {
    let key = es256("k1");
    let (_dir, path) = write_jwks(&jwks(&[&key]));
    let settings = crate::auth::OidcSettings {
        issuer: ISS.into(),
        audience: AUD.into(),
        jwks_file: Some(path),
        jwks_url: None,
        roles_claim: "realm_access.roles".into(),
    };
    let auth = attach(crate::Authenticator::new(
        Vec::new(),
        crate::Oidc::Unavailable(settings),
    ))
    .await
    .expect("verifier attached");
    let valid = sign(&key, &claims());
    let p = auth
        .authenticate(Some(&format!("Bearer {valid}")), chrono::Utc::now())
        .expect("a valid token is a principal");
    assert_eq!(p.id.user_id, "u-1234");
    assert_eq!(p.platform_groups, vec!["operator", "reader"]);

    // Over HTTP: the API's router with the status page.
    let (api, _calls) = crate::Api::new(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = api.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = http
        .get(format!("{base}/"))
        .bearer_auth(&valid)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("body").contains("api:u-1234"));

    let mut expired = claims();
    expired["exp"] = json!(now_secs() - 3600);
    let mut foreign = claims();
    foreign["aud"] = json!("another-api");
    for (what, token) in [
        ("expired", sign(&key, &expired)),
        ("wrong audience", sign(&key, &foreign)),
        ("forged", sign(&es256("k1"), &claims())),
    ] {
        let r = http
            .get(format!("{base}/api/v1/jobs"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 401, "{what}");
        let body = r.text().await.expect("body");
        assert!(!body.contains(&token), "{what}: {body}");
        let page = http
            .get(format!("{base}/"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 303, "{what}: the page sends it to /login");
    }
}
