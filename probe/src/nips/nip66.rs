//! NIP-66 and profile events as pure functions: plain data in, unsigned events out.
//!
//! * kind 30166: `d`, `n`, `rtt-*`, `N`, `R`, `T`, `t`, `k`, `g`, `l` — all values strings.
//! * kind 10166: `frequency`, `["timeout", check, ms]` per check (each with its own timeout),
//!   `c`, `g`, `n`.
//! * kind 0 and kind 10002.

use nostr::{EventBuilder, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::MonitorConfig;
use crate::config::monitor::ProfileConfig;
use crate::model::Network;

pub const KIND_DISCOVERY: u16 = 30166;
pub const KIND_ANNOUNCEMENT: u16 = 10166;

/// The tags of a kind 30166, as plain strings, in publication order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovery {
    /// `d`: the relay URL.
    pub d: String,
    /// `n`: network.
    pub network: Option<String>,
    pub rtt_open: Option<u64>,
    pub rtt_read: Option<u64>,
    pub rtt_write: Option<u64>,
    /// `N`: supported NIPs.
    pub nips: Vec<String>,
    /// `R`: (requirement, required).
    pub requirements: Vec<(String, bool)>,
    /// `T`: relay types.
    pub types: Vec<String>,
    /// `t`: topics.
    pub topics: Vec<String>,
    /// `k`: (kind, accepted).
    pub kinds: Vec<(u16, bool)>,
    /// `g`: geohash.
    pub geohash: Option<String>,
    /// `l`: (value, namespace).
    pub labels: Vec<(String, String)>,
    /// Non-standard tags of the reference system (`ssl`, `geo-*`, `net-*`, `dns-*`, `http-*`),
    /// only when enabled.
    pub extra: Vec<Vec<String>>,
    /// The relay's NIP-11 document as JSON, or "".
    pub content: String,
}

impl Discovery {
    /// Tags in publication order.
    pub fn tags(&self) -> Vec<Vec<String>> {
        let mut t: Vec<Vec<String>> = vec![vec!["d".into(), self.d.clone()]];
        let mut push = |parts: &[&str]| t.push(parts.iter().map(|s| (*s).to_owned()).collect());
        if let Some(n) = &self.network {
            push(&["n", n]);
        }
        for (name, v) in [
            ("rtt-open", self.rtt_open),
            ("rtt-read", self.rtt_read),
            ("rtt-write", self.rtt_write),
        ] {
            if let Some(ms) = v {
                push(&[name, &ms.to_string()]);
            }
        }
        for n in &self.nips {
            push(&["N", n]);
        }
        for (r, required) in &self.requirements {
            let v = if *required {
                r.clone()
            } else {
                format!("!{r}")
            };
            push(&["R", &v]);
        }
        for ty in &self.types {
            push(&["T", ty]);
        }
        for topic in &self.topics {
            push(&["t", topic]);
        }
        for (k, accepted) in &self.kinds {
            let v = if *accepted {
                k.to_string()
            } else {
                format!("!{k}")
            };
            push(&["k", &v]);
        }
        if let Some(g) = &self.geohash {
            push(&["g", g]);
        }
        for (value, ns) in &self.labels {
            push(&["l", value, ns]);
        }
        for e in &self.extra {
            t.push(e.clone());
        }
        t
    }

