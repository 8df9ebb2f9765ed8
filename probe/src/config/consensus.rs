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
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            max_age_secs: 12 * 3600,
            track_window: 10_000,
        }
    }
}
