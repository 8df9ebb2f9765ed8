//! The monitor's verdicts against every independent relay implementation the tests can run —
//! rust-nostr's relay builder, nostr-rs-relay, the Go relay in `e2e/neg-relay`, PyPI's
//! `nostr-relay` and `@nostr-relay/core` — open and with NIP-42 where the relay supports it.
//! Every check must give the verdict that implementation deserves: a relay that only broadcasts
//! ephemeral events is still writable, silence to NEG-OPEN is a quick "no NIP-77", a missing
//! `Server` header is data. The matrix is printed (run with `--nocapture` to see it).
//!
//! The external relays come from `e2e/tools.sh`; the tests are `#[ignore]`d by a plain
//! `cargo test` and run by CI with `--include-ignored`.

mod common;

use brotr_probe::config::{LimitsConfig, MonitorConfig, NetworksConfig};
use brotr_probe::model::RelayUrl;
use brotr_probe::monitor::{Prober, RelayReport};
use common::external::*;
use common::peers::nostr_relay;
use nostr::Keys;
use nostr_relay_builder::prelude::{RelayBuilder, RelayBuilderNip42, RelayBuilderNip42Mode};

/// What each check said, in one comparable row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    nip11: bool,
    open: bool,
    read: bool,
    write: bool,
    write_ack: Option<String>,
    challenge: bool,
    read_auth: bool,
    write_auth: bool,
    /// The NIP-77 check succeeded (a verdict, not a failure) and said this.
    nip77: Option<bool>,
    nip77_answer: Option<String>,
    nip77_ms: u64,
    http: bool,
    server: Option<String>,
}

impl Verdict {
    fn of(r: &RelayReport) -> Verdict {
        let rtt = r.rtt.as_ref().expect("rtt ran");
        let d = &rtt.data;
        let nip77 = r.nip77.as_ref().expect("nip77 ran");
        let http = r.http.as_ref().expect("http ran");
        Verdict {
            nip11: r.nip11.as_ref().is_some_and(|c| c.success),
            open: d.rtt_open.is_some(),
            read: d.rtt_read.is_some(),
            write: d.rtt_write.is_some(),
            write_ack: d.write_ack.clone(),
            challenge: d.auth_challenge == Some(true),
            read_auth: d.read_auth == Some(true),
            write_auth: d.write_auth == Some(true),
            nip77: nip77.success.then_some(nip77.data.negentropy).flatten(),
            nip77_answer: nip77.data.answer.clone(),
            nip77_ms: nip77.data.rtt.unwrap_or(u64::MAX),
            http: http.success,
            server: http.data.http_server.clone(),
        }
    }
}

fn prober(keys: &Keys) -> Prober {
    let mut c = MonitorConfig::default();
    for check in [
        &mut c.checks.nip11,
        &mut c.checks.rtt,
        &mut c.checks.nip77,
        &mut c.checks.http,
    ] {
        check.timeout_secs = 5.0;
        check.retries = 0;
    }
    c.geoip.city_db = None;
    c.geoip.asn_db = None;
    let limits = LimitsConfig {
        allow_private: true,
        ..Default::default()
    };
    Prober::new(c, NetworksConfig::default(), limits, keys.clone(), &[]).expect("prober")
}

async fn verdict(keys: &Keys, url: &str) -> (Verdict, RelayReport) {
    let url = RelayUrl::parse_allowing_local(url).expect("url");
    let r = prober(keys).check_relay(&url, 1_700_000_000).await;
    (Verdict::of(&r), r)
}

/// One implementation in one mode, and what it must be judged.
struct Case {
    name: &'static str,
    auth: bool,
    nip11: bool,
    nip77: bool,
    /// Reading and writing need AUTH.
    auth_required: bool,
}