    /// A fingerprint of what the event says, RTT values left out (they jitter every check):
    /// publication "only on change" compares these.
    pub fn fingerprint(&self) -> String {
        let mut copy = self.clone();
        copy.rtt_open = copy.rtt_open.map(|_| 0);
        copy.rtt_read = copy.rtt_read.map(|_| 0);
        copy.rtt_write = copy.rtt_write.map(|_| 0);
        let text = serde_json::to_string(&(copy.tags(), &copy.content)).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

impl Discovery {
    /// What a kind 30166's tags say (the inverse of [`Discovery::tags`]): `None` without a
    /// `d` tag. Unknown tags go to `extra`; values that do not parse are left out, so another
    /// monitor's event never fails the reader.
    pub fn parse(tags: &[Vec<String>], content: &str) -> Option<Discovery> {
        let mut d = Discovery {
            content: content.to_owned(),
            ..Default::default()
        };
        let mut seen_d = false;
        for t in tags {
            let (Some(name), value) = (t.first(), t.get(1)) else {
                continue;
            };
            let Some(v) = value else {
                continue;
            };
            let ms = || v.trim().parse::<u64>().ok();
            match name.as_str() {
                "d" if !seen_d => {
                    d.d = v.clone();
                    seen_d = true;
                }
                "n" => d.network = d.network.take().or_else(|| Some(v.clone())),
                "rtt-open" => d.rtt_open = d.rtt_open.or_else(ms),
                "rtt-read" => d.rtt_read = d.rtt_read.or_else(ms),
                "rtt-write" => d.rtt_write = d.rtt_write.or_else(ms),
                "N" => d.nips.push(v.clone()),
                "R" => match v.strip_prefix('!') {
                    Some(r) => d.requirements.push((r.to_owned(), false)),
                    None => d.requirements.push((v.clone(), true)),
                },
                "T" => d.types.push(v.clone()),
                "t" => d.topics.push(v.clone()),
                "k" => {
                    let (k, accepted) = match v.strip_prefix('!') {
                        Some(k) => (k, false),
                        None => (v.as_str(), true),
                    };
                    if let Ok(k) = k.parse() {
                        d.kinds.push((k, accepted));
                    }
                }
                "g" => d.geohash = d.geohash.take().or_else(|| Some(v.clone())),
                "l" => d
                    .labels
                    .push((v.clone(), t.get(2).cloned().unwrap_or_default())),
                _ => d.extra.push(t.clone()),
            }
        }
        seen_d.then_some(d)
    }

    /// Whether the event says the relay requires `what` (`auth`, `payment`, …): `None` when it
    /// does not say.
    pub fn requires(&self, what: &str) -> Option<bool> {
        self.requirements
            .iter()
            .find(|(r, _)| r == what)
            .map(|(_, required)| *required)
    }
}

/// Options of the 30166 derivation.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscoveryOptions {
    /// Add the reference system's non-standard tags.
    pub extra_tags: bool,
}

/// ISO-639-1 codes of NIP-11 `language_tags`: primary subtag, lowercased, two letters,
/// deduplicated; none when `*` (all languages) is listed.
pub fn languages(tags: &[String]) -> Vec<String> {
    if tags.iter().any(|t| t.trim() == "*") {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let primary = t
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if primary.len() == 2
            && primary.bytes().all(|b| b.is_ascii_lowercase())
            && !out.contains(&primary)
        {
            out.push(primary);
        }
    }
    out
}

fn to_tags(parts: Vec<Vec<String>>) -> Vec<Tag> {
    // Every part list is non-empty by construction, and Tag::parse only fails on empty input.
    parts
        .into_iter()
        .filter_map(|p| Tag::parse(p).ok())
        .collect()
}

/// Kind 30166 (pure).
pub fn build_30166(d: &Discovery, pubkey: PublicKey, created_at: u64) -> UnsignedEvent {
    EventBuilder::new(Kind::Custom(KIND_DISCOVERY), d.content.clone())
        .tags(to_tags(d.tags()))
        .custom_created_at(Timestamp::from(created_at))
        .build(pubkey)
}

/// The tags of a kind 10166.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Announcement {
    /// Seconds between checks of one relay.
    pub frequency: u64,
    /// (check, timeout ms), each check with its own timeout.
    pub timeouts: Vec<(String, u64)>,
    /// Checks run (`c`).
    pub checks: Vec<String>,
    pub geohash: Option<String>,
    pub networks: Vec<String>,
}

impl Announcement {
    /// From the monitor configuration: one `c` and one `timeout` per enabled check.
    pub fn from_config(cfg: &MonitorConfig, networks: &[Network]) -> Self {
        let c = &cfg.checks;
        let mut a = Announcement {
            frequency: cfg.recheck_secs.max(0) as u64,
            geohash: cfg.publish.geohash.clone(),
            networks: networks.iter().map(|n| n.as_str().to_owned()).collect(),
            ..Default::default()
        };
        let mut add = |name: &str, check: &crate::config::CheckConfig| {
            if check.enabled {
                a.timeouts.push((name.to_owned(), check.timeout_ms()));
                a.checks.push(name.to_owned());
            }
        };
        for phase in ["open", "read", "write", "auth"] {
            add(phase, &c.rtt);
        }
        add("nip11", &c.nip11);
        add("nip77", &c.nip77);
        add("ssl", &c.ssl);
        add("dns", &c.dns);
        add("geo", &c.geo);
        add("net", &c.net);
        add("http", &c.http);
        a
    }

