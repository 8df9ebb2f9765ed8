//! Consensus across monitors, one round: every relay's verdict from our own monitors' latest
//! results and third-party monitors' kind 30166 reports ([`crate::serve::consensus`]), and each
//! third-party monitor's track record updated with how its new reports fared. The api judges
//! with these records on every request; this round is what moves them (`maintain consensus`, a
//! CronJob of the operator). With `consensus.publish` on, the round also publishes the
//! verdicts as kind 30166 events of the consensus key and stores them in the archive (so the
//! api's relay serves them).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::json;
use tracing::info;

use std::time::Duration;

use nostr::Keys;
use tracing::warn;

use crate::config::ConsensusConfig;
use crate::model::consensus::{Label, Source, TRACK_SERVICE, TRACK_TYPE, update_track};
use crate::model::{EventRow, RelayUrl};
use crate::monitor::publish::Publisher;
use crate::net::Dialer;
use crate::nips::nip66::{Discovery, build_30166};
use crate::serve::consensus::{self, Consensus, StoredTrack};
use crate::store::read::RelaySummary;
use crate::store::{Archive, RelayRow, StateEntry, StoreError};

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
    /// Verdicts published as kind 30166, and how many of them some relay accepted.
    pub published: u64,
    pub accepted: u64,
}

/// Where and as whom the verdicts are published.
#[derive(Clone)]
pub struct Publishing {
    pub dialer: Dialer,
    pub keys: Keys,
    pub relays: Vec<RelayUrl>,
    pub timeout: Duration,
}

/// The label of the consensus' 30166 events (NIP-32 `l`, namespace `brotr.consensus`).
pub const LABEL_NAMESPACE: &str = "brotr.consensus";

/// What the consensus says of `relay` as a kind 30166 (pure): only for a relay the vantage
/// points agree is up (NIP-66 publishes what is reachable). `rtt-open` is the median of the
/// agreeing vantage points; `R` carries the voted auth and payment requirements; one `vantage`
/// tag per monitor it rests on (`agrees`, `disagrees` or `flagged`).
pub fn consensus_report(relay: &RelaySummary, c: &Consensus) -> Option<Discovery> {
    if c.verdict.label() != Label::Online {
        return None;
    }
    let mut requirements = Vec::new();
    for (name, vote) in [
        ("auth", c.verdict.auth_required),
        ("payment", c.verdict.payment_required),
    ] {
        if let Some(v) = vote.value {
            requirements.push((name.to_owned(), v));
        }
    }
    let mut vantage: Vec<Vec<String>> = c
        .verdict
        .agreement
        .iter()
        .filter(|(m, _)| !m.is_empty())
        .map(|(m, agrees)| {
            let word = match (c.verdict.thrown_out(m), agrees) {
                (true, _) => "flagged",
                (false, true) => "agrees",
                (false, false) => "disagrees",
            };
            vec!["vantage".to_owned(), m.clone(), word.to_owned()]
        })
        .collect();
    vantage.sort();
    Some(Discovery {
        d: relay.url.clone(),
        network: Some(relay.network.clone()),
        rtt_open: c.median_rtt_open().map(u64::from),
        requirements,
        geohash: relay.geohash.clone(),
        labels: vec![(c.label.clone(), LABEL_NAMESPACE.to_owned())],
        extra: vantage,
        ..Discovery::default()
    })
}

/// New reports of each monitor this round: (agreed, judged, newest report time).
type Judged = HashMap<String, (u32, u32, i64)>;

