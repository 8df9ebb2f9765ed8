//! The validator against real relays and decoys on loopback.

mod common;

use std::time::Duration;

use brotr_probe::config::{LimitsConfig, NetworksConfig, ValidatorConfig};
use brotr_probe::model::{Candidate, RelayUrl, Schema};
use brotr_probe::net::relay::speaks_nostr;
use brotr_probe::net::{DialError, Dialer, RelayError, tls_config};
use brotr_probe::services::Service;
use brotr_probe::store::{active_relays, relay_health};
use common::peers::*;
use common::*;
use nostr_relay_builder::prelude::*;

fn dialer(allow_private: bool, timeout_secs: f64) -> Dialer {
    let mut networks = NetworksConfig::default();
    networks.clearnet.timeout_secs = Some(timeout_secs);
    Dialer::new(
        networks,
        LimitsConfig {
            allow_private,
            ..Default::default()
        },
        tls_config(&[]),
    )
}

async fn speaks_nostr_fails(d: &Dialer, url: &RelayUrl) -> bool {
    speaks_nostr(d, url).await.is_err()
}

fn local(url: &str) -> RelayUrl {
    RelayUrl::parse_allowing_local(url).expect("test url")
}

#[tokio::test]
async fn promotes_real_relays_and_rejects_every_decoy() {
    let (_open, open_url) = nostr_relay(RelayBuilder::default()).await;
    let auth = RelayBuilder::default().nip42(RelayBuilderNip42 {
        mode: RelayBuilderNip42Mode::Both,
    });
    let (_auth, auth_url) = nostr_relay(auth).await;
    let http = http_server().await;
    let decoys = [
        format!("ws://{}", http),
        format!("wss://{}", http), // TLS to a plain HTTP port: a broken TLS host
        format!("ws://{}", echo_ws().await),
        format!("ws://{}", silent_ws().await),
        format!("ws://{}", silent_tcp().await),
        format!("ws://{}", closed_port().await),
    ];
    let (url, _dir) = fresh_sqlite_url();
    let store = open(&url, Schema::Full).await;
    let mut cands: Vec<Candidate> = decoys
        .iter()
        .map(|d| Candidate::new(local(d), 1000))
        .collect();
    cands.push(Candidate::new(local(&open_url), 1000));
    cands.push(Candidate::new(local(&auth_url), 1000));
    assert_eq!(store.insert_candidates(&cands).await.unwrap(), 8);

    let cfg = ValidatorConfig::default();
    let v = validator(cfg.clone(), 2.0);
    let ctx2000 = ctx(&store, 2000);
    let woken = ctx2000.wake.subscribe();
    let report = v.run_cycle(&ctx2000).await.unwrap();
    assert_eq!((report.checked, report.promoted, report.failed), (8, 2, 6));
    assert!(
        woken.has_changed().unwrap(),
        "promotions wake the monitor and synchronizer"
    );

    let relays: Vec<String> = store
        .relays()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.url.to_string())
        .collect();
    let mut want = vec![local(&open_url).to_string(), local(&auth_url).to_string()];
    want.sort();
    assert_eq!(relays, want, "only the real relays are promoted");
    let left = store.candidates(100).await.unwrap();
    assert_eq!(left.len(), 6);
    assert!(
        left.iter().all(|c| c.failures == 1 && c.timestamp == 2000),
        "{left:?}"
    );

    // Not due again before retry_after_secs.
    let again = v.run_cycle(&ctx(&store, 2100)).await.unwrap();
    assert_eq!(again.checked, 0);
    // Due after it; dropped once out of attempts.
    let cfg2 = ValidatorConfig {
        max_failures: 2,
        ..cfg.clone()
    };
    let v2 = validator(cfg2, 2.0);
    let third = v2.run_cycle(&ctx(&store, 2000 + 3601)).await.unwrap();
    assert_eq!((third.checked, third.failed), (6, 6));
    let fourth = v2.run_cycle(&ctx(&store, 2000 + 3602)).await.unwrap();
    assert_eq!(
        fourth.pruned, 6,
        "candidates with max_failures attempts are dropped"
    );
    assert!(store.candidates(100).await.unwrap().is_empty());
}