    pub fn tags(&self) -> Vec<Vec<String>> {
        let mut t = vec![vec!["frequency".to_owned(), self.frequency.to_string()]];
        for (check, ms) in &self.timeouts {
            t.push(vec!["timeout".into(), check.clone(), ms.to_string()]);
        }
        for c in &self.checks {
            t.push(vec!["c".into(), c.clone()]);
        }
        if let Some(g) = &self.geohash {
            t.push(vec!["g".into(), g.clone()]);
        }
        for n in &self.networks {
            t.push(vec!["n".into(), n.clone()]);
        }
        t
    }
}

impl Announcement {
    /// What a kind 10166's tags say (the inverse of [`Announcement::tags`]); values that do
    /// not parse are left out.
    pub fn parse(tags: &[Vec<String>]) -> Announcement {
        let mut a = Announcement::default();
        for t in tags {
            match (t.first().map(String::as_str), t.get(1), t.get(2)) {
                (Some("frequency"), Some(v), _) => a.frequency = v.trim().parse().unwrap_or(0),
                (Some("timeout"), Some(check), Some(ms)) => {
                    if let Ok(ms) = ms.trim().parse() {
                        a.timeouts.push((check.clone(), ms));
                    }
                }
                (Some("c"), Some(v), _) => a.checks.push(v.clone()),
                (Some("g"), Some(v), _) if a.geohash.is_none() => a.geohash = Some(v.clone()),
                (Some("n"), Some(v), _) => a.networks.push(v.clone()),
                _ => {}
            }
        }
        a
    }
}

/// Kind 10166 (pure).
pub fn build_10166(a: &Announcement, pubkey: PublicKey, created_at: u64) -> UnsignedEvent {
    EventBuilder::new(Kind::Custom(KIND_ANNOUNCEMENT), "")
        .tags(to_tags(a.tags()))
        .custom_created_at(Timestamp::from(created_at))
        .build(pubkey)
}

/// Kind 0 profile with the non-empty fields (pure).
pub fn build_profile(p: &ProfileConfig, pubkey: PublicKey, created_at: u64) -> UnsignedEvent {
    let mut m = Map::new();
    for (k, v) in [
        ("name", &p.name),
        ("about", &p.about),
        ("picture", &p.picture),
        ("nip05", &p.nip05),
        ("website", &p.website),
        ("banner", &p.banner),
        ("lud16", &p.lud16),
    ] {
        if !v.is_empty() {
            m.insert(k.to_owned(), Value::String(v.clone()));
        }
    }
    EventBuilder::new(Kind::Metadata, Value::Object(m).to_string())
        .custom_created_at(Timestamp::from(created_at))
        .build(pubkey)
}

