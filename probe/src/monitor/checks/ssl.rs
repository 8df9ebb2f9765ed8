//! SSL check: one TLS handshake that accepts any certificate (so expired or misnamed ones are
//! still described), then the captured chain is verified offline against the web PKI for the
//! relay's name — one connection instead of the reference system's two.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::model::RelayUrl;
use crate::monitor::report::{Check, SslData};
use crate::net::Dialer;

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
pub fn accept_any_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    )
}

/// The TLS pieces of the SSL check: a capturing client config and a web-PKI verifier.
#[derive(Clone)]
pub struct SslProbe {
    capture: Arc<rustls::ClientConfig>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl SslProbe {
    /// `roots`: the trust anchors `ssl_valid` is judged against (web PKI plus any extra roots).
    pub fn new(roots: Arc<RootCertStore>) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let capture = accept_any_config()?;
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SslProbe {
            capture: Arc::new(capture),
            verifier,
        })
    }

    /// One attempt within `timeout` (TCP connect and handshake together).
    pub async fn check(
        &self,
        dialer: &Dialer,
        url: &RelayUrl,
        timeout: Duration,
    ) -> Check<SslData> {
        if !url.is_tls() {
            return Check::definite("not a TLS relay (ws://)");
        }
        match tokio::time::timeout(timeout, self.handshake(dialer, url)).await {
            Ok(Ok(data)) => Check::ok(data),
            Ok(Err(e)) => Check::failed(e),
            Err(_) => Check::failed(format!("TLS handshake not done within {timeout:?}")),
        }
    }

    async fn handshake(&self, dialer: &Dialer, url: &RelayUrl) -> Result<SslData, String> {
        let host = url
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(443);
        let tcp = dialer.tcp(&host, port).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("bad TLS name: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(self.capture.clone());
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let conn = tls.get_ref().1;
        let chain: Vec<CertificateDer<'static>> = conn
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .unwrap_or_default();
        let Some(leaf) = chain.first() else {
            return Err("no certificate data extracted".to_owned());
        };
        let mut data = describe_certificate(leaf)?;
        data.ssl_protocol = conn.protocol_version().map(protocol_name);
        if let Some(suite) = conn.negotiated_cipher_suite() {
            let name = format!("{:?}", suite.suite());
            data.ssl_cipher_bits = cipher_bits(&name);
            data.ssl_cipher = Some(name);
        }
        match self
            .verifier
            .verify_server_cert(leaf, &chain[1..], &name, &[], UnixTime::now())
        {
            Ok(_) => data.ssl_valid = Some(true),
            Err(e) => {
                data.ssl_valid = Some(false);
                data.ssl_invalid_reason = Some(invalid_reason(&e));
            }
        }
        Ok(data)
    }
}

/// Short stable names for why a chain is not valid (stored, so they must not vary per call).
fn invalid_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => "not valid for name".into(),
            C::UnknownIssuer => "unknown issuer".into(),
            C::Revoked => "revoked".into(),
            C::BadSignature => "bad signature".into(),
            other => format!("{other:?}").chars().take(40).collect(),
        },
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

/// `TLSv1.3` style names.
fn protocol_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Symmetric key bits of a cipher suite name.
pub fn cipher_bits(name: &str) -> Option<u32> {
    if name.contains("AES_128") {
        Some(128)
    } else if name.contains("AES_256") || name.contains("CHACHA20") {
        Some(256)
    } else {
        None
    }
}

/// `SHA256:AB:CD:…` over the certificate's DER.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("SHA256:{}", pairs.join(":"))
}

/// The certificate fields of the SSL check (pure).
pub fn describe_certificate(der: &CertificateDer<'_>) -> Result<SslData, String> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let issuer_o = cert
        .issuer()
        .iter_organization()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let issuer_cn = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let mut san = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            if let GeneralName::DNSName(d) = n {
                san.push((*d).to_owned());
            }
        }
    }
    let serial: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    Ok(SslData {
        ssl_fingerprint: Some(fingerprint(der.as_ref())),
        ssl_subject_cn: subject_cn,
        ssl_issuer: issuer_o,
        ssl_issuer_cn: issuer_cn,
        ssl_expires: Some(cert.validity().not_after.timestamp()),
        ssl_not_before: Some(cert.validity().not_before.timestamp()),
        ssl_san: san,
        ssl_serial: Some(serial),
        ssl_version: Some(cert.version().0 + 1),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format() {
        let f = fingerprint(b"abc");
        assert!(f.starts_with("SHA256:BA:78:16:BF:"), "{f}");
        assert_eq!(f.len(), "SHA256:".len() + 32 * 3 - 1);
    }

    #[test]
    fn cipher_bits_from_names() {
        assert_eq!(cipher_bits("TLS13_AES_128_GCM_SHA256"), Some(128));
        assert_eq!(cipher_bits("TLS13_AES_256_GCM_SHA384"), Some(256));
        assert_eq!(cipher_bits("TLS13_CHACHA20_POLY1305_SHA256"), Some(256));
        assert_eq!(cipher_bits("NULL"), None);
    }
}
