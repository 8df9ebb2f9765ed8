//! The result of checking one relay: one [`Check`] per check that ran, each holding only the
//! measured data (hashed and stored) apart from its outcome and reason (not hashed).

use serde::Serialize;
use serde_json::Value;

use crate::model::{Metadata, MetadataError, MetadataType, RelayUrl};

use crate::nips::nip11::Nip11;

/// One check's result: what was measured, whether the check succeeded and why not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check<T> {
    /// What was measured (possibly partial when the check failed).
    pub data: T,
    pub success: bool,
    /// Why the check failed (absent iff it succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts made (1 + retries used).
    pub attempts: u32,
    /// Whether another attempt could give another answer (timeouts, transport errors); a
    /// definite answer (HTTP 404, a refused write) is not retried.
    #[serde(skip)]
    pub transient: bool,
}

impl<T: Default> Check<T> {
    pub fn ok(data: T) -> Self {
        Check {
            data,
            success: true,
            reason: None,
            attempts: 1,
            transient: false,
        }
    }
    /// A failure that may go away on another attempt.
    pub fn failed(reason: impl Into<String>) -> Self {
        Check {
            data: T::default(),
            success: false,
            reason: Some(reason.into()),
            attempts: 1,
            transient: true,
        }
    }
    /// A failure that another attempt would only repeat.
    pub fn definite(reason: impl Into<String>) -> Self {
        Check {
            transient: false,
            ..Check::failed(reason)
        }
    }
    /// Failed, but with what was measured before the failure.
    pub fn partial(data: T, reason: impl Into<String>) -> Self {
        Check {
            data,
            success: false,
            reason: Some(reason.into()),
            attempts: 1,
            transient: false,
        }
    }
}

/// NIP-11 fetch: the cleaned document plus whether CORS was announced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nip11Data {
    pub doc: Nip11,
    /// The response carried `Access-Control-Allow-Origin` (NIP-11 requires it).
    pub cors: Option<bool>,
}

impl Serialize for Nip11Data {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = self.doc.to_value();
        if let (Value::Object(m), Some(c)) = (&mut v, self.cors) {
            // Kept beside the document, under a name NIP-11 cannot use.
            m.insert("_cors".into(), c.into());
        }
        v.serialize(s)
    }
}

pub use crate::nips::nip01::Refusal;

/// Round trips and what the relay required, plus NIP-42 observations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RttData {
    /// Milliseconds to open the WebSocket (TCP/proxy, TLS, handshake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_open: Option<u64>,
    /// Milliseconds from REQ to the first EVENT or EOSE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_read: Option<u64>,
    /// Milliseconds from EVENT to an `OK true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_write: Option<u64>,
    /// The relay sent an AUTH challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_challenge: Option<bool>,
    /// Reading was refused until AUTH (`CLOSED auth-required:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_auth: Option<bool>,
    /// Writing was refused until AUTH (`OK false auth-required:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_auth: Option<bool>,
    /// The last refusal of the read (after AUTH when it was tried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_refused: Option<Refusal>,
    /// The last refusal of the write (after AUTH when it was tried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_refused: Option<Refusal>,
    /// NIP-13 difficulty the write event carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_pow: Option<u8>,
    /// Kind of the write event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_kind: Option<u16>,
    /// What confirmed the write: `ok` (an `OK true`) or `echo` (the event came back on a
    /// subscription to its id first; some relays send no OK for ephemeral events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_ack: Option<String>,
}

/// NIP-77 probe: does NEG-OPEN get a NEG-MSG?
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Nip77Data {
    /// `true`: NEG-MSG came back; `false`: NEG-ERR, NOTICE, CLOSED or silence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negentropy: Option<bool>,
    /// What answered NEG-OPEN: `NEG-MSG`, `NEG-ERR`, `CLOSED`, `NOTICE`, or `none` (silence
    /// while the relay answered a request sent after it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Prefix of a NEG-ERR/CLOSED answer (`blocked`, `closed`, `auth-required`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Milliseconds from NEG-OPEN to the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<u64>,
}

/// TLS certificate and session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SslData {
    /// `SHA256:AB:CD:…` over the leaf certificate's DER.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_subject_cn: Option<String>,
    /// Issuer organisation (O).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_issuer_cn: Option<String>,
    /// notAfter, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_expires: Option<i64>,
    /// notBefore, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_not_before: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssl_san: Vec<String>,
    /// Serial number, uppercase hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_serial: Option<String>,
    /// X.509 version (3 for v3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_version: Option<u32>,
    /// e.g. `TLSv1.3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_protocol: Option<String>,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_cipher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_cipher_bits: Option<u32>,
    /// The chain verifies against the web PKI for the relay's host name, now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_valid: Option<bool>,
    /// Why it does not (e.g. `expired`, `not valid for name`, `unknown issuer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_invalid_reason: Option<String>,
}

/// DNS records of the relay's host.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DnsData {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_ips: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_ips_v6: Vec<String>,
    /// TTL of the A record set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_ttl: Option<u32>,
    /// First CNAME target, without the trailing dot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_cname: Option<String>,
    /// Name servers of the registrable domain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_ns: Vec<String>,
    /// PTR of the first A address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_reverse: Option<String>,
}

/// Location of the relay's address.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GeoData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_country_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_is_eu: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_continent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_continent_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_geoname_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_postal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_lon: Option<f64>,
    /// Accuracy radius, km.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_accuracy: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_tz: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_hash: Option<String>,
}

/// Autonomous system of the relay's addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_asn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_asn_org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_network_v6: Option<String>,
}

/// Handshake response headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HttpData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_powered_by: Option<String>,
}

