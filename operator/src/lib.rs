//! Brotr operator: reconciles `BrotrDeployment` and `RelayMonitor` custom resources.
//!
//! Skeleton for now: the CRD types, renderers and controllers arrive with their own issues.
//! It already depends on `brotr_probe` without default features, proving the config/model
//! types can be shared without pulling the probe's database stack.

/// Networks a relay can live on, shared with the probe (one definition, two crates).
pub use brotr_probe::model::Network;
