//! One verdict per relay from every vantage point's latest result: Brotr's own monitors and
//! third-party NIP-66 monitors (their kind 30166 events). NIP-66 warns that one monitor may be
//! wrong, partial or lying; the verdict is a weighted vote per check, with what does not fit
//! flagged:
//! - a monitor against the majority on whether the relay is up;
//! - an RTT faster than light allows between the monitor's region and the relay's;
//! - a result too old to vote.
//!
//! Weights: Brotr's own monitors 1. A third-party monitor weighs its track record: how often it
//! agreed with the verdict over the window the caller counts, smoothed as (agreed + 1) /
//! (rounds + 2), so a new monitor starts at one half and a monitor that keeps disagreeing sinks
//! toward 0. A result that breaks physics does not vote at all.
//!
//! Pure: the caller reads the results and track records, and stores the outcome.

use std::collections::BTreeMap;

use serde::Serialize;

/// Who made an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// One of this deployment's monitors (its results are in the database).
    Own,
    /// Another monitor, known by its kind 30166 events.
    ThirdParty,
}

/// One vantage point's latest result for a relay. `None`: the check did not run or said
/// nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Observation {
    /// The monitor's public key (hex).
    pub monitor: String,
    pub source: Source,
    /// Unix time of the result.
    pub at: i64,
    /// Geohash of the monitor's vantage point (its `g` tag), if it says.
    pub region: Option<String>,
    pub open: Option<bool>,
    pub read: Option<bool>,
    pub write: Option<bool>,
    pub auth_required: Option<bool>,
    pub payment_required: Option<bool>,
    /// Milliseconds to open a connection.
    pub rtt_open_ms: Option<u32>,
    /// Where the observation places the relay (a 30166's `g`), used for the speed-of-light
    /// bound when the relay's own position is not known.
    pub relay_region: Option<String>,
}

/// How often a monitor agreed with the verdict, over the caller's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct TrackRecord {
    pub agreed: u32,
    pub rounds: u32,
}

impl TrackRecord {
    /// Its weight as a third-party voter: (agreed + 1) / (rounds + 2).
    pub fn weight(self) -> f64 {
        (f64::from(self.agreed) + 1.0) / (f64::from(self.rounds) + 2.0)
    }

    /// After one more round, in which the monitor agreed with the verdict or not.
    pub fn after(self, agreed: bool) -> TrackRecord {
        TrackRecord {
            agreed: self.agreed + u32::from(agreed),
            rounds: self.rounds + 1,
        }
    }
}

/// The knobs of a verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Results older than this at `now` do not vote (flagged stale).
    pub max_age_secs: i64,
    /// The relay's geohash (from the geo check), for the speed-of-light bound.
    pub relay_region: Option<String>,
    /// An RTT below this share of the physical minimum is impossible (allows for geohash cells
    /// and clock granularity).
    pub light_tolerance: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_age_secs: 3 * 3600,
            relay_region: None,
            light_tolerance: 0.8,
        }
    }
}

/// A weighted vote on one yes/no question.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Vote {
    /// The answer: `None` when no voter said anything or the weights tie.
    pub value: Option<bool>,
    /// Total weight of the voters saying yes, and no.
    pub yes: f64,
    pub no: f64,
}

impl Vote {
    fn add(&mut self, said: Option<bool>, weight: f64) {
        match said {
            Some(true) => self.yes += weight,
            Some(false) => self.no += weight,
            None => {}
        }
    }

    fn close(mut self) -> Vote {
        const EPS: f64 = 1e-9;
        self.value = if self.yes > self.no + EPS {
            Some(true)
        } else if self.no > self.yes + EPS {
            Some(false)
        } else {
            None
        };
        self
    }
}

/// Why an observation stands out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Flag {
    /// It says the relay is up (or down) against the verdict.
    AgainstMajority { said_open: bool },
    /// Its RTT is below what light in fibre allows over the distance.
    FasterThanLight { rtt_ms: u32, min_ms: u32 },
    /// Too old to vote.
    Stale { age_secs: i64 },
}

/// A flagged observation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Disagreement {
    pub monitor: String,
    pub source: Source,
    pub flag: Flag,
}

