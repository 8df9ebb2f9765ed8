//! NIP-66 and profile events as pure functions: plain data in, unsigned events out.
//!
//! * kind 30166: `d`, `n`, `rtt-*`, `N`, `R`, `T`, `t`, `k`, `g`, `l` — all values strings.
//! * kind 10166: `frequency`, `["timeout", check, ms]` per check (each with its own timeout),
//!   `c`, `g`, `n`.
//! * kind 0 and kind 10002.

use nostr::{EventBuilder, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::report::RelayReport;
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

/// Options of the 30166 derivation.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscoveryOptions {
    /// Add the reference system's non-standard tags.
    pub extra_tags: bool,
}

/// Derives a 30166 from a check report (pure). Probe results win over NIP-11 claims; `R` and
/// `T` are only published with evidence (a reachable relay or a NIP-11 document), so a dead
/// relay is not advertised as `PublicInbox` (spec weakness 6).
pub fn discovery_from_report(r: &RelayReport, opts: DiscoveryOptions) -> Discovery {
    let doc = r.nip11_doc();
    let rtt = r
        .rtt
        .as_ref()
        .filter(|c| c.data.rtt_open.is_some())
        .map(|c| &c.data);
    let mut out = Discovery {
        d: r.relay.clone(),
        network: Some(r.network.clone()),
        rtt_open: rtt.and_then(|d| d.rtt_open),
        rtt_read: rtt.and_then(|d| d.rtt_read),
        rtt_write: rtt.and_then(|d| d.rtt_write),
        content: doc.map(|d| d.to_value().to_string()).unwrap_or_default(),
        ..Default::default()
    };

    // N: NIP-11's list, corrected by what was probed.
    let mut nips: Vec<i64> = doc.map(|d| d.supported_nips()).unwrap_or_default();
    let saw_auth = rtt.is_some_and(|d| {
        d.auth_challenge == Some(true) || d.read_auth == Some(true) || d.write_auth == Some(true)
    });
    if saw_auth {
        nips.push(42);
    }
    match r.nip77.as_ref().and_then(|c| c.data.negentropy) {
        Some(true) => nips.push(77),
        Some(false) if r.nip77.as_ref().is_some_and(|c| c.success) => nips.retain(|n| *n != 77),
        _ => {}
    }
    nips.sort_unstable();
    nips.dedup();
    out.nips = nips.iter().map(i64::to_string).collect();

    // R: probe first, NIP-11 second, nothing without evidence.
    let wrote = rtt.is_some_and(|d| d.rtt_write.is_some());
    let refusal = rtt.and_then(|d| d.write_refused.as_ref());
    let read_auth = rtt.is_some_and(|d| d.read_auth == Some(true));
    let write_auth = rtt.is_some_and(|d| d.write_auth == Some(true));
    let auth = if read_auth || write_auth {
        Some(true)
    } else if wrote {
        Some(false)
    } else {
        doc.and_then(|d| d.auth_required())
    };
    let payment = if refusal.is_some_and(|f| f.payment) {
        Some(true)
    } else if wrote {
        Some(false)
    } else {
        doc.and_then(|d| d.payment_required())
    };
    let writes = if wrote {
        Some(false)
    } else if refusal.is_some_and(|f| matches!(f.prefix.as_str(), "restricted" | "blocked")) {
        Some(true)
    } else {
        doc.and_then(|d| d.restricted_writes())
    };
    let pow =
        if refusal.is_some_and(|f| f.is_pow()) || doc.is_some_and(|d| d.min_pow_difficulty() > 0) {
            Some(true)
        } else if wrote || doc.is_some() {
            Some(false)
        } else {
            None
        };
    for (name, v) in [
        ("auth", auth),
        ("payment", payment),
        ("writes", writes),
        ("pow", pow),
    ] {
        if let Some(v) = v {
            out.requirements.push((name.to_owned(), v));
        }
    }

    // T: only with evidence that the relay exists.
    if rtt.is_some() || doc.is_some() {
        if nips.contains(&50) {
            out.types.push("Search".into());
        }
        if nips.contains(&29) {
            out.types.push("Community".into());
        }
        let auth = auth == Some(true);
        let main = if read_auth && auth && write_auth {
            "PrivateStorage"
        } else if read_auth {
            "PrivateInbox"
        } else if auth || writes == Some(true) || payment == Some(true) {
            "PublicOutbox"
        } else {
            "PublicInbox"
        };
        out.types.push(main.into());
    }

    if let Some(d) = doc {
        out.topics = d.strings("tags");
    }
    if let Some(d) = rtt
        && let Some(kind) = d.write_kind
    {
        if d.rtt_write.is_some() {
            out.kinds.push((kind, true));
        } else if refusal
            .is_some_and(|f| matches!(f.prefix.as_str(), "restricted" | "blocked" | "invalid"))
        {
            out.kinds.push((kind, false));
        }
    }

    let geo = r.geo.as_ref().filter(|c| c.success).map(|c| &c.data);
    let net = r.net.as_ref().filter(|c| c.success).map(|c| &c.data);
    out.geohash = geo.and_then(|g| g.geo_hash.clone());
    if let Some(d) = doc {
        out.labels.extend(
            languages(&d.strings("language_tags"))
                .into_iter()
                .map(|l| (l, "ISO-639-1".to_owned())),
        );
    }
    if let Some(g) = geo {
        if let Some(c) = &g.geo_country {
            out.labels.push((c.clone(), "ISO-3166-1".into()));
        }
        if let Some(c) = &g.geo_city {
            out.labels.push((c.clone(), "nip66.label.city".into()));
        }
        if let Some(tz) = &g.geo_tz {
            out.labels.push((tz.clone(), "IANA-tz".into()));
        }
    }
    if let Some(n) = net {
        if let Some(asn) = n.net_asn {
            out.labels.push((asn.to_string(), "IANA-asn".into()));
        }
        if let Some(org) = &n.net_asn_org {
            out.labels.push((org.clone(), "IANA-asnOrg".into()));
        }
    }
    if opts.extra_tags {
        out.extra = extra_tags(r);
    }
    out
}

