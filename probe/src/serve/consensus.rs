//! The consensus of [`crate::model::consensus`] over the archive: its inputs read through the
//! shared queries ([`Reader::relays_page`] for our own monitors' latest results,
//! [`Reader::query_events`] for third-party kind 30166 and 10166 events, `service_state` for
//! track records and vantage points), for the api's routes, the web page and the consensus
//! service alike.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::model::RelayUrl;
use crate::model::consensus::{
    self, Observation, Params, Source, TRACK_SERVICE, TRACK_TYPE, TrackRecord, VANTAGE_SERVICE,
    VANTAGE_TYPE, Verdict,
};
use crate::nips::nip66::{Announcement, Discovery, KIND_ANNOUNCEMENT, KIND_DISCOVERY};
use crate::store::StoreError;
use crate::store::query::{Cursor, EventQuery, RelayFilter};
use crate::store::read::{Archive, MonitorHealth, RelayDetail, RelaySummary};

/// Third-party reports read per statement, and at most in all (a whole-network read).
const PAGE: u32 = 5_000;
const MAX_REPORTS: usize = 500_000;
/// Announcements (10166) older than this do not place a monitor.
const ANNOUNCEMENT_AGE_SECS: i64 = 30 * 86_400;

/// What the verdicts of a set of relays rest on, besides the relays' own rows.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// Monitor (hex) → its vantage point's geohash.
    pub regions: HashMap<String, String>,
    /// Third-party monitors' records.
    pub tracks: BTreeMap<String, TrackRecord>,
    /// Relay URL → the latest report of each third-party monitor.
    pub reports: HashMap<String, Vec<Observation>>,
}

/// A track record as kept in `service_state`: the record, and the newest report it has judged
/// (a report is judged once, however many cycles see it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredTrack {
    pub agreed: u32,
    pub rounds: u32,
    pub judged_until: i64,
}

impl StoredTrack {
    pub fn record(self) -> TrackRecord {
        TrackRecord {
            agreed: self.agreed,
            rounds: self.rounds,
        }
    }
}

/// Reads every third-party monitor's stored track record.
pub async fn tracks(archive: &dyn Archive) -> Result<BTreeMap<String, StoredTrack>, StoreError> {
    Ok(archive
        .state_get(TRACK_SERVICE, TRACK_TYPE, None)
        .await?
        .into_iter()
        .filter_map(|(k, v)| Some((k, serde_json::from_value(v).ok()?)))
        .collect())
}

/// The inputs for `relays` at `now`: their third-party reports when `relays` is a page (by
/// their `d` tags), or every report when `whole` (the service's cycle, the map).
pub async fn inputs(
    archive: &dyn Archive,
    relays: &[RelaySummary],
    whole: bool,
    now: i64,
    max_age_secs: i64,
) -> Result<Inputs, StoreError> {
    let own: HashSet<String> = relays
        .iter()
        .flat_map(|r| r.health.iter().map(|h| h.monitor.clone()))
        .collect();
    let mut regions: HashMap<String, String> = HashMap::new();
    if archive.schema() == crate::model::Schema::Full {
        // Newest first: the first 10166 of each author places it.
        let q = EventQuery {
            kinds: Some(vec![i32::from(KIND_ANNOUNCEMENT)]),
            since: Some(now - ANNOUNCEMENT_AGE_SECS),
            limit: PAGE,
            ..EventQuery::default()
        };
        for e in archive.query_events(&q).await? {
            let author = hex::encode(e.pubkey);
            if regions.contains_key(&author) {
                continue;
            }
            if let Some(g) = Announcement::parse(&tags_of(e.tags_json.as_deref())).geohash {
                regions.insert(author, g);
            }
        }
    }
    // Our own monitors' declared positions win over whatever their 10166 said.
    for (k, v) in archive
        .state_get(VANTAGE_SERVICE, VANTAGE_TYPE, None)
        .await?
    {
        if let Some(g) = v.get("geohash").and_then(|g| g.as_str()) {
            regions.insert(k, g.to_owned());
        }
    }
    let tracks = tracks(archive)
        .await?
        .into_iter()
        .map(|(k, t)| (k, t.record()))
        .collect();
    let mut reports: HashMap<String, Vec<Observation>> = HashMap::new();
    if archive.schema() == crate::model::Schema::Full && (whole || !relays.is_empty()) {
        let wanted: HashSet<&str> = relays.iter().map(|r| r.url.as_str()).collect();
        let mut q = EventQuery {
            kinds: Some(vec![i32::from(KIND_DISCOVERY)]),
            since: Some(now - max_age_secs),
            limit: PAGE,
            ..EventQuery::default()
        };
        if !whole {
            // A report's `d` may differ from our URL by a trailing slash.
            let d = relays
                .iter()
                .flat_map(|r| [r.url.clone(), format!("{}/", r.url)])
                .collect();
            q.tags.insert('d', d);
        }
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut read = 0usize;
        loop {
            let page = archive.query_events(&q).await?;
            let full = page.len() == PAGE as usize;
            read += page.len();
            let last = page.last().map(|e| Cursor {
                created_at: e.created_at,
                id: e.id,
            });
            for e in page {
                let author = hex::encode(e.pubkey);
                if own.contains(&author) {
                    continue;
                }
                let Some(d) = Discovery::parse(
                    &tags_of(e.tags_json.as_deref()),
                    e.content.as_deref().unwrap_or(""),
                ) else {
                    continue;
                };
                let Ok(url) = RelayUrl::parse_allowing_local(&d.d) else {
                    continue;
                };
                let url = url.as_str().to_owned();
                if !whole && !wanted.contains(url.as_str()) {
                    continue;
                }
                // Newest first: a monitor's first report of a relay is its latest.
                if !seen.insert((author.clone(), url.clone())) {
                    continue;
                }
                let region = regions.get(&author).cloned();
                reports
                    .entry(url)
                    .or_default()
                    .push(report(author, e.created_at, region, &d));
            }
            if !full || read >= MAX_REPORTS {
                break;
            }
            q.after = last;
        }
    }
    Ok(Inputs {
        regions,
        tracks,
        reports,
    })
}

