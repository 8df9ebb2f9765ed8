//! Brotr against relays and verifiers it did not write: a real nostr-rs-relay and `e2e/neg-relay`
//! (NIP-77 on go-nostr's own negentropy) as peers; nostr-tools and go-nostr as independent
//! judges of events signed with `nostr`. The tools come from `e2e/tools.sh`: every test here is
//! `#[ignore]`d by a plain `cargo test` and run by CI with `--include-ignored`, where a missing
//! tool fails it.

mod common;

use std::time::Duration;

use brotr_probe::config::ValidatorConfig;
use brotr_probe::model::{Candidate, RelayUrl, Schema};
use brotr_probe::net::Dialer;
use brotr_probe::net::relay::{Answer, speaks_nostr as probe_nostr};
use brotr_probe::services::Service;
use common::external::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn dialer() -> Dialer {
    local_dialer(5.0)
}

fn local(url: &str) -> RelayUrl {
    RelayUrl::parse_allowing_local(url).expect("test url")
}

/// A fresh SQLite store (full schema) holding `url` as its one relay, discovered at `now`.
async fn store_with_relay(
    url: &str,
    now: i64,
) -> (
    std::sync::Arc<dyn brotr_probe::store::Store>,
    tempfile::TempDir,
) {
    let (db, dir) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    store
        .insert_relays(&[brotr_probe::store::RelayRow {
            url: local(url),
            discovered_at: now,
        }])
        .await
        .expect("insert the relay");
    (store, dir)
}

fn signed_note(content: &str) -> Event {
    EventBuilder::text_note(content)
        .sign_with_keys(&Keys::generate())
        .expect("sign")
}

/// The validator, run once on a fresh SQLite store holding `url` as its only candidate,
/// promotes it.
async fn assert_validator_promotes(url: &str) {
    let (db, _dir) = fresh_sqlite_url();
    let store = open(&db, Schema::Full).await;
    store
        .insert_candidates(&[Candidate::new(local(url), 1000)])
        .await
        .unwrap();
    let report = validator(ValidatorConfig::default(), 5.0)
        .run_cycle(&ctx(&store, 2000))
        .await
        .unwrap();
    assert_eq!(
        (report.checked, report.promoted),
        (1, 1),
        "{url}: {report:?}"
    );
    let relays: Vec<String> = store
        .relays()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.url.to_string())
        .collect();
    assert_eq!(relays, vec![local(url).to_string()]);
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
        .0
}

/// The next relay message (a JSON array), failing after 5 s of silence.
async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("relay answered within 5 s")
            .expect("connection open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).expect("relay sent JSON");
        }
    }
}

