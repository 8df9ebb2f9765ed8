//! Monitor settings (the reference system's, with its weaknesses fixed: every check has its own
//! timeout and retry policy, and 30166 can be published only when the relay's data changed).
//!
//! Compiles without the `runtime` feature: the operator embeds these types in its CRDs.

use std::time::Duration;

use garde::Validate;
use serde::{Deserialize, Serialize};

/// One check's policy: whether it runs, how long one attempt may take, how often it is retried.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CheckConfig {
    #[garde(skip)]
    pub enabled: bool,
    /// Seconds one attempt may take (overlay relays get at least their network's timeout).
    #[garde(range(min = 0.1, max = 120.0))]
    pub timeout_secs: f64,
    /// Extra attempts after a failed one (0 = try once).
    #[garde(range(max = 10))]
    pub retries: u32,
    /// Seconds before the first retry; doubles per retry, capped at 10 s, plus up to 25% jitter.
    #[garde(range(min = 0.0, max = 60.0))]
    pub retry_delay_secs: f64,
}

impl CheckConfig {
    fn new(timeout_secs: f64, retries: u32) -> Self {
        CheckConfig {
            enabled: true,
            timeout_secs,
            retries,
            retry_delay_secs: 1.0,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.clamp(0.05, 600.0))
    }

    /// Whole milliseconds of the timeout (the 10166 `timeout` tag value).
    pub fn timeout_ms(&self) -> u64 {
        self.timeout().as_millis() as u64
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig::new(10.0, 0)
    }
}

/// Every check the monitor runs, each with its own policy.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ChecksConfig {
    /// NIP-11 relay information document.
    #[garde(dive)]
    pub nip11: CheckConfig,
    /// WebSocket open / REQ read / EVENT write round trips, and whether read or write need AUTH.
    #[garde(dive)]
    pub rtt: CheckConfig,
    /// Does NEG-OPEN (NIP-77) get a NEG-MSG back?
    #[garde(dive)]
    pub nip77: CheckConfig,
    /// TLS certificate and session (clearnet `wss://` only).
    #[garde(dive)]
    pub ssl: CheckConfig,
    /// A, AAAA, CNAME, NS, PTR records (clearnet only).
    #[garde(dive)]
    pub dns: CheckConfig,
    /// Location from the GeoLite2 City database (clearnet only).
    #[garde(dive)]
    pub geo: CheckConfig,
    /// Autonomous system from the GeoLite2 ASN database (clearnet only).
    #[garde(dive)]
    pub net: CheckConfig,
    /// `Server` / `X-Powered-By` of the WebSocket handshake response.
    #[garde(dive)]
    pub http: CheckConfig,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        // Retries follow the reference system's shipped configuration; timeouts are per check
        // (nostr.watch's defaults are of the same order).
        ChecksConfig {
            nip11: CheckConfig::new(10.0, 2),
            rtt: CheckConfig::new(10.0, 2),
            nip77: CheckConfig::new(10.0, 1),
            ssl: CheckConfig::new(5.0, 2),
            dns: CheckConfig::new(5.0, 2),
            geo: CheckConfig::new(5.0, 1),
            net: CheckConfig::new(5.0, 1),
            http: CheckConfig::new(10.0, 2),
        }
    }
}

/// GeoLite2 database files. A missing file skips its check with a warning.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GeoIpConfig {
    /// Path of `GeoLite2-City.mmdb`.
    #[garde(length(min = 1, max = 4096))]
    pub city_db: Option<String>,
    /// Path of `GeoLite2-ASN.mmdb`.
    #[garde(length(min = 1, max = 4096))]
    pub asn_db: Option<String>,
    /// Characters of the published geohash (1-12; 9 ≈ 5 m).
    #[garde(range(min = 1, max = 12))]
    pub geohash_precision: u8,
}

impl Default for GeoIpConfig {
    fn default() -> Self {
        GeoIpConfig {
            city_db: Some("/var/lib/brotr/GeoLite2-City.mmdb".to_owned()),
            asn_db: Some("/var/lib/brotr/GeoLite2-ASN.mmdb".to_owned()),
            geohash_precision: 9,
        }
    }
}

