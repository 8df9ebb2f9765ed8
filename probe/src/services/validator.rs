//! Validator: candidates → relays. A candidate becomes a relay when a Nostr answer arrives
//! (see [`crate::net::answer`]); failures are counted and retried after `retry_after_secs`;
//! candidates failing `max_failures` times are dropped. Promoted relays are re-checked on the
//! schedule of [`crate::model::health`]; repeated failures make them dormant.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::Semaphore;
use tracing::{debug, info};

pub use crate::config::ValidatorConfig;
use crate::model::{Candidate, LifecyclePolicy, Network, RelayHealth, RelayUrl};
use crate::net::{Answer, Dialer, ProbeError, probe_nostr};
use crate::store::{CANDIDATE_SERVICE, NewRelay, StateEntry, Store, StoreError};

/// `service_state` type of relay health rows (service `validator`, key = relay URL).
pub const HEALTH_STATE: &str = "health";

/// What one cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub checked: u64,
    pub promoted: u64,
    pub failed: u64,
    /// Candidates removed before the cycle (already relays, or out of attempts).
    pub pruned: u64,
    /// Promoted relays re-checked this cycle.
    pub rechecked: u64,
    /// Re-checked relays that are dormant after this cycle.
    pub dormant: u64,
}

/// Probes `urls` concurrently, at most each network's `max_tasks` at once.
async fn probe_all(
    dialer: &Dialer,
    semaphores: &HashMap<Network, Arc<Semaphore>>,
    urls: &[&RelayUrl],
) -> Vec<Result<Answer, ProbeError>> {
    join_all(urls.iter().map(|url| {
        let sem = semaphores.get(&url.network()).cloned();
        async move {
            // Only URLs of enabled networks get here, and each has a semaphore.
            let _permit = match &sem {
                Some(s) => s.acquire().await.ok(),
                None => None,
            };
            probe_nostr(dialer, url).await
        }
    }))
    .await
}

/// Every relay with its health (`None`: never re-checked since promotion).
pub async fn relay_health(
    store: &dyn Store,
) -> Result<Vec<(NewRelay, Option<RelayHealth>)>, StoreError> {
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
pub async fn active_relays(
    store: &dyn Store,
    policy: &LifecyclePolicy,
) -> Result<Vec<NewRelay>, StoreError> {
    Ok(relay_health(store)
        .await?
        .into_iter()
        .filter(|(_, h)| !h.is_some_and(|h| h.is_dormant(policy)))
        .map(|(r, _)| r)
        .collect())
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
        let urls: Vec<&RelayUrl> = batch.iter().map(|c| &c.url).collect();
        let results = probe_all(dialer, &semaphores, &urls).await;
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
    recheck_relays(store, dialer, cfg, &semaphores, now, &mut report).await?;
    info!(
        rechecked = report.rechecked,
        dormant = report.dormant,
        checked = report.checked,
        promoted = report.promoted,
        failed = report.failed,
        pruned = report.pruned,
        "validator cycle done"
    );
    Ok(report)
}

/// Re-checks promoted relays that are due (at most `chunk_size` per cycle, most overdue first)
/// and records their health.
async fn recheck_relays(
    store: &dyn Store,
    dialer: &Dialer,
    cfg: &ValidatorConfig,
    semaphores: &HashMap<Network, Arc<Semaphore>>,
    now: i64,
    report: &mut CycleReport,
) -> Result<(), StoreError> {
    let policy = cfg.lifecycle();
    let mut due: Vec<(NewRelay, RelayHealth)> = relay_health(store)
        .await?
        .into_iter()
        .filter(|(r, _)| semaphores.contains_key(&r.url.network()))
        .filter_map(|(r, h)| {
            let h = h.unwrap_or(RelayHealth {
                failures: 0,
                last_check: r.discovered_at,
                next_check: r.discovered_at.saturating_add(policy.recheck_secs),
            });
            h.is_due(now).then_some((r, h))
        })
        .collect();
    due.sort_by_key(|(_, h)| h.next_check);
    due.truncate(cfg.chunk_size as usize);
    if due.is_empty() {
        return Ok(());
    }
    let urls: Vec<&RelayUrl> = due.iter().map(|(r, _)| &r.url).collect();
    let results = probe_all(dialer, semaphores, &urls).await;
    let mut entries = Vec::with_capacity(due.len());
    for ((relay, health), result) in due.iter().zip(results) {
        let next = health.after_check(result.is_ok(), now, &policy);
        if let Err(e) = &result {
            debug!(relay = %relay.url, failures = next.failures, reason = %e, "relay re-check failed");
        }
        if next.is_dormant(&policy) {
            report.dormant += 1;
        }
        entries.push(StateEntry {
            service: CANDIDATE_SERVICE.into(),
            kind: HEALTH_STATE.into(),
            key: relay.url.as_str().into(),
            value: serde_json::to_value(next).unwrap_or_default(),
        });
    }
    report.rechecked += entries.len() as u64;
    store.state_upsert(&entries).await?;
    Ok(())
}
