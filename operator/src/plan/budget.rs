//! The connection budget of a pipeline's database: how many server connections each pod that
//! connects may hold, so that together they never exceed `spec.database.maxConnections`.
//!
//! The budget is split in two fixed parts, so that adding or removing a RelayMonitor never
//! changes (and so never restarts) a pipeline pod: `monitorConnections` seats, one per
//! RelayMonitor that targets the pipeline, taken in order of creation; and the rest, split
//! evenly over the pipeline's own pods, at most [`MAX_PER_POD`] each, rounded down to a power of
//! two. A pod reads its pool size when it starts, so a new share restarts every pipeline pod;
//! in powers of two (8, 4, 2) most edits of a pod count (a shard more, an api replica less)
//! leave the share as it was.

use super::InvalidSpec;
use crate::crd::brotr_deployment::DatabaseSpec;

/// `spec.database.maxConnections` when absent: PostgreSQL's default `max_connections` (100)
/// less room for superusers and administration.
pub const DEFAULT_BUDGET: i32 = 80;

/// `spec.database.monitorConnections` when absent.
pub const DEFAULT_MONITOR_SEATS: i32 = 20;

/// The most a pipeline pod's pool holds (the probe's own default).
pub const MAX_PER_POD: i32 = 8;

/// The least a pipeline pod's pool holds: its long-running services and the api keep one
/// connection listening for notifications (promotions, new events) and work on the other.
pub const MIN_PER_POD: i32 = 2;

/// Connections a seated RelayMonitor's pod holds: one cycle's results are written by one
/// connection (with one, a monitor on an interval does not listen for promotions; it checks on
/// its interval anyway).
pub const PER_MONITOR: i32 = 1;

/// Connections a managed server accepts beyond the budget: superusers' reserved slots and an
/// operator's `psql`.
pub const SERVER_HEADROOM: i32 = 10;

/// PostgreSQL's own default `max_connections`.
pub const POSTGRES_DEFAULT_MAX_CONNECTIONS: i32 = 100;

/// A pipeline's budget, from its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub total: i32,
    pub monitor_seats: i32,
}

/// The budget's split over the pipeline's own pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub budget: Budget,
    pub pipeline_pods: i32,
    pub per_pod: i32,
}

impl Budget {
    /// The budget a spec asks for; refused when the monitors' seats leave nothing for the
    /// pipeline.
    pub fn of(db: &DatabaseSpec) -> Result<Budget, InvalidSpec> {
        let total = db.max_connections.unwrap_or(DEFAULT_BUDGET);
        let monitor_seats = db.monitor_connections.unwrap_or(DEFAULT_MONITOR_SEATS);
        if total < 1 || monitor_seats < 0 {
            return Err(InvalidSpec(format!(
                "spec.database: maxConnections ({total}) must be at least 1 and \
                 monitorConnections ({monitor_seats}) at least 0"
            )));
        }
        if monitor_seats >= total {
            return Err(InvalidSpec(format!(
                "spec.database.monitorConnections: {monitor_seats} seats for monitors leave none \
                 of maxConnections ({total}) for the pipeline"
            )));
        }
        Ok(Budget {
            total,
            monitor_seats,
        })
    }

    /// Each of `pods` pipeline pods' share of what the monitors' seats leave; refused when it
    /// is less than one connection each.
    pub fn split(self, pods: i32) -> Result<Split, InvalidSpec> {
        let left = self.total - self.monitor_seats * PER_MONITOR;
        let pods = pods.max(1);
        let even = (left / pods).min(MAX_PER_POD);
        if even < MIN_PER_POD {
            return Err(InvalidSpec(format!(
                "spec.database.maxConnections: {} connections, {} of them reserved for \
                 monitors (monitorConnections), leave {left} for the pipeline's {pods} pods that \
                 connect; each needs at least {MIN_PER_POD} (one for its work, one it listens \
                 for notifications on). Raise maxConnections or lower monitorConnections, shards \
                 or api replicas",
                self.total, self.monitor_seats
            )));
        }
        // The largest power of two not above the even share.
        let per_pod = 1 << (31 - even.leading_zeros());
        Ok(Split {
            budget: self,
            pipeline_pods: pods,
            per_pod,
        })
    }

