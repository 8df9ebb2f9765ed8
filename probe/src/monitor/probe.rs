//! Checking one relay: every enabled check with its own timeout and retries, all at once,
//! except where data flows: the RTT write waits for NIP-11 (its PoW difficulty), geo and net
//! run after DNS on the addresses it found.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hickory_resolver::TokioResolver;
use nostr::Keys;
use rustls::RootCertStore;
use tracing::warn;

use super::checks::geo::{GeoDb, open_db};
use super::checks::ssl::SslProbe;
use super::checks::{dns, geo, http, nip11, nip77, rtt};
use super::report::{
    Check, DnsData, GeoData, HttpData, NetData, Nip11Data, Nip77Data, RelayReport, RttData, SslData,
};
use crate::config::{CheckConfig, LimitsConfig, MonitorConfig, NetworksConfig};
use crate::model::{Network, RelayUrl};
use crate::net::{Dialer, HttpClient};

/// Why the monitor cannot start (bad setup, not a relay's fault).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("bad monitor.dnsServer {0:?}: expected ip:port")]
    DnsServer(String),
    #[error("cannot build the DNS resolver: {0}")]
    Resolver(String),
    #[error("cannot build the TLS/HTTP clients: {0}")]
    Clients(String),
}

/// Everything needed to check relays. Cheap to clone.
#[derive(Clone)]
pub struct Prober {
    pub cfg: Arc<MonitorConfig>,
    pub networks: NetworksConfig,
    pub dialer: Dialer,
    pub keys: Keys,
    http: HttpClient,
    ssl: SslProbe,
    resolver: TokioResolver,
    city: Option<GeoDb>,
    asn: Option<GeoDb>,
    /// Why geo / net are off (missing database files), for the report.
    geo_off: Option<String>,
    net_off: Option<String>,
}