/// One third-party kind 30166 as an observation: the monitor reached the relay (NIP-66
/// publishes only what it reached); a read or write RTT means that worked.
pub fn report(monitor: String, at: i64, region: Option<String>, d: &Discovery) -> Observation {
    let ms = |v: Option<u64>| v.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
    Observation {
        monitor,
        source: Source::ThirdParty,
        at,
        region,
        open: Some(true),
        read: d.rtt_read.map(|_| true),
        write: d.rtt_write.map(|_| true),
        auth_required: d.requires("auth"),
        payment_required: d.requires("payment"),
        rtt_open_ms: ms(d.rtt_open),
        relay_region: d.geohash.clone(),
    }
}

/// One of our monitors' latest result as an observation.
pub fn own(h: &MonitorHealth, region: Option<String>) -> Observation {
    let ms = |v: Option<u64>| v.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
    // Reached: a phase without an RTT did not work or did not run (unknown). Not reached:
    // nothing else worked either.
    let phase = |rtt: Option<u64>| {
        if h.online {
            rtt.map(|_| true)
        } else {
            Some(false)
        }
    };
    Observation {
        monitor: h.monitor.clone(),
        source: Source::Own,
        at: h.checked_at,
        region,
        open: Some(h.online),
        read: phase(h.rtt_read_ms),
        write: phase(h.rtt_write_ms),
        auth_required: h.auth_required,
        payment_required: h.payment_required,
        rtt_open_ms: ms(h.rtt_open_ms),
        relay_region: None,
    }
}

/// A relay's verdict, with the observations it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Consensus {
    /// online, offline, disputed or unknown.
    pub label: String,
    #[schema(value_type = Object)]
    pub verdict: Verdict,
    /// Every vantage point's latest result, with the weight it voted with (0: did not vote).
    pub observations: Vec<Weighed>,
}

/// One observation and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Weighed {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub observation: Observation,
    pub weight: f64,
}

impl Consensus {
    /// The median RTT to open (ms) of the vantage points that voted it up.
    pub fn median_rtt_open(&self) -> Option<u32> {
        let mut rtts: Vec<u32> = self
            .observations
            .iter()
            .filter(|w| w.weight > 0.0 && w.observation.open == Some(true))
            .filter_map(|w| w.observation.rtt_open_ms)
            .collect();
        rtts.sort_unstable();
        rtts.get(rtts.len() / 2).copied()
    }
}

/// The verdict on `relay` from its own rows and the third-party reports in `inputs`.
pub fn judge(relay: &RelaySummary, inputs: &Inputs, now: i64, max_age_secs: i64) -> Consensus {
    let mut obs: Vec<Observation> = relay
        .health
        .iter()
        .map(|h| own(h, inputs.regions.get(&h.monitor).cloned()))
        .collect();
    obs.extend(inputs.reports.get(&relay.url).cloned().unwrap_or_default());
    let params = Params {
        max_age_secs,
        relay_region: relay.geohash.clone(),
        ..Params::default()
    };
    let verdict = consensus::verdict(&obs, &inputs.tracks, &params, now);
    let observations = obs
        .iter()
        .map(|o| Weighed {
            weight: if verdict.thrown_out(&o.monitor) {
                0.0
            } else {
                match o.source {
                    Source::Own => 1.0,
                    Source::ThirdParty => inputs
                        .tracks
                        .get(&o.monitor)
                        .copied()
                        .unwrap_or_default()
                        .weight(),
                }
            },
            observation: o.clone(),
        })
        .collect();
    Consensus {
        label: verdict.label().as_str().to_owned(),
        verdict,
        observations,
    }
}