#[tokio::test]
async fn each_decoy_fails_with_its_own_reason() {
    let d = dialer(true, 1.0);
    let http = http_server().await;
    let cases = [
        (format!("ws://{http}"), "handshake"),
        (
            format!("ws://{}", echo_ws().await),
            "not a Nostr relay message",
        ),
        (
            format!("ws://{}", silent_ws().await),
            "did not answer in time",
        ),
        (
            format!("ws://{}", silent_tcp().await),
            "did not complete the connection",
        ),
        (format!("ws://{}", closed_port().await), "cannot connect"),
    ];
    for (url, reason) in cases {
        let err = speaks_nostr(&d, &local(&url)).await.unwrap_err();
        assert!(err.to_string().contains(reason), "{url}: {err}");
    }
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_unless_allowed() {
    let (_relay, url) = nostr_relay(RelayBuilder::default()).await;
    let port = url.rsplit(':').next().unwrap().to_owned();
    let guarded = dialer(false, 2.0);
    for u in [url.clone(), format!("ws://localhost:{port}")] {
        let err = speaks_nostr(&guarded, &local(&u)).await.unwrap_err();
        assert!(
            matches!(err, RelayError::Dial(DialError::Refused { .. })),
            "{u}: {err}"
        );
        assert!(err.to_string().contains("SSRF guard"), "{err}");
    }
    let open = dialer(true, 2.0);
    assert!(speaks_nostr(&open, &local(&url)).await.is_ok());
}

#[tokio::test]
async fn an_overlay_without_a_proxy_is_refused_clearly() {
    let mut networks = NetworksConfig::default();
    networks.tor.enabled = Some(true);
    networks.tor.proxy_url = None;
    let d = Dialer::new(networks, LimitsConfig::default(), tls_config(&[]));
    let onion = RelayUrl::parse(&format!("ws://{}d.onion", "a".repeat(55))).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), speaks_nostr(&d, &onion))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no proxy configured for network tor"),
        "{err}"
    );
}

#[tokio::test]
async fn dead_relays_back_off_and_go_dormant() {
    use brotr_probe::store::RelayRow;
    let (dead, dead_url) = nostr_relay(RelayBuilder::default()).await;
    let (_alive, alive_url) = nostr_relay(RelayBuilder::default()).await;
    let (url, _dir) = fresh_sqlite_url();
    let store = open(&url, Schema::Full).await;
    let relays: Vec<RelayRow> = [&dead_url, &alive_url]
        .iter()
        .map(|u| RelayRow {
            url: local(u),
            discovered_at: 0,
        })
        .collect();
    store.insert_relays(&relays).await.unwrap();
    dead.shutdown();
    let d = dialer(true, 2.0);
    let dead_relay = local(&dead_url);
    assert!(
        eventually(Duration::from_secs(5), || speaks_nostr_fails(
            &d,
            &dead_relay
        ))
        .await,
        "the shut-down relay stops answering"
    );

    let cfg = ValidatorConfig {
        recheck_secs: 1000,
        max_backoff_secs: 100_000,
        dormant_after: 2,
        ..Default::default()
    };
    let policy = cfg.lifecycle();
    let v = validator(cfg, 2.0);
    let first = v.run_cycle(&ctx(&store, 1000)).await.unwrap();
    assert_eq!((first.rechecked, first.dormant), (2, 0));
    assert_eq!(
        active_relays(store.as_ref(), &policy).await.unwrap().len(),
        2,
        "one failure is not dormant"
    );
    let health = relay_health(store.as_ref()).await.unwrap();
    let dead_health = health
        .iter()
        .find(|(r, _)| r.url == local(&dead_url))
        .unwrap()
        .1
        .unwrap();
    assert_eq!(
        (dead_health.failures, dead_health.next_check),
        (1, 1060),
        "backs off from recheck/24 (min 60 s)"
    );

    let early = v.run_cycle(&ctx(&store, 1030)).await.unwrap();
    assert_eq!(early.rechecked, 0, "nothing due yet");
    let second = v.run_cycle(&ctx(&store, 1060)).await.unwrap();
    assert_eq!(
        (second.rechecked, second.dormant),
        (1, 1),
        "only the failing relay was due"
    );
    let active: Vec<String> = active_relays(store.as_ref(), &policy)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.url.to_string())
        .collect();
    assert_eq!(
        active,
        vec![local(&alive_url).to_string()],
        "the dead relay is dormant"
    );
    assert_eq!(
        store.relays().await.unwrap().len(),
        2,
        "dormant relays are kept, not forgotten"
    );
}