/// The combined view of one relay.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Verdict {
    pub online: Vote,
    pub readable: Vote,
    pub writable: Vote,
    pub auth_required: Vote,
    pub payment_required: Vote,
    /// Median RTT to open, in ms, per region (the first two geohash characters, about
    /// 1,250 × 625 km), from the voters that agree the relay is online.
    pub rtt_by_region: BTreeMap<String, u32>,
    /// Observations that voted.
    pub vantage_points: usize,
    /// Voters whose `open` matches the verdict.
    pub agreeing: usize,
    /// The monitors that voted, and whether each agreed (for their track records).
    pub agreement: BTreeMap<String, bool>,
    pub disagreements: Vec<Disagreement>,
}

/// Kilometres per millisecond of light in fibre (about two thirds of c).
const FIBRE_KM_PER_MS: f64 = 200.0;

/// The smallest round trip, in ms, light in fibre allows between two geohashes' cells
/// (great-circle distance between their centres, there and back).
pub fn min_rtt_ms(a: &str, b: &str) -> Option<f64> {
    let (la, oa) = super::geohash::decode(a)?;
    let (lb, ob) = super::geohash::decode(b)?;
    let (la, oa, lb, ob) = (
        la.to_radians(),
        oa.to_radians(),
        lb.to_radians(),
        ob.to_radians(),
    );
    let h = ((lb - la) / 2.0).sin().powi(2) + la.cos() * lb.cos() * ((ob - oa) / 2.0).sin().powi(2);
    let km = 2.0 * 6371.0 * h.sqrt().min(1.0).asin();
    Some(2.0 * km / FIBRE_KM_PER_MS)
}

/// The verdict on one relay at `now` from every vantage point's latest observation;
/// `tracks` holds third-party monitors' records (absent: a new monitor).
pub fn verdict(
    observations: &[Observation],
    tracks: &BTreeMap<String, TrackRecord>,
    p: &Params,
    now: i64,
) -> Verdict {
    let mut disagreements = Vec::new();
    let mut voters: Vec<(&Observation, f64)> = Vec::new();
    for o in observations {
        let age = now - o.at;
        if age > p.max_age_secs {
            disagreements.push(flag(o, Flag::Stale { age_secs: age }));
            continue;
        }
        if let (Some(rtt), Some(mine), Some(relay)) = (
            o.rtt_open_ms,
            o.region.as_deref(),
            p.relay_region.as_deref().or(o.relay_region.as_deref()),
        ) && let Some(min) = min_rtt_ms(mine, relay)
            && f64::from(rtt) < min * p.light_tolerance
        {
            disagreements.push(flag(
                o,
                Flag::FasterThanLight {
                    rtt_ms: rtt,
                    min_ms: min.round() as u32,
                },
            ));
            continue;
        }
        let weight = match o.source {
            Source::Own => 1.0,
            Source::ThirdParty => tracks.get(&o.monitor).copied().unwrap_or_default().weight(),
        };
        voters.push((o, weight));
    }
    // Without the relay's position: a third party's RTT and an own monitor's RTT together
    // cover at least the distance between the two vantage points (relay in between, at best
    // on the line), so their sum has a floor too.
    let anchors: Vec<(u32, &str)> = voters
        .iter()
        .filter(|(o, _)| o.source == Source::Own)
        .filter_map(|(o, _)| Some((o.rtt_open_ms?, o.region.as_deref()?)))
        .collect();
    voters.retain(|(o, _)| {
        let (Source::ThirdParty, Some(rtt), Some(mine)) =
            (o.source, o.rtt_open_ms, o.region.as_deref())
        else {
            return true;
        };
        let worst = anchors
            .iter()
            .filter_map(|(theirs, region)| {
                let min = min_rtt_ms(mine, region)? * p.light_tolerance;
                (f64::from(rtt) + f64::from(*theirs) < min).then_some(min - f64::from(*theirs))
            })
            .fold(None, |a: Option<f64>, m| Some(a.map_or(m, |a| a.max(m))));
        match worst {
            Some(min) => {
                disagreements.push(flag(
                    o,
                    Flag::FasterThanLight {
                        rtt_ms: rtt,
                        min_ms: (min / p.light_tolerance).round() as u32,
                    },
                ));
                false
            }
            None => true,
        }
    });
    let tally = |get: fn(&Observation) -> Option<bool>| {
        let mut v = Vote::default();
        for (o, w) in &voters {
            v.add(get(o), *w);
        }
        v.close()
    };
    let online = tally(|o| o.open);
    let mut agreement = BTreeMap::new();
    let mut agreeing = 0;
    let mut rtts: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (o, _) in &voters {
        let agrees = match (o.open, online.value) {
            (Some(said), Some(verdict)) => said == verdict,
            // Said nothing on it, or nothing was decided: neither for nor against.
            _ => continue,
        };
        agreement.insert(o.monitor.clone(), agrees);
        if agrees {
            agreeing += 1;
            if let (Some(true), Some(rtt), Some(region)) = (o.open, o.rtt_open_ms, &o.region) {
                let key: String = region.chars().take(2).collect();
                rtts.entry(key).or_default().push(rtt);
            }
        } else if let Some(said) = o.open {
            disagreements.push(flag(o, Flag::AgainstMajority { said_open: said }));
        }
    }
    // Flagged as impossible: against the verdict for the record too.
    for d in &disagreements {
        if matches!(d.flag, Flag::FasterThanLight { .. }) {
            agreement.insert(d.monitor.clone(), false);
        }
    }
    let rtt_by_region = rtts
        .into_iter()
        .map(|(region, mut v)| {
            v.sort_unstable();
            (region, v[v.len() / 2])
        })
        .collect();
    Verdict {
        online,
        readable: tally(|o| o.read),
        writable: tally(|o| o.write),
        auth_required: tally(|o| o.auth_required),
        payment_required: tally(|o| o.payment_required),
        rtt_by_region,
        vantage_points: voters.len(),
        agreeing,
        agreement,
        disagreements,
    }
}