async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string())).await.expect("send");
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn the_validator_promotes_a_real_nostr_rs_relay() {
    let relay = NostrRsRelay::start(&NostrRsRelayConfig::default()).await;
    assert_validator_promotes(&relay.url).await;
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn probe_nostr_gets_an_eose_from_nostr_rs_relay() {
    let relay = NostrRsRelay::start(&NostrRsRelayConfig::default()).await;
    let answer = probe_nostr(&dialer(), &local(&relay.url)).await;
    assert_eq!(answer.unwrap(), Answer("EOSE"), "{}", relay.log());
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn a_nostr_rs_relay_requiring_nip42_auth_answers_with_its_challenge_and_is_promoted() {
    let config = NostrRsRelayConfig {
        nip42_auth: true,
        ..Default::default()
    };
    let relay = NostrRsRelay::start(&config).await;
    let answer = probe_nostr(&dialer(), &local(&relay.url)).await;
    assert_eq!(answer.unwrap(), Answer("AUTH"), "{}", relay.log());
    assert_validator_promotes(&relay.url).await;
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn nostr_rs_relay_serves_the_nip11_document_of_its_config() {
    let config = NostrRsRelayConfig {
        name: Some("brotr nip11 check".into()),
        ..Default::default()
    };
    let relay = NostrRsRelay::start(&config).await;
    assert_eq!(relay.nip11["name"], "brotr nip11 check");
    let nips = relay.nip11["supported_nips"]
        .as_array()
        .expect("supported_nips");
    assert!(nips.contains(&json!(11)), "{nips:?}");
    assert!(
        relay.nip11["software"]
            .as_str()
            .is_some_and(|s| s.contains("nostr-rs-relay")),
        "{}",
        relay.nip11
    );
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn nostr_rs_relay_accepts_a_signed_event_and_returns_it_on_req() {
    let relay = NostrRsRelay::start(&NostrRsRelayConfig::default()).await;
    let event = signed_note("hello from brotr's tests");
    let id = event.id.to_hex();
    let mut ws = connect(&relay.url).await;
    send(&mut ws, json!(["EVENT", event])).await;
    assert_eq!(
        next_message(&mut ws).await,
        json!(["OK", id, true, ""]),
        "{}",
        relay.log()
    );

    send(&mut ws, json!(["REQ", "read-back", {"ids": [id]}])).await;
    let got = next_message(&mut ws).await;
    assert_eq!((&got[0], &got[1]), (&json!("EVENT"), &json!("read-back")));
    let back = Event::from_json(got[2].to_string()).expect("an event");
    assert_eq!(back, event, "the relay returns the event unchanged");
    back.verify().expect("still verifies");
    assert_eq!(next_message(&mut ws).await, json!(["EOSE", "read-back"]));
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn nostr_rs_relay_refuses_an_event_over_its_configured_max_event_bytes() {
    let config = NostrRsRelayConfig {
        max_event_bytes: Some(1024),
        ..Default::default()
    };
    let relay = NostrRsRelay::start(&config).await;
    let mut ws = connect(&relay.url).await;
    send(&mut ws, json!(["EVENT", signed_note(&"x".repeat(2000))])).await;
    let notice = next_message(&mut ws).await;
    assert_eq!(notice[0], "NOTICE", "{notice}");
    assert!(
        notice[1].as_str().is_some_and(|m| m.contains("max size")),
        "{notice}"
    );
    let small = signed_note("small enough");
    send(&mut ws, json!(["EVENT", small])).await;
    assert_eq!(
        next_message(&mut ws).await,
        json!(["OK", small.id.to_hex(), true, ""])
    );
}

/// Ids of the EVENTs a REQ with `filter` gets before EOSE, in the order the relay sent them.
async fn req_ids(ws: &mut Ws, sub: &str, filter: Value) -> Vec<String> {
    send(ws, json!(["REQ", sub, filter])).await;
    let mut ids = Vec::new();
    loop {
        let msg = next_message(ws).await;
        match msg[0].as_str() {
            Some("EVENT") => ids.push(msg[2]["id"].as_str().expect("id").to_owned()),
            Some("EOSE") => return ids,
            _ => panic!("unexpected {msg}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn nostr_rs_relay_returns_every_match_oldest_first_and_a_limit_newest_first() {
    let relay = NostrRsRelay::start(&NostrRsRelayConfig::default()).await;
    let keys = Keys::generate();
    let events: Vec<Event> = (0..5u64)
        .map(|i| {
            EventBuilder::text_note(format!("note {i}"))
                .custom_created_at(nostr::Timestamp::from(1_700_000_000 + i))
                .sign_with_keys(&keys)
                .expect("sign")
        })
        .collect();
    let mut ws = connect(&relay.url).await;
    for e in &events {
        send(&mut ws, json!(["EVENT", e])).await;
        assert_eq!(next_message(&mut ws).await[2], true, "{}", relay.log());
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.to_hex()).collect();
    let author = keys.public_key().to_hex();
    // nostr-rs-relay says OK before its batched write commits (and then broadcasts the event
    // to open subscriptions): wait until every event is stored, on a connection of its own.
    let mut probe = connect(&relay.url).await;
    for i in 0..100 {
        let seen = req_ids(
            &mut probe,
            &format!("wait{i}"),
            json!({"authors": [author]}),
        )
        .await;
        send(&mut probe, json!(["CLOSE", format!("wait{i}")])).await;
        if seen.len() == events.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(probe);

    let all = req_ids(&mut ws, "all", json!({"authors": [author]})).await;
    assert_eq!(all, ids, "no limit: every match, oldest first");
    let two = req_ids(&mut ws, "two", json!({"authors": [author], "limit": 2})).await;
    assert_eq!(
        two,
        vec![ids[4].clone(), ids[3].clone()],
        "limit: newest first"
    );
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn the_synchronizer_archives_every_event_of_a_nostr_rs_relay_by_req_paging() {
    use brotr_probe::config::SyncConfig;

    const NOW: i64 = 1_760_000_000;
    let relay = NostrRsRelay::start(&NostrRsRelayConfig::default()).await;
    // 250 events; every 10th shares its second with the previous one, so pages end inside ties.
    let keys: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let events: Vec<Event> = (0..250i64)
        .map(|i| {
            let t = NOW - 37 * (i - i64::from(i % 10 == 9));
            EventBuilder::text_note(format!("sync {i}"))
                .custom_created_at(nostr::Timestamp::from(t as u64))
                .sign_with_keys(&keys[i as usize % keys.len()])
                .expect("sign")
        })
        .collect();
    let mut ws = connect(&relay.url).await;
    for e in &events {
        send(&mut ws, json!(["EVENT", e])).await;
        assert_eq!(next_message(&mut ws).await[2], true, "{}", relay.log());
    }

    let (store, _dir) = store_with_relay(&relay.url, NOW).await;
    let sync = synchronizer(SyncConfig {
        limit: 100,
        extract_hints: false,
        ..Default::default()
    });
    let r = sync.run_cycle(&ctx(&store, NOW)).await.expect("cycle");
    assert_eq!(r.relays_failed, 0, "{r:?}\n{}", relay.log());
    assert_eq!(
        r.negentropy_windows, 0,
        "nostr-rs-relay has no NIP-77: {r:?}"
    );
    assert_eq!(store.counts().await.unwrap().events, 250, "{r:?}");
    assert!(
        r.wire.events_received <= 275,
        "pages overlap by at most a tie's worth: {r:?}"
    );
}

/// nostr-rs-relay with `nip42_dms` serves a DM only to a connection authenticated as its author
/// or recipient, and answers a REQ that reached it before our AUTH without them (no CLOSED): the
/// synchronizer must read that window again once its AUTH is accepted. Several fresh syncs, as
/// the race on loopback goes either way.
#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn the_synchronizer_archives_the_dms_a_nip42_dms_nostr_rs_relay_serves_it_after_auth() {
    use brotr_probe::config::{SyncConfig, ValidatorConfig};
    use brotr_probe::identity::Identity;
    use brotr_probe::services::synchronizer::Synchronizer;
    use brotr_probe::store::RelayRow;

    const NOW: i64 = 1_760_000_000;
    const SYNCS: usize = 20;
    let config = NostrRsRelayConfig {
        nip42_auth: true,
        nip42_dms: true,
        ..Default::default()
    };
    let relay = NostrRsRelay::start(&config).await;
    let me = Keys::generate();
    let notes = notes_before(NOW - 200, 40, |i| 7 * i);
    // The DMs are the newest events: the first a newest-first answer sends.
    let dm = |to: nostr::PublicKey, i: i64| {
        EventBuilder::new(Kind::EncryptedDirectMessage, format!("dm {i}"))
            .tag(nostr::Tag::public_key(to))
            .custom_created_at(nostr::Timestamp::from((NOW - 100 + i) as u64))
            .sign_with_keys(&Keys::generate())
            .expect("sign")
    };
    let mine = vec![dm(me.public_key(), 1), dm(me.public_key(), 2)];
    let theirs = dm(Keys::generate().public_key(), 3);
    let mut all = notes.clone();
    all.extend(mine.iter().cloned());
    all.push(theirs.clone());
    publish(&relay.url, &all).await;

    let (networks, limits) = local_networks(5.0);
    let sync = Synchronizer::new(
        SyncConfig {
            // nostr-rs-relay has no NIP-77; the REQ is the first thing sent, as in production
            // once the monitor has said so.
            negentropy: false,
            extract_hints: false,
            ..Default::default()
        },
        networks,
        limits,
        Identity::from_keys(me.clone()),
        ValidatorConfig::default().lifecycle(),
        None,
    )
    .expect("sync config");
    let url = local(&relay.url);
    let mut lost = Vec::new();
    for round in 0..SYNCS {
        let (db, _dir) = fresh_sqlite_url();
        let store = open(&db, Schema::Full).await;
        store
            .insert_relays(&[RelayRow {
                url: url.clone(),
                discovered_at: NOW,
            }])
            .await
            .unwrap();
        let r = sync.run_cycle(&ctx(&store, NOW)).await.expect("cycle");
        assert_eq!(r.relays_failed, 0, "{r:?}\n{}", relay.log());
        let mut missing = 0;
        for e in notes.iter().chain(&mine) {
            let relays = store.event_relays(&e.id.to_bytes()).await.unwrap();
            if relays != vec![url.to_string()] {
                missing += 1;
            }
        }
        let stranger = store.event_relays(&theirs.id.to_bytes()).await.unwrap();
        assert!(stranger.is_empty(), "the stranger's DM was served to us");
        let counts = store.counts().await.unwrap();
        if missing > 0 || (counts.events, counts.event_relays) != (42, 42) {
            lost.push((round, missing, counts.events, counts.event_relays));
        }
    }
    assert!(
        lost.is_empty(),
        "syncs missing events (round, missing, events, event_relays): {lost:?}"
    );
}

/// Publishes `events` over one connection, in batches (a batch sent, then its OKs read, so
/// neither side's socket buffer fills up), and checks that the relay accepted each of them.
async fn publish(url: &str, events: &[Event]) {
    let mut ws = connect(url).await;
    for batch in events.chunks(250) {
        for e in batch {
            ws.feed(Message::text(json!(["EVENT", e]).to_string()))
                .await
                .expect("send");
        }
        ws.flush().await.expect("flush");
        let mut pending: std::collections::HashSet<String> =
            batch.iter().map(|e| e.id.to_hex()).collect();
        while !pending.is_empty() {
            let ok = next_message(&mut ws).await;
            if ok[0] == "AUTH" {
                // A NIP-42 relay's challenge: publishing needs no AUTH.
                continue;
            }
            assert_eq!((&ok[0], &ok[2]), (&json!("OK"), &json!(true)), "{ok}");
            assert!(pending.remove(ok[1].as_str().unwrap_or("")), "{ok}");
        }
    }
}

/// `e2e/neg-relay`'s NEG-MSG answers per reconciliation, from its `NEG-CLOSE … after N rounds`
/// log lines, in order.
fn neg_rounds(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains("NEG-CLOSE"))
        .filter_map(|l| l.split(" after ").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// `n` signed text notes by a few authors at `NOW - offset(i)`, every 10th in the same second as
/// the previous one.
fn notes_before(now: i64, n: i64, offset: impl Fn(i64) -> i64) -> Vec<Event> {
    let keys: Vec<Keys> = (0..4).map(|_| Keys::generate()).collect();
    (0..n)
        .map(|i| {
            let t = now - offset(i - i64::from(i % 10 == 9));
            EventBuilder::text_note(format!("negentropy {i} {}", keys[0].public_key()))
                .custom_created_at(nostr::Timestamp::from(t as u64))
                .sign_with_keys(&keys[i as usize % keys.len()])
                .expect("sign")
        })
        .collect()
}

/// The synchronizer against an independent NIP-77 implementation (go-nostr's negentropy in
/// `e2e/neg-relay`, not the Rust `negentropy` crate that brotr and rust-nostr's relay share):
/// one window reconciled, every event fetched once; an unchanged relay re-synced for a few
/// bytes; then only the events added since (some backdated into old buckets) fetched. Once with
/// the relay's frames unlimited, once capped at 4 KiB (the relay then sends its ids over many
/// rounds, each ending in a fingerprint of the rest).
#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn the_synchronizer_reconciles_with_go_nostrs_negentropy_and_resyncs_for_a_few_bytes() {
    use brotr_probe::config::SyncConfig;
    use brotr_probe::store::RelayRow;

    const NOW: i64 = 1_760_000_000;
    const N: i64 = 1_500;
    // Spread over two days.
    let events = notes_before(NOW, N, |i| (i * 7919) % 172_800);
    // Added later: spread over the same two days (into buckets both sides already fingerprinted),
    // one backdated by a month, one newer than everything.
    let mut added = notes_before(NOW, 24, |i| (i * 7177 + 13) % 172_800);
    added.extend(notes_before(NOW, 1, |_| 30 * 86_400));
    added.extend(notes_before(NOW + 100, 1, |_| 0));
    for frame_limit in [None, Some(4096)] {
        let config = NegRelayConfig {
            frame_limit,
            ..Default::default()
        };
        let relay = NegRelay::start_with(&config).await;
        let nips = relay.nip11["supported_nips"].as_array().expect("nips");
        assert!(nips.contains(&json!(77)), "{}", relay.nip11);
        let started = std::time::Instant::now();
        publish(&relay.url, &events).await;
        let published = started.elapsed();

        let (db, _dir) = fresh_sqlite_url();
        let store = open(&db, Schema::Full).await;
        let url = local(&relay.url);
        store
            .insert_relays(&[RelayRow {
                url: url.clone(),
                discovered_at: NOW,
            }])
            .await
            .unwrap();
        let sync = synchronizer(SyncConfig {
            extract_hints: false,
            ..Default::default()
        });
        let started = std::time::Instant::now();
        let first = sync.run_cycle(&ctx(&store, NOW)).await.expect("cycle");
        let first_took = started.elapsed();
        let what = format!("frame limit {frame_limit:?}: {first:?}\n{}", relay.log());
        assert_eq!(first.relays_failed, 0, "{what}");
        assert_eq!(first.negentropy_windows, 1, "{what}");
        assert_eq!(store.counts().await.unwrap().events, N as u64, "{what}");
        assert_eq!(first.events_new, N as u64, "{what}");
        assert_eq!(
            first.wire.events_received, N as u64,
            "each event fetched once: {what}"
        );

        // Unchanged relay: fingerprints only.
        let started = std::time::Instant::now();
        let again = sync.run_cycle(&ctx(&store, NOW + 60)).await.expect("cycle");
        let again_took = started.elapsed();
        let what = format!("frame limit {frame_limit:?}: {again:?}\n{}", relay.log());
        assert_eq!(
            (again.relays_failed, again.negentropy_windows),
            (0, 1),
            "{what}"
        );
        assert_eq!(again.wire.events_received, 0, "{what}");
        let ratio = again.wire.bytes_in as f64 / first.wire.bytes_in as f64;
        assert!(ratio < 0.02, "re-sync read {ratio:.4} of the first: {what}");

        // New events, old and new: exactly those are fetched.
        publish(&relay.url, &added).await;
        let third = sync
            .run_cycle(&ctx(&store, NOW + 120))
            .await
            .expect("cycle");
        let what = format!("frame limit {frame_limit:?}: {third:?}\n{}", relay.log());
        assert_eq!(
            (third.relays_failed, third.negentropy_windows),
            (0, 1),
            "{what}"
        );
        assert_eq!(third.events_new, added.len() as u64, "{what}");
        assert_eq!(third.wire.events_received, added.len() as u64, "{what}");
        let total = (N as usize + added.len()) as u64;
        assert_eq!(store.counts().await.unwrap().events, total, "{what}");

        let rounds = neg_rounds(&relay.log());
        assert_eq!(rounds.len(), 3, "one reconciliation per cycle: {rounds:?}");
        if frame_limit.is_some() {
            assert!(rounds[0] > 5, "4 KiB frames take many rounds: {rounds:?}");
        }
        eprintln!(
            "neg-relay, frame limit {frame_limit:?}: published {N} in {published:?}; first \
             cycle {first_took:?} ({} B in, {} requests), re-sync {again_took:?} ({} B in); \
             NEG-MSG rounds per cycle {rounds:?}",
            first.wire.bytes_in, first.wire.requests, again.wire.bytes_in
        );
    }
}

/// A relay that refuses the reconciliation (`NEG-ERR "blocked: …"`, as strfry does past
/// `maxSyncEvents`) is archived by REQ paging instead; dropping
/// the launcher stops the relay.
#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn a_neg_err_blocked_from_go_nostrs_relay_falls_back_to_req_paging() {
    use brotr_probe::config::SyncConfig;

    const NOW: i64 = 1_760_000_000;
    let config = NegRelayConfig {
        max_sync_events: Some(100),
        ..Default::default()
    };
    let relay = NegRelay::start_with(&config).await;
    let events = notes_before(NOW, 250, |i| i * 37);
    publish(&relay.url, &events).await;
    let (store, _dir) = store_with_relay(&relay.url, NOW).await;
    let sync = synchronizer(SyncConfig {
        limit: 100,
        extract_hints: false,
        ..Default::default()
    });
    let r = sync.run_cycle(&ctx(&store, NOW)).await.expect("cycle");
    let what = format!("{r:?}\n{}", relay.log());
    assert_eq!((r.relays_failed, r.negentropy_windows), (0, 0), "{what}");
    assert_eq!(store.counts().await.unwrap().events, 250, "{what}");

    let port = relay.port;
    drop(relay);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "nothing listens on {port} any more"
    );
}

/// A reconciliation over many rounds (the relay's frames capped at 60 kB) where we already hold
/// the oldest part of the relay's events, as after a synchronizer killed mid-batch: each event
/// we lack is fetched once, none twice.
#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn a_multi_round_reconciliation_with_a_partial_local_set_fetches_each_missing_event_once() {
    use brotr_probe::config::SyncConfig;

    const NOW: i64 = 1_760_000_000;
    const HELD: i64 = 2_000;
    const N: i64 = 20_000;
    let relay = NegRelay::start_with(&NegRelayConfig {
        frame_limit: Some(60_000),
        ..Default::default()
    })
    .await;
    // One a second, oldest first: the first HELD are synced, then the rest appear.
    let all = notes_before(NOW, N, |i| N - i);
    publish(&relay.url, &all[..HELD as usize]).await;
    let (store, _dir) = store_with_relay(&relay.url, NOW).await;
    let sync = synchronizer(SyncConfig {
        extract_hints: false,
        ..Default::default()
    });
    let first = sync.run_cycle(&ctx(&store, NOW)).await.expect("cycle");
    assert_eq!(first.events_new, HELD as u64, "{first:?}");
    publish(&relay.url, &all[HELD as usize..]).await;
    let second = sync.run_cycle(&ctx(&store, NOW + 60)).await.expect("cycle");
    let what = format!("{second:?}\n{}", relay.log());
    assert_eq!(second.negentropy_windows, 1, "{what}");
    assert_eq!(second.events_new, (N - HELD) as u64, "{what}");
    assert_eq!(
        second.wire.events_received,
        (N - HELD) as u64,
        "each missing event fetched once: {what}"
    );
}

/// A synchronizer stopped mid-cycle (its future dropped, as a kill ends a process: committed
/// batches stay, the rest is gone) after storing its first batches: the next cycle reconciles
/// with what was committed and fetches each missing event once. (The crate's repeated ids that
/// once made it fetch some twice are shown by the unit tests in `nips::nip77`.)
#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn after_a_cycle_cut_short_mid_batch_each_missing_event_is_fetched_once() {
    use brotr_probe::config::SyncConfig;

    const NOW: i64 = 1_760_000_000;
    const N: i64 = 20_000;
    let relay = NegRelay::start_with(&NegRelayConfig {
        frame_limit: Some(60_000),
        ..Default::default()
    })
    .await;
    publish(&relay.url, &notes_before(NOW, N, |i| N - i)).await;
    let (store, _dir) = store_with_relay(&relay.url, NOW).await;
    let cfg = SyncConfig {
        extract_hints: false,
        batch_size: 1_000,
        ..Default::default()
    };
    let cut = synchronizer(cfg.clone());
    let cx = ctx(&store, NOW);
    // A boxed future (the Service trait's): dropping it below ends the cycle.
    let mut cycle = cut.run_cycle(&cx);
    loop {
        tokio::select! {
            r = &mut cycle => panic!("the cycle ended before it was cut: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(1)) => {
                if store.counts().await.expect("counts").events >= 2_000 {
                    break;
                }
            }
        }
    }
    drop(cycle);
    let held = store.counts().await.expect("counts").events;
    assert!((2_000..N as u64).contains(&held), "cut after {held}");

    let next = synchronizer(cfg)
        .run_cycle(&ctx(&store, NOW + 60))
        .await
        .expect("cycle");
    let what = format!("held {held}: {next:?}\n{}", relay.log());
    assert_eq!(next.negentropy_windows, 1, "{what}");
    assert_eq!(next.events_new, N as u64 - held, "{what}");
    assert_eq!(
        next.wire.events_received, next.events_new,
        "each missing event fetched once: {what}"
    );
    assert_eq!(store.counts().await.unwrap().events, N as u64, "{what}");
}

/// A relay without a frame size limit lists a large difference in one NEG-MSG. One over our
/// message limit ends the connection; the synchronizer then pages that window with REQ on a new
/// connection (the relay is archived, not failed), and reconciles again next cycle, when the
/// difference is small.
#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn a_neg_msg_over_our_message_limit_falls_back_to_req_paging_on_a_new_connection() {
    use brotr_probe::config::SyncConfig;

    const NOW: i64 = 1_760_000_000;
    const N: i64 = 1_500;
    let relay = NegRelay::start_with(&NegRelayConfig::default()).await;
    publish(&relay.url, &notes_before(NOW, N, |i| i * 37)).await;
    let (store, _dir) = store_with_relay(&relay.url, NOW).await;
    // 1,500 ids are 48 kB of hex in one NEG-MSG: over a 16 KiB limit; every event is far below.
    let cfg = SyncConfig {
        extract_hints: false,
        ..Default::default()
    };
    let sync = synchronizer_with_limits(cfg, |l| l.max_message_bytes = 16 * 1024);

    let first = sync.run_cycle(&ctx(&store, NOW)).await.expect("cycle");
    let what = format!("{first:?}\n{}", relay.log());
    assert_eq!(
        (first.relays_failed, first.negentropy_windows),
        (0, 0),
        "{what}"
    );
    assert_eq!(first.events_new, N as u64, "{what}");
    assert_eq!(store.counts().await.unwrap().events, N as u64, "{what}");

    let again = sync.run_cycle(&ctx(&store, NOW + 60)).await.expect("cycle");
    let what = format!("{again:?}\n{}", relay.log());
    assert_eq!(
        (
            again.relays_failed,
            again.negentropy_windows,
            again.events_new
        ),
        (0, 1, 0),
        "nothing left to list: NIP-77 fits again: {what}"
    );
}

/// Two signed events (one with characters that canonical JSON must escape exactly), a copy of the
/// first whose content changed after signing, and one carrying another event's signature.
const EXPECTED: [bool; 4] = [true, true, false, false];

fn signed_and_tampered() -> Vec<Event> {
    let keys = Keys::generate();
    let good = EventBuilder::new(Kind::TextNote, "signed by rust-nostr 0.44")
        .tags([tag(&["t", "brotr"])])
        .sign_with_keys(&keys)
        .expect("sign");
    let tricky = EventBuilder::new(
        Kind::TextNote,
        "line\nbreak \"quoted\" back\\slash\ttab \u{1} \u{7f} \u{2028} é 🚀 </script>",
    )
    .tags([tag(&[
        "e",
        &"ab".repeat(32),
        "wss://relay.example/",
        "root",
    ])])
    .sign_with_keys(&keys)
    .expect("sign");
    let mut content_changed = good.clone();
    content_changed.content.push('!');
    let mut foreign_sig = good.clone();
    foreign_sig.sig = signed_note("another event").sig;
    vec![good, tricky, content_changed, foreign_sig]
}

/// Each verifier's hash of the signed events is the id rust-nostr computed.
fn assert_hashes_match(verdicts: &[Verdict], events: &[Event], who: &str) {
    for (v, e) in verdicts.iter().zip(events).take(2) {
        assert_eq!(
            v.hash.as_deref(),
            Some(e.id.to_hex().as_str()),
            "{who} hashes {} to the id nostr computed",
            e.as_json()
        );
    }
}

#[test]
#[ignore = "needs the external peers of e2e/tools.sh"]
fn nostr_tools_accepts_events_signed_by_nostr_and_rejects_tampered_ones() {
    let events = signed_and_tampered();
    assert_eq!(verify_with_nostr_tools(&events), EXPECTED);
    let verdicts = check_with_nostr_tools(&events);
    assert_hashes_match(&verdicts, &events, "nostr-tools");
    assert_ne!(
        verdicts[2].hash.as_deref(),
        Some(events[2].id.to_hex().as_str()),
        "a changed content changes the hash"
    );
}

#[test]
#[ignore = "needs the external peers of e2e/tools.sh"]
fn go_nostr_accepts_events_signed_by_nostr_and_rejects_tampered_ones() {
    let events = signed_and_tampered();
    assert_eq!(verify_with_go_nostr(&events), EXPECTED);
    assert_hashes_match(&check_with_go_nostr(&events), &events, "go-nostr");
}

#[tokio::test]
#[ignore = "needs the external peers of e2e/tools.sh"]
async fn dropping_a_launched_relay_stops_it_and_removes_its_files() {
    let relay = NostrRsRelay::start(&NostrRsRelayConfig::default()).await;
    let (port, dir) = (relay.port, relay.dir().to_owned());
    assert!(dir.join("config.toml").exists());
    drop(relay);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "nothing listens on {port} any more"
    );
    assert!(!dir.exists(), "{} removed", dir.display());
}

#[test]
fn nostr_rs_relay_config_sets_the_listen_address_data_dir_and_limits() {
    let config = NostrRsRelayConfig {
        max_event_bytes: Some(1000),
        max_ws_message_bytes: Some(2000),
        nip42_auth: true,
        nip42_dms: true,
        ..Default::default()
    };
    let toml = config.to_toml(4242, std::path::Path::new("/tmp/x"));
    for line in [
        "address = \"127.0.0.1\"",
        "port = 4242",
        "data_directory = \"/tmp/x\"",
        "max_event_bytes = 1000",
        "max_ws_message_bytes = 2000",
        "nip42_auth = true",
        "nip42_dms = true",
    ] {
        assert!(
            toml.lines().any(|l| l == line),
            "{line:?} missing in\n{toml}"
        );
    }
    assert!(
        !toml.contains("max_ws_frame_bytes"),
        "unset limits keep the relay default"
    );
}

/// The monitor's own events (30166 with every tag kind, 10166, kind 0, 10002), signed as the
/// monitor signs them, verify with two independent implementations and hash to our ids.
#[test]
#[ignore = "needs the external peers of e2e/tools.sh"]
fn monitor_events_verify_with_nostr_tools_and_go_nostr() {
    use brotr_probe::nips::nip66::{
        Announcement, Discovery, build_10166, build_30166, build_relay_list,
    };
    let keys = Keys::generate();
    let pk = keys.public_key();
    let discovery = Discovery {
        d: "wss://relay.example.com".into(),
        network: Some("clearnet".into()),
        rtt_open: Some(120),
        rtt_read: Some(80),
        rtt_write: Some(95),
        nips: vec!["1".into(), "11".into(), "42".into()],
        requirements: vec![("auth".into(), true), ("payment".into(), false)],
        types: vec!["PublicInbox".into()],
        topics: vec!["nostr".into()],
        kinds: vec![(1, true), (4, false)],
        geohash: Some("gcpvj0dyd".into()),
        labels: vec![("en".into(), "ISO-639-1".into())],
        extra: vec![],
        content: r#"{"name":"Ünïcode \"relay\"","description":"line\nbreak"}"#.into(),
    };
    let announcement = Announcement {
        frequency: 3600,
        timeouts: vec![("open".into(), 5000), ("nip11".into(), 10000)],
        checks: vec!["open".into(), "nip11".into()],
        geohash: None,
        networks: vec!["clearnet".into(), "tor".into()],
    };
    let events: Vec<Event> = [
        build_30166(&discovery, pk, 1_760_000_000),
        build_10166(&announcement, pk, 1_760_000_001),
        build_relay_list(&["wss://a.example.com".into()], pk, 1_760_000_002),
    ]
    .into_iter()
    .map(|u| u.sign_with_keys(&keys).expect("sign"))
    .collect();
    assert_eq!(verify_with_nostr_tools(&events), vec![true; 3]);
    assert_hashes_match(
        &check_with_nostr_tools(&events),
        &events[..2],
        "nostr-tools",
    );
    assert_eq!(verify_with_go_nostr(&events), vec![true; 3]);
    assert_hashes_match(&check_with_go_nostr(&events), &events[..2], "go-nostr");
}
