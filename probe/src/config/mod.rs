//! Probe configuration: one typed definition of every setting, shared with the operator.
//!
//! Every bound is declared once, as a `#[garde(...)]` attribute on the field. The runtime check
//! ([`ProbeConfig::from_yaml`] → `garde::Validate`) and the JSON schema (schemars reads the same
//! attributes; the operator's CRDs embed these types) are both derived from it, so the API server
//! cannot accept a value the probe rejects. Checks a schema cannot express (a filter that parses
//! as NIP-01, a shard `i/n`) are `custom` rules; they run in the probe only.
//!
//! Defaults follow the reference system unless noted.

use std::time::Duration;

use garde::Validate;
use serde::{Deserialize, Serialize};

use crate::model::Network;

pub mod api;
pub mod consensus;
pub mod maintain;
pub mod monitor;
pub mod sync;

pub use api::ApiConfig;
pub use consensus::ConsensusConfig;
pub use maintain::MaintainConfig;
pub use monitor::{CheckConfig, ChecksConfig, MonitorConfig};
pub use sync::{RelayOverride, Shard, SyncConfig};

/// How to reach relays on one network, as written in the config: every key is optional and
/// falls back to that network's default ([`NetworksConfig::get`]), so a file (or a CRD) says only
/// what it changes and no default is frozen into it.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkConfig {
    /// Whether relays on this network are contacted at all (default: clearnet only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub enabled: Option<bool>,
    /// SOCKS5 proxy (`socks5://host:port`; names are resolved by the proxy). Required for an
    /// enabled overlay (tor, i2p, loki), ignored for clearnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[garde(pattern(r"^socks5h?://[^/@]+$"))]
    pub proxy_url: Option<String>,
    /// Connections at once on this network (default: clearnet 30, tor 10, i2p and loki 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 1, max = 200))]
    pub max_tasks: Option<usize>,
    /// Seconds allowed for connecting (TCP or proxy, TLS, WebSocket handshake) and for the first
    /// answer (default: clearnet 10, tor 30, i2p 45, loki 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 0.1, max = 120.0))]
    pub timeout_secs: Option<f64>,
}

/// One network's settings with its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSettings {
    pub enabled: bool,
    pub proxy_url: Option<String>,
    pub max_tasks: usize,
    pub timeout_secs: f64,
}

impl NetworkSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.clamp(0.05, 600.0))
    }
}

/// Per-network settings.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct NetworksConfig {
    #[garde(dive)]
    pub clearnet: NetworkConfig,
    #[garde(dive, custom(overlay_proxy))]
    pub tor: NetworkConfig,
    #[garde(dive, custom(overlay_proxy))]
    pub i2p: NetworkConfig,
    #[garde(dive, custom(overlay_proxy))]
    pub loki: NetworkConfig,
}

/// An enabled overlay has nowhere to send its connections without a proxy.
fn overlay_proxy(net: &NetworkConfig, _: &()) -> garde::Result {
    if net.enabled == Some(true) && net.proxy_url.is_none() {
        return Err(garde::Error::new(
            "proxyUrl is required when the network is enabled (e.g. socks5://127.0.0.1:9050)",
        ));
    }
    Ok(())
}

