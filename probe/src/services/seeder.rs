//! Seeder: loads relay URLs from a seed list, as validator candidates or directly as relays.

use tracing::{info, warn};

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
