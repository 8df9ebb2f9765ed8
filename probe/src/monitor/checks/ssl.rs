//! SSL check: one TLS handshake that accepts any certificate (so expired or misnamed ones are
//! still described), then the captured chain is verified offline against the web PKI for the
//! relay's name — one connection instead of the reference system's two.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::model::RelayUrl;
use crate::monitor::report::{Check, SslData};
use crate::net::Dialer;
use crate::net::tls::TlsSession;

/// Verifies captured chains offline against the web PKI (plus any extra roots).
#[derive(Clone)]
pub struct SslProbe {
    verifier: Arc<WebPkiServerVerifier>,
}

impl SslProbe {
    /// `roots`: the trust anchors `ssl_valid` is judged against (web PKI plus any extra roots).
    pub fn new(roots: Arc<RootCertStore>) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SslProbe { verifier })
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
        match tokio::time::timeout(timeout, dialer.tls_capture(url)).await {
            Ok(Ok(session)) => match self.describe(&session) {
                Ok(data) => Check::ok(data),
                Err(e) => Check::failed(e),
            },
            Ok(Err(e)) => Check::failed(e.to_string()),
            Err(_) => Check::failed(format!("TLS handshake not done within {timeout:?}")),
        }
    }

    /// What the session's certificate says, and whether its chain is valid now (pure).
    fn describe(&self, session: &TlsSession) -> Result<SslData, String> {
        let chain = &session.chain;
        let Some(leaf) = chain.first() else {
            return Err("no certificate data extracted".to_owned());
        };
        let mut data = describe_certificate(leaf)?;
        data.ssl_protocol = session.protocol.map(protocol_name);
        if let Some(name) = &session.cipher {
            data.ssl_cipher_bits = cipher_bits(name);
            data.ssl_cipher = Some(name.clone());
        }
        match self.verifier.verify_server_cert(
            leaf,
            &chain[1..],
            &session.server_name,
            &[],
            UnixTime::now(),
        ) {
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
