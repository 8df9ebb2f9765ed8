//! Seeder: loads relay URLs from a seed list, as validator candidates or directly as relays.
//! One-shot: the `seed` command and the start of `run` run one cycle of it.

use async_trait::async_trait;
use tracing::{info, warn};

use super::{Ctx, CycleReport, Service};
use crate::config::Schedule;
use crate::metrics::Metrics;
use crate::model::Candidate;
use crate::seed::parse_seed_list;
use crate::store::{RelayRow, Store, StoreError};

/// What one seeding did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Distinct valid URLs in the list.
    pub valid: usize,
    /// Lines skipped with a reason (logged).
    pub skipped: usize,
    /// Lines repeating an earlier URL.
    pub duplicates: usize,
    /// Rows actually added (candidates or relays); 0 when replayed.
    pub inserted: u64,
}

/// Options for one seeding.
#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    /// `true`: add as candidates for the validator; `false`: add straight to `relay`.
    pub to_validate: bool,
    /// Accept loopback/private hosts (tests, private deployments).
    pub allow_local: bool,
    /// Unix time recorded as discovery time.
    pub now: i64,
}

/// Parses `text` (named `source` in logs) and stores its URLs. Bad lines are logged with
/// `source:line` and skipped; the rest loads.
pub async fn seed(
    store: &dyn Store,
    source: &str,
    text: &str,
    opts: SeedOptions,
) -> Result<SeedReport, StoreError> {
    let list = parse_seed_list(text, opts.allow_local);
    for s in &list.skipped {
        warn!(file = source, line = s.line, reason = %s.error, "skipping seed line");
    }
    let inserted = if opts.to_validate {
        let candidates: Vec<Candidate> = list
            .urls
            .iter()
            .map(|u| Candidate::new(u.clone(), opts.now))
            .collect();
        store.insert_candidates(&candidates).await?
    } else {
        let relays: Vec<RelayRow> = list
            .urls
            .iter()
            .map(|u| RelayRow {
                url: u.clone(),
                discovered_at: opts.now,
            })
            .collect();
        store.insert_relays(&relays).await?
    };
    let report = SeedReport {
        valid: list.urls.len(),
        skipped: list.skipped.len(),
        duplicates: list.duplicates,
        inserted,
    };
    info!(
        file = source,
        valid = report.valid,
        skipped = report.skipped,
        duplicates = report.duplicates,
        inserted = report.inserted,
        as_candidates = opts.to_validate,
        "seeded"
    );
    Ok(report)
}

impl CycleReport for SeedReport {
    fn attempted(&self) -> u64 {
        self.valid as u64
    }
    /// Bad lines are the list's, not failures of the seeding.
    fn failed(&self) -> u64 {
        0
    }
    fn record(&self, _: &Metrics) {}
}

/// The seeder service: one list, seeded once per cycle (idempotent).
pub struct Seeder {
    /// Names the list in logs (a file path, or the bundled list).
    pub source: String,
    pub text: String,
    pub to_validate: bool,
    pub allow_local: bool,
}

#[async_trait]
impl Service for Seeder {
    type Report = SeedReport;

    fn name(&self) -> &'static str {
        "seeder"
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            interval_secs: 86_400,
            max_consecutive_failures: 1,
        }
    }

    async fn run_cycle(&self, ctx: &Ctx) -> Result<SeedReport, StoreError> {
        let opts = SeedOptions {
            to_validate: self.to_validate,
            allow_local: self.allow_local,
            now: ctx.now(),
        };
        let r = seed(ctx.store.as_ref(), &self.source, &self.text, opts).await?;
        if !self.to_validate && r.inserted > 0 {
            ctx.wake.relays_promoted();
        }
        Ok(r)
    }
}