/// `service_state` of consensus: each third-party monitor's [`TrackRecord`] (service
/// `consensus`, type `track`, key: the monitor's hex public key).
pub const TRACK_SERVICE: &str = "consensus";
pub const TRACK_TYPE: &str = "track";
/// `service_state` of a monitor's declared vantage point (its 10166 `g`): service `vantage`,
/// type `geohash`, key: the monitor's hex public key, value `{"geohash": "…"}`.
pub const VANTAGE_SERVICE: &str = "vantage";
pub const VANTAGE_TYPE: &str = "geohash";

/// The one-word summary of a verdict, for tables, maps and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Online,
    Offline,
    /// The vantage points split: a tie, or the losing side holds more than a third of the
    /// weight.
    Disputed,
    /// Nobody voted on whether it is up.
    Unknown,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Online => "online",
            Label::Offline => "offline",
            Label::Disputed => "disputed",
            Label::Unknown => "unknown",
        }
    }

    /// From its name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Label> {
        [
            Label::Online,
            Label::Offline,
            Label::Disputed,
            Label::Unknown,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

impl Verdict {
    /// Whether `monitor`'s observation was thrown out of the vote (stale, or faster than
    /// light), rather than merely outvoted.
    pub fn thrown_out(&self, monitor: &str) -> bool {
        self.disagreements
            .iter()
            .any(|d| d.monitor == monitor && !matches!(d.flag, Flag::AgainstMajority { .. }))
    }

    pub fn label(&self) -> Label {
        let Vote { value, yes, no } = self.online;
        let total = yes + no;
        if total <= 0.0 {
            return Label::Unknown;
        }
        match value {
            None => Label::Disputed,
            Some(_) if yes.min(no) * 3.0 > total + 1e-9 => Label::Disputed,
            Some(true) => Label::Online,
            Some(false) => Label::Offline,
        }
    }
}

/// Folds one more cycle into a third-party monitor's record, keeping it to the last `window`
/// rounds (older rounds fade in proportion).
pub fn update_track(t: TrackRecord, agreed: u32, rounds: u32, window: u32) -> TrackRecord {
    let mut t = TrackRecord {
        agreed: t.agreed + agreed.min(rounds),
        rounds: t.rounds + rounds,
    };
    if window > 0 && t.rounds > window {
        t.agreed = (u64::from(t.agreed) * u64::from(window) / u64::from(t.rounds)) as u32;
        t.rounds = window;
    }
    t
}

fn flag(o: &Observation, flag: Flag) -> Disagreement {
    Disagreement {
        monitor: o.monitor.clone(),
        source: o.source,
        flag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    /// Frankfurt, New York, Tokyo (geohash cells).
    const FRA: &str = "u0yjj";
    const NYC: &str = "dr5ru";
    const TYO: &str = "xn76u";

    fn obs(monitor: &str, source: Source, open: Option<bool>) -> Observation {
        Observation {
            monitor: monitor.into(),
            source,
            at: NOW - 60,
            region: Some(FRA.into()),
            open,
            read: open,
            write: None,
            auth_required: None,
            payment_required: None,
            rtt_open_ms: open.filter(|o| *o).map(|_| 40),
            relay_region: None,
        }
    }

    fn own(m: &str, open: Option<bool>) -> Observation {
        obs(m, Source::Own, open)
    }

    fn third(m: &str, open: Option<bool>) -> Observation {
        obs(m, Source::ThirdParty, open)
    }

    fn none() -> BTreeMap<String, TrackRecord> {
        BTreeMap::new()
    }

    #[test]
    fn the_weighted_majority_decides_each_check() {
        // (observations, expected online, expected agreeing)
        let cases: Vec<(Vec<Observation>, Option<bool>, usize)> = vec![
            (vec![], None, 0),
            (vec![own("a", Some(true))], Some(true), 1),
            (vec![own("a", Some(false))], Some(false), 1),
            // Two of three own monitors.
            (
                vec![
                    own("a", Some(true)),
                    own("b", Some(true)),
                    own("c", Some(false)),
                ],
                Some(true),
                2,
            ),
            // A tie is undecided, and nobody is for or against.
            (vec![own("a", Some(true)), own("b", Some(false))], None, 0),
            // Two new third parties (1/2 each) tie one own monitor (1): undecided.
            (
                vec![
                    own("a", Some(false)),
                    third("x", Some(true)),
                    third("y", Some(true)),
                ],
                None,
                0,
            ),
            // Three new third parties (1.5) outweigh one own monitor.
            (
                vec![
                    own("a", Some(false)),
                    third("x", Some(true)),
                    third("y", Some(true)),
                    third("z", Some(true)),
                ],
                Some(true),
                3,
            ),
            // A monitor that said nothing on it votes for nothing.
            (vec![own("a", Some(true)), own("b", None)], Some(true), 1),
        ];
        for (i, (o, online, agreeing)) in cases.into_iter().enumerate() {
            let v = verdict(&o, &none(), &Params::default(), NOW);
            assert_eq!(v.online.value, online, "case {i}: {v:?}");
            assert_eq!(v.agreeing, agreeing, "case {i}: {v:?}");
        }
    }

    #[test]
    fn each_check_is_voted_on_its_own() {
        let mut a = own("a", Some(true));
        a.write = Some(false);
        a.auth_required = Some(true);
        let mut b = own("b", Some(true));
        b.write = Some(false);
        b.payment_required = Some(false);
        let v = verdict(&[a, b], &none(), &Params::default(), NOW);
        assert_eq!(v.online.value, Some(true));
        assert_eq!(v.readable.value, Some(true));
        assert_eq!(v.writable.value, Some(false));
        assert_eq!(v.auth_required.value, Some(true));
        assert_eq!(v.payment_required.value, Some(false));
        assert_eq!((v.writable.yes, v.writable.no), (0.0, 2.0));
    }

    #[test]
    fn a_monitor_reporting_a_dead_relay_up_is_outvoted_and_flagged() {
        let o = vec![
            own("a", Some(false)),
            own("b", Some(false)),
            own("c", Some(false)),
            third("liar", Some(true)),
        ];
        let v = verdict(&o, &none(), &Params::default(), NOW);
        assert_eq!(v.online.value, Some(false));
        assert_eq!(v.agreeing, 3);
        assert_eq!(v.agreement.get("liar"), Some(&false));
        assert_eq!(
            v.disagreements,
            vec![Disagreement {
                monitor: "liar".into(),
                source: Source::ThirdParty,
                flag: Flag::AgainstMajority { said_open: true },
            }]
        );
    }

    #[test]
    fn an_rtt_faster_than_light_is_flagged_and_does_not_vote() {
        // Frankfurt to Tokyo is about 9,300 km: at least 93 ms there and back in fibre.
        let min = min_rtt_ms(FRA, TYO).unwrap();
        assert!((90.0..97.0).contains(&min), "{min}");
        let p = Params {
            relay_region: Some(TYO.into()),
            ..Params::default()
        };
        let mut liar = third("liar", Some(true));
        liar.rtt_open_ms = Some(5);
        let mut honest = own("a", Some(true));
        honest.rtt_open_ms = Some(240);
        let v = verdict(&[liar, honest], &none(), &p, NOW);
        assert_eq!(v.vantage_points, 1, "the impossible result does not vote");
        assert_eq!(v.online.value, Some(true));
        assert_eq!(v.agreement.get("liar"), Some(&false));
        assert!(matches!(
            v.disagreements[0].flag,
            Flag::FasterThanLight { rtt_ms: 5, min_ms } if (90..97).contains(&min_ms)
        ));
        // Within the bound (and with no relay region at all) nothing is flagged.
        let mut near = third("near", Some(true));
        near.rtt_open_ms = Some(100);
        assert!(
            verdict(&[near.clone()], &none(), &p, NOW)
                .disagreements
                .is_empty()
        );
        assert!(
            verdict(&[near], &none(), &Params::default(), NOW)
                .disagreements
                .is_empty()
        );
    }

    #[test]
    fn stale_results_do_not_vote() {
        let mut old = own("old", Some(true));
        old.at = NOW - 4 * 3600;
        let v = verdict(
            &[old, own("a", Some(false))],
            &none(),
            &Params::default(),
            NOW,
        );
        assert_eq!(v.online.value, Some(false));
        assert_eq!(v.vantage_points, 1);
        assert!(
            matches!(v.disagreements[0].flag, Flag::Stale { age_secs } if age_secs == 4 * 3600)
        );
    }

    #[test]
    fn rtt_is_the_median_per_region_of_those_agreeing() {
        let mut o = Vec::new();
        for (m, region, rtt) in [
            ("a", FRA, 30),
            ("b", FRA, 50),
            ("c", FRA, 40),
            ("d", NYC, 90),
        ] {
            let mut x = own(m, Some(true));
            x.region = Some(region.into());
            x.rtt_open_ms = Some(rtt);
            o.push(x);
        }
        let v = verdict(&o, &none(), &Params::default(), NOW);
        assert_eq!(
            v.rtt_by_region,
            BTreeMap::from([("u0".to_owned(), 40), ("dr".to_owned(), 90)])
        );
    }

    #[test]
    fn a_lying_monitor_loses_weight_round_after_round() {
        let mut tracks = BTreeMap::new();
        let mut weights = Vec::new();
        for _ in 0..5 {
            let o = vec![
                own("a", Some(false)),
                own("b", Some(false)),
                own("c", Some(false)),
                third("liar", Some(true)),
            ];
            let v = verdict(&o, &tracks, &Params::default(), NOW);
            assert_eq!(v.online.value, Some(false));
            let t: TrackRecord = tracks.get("liar").copied().unwrap_or_default();
            weights.push(t.weight());
            tracks.insert("liar".into(), t.after(v.agreement["liar"]));
        }
        assert!(weights.windows(2).all(|w| w[1] < w[0]), "{weights:?}");
        assert!((weights[0] - 0.5).abs() < 1e-9);
        assert!(weights[4] < 0.2, "{weights:?}");
        // A monitor that keeps agreeing climbs toward 1.
        let t = (0..8).fold(TrackRecord::default(), |t, _| t.after(true));
        assert!(t.weight() > 0.89);
    }

    #[test]
    fn a_third_party_faster_than_light_against_an_own_monitor_is_flagged_without_the_relays_position()
     {
        // Own monitor in Frankfurt reaches the relay in 2 ms (it is next door); a third party
        // in Tokyo claims 3 ms. Together they would span Frankfurt-Tokyo (>= 93 ms) in 5 ms.
        let mut near = own("a", Some(true));
        near.rtt_open_ms = Some(2);
        let mut liar = third("liar", Some(true));
        liar.region = Some(TYO.into());
        liar.rtt_open_ms = Some(3);
        let v = verdict(&[near.clone(), liar], &none(), &Params::default(), NOW);
        assert_eq!(v.vantage_points, 1);
        assert_eq!(v.agreement.get("liar"), Some(&false));
        assert!(
            matches!(
                v.disagreements[0].flag,
                Flag::FasterThanLight { rtt_ms: 3, min_ms } if (85..97).contains(&min_ms)
            ),
            "{v:?}"
        );
        // An honest Tokyo monitor (250 ms) is no problem; nor is one with no region.
        let mut honest = third("honest", Some(true));
        honest.region = Some(TYO.into());
        honest.rtt_open_ms = Some(250);
        let mut nowhere = third("nowhere", Some(true));
        nowhere.region = None;
        nowhere.rtt_open_ms = Some(1);
        let v = verdict(&[near, honest, nowhere], &none(), &Params::default(), NOW);
        assert!(v.disagreements.is_empty(), "{v:?}");
        assert_eq!(v.vantage_points, 3);
    }

    #[test]
    fn the_label_summarizes_the_vote_on_being_up() {
        let cases: Vec<(Vec<Observation>, Label)> = vec![
            (vec![], Label::Unknown),
            (vec![own("a", None)], Label::Unknown),
            (vec![own("a", Some(true))], Label::Online),
            (
                vec![own("a", Some(false)), own("b", Some(false))],
                Label::Offline,
            ),
            (
                vec![own("a", Some(true)), own("b", Some(false))],
                Label::Disputed,
            ),
            // 2 against 1: the loser holds a third, not more.
            (
                vec![
                    own("a", Some(true)),
                    own("b", Some(true)),
                    own("c", Some(false)),
                ],
                Label::Online,
            ),
            // 3 against 2: disputed.
            (
                vec![
                    own("a", Some(true)),
                    own("b", Some(true)),
                    own("c", Some(true)),
                    own("d", Some(false)),
                    own("e", Some(false)),
                ],
                Label::Disputed,
            ),
            // 3 against one new third party (1/2): a seventh, not disputed.
            (
                vec![
                    own("a", Some(false)),
                    own("b", Some(false)),
                    own("c", Some(false)),
                    third("x", Some(true)),
                ],
                Label::Offline,
            ),
        ];
        for (i, (o, label)) in cases.into_iter().enumerate() {
            let v = verdict(&o, &none(), &Params::default(), NOW);
            assert_eq!(v.label(), label, "case {i}: {v:?}");
            assert_eq!(Label::parse(label.as_str()), Some(label));
        }
        assert_eq!(Label::parse("up"), None);
    }

    #[test]
    fn a_track_record_keeps_to_its_window() {
        let t = update_track(TrackRecord::default(), 3, 4, 100);
        assert_eq!(
            t,
            TrackRecord {
                agreed: 3,
                rounds: 4
            }
        );
        // Past the window, both shrink in proportion: 90 of 180 becomes 50 of 100.
        let t = update_track(
            TrackRecord {
                agreed: 90,
                rounds: 170,
            },
            0,
            10,
            100,
        );
        assert_eq!(
            t,
            TrackRecord {
                agreed: 50,
                rounds: 100
            }
        );
        // More agreements than rounds are not believed.
        assert_eq!(
            update_track(TrackRecord::default(), 9, 2, 100),
            TrackRecord {
                agreed: 2,
                rounds: 2
            }
        );
    }

    #[test]
    fn a_claim_that_contradicts_itself_is_flagged() {
        // Nothing known of the relay; the liar places it in Frankfurt, itself in Tokyo, and
        // claims 1 ms.
        let mut liar = third("liar", Some(true));
        liar.region = Some(TYO.into());
        liar.relay_region = Some(FRA.into());
        liar.rtt_open_ms = Some(1);
        let o = vec![own("a", Some(false)), own("b", Some(false)), liar];
        let v = verdict(&o, &none(), &Params::default(), NOW);
        assert_eq!(v.online.value, Some(false));
        assert_eq!(v.vantage_points, 2);
        assert_eq!(v.agreement.get("liar"), Some(&false));
        assert!(matches!(
            v.disagreements[0].flag,
            Flag::FasterThanLight { rtt_ms: 1, .. }
        ));
        // The relay's known position wins over the claim: a Tokyo relay 1 ms from Tokyo is fine.
        let p = Params {
            relay_region: Some(TYO.into()),
            ..Params::default()
        };
        let mut fine = third("fine", Some(true));
        fine.region = Some(TYO.into());
        fine.relay_region = Some(FRA.into());
        fine.rtt_open_ms = Some(1);
        assert!(verdict(&[fine], &none(), &p, NOW).disagreements.is_empty());
    }
}
