//! The network a relay lives on, which decides how it is dialed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a relay lives. Overlays (`tor`, `i2p`, `loki`) are reached through a SOCKS5 proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Clearnet,
    Tor,
    I2p,
    Loki,
}

impl Network {
    /// All networks, in a stable order.
    pub const ALL: [Network; 4] = [Network::Clearnet, Network::Tor, Network::I2p, Network::Loki];

    /// The name stored in the database and used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Clearnet => "clearnet",
            Network::Tor => "tor",
            Network::I2p => "i2p",
            Network::Loki => "loki",
        }
    }

    /// Overlay networks need a proxy; clearnet is dialed directly.
    pub fn is_overlay(self) -> bool {
        self != Network::Clearnet
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A network name that is none of `clearnet`, `tor`, `i2p`, `loki`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?} (expected clearnet, tor, i2p or loki)")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Network::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| UnknownNetwork(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in Network::ALL {
            assert_eq!(n.as_str().parse::<Network>(), Ok(n));
            assert_eq!(serde_json::to_string(&n).unwrap(), format!("\"{n}\""));
        }
    }

    #[test]
    fn rejects_unknown_name() {
        let err = "onion".parse::<Network>().unwrap_err();
        assert!(err.to_string().contains("\"onion\""));
    }
}
