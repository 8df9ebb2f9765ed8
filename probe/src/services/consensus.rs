//! Consensus across monitors, one round: every relay's verdict from our own monitors' latest
//! results and third-party monitors' kind 30166 reports ([`crate::serve::consensus`]), and each
//! third-party monitor's track record updated with how its new reports fared. The api judges
//! with these records on every request; this round is what moves them (`maintain consensus`, a
//! CronJob of the operator).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::json;
use tracing::info;

use crate::config::ConsensusConfig;
use crate::model::consensus::{Label, TRACK_SERVICE, TRACK_TYPE, update_track};
use crate::serve::consensus::{self, StoredTrack};
use crate::store::{Archive, StateEntry, StoreError};

/// Relays judged in one round, at most.
const MAX_RELAYS: usize = 1_000_000;

/// What one round found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsensusReport {
    pub relays: u64,
    /// Relays by label.
    pub labels: BTreeMap<Label, u64>,
    /// Observations flagged (against the majority, faster than light, stale).
    pub flagged: u64,
    /// Third-party monitors whose record moved, with their new weight.
    pub weights: BTreeMap<String, f64>,
}

/// New reports of each monitor this round: (agreed, judged, newest report time).
type Judged = HashMap<String, (u32, u32, i64)>;

/// One round at `now`.
pub async fn round(
    archive: &dyn Archive,
    cfg: &ConsensusConfig,
    now: i64,
) -> Result<ConsensusReport, StoreError> {
    let start = Instant::now();
    // Our monitors' latest results as of now (PostgreSQL keeps them in materialized views).
    archive.refresh_latest_results().await?;
    let relays = consensus::all_relays(archive, MAX_RELAYS).await?;
    let inputs = consensus::inputs(archive, &relays, true, now, cfg.max_age_secs).await?;
    let stored = consensus::tracks(archive).await?;
    let mut report = ConsensusReport {
        relays: relays.len() as u64,
        ..ConsensusReport::default()
    };
    let mut judged: Judged = HashMap::new();
    for relay in &relays {
        let c = consensus::judge(relay, &inputs, now, cfg.max_age_secs);
        *report.labels.entry(c.verdict.label()).or_default() += 1;
        report.flagged += c.verdict.disagreements.len() as u64;
        for w in &c.observations {
            let o = &w.observation;
            if o.source != crate::model::consensus::Source::ThirdParty {
                continue;
            }
            let Some(agreed) = c.verdict.agreement.get(&o.monitor) else {
                continue;
            };
            // Each report is judged once: only those newer than the last round's.
            let before = stored.get(&o.monitor).map_or(i64::MIN, |t| t.judged_until);
            if o.at <= before {
                continue;
            }
            let e = judged.entry(o.monitor.clone()).or_insert((0, 0, before));
            e.0 += u32::from(*agreed);
            e.1 += 1;
            e.2 = e.2.max(o.at);
        }
    }
    let mut entries = Vec::new();
    for (monitor, (agreed, rounds, until)) in judged {
        let old = stored.get(&monitor).copied().unwrap_or_default();
        let t = update_track(old.record(), agreed, rounds, cfg.track_window);
        report.weights.insert(monitor.clone(), t.weight());
        let value = StoredTrack {
            agreed: t.agreed,
            rounds: t.rounds,
            judged_until: until,
        };
        entries.push(StateEntry {
            service: TRACK_SERVICE.into(),
            kind: TRACK_TYPE.into(),
            key: monitor,
            value: serde_json::to_value(value).unwrap_or_else(|_| json!({})),
        });
    }
    archive.state_upsert(&entries).await?;
    info!(relays = report.relays, labels = ?report.labels, flagged = report.flagged,
        weights = ?report.weights, took = ?start.elapsed(), "consensus round done");
    Ok(report)
}
