//! Probe configuration shared by every service (and, later, rendered by the operator).
//!
//! Defaults follow the reference system (spec §6.3) unless noted.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Network;

/// How to reach relays on one network.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
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
    fn unknown_keys_are_rejected_by_name() {
        let err = serde_json::from_str::<NetworkConfig>(
            r#"{"enabled":true,"maxTasks":1,"timeoutSecs":1,"proxy":"x"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `proxy`"), "{err}");
    }
}