/// Everything learned about one relay in one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayReport {
    pub relay: String,
    pub network: String,
    /// One timestamp for every result of this check (unix seconds).
    pub generated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nip11: Option<Check<Nip11Data>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<Check<RttData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nip77: Option<Check<Nip77Data>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl: Option<Check<SslData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Check<DnsData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<Check<GeoData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<Check<NetData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Check<HttpData>>,
    /// Checks skipped, with why (e.g. a missing GeoIP file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<(String, String)>,
}

/// A stored check result: the content-addressed data and the outcome that is not hashed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheck {
    pub metadata: Metadata,
    pub success: bool,
    pub reason: Option<String>,
}

impl RelayReport {
    pub fn new(relay: &RelayUrl, generated_at: i64) -> Self {
        RelayReport {
            relay: relay.as_str().to_owned(),
            network: relay.network().as_str().to_owned(),
            generated_at,
            nip11: None,
            rtt: None,
            nip77: None,
            ssl: None,
            dns: None,
            geo: None,
            net: None,
            http: None,
            skipped: Vec::new(),
        }
    }

    /// The relay answered a WebSocket (or, with RTT off, any check succeeded).
    pub fn reachable(&self) -> bool {
        match &self.rtt {
            Some(r) => r.data.rtt_open.is_some(),
            None => self.successes() > 0,
        }
    }

    fn successes(&self) -> usize {
        [
            self.nip11.as_ref().map(|c| c.success),
            self.nip77.as_ref().map(|c| c.success),
            self.ssl.as_ref().map(|c| c.success),
            self.dns.as_ref().map(|c| c.success),
            self.geo.as_ref().map(|c| c.success),
            self.net.as_ref().map(|c| c.success),
            self.http.as_ref().map(|c| c.success),
        ]
        .into_iter()
        .flatten()
        .filter(|s| *s)
        .count()
    }

    /// (check name, succeeded) of every check that ran, for metrics.
    pub fn outcomes(&self) -> Vec<(&'static str, bool)> {
        [
            ("nip11", self.nip11.as_ref().map(|c| c.success)),
            ("rtt", self.rtt.as_ref().map(|c| c.success)),
            ("nip77", self.nip77.as_ref().map(|c| c.success)),
            ("ssl", self.ssl.as_ref().map(|c| c.success)),
            ("dns", self.dns.as_ref().map(|c| c.success)),
            ("geo", self.geo.as_ref().map(|c| c.success)),
            ("net", self.net.as_ref().map(|c| c.success)),
            ("http", self.http.as_ref().map(|c| c.success)),
        ]
        .into_iter()
        .filter_map(|(n, s)| s.map(|s| (n, s)))
        .collect()
    }

    /// The NIP-11 document when its fetch succeeded.
    pub fn nip11_doc(&self) -> Option<&Nip11> {
        self.nip11
            .as_ref()
            .filter(|c| c.success)
            .map(|c| &c.data.doc)
    }

    /// One stored row per check that ran: only `data` is hashed (a changing error string mints no new document).
    pub fn to_stored(&self) -> Result<Vec<StoredCheck>, MetadataError> {
        fn one<T: Serialize>(
            out: &mut Vec<StoredCheck>,
            kind: MetadataType,
            c: &Option<Check<T>>,
        ) -> Result<(), MetadataError> {
            if let Some(c) = c {
                let data = serde_json::to_value(&c.data).unwrap_or(Value::Null);
                out.push(StoredCheck {
                    metadata: Metadata::new(kind, &data)?,
                    success: c.success,
                    reason: c.reason.clone(),
                });
            }
            Ok(())
        }
        let mut out = Vec::new();
        one(&mut out, MetadataType::Nip11Info, &self.nip11)?;
        one(&mut out, MetadataType::Nip66Rtt, &self.rtt)?;
        one(&mut out, MetadataType::Nip77Probe, &self.nip77)?;
        one(&mut out, MetadataType::Nip66Ssl, &self.ssl)?;
        one(&mut out, MetadataType::Nip66Dns, &self.dns)?;
        one(&mut out, MetadataType::Nip66Geo, &self.geo)?;
        one(&mut out, MetadataType::Nip66Net, &self.net)?;
        one(&mut out, MetadataType::Nip66Http, &self.http)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_prefixes() {
        for (msg, prefix, payment) in [
            ("auth-required: you must auth", "auth-required", false),
            ("pow: difficulty 20 required", "pow", false),
            ("restricted: not a paid member", "restricted", true),
            ("blocked: pay to write", "blocked", true),
            ("you shall not pass", "error", false),
            ("", "error", false),
        ] {
            let r = Refusal::parse(msg);
            assert_eq!((r.prefix.as_str(), r.payment), (prefix, payment), "{msg}");
        }
    }

    #[test]
    fn a_changing_failure_reason_does_not_change_the_stored_id() {
        let url = RelayUrl::parse("wss://relay.example.com").unwrap();
        let mut a = RelayReport::new(&url, 1);
        a.ssl = Some(Check::failed("connection reset after 1.2s"));
        let mut b = RelayReport::new(&url, 2);
        b.ssl = Some(Check::failed("connection reset after 3.4s"));
        let (sa, sb) = (a.to_stored().unwrap(), b.to_stored().unwrap());
        assert_eq!(sa[0].metadata.id(), sb[0].metadata.id());
        assert_ne!(sa[0].reason, sb[0].reason);
        assert!(!sa[0].success);
    }

    #[test]
    fn reachability_follows_the_open_phase() {
        let url = RelayUrl::parse("wss://relay.example.com").unwrap();
        let mut r = RelayReport::new(&url, 1);
        assert!(!r.reachable());
        r.rtt = Some(Check::partial(
            RttData {
                rtt_open: Some(12),
                ..Default::default()
            },
            "read: no answer",
        ));
        assert!(r.reachable());
    }
}
