//! A relay URL waiting for the validator.

use serde::{Deserialize, Serialize};

use super::{Network, RelayUrl};

/// A candidate relay: found by the seeder or finder, not yet proven to speak Nostr.
///
/// Stored as the validator's checkpoint in `service_state`: `failures` counts failed
/// validation attempts, `timestamp` is the last attempt (or discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub url: RelayUrl,
    pub failures: u32,
    pub timestamp: i64,
}

/// The JSON value kept in `service_state.state_value` for a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateState {
    pub network: Network,
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub timestamp: i64,
}

impl Candidate {
    /// A fresh candidate discovered at `now`.
    pub fn new(url: RelayUrl, now: i64) -> Self {
        Candidate {
            url,
            failures: 0,
            timestamp: now,
        }
    }

    pub fn state(&self) -> CandidateState {
        CandidateState {
            network: self.url.network(),
            failures: self.failures,
            timestamp: self.timestamp,
        }
    }
}