impl Prober {
    /// Builds the clients; `extra_roots` are trusted besides the web PKI (tests' local CA).
    /// Missing GeoIP files turn geo/net off with a warning; the rest runs.
    pub fn new(
        cfg: MonitorConfig,
        networks: NetworksConfig,
        limits: LimitsConfig,
        keys: Keys,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self, SetupError> {
        let tls = crate::net::tls_config(extra_roots);
        let roots: RootCertStore = crate::net::tls::roots(extra_roots);
        let dialer = Dialer::new(networks.clone(), limits.clone(), tls.clone());
        let http = HttpClient::new(&networks, tls, limits.allow_private)
            .map_err(|e| SetupError::Clients(e.to_string()))?;
        let ssl = SslProbe::new(Arc::new(roots)).map_err(SetupError::Clients)?;
        let server = match &cfg.dns_server {
            Some(s) => Some(
                s.parse::<SocketAddr>()
                    .map_err(|_| SetupError::DnsServer(s.clone()))?,
            ),
            None => None,
        };
        let resolver =
            dns::resolver(server, cfg.checks.dns.timeout()).map_err(SetupError::Resolver)?;
        let open = |path: &Option<String>,
                    enabled: bool,
                    what: &str|
         -> (Option<GeoDb>, Option<String>) {
            if !enabled {
                return (None, None);
            }
            match path {
                None => (None, Some(format!("no {what} database configured"))),
                Some(p) => match open_db(Path::new(p)) {
                    Ok(db) => (Some(db), None),
                    Err(e) => {
                        warn!(database = %p, error = %e, "GeoIP database unavailable; {what} check skipped");
                        (None, Some(format!("{what} database unavailable: {e}")))
                    }
                },
            }
        };
        let (city, geo_off) = open(&cfg.geoip.city_db, cfg.checks.geo.enabled, "city");
        let (asn, net_off) = open(&cfg.geoip.asn_db, cfg.checks.net.enabled, "ASN");
        Ok(Prober {
            cfg: Arc::new(cfg),
            networks,
            dialer,
            keys,
            http,
            ssl,
            resolver,
            city,
            asn,
            geo_off,
            net_off,
        })
    }

    /// A check's timeout on `network`: overlays get at least their network's timeout.
    fn timeout(&self, check: &CheckConfig, network: Network) -> Duration {
        let t = check.timeout();
        if network.is_overlay() {
            t.max(self.networks.get(network).timeout())
        } else {
            t
        }
    }

    /// Runs every enabled check on `url`; `generated_at` stamps all results.
    pub async fn check_relay(&self, url: &RelayUrl, generated_at: i64) -> RelayReport {
        let net = url.network();
        let mut report = RelayReport::new(url, generated_at);
        // NIP-11 runs alongside the other checks; only the RTT write waits for it (its PoW).
        let nip11_f = self.nip11(url).shared();
        let pow = {
            let nip11 = nip11_f.clone();
            async move {
                nip11
                    .await
                    .filter(|c| c.success)
                    .map_or(0, |c| c.data.doc.min_pow_difficulty())
            }
            .shared()
        };
        let (nip11, rtt, nip77, ssl, http, (dns, geo, netc)) = tokio::join!(
            nip11_f,
            self.rtt(url, pow),
            self.nip77(url),
            self.ssl(url),
            self.http(url),
            self.dns_geo_net(url)
        );
        report.nip11 = nip11;
        report.rtt = rtt;
        report.nip77 = nip77;
        report.ssl = ssl;
        report.http = http;
        report.dns = dns;
        report.geo = geo;
        report.net = netc;
        if net == Network::Clearnet {
            for (name, off) in [("geo", &self.geo_off), ("net", &self.net_off)] {
                if let Some(why) = off {
                    report.skipped.push((name.to_owned(), why.clone()));
                }
            }
        }
        report
    }

    async fn nip11(&self, url: &RelayUrl) -> Option<Check<Nip11Data>> {
        let c = &self.cfg.checks.nip11;
        if !c.enabled {
            return None;
        }
        let (t, cap) = (self.timeout(c, url.network()), self.cfg.nip11_max_bytes);
        Some(retry(c, transient, || nip11::check(&self.http, url, cap, t)).await)
    }

    async fn rtt(
        &self,
        url: &RelayUrl,
        pow: impl Future<Output = u8> + Clone,
    ) -> Option<Check<RttData>> {
        let c = &self.cfg.checks.rtt;
        if !c.enabled {
            return None;
        }
        let (t, kind) = (self.timeout(c, url.network()), self.cfg.write_kind);
        // Retried only when the connection could not be opened: refusals are answers.
        let failed = |r: &Check<RttData>| r.data.rtt_open.is_none();
        let attempt = || rtt::check(&self.dialer, &self.keys, url, kind, pow.clone(), t);
        Some(retry(c, failed, attempt).await)
    }

    async fn nip77(&self, url: &RelayUrl) -> Option<Check<Nip77Data>> {
        let c = &self.cfg.checks.nip77;
        if !c.enabled {
            return None;
        }
        let t = self.timeout(c, url.network());
        Some(
            retry(c, transient, || {
                nip77::check(&self.dialer, &self.keys, url, t)
            })
            .await,
        )
    }

    async fn ssl(&self, url: &RelayUrl) -> Option<Check<SslData>> {
        let c = &self.cfg.checks.ssl;
        if !(c.enabled && url.network() == Network::Clearnet && url.is_tls()) {
            return None;
        }
        let t = c.timeout();
        Some(retry(c, transient, || self.ssl.check(&self.dialer, url, t)).await)
    }

    async fn http(&self, url: &RelayUrl) -> Option<Check<HttpData>> {
        let c = &self.cfg.checks.http;
        if !c.enabled {
            return None;
        }
        let t = self.timeout(c, url.network());
        Some(retry(c, transient, || http::check(&self.dialer, url, t)).await)
    }

    /// DNS, then geo and net on the addresses DNS found (one resolution, the same resolver).
    /// Clearnet only; an IP literal has no DNS records, but geo and net still run on it.
    async fn dns_geo_net(&self, url: &RelayUrl) -> DnsGeoNet {
        if url.network() != Network::Clearnet {
            return (None, None, None);
        }
        let c = &self.cfg.checks;
        let host = url.host();
        let is_ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok();
        let dns = if c.dns.enabled && !is_ip {
            let t = c.dns.timeout();
            Some(retry(&c.dns, transient, || dns::check(&self.resolver, host, t)).await)
        } else {
            None
        };
        if self.city.is_none() && self.asn.is_none() {
            return (dns, None, None);
        }
        let ips: Vec<IpAddr> = match &dns {
            Some(d) if d.success => d
                .data
                .dns_ips
                .iter()
                .chain(d.data.dns_ips_v6.iter())
                .filter_map(|s| s.parse().ok())
                .collect(),
            _ => {
                let t = c.geo.timeout().max(c.net.timeout());
                tokio::time::timeout(t, dns::addresses(&self.resolver, host))
                    .await
                    .unwrap_or_default()
            }
        };
        let precision = self.cfg.geoip.geohash_precision;
        let geo = self.city.as_ref().map(|db| geo::geo(db, &ips, precision));
        let netc = self.asn.as_ref().map(|db| geo::net(db, &ips));
        (dns, geo, netc)
    }
}

type DnsGeoNet = (
    Option<Check<DnsData>>,
    Option<Check<GeoData>>,
    Option<Check<NetData>>,
);

/// Retry predicate of most checks: failed, and not with a definite answer.
fn transient<T>(c: &Check<T>) -> bool {
    !c.success && c.transient
}

/// Runs `attempt` up to `1 + retries` times while `failed` says so; the delay doubles from
/// `retry_delay_secs` (capped at 10 s) with up to 25% jitter. Returns the last result.
pub async fn retry<T, F, Fut>(
    policy: &CheckConfig,
    failed: impl Fn(&Check<T>) -> bool,
    mut attempt: F,
) -> Check<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    let mut n = 0u32;
    loop {
        let mut result = attempt().await;
        n += 1;
        result.attempts = n;
        if !failed(&result) || n > policy.retries {
            return result;
        }
        let base = (policy.retry_delay_secs * 2f64.powi(n as i32 - 1)).min(10.0);
        let jitter = f64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() % 1000),
        ) / 4000.0;
        tokio::time::sleep(Duration::from_secs_f64(base * (1.0 + jitter))).await;
    }
}