impl NetworksConfig {
    /// `network`'s settings, defaults filled in.
    pub fn get(&self, network: Network) -> NetworkSettings {
        let (cfg, enabled, max_tasks, timeout_secs) = match network {
            Network::Clearnet => (&self.clearnet, true, 30, 10.0),
            Network::Tor => (&self.tor, false, 10, 30.0),
            Network::I2p => (&self.i2p, false, 5, 45.0),
            Network::Loki => (&self.loki, false, 5, 30.0),
        };
        NetworkSettings {
            enabled: cfg.enabled.unwrap_or(enabled),
            proxy_url: cfg.proxy_url.clone(),
            max_tasks: cfg.max_tasks.unwrap_or(max_tasks),
            timeout_secs: cfg.timeout_secs.unwrap_or(timeout_secs),
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

    /// Networks that are enabled.
    pub fn enabled(&self) -> Vec<Network> {
        Network::ALL
            .into_iter()
            .filter(|n| self.get(*n).enabled)
            .collect()
    }

    /// Enables `network` through `proxy_url` (tests, benches and the operator's Tor sidecar).
    pub fn enable_overlay(&mut self, network: Network, proxy_url: impl Into<String>) {
        let net = self.get_mut(network);
        net.enabled = Some(true);
        net.proxy_url = Some(proxy_url.into());
    }
}

/// Hard limits on what is read from a relay.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Largest WebSocket message accepted, in bytes; larger frames end the connection.
    #[garde(range(min = 1024, max = 67_108_864))]
    pub max_message_bytes: usize,
    /// Connections to loopback/private/reserved addresses are refused unless this is set
    /// (tests and private deployments only): the SSRF guard.
    #[garde(skip)]
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

/// When a long-running service runs its cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Seconds from the start of one cycle to the start of the next.
    pub interval_secs: u64,
    /// Stop (exit code 1) after this many failed cycles in a row; 0 = never.
    pub max_consecutive_failures: u32,
}

/// Validator settings (defaults from the reference system).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ValidatorConfig {
    /// Seconds from the start of one cycle to the start of the next.
    #[garde(range(min = 1, max = 604_800))]
    pub interval_secs: u64,
    /// Exit (code 1) after this many failed cycles in a row; 0 = never.
    #[garde(range(max = 1000))]
    pub max_consecutive_failures: u32,
    /// Candidates fetched and validated together.
    #[garde(range(min = 1, max = 10_000))]
    pub chunk_size: u32,
    /// At most this many candidates per cycle (`None`: all that are due).
    #[garde(range(min = 1))]
    pub max_candidates: Option<u64>,
    /// A failed candidate is retried after this many seconds.
    #[garde(range(min = 0, max = 31_536_000))]
    pub retry_after_secs: i64,
    /// Candidates failing this many times are dropped (720 ≈ a month of hourly attempts).
    #[garde(range(min = 1, max = 100_000))]
    pub max_failures: u32,
    /// Promoted relays are re-checked this often while healthy (seconds).
    #[garde(range(min = 60, max = 31_536_000))]
    pub recheck_secs: i64,
    /// Longest wait between checks of a failing relay (seconds).
    #[garde(range(min = 60, max = 31_536_000))]
    pub max_backoff_secs: i64,
    /// Failed re-checks in a row after which a relay is dormant (skipped by services).
    #[garde(range(min = 1, max = 1000))]
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

    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval_secs: self.interval_secs,
            max_consecutive_failures: self.max_consecutive_failures,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiSource {
    /// `https://…` (or `http://…`) returning JSON.
    #[garde(pattern(r"^https?://"), length(max = 2048))]
    pub url: String,
    /// JMESPath selecting a list of URL strings from the response (e.g. `[*]`, `[*].url`,
    /// `data.relays`). Also accepted as `expression` (the reference system's name).
    #[serde(alias = "expression")]
    #[garde(length(min = 1, max = 256))]
    pub select: String,
    #[serde(default = "yes")]
    #[garde(skip)]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Finder settings (defaults from the reference system).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FinderConfig {
    /// Seconds from the start of one cycle to the start of the next.
    #[garde(range(min = 1, max = 604_800))]
    pub interval_secs: u64,
    /// Exit (code 1) after this many failed cycles in a row; 0 = never.
    #[garde(range(max = 1000))]
    pub max_consecutive_failures: u32,
    /// A source fetched successfully is not fetched again for this many seconds.
    #[garde(range(min = 0, max = 31_536_000))]
    pub cooldown_secs: i64,
    /// Largest response accepted from a source, in bytes.
    #[garde(range(min = 1024, max = 52_428_800))]
    pub max_response_bytes: usize,
    /// Seconds allowed for one source request (connect, redirects, body).
    #[garde(range(min = 0.1, max = 120.0))]
    pub timeout_secs: f64,
    #[garde(length(max = 100), dive)]
    pub sources: Vec<ApiSource>,
}

impl FinderConfig {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval_secs: self.interval_secs,
            max_consecutive_failures: self.max_consecutive_failures,
        }
    }
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ProbeConfig {
    #[garde(dive)]
    pub networks: NetworksConfig,
    #[garde(dive)]
    pub limits: LimitsConfig,
    #[garde(dive)]
    pub validator: ValidatorConfig,
    #[garde(dive)]
    pub finder: FinderConfig,
    #[garde(dive)]
    pub monitor: MonitorConfig,
    #[garde(dive)]
    pub sync: SyncConfig,
    #[garde(dive)]
    pub maintain: MaintainConfig,
    #[garde(dive)]
    pub api: ApiConfig,
    #[garde(dive)]
    pub consensus: ConsensusConfig,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("bad config {source_name}: {reason}")]