/// One round at `now`.
pub async fn round(
    archive: &dyn Archive,
    cfg: &ConsensusConfig,
    publishing: Option<&Publishing>,
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
    let mut reports = Vec::new();
    for relay in &relays {
        let c = consensus::judge(relay, &inputs, now, cfg.max_age_secs);
        if publishing.is_some()
            && let Some(d) = consensus_report(relay, &c)
        {
            reports.push(d);
        }
        *report.labels.entry(c.verdict.label()).or_default() += 1;
        report.flagged += c.verdict.disagreements.len() as u64;
        for w in &c.observations {
            let o = &w.observation;
            if o.source != Source::ThirdParty {
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
    if let Some(p) = publishing {
        (report.published, report.accepted) = publish(archive, p, &reports, now).await?;
    }
    info!(relays = report.relays, labels = ?report.labels, flagged = report.flagged,
        weights = ?report.weights, published = report.published, accepted = report.accepted,
        took = ?start.elapsed(), "consensus round done");
    Ok(report)
}

/// Signs and publishes `reports`, and stores each accepted event in the archive as seen on the
/// relays that accepted it: (published, accepted by some relay).
async fn publish(
    archive: &dyn Archive,
    p: &Publishing,
    reports: &[Discovery],
    now: i64,
) -> Result<(u64, u64), StoreError> {
    let created = u64::try_from(now).unwrap_or(0);
    let events: Vec<nostr::Event> = reports
        .iter()
        .filter_map(|d| {
            build_30166(d, p.keys.public_key(), created)
                .sign_with_keys(&p.keys)
                .inspect_err(|e| warn!(relay = %d.d, error = %e, "cannot sign the consensus"))
                .ok()
        })
        .collect();
    if events.is_empty() {
        return Ok((0, 0));
    }
    let mut publisher = Publisher::new(
        p.dialer.clone(),
        p.keys.clone(),
        p.relays.clone(),
        p.timeout,
    );
    let accepted = publisher.publish_to(&events).await;
    publisher.close().await;
    let mut by_relay: HashMap<RelayUrl, Vec<EventRow>> = HashMap::new();
    let mut n = 0;
    for (e, relays) in events.iter().zip(&accepted) {
        if relays.is_empty() {
            continue;
        }
        n += 1;
        let Ok(row) = EventRow::from_event(e) else {
            continue;
        };
        for r in relays {
            by_relay.entry(r.clone()).or_default().push(row.clone());
        }
    }
    for (url, rows) in by_relay {
        let relay = RelayRow {
            url,
            discovered_at: now,
        };
        archive.insert_events(&relay, now, &rows).await?;
    }
    if n < events.len() {
        warn!(
            published = events.len(),
            accepted = n,
            "some consensus events reached no relay"
        );
    }
    Ok((events.len() as u64, n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::read::MonitorHealth;

    fn relay(states: &[bool]) -> RelaySummary {
        RelaySummary {
            url: "wss://r.example".into(),
            network: "clearnet".into(),
            discovered_at: 0,
            status: String::new(),
            name: None,
            software: None,
            supported_nips: vec![],
            country: None,
            geohash: Some("u0yjj".into()),
            lat: None,
            lon: None,
            health: states
                .iter()
                .enumerate()
                .map(|(i, up)| MonitorHealth {
                    monitor: format!("{i:064x}"),
                    checked_at: 1_000,
                    online: *up,
                    rtt_open_ms: up.then_some(10 * (i as u64 + 1)),
                    rtt_read_ms: None,
                    rtt_write_ms: None,
                    reason: None,
                    auth_required: Some(false),
                    payment_required: None,
                })
                .collect(),
        }
    }

    #[test]
    fn only_a_relay_agreed_up_is_reported_naming_its_vantage_points() {
        let inputs = consensus::Inputs::default();
        let down = relay(&[false, false, true]);
        let c = consensus::judge(&down, &inputs, 1_000, 3_600);
        assert_eq!(consensus_report(&down, &c), None);
        let up = relay(&[true, true, false]);
        let c = consensus::judge(&up, &inputs, 1_000, 3_600);
        let d = consensus_report(&up, &c).unwrap();
        assert_eq!(d.d, "wss://r.example");
        assert_eq!(
            d.rtt_open,
            Some(20),
            "the median of the two that reached it"
        );
        assert_eq!(d.requirements, vec![("auth".to_owned(), false)]);
        assert_eq!(
            d.labels,
            vec![("online".to_owned(), LABEL_NAMESPACE.to_owned())]
        );
        let words: Vec<&str> = d.extra.iter().map(|t| t[2].as_str()).collect();
        assert_eq!(words, vec!["agrees", "agrees", "disagrees"]);
        // It reads back as the 30166 it is.
        let back = Discovery::parse(&d.tags(), "").unwrap();
        assert_eq!(back, d);
    }
}
