//! Maintenance settings (`brotr-probe maintain refresh|retention|cleanup`).

use garde::Validate;
use serde::{Deserialize, Serialize};

/// What `maintain` keeps and how much it deletes per statement.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MaintainConfig {
    /// Monitor results (`relay_metadata` rows) older than this many seconds are deleted by
    /// `maintain retention` (the latest result of every relay and check is always kept).
    #[garde(range(min = 86_400, max = 315_360_000))]
    pub metadata_retention_secs: i64,
    /// Rows deleted per statement by `retention` and `cleanup`, so no statement holds locks on
    /// millions of rows while the services run.
    #[garde(range(min = 100, max = 1_000_000))]
    pub batch_size: u32,
}

impl Default for MaintainConfig {
    fn default() -> Self {
        MaintainConfig {
            metadata_retention_secs: 90 * 86_400,
            batch_size: 10_000,
        }
    }
}
