//! From a check report to the tags of a kind 30166 (pure): probe results win over NIP-11
//! claims; `R` and `T` are only published with evidence (a reachable relay or a NIP-11
//! document), so a dead relay is not advertised as `PublicInbox`.

use super::report::{RelayReport, RttData};
use crate::nips::nip11::Nip11;
use crate::nips::nip66::{Discovery, DiscoveryOptions, languages};

/// Derives a 30166 from a check report (pure).
pub fn discovery_from_report(r: &RelayReport, opts: DiscoveryOptions) -> Discovery {
    let doc = r.nip11_doc();
    let rtt = r
        .rtt
        .as_ref()
        .filter(|c| c.data.rtt_open.is_some())
        .map(|c| &c.data);
    let nips = supported_nips(r, doc, rtt);
    let req = Requirements::of(doc, rtt);
    let mut out = Discovery {
        d: r.relay.clone(),
        network: Some(r.network.clone()),
        rtt_open: rtt.and_then(|d| d.rtt_open),
        rtt_read: rtt.and_then(|d| d.rtt_read),
        rtt_write: rtt.and_then(|d| d.rtt_write),
        content: doc.map(|d| d.to_value().to_string()).unwrap_or_default(),
        nips: nips.iter().map(i64::to_string).collect(),
        requirements: req.tags(),
        ..Default::default()
    };
    // T: only with evidence that the relay exists.
    if rtt.is_some() || doc.is_some() {
        out.types = relay_types(&nips, &req);
    }
    if let Some(d) = doc {
        out.topics = d.strings("tags");
    }
    out.kinds = write_kinds(rtt);
    out.geohash = r
        .geo
        .as_ref()
        .filter(|c| c.success)
        .and_then(|c| c.data.geo_hash.clone());
    out.labels = labels(r, doc);
    if opts.extra_tags {
        out.extra = extra_tags(r);
    }
    out
}

/// `N`: NIP-11's list, corrected by what was probed (42 when the relay asked for AUTH, 77 added
/// or removed by the NIP-77 probe).
fn supported_nips(r: &RelayReport, doc: Option<&Nip11>, rtt: Option<&RttData>) -> Vec<i64> {
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
    nips
}

/// `R`: probe first, NIP-11 second, nothing without evidence.
#[derive(Debug, Clone, Copy, Default)]
struct Requirements {
    auth: Option<bool>,
    payment: Option<bool>,
    writes: Option<bool>,
    pow: Option<bool>,
    read_auth: bool,
    write_auth: bool,
}

impl Requirements {
    fn of(doc: Option<&Nip11>, rtt: Option<&RttData>) -> Self {
        let wrote = rtt.is_some_and(|d| d.rtt_write.is_some());
        let refusal = rtt.and_then(|d| d.write_refused.as_ref());
        let read_auth = rtt.is_some_and(|d| d.read_auth == Some(true));
        let write_auth = rtt.is_some_and(|d| d.write_auth == Some(true));
        // Probe evidence first; `None` falls back to the NIP-11 claim.
        let probed = |required: bool, allowed: bool| {
            if required {
                Some(true)
            } else if allowed {
                Some(false)
            } else {
                None
            }
        };
        let auth = probed(read_auth || write_auth, wrote).or(doc.and_then(|d| d.auth_required()));
        let payment = probed(refusal.is_some_and(|f| f.payment), wrote)
            .or(doc.and_then(|d| d.payment_required()));
        let restricted =
            refusal.is_some_and(|f| matches!(f.prefix.as_str(), "restricted" | "blocked"));
        let writes = if wrote {
            Some(false)
        } else {
            probed(restricted, false).or(doc.and_then(|d| d.restricted_writes()))
        };
        let pow_asked =
            refusal.is_some_and(|f| f.is_pow()) || doc.is_some_and(|d| d.min_pow_difficulty() > 0);
        let pow = probed(pow_asked, wrote || doc.is_some());
        Requirements {
            auth,
            payment,
            writes,
            pow,
            read_auth,
            write_auth,
        }
    }

    fn tags(&self) -> Vec<(String, bool)> {
        [
            ("auth", self.auth),
            ("payment", self.payment),
            ("writes", self.writes),
            ("pow", self.pow),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name.to_owned(), v)))
        .collect()
    }
}

/// `T`: `Search` (NIP-50), `Community` (NIP-29), then the one main type.
fn relay_types(nips: &[i64], req: &Requirements) -> Vec<String> {
    let mut types = Vec::new();
    if nips.contains(&50) {
        types.push("Search".into());
    }
    if nips.contains(&29) {
        types.push("Community".into());
    }
    let auth = req.auth == Some(true);
    let main = if req.read_auth && auth && req.write_auth {
        "PrivateStorage"
    } else if req.read_auth {
        "PrivateInbox"
    } else if auth || req.writes == Some(true) || req.payment == Some(true) {
        "PublicOutbox"
    } else {
        "PublicInbox"
    };
    types.push(main.into());
    types
}

/// `k`: the probe's write kind, `!`-prefixed when refused as restricted, blocked or invalid.
fn write_kinds(rtt: Option<&RttData>) -> Vec<(u16, bool)> {
    let Some(d) = rtt else { return Vec::new() };
    let Some(kind) = d.write_kind else {
        return Vec::new();
    };
    let refused = d
        .write_refused
        .as_ref()
        .is_some_and(|f| matches!(f.prefix.as_str(), "restricted" | "blocked" | "invalid"));
    if d.rtt_write.is_some() {
        vec![(kind, true)]
    } else if refused {
        vec![(kind, false)]
    } else {
        Vec::new()
    }
}

/// `l`: languages, country, city, time zone, ASN and its organisation.
fn labels(r: &RelayReport, doc: Option<&Nip11>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(d) = doc {
        out.extend(
            languages(&d.strings("language_tags"))
                .into_iter()
                .map(|l| (l, "ISO-639-1".to_owned())),
        );
    }
    let mut push = |v: Option<String>, ns: &str| {
        if let Some(v) = v {
            out.push((v, ns.to_owned()));
        }
    };
    if let Some(g) = r.geo.as_ref().filter(|c| c.success).map(|c| &c.data) {
        push(g.geo_country.clone(), "ISO-3166-1");
        push(g.geo_city.clone(), "nip66.label.city");
        push(g.geo_tz.clone(), "IANA-tz");
    }
    if let Some(n) = r.net.as_ref().filter(|c| c.success).map(|c| &c.data) {
        push(n.net_asn.map(|a| a.to_string()), "IANA-asn");
        push(n.net_asn_org.clone(), "IANA-asnOrg");
    }
    out
}

/// The reference system's non-standard tags.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RelayUrl;
    use crate::monitor::report::{Check, Nip11Data, Nip77Data, Refusal};
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
