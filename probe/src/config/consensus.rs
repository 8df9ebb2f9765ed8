//! Consensus across monitors: how old a result may be to vote, and how long a third-party
//! monitor's track record remembers.

use garde::Validate;
use serde::{Deserialize, Serialize};

/// Consensus settings (`maintain consensus` and the api's verdicts).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsensusConfig {
    /// A monitor's latest result older than this many seconds does not vote (flagged stale).
    /// Longer than the monitors' recheck interval, or relays fall silent between rounds.
    #[garde(range(min = 60, max = 31_536_000))]
    pub max_age_secs: i64,
    /// A third-party monitor's track record covers its last this-many judged reports (older
    /// ones fade in proportion).
    #[garde(range(min = 1, max = 100_000_000))]
    pub track_window: u32,
    /// Publishing the verdicts as kind 30166 events of their own (off by default).
    #[garde(dive)]
    pub publish: ConsensusPublishConfig,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            max_age_secs: 12 * 3600,
            track_window: 10_000,
            publish: ConsensusPublishConfig::default(),
        }
    }
}

/// The consensus as a NIP-66 monitor of its own: one kind 30166 per relay the vantage points
/// agree is up, signed with the consensus key (not a monitor's: its 30166s would replace the
/// monitor's own), naming the monitors it rests on (`vantage` tags). Each event is also stored
/// in the archive, linked to the relays that accepted it, so the api's relay serves it.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsensusPublishConfig {
    /// Publish (needs a key and at least one relay).
    #[garde(skip)]
    pub enabled: bool,
    /// Relays the events go to.
    #[garde(length(max = 50), inner(pattern(r"^wss?://"), length(max = 2048)))]
    pub relays: Vec<String>,
    /// File holding the consensus key (hex or nsec), e.g. a mounted Secret.
    #[garde(length(min = 1, max = 4096))]
    pub key_file: Option<String>,
    /// Environment variable holding the key when `keyFile` is not set.
    #[garde(pattern(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"))]
    pub key_env: String,
    /// Seconds allowed to connect to a relay and get its OK.
    #[garde(range(min = 0.1, max = 120.0))]
    pub timeout_secs: f64,
}

impl Default for ConsensusPublishConfig {
    fn default() -> Self {
        ConsensusPublishConfig {
            enabled: false,
            relays: Vec::new(),
            key_file: None,
            key_env: "BROTR_CONSENSUS_KEY".into(),
            timeout_secs: 10.0,
        }
    }
}
