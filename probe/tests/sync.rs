//! The synchronizer against real relays on loopback: rust-nostr relays (capped results, NIP-42)
//! and scripted misbehaving relays. Every case checks what ended up in the store.

mod common;

use std::sync::Arc;

use brotr_probe::config::{RelayOverride, Shard, SyncConfig, ValidatorConfig};
use brotr_probe::identity::Identity;
use brotr_probe::model::{Metadata, MetadataType, RelayUrl, Schema};
use brotr_probe::services::Service;
use brotr_probe::services::synchronizer::{
    CURSOR_STATE, OVERFLOW_STATE, SERVICE, SyncReport, Synchronizer, cursor_key,
};
use brotr_probe::store::{DatabaseUrl, RelayRow, Store};
use brotr_probe::sync::Progress;
use common::evil::{Misbehaviour, evil_relay};
use common::peers::nostr_relay;
use common::*;
use nostr_relay_builder::prelude::*;

const NOW: i64 = 1_800_000_000;

/// `n` signed events by a few authors: timestamps spread over `spread` seconds before `NOW`,
/// with every 10th event sharing a second with the previous one.
fn events(n: usize, spread: i64, kind: u16) -> Vec<Event> {
    let keys: Vec<Keys> = (0..4).map(|_| Keys::generate()).collect();
    (0..n)
        .map(|i| {
            let x = (i as i64).wrapping_mul(7919) % spread;
            let ts = if i % 10 == 9 {
                NOW - ((i as i64 - 1) * 7919 % spread)
            } else {
                NOW - x
            };
            EventBuilder::new(Kind::from(kind), format!("event {i}"))
                .tag(Tag::parse(["t", "sync"]).expect("tag"))
                .custom_created_at(Timestamp::from(ts as u64))
                .sign_with_keys(&keys[i % keys.len()])
                .expect("sign")
        })
        .collect()
}

async fn builder_relay(
    events: &[Event],
    cap: Option<usize>,
    b: RelayBuilder,
) -> (LocalRelay, String) {
    let db = MemoryDatabase::with_opts(MemoryDatabaseOptions {
        events: true,
        max_events: None,
    });
    for e in events {
        db.save_event(e).await.expect("seed relay");
    }
    let mut b = b.database(db);
    if let Some(c) = cap {
        b = b.max_filter_limit(c);
    }
    nostr_relay(b).await
}

/// One cycle of `sync` at `now`.
async fn cycle(store: &Arc<dyn Store>, sync: &Synchronizer, now: i64) -> SyncReport {
    sync.run_cycle(&ctx(store, now)).await.expect("cycle")
}

async fn add_relays(store: &dyn Store, urls: &[&str]) {
    let relays: Vec<RelayRow> = urls
        .iter()
        .map(|u| RelayRow {
            url: RelayUrl::parse_allowing_local(u).expect("url"),
            discovered_at: NOW,
        })
        .collect();
    store.insert_relays(&relays).await.expect("relays");
}

/// Ids stored for `url`, checked one by one against `expected`.
async fn stored_of(store: &dyn Store, url: &str, expected: &[Event]) -> usize {
    let mut n = 0;
    for e in expected {
        if store
            .event_relays(&e.id.to_bytes())
            .await
            .expect("query")
            .iter()
            .any(|r| r == url)
        {
            n += 1;
        }
    }
    n
}

async fn progress(store: &dyn Store, key: &str) -> Progress {
    let rows = store
        .state_get(SERVICE, CURSOR_STATE, Some(key))
        .await
        .expect("state");
    serde_json::from_value(rows[0].1.clone()).expect("progress")
}