/// One replaceable event published on its own interval (kind 10166, 0 or 10002).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PeriodicEventConfig {
    #[garde(skip)]
    pub enabled: bool,
    /// Seconds between two publications.
    #[garde(range(min = 60, max = 31_536_000))]
    pub interval_secs: i64,
}

impl Default for PeriodicEventConfig {
    fn default() -> Self {
        PeriodicEventConfig {
            enabled: true,
            interval_secs: 86_400,
        }
    }
}

/// The monitor's kind 0 profile (empty fields are left out).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileConfig {
    #[garde(skip)]
    pub enabled: bool,
    #[garde(range(min = 60, max = 31_536_000))]
    pub interval_secs: i64,
    #[garde(length(max = 256))]
    pub name: String,
    #[garde(length(max = 4096))]
    pub about: String,
    #[garde(length(max = 2048))]
    pub picture: String,
    #[garde(length(max = 256))]
    pub nip05: String,
    #[garde(length(max = 2048))]
    pub website: String,
    #[garde(length(max = 2048))]
    pub banner: String,
    #[garde(length(max = 256))]
    pub lud16: String,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            enabled: true,
            interval_secs: 86_400,
            name: "Brotr Monitor".to_owned(),
            about: "Nostr relay monitoring service (NIP-66)".to_owned(),
            picture: String::new(),
            nip05: String::new(),
            website: String::new(),
            banner: String::new(),
            lud16: String::new(),
        }
    }
}

/// When a checked relay's kind 30166 is published.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoveryConfig {
    #[garde(skip)]
    pub enabled: bool,
    /// Publish only when the event's tags or content differ from the last one published for
    /// that relay (RTT values are rounded so jitter does not count as a change)...
    #[garde(skip)]
    pub only_on_change: bool,
    /// ...or when the last one is older than this many seconds (keeps relays' copies fresh).
    #[garde(range(min = 60, max = 31_536_000))]
    pub max_age_secs: i64,
    /// Never publish a relay's 30166 more often than this many seconds, changed or not
    /// (0 = no limit).
    #[garde(range(min = 0, max = 31_536_000))]
    pub min_interval_secs: i64,
    /// Also publish the reference system's non-standard tags (`ssl`, `ssl-*`, `geo-*`,
    /// `net-*`, `dns-*`, `http-*`) for consumers that read them.
    #[garde(skip)]
    pub extra_tags: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: true,
            only_on_change: false,
            max_age_secs: 86_400,
            min_interval_secs: 0,
            extra_tags: false,
        }
    }
}

/// Where and what the monitor publishes. The key is read from `keyFile` or the environment
/// variable named by `keyEnv` (hex or `nsec`); it is never logged. Without a key, nothing is
/// published and the checks still run and are stored.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PublishConfig {
    /// Relays the events go to; a publication succeeds if at least one answers OK true.
    #[garde(length(max = 50), inner(pattern(r"^wss?://"), length(max = 2048)))]
    pub relays: Vec<String>,
    /// File holding the monitor's secret key (hex or nsec), e.g. a mounted Secret.
    #[garde(length(min = 1, max = 4096))]
    pub key_file: Option<String>,
    /// Environment variable holding the secret key when `keyFile` is not set.
    #[garde(pattern(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"))]
    pub key_env: String,
    /// Seconds allowed to connect to a publishing relay and get its OK.
    #[garde(range(min = 0.1, max = 120.0))]
    pub timeout_secs: f64,
    /// Kind 30166 per checked relay.
    #[garde(dive)]
    pub discovery: DiscoveryConfig,
    /// Kind 10166 monitor announcement.
    #[garde(dive)]
    pub announcement: PeriodicEventConfig,
    /// Optional geohash of the monitor's vantage point (10166 `g`).
    #[garde(pattern(r"^[0-9bcdefghjkmnpqrstuvwxyz]{1,12}$"))]
    pub geohash: Option<String>,
    /// Kind 0 profile.
    #[garde(dive)]
    pub profile: ProfileConfig,
    /// Kind 10002 relay list (the publishing relays, marked `write`).
    #[garde(dive)]
    pub relay_list: PeriodicEventConfig,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            relays: [
                "wss://relay.mostr.pub",
                "wss://relay.damus.io",
                "wss://nos.lol",
                "wss://relay.primal.net",
            ]
            .map(str::to_owned)
            .to_vec(),
            key_file: None,
            key_env: "BROTR_MONITOR_KEY".to_owned(),
            timeout_secs: 10.0,
            discovery: DiscoveryConfig::default(),
            announcement: PeriodicEventConfig::default(),
            geohash: None,
            profile: ProfileConfig::default(),
            relay_list: PeriodicEventConfig::default(),
        }
    }
}

