//! Probe configuration shared by every service (and, later, rendered by the operator).
//!
//! Defaults follow the reference system (spec §6.3) unless noted.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Network;

pub mod monitor;
pub mod sync;

pub use monitor::{CheckConfig, ChecksConfig, MonitorConfig};
pub use sync::{RelayOverride, Shard, SyncConfig};

/// How to reach relays on one network.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkConfig {
    /// Whether relays on this network are contacted at all.
    pub enabled: bool,
    /// SOCKS5 proxy (`socks5://host:port`; names are resolved by the proxy). Required for
    /// overlays, ignored for clearnet.
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Connections at once on this network.
    pub max_tasks: usize,
    /// Seconds allowed for connecting (TCP or proxy, TLS, WebSocket handshake) and for the first
    /// answer.
    pub timeout_secs: f64,
}

impl NetworkConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.clamp(0.05, 600.0))
    }
}

/// Per-network settings.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworksConfig {
    pub clearnet: NetworkConfig,
    pub tor: NetworkConfig,
    pub i2p: NetworkConfig,
    pub loki: NetworkConfig,
}

impl Default for NetworksConfig {
    fn default() -> Self {
        let net = |enabled, proxy: Option<&str>, max_tasks, timeout_secs| NetworkConfig {
            enabled,
            proxy_url: proxy.map(str::to_owned),
            max_tasks,
            timeout_secs,
        };
        NetworksConfig {
            clearnet: net(true, None, 30, 10.0),
            tor: net(false, Some("socks5://tor:9050"), 10, 30.0),
            i2p: net(false, Some("socks5://i2p:4447"), 5, 45.0),
            loki: net(false, Some("socks5://lokinet:1080"), 5, 30.0),
        }
    }
}

impl NetworksConfig {
    pub fn get(&self, network: Network) -> &NetworkConfig {
        match network {
            Network::Clearnet => &self.clearnet,
            Network::Tor => &self.tor,
            Network::I2p => &self.i2p,
            Network::Loki => &self.loki,
        }
    }

    pub fn get_mut(&mut self, network: Network) -> &mut NetworkConfig {
        match network {
            Network::Clearnet => &mut self.clearnet,
            Network::Tor => &mut self.tor,
            Network::I2p => &mut self.i2p,
            Network::Loki => &mut self.loki,
        }
    }

    /// Networks with `enabled: true`.
    pub fn enabled(&self) -> Vec<Network> {
        Network::ALL
            .into_iter()
            .filter(|n| self.get(*n).enabled)
            .collect()
    }
}

/// Hard limits on what is read from a relay.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Largest WebSocket message accepted, in bytes; larger frames end the connection.
    pub max_message_bytes: usize,
    /// Connections to loopback/private/reserved addresses are refused unless this is set
    /// (tests and private deployments only): the SSRF guard.
    pub allow_private: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 1 << 20,
            allow_private: false,
        }
    }
}

/// Validator settings (defaults from the reference system, spec §6).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ValidatorConfig {
    /// Seconds from the start of one cycle to the start of the next.
    pub interval_secs: u64,
    /// Exit (code 1) after this many failed cycles in a row; 0 = never.
    pub max_consecutive_failures: u32,
    /// Candidates fetched and validated together.
    pub chunk_size: u32,
    /// At most this many candidates per cycle (`None`: all that are due).
    pub max_candidates: Option<u64>,
    /// A failed candidate is retried after this many seconds.
    pub retry_after_secs: i64,
    /// Candidates failing this many times are dropped (720 ≈ a month of hourly attempts).
    pub max_failures: u32,
    /// Promoted relays are re-checked this often while healthy (seconds).
    pub recheck_secs: i64,
    /// Longest wait between checks of a failing relay (seconds).
    pub max_backoff_secs: i64,
    /// Failed re-checks in a row after which a relay is dormant (skipped by services).
    pub dormant_after: u32,
}

impl ValidatorConfig {
    pub fn lifecycle(&self) -> crate::model::LifecyclePolicy {
        crate::model::LifecyclePolicy {
            recheck_secs: self.recheck_secs,
            max_backoff_secs: self.max_backoff_secs,
            dormant_after: self.dormant_after,
        }
    }
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            interval_secs: 300,
            max_consecutive_failures: 5,
            chunk_size: 100,
            max_candidates: None,
            retry_after_secs: 3600,
            max_failures: 720,
            recheck_secs: 86_400,
            max_backoff_secs: 7 * 86_400,
            dormant_after: 3,
        }
    }
}

/// One external API listing relay URLs.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiSource {
    /// `https://…` (or `http://…`) returning JSON.
    #[cfg_attr(
        feature = "schemars",
        schemars(regex(pattern = r"^https?://"), length(max = 2048))
    )]
    pub url: String,
    /// JMESPath selecting a list of URL strings from the response (e.g. `[*]`, `[*].url`,
    /// `data.relays`). Also accepted as `expression` (the reference system's name).
    #[serde(alias = "expression")]
    #[cfg_attr(feature = "schemars", schemars(length(min = 1, max = 256)))]
    pub select: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Finder settings (defaults from the reference system, spec §5).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FinderConfig {
    /// Seconds from the start of one cycle to the start of the next.
    pub interval_secs: u64,
    /// Exit (code 1) after this many failed cycles in a row; 0 = never.
    pub max_consecutive_failures: u32,
    /// A source fetched successfully is not fetched again for this many seconds.
    pub cooldown_secs: i64,
    /// Largest response accepted from a source, in bytes.
    pub max_response_bytes: usize,
    /// Seconds allowed for one source request (connect, redirects, body).
    pub timeout_secs: f64,
    pub sources: Vec<ApiSource>,
}

