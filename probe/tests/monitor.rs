//! Monitor tests against real peers on loopback: rust-nostr relays (plain, AUTH, PoW), scripted
//! relays (refusals, headers, bad NIP-11 documents), TLS fronts from a local CA (valid, expired,
//! wrong host, stalling), an in-process DNS server, the MaxMind test databases, a SOCKS5 proxy
//! for an onion name, and publishing round trips.

mod common;

use std::time::{Duration, Instant};

use brotr_probe::config::{LimitsConfig, MonitorConfig, NetworksConfig};
use brotr_probe::identity::Identity;
use brotr_probe::model::{Network, RelayUrl};
use brotr_probe::monitor::Prober;
use brotr_probe::monitor::checks::dns;
use brotr_probe::monitor::discovery::discovery_from_report;
use brotr_probe::monitor::publish::Publisher;
use brotr_probe::monitor::report::RelayReport;
use brotr_probe::nips::nip66::{DiscoveryOptions, build_30166};
use brotr_probe::services::Service;
use brotr_probe::services::monitor::{CHECKPOINT, Monitor};
use brotr_probe::store::RelayRow;
use common::monitor_peers::{
    HttpAnswer, Rec, Script, closing_tcp, dns_server, geoip_dir, nip11_front, scripted_relay,
    silent_dns,
};
use common::peers::{LocalCa, closed_port, nostr_relay, silent_tcp, socks5_proxy};
use futures_util::{SinkExt, StreamExt};
use nostr::Keys;
use nostr_relay_builder::prelude::{RelayBuilder, RelayBuilderNip42, RelayBuilderNip42Mode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn local(url: &str) -> RelayUrl {
    RelayUrl::parse_allowing_local(url).expect("test relay url")
}

/// Short timeouts, no retries, no GeoIP databases (geo and net are skipped).
fn cfg() -> MonitorConfig {
    let mut c = MonitorConfig::default();
    for check in [
        &mut c.checks.nip11,
        &mut c.checks.rtt,
        &mut c.checks.nip77,
        &mut c.checks.ssl,
        &mut c.checks.dns,
        &mut c.checks.geo,
        &mut c.checks.net,
        &mut c.checks.http,
    ] {
        check.timeout_secs = 3.0;
        check.retries = 0;
    }
    c.geoip.city_db = None;
    c.geoip.asn_db = None;
    c
}

/// [`cfg`] with MaxMind's test databases (`e2e/tools.sh` fetches them).
fn cfg_geo() -> MonitorConfig {
    let mut c = cfg();
    let dir = geoip_dir();
    c.geoip.city_db = Some(dir.join("GeoLite2-City-Test.mmdb").display().to_string());
    c.geoip.asn_db = Some(dir.join("GeoLite2-ASN-Test.mmdb").display().to_string());
    c
}

fn prober_with(
    c: MonitorConfig,
    networks: NetworksConfig,
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Prober {
    let limits = LimitsConfig {
        allow_private: true,
        ..Default::default()
    };
    Prober::new(c, networks, limits, Keys::generate(), roots).expect("prober")
}

fn prober(c: MonitorConfig) -> Prober {
    prober_with(c, NetworksConfig::default(), &[])
}

async fn check(p: &Prober, url: &str) -> RelayReport {
    p.check_relay(&local(url), 1_700_000_000).await
}

fn tags_of(r: &RelayReport) -> Vec<Vec<String>> {
    discovery_from_report(r, DiscoveryOptions::default()).tags()
}

fn has(tags: &[Vec<String>], t: &[&str]) -> bool {
    tags.iter().any(|x| x == t)
}

#[tokio::test]
async fn a_healthy_relay_reads_writes_and_speaks_negentropy() {
    let (_relay, url) = nostr_relay(RelayBuilder::default()).await;
    let r = check(&prober(cfg()), &url).await;
    let rtt = r.rtt.as_ref().unwrap();
    assert!(rtt.success, "{:?}", rtt.reason);
    assert!(
        rtt.data.rtt_open.is_some() && rtt.data.rtt_read.is_some() && rtt.data.rtt_write.is_some()
    );
    assert_eq!(rtt.data.read_auth, None);
    assert_eq!(r.nip77.as_ref().unwrap().data.negentropy, Some(true));
    assert!(r.reachable());
    assert!(r.dns.is_none(), "an IP literal has no DNS check");
    assert!(r.ssl.is_none(), "ws:// has no certificate");
    let nip11 = r.nip11.as_ref().unwrap();
    assert!(
        !nip11.success && nip11.reason.is_some(),
        "the relay builder serves no NIP-11"
    );
    let tags = tags_of(&r);
    for t in [
        &["R", "!auth"][..],
        &["R", "!payment"],
        &["R", "!writes"],
        &["R", "!pow"],
        &["N", "77"],
        &["T", "PublicInbox"],
        &["k", "22456"],
        &["n", "clearnet"],
    ] {
        assert!(has(&tags, t), "{t:?} missing from {tags:?}");
    }
}

#[tokio::test]
async fn an_auth_relay_is_read_and_written_after_nip42_auth() {
    let (_relay, url) = nostr_relay(RelayBuilder::default().nip42(RelayBuilderNip42 {
        mode: RelayBuilderNip42Mode::Both,
    }))
    .await;
    let r = check(&prober(cfg()), &url).await;
    let rtt = &r.rtt.as_ref().unwrap().data;
    assert_eq!(rtt.read_auth, Some(true), "{rtt:?}");
    assert_eq!(rtt.write_auth, Some(true), "{rtt:?}");
    assert!(
        rtt.rtt_read.is_some() && rtt.rtt_write.is_some(),
        "measured after AUTH: {rtt:?}"
    );
    let tags = tags_of(&r);
    assert!(has(&tags, &["R", "auth"]), "{tags:?}");
    assert!(has(&tags, &["N", "42"]), "{tags:?}");
    assert!(has(&tags, &["T", "PrivateStorage"]), "{tags:?}");
}

#[tokio::test]
async fn the_write_probe_mines_the_pow_nip11_asks_for() {
    let (_relay, url) = nostr_relay(RelayBuilder::default().min_pow(8)).await;
    let backend: std::net::SocketAddr = url.trim_start_matches("ws://").parse().unwrap();
    let doc = json!({"name": "pow relay", "supported_nips": [1, 11, 13], "limitation": {"min_pow_difficulty": 8}});
    let front = nip11_front(HttpAnswer::json(doc), backend).await;
    let r = check(&prober(cfg()), &format!("ws://{front}")).await;
    let rtt = &r.rtt.as_ref().unwrap().data;
    assert_eq!(rtt.write_pow, Some(8));
    assert!(rtt.rtt_write.is_some(), "accepted with PoW: {rtt:?}");
    assert!(has(&tags_of(&r), &["R", "pow"]));

    // Without the NIP-11 hint the relay refuses with `pow:`, which is what R pow records.
    let r = check(&prober(cfg()), &url).await;
    let rtt = &r.rtt.as_ref().unwrap().data;
    assert_eq!(
        rtt.write_refused.as_ref().map(|f| f.prefix.as_str()),
        Some("pow")
    );
    assert!(has(&tags_of(&r), &["R", "pow"]));
}

#[tokio::test]
async fn refusal_prefixes_map_to_requirement_tags() {
    let cases: [(&str, &[&[&str]]); 4] = [
        (
            "auth-required: sign in first",
            &[&["R", "auth"], &["T", "PublicOutbox"]],
        ),
        ("pow: difficulty 30 required", &[&["R", "pow"]]),
        (
            "restricted: paid members only",
            &[&["R", "writes"], &["R", "payment"], &["k", "!22456"]],
        ),
        (
            "blocked: not on the list",
            &[&["R", "writes"], &["k", "!22456"]],
        ),
    ];
    for (message, want) in cases {
        let addr = scripted_relay(Script {
            refuse_events: Some(message.into()),
            ..Default::default()
        })
        .await;
        let r = check(&prober(cfg()), &format!("ws://{addr}")).await;
        let rtt = r.rtt.as_ref().unwrap();
        assert!(
            !rtt.success && rtt.reason.as_deref().unwrap_or("").contains(message),
            "{:?}",
            rtt.reason
        );
        let tags = tags_of(&r);
        for t in want {
            assert!(has(&tags, t), "{message}: {t:?} missing from {tags:?}");
        }
    }
}

/// Most relays without NIP-77 ignore NEG-OPEN: that silence is a definite "no", recorded as a
/// successful check, and it comes within a few round trips rather than at the timeout.
#[tokio::test]
async fn silence_to_neg_open_is_a_quick_no_not_a_failed_check() {
    let url = common::evil::evil_relay(Vec::new(), common::evil::Misbehaviour::NegSilent).await;
    let mut c = cfg();
    c.checks.nip77.timeout_secs = 30.0;
    let r = check(&prober(c), &url).await;
    let n = r.nip77.as_ref().unwrap();
    assert!(n.success, "{n:?}");
    assert_eq!(n.data.negentropy, Some(false));
    assert_eq!(n.data.answer.as_deref(), Some("none"));
    assert!(n.data.rtt.unwrap() < 5_000, "bounded by round trips: {n:?}");
    assert!(!has(&tags_of(&r), &["N", "77"]));
}

#[tokio::test]
async fn a_closed_read_with_auth_required_marks_the_relay_private() {
    let addr = scripted_relay(Script {
        refuse_reqs: Some("auth-required: members only".into()),
        ..Default::default()
    })
    .await;
    let r = check(&prober(cfg()), &format!("ws://{addr}")).await;
    assert_eq!(r.rtt.as_ref().unwrap().data.read_auth, Some(true));
    let tags = tags_of(&r);
    assert!(has(&tags, &["R", "auth"]), "{tags:?}");
    assert!(has(&tags, &["T", "PrivateInbox"]), "{tags:?}");
}

#[tokio::test]
async fn handshake_headers_and_a_nip11_that_overclaims_negentropy() {
    let doc = json!({"name": "scripted", "supported_nips": [1, 11, 77], "tags": ["sfw-only"], "language_tags": ["en-US", "de"]});
    let addr = scripted_relay(Script {
        nip11: Some(HttpAnswer::json(doc)),
        ..Default::default()
    })
    .await;
    let r = check(&prober(cfg()), &format!("ws://{addr}")).await;
    let http = r.http.as_ref().unwrap();
    assert_eq!(http.data.http_server.as_deref(), Some("brotr-scripted/1.0"));
    assert_eq!(http.data.http_powered_by.as_deref(), Some("brotr-tests"));
    let neg = r.nip77.as_ref().unwrap();
    assert!(neg.success && neg.data.negentropy == Some(false), "{neg:?}");
    assert_eq!(r.nip11.as_ref().unwrap().data.cors, Some(true));
    let d = discovery_from_report(&r, DiscoveryOptions::default());
    assert_eq!(
        d.nips,
        vec!["1", "11"],
        "the probe overrides NIP-11's claim of 77"
    );
    let tags = d.tags();
    assert!(has(&tags, &["t", "sfw-only"]));
    assert!(has(&tags, &["l", "en", "ISO-639-1"]) && has(&tags, &["l", "de", "ISO-639-1"]));
    let content: Value = serde_json::from_str(&d.content).unwrap();
    assert_eq!(
        content["name"], "scripted",
        "content is the relay's NIP-11 document"
    );
}

#[tokio::test]
async fn bad_nip11_documents_are_failed_checks_with_reasons() {
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(HttpAnswer, Result<Value, &str>)> = vec![
        (
            HttpAnswer::raw(200, "application/nostr+json", vec![b' '; 2 << 20]),
            Err("body larger than the 1048576-byte cap"),
        ),
        (
            HttpAnswer::raw(200, "text/html", "<html>hi</html>"),
            Err("Invalid Content-Type: text/html"),
        ),
        (
            HttpAnswer::raw(200, "application/json", "[1,2,3]"),
            Err("not a JSON object but an array"),
        ),
        (
            HttpAnswer::raw(200, "application/json", nested),
            Err("invalid JSON"),
        ),
        (
            HttpAnswer::raw(200, "application/json", "{\"name\":"),
            Err("invalid JSON"),
        ),
        (
            HttpAnswer::raw(404, "application/json", "{}"),
            Err("HTTP 404"),
        ),
        (
            HttpAnswer::raw(
                200,
                "application/json; charset=utf-8",
                r#"{"name":7,"description":"ok","supported_nips":["1",2,true],"limitation":{"auth_required":1,"max_limit":5}}"#,
            ),
            Ok(
                json!({"description": "ok", "supported_nips": [2], "limitation": {"max_limit": 5}, "_cors": false}),
            ),
        ),
    ];
    let mut c = cfg();
    c.checks.rtt.enabled = false;
    c.checks.nip77.enabled = false;
    c.checks.http.enabled = false;
    let p = prober(c);
    for (answer, want) in cases {
        let addr = scripted_relay(Script {
            nip11: Some(answer),
            ..Default::default()
        })
        .await;
        let r = check(&p, &format!("ws://{addr}")).await;
        let n = r.nip11.as_ref().unwrap();
        match want {
            Ok(doc) => {
                assert!(n.success, "{:?}", n.reason);
                assert_eq!(serde_json::to_value(&n.data).unwrap(), doc);
            }
            Err(reason) => {
                assert!(!n.success);
                let got = n.reason.clone().unwrap_or_default();
                assert!(got.contains(reason), "want {reason:?}, got {got:?}");
            }
        }
    }
}

#[tokio::test]
async fn tls_certificates_are_described_and_judged() {
    let ca = LocalCa::new();
    let (_relay, url) = nostr_relay(RelayBuilder::default()).await;
    let backend: std::net::SocketAddr = url.trim_start_matches("ws://").parse().unwrap();
    let good = ca.tls_front(&["localhost"], backend).await;
    let expired = ca.tls_front_expired(&["localhost"], backend).await;
    let misnamed = ca.tls_front(&["relay.example.org"], backend).await;
    let mut c = cfg();
    c.checks.nip11.enabled = false;
    c.checks.nip77.enabled = false;
    let trusting = prober_with(
        c.clone(),
        NetworksConfig::default(),
        std::slice::from_ref(&ca.ca_der),
    );

    let r = check(&trusting, &format!("wss://localhost:{}", good.port())).await;
    let ssl = r.ssl.as_ref().unwrap();
    assert!(ssl.success, "{:?}", ssl.reason);
    let d = &ssl.data;
    assert_eq!(d.ssl_valid, Some(true), "{d:?}");
    assert_eq!(d.ssl_subject_cn.as_deref(), Some("localhost"));
    assert_eq!(d.ssl_issuer.as_deref(), Some("Brotr Test"));
    assert_eq!(d.ssl_issuer_cn.as_deref(), Some("Brotr test CA"));
    assert_eq!(d.ssl_san, vec!["localhost"]);
    assert_eq!(d.ssl_protocol.as_deref(), Some("TLSv1.3"));
    assert_eq!(d.ssl_version, Some(3));
    assert!(d.ssl_fingerprint.as_deref().unwrap().starts_with("SHA256:"));
    assert!(d.ssl_cipher.is_some() && d.ssl_cipher_bits.is_some() && d.ssl_serial.is_some());
    assert!(
        r.rtt.as_ref().unwrap().success,
        "RTT over wss through the local CA"
    );

    let r = check(&trusting, &format!("wss://localhost:{}", expired.port())).await;
    let d = &r.ssl.as_ref().unwrap().data;
    assert_eq!(
        (d.ssl_valid, d.ssl_invalid_reason.as_deref()),
        (Some(false), Some("expired"))
    );
    assert_eq!(d.ssl_expires, Some(1_577_836_800), "2020-01-01");

    let r = check(&trusting, &format!("wss://localhost:{}", misnamed.port())).await;
    let d = &r.ssl.as_ref().unwrap().data;
    assert_eq!(
        (d.ssl_valid, d.ssl_invalid_reason.as_deref()),
        (Some(false), Some("not valid for name"))
    );

    let strict = prober_with(c, NetworksConfig::default(), &[]);
    let r = check(&strict, &format!("wss://localhost:{}", good.port())).await;
    let d = &r.ssl.as_ref().unwrap().data;
    assert_eq!(
        (d.ssl_valid, d.ssl_invalid_reason.as_deref()),
        (Some(false), Some("unknown issuer"))
    );
}

#[tokio::test]
async fn a_stalling_tls_handshake_and_a_closing_relay_fail_within_their_timeouts() {
    let mut c = cfg();
    c.checks.ssl.timeout_secs = 1.0;
    c.checks.rtt.timeout_secs = 1.0;
    c.checks.nip11.enabled = false;
    c.checks.nip77.enabled = false;
    c.checks.http.enabled = false;
    let p = prober(c);
    let stall = silent_tcp().await;
    let start = Instant::now();
    let r = check(&p, &format!("wss://localhost:{}", stall.port())).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let ssl = r.ssl.as_ref().unwrap();
    assert!(
        !ssl.success && ssl.reason.as_deref().unwrap().contains("not done within"),
        "{ssl:?}"
    );
    assert!(!r.reachable());

    let closing = closing_tcp().await;
    let r = check(&p, &format!("ws://{closing}")).await;
    let rtt = r.rtt.as_ref().unwrap();
    assert!(
        !rtt.success && rtt.reason.as_deref().unwrap().starts_with("open:"),
        "{rtt:?}"
    );
    assert!(!r.reachable());
}

fn geo_dns_records() -> Vec<Rec> {
    vec![
        Rec::A("london.brotr.test.", "81.2.69.160".parse().unwrap()),
        Rec::Aaaa("london.brotr.test.", "2600:6000::".parse().unwrap()),
        Rec::Cname("www.brotr.test.", "london.brotr.test."),
        Rec::Ns("brotr.test.", "ns1.brotr.test."),
        Rec::Ns("brotr.test.", "ns2.brotr.test."),
        Rec::Ptr("160.69.2.81.in-addr.arpa.", "london.brotr.test."),
    ]
}

fn only_dns_geo_net(mut c: MonitorConfig, dns: std::net::SocketAddr) -> MonitorConfig {
    c.dns_server = Some(dns.to_string());
    c.checks.nip11.enabled = false;
    c.checks.rtt.enabled = false;
    c.checks.nip77.enabled = false;
    c.checks.http.enabled = false;
    c.checks.ssl.enabled = false;
    c
}

#[tokio::test]
#[ignore = "needs MaxMind's test databases: BROTR_GEOIP_TEST_DIR (e2e/tools.sh)"]
async fn dns_geo_and_net_run_on_names_from_a_local_dns_server() {
    let dns_addr = dns_server(geo_dns_records()).await;
    let p = prober(only_dns_geo_net(cfg_geo(), dns_addr));
    let r = check(&p, "wss://london.brotr.test").await;
    let d = r.dns.as_ref().unwrap();
    assert!(d.success, "{:?}", d.reason);
    assert_eq!(d.data.dns_ips, vec!["81.2.69.160"]);
    assert_eq!(d.data.dns_ips_v6, vec!["2600:6000::"]);
    assert_eq!(d.data.dns_ttl, Some(300));
    assert_eq!(d.data.dns_ns, vec!["ns1.brotr.test", "ns2.brotr.test"]);
    assert_eq!(d.data.dns_reverse.as_deref(), Some("london.brotr.test"));

    let g = &r.geo.as_ref().unwrap().data;
    assert_eq!(g.geo_country.as_deref(), Some("GB"));
    assert_eq!(g.geo_city.as_deref(), Some("London"));
    assert_eq!(g.geo_tz.as_deref(), Some("Europe/London"));
    assert_eq!(g.geo_accuracy, Some(100));
    assert_eq!(g.geo_hash.as_ref().map(String::len), Some(9));
    let n = &r.net.as_ref().unwrap().data;
    assert_eq!(n.net_ip.as_deref(), Some("81.2.69.160"));
    assert_eq!(
        (n.net_asn, n.net_asn_org.as_deref()),
        (Some(237), Some("Merit Network Inc.")),
        "IPv6 fallback"
    );
    assert!(n.net_network_v6.is_some());

    let tags = tags_of(&r);
    assert!(
        has(&tags, &["l", "GB", "ISO-3166-1"]) && has(&tags, &["l", "237", "IANA-asn"]),
        "{tags:?}"
    );
    assert!(tags.iter().any(|t| t[0] == "g" && t[1].len() == 9));

    let resolver = dns::resolver(Some(dns_addr), Duration::from_secs(2)).unwrap();
    let www = dns::check(&resolver, "www.brotr.test", Duration::from_secs(2)).await;
    assert_eq!(www.data.dns_cname.as_deref(), Some("london.brotr.test"));
}

#[tokio::test]
async fn a_silent_dns_server_fails_the_dns_check_alone_and_in_time() {
    let mut c = only_dns_geo_net(cfg(), silent_dns().await);
    c.checks.dns.timeout_secs = 1.0;
    c.checks.geo.timeout_secs = 1.0;
    c.checks.net.timeout_secs = 1.0;
    c.checks.http.enabled = true;
    let start = Instant::now();
    let r = check(&prober(c), "wss://london.brotr.test").await;
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let d = r.dns.as_ref().unwrap();
    assert!(!d.success, "{d:?}");
    assert!(r.http.is_some(), "other checks still ran");
}

#[tokio::test]
async fn missing_geoip_files_skip_geo_and_net_and_the_rest_runs() {
    let dns_addr = dns_server(geo_dns_records()).await;
    let mut c = only_dns_geo_net(cfg(), dns_addr);
    c.geoip.city_db = Some("/nonexistent/GeoLite2-City.mmdb".into());
    c.geoip.asn_db = Some("/nonexistent/GeoLite2-ASN.mmdb".into());
    let r = check(&prober(c), "wss://london.brotr.test").await;
    assert!(r.geo.is_none() && r.net.is_none());
    let skipped: Vec<&str> = r.skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(skipped, vec!["geo", "net"]);
    assert!(r.dns.as_ref().unwrap().success);
}

#[tokio::test]
async fn onion_relays_are_checked_through_socks5() {
    let (_relay, url) = nostr_relay(RelayBuilder::default()).await;
    let backend: std::net::SocketAddr = url.trim_start_matches("ws://").parse().unwrap();
    let front = nip11_front(
        HttpAnswer::json(json!({"name": "hidden", "supported_nips": [1, 11]})),
        backend,
    )
    .await;
    let (proxy, seen) = socks5_proxy(front).await;
    let mut networks = NetworksConfig::default();
    networks.enable_overlay(Network::Tor, format!("socks5://{proxy}"));
    networks.tor.timeout_secs = Some(3.0);
    let onion = format!("{}d.onion", "b".repeat(55));
    let p = prober_with(cfg(), networks, &[]);
    let r = check(&p, &format!("ws://{onion}")).await;
    assert_eq!(r.network, "tor");
    let n = r.nip11.as_ref().unwrap();
    assert!(n.success, "{:?}", n.reason);
    assert_eq!(n.data.doc.as_map()["name"], "hidden");
    assert!(r.rtt.as_ref().unwrap().success, "{:?}", r.rtt);
    assert!(
        r.dns.is_none() && r.ssl.is_none() && r.geo.is_none(),
        "clearnet-only checks skipped"
    );
    let names = seen.lock().unwrap().clone();
    assert!(
        names.iter().all(|n| n == &format!("{onion}:80")),
        "remote DNS only: {names:?}"
    );
}

/// REQ on a relay; returns the events.
async fn req(relay: &str, filter: Value) -> Vec<nostr::Event> {
    let (mut ws, _) = tokio_tungstenite::connect_async(relay)
        .await
        .expect("connect");
    ws.send(Message::text(json!(["REQ", "t", filter]).to_string()))
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await
    {
        let v: Value = serde_json::from_str(&t).unwrap();
        match v[0].as_str() {
            Some("EVENT") => out.push(serde_json::from_value(v[2].clone()).unwrap()),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn a_30166_round_trips_through_a_real_relay() {
    let (_target, target_url) = nostr_relay(RelayBuilder::default()).await;
    let (_pubr, pub_url) = nostr_relay(RelayBuilder::default()).await;
    let p = prober(cfg());
    let report = check(&p, &target_url).await;
    let d = discovery_from_report(&report, DiscoveryOptions::default());
    let keys = Keys::generate();
    let ev = build_30166(&d, keys.public_key(), 1_700_000_000)
        .sign_with_keys(&keys)
        .unwrap();
    let mut publisher = Publisher::new(
        p.dialer.clone(),
        keys.clone(),
        vec![local(&pub_url)],
        Duration::from_secs(3),
    );
    assert_eq!(publisher.publish(std::slice::from_ref(&ev)).await, vec![1]);
    publisher.close().await;

    let got = req(&pub_url, json!({"kinds": [30166], "#d": [target_url]})).await;
    assert_eq!(got.len(), 1);
    let back = &got[0];
    back.verify().expect("signature");
    let tags: Vec<Vec<String>> = back.tags.iter().map(|t| t.as_slice().to_vec()).collect();
    assert_eq!(tags, d.tags());
    assert_eq!(back.content, d.content);
    let value = |name: &str| tags.iter().find(|t| t[0] == name).map(|t| t[1].clone());
    let rtt = &report.rtt.as_ref().unwrap().data;
    assert_eq!(value("d"), Some(target_url.clone()));
    assert_eq!(value("rtt-open"), rtt.rtt_open.map(|v| v.to_string()));
    assert_eq!(value("rtt-read"), rtt.rtt_read.map(|v| v.to_string()));
    assert_eq!(value("rtt-write"), rtt.rtt_write.map(|v| v.to_string()));
    assert_eq!(value("n"), Some("clearnet".into()));
    assert!(tags.iter().all(|t| t.iter().all(|v| !v.is_empty())));
}

#[tokio::test]
async fn a_monitor_cycle_stores_checks_with_outcomes_and_publishes() {
    let (_healthy, healthy_url) = nostr_relay(RelayBuilder::default()).await;
    let (_pubr, pub_url) = nostr_relay(RelayBuilder::default()).await;
    let dead = closed_port().await;
    let (db, _dir) = common::fresh_sqlite_url();
    let store = common::open(&db, brotr_probe::model::Schema::Full).await;
    let relays = vec![
        RelayRow {
            url: local(&healthy_url),
            discovered_at: 1,
        },
        RelayRow {
            url: local(&format!("ws://{dead}")),
            discovered_at: 2,
        },
    ];
    store.insert_relays(&relays).await.unwrap();
    let mut c = cfg();
    c.publish.discovery.only_on_change = true;
    c.publish.discovery.max_age_secs = 100_000;
    c.publish.relays = vec![pub_url.clone()];
    let keys = Keys::generate();
    let monitor = monitor_with(c, keys.clone());
    let now = 1_800_000_000;
    let r = monitor.run_cycle(&common::ctx(&store, now)).await.unwrap();
    assert_eq!(
        (r.checked, r.reachable, r.published, r.periodic.len()),
        (2, 1, 2, 3),
        "{r:?}"
    );
    assert!(r.rows >= 6, "{r:?}");
    assert_eq!(
        r.checks["rtt"],
        (1, 1),
        "per-check outcomes for metrics: {r:?}"
    );
    assert_eq!(r.networks["clearnet"], (2, 1));

    // Outcome and reason are on the time-series rows.
    let DatabaseUrlSqlite(path) = sqlite_path(&db);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let failed: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT metadata_type, reason FROM relay_metadata WHERE success = 0 AND metadata_type = 'nip66_rtt'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].1.as_deref().unwrap().starts_with("open:"));

    // Nothing is due again until recheckSecs passed; then unchanged data is not republished.
    let r = monitor
        .run_cycle(&common::ctx(&store, now + 10))
        .await
        .unwrap();
    assert_eq!((r.checked, r.periodic.len()), (0, 0));
    let later = now + 14_400;
    let r = monitor
        .run_cycle(&common::ctx(&store, later))
        .await
        .unwrap();
    assert_eq!(r.checked, 2);
    assert_eq!(r.unchanged, 2, "{r:?}");

    let periodic = req(
        &pub_url,
        json!({"authors": [keys.public_key().to_hex()], "kinds": [0, 10002, 10166]}),
    )
    .await;
    let mut kinds: Vec<u16> = periodic.iter().map(|e| e.kind.as_u16()).collect();
    kinds.sort();
    assert_eq!(kinds, vec![0, 10002, 10166]);
    let service = Identity::from_keys(keys.clone()).state_service();
    let checkpoints = store.state_get(&service, CHECKPOINT, None).await.unwrap();
    assert_eq!(
        checkpoints.len(),
        5,
        "2 relays + 3 publications: {checkpoints:?}"
    );
}

/// A monitor with `keys` over loopback relays.
fn monitor_with(c: MonitorConfig, keys: Keys) -> Monitor {
    let limits = LimitsConfig {
        allow_private: true,
        ..Default::default()
    };
    let policy = brotr_probe::config::ValidatorConfig::default().lifecycle();
    Monitor::new(
        c,
        NetworksConfig::default(),
        limits,
        Identity::from_keys(keys),
        policy,
    )
    .expect("monitor")
}

/// Two monitors (one key each) share one database: both check every relay, and each result
/// row carries the key of the monitor that measured it.
#[tokio::test]
async fn monitors_with_their_own_keys_share_a_database_without_splitting_or_mixing() {
    let (_a, url_a) = nostr_relay(RelayBuilder::default()).await;
    let (_b, url_b) = nostr_relay(RelayBuilder::default()).await;
    let (db, _dir) = common::fresh_sqlite_url();
    let store = common::open(&db, brotr_probe::model::Schema::Full).await;
    let relays: Vec<RelayRow> = [&url_a, &url_b]
        .iter()
        .map(|u| RelayRow {
            url: local(u),
            discovered_at: 1,
        })
        .collect();
    store.insert_relays(&relays).await.unwrap();
    let mut c = cfg();
    c.publish.relays.clear();
    let (eu, us) = (Keys::generate(), Keys::generate());
    let now = 1_800_000_000;
    for keys in [&eu, &us] {
        let r = monitor_with(c.clone(), keys.clone())
            .run_cycle(&common::ctx(&store, now))
            .await
            .unwrap();
        assert_eq!(r.checked, 2, "each monitor checks every relay: {r:?}");
    }
    let DatabaseUrlSqlite(path) = sqlite_path(&db);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let series: Vec<(String, i64)> = sqlx::query_as(
        "SELECT lower(hex(monitor)), count(*) FROM relay_metadata \
         WHERE metadata_type = 'nip66_rtt' GROUP BY monitor ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut want = vec![(eu.public_key().to_hex(), 2), (us.public_key().to_hex(), 2)];
    want.sort();
    assert_eq!(series, want, "one RTT series per monitor and relay");
    let latest: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM relay_metadata_latest_by_monitor WHERE metadata_type = 'nip66_rtt'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(latest, 4, "latest per relay and monitor");
}

struct DatabaseUrlSqlite(std::path::PathBuf);

fn sqlite_path(db: &brotr_probe::store::DatabaseUrl) -> DatabaseUrlSqlite {
    match db {
        brotr_probe::store::DatabaseUrl::Sqlite(p) => DatabaseUrlSqlite(p.clone()),
        other => panic!("not sqlite: {other:?}"),
    }
}

#[test]
fn networks_of_overlay_urls() {
    assert_eq!(
        local(&format!("ws://{}d.onion", "b".repeat(55))).network(),
        Network::Tor
    );
}

/// Signs like BIP-340 with zero auxiliary randomness, so signatures are reproducible.
fn sign_deterministic(mut unsigned: nostr::UnsignedEvent, keys: &Keys) -> nostr::Event {
    use nostr::secp256k1::{Keypair, Message as Msg, SECP256K1};
    let id = unsigned.id();
    let msg = Msg::from_digest(id.to_bytes());
    let pair = Keypair::from_seckey_slice(SECP256K1, &keys.secret_key().to_secret_bytes()).unwrap();
    let sig = SECP256K1.sign_schnorr_with_aux_rand(&msg, &pair, &[0u8; 32]);
    unsigned.add_signature(sig).expect("signature")
}

fn vector_keys() -> Keys {
    Keys::parse("0000000000000000000000000000000000000000000000000000000000000001").unwrap()
}

#[test]
fn the_30166_builder_reproduces_vector_3_byte_for_byte() {
    use brotr_probe::nips::nip66::Discovery;
    let d = Discovery {
        d: "wss://relay.example.com/".into(),
        network: Some("clearnet".into()),
        rtt_open: Some(234),
        rtt_read: Some(150),
        nips: vec!["1".into(), "11".into()],
        requirements: vec![("payment".into(), false), ("auth".into(), true)],
        types: vec!["PublicInbox".into()],
        geohash: Some("u4pruyd".into()),
        content: json!({"name": "x\ny"}).to_string(),
        ..Default::default()
    };
    let keys = vector_keys();
    let ev = sign_deterministic(build_30166(&d, keys.public_key(), 1_700_000_000), &keys);
    assert_eq!(
        ev.id.to_hex(),
        "ac6a3b7b1e5839db6124836261b857e8914e6eedd3b8b2807581d3304da2d1f6"
    );
    assert_eq!(
        ev.sig.to_string(),
        "2522c30ec60d2e92cbd9ffb0c8fdc207abffc9ca1476046cadf79d0912af14638142238ca2c9a418981f8eddbb1da48ad1a40004348274e6f6cefb1607f2d4e8"
    );
    ev.verify().unwrap();
}

#[test]
fn the_10166_builder_reproduces_vector_4_byte_for_byte() {
    use brotr_probe::nips::nip66::{Announcement, build_10166};
    let a = Announcement {
        frequency: 3600,
        timeouts: vec![("open".into(), 5000), ("read".into(), 3000)],
        checks: vec!["open".into(), "read".into(), "nip11".into()],
        geohash: Some("u4pruyd".into()),
        networks: vec![],
    };
    let keys = vector_keys();
    let ev = sign_deterministic(build_10166(&a, keys.public_key(), 1_700_000_000), &keys);
    assert_eq!(
        ev.id.to_hex(),
        "506093dad04e4aa3fe69db912e18c00bdeefee90ee69be054638297c56eb9cf3"
    );
    assert_eq!(
        ev.sig.to_string(),
        "370b4ebc2b58d1009c08299fc660cd7586e12f61a1eed90cbeb268028c51d479bf4cfc22d9e36778926a490946a11abbf02176065c14a5a70a9057ffc87ebce9"
    );
}

#[test]
fn escaping_vector_5_gives_the_frozen_id() {
    use brotr_probe::nips::nip66::Discovery;
    let d = Discovery {
        d: "wss://relay.example.com/".into(),
        rtt_open: Some(234),
        content: "line1\nq\"b\\t\tü/é".into(),
        ..Default::default()
    };
    let keys = vector_keys();
    let mut unsigned = build_30166(&d, keys.public_key(), 1_700_000_000);
    assert_eq!(
        unsigned.id().to_hex(),
        "15713df324db4ba311bbea6aaf7502abbfcc0bdc7fb07fd2f05b9a64c8b4c088"
    );
}

#[test]
fn negentropy_probe_opens_with_the_empty_set_vector() {
    assert_eq!(brotr_probe::nips::nip77::EMPTY_SET_MESSAGE, "6100000200");
}

async fn brotr(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
            // A database path that cannot exist proves `check` never opens one.
            .args(["--database", "/nonexistent/dir/brotr.db", "--allow-private"])
            .args(&args)
            .env_remove("BROTR_CONFIG")
            .output()
            .expect("run brotr-probe")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_check_command_exits_0_for_a_reachable_relay_and_prints_json() {
    let (_relay, url) = nostr_relay(RelayBuilder::default()).await;
    let out = brotr(vec!["check".into(), url.clone(), "--json".into()]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["relay"], url);
    assert!(report["rtt"]["data"]["rtt_open"].is_u64(), "{report}");
    assert_eq!(report["rtt"]["success"], true);
}

#[tokio::test]
async fn the_check_command_exits_1_for_a_dead_relay_with_a_readable_report() {
    let dead = closed_port().await;
    let url = format!("ws://{dead}");
    let out = brotr(vec!["check".into(), url.clone()]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{url} (clearnet) — UNREACHABLE")),
        "{text}"
    );
    assert!(
        text.contains("rtt    FAILED (after 3 attempts): open:"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not reachable"), "{stderr}");
}

#[tokio::test]
async fn the_check_command_exits_2_for_a_bad_url() {
    let out = brotr(vec!["check".into(), "https://not-a-relay.example".into()]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `insert_checks` on a backend: documents shared, outcome on the row, replays idempotent.
async fn check_rows_behave(db: &brotr_probe::store::DatabaseUrl) {
    use brotr_probe::monitor::report::Check;
    use brotr_probe::store::CheckRow;
    let store = common::open(db, brotr_probe::model::Schema::Full).await;
    let relay = RelayRow {
        url: local("wss://relay.example.com"),
        discovered_at: 1,
    };
    let rows = |at: &str| -> Vec<CheckRow> {
        let mut r = RelayReport::new(&relay.url, 1);
        r.ssl = Some(Check::failed(format!("connection reset at {at}")));
        r.to_stored()
            .unwrap()
            .into_iter()
            .map(|s| CheckRow {
                metadata: s.metadata,
                success: s.success,
                reason: s.reason,
            })
            .collect()
    };
    assert_eq!(
        store
            .insert_checks(&relay, 100, &[], &rows("a"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .insert_checks(&relay, 100, &[], &rows("a"))
            .await
            .unwrap(),
        0,
        "replay"
    );
    assert_eq!(
        store
            .insert_checks(&relay, 200, &[], &rows("b"))
            .await
            .unwrap(),
        1
    );
    let c = store.counts().await.unwrap();
    assert_eq!(
        (c.metadata, c.relay_metadata),
        (1, 2),
        "a new reason is not a new document"
    );
}

#[tokio::test]
async fn check_rows_keep_documents_shared_and_outcomes_on_the_row() {
    let (db, _dir) = common::fresh_sqlite_url();
    check_rows_behave(&db).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn check_rows_keep_documents_shared_and_outcomes_on_the_row_on_postgres() {
    check_rows_behave(&common::fresh_pg_url().await).await;
}

#[tokio::test]
async fn nip11_redirects_to_local_addresses_are_refused_by_the_ssrf_guard() {
    use brotr_probe::monitor::checks::nip11;
    use brotr_probe::net::{HttpClient, tls_config};
    let addr = scripted_relay(Script {
        nip11: Some(HttpAnswer {
            headers: vec!["location: http://127.0.0.1:1/internal".into()],
            ..HttpAnswer::raw(302, "text/plain", "")
        }),
        ..Default::default()
    })
    .await;
    // Guard on: the first hop is a loopback relay only because the test put it there.
    let http = HttpClient::new(&NetworksConfig::default(), tls_config(&[]), false).unwrap();
    let url = local(&format!("ws://{addr}"));
    let r = nip11::check(&http, &url, 1 << 20, Duration::from_secs(3)).await;
    let reason = r.reason.unwrap_or_default();
    assert!(reason.contains("SSRF guard"), "{reason}");
}

#[tokio::test]
async fn monitor_once_checks_stores_and_publishes_with_a_key_from_the_environment() {
    let (_target, target_url) = nostr_relay(RelayBuilder::default()).await;
    let (_pubr, pub_url) = nostr_relay(RelayBuilder::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let store = common::open(
        &brotr_probe::store::DatabaseUrl::Sqlite(db.clone()),
        brotr_probe::model::Schema::Full,
    )
    .await;
    store
        .insert_relays(&[RelayRow {
            url: local(&target_url),
            discovered_at: 1,
        }])
        .await
        .unwrap();
    let config = dir.path().join("probe.yaml");
    std::fs::write(
        &config,
        format!("monitor:\n  checks:\n    nip11:\n      enabled: false\n  publish:\n    relays: [\"{pub_url}\"]\n"),
    )
    .unwrap();
    let secret = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa";
    let (db_arg, cfg_arg) = (db.display().to_string(), config.display().to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
            .args([
                "--database",
                &db_arg,
                "--config",
                &cfg_arg,
                "--allow-private",
                "--log-level",
                "debug",
            ])
            .args(["monitor", "--once"])
            .env("BROTR_MONITOR_KEY", secret)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains(secret) && !stderr.contains("67dea2ed"),
        "the key is never logged"
    );
    let c = store.counts().await.unwrap();
    assert!(c.relay_metadata >= 3, "{c:?}");
    let pubkey = Keys::parse(secret).unwrap().public_key().to_hex();
    let discovery = req(
        &pub_url,
        json!({"kinds": [30166], "authors": [pubkey], "#d": [target_url]}),
    )
    .await;
    assert_eq!(discovery.len(), 1, "{stderr}");
}
