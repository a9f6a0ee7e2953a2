//! rustls client configuration for `https://` endpoints.
//!
//! Always uses the `ring` provider explicitly (no process-wide default
//! provider is needed or installed). Roots: the configured CA PEM only, or the
//! Mozilla roots. `accept_invalid_certs` swaps in a verifier that skips chain
//! and name checks but still verifies handshake signatures.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::TlsOptions;
use crate::error::WinrmError;

/// Builds the rustls client configuration for `opts`.
pub(crate) fn client_config(opts: &TlsOptions) -> Result<rustls::ClientConfig, WinrmError> {
    let provider = Arc::new(ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|_| WinrmError::Config("tls provider offers no protocol version".into()))?;
    if opts.accept_invalid_certs {
        tracing::warn!(
            "winrm tls certificate validation is disabled (accept_invalid_certs); \
             the connection can be intercepted"
        );
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    match &opts.ca_pem {
        Some(pem) => {
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert =
                    cert.map_err(|_| WinrmError::Config("ca_pem is not valid pem".into()))?;
                roots.add(cert).map_err(|_| {
                    WinrmError::Config("ca_pem holds an unusable certificate".into())
                })?;
            }
            if roots.is_empty() {
                return Err(WinrmError::Config("ca_pem holds no certificate".into()));
            }
        }
        None => {
            roots.add_parsable_certificates(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned(),
            );
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Accepts any certificate chain and name; still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roots_and_bad_pem() {
        assert!(client_config(&TlsOptions::default()).is_ok());
        let bad = TlsOptions {
            ca_pem: Some(b"not a pem".to_vec()),
            accept_invalid_certs: false,
        };
        assert!(matches!(client_config(&bad), Err(WinrmError::Config(_))));
        let insecure = TlsOptions {
            ca_pem: None,
            accept_invalid_certs: true,
        };
        assert!(client_config(&insecure).is_ok());
    }
}
