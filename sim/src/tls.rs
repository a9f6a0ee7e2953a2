//! HTTPS for the simulator: a throw-away CA and a server certificate for `localhost` /
//! `127.0.0.1` generated with rcgen, and a rustls server config using the ring provider.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Why the TLS material could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    /// rustls rejected the configuration.
    #[error("tls configuration failed")]
    Rustls(#[from] rustls::Error),
}

/// A self-made CA, the server certificate it signed, and the rustls config serving it.
#[derive(Clone)]
pub struct SelfSignedTls {
    ca_pem: String,
    cert_pem: String,
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for SelfSignedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSignedTls").finish_non_exhaustive()
    }
}

impl SelfSignedTls {
    /// Generates a CA and a server certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Self, TlsError> {
        Self::for_names(&["localhost".to_string(), "127.0.0.1".to_string()])
    }

    /// Generates a CA and a server certificate for these DNS names / IP addresses.
    pub fn for_names(names: &[String]) -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Aether-V simulator CA");
        let ca = ca_params.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let cert = params.signed_by(&key, &ca, &ca_key)?;

        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
        Ok(SelfSignedTls {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            config: Arc::new(config),
        })
    }

    /// The CA certificate (PEM) clients should trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The rustls server configuration.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }
}