/// One relay's detail, with at most `limit` history rows (from `since`, up to `until`, of
/// `check`), and its consensus; `None`: no such relay. For the HTTP route and the relay page.
pub async fn relay_detail(
    api: &super::Api,
    url: &str,
    since: Option<i64>,
    until: Option<i64>,
    check: Option<&str>,
    limit: u32,
) -> Result<Option<(RelayDetail, Consensus)>, super::ReadError> {
    let read = api.reader.relay_detail(url, since, until, check, limit);
    let Some(detail) = api.read("relay", read).await? else {
        return Ok(None);
    };
    let now = crate::runtime::unix_now();
    let max_age = api.site.consensus.max_age_secs;
    let relay = std::slice::from_ref(&detail.relay);
    let inputs = api
        .read(
            "consensus",
            inputs(api.reader.as_ref(), relay, false, now, max_age),
        )
        .await?;
    let c = judge(&detail.relay, &inputs, now, max_age);
    Ok(Some((detail, c)))
}

/// Every relay of the archive (by the relays page, page after page), at most `cap`.
pub async fn all_relays(
    archive: &dyn Archive,
    cap: usize,
) -> Result<Vec<RelaySummary>, StoreError> {
    let mut out: Vec<RelaySummary> = Vec::new();
    let mut f = RelayFilter {
        network: None,
        nip: None,
        software: None,
        country: None,
        status: None,
        after: None,
        limit: 1_000,
    };
    loop {
        let mut page = archive.relays_page(&f).await?;
        let more = page.len() > f.limit as usize;
        page.truncate(f.limit as usize);
        f.after = page.last().map(|r| r.url.clone());
        out.extend(page);
        if !more || out.len() >= cap {
            out.truncate(cap);
            return Ok(out);
        }
    }
}

/// A stored event's tags, as string lists; none when the row has no tags (a lite archive).
fn tags_of(json: Option<&str>) -> Vec<Vec<String>> {
    json.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(monitor: &str, online: bool) -> MonitorHealth {
        MonitorHealth {
            monitor: monitor.into(),
            checked_at: 1_000,
            online,
            rtt_open_ms: online.then_some(12),
            rtt_read_ms: online.then_some(20),
            rtt_write_ms: None,
            reason: None,
            auth_required: Some(false),
            payment_required: None,
        }
    }

    #[test]
    fn own_results_and_third_party_reports_become_observations() {
        let up = own(&health("a", true), Some("u0".into()));
        assert_eq!(
            (up.open, up.read, up.write, up.rtt_open_ms),
            (Some(true), Some(true), None, Some(12))
        );
        assert_eq!(up.auth_required, Some(false));
        let down = own(&health("b", false), None);
        assert_eq!(
            (down.open, down.read, down.write),
            (Some(false), Some(false), Some(false))
        );
        let d = Discovery {
            d: "wss://r.example".into(),
            rtt_open: Some(5_000_000_000),
            rtt_write: Some(30),
            requirements: vec![("auth".into(), true)],
            geohash: Some("u0yjj".into()),
            ..Default::default()
        };
        let r = report("x".into(), 900, None, &d);
        assert_eq!(r.source, Source::ThirdParty);
        assert_eq!((r.open, r.read, r.write), (Some(true), None, Some(true)));
        assert_eq!(r.rtt_open_ms, Some(u32::MAX));
        assert_eq!(r.auth_required, Some(true));
        assert_eq!(r.relay_region.as_deref(), Some("u0yjj"));
    }

    #[test]
    fn a_relay_is_judged_on_both_and_flagged_monitors_weigh_nothing() {
        let relay = RelaySummary {
            url: "wss://r.example".into(),
            network: "clearnet".into(),
            discovered_at: 0,
            status: "offline".into(),
            name: None,
            software: None,
            supported_nips: vec![],
            country: None,
            geohash: None,
            lat: None,
            lon: None,
            health: vec![health("a", false), health("b", false)],
        };
        let liar = Discovery {
            d: "wss://r.example".into(),
            rtt_open: Some(1),
            geohash: Some("u0yjj".into()),
            ..Default::default()
        };
        let inputs = Inputs {
            reports: HashMap::from([(
                "wss://r.example".to_owned(),
                vec![report("liar".into(), 990, Some("xn76u".into()), &liar)],
            )]),
            ..Inputs::default()
        };
        let c = judge(&relay, &inputs, 1_010, 3_600);
        assert_eq!(c.label, "offline");
        assert_eq!(c.observations.len(), 3);
        let w: Vec<f64> = c.observations.iter().map(|o| o.weight).collect();
        assert_eq!(w, vec![1.0, 1.0, 0.0]);
        assert_eq!(c.verdict.agreement.get("liar"), Some(&false));
    }
}
