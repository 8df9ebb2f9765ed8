//! TLS client configurations, and the one handshake that captures what a server presents.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::dial::{DialError, Dialer};
use crate::model::RelayUrl;

/// TLS client config trusting the web PKI (Mozilla's roots) plus `extra_roots` (tests' local CA).
pub fn tls_config(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(roots(extra_roots))
                .with_no_client_auth()
        });
    // The ring provider supports the default versions, so the builder cannot fail.
    Arc::new(config.unwrap_or_else(|_| unreachable!("ring supports the safe default TLS versions")))
}

/// The web PKI's roots plus `extra_roots`.
pub fn roots(extra_roots: &[CertificateDer<'static>]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        // A malformed extra root is the caller's test bug; skip it rather than fail dialing.
        let _ = roots.add(cert.clone());
    }
    roots
}

/// Accepts every certificate (signatures of the handshake itself are still checked): the
/// check must describe bad certificates, not refuse them.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config that accepts any certificate (overlay NIP-11 fetches: onion services are
/// authenticated by their address, and their certificates are usually self-signed).
pub fn accept_any_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| unreachable!("ring supports the safe default TLS versions"))
}

/// What a TLS server presented in one handshake.
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub protocol: Option<rustls::ProtocolVersion>,
    /// The negotiated cipher suite's name (`TLS13_AES_256_GCM_SHA384`).
    pub cipher: Option<String>,
    /// The name the certificate was asked for.
    pub server_name: ServerName<'static>,
}

impl Dialer {
    /// One TLS handshake with `url`'s host (clearnet, through the SSRF guard) that accepts any
    /// certificate, so expired or misnamed ones can still be described.
    pub async fn tls_capture(&self, url: &RelayUrl) -> Result<TlsSession, DialError> {
        let host = url
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(443);
        let tcp = self.tcp(&host, port).await?;
        let name = ServerName::try_from(host.clone()).map_err(|e| DialError::Tls {
            host: host.clone(),
            reason: format!("bad TLS name: {e}"),
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(accept_any_config()));
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| DialError::Tls {
                host: host.clone(),
                reason: format!("TLS handshake failed: {e}"),
            })?;
        let conn = tls.get_ref().1;
        Ok(TlsSession {
            chain: conn
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                .unwrap_or_default(),
            protocol: conn.protocol_version(),
            cipher: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
            server_name: name,
        })
    }
}