/// The reference system's non-standard tags (spec §7.6 items 3-7).
fn extra_tags(r: &RelayReport) -> Vec<Vec<String>> {
    let mut t: Vec<Vec<String>> = Vec::new();
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            t.push(vec![k.to_owned(), v]);
        }
    };
    if let Some(s) = r.ssl.as_ref().filter(|c| c.success).map(|c| &c.data) {
        push(
            "ssl",
            s.ssl_valid
                .map(|v| if v { "valid" } else { "!valid" }.to_owned()),
        );
        push("ssl-expires", s.ssl_expires.map(|v| v.to_string()));
        push("ssl-issuer", s.ssl_issuer.clone());
    }
    if let Some(n) = r.net.as_ref().filter(|c| c.success).map(|c| &c.data) {
        push("net-ip", n.net_ip.clone());
        push("net-ipv6", n.net_ipv6.clone());
        push("net-asn", n.net_asn.map(|v| v.to_string()));
        push("net-asn-org", n.net_asn_org.clone());
    }
    if let Some(g) = r.geo.as_ref().filter(|c| c.success).map(|c| &c.data) {
        push("geo-country", g.geo_country.clone());
        push("geo-city", g.geo_city.clone());
        push("geo-lat", g.geo_lat.map(|v| v.to_string()));
        push("geo-lon", g.geo_lon.map(|v| v.to_string()));
        push("geo-tz", g.geo_tz.clone());
    }
    if let Some(d) = r.dns.as_ref().filter(|c| c.success).map(|c| &c.data) {
        push("dns-ip", d.dns_ips.first().cloned());
        push("dns-ip6", d.dns_ips_v6.first().cloned());
        push("dns-cname", d.dns_cname.clone());
        push("dns-ttl", d.dns_ttl.map(|v| v.to_string()));
    }
    if let Some(h) = r.http.as_ref().filter(|c| c.success).map(|c| &c.data) {
        push("http-server", h.http_server.clone());
        push("http-powered-by", h.http_powered_by.clone());
    }
    t
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

    use crate::model::RelayUrl;
    use crate::monitor::nip11::Nip11;
    use crate::monitor::report::{Check, Nip11Data, Nip77Data, Refusal, RttData};
    use serde_json::json;

    fn report(rtt: Option<RttData>, nip11: Option<serde_json::Value>) -> RelayReport {
        let url = RelayUrl::parse("wss://relay.example.com").unwrap();
        let mut r = RelayReport::new(&url, 1);
        r.rtt = rtt.map(Check::ok);
        r.nip11 = nip11.map(|v| {
            Check::ok(Nip11Data {
                doc: Nip11::from_value(&v).unwrap(),
                cors: None,
            })
        });
        r
    }

    fn open() -> RttData {
        RttData {
            rtt_open: Some(5),
            rtt_read: Some(6),
            write_kind: Some(22456),
            ..Default::default()
        }
    }

    fn r_and_t(r: &RelayReport) -> (Vec<String>, Vec<String>) {
        let d = discovery_from_report(r, DiscoveryOptions::default());
        let req = d
            .requirements
            .iter()
            .map(|(k, v)| if *v { k.clone() } else { format!("!{k}") })
            .collect();
        (req, d.types)
    }

    #[test]
    fn requirement_and_type_matrix() {
        let wrote = RttData {
            rtt_write: Some(7),
            ..open()
        };
        let refused = |msg: &str| RttData {
            write_refused: Some(Refusal::parse(msg)),
            write_auth: Refusal::parse(msg).is_auth().then_some(true),
            ..open()
        };
        let nip11_paid = json!({"supported_nips": [1, 50], "limitation": {"payment_required": true, "auth_required": true}});
        let cases: Vec<(&str, RelayReport, &[&str], &[&str])> = vec![
            (
                "probe beats NIP-11",
                report(Some(wrote.clone()), Some(nip11_paid.clone())),
                &["!auth", "!payment", "!writes", "!pow"],
                &["Search", "PublicInbox"],
            ),
            (
                "NIP-11 alone",
                report(None, Some(nip11_paid)),
                &["auth", "payment", "!pow"],
                &["Search", "PublicOutbox"],
            ),
            (
                "auth-required write",
                report(Some(refused("auth-required: log in")), None),
                &["auth"],
                &["PublicOutbox"],
            ),
            (
                "paid restricted write",
                report(Some(refused("restricted: paid relay")), None),
                &["payment", "writes"],
                &["PublicOutbox"],
            ),
            (
                "pow refusal",
                report(Some(refused("pow: 28 bits")), None),
                &["pow"],
                &["PublicInbox"],
            ),
            (
                "read needs auth",
                report(
                    Some(RttData {
                        read_auth: Some(true),
                        rtt_read: None,
                        ..open()
                    }),
                    None,
                ),
                &["auth"],
                &["PrivateInbox"],
            ),
            ("nothing known", report(None, None), &[], &[]),
        ];
        for (name, r, want_r, want_t) in cases {
            let (req, types) = r_and_t(&r);
            assert_eq!(req, want_r, "{name}: R");
            assert_eq!(types, want_t, "{name}: T");
        }
    }

    #[test]
    fn a_dead_relay_gets_no_r_or_t_tags() {
        let url = RelayUrl::parse("wss://relay.example.com").unwrap();
        let mut r = RelayReport::new(&url, 1);
        r.rtt = Some(Check::failed("open: refused"));
        r.nip11 = Some(Check::failed("connection failed"));
        let tags = discovery_from_report(&r, DiscoveryOptions::default()).tags();
        assert_eq!(
            tags,
            vec![vec!["d", "wss://relay.example.com"], vec!["n", "clearnet"]]
        );
    }

    #[test]
    fn negentropy_probe_corrects_the_nip_list() {
        let mut r = report(Some(open()), Some(json!({"supported_nips": [1, 77]})));
        r.nip77 = Some(Check::ok(Nip77Data {
            negentropy: Some(false),
            ..Default::default()
        }));
        assert_eq!(
            discovery_from_report(&r, DiscoveryOptions::default()).nips,
            vec!["1"]
        );
        r.nip77 = Some(Check::ok(Nip77Data {
            negentropy: Some(true),
            ..Default::default()
        }));
        r.nip11 = None;
        assert_eq!(
            discovery_from_report(&r, DiscoveryOptions::default()).nips,
            vec!["77"]
        );
    }

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
    fn extra_tags_are_opt_in() {
        use crate::monitor::report::{HttpData, SslData};
        let mut r = report(Some(open()), None);
        r.ssl = Some(Check::ok(SslData {
            ssl_valid: Some(false),
            ssl_expires: Some(1),
            ..Default::default()
        }));
        r.http = Some(Check::ok(HttpData {
            http_server: Some("nginx".into()),
            http_powered_by: None,
        }));
        let plain = discovery_from_report(&r, DiscoveryOptions::default()).tags();
        assert!(
            !plain
                .iter()
                .any(|t| t[0].starts_with("ssl") || t[0].starts_with("http"))
        );
        let extra = discovery_from_report(&r, DiscoveryOptions { extra_tags: true }).tags();
        for t in [
            ["ssl", "!valid"],
            ["ssl-expires", "1"],
            ["http-server", "nginx"],
        ] {
            assert!(extra.contains(&t.map(str::to_owned).to_vec()), "{t:?}");
        }
    }
}