/// Kind 10002 listing `relays` as write relays (pure).
pub fn build_relay_list(relays: &[String], pubkey: PublicKey, created_at: u64) -> UnsignedEvent {
    let tags = relays
        .iter()
        .map(|r| vec!["r".to_owned(), r.clone(), "write".to_owned()])
        .collect();
    EventBuilder::new(Kind::RelayList, "")
        .tags(to_tags(tags))
        .custom_created_at(Timestamp::from(created_at))
        .build(pubkey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_primary_two_letter_codes() {
        let l = |v: &[&str]| languages(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(l(&["en", "en-US", "PT-br", "fil", "e"]), vec!["en", "pt"]);
        assert_eq!(l(&["en", "*"]), Vec::<String>::new());
    }

    #[test]
    fn announcement_has_one_timeout_per_check_with_its_own_value() {
        let mut cfg = MonitorConfig::default();
        cfg.checks.ssl.timeout_secs = 3.0;
        cfg.checks.geo.enabled = false;
        let a = Announcement::from_config(&cfg, &[Network::Clearnet]);
        let tags = a.tags();
        assert_eq!(tags[0], vec!["frequency", "14400"]);
        assert!(tags.contains(&vec!["timeout".into(), "ssl".into(), "3000".into()]));
        assert!(tags.contains(&vec!["timeout".into(), "open".into(), "10000".into()]));
        assert!(
            !tags
                .iter()
                .any(|t| t.get(1).map(String::as_str) == Some("geo"))
        );
        assert_eq!(
            tags.last().unwrap(),
            &vec!["n".to_owned(), "clearnet".to_owned()]
        );
    }

    use serde_json::json;

    #[test]
    fn profile_and_relay_list() {
        let keys = nostr::Keys::generate();
        let p = ProfileConfig::default();
        let ev = build_profile(&p, keys.public_key(), 5);
        assert_eq!(ev.kind, Kind::Metadata);
        let content: Value = serde_json::from_str(&ev.content).unwrap();
        assert_eq!(content, json!({"name": "Brotr Monitor", "about": p.about}));
        let ev = build_relay_list(&["wss://a.example".into()], keys.public_key(), 5);
        assert_eq!(ev.kind, Kind::RelayList);
        let tags: Vec<Vec<String>> = ev.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        assert_eq!(tags, vec![vec!["r", "wss://a.example", "write"]]);
    }

    #[test]
    fn a_30166_reads_back_what_was_published() {
        let d = Discovery {
            d: "wss://relay.example/".into(),
            network: Some("clearnet".into()),
            rtt_open: Some(41),
            rtt_read: Some(52),
            rtt_write: None,
            nips: vec!["1".into(), "11".into()],
            requirements: vec![("auth".into(), false), ("payment".into(), true)],
            types: vec!["PublicOutbox".into()],
            topics: vec!["bitcoin".into()],
            kinds: vec![(1, true), (4, false)],
            geohash: Some("u0yjj".into()),
            labels: vec![("en".into(), "ISO-639-1".into())],
            extra: vec![vec!["ssl".into(), "valid".into()]],
            content: "{}".into(),
        };
        let back = Discovery::parse(&d.tags(), "{}").unwrap();
        assert_eq!(back, d);
        assert_eq!(back.requires("auth"), Some(false));
        assert_eq!(back.requires("payment"), Some(true));
        assert_eq!(back.requires("writes"), None);
    }

    #[test]
    fn another_monitors_odd_30166_is_read_as_far_as_it_makes_sense() {
        let t = |v: &[&[&str]]| -> Vec<Vec<String>> {
            v.iter()
                .map(|t| t.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        // No `d`: not a relay report.
        assert_eq!(Discovery::parse(&t(&[&["n", "clearnet"]]), ""), None);
        // Values that are no numbers are left out; only the first `d` names the relay; empty
        // tags and valueless tags are skipped.
        let d = Discovery::parse(
            &t(&[
                &[],
                &["d", "wss://a.example"],
                &["d", "wss://b.example"],
                &["rtt-open", "fast"],
                &["rtt-read", "-3"],
                &["rtt-write"],
                &["k", "x"],
                &["g", "u0"],
                &["g", "dr"],
            ]),
            "",
        )
        .unwrap();
        assert_eq!(d.d, "wss://a.example");
        assert_eq!((d.rtt_open, d.rtt_read, d.rtt_write), (None, None, None));
        assert!(d.kinds.is_empty());
        assert_eq!(d.geohash.as_deref(), Some("u0"));
    }

    #[test]
    fn a_10166_reads_back_what_was_published() {
        let mut cfg = MonitorConfig::default();
        cfg.publish.geohash = Some("u0yjj".into());
        let a = Announcement::from_config(&cfg, &[Network::Clearnet, Network::Tor]);
        assert_eq!(Announcement::parse(&a.tags()), a);
        let odd = Announcement::parse(&[
            vec!["frequency".into(), "often".into()],
            vec!["timeout".into(), "open".into()],
            vec!["g".into()],
        ]);
        assert_eq!(odd, Announcement::default());
    }
}