/// Checks the verdict every relay must get, and this case's own.
fn judge(case: &Case, v: &Verdict, report: &RelayReport) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            wrong.push(format!("{} (auth {}): {what}", case.name, case.auth));
        }
    };
    expect(v.open && v.read && v.write, "open, read and write all work");
    expect(
        matches!(v.write_ack.as_deref(), Some("ok" | "echo")),
        "the write is confirmed by OK or by its echo",
    );
    expect(v.nip11 == case.nip11, "NIP-11 served as the relay does");
    expect(
        v.nip77 == Some(case.nip77),
        "NIP-77 verdict (never a failed check)",
    );
    expect(
        v.nip77_ms < 2_000,
        "a NEG-OPEN verdict comes within a few round trips, not the timeout",
    );
    expect(
        v.http,
        "the HTTP check succeeds, with or without a Server header",
    );
    expect(
        v.challenge == case.auth,
        "an AUTH challenge is seen exactly in auth mode",
    );
    expect(
        v.read_auth == case.auth_required && v.write_auth == case.auth_required,
        "read_auth and write_auth say whether AUTH was needed",
    );
    if !wrong.is_empty() {
        wrong.push(format!(
            "report: {}",
            serde_json::to_string(report).unwrap()
        ));
    }
    wrong
}

fn row(case: &Case, v: &Verdict) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    format!(
        "| {} | {} | {} | {}/{}/{} | {} | {} | {} / {} | {} ({}, {} ms) | {} |",
        case.name,
        if case.auth { "NIP-42" } else { "open" },
        yes(v.nip11),
        yes(v.open),
        yes(v.read),
        yes(v.write),
        v.write_ack.as_deref().unwrap_or("-"),
        yes(v.challenge),
        yes(v.read_auth),
        yes(v.write_auth),
        v.nip77.map_or("failed", |b| if b { "yes" } else { "no" }),
        v.nip77_answer.as_deref().unwrap_or("-"),
        v.nip77_ms,
        v.server.as_deref().unwrap_or("none"),
    )
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn every_check_gives_the_right_verdict_on_every_relay_implementation() {
    let keys = Keys::generate();
    let mut rows = vec![
        "| relay | mode | NIP-11 | open/read/write | write ack | challenge | read/write AUTH | NIP-77 (answer, time) | Server |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    let mut wrong = Vec::new();
    let mut record = |case: Case, (v, r): (Verdict, RelayReport)| {
        rows.push(row(&case, &v));
        wrong.extend(judge(&case, &v, &r));
    };

    let (_open, url) = nostr_relay(RelayBuilder::default()).await;
    let case = |name, auth, nip11, nip77, auth_required| Case {
        name,
        auth,
        nip11,
        nip77,
        auth_required,
    };
    record(
        case("rust-nostr relay builder", false, false, true, false),
        verdict(&keys, &url).await,
    );
    let both = RelayBuilder::default().nip42(RelayBuilderNip42 {
        mode: RelayBuilderNip42Mode::Both,
    });
    let (_auth, url) = nostr_relay(both).await;
    record(
        case("rust-nostr relay builder", true, false, true, true),
        verdict(&keys, &url).await,
    );

    let relay = NostrRsRelay::start(&NostrRsRelayConfig::default()).await;
    record(
        case("nostr-rs-relay 0.8.12", false, true, false, false),
        verdict(&keys, &relay.url).await,
    );
    let config = NostrRsRelayConfig {
        nip42_auth: true,
        ..Default::default()
    };
    let relay = NostrRsRelay::start(&config).await;
    // nostr-rs-relay challenges but requires AUTH only for DMs.
    record(
        case("nostr-rs-relay 0.8.12", true, true, false, false),
        verdict(&keys, &relay.url).await,
    );

    let relay = NegRelay::start().await;
    record(
        case("e2e/neg-relay (go-nostr)", false, true, true, false),
        verdict(&keys, &relay.url).await,
    );

    let relay = PyRelay::start(false, &[]).await;
    record(
        case("PyPI nostr-relay 1.14", false, true, false, false),
        verdict(&keys, &relay.url).await,
    );
    let relay = PyRelay::start(true, &[keys.public_key()]).await;
    record(
        case("PyPI nostr-relay 1.14", true, true, false, true),
        verdict(&keys, &relay.url).await,
    );

    let relay = TsRelay::start(TsAuth::None).await;
    record(
        case("@nostr-relay/core 0.0.40", false, true, false, false),
        verdict(&keys, &relay.url).await,
    );
    let relay = TsRelay::start(TsAuth::Both).await;
    record(
        case("@nostr-relay/core 0.0.40", true, true, false, true),
        verdict(&keys, &relay.url).await,
    );

    println!("{}", rows.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
