//! Validator: candidates → relays. A candidate becomes a relay when a Nostr answer arrives
//! (see [`crate::net::answer`]); failures are counted and retried after `retry_after_secs`;
//! candidates failing `max_failures` times are dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::Semaphore;
use tracing::{debug, info};

pub use crate::config::ValidatorConfig;
use crate::model::{Candidate, Network};
use crate::net::{Dialer, probe_nostr};
use crate::store::{NewRelay, Store, StoreError};

/// What one cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub checked: u64,
    pub promoted: u64,
    pub failed: u64,
    /// Candidates removed before the cycle (already relays, or out of attempts).
    pub pruned: u64,
}

/// One validation cycle at time `now` (unix seconds).
pub async fn run_cycle(
    store: &dyn Store,
    dialer: &Dialer,
    cfg: &ValidatorConfig,
    now: i64,
) -> Result<CycleReport, StoreError> {
    let mut report = CycleReport {
        pruned: store.prune_candidates(cfg.max_failures).await?,
        ..Default::default()
    };
    let networks = dialer.networks().enabled();
    let semaphores: HashMap<Network, Arc<Semaphore>> = networks
        .iter()
        .map(|n| {
            (
                *n,
                Arc::new(Semaphore::new(dialer.networks().get(*n).max_tasks.max(1))),
            )
        })
        .collect();
    let mut attempted: HashSet<String> = HashSet::new();
    loop {
        let budget = cfg.max_candidates.map(|m| m.saturating_sub(report.checked));
        let limit = budget.map_or(cfg.chunk_size, |b| b.min(u64::from(cfg.chunk_size)) as u32);
        if limit == 0 {
            break;
        }
        let due = store
            .due_candidates(&networks, now - cfg.retry_after_secs, limit)
            .await?;
        // A candidate tried in this cycle is not tried again, even with retry_after_secs = 0.
        let batch: Vec<Candidate> = due
            .into_iter()
            .filter(|c| attempted.insert(c.url.as_str().to_owned()))
            .collect();
        if batch.is_empty() {
            break;
        }
        let results = join_all(batch.iter().map(|c| {
            let sem = semaphores.get(&c.url.network()).cloned();
            async move {
                // Every network in `due` is enabled, so its semaphore exists.
                let _permit = match &sem {
                    Some(s) => s.acquire().await.ok(),
                    None => None,
                };
                probe_nostr(dialer, &c.url).await
            }
        }))
        .await;
        let mut valid = Vec::new();
        let mut failed = Vec::new();
        for (c, result) in batch.into_iter().zip(results) {
            match result {
                Ok(answer) => {
                    debug!(relay = %c.url, answer = answer.as_str(), "valid relay");
                    valid.push(NewRelay {
                        url: c.url,
                        discovered_at: now,
                    });
                }
                Err(e) => {
                    debug!(relay = %c.url, failures = c.failures + 1, reason = %e, "not a relay (yet)");
                    failed.push(Candidate {
                        url: c.url,
                        failures: c.failures + 1,
                        timestamp: now,
                    });
                }
            }
        }
        report.checked += (valid.len() + failed.len()) as u64;
        report.failed += failed.len() as u64;
        report.promoted += valid.len() as u64;
        store.promote_candidates(&valid).await?;
        store.record_candidate_attempts(&failed).await?;
    }
    info!(
        checked = report.checked,
        promoted = report.promoted,
        failed = report.failed,
        pruned = report.pruned,
        "validator cycle done"
    );
    Ok(report)
}
