//! Maintenance, run as one-shot steps (the operator schedules them as CronJobs):
//!
//! * `refresh` — the statistics views, concurrently where the database can (readers keep the
//!   old contents meanwhile);
//! * `retention` — monitor results older than `maintain.metadataRetentionSecs`, keeping the
//!   newest of every (relay, check, monitor);
//! * `cleanup` — events seen at no relay and documents no result points at.
//!
//! Every delete runs in bounded batches of separate statements, so each step is safe while the
//! services run, and idempotent.

use std::time::Instant;

use async_trait::async_trait;
use tracing::info;

use super::{Ctx, CycleReport, Service};
use crate::config::{MaintainConfig, Schedule};
use crate::metrics::Metrics;
use crate::store::StoreError;

/// One maintenance step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Step {
    /// Refresh the statistics views (PostgreSQL's materialized views)
    Refresh,
    /// Delete monitor results past the retention (the latest of each relay and check stays)
    Retention,
    /// Delete orphaned events and metadata
    Cleanup,
    /// One consensus round: verdicts across monitors, third-party track records updated.
    Consensus,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Refresh => "refresh",
            Step::Retention => "retention",
            Step::Cleanup => "cleanup",
            Step::Consensus => "consensus",
        }
    }
}

/// What a step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaintainReport {
    /// Views refreshed.
    pub views: Vec<&'static str>,
    /// Rows deleted, by table.
    pub deleted: Vec<(&'static str, u64)>,
    /// The consensus round's findings.
    pub consensus: Option<super::consensus::ConsensusReport>,
}

impl CycleReport for MaintainReport {
    fn attempted(&self) -> u64 {
        1
    }
    fn failed(&self) -> u64 {
        0
    }
    fn record(&self, _: &Metrics) {}
}

/// One maintenance step as a service (one cycle per run: a CronJob).
pub struct Maintainer {
    pub cfg: MaintainConfig,
    pub consensus: crate::config::ConsensusConfig,
    /// Where the consensus step publishes its verdicts (`consensus.publish`), if anywhere.
    pub publishing: Option<super::consensus::Publishing>,
    pub step: Step,
}

#[async_trait]
impl Service for Maintainer {
    type Report = MaintainReport;

    fn name(&self) -> &'static str {
        "maintain"
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            interval_secs: 3600,
            max_consecutive_failures: 1,
        }
    }

    async fn run_cycle(&self, ctx: &Ctx) -> Result<MaintainReport, StoreError> {
        if self.step == Step::Consensus {
            let Some(archive) = &ctx.reader else {
                return Err(StoreError::NoReader {
                    what: "maintain consensus",
                });
            };
            let report = super::consensus::round(
                archive.as_ref(),
                &self.consensus,
                self.publishing.as_ref(),
                ctx.now(),
            )
            .await?;
            return Ok(MaintainReport {
                consensus: Some(report),
                ..MaintainReport::default()
            });
        }
        run(ctx, &self.cfg, self.step).await
    }
}

/// Runs `step` once.
pub async fn run(
    ctx: &Ctx,
    cfg: &MaintainConfig,
    step: Step,
) -> Result<MaintainReport, StoreError> {
    let start = Instant::now();
    let store = ctx.store.as_ref();
    let mut report = MaintainReport::default();
    match step {
        Step::Refresh => report.views = store.refresh_views().await?,
        Step::Retention => {
            let cutoff = ctx.now() - cfg.metadata_retention_secs;
            let n = store
                .delete_expired_metadata(cutoff, cfg.batch_size)
                .await?;
            report.deleted.push(("relay_metadata", n));
        }
        Step::Cleanup => {
            let events = store.delete_orphan_events(cfg.batch_size).await?;
            let metadata = store.delete_orphan_metadata(cfg.batch_size).await?;
            report
                .deleted
                .extend([("event", events), ("metadata", metadata)]);
        }
        // Needs the archive's reads: run by the service with its context's reader.
        Step::Consensus => {
            return Err(StoreError::NoReader {
                what: "maintain consensus",
            });
        }
    }
    let m = &ctx.metrics.maintain;
    m.step_seconds
        .with_label_values(&[step.as_str()])
        .observe(start.elapsed().as_secs_f64());
    for (table, n) in &report.deleted {
        m.rows_deleted
            .with_label_values(&[step.as_str(), table])
            .inc_by(*n);
    }
    info!(step = step.as_str(), views = ?report.views, deleted = ?report.deleted,
        took = ?start.elapsed(), "maintenance step done");
    Ok(report)
}
