//! Validator: candidates → relays. A candidate becomes a relay when a Nostr answer arrives
//! (see [`crate::net::relay::speaks_nostr`]); failures are counted and retried after
//! `retry_after_secs`; candidates failing `max_failures` times are dropped. Promoted relays are
//! re-checked on the schedule of [`crate::model::health`]; repeated failures make them dormant.

use std::collections::HashSet;

use async_trait::async_trait;
use tracing::{debug, info};

use super::{Ctx, CycleReport, Service};
pub use crate::config::ValidatorConfig;
use crate::config::{LimitsConfig, NetworksConfig, Schedule};
use crate::metrics::Metrics;
use crate::model::{Candidate, RelayHealth, RelayUrl};
use crate::net::relay::{Answer, speaks_nostr};
use crate::net::{Dialer, NetworkLimits, RelayError, tls_config};
use crate::progress::Tracker;
use crate::store::health::HEALTH_STATE;
use crate::store::{CANDIDATE_SERVICE, RelayRow, StateEntry, Store, StoreError, relay_health};

/// What one cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidatorReport {
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

impl CycleReport for ValidatorReport {
    fn attempted(&self) -> u64 {
        self.checked + self.rechecked
    }
    /// Rejecting a candidate is the validator's job, not a failure of the cycle.
    fn failed(&self) -> u64 {
        0
    }
    fn record(&self, m: &Metrics) {
        let v = &m.validator;
        v.checked.inc_by(self.checked);
        v.promoted.inc_by(self.promoted);
        v.rejected.inc_by(self.failed);
        v.pruned.inc_by(self.pruned);
        v.rechecked.inc_by(self.rechecked);
        v.dormant
            .set(i64::try_from(self.dormant).unwrap_or(i64::MAX));
    }
}

/// The validator service.
pub struct Validator {
    cfg: ValidatorConfig,
    dialer: Dialer,
}

impl Validator {
    pub fn new(cfg: ValidatorConfig, networks: NetworksConfig, limits: LimitsConfig) -> Self {
        Validator {
            cfg,
            dialer: Dialer::new(networks, limits, tls_config(&[])),
        }
    }

    /// Probes `urls` concurrently, each network at most its `max_tasks` at once.
    async fn probe_all(
        &self,
        urls: &[&RelayUrl],
        tracker: &Tracker,
    ) -> Vec<Result<Answer, RelayError>> {
        let limits = NetworkLimits::new(self.dialer.networks());
        futures_util::future::join_all(urls.iter().map(|url| {
            let limits = &limits;
            async move {
                let _permit = limits.acquire(url.network()).await;
                let r = speaks_nostr(&self.dialer, url).await;
                tracker.done(r.is_ok());
                r
            }
        }))
        .await
    }

    /// Validates due candidates in chunks; promoted relays are announced on `ctx.wake`.
    async fn validate_candidates(
        &self,
        ctx: &Ctx,
        report: &mut ValidatorReport,
    ) -> Result<(), StoreError> {
        let (store, now, cfg) = (ctx.store.as_ref(), ctx.now(), &self.cfg);
        let networks = self.dialer.networks().enabled();
        let tracker = ctx.progress.start("validator", 0, "candidates");
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
            tracker.add_total(batch.len() as u64);
            let urls: Vec<&RelayUrl> = batch.iter().map(|c| &c.url).collect();
            let results = self.probe_all(&urls, &tracker).await;
            let (valid, failed) = judge(batch, results, now);
            report.checked += (valid.len() + failed.len()) as u64;
            report.failed += failed.len() as u64;
            report.promoted += valid.len() as u64;
            store.promote_candidates(&valid).await?;
            store.record_candidate_attempts(&failed).await?;
            if !valid.is_empty() {
                ctx.wake.relays_promoted();
            }
        }
        tracker.finish();
        Ok(())
    }

    /// Re-checks promoted relays that are due (at most `chunk_size` per cycle, most overdue
    /// first) and records their health.
    async fn recheck_relays(
        &self,
        ctx: &Ctx,
        report: &mut ValidatorReport,
    ) -> Result<(), StoreError> {
        let (store, now) = (ctx.store.as_ref(), ctx.now());
        let policy = self.cfg.lifecycle();
        let due = due_rechecks(store, &self.dialer, &policy, now, self.cfg.chunk_size).await?;
        if due.is_empty() {
            return Ok(());
        }
        let tracker = ctx.progress.start("re-check", due.len() as u64, "relays");
        let urls: Vec<&RelayUrl> = due.iter().map(|(r, _)| &r.url).collect();
        let results = self.probe_all(&urls, &tracker).await;
        tracker.finish();
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
}

/// Splits a chunk's results into relays to promote and candidates that failed again (pure).
fn judge(
    batch: Vec<Candidate>,
    results: Vec<Result<Answer, RelayError>>,
    now: i64,
) -> (Vec<RelayRow>, Vec<Candidate>) {
    let mut valid = Vec::new();
    let mut failed = Vec::new();
    for (c, result) in batch.into_iter().zip(results) {
        match result {
            Ok(answer) => {
                debug!(relay = %c.url, answer = answer.as_str(), "valid relay");
                valid.push(RelayRow {
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
    (valid, failed)
}

/// Relays of enabled networks whose re-check is due, most overdue first, at most `max`.
async fn due_rechecks(
    store: &dyn Store,
    dialer: &Dialer,
    policy: &crate::model::LifecyclePolicy,
    now: i64,
    max: u32,
) -> Result<Vec<(RelayRow, RelayHealth)>, StoreError> {
    let networks = dialer.networks();
    let mut due: Vec<(RelayRow, RelayHealth)> = relay_health(store)
        .await?
        .into_iter()
        .filter(|(r, _)| networks.get(r.url.network()).enabled)
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
    due.truncate(max as usize);
    Ok(due)
}

#[async_trait]
impl Service for Validator {
    type Report = ValidatorReport;

    fn name(&self) -> &'static str {
        "validator"
    }

    fn schedule(&self) -> Schedule {
        self.cfg.schedule()
    }

    async fn run_cycle(&self, ctx: &Ctx) -> Result<ValidatorReport, StoreError> {
        let mut report = ValidatorReport {
            pruned: ctx.store.prune_candidates(self.cfg.max_failures).await?,
            ..Default::default()
        };
        self.validate_candidates(ctx, &mut report).await?;
        self.recheck_relays(ctx, &mut report).await?;
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
}
