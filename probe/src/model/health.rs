//! Relay lifecycle: how often a promoted relay is re-checked, and when it goes dormant.
//!
//! A healthy relay is re-checked every `recheck_secs`. Each failed check in a row doubles the
//! wait (from `recheck_secs / 24`, capped at `max_backoff_secs`); after `dormant_after` failures
//! in a row the relay is dormant: services skip it until a re-check succeeds. Dead relays thus
//! stop costing every cycle without ever being forgotten.

use serde::{Deserialize, Serialize};

/// The lifecycle knobs (part of the validator's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecyclePolicy {
    pub recheck_secs: i64,
    pub max_backoff_secs: i64,
    pub dormant_after: u32,
}

/// What is known of a relay's reachability (kept in `service_state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayHealth {
    /// Failed checks in a row (0 after a success).
    pub failures: u32,
    /// Unix time of the last check.
    pub last_check: i64,
    /// Unix time the next check is due.
    pub next_check: i64,
}

impl RelayHealth {
    /// The state after a check at `now` that succeeded (`ok`) or failed.
    pub fn after_check(self, ok: bool, now: i64, p: &LifecyclePolicy) -> RelayHealth {
        if ok {
            return RelayHealth {
                failures: 0,
                last_check: now,
                next_check: now + p.recheck_secs,
            };
        }
        let failures = self.failures.saturating_add(1);
        let base = (p.recheck_secs / 24).max(60);
        let wait = base
            .saturating_mul(1i64 << (failures - 1).min(30))
            .min(p.max_backoff_secs);
        RelayHealth {
            failures,
            last_check: now,
            next_check: now + wait,
        }
    }

    pub fn is_dormant(&self, p: &LifecyclePolicy) -> bool {
        self.failures >= p.dormant_after
    }

    pub fn is_due(&self, now: i64) -> bool {
        self.next_check <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LifecyclePolicy = LifecyclePolicy {
        recheck_secs: 86_400,
        max_backoff_secs: 7 * 86_400,
        dormant_after: 3,
    };

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let mut h = RelayHealth::default();
        let mut waits = Vec::new();
        for i in 0..10 {
            let now = 1000 + i;
            h = h.after_check(false, now, &P);
            waits.push(h.next_check - now);
        }
        assert_eq!(&waits[..6], &[3600, 7200, 14_400, 28_800, 57_600, 115_200]);
        assert_eq!(waits[9], 7 * 86_400, "capped");
        assert_eq!(h.failures, 10);
    }

    #[test]
    fn dormant_after_the_threshold_and_revived_by_one_success() {
        let mut h = RelayHealth::default();
        for i in 0..3 {
            assert!(!h.is_dormant(&P), "after {i} failures");
            h = h.after_check(false, 0, &P);
        }
        assert!(h.is_dormant(&P));
        h = h.after_check(true, 50, &P);
        assert_eq!(
            h,
            RelayHealth {
                failures: 0,
                last_check: 50,
                next_check: 50 + 86_400
            }
        );
        assert!(!h.is_dormant(&P));
    }

    #[test]
    fn due_when_the_time_has_come() {
        let h = RelayHealth {
            failures: 0,
            last_check: 0,
            next_check: 100,
        };
        assert!(!h.is_due(99));
        assert!(h.is_due(100));
    }
}