pub struct ConfigError {
    pub source_name: String,
    pub reason: String,
}

impl ProbeConfig {
    /// Parses YAML (or JSON) text and checks every bound; `source_name` names it in errors.
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Self, ConfigError> {
        let cfg: ProbeConfig = serde_yaml_ng::from_str(text).map_err(|e| ConfigError {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
        cfg.check().map_err(|reason| ConfigError {
            source_name: source_name.to_owned(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Every bound and rule of every section; the error names the keys as written in the file
    /// (`networks.tor.maxTasks`).
    pub fn check(&self) -> Result<(), String> {
        self.validate().map_err(|r| report_to_string(&r))
    }
}

/// A garde report with camelCase paths (the keys users write), one problem per line.
pub fn report_to_string(report: &garde::Report) -> String {
    report
        .iter()
        .map(|(path, error)| {
            let (path, msg) = (camel_path(&path.to_string()), error.to_string());
            // A custom rule naming an element (`[0] sets "limit"`) continues the path.
            if msg.starts_with('[') {
                format!("{path}{msg}")
            } else {
                format!("{path}: {msg}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `sync.overrides[0].max_event_bytes` → `sync.overrides[0].maxEventBytes`: every section is
/// `rename_all = "camelCase"`, so the Rust path maps to the file's key mechanically.
fn camel_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_system_and_pass_every_check() {
        let n = NetworksConfig::default();
        assert_eq!(n.enabled(), vec![Network::Clearnet]);
        let c = n.get(Network::Clearnet);
        assert_eq!((c.max_tasks, c.timeout_secs), (30, 10.0));
        assert_eq!(n.get(Network::Tor).proxy_url, None);
        let i = n.get(Network::I2p);
        assert_eq!((i.max_tasks, i.timeout_secs), (5, 45.0));
        ProbeConfig::default().check().unwrap();
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
        let cfg = ProbeConfig::from_yaml(
            "t.yaml",
            "networks:\n  tor:\n    enabled: true\n    proxyUrl: socks5h://127.0.0.1:9050\n",
        )
        .unwrap();
        let tor = cfg.networks.get(Network::Tor);
        assert!(tor.enabled && tor.max_tasks == 10 && tor.timeout_secs == 30.0);
        // Only what was written is written back.
        assert_eq!(
            serde_json::to_value(&cfg.networks.tor).unwrap(),
            serde_json::json!({"enabled": true, "proxyUrl": "socks5h://127.0.0.1:9050"})
        );
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        let cases = [
            ("validator:\n  chunkSiz: 7\n", "unknown field `chunkSiz`"),
            (
                "validator:\n  chunkSize: 0\n",
                "validator.chunkSize: lower than 1",
            ),
            (
                "networks:\n  tor:\n    enabled: true\n    maxTasks: 0\n    timeoutSecs: 30\n",
                "networks.tor.maxTasks",
            ),
            (
                "networks:\n  tor:\n    enabled: true\n    maxTasks: 1\n    timeoutSecs: 30\n    proxyUrl: http://x\n",
                "networks.tor.proxyUrl",
            ),
            (
                "networks:\n  i2p:\n    enabled: true\n",
                "networks.i2p: proxyUrl is required when the network is enabled",
            ),
            (
                "finder:\n  sources: [{url: 'ftp://x', select: '[*]'}]\n",
                "finder.sources[0].url",
            ),
            (
                "api:\n  trustedProxies: ['10.0.0.0/8', ingress-nginx]\n",
                "api.trustedProxies[1] \"ingress-nginx\" is neither an IP address nor a CIDR",
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

    #[test]
    fn rust_paths_become_file_keys() {
        assert_eq!(
            camel_path("sync.overrides[0].max_event_bytes"),
            "sync.overrides[0].maxEventBytes"
        );
        assert_eq!(camel_path("limits"), "limits");
    }
}
