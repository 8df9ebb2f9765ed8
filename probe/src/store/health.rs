//! Relay health as the services share it: the validator writes it, every other service reads
//! which relays are active (not dormant).

use std::collections::HashMap;

use super::{CANDIDATE_SERVICE, RelayRow, Result, Store};
use crate::model::{LifecyclePolicy, RelayHealth};

/// `service_state` type of relay health rows (service `validator`, key = relay URL).
pub const HEALTH_STATE: &str = "health";

/// Every relay with its health (`None`: never re-checked since promotion).
pub async fn relay_health(store: &dyn Store) -> Result<Vec<(RelayRow, Option<RelayHealth>)>> {
    let health: HashMap<String, RelayHealth> = store
        .state_get(CANDIDATE_SERVICE, HEALTH_STATE, None)
        .await?
        .into_iter()
        // A malformed row counts as "never checked": it is rewritten at the next check.
        .filter_map(|(k, v)| serde_json::from_value(v).ok().map(|h| (k, h)))
        .collect();
    Ok(store
        .relays()
        .await?
        .into_iter()
        .map(|r| {
            let h = health.get(r.url.as_str()).copied();
            (r, h)
        })
        .collect())
}

/// The relays other services should contact: every relay that is not dormant.
pub async fn active_relays(store: &dyn Store, policy: &LifecyclePolicy) -> Result<Vec<RelayRow>> {
    Ok(relay_health(store)
        .await?
        .into_iter()
        .filter(|(_, h)| !h.is_some_and(|h| h.is_dormant(policy)))
        .map(|(r, _)| r)
        .collect())
}