impl Default for FinderConfig {
    fn default() -> Self {
        let src = |url: &str| ApiSource {
            url: url.to_owned(),
            select: "[*]".to_owned(),
            enabled: true,
        };
        FinderConfig {
            interval_secs: 300,
            max_consecutive_failures: 5,
            cooldown_secs: 86_400,
            max_response_bytes: 5 << 20,
            timeout_secs: 30.0,
            sources: vec![
                src("https://api.nostr.watch/v1/online"),
                src("https://api.nostr.watch/v1/offline"),
            ],
        }
    }
}

/// The whole probe configuration (`--config FILE`, YAML or JSON). Every key is optional;
/// unknown keys are errors naming the key.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ProbeConfig {
    pub networks: NetworksConfig,
    pub limits: LimitsConfig,
    pub validator: ValidatorConfig,
    pub finder: FinderConfig,
    pub monitor: MonitorConfig,
    pub sync: SyncConfig,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("bad config {source_name}: {reason}")]
pub struct ConfigError {
    pub source_name: String,
    pub reason: String,
}

impl ProbeConfig {
    /// Parses YAML (or JSON) text; `source_name` names it in errors.
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Self, ConfigError> {
        let cfg: ProbeConfig = serde_yaml_ng::from_str(text).map_err(|e| ConfigError {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
        cfg.validate().map_err(|reason| ConfigError {
            source_name: source_name.to_owned(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Range checks that serde cannot express; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        for n in Network::ALL {
            let c = self.networks.get(n);
            if !(1..=200).contains(&c.max_tasks) {
                return Err(format!(
                    "networks.{n}.maxTasks must be 1..=200, got {}",
                    c.max_tasks
                ));
            }
            if !(c.timeout_secs >= 0.1 && c.timeout_secs <= 120.0) {
                return Err(format!(
                    "networks.{n}.timeoutSecs must be 0.1..=120, got {}",
                    c.timeout_secs
                ));
            }
        }
        self.sync.check()?;
        let v = &self.validator;
        if !(1..=604_800).contains(&v.interval_secs) {
            return Err(format!(
                "validator.intervalSecs must be 1..=604800, got {}",
                v.interval_secs
            ));
        }
        if !(1..=10_000).contains(&v.chunk_size) {
            return Err(format!(
                "validator.chunkSize must be 1..=10000, got {}",
                v.chunk_size
            ));
        }
        if v.recheck_secs < 60 || v.max_backoff_secs < 60 {
            return Err(format!(
                "validator.recheckSecs and maxBackoffSecs must be ≥ 60, got {} and {}",
                v.recheck_secs, v.max_backoff_secs
            ));
        }
        if v.dormant_after == 0 {
            return Err("validator.dormantAfter must be ≥ 1, got 0".to_owned());
        }
        if v.retry_after_secs < 0 {
            return Err(format!(
                "validator.retryAfterSecs must be ≥ 0, got {}",
                v.retry_after_secs
            ));
        }
        let f = &self.finder;
        if !(1024..=(50 << 20)).contains(&f.max_response_bytes) {
            return Err(format!(
                "finder.maxResponseBytes must be 1024..=52428800, got {}",
                f.max_response_bytes
            ));
        }
        if !(f.timeout_secs >= 0.1 && f.timeout_secs <= 120.0) {
            return Err(format!(
                "finder.timeoutSecs must be 0.1..=120, got {}",
                f.timeout_secs
            ));
        }
        if !(1..=604_800).contains(&f.interval_secs) {
            return Err(format!(
                "finder.intervalSecs must be 1..=604800, got {}",
                f.interval_secs
            ));
        }
        for (i, src) in f.sources.iter().enumerate() {
            if !(src.url.starts_with("https://") || src.url.starts_with("http://")) {
                return Err(format!(
                    "finder.sources[{i}].url must be http(s)://, got {:?}",
                    src.url
                ));
            }
        }
        self.monitor.validate()?;
        if self.limits.max_message_bytes < 1024 {
            return Err(format!(
                "limits.maxMessageBytes must be ≥ 1024, got {}",
                self.limits.max_message_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_system() {
        let n = NetworksConfig::default();
        assert_eq!(n.enabled(), vec![Network::Clearnet]);
        assert_eq!((n.clearnet.max_tasks, n.clearnet.timeout_secs), (30, 10.0));
        assert_eq!(n.tor.proxy_url.as_deref(), Some("socks5://tor:9050"));
        assert_eq!((n.i2p.max_tasks, n.i2p.timeout_secs), (5, 45.0));
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let cfg = ProbeConfig::from_yaml(
            "t.yaml",
            "validator:\n  chunkSize: 7\nlimits:\n  allowPrivate: true\n",
        )
        .unwrap();
        assert_eq!(cfg.validator.chunk_size, 7);
        assert_eq!(cfg.validator.max_failures, 720);
        assert!(cfg.limits.allow_private);
        assert_eq!(cfg.networks, NetworksConfig::default());
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        let cases = [
            ("validator:\n  chunkSiz: 7\n", "unknown field `chunkSiz`"),
            (
                "validator:\n  chunkSize: 0\n",
                "validator.chunkSize must be 1..=10000, got 0",
            ),
            (
                "networks:\n  tor:\n    enabled: true\n    maxTasks: 0\n    timeoutSecs: 30\n",
                "networks.tor.maxTasks",
            ),
            ("- a list\n", "invalid type"),
        ];
        for (text, want) in cases {
            let err = ProbeConfig::from_yaml("bad.yaml", text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("bad config bad.yaml: "), "{err}");
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = serde_json::from_str::<NetworkConfig>(
            r#"{"enabled":true,"maxTasks":1,"timeoutSecs":1,"proxy":"x"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `proxy`"), "{err}");
    }
}