/// A case on SQLite, and on PostgreSQL when run with a server (`--include-ignored` in CI).
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let (db, _dir) = super::fresh_sqlite_url();
                    super::$case(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
                async fn $case() {
                    super::$case(super::fresh_pg_url().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    archives_a_capping_relay_completely_then_resumes_incrementally,
    negentropy_archives_a_nip77_relay_and_resyncs_it_for_a_few_bytes,
);

async fn archives_a_capping_relay_completely_then_resumes_incrementally(db: DatabaseUrl) {
    {
        let evs = events(3_000, 2 * 86_400, 1);
        let (_relay, url) = builder_relay(&evs, Some(100), RelayBuilder::default()).await;
        let store = open(&db, Schema::Full).await;
        add_relays(store.as_ref(), &[&url]).await;
        let cfg = SyncConfig {
            limit: 500,
            lookback_secs: 3600,
            negentropy: false,
            ..Default::default()
        };
        let sync = synchronizer(cfg);
        let r = cycle(&store, &sync, NOW).await;
        assert_eq!(r.relays_failed, 0, "{r:?}");
        let c = store.counts().await.unwrap();
        assert_eq!((c.events, c.event_relays), (3_000, 3_000), "{db:?}");
        let amplification = r.wire.events_received as f64 / 3_000.0;
        assert!(
            amplification <= 1.05,
            "amplification {amplification}: {r:?}"
        );
        let p = progress(store.as_ref(), &url).await;
        assert_eq!(
            p,
            Progress {
                done_until: Some(NOW),
                pending: None
            }
        );

        // New events, one backdated 10 minutes (inside the look-back), one an hour later.
        let keys = Keys::generate();
        let late: Vec<Event> = [NOW - 600, NOW + 30, NOW + 3600]
            .iter()
            .map(|t| {
                EventBuilder::text_note("late")
                    .custom_created_at(Timestamp::from(*t as u64))
                    .sign_with_keys(&keys)
                    .unwrap()
            })
            .collect();
        let mut all = evs.clone();
        all.extend(late.iter().cloned());
        let (_relay2, url2) = builder_relay(&all, Some(100), RelayBuilder::default()).await;
        // Same relay contents under a new address: point the cursor of url2 at the first sync.
        add_relays(store.as_ref(), &[&url2]).await;
        store
            .state_upsert(&[brotr_probe::store::StateEntry {
                service: SERVICE.into(),
                kind: CURSOR_STATE.into(),
                key: url2.clone(),
                value: serde_json::to_value(p).unwrap(),
            }])
            .await
            .unwrap();
        let r2 = cycle(&store, &sync, NOW + 7200).await;
        assert_eq!(r2.relays_failed, 0);
        assert_eq!(
            stored_of(store.as_ref(), &url2, &late).await,
            3,
            "late events caught"
        );
        // The second relay re-read only the look-back hour, not the archive.
        let lookback_events = all
            .iter()
            .filter(|e| e.created_at.as_secs() as i64 > NOW - 3600)
            .count();
        assert!(
            r2.wire.requests <= 6 + (lookback_events as u64) / 100,
            "incremental: {} requests",
            r2.wire.requests
        );
    }
}

#[tokio::test]
async fn answers_nip42_auth_and_archives_an_auth_required_relay() {
    let evs = events(120, 10_000, 1);
    let b = RelayBuilder::default().nip42(RelayBuilderNip42 {
        mode: RelayBuilderNip42Mode::Both,
    });
    let (_relay, url) = builder_relay(&evs, None, b).await;
    let (db, _g) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    add_relays(store.as_ref(), &[&url]).await;
    let r = cycle(&store, &synchronizer(SyncConfig::default()), NOW).await;
    assert_eq!(r.relays_failed, 0, "{r:?}");
    assert_eq!(stored_of(store.as_ref(), &url, &evs).await, 120);
}

#[tokio::test]
async fn a_second_with_more_events_than_the_cap_is_reported_not_lost_silently() {
    let keys = Keys::generate();
    let mut evs: Vec<Event> = (0..30)
        .map(|i| {
            EventBuilder::text_note(format!("crowded {i}"))
                .custom_created_at(Timestamp::from((NOW - 500) as u64))
                .sign_with_keys(&keys)
                .unwrap()
        })
        .collect();
    evs.extend(events(40, 400, 1));
    let (_relay, url) = builder_relay(&evs, Some(20), RelayBuilder::default()).await;
    let (db, _g) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    add_relays(store.as_ref(), &[&url]).await;
    let paging = SyncConfig {
        negentropy: false,
        ..Default::default()
    };
    let r = cycle(&store, &synchronizer(paging), NOW).await;
    assert_eq!(r.overflows, 1, "{r:?}");
    let rows = store
        .state_get(SERVICE, OVERFLOW_STATE, Some(&url))
        .await
        .unwrap();
    assert_eq!(rows[0].1, serde_json::json!([NOW - 500]));
    // Everything outside the crowded second is archived.
    assert_eq!(stored_of(store.as_ref(), &url, &evs[30..]).await, 40);
    assert!(stored_of(store.as_ref(), &url, &evs[..30]).await >= 20);

    // The same relay with NIP-77: reconciliation lists every id, so the crowded second is
    // complete even though the relay caps each answer at 20.
    let (db, _g2) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    add_relays(store.as_ref(), &[&url]).await;
    let r = cycle(&store, &synchronizer(SyncConfig::default()), NOW).await;
    assert_eq!((r.negentropy_windows, r.overflows), (1, 0), "{r:?}");
    assert_eq!(stored_of(store.as_ref(), &url, &evs).await, 70);
}

#[tokio::test]
async fn filters_overrides_and_shards_choose_what_is_synced() {
    let mut evs = events(50, 1000, 1);
    evs.extend(events(30, 1000, 7));
    let (_a, url_a) = builder_relay(&evs, None, RelayBuilder::default()).await;
    let (_b, url_b) = builder_relay(&evs, None, RelayBuilder::default()).await;
    let (db, _g) = fresh_sqlite_url();
    let store = open(&db, Schema::Lite).await;
    add_relays(store.as_ref(), &[&url_a, &url_b]).await;
    let cfg = SyncConfig {
        filters: vec![serde_json::from_str(r#"{"kinds":[1]}"#).unwrap()],
        overrides: vec![RelayOverride {
            url: url_b.clone(),
            filters: Some(vec![serde_json::from_str(r#"{"kinds":[7]}"#).unwrap()]),
            limit: Some(10),
            disabled: false,
        }],
        ..Default::default()
    };
    // Two shards together sync each relay exactly once.
    let mut synced = 0;
    for i in 0..2 {
        let (networks, limits) = local_networks(5.0);
        let shard = Some(Shard { index: i, count: 2 });
        let lifecycle = ValidatorConfig::default().lifecycle();
        let identity = Identity::ephemeral();
        let sync =
            Synchronizer::new(cfg.clone(), networks, limits, identity, lifecycle, shard).unwrap();
        synced += cycle(&store, &sync, NOW).await.relays;
    }
    assert_eq!(synced, 2);
    assert_eq!(stored_of(store.as_ref(), &url_a, &evs[..50]).await, 50);
    assert_eq!(stored_of(store.as_ref(), &url_a, &evs[50..]).await, 0);
    assert_eq!(stored_of(store.as_ref(), &url_b, &evs[..50]).await, 0);
    assert_eq!(stored_of(store.as_ref(), &url_b, &evs[50..]).await, 30);
    // Lite keeps no content, tags or signature.
    let e = store
        .get_event(&evs[0].id.to_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.content, e.tags_json, e.sig), (None, None, None));
    assert_eq!(e.tagvalues, vec!["t:sync".to_owned()]);
}

/// Each misbehaving relay is synced next to a good one: no panic, the cycle succeeds, the good
/// relay is complete, and nothing that is not one of the real events is stored.
#[tokio::test]
async fn misbehaving_relays_store_nothing_wrong_and_do_not_hurt_others() {
    let cases = [
        (Misbehaviour::Garbage, true),
        (Misbehaviour::WrongId, true),
        (Misbehaviour::BadSignature, true),
        (Misbehaviour::OffFilter, true),
        (Misbehaviour::TenTimes, true),
        (Misbehaviour::Oversized, false),
        (Misbehaviour::NoEose, false),
        (Misbehaviour::Drip, false),
        (Misbehaviour::Disconnect, false),
    ];
    let real = events(300, 5_000, 1);
    let mut served = real.clone();
    // Kind 7 events: only the OffFilter relay sends them (the filter asks for kind 1).
    let off = events(20, 5_000, 7);
    served.extend(off.iter().cloned());
    let (_good, good_url) = builder_relay(&real, None, RelayBuilder::default()).await;
    for (how, complete) in cases {
        let evil_url = evil_relay(served.clone(), how).await;
        let (db, _g) = fresh_sqlite_url();
        let store = open(&db, Schema::Full).await;
        add_relays(store.as_ref(), &[&good_url, &evil_url]).await;
        let cfg = SyncConfig {
            filters: vec![serde_json::from_str(r#"{"kinds":[1]}"#).unwrap()],
            limit: 100,
            idle_timeout_secs: 1.0,
            page_timeout_secs: 2.0,
            ..Default::default()
        };
        let sync = synchronizer(cfg);
        let r = sync
            .run_cycle(&ctx(&store, NOW))
            .await
            .unwrap_or_else(|e| panic!("{how:?}: cycle failed: {e}"));
        assert_eq!(
            stored_of(store.as_ref(), &good_url, &real).await,
            300,
            "{how:?}"
        );
        let c = store.counts().await.unwrap();
        assert_eq!(c.events, 300, "{how:?}: only real events are stored: {r:?}");
        let on_evil = stored_of(store.as_ref(), &evil_url, &real).await;
        assert_eq!(
            stored_of(store.as_ref(), &evil_url, &off).await,
            0,
            "{how:?}"
        );
        if complete {
            assert_eq!(on_evil, 300, "{how:?}: {r:?}");
            assert_eq!(r.relays_failed, 0, "{how:?}: {r:?}");
            if how != Misbehaviour::TenTimes {
                assert!(r.rejected.total() > 0, "{how:?}: rejections counted: {r:?}");
            }
        } else {
            assert_eq!(r.relays_failed, 1, "{how:?}: {r:?}");
            // The cursor never claims more than is stored.
            let key = cursor_key(
                &evil_url,
                &serde_json::from_str(r#"{"kinds":[1]}"#).unwrap(),
            );
            let rows = store
                .state_get(SERVICE, CURSOR_STATE, Some(&key))
                .await
                .unwrap();
            if let Some((_, v)) = rows.first() {
                let p: Progress = serde_json::from_value(v.clone()).unwrap();
                let claimed: Vec<Event> = real
                    .iter()
                    .filter(|e| {
                        let t = e.created_at.as_secs() as i64;
                        p.done_until.is_some_and(|d| t <= d)
                            || p.pending.is_some_and(|w| t > w.top && t <= w.end)
                    })
                    .cloned()
                    .collect();
                assert_eq!(
                    stored_of(store.as_ref(), &evil_url, &claimed).await,
                    claimed.len(),
                    "{how:?}: cursor {p:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_relay_already_in_sync_costs_almost_nothing() {
    let evs = events(1_000, 50_000, 1);
    let (_relay, url) = builder_relay(&evs, None, RelayBuilder::default()).await;
    let (db, _g) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    add_relays(store.as_ref(), &[&url]).await;
    let sync = synchronizer(SyncConfig {
        lookback_secs: 0,
        ..Default::default()
    });
    cycle(&store, &sync, NOW).await;
    let again = cycle(&store, &sync, NOW + 60).await;
    assert_eq!(again.events_new, 0);
    assert_eq!(again.wire.events_received, 0);
    assert!(again.wire.requests <= 1, "{again:?}");
}

async fn negentropy_archives_a_nip77_relay_and_resyncs_it_for_a_few_bytes(db: DatabaseUrl) {
    {
        let evs = events(2_000, 86_400, 1);
        let (_relay, url) = builder_relay(&evs, None, RelayBuilder::default()).await;
        let store = open(&db, Schema::Full).await;
        add_relays(store.as_ref(), &[&url]).await;
        let sync = synchronizer(SyncConfig::default());
        let first = cycle(&store, &sync, NOW).await;
        assert_eq!(first.relays_failed, 0, "{first:?}");
        assert_eq!(first.negentropy_windows, 1, "{first:?}");
        assert_eq!(stored_of(store.as_ref(), &url, &evs).await, 2_000);
        assert_eq!(first.wire.events_received, 2_000, "each event fetched once");

        // Unchanged relay: fingerprints only.
        let again = cycle(&store, &sync, NOW + 60).await;
        assert_eq!(again.wire.events_received, 0);
        let ratio = again.wire.bytes_in as f64 / first.wire.bytes_in as f64;
        assert!(
            ratio < 0.02,
            "re-sync read {ratio:.4} of the first sync's bytes"
        );

        // An event backdated far below the cursor (outside any look-back) is still caught.
        let old = EventBuilder::text_note("backdated")
            .custom_created_at(Timestamp::from((NOW - 30 * 86_400) as u64))
            .sign_with_keys(&Keys::generate())
            .unwrap();
        let mut all = evs.clone();
        all.push(old.clone());
        let (_relay2, url2) = builder_relay(&all, None, RelayBuilder::default()).await;
        add_relays(store.as_ref(), &[&url2]).await;
        let r = cycle(&store, &sync, NOW + 120).await;
        assert_eq!(r.relays_failed, 0);
        assert_eq!(stored_of(store.as_ref(), &url2, &all).await, 2_001);
    }
}

#[tokio::test]
async fn garbage_or_refused_negentropy_falls_back_to_req_paging() {
    let evs = events(250, 5_000, 1);
    for how in [Misbehaviour::NegGarbage, Misbehaviour::None] {
        let url = evil_relay(evs.clone(), how).await;
        let (db, _g) = fresh_sqlite_url();
        let store = open(&db, Schema::Full).await;
        add_relays(store.as_ref(), &[&url]).await;
        let sync = synchronizer(SyncConfig {
            limit: 100,
            ..Default::default()
        });
        let r = cycle(&store, &sync, NOW).await;
        assert_eq!(
            (r.relays_failed, r.negentropy_windows),
            (0, 0),
            "{how:?}: {r:?}"
        );
        assert_eq!(stored_of(store.as_ref(), &url, &evs).await, 250, "{how:?}");
    }
}

/// Most relays without NIP-77 ignore NEG-OPEN: the silence is judged within a few round trips
/// (a request sent behind NEG-OPEN is answered first), and the relay is paged with REQs.
#[tokio::test]
async fn a_relay_ignoring_neg_open_is_paged_without_waiting_for_a_timeout() {
    let evs = events(250, 5_000, 1);
    let url = evil_relay(evs.clone(), Misbehaviour::NegSilent).await;
    let (db, _g) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    add_relays(store.as_ref(), &[&url]).await;
    // An idle timeout far above the test's patience: silence must not be waited out.
    let sync = synchronizer(SyncConfig {
        limit: 100,
        idle_timeout_secs: 60.0,
        ..Default::default()
    });
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        cycle(&store, &sync, NOW),
    )
    .await
    .expect("silence is not waited out");
    assert_eq!((r.relays_failed, r.negentropy_windows), (0, 0), "{r:?}");
    assert_eq!(stored_of(store.as_ref(), &url, &evs).await, 250);
}

/// The monitor's NIP-77 probe is the one answer: a relay it found without NIP-77 is paged at
/// once, without a NEG-OPEN of the synchronizer's own.
#[tokio::test]
async fn the_monitors_nip77_verdict_spares_the_negentropy_attempt() {
    let evs = events(250, 5_000, 1);
    let url = evil_relay(evs.clone(), Misbehaviour::None).await;
    let sync = synchronizer(SyncConfig {
        limit: 100,
        ..Default::default()
    });
    let mut requests = Vec::new();
    for verdict in [None, Some(false)] {
        let (db, _g) = fresh_sqlite_url();
        let store = open(&db, Schema::Full).await;
        add_relays(store.as_ref(), &[&url]).await;
        if let Some(v) = verdict {
            let doc = Metadata::new(
                MetadataType::Nip77Probe,
                &serde_json::json!({"negentropy": v}),
            )
            .unwrap();
            let relay = RelayRow {
                url: RelayUrl::parse_allowing_local(&url).unwrap(),
                discovered_at: NOW,
            };
            store
                .insert_metadata(&relay, NOW - 60, &[doc])
                .await
                .unwrap();
        }
        let r = cycle(&store, &sync, NOW).await;
        assert_eq!(stored_of(store.as_ref(), &url, &evs).await, 250);
        requests.push(r.wire.requests);
    }
    assert_eq!(
        requests[1] + 1,
        requests[0],
        "one NEG-OPEN less: {requests:?}"
    );
}

#[tokio::test]
async fn live_tail_stores_events_as_they_arrive_and_moves_the_cursor() {
    let evs = events(100, 5_000, 1);
    let (_relay, url) = builder_relay(&evs, None, RelayBuilder::default()).await;
    let (db, _g) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    add_relays(store.as_ref(), &[&url]).await;
    let sync = synchronizer(SyncConfig {
        live_secs: 3,
        ..Default::default()
    });
    // Published while the synchronizer is subscribed.
    let keys = Keys::generate();
    let fresh: Vec<Event> = (1..=3)
        .map(|i| {
            EventBuilder::text_note(format!("live {i}"))
                .custom_created_at(Timestamp::from((NOW + i) as u64))
                .sign_with_keys(&keys)
                .unwrap()
        })
        .collect();
    // Published once the catch-up is stored, while the synchronizer stays subscribed; events
    // stored before its subscription opens come back as stored events, so no timing matters.
    let publisher = {
        let (url, fresh, store) = (url.clone(), fresh.clone(), store.clone());
        tokio::spawn(async move {
            use futures_util::{SinkExt, StreamExt};
            let caught_up = eventually(std::time::Duration::from_secs(10), || async {
                store.counts().await.unwrap().events >= 100
            })
            .await;
            assert!(caught_up, "the catch-up is stored");
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            for e in &fresh {
                ws.send(tokio_tungstenite::tungstenite::Message::text(format!(
                    r#"["EVENT",{}]"#,
                    e.as_json()
                )))
                .await
                .unwrap();
            }
            // The relay has them once it said OK to each.
            let mut oks = 0;
            while oks < fresh.len() {
                let m = ws.next().await.unwrap().unwrap();
                oks += usize::from(m.to_text().unwrap_or("").starts_with("[\"OK\""));
            }
        })
    };
    let r = cycle(&store, &sync, NOW).await;
    publisher.await.unwrap();
    assert_eq!(r.relays_failed, 0, "{r:?}");
    assert_eq!(stored_of(store.as_ref(), &url, &evs).await, 100);
    assert_eq!(stored_of(store.as_ref(), &url, &fresh).await, 3, "{r:?}");
    let p = progress(store.as_ref(), &url).await;
    assert!(p.done_until.unwrap() > NOW, "{p:?}");
}

#[tokio::test]
async fn a_rate_limited_relay_allowing_one_subscription_at_a_time_is_archived() {
    let evs = events(1_000, 20_000, 1);
    let b = RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 1,
        notes_per_minute: 1,
    });
    let (_relay, url) = builder_relay(&evs, None, b).await;
    let (db, _g) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    add_relays(store.as_ref(), &[&url]).await;
    let sync = synchronizer(SyncConfig {
        limit: 100,
        negentropy: false,
        ..Default::default()
    });
    let r = cycle(&store, &sync, NOW).await;
    assert_eq!(r.relays_failed, 0, "{r:?}");
    assert_eq!(stored_of(store.as_ref(), &url, &evs).await, 1_000);
    assert!(r.wire.requests >= 10, "paged: {r:?}");
}

/// When the relay accepts our AUTH in the race with the first REQ.
#[derive(Clone, Copy, Debug)]
enum AuthRace {
    /// The OK comes before the EOSE of the anonymous answer.
    OkBeforeEose,
    /// The OK comes after it (still pending at EOSE).
    OkAfterEose,
}

type ServerWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The next JSON array the client sends; `None` when it is gone.
async fn next_array(ws: &mut ServerWs) -> Option<Vec<serde_json::Value>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => {
                if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(t.as_str()) {
                    return Some(items);
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

async fn send_json(ws: &mut ServerWs, v: serde_json::Value) {
    use futures_util::SinkExt;
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::text(v.to_string()))
        .await;
}

/// An AUTH message's pubkey and the OK accepting it.
fn accept_auth(auth: &[serde_json::Value]) -> (Option<String>, serde_json::Value) {
    let event = auth.get(1).cloned().unwrap_or_default();
    let pubkey = event["pubkey"].as_str().map(str::to_owned);
    (pubkey, serde_json::json!(["OK", event["id"], true, ""]))
}

/// A relay that, like nostr-rs-relay with `nip42_dms`, serves kind-4 events only to their
/// authenticated author or `p`-tagged recipient and leaves them out silently otherwise. It sends
/// its challenge on connect and answers a REQ as things stood when it arrived, but only after
/// reading the AUTH that follows it: the race a real relay loses now and then, lost every time.
async fn dm_relay(events: Vec<Event>, race: AuthRace) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let events = Arc::new(events);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let events = events.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                send_json(&mut ws, serde_json::json!(["AUTH", "race"])).await;
                let mut authed: Option<String> = None;
                while let Some(items) = next_array(&mut ws).await {
                    match items.first().and_then(|v| v.as_str()) {
                        Some("AUTH") => {
                            let (pubkey, ok) = accept_auth(&items);
                            authed = pubkey;
                            send_json(&mut ws, ok).await;
                        }
                        Some("REQ") if items.len() >= 3 => {
                            let reader = authed.clone();
                            let mut held_ok = None;
                            if reader.is_none() {
                                let auth = next_array(&mut ws).await.unwrap_or_default();
                                assert_eq!(auth.first(), Some(&serde_json::json!("AUTH")));
                                let (pubkey, ok) = accept_auth(&auth);
                                authed = pubkey;
                                match race {
                                    AuthRace::OkBeforeEose => send_json(&mut ws, ok).await,
                                    AuthRace::OkAfterEose => held_ok = Some(ok),
                                }
                            }
                            let sub = items[1].clone();
                            let filter =
                                Filter::from_json(items[2].to_string()).expect("REQ filter");
                            let readable = |e: &Event| {
                                e.kind != Kind::EncryptedDirectMessage
                                    || reader.as_deref().is_some_and(|pk| {
                                        e.pubkey.to_hex() == pk
                                            || e.tags.public_keys().any(|p| p.to_hex() == pk)
                                    })
                            };
                            let mut page: Vec<&Event> = events
                                .iter()
                                .filter(|e| {
                                    filter.match_event(e, nostr::filter::MatchEventOptions::new())
                                })
                                .filter(|e| readable(e))
                                .collect();
                            page.sort_by_key(|e| std::cmp::Reverse(e.created_at));
                            page.truncate(filter.limit.unwrap_or(usize::MAX));
                            for e in page {
                                send_json(&mut ws, serde_json::json!(["EVENT", sub, e])).await;
                            }
                            send_json(&mut ws, serde_json::json!(["EOSE", sub])).await;
                            if let Some(ok) = held_ok {
                                send_json(&mut ws, ok).await;
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    format!("ws://{addr}")
}

/// Notes by strangers, kind-4 DMs to `me` and one DM between strangers.
fn notes_and_dms(me: &Keys, notes: usize) -> (Vec<Event>, Vec<Event>, Event) {
    let stranger = Keys::generate();
    let notes = events(notes, 3000, 1);
    let dm = |to: &PublicKey, i: u64| {
        EventBuilder::new(Kind::EncryptedDirectMessage, format!("dm {i}"))
            .tag(Tag::public_key(*to))
            .custom_created_at(Timestamp::from((NOW - 100 - i as i64) as u64))
            .sign_with_keys(&Keys::generate())
            .expect("sign")
    };
    let mine = vec![dm(&me.public_key(), 1), dm(&me.public_key(), 2)];
    (notes, mine, dm(&stranger.public_key(), 3))
}

/// A synchronizer answering AUTH with `keys`, paging with REQs.
fn synchronizer_as(keys: &Keys) -> Synchronizer {
    let (networks, limits) = local_networks(5.0);
    let cfg = SyncConfig {
        negentropy: false,
        ..Default::default()
    };
    let lifecycle = ValidatorConfig::default().lifecycle();
    let identity = Identity::from_keys(keys.clone());
    Synchronizer::new(cfg, networks, limits, identity, lifecycle, None).expect("sync config")
}

/// An AUTH accepted while the first REQ is answered anonymously: that answer lacks the DMs to
/// us, so the window is asked again before the cursor passes them.
#[tokio::test]
async fn dms_left_out_of_an_answer_given_before_auth_are_read_again() {
    for race in [AuthRace::OkBeforeEose, AuthRace::OkAfterEose] {
        let me = Keys::generate();
        let (notes, mine, theirs) = notes_and_dms(&me, 30);
        let mut all = notes.clone();
        all.extend(mine.iter().cloned());
        all.push(theirs.clone());
        let url = dm_relay(all, race).await;
        let (db, _g) = fresh_sqlite_url();
        let store = open(&db, Schema::Full).await;
        add_relays(store.as_ref(), &[&url]).await;
        let r = cycle(&store, &synchronizer_as(&me), NOW).await;
        assert_eq!(r.relays_failed, 0, "{race:?}: {r:?}");
        let s = store.as_ref();
        assert_eq!(stored_of(s, &url, &mine).await, 2, "{race:?}: DMs to us");
        assert_eq!(stored_of(s, &url, &notes).await, 30, "{race:?}");
        assert_eq!(stored_of(s, &url, &[theirs]).await, 0, "{race:?}");
        let counts = store.counts().await.expect("counts");
        assert_eq!((counts.events, counts.event_relays), (32, 32), "{race:?}");
    }
}