    /// Whether the monitor at `position` (0-based, in order of creation among those that
    /// target the pipeline) has a seat; the refusal names the pipeline and the setting.
    pub fn seat(self, position: usize, pipeline: &str) -> Result<i32, String> {
        if position < self.monitor_seats as usize {
            Ok(PER_MONITOR)
        } else {
            Err(format!(
                "BrotrDeployment {pipeline} reserves {} database connections for monitors \
                 (spec.database.monitorConnections) and {} monitors created before this one \
                 hold them; this one waits for a seat",
                self.monitor_seats, position
            ))
        }
    }

    /// `max_connections` of a managed server: the budget and headroom.
    pub fn server_max_connections(self) -> i32 {
        self.total + SERVER_HEADROOM
    }
}

impl Split {
    /// The most held at once with `monitors` RelayMonitors targeting the pipeline.
    pub fn at_most(&self, monitors: i32) -> i32 {
        self.pipeline_pods * self.per_pod + monitors.min(self.budget.monitor_seats) * PER_MONITOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(total: Option<i32>, seats: Option<i32>) -> DatabaseSpec {
        DatabaseSpec {
            external: None,
            managed: None,
            max_connections: total,
            monitor_connections: seats,
        }
    }

    #[test]
    fn the_split_never_exceeds_the_budget() {
        // (budget, seats, pods) → per pod
        let cases = [
            (80, 20, 6, 8),  // a small pipeline: the probe's own default, capped
            (80, 20, 10, 4), // 60 left over 10 pods: 6, rounded down to 4
            (80, 20, 15, 4), // still 4: a pod more or less changes no share
            (80, 20, 16, 2), // 3.75 → 2
            (80, 20, 30, 2), // two each, the least
            (50, 30, 10, 2), // the monitors take most
            (100000, 0, 3, 8),
        ];
        for (total, seats, pods, want) in cases {
            let b = Budget::of(&db(Some(total), Some(seats))).unwrap();
            let s = b.split(pods).unwrap();
            assert_eq!(s.per_pod, want, "{total}/{seats}/{pods}");
            for monitors in [0, seats, seats + 100] {
                assert!(
                    s.at_most(monitors) <= total,
                    "{total}/{seats}/{pods}/{monitors}"
                );
            }
        }
    }

    #[test]
    fn defaults_are_eighty_with_twenty_seats() {
        let b = Budget::of(&db(None, None)).unwrap();
        assert_eq!((b.total, b.monitor_seats), (80, 20));
        assert_eq!(b.server_max_connections(), 90);
    }

    #[test]
    fn a_budget_its_pods_cannot_fit_in_is_refused_naming_the_setting() {
        let b = Budget::of(&db(Some(30), Some(20))).unwrap();
        let e = b.split(6).unwrap_err().0;
        assert!(e.contains("spec.database.maxConnections: 30"), "{e}");
        assert!(e.contains("leave 10 for the pipeline's 6 pods"), "{e}");
        assert!(e.contains("at least 2"), "{e}");
        assert_eq!(b.split(5).map(|s| s.per_pod), Ok(2));
        let e = Budget::of(&db(Some(20), Some(20))).unwrap_err().0;
        assert!(e.contains("spec.database.monitorConnections: 20"), "{e}");
        assert!(Budget::of(&db(Some(0), None)).is_err());
    }

    #[test]
    fn monitors_are_seated_in_order_until_the_seats_are_taken() {
        let b = Budget::of(&db(Some(80), Some(2))).unwrap();
        assert_eq!(b.seat(0, "ns/bd"), Ok(1));
        assert_eq!(b.seat(1, "ns/bd"), Ok(1));
        let e = b.seat(2, "ns/bd").unwrap_err();
        assert!(e.contains("BrotrDeployment ns/bd reserves 2"), "{e}");
        assert!(e.contains("spec.database.monitorConnections"), "{e}");
        let none = Budget::of(&db(Some(80), Some(0))).unwrap();
        assert!(none.seat(0, "ns/bd").is_err());
    }
}