/// Monitor settings.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MonitorConfig {
    /// Seconds from the start of one cycle to the start of the next.
    #[garde(range(min = 1, max = 604_800))]
    pub interval_secs: u64,
    /// Exit (code 1) after this many failed cycles in a row; 0 = never.
    #[garde(range(max = 1000))]
    pub max_consecutive_failures: u32,
    /// A relay is checked again this many seconds after its last check (the reference system: 4 h).
    #[garde(range(min = 0, max = 31_536_000))]
    pub recheck_secs: i64,
    /// Relays checked together and stored in one write.
    #[garde(range(min = 1, max = 10_000))]
    pub chunk_size: u32,
    /// At most this many relays per cycle (`None`: all that are due).
    #[garde(range(min = 1))]
    pub max_relays: Option<u64>,
    /// Largest NIP-11 document accepted, in bytes.
    #[garde(range(min = 1024, max = 10_485_760))]
    pub nip11_max_bytes: usize,
    /// Kind of the RTT write probe event (ephemeral by default: relays need not store it).
    #[garde(skip)]
    pub write_kind: u16,
    /// DNS server (`ip:port`) for the DNS, geo and net checks; default: the system resolver.
    #[garde(pattern(r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+):[0-9]{1,5}$"))]
    pub dns_server: Option<String>,
    #[garde(dive)]
    pub checks: ChecksConfig,
    #[garde(dive)]
    pub geoip: GeoIpConfig,
    #[garde(dive)]
    pub publish: PublishConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval_secs: 300,
            max_consecutive_failures: 5,
            recheck_secs: 14_400,
            chunk_size: 100,
            max_relays: None,
            nip11_max_bytes: 1 << 20,
            write_kind: 22_456,
            dns_server: None,
            checks: ChecksConfig::default(),
            geoip: GeoIpConfig::default(),
            publish: PublishConfig::default(),
        }
    }
}

impl MonitorConfig {
    pub fn schedule(&self) -> super::Schedule {
        super::Schedule {
            interval_secs: self.interval_secs,
            max_consecutive_failures: self.max_consecutive_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: &MonitorConfig) -> Result<(), String> {
        super::super::ProbeConfig {
            monitor: c.clone(),
            ..Default::default()
        }
        .check()
    }

    #[test]
    fn defaults_are_valid_and_every_check_has_its_own_timeout() {
        let cfg = MonitorConfig::default();
        check(&cfg).unwrap();
        assert_eq!(cfg.checks.ssl.timeout_ms(), 5000);
        assert_eq!(cfg.checks.rtt.timeout_ms(), 10_000);
        assert_eq!(cfg.recheck_secs, 14_400);
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut cfg = MonitorConfig::default();
        cfg.checks.dns.timeout_secs = 0.0;
        assert!(
            check(&cfg)
                .unwrap_err()
                .contains("monitor.checks.dns.timeoutSecs")
        );
        let mut cfg = MonitorConfig::default();
        cfg.geoip.geohash_precision = 13;
        assert!(check(&cfg).unwrap_err().contains("geohashPrecision"));
        let mut cfg = MonitorConfig::default();
        cfg.publish.geohash = Some("abc!".into());
        assert!(check(&cfg).unwrap_err().contains("publish.geohash"));
    }

    #[test]
    fn a_partial_section_keeps_the_other_defaults() {
        let cfg: MonitorConfig =
            serde_yaml_ng::from_str("checks:\n  ssl:\n    timeoutSecs: 2\n").unwrap();
        assert_eq!(cfg.checks.ssl.timeout_secs, 2.0);
        assert_eq!(
            cfg.checks.ssl.retries, 0,
            "a given check section starts from CheckConfig defaults"
        );
        assert_eq!(cfg.checks.dns, ChecksConfig::default().dns);
    }
}
