//! The one store test suite, run against SQLite and a real PostgreSQL server, full and lite, and
//! against the same server through PgBouncer in transaction mode (the store told so).

mod common;

use std::sync::Arc;

use brotr_probe::model::{Candidate, Metadata, MetadataType, RelayUrl, Schema};
use brotr_probe::store::{self, DatabaseUrl, RelayRow, StateEntry, Store, StoreError};
use common::*;
use nostr::Keys;
use serde_json::json;

/// Each case gets a fresh database of the given schema and its URL (for reopening).
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    for schema in [Schema::Full, Schema::Lite] {
                        let (url, _dir) = fresh_sqlite_url();
                        let s = open(&url, schema).await;
                        super::cases::$case(s, &url).await;
                    }
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
                async fn $case() {
                    for schema in [Schema::Full, Schema::Lite] {
                        let url = fresh_pg_url().await;
                        let s = open(&url, schema).await;
                        super::cases::$case(s, &url).await;
                    }
                }
            )*
        }
        /// The store under test is behind the pooler; what a case does beside it (reopening,
        /// migrating, editing rows) goes to the server itself, as `migrate` does.
        mod pooled {
            use super::*;
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL and PgBouncer: BROTR_TEST_PG_URL, BROTR_TEST_PGBOUNCER_URL (e2e/run-tests.sh starts them)"]
                async fn $case() {
                    POOLED.with(|p| p.set(true));
                    for schema in [Schema::Full, Schema::Lite] {
                        let (direct, pooled) = fresh_pooled_pg_url().await;
                        let s = open_pooled(&direct, &pooled, schema).await;
                        super::cases::$case(s, &direct).await;
                    }
                }
            )*
        }
    };
}

suite!(
    events_round_trip_byte_for_byte,
    replaying_a_batch_inserts_nothing,
    duplicates_inside_one_batch_are_stored_once,
    same_event_on_two_relays_is_one_event_two_links,
    relay_event_keys_are_per_relay_window_and_kind,
    batches_larger_than_the_chunk_size_are_stored_whole,
    relays_insert_idempotently_with_their_network,
    candidates_skip_known_relays_and_keep_failure_counts,
    identical_metadata_is_stored_once,
    service_state_upsert_get_delete,
    reopening_with_the_other_schema_is_refused_and_loses_nothing,
    candidate_queue_is_due_promoted_and_pruned,
    monitors_keep_separate_series_and_the_latest_is_found,
    retention_keeps_the_newest_result_of_every_series,
    cleanup_removes_orphans_in_batches_and_nothing_else,
    views_refresh_and_refresh_again,
    only_migrate_changes_the_schema_and_newer_migrations_are_judged,
    promotions_are_announced_to_listeners,
);

mod cases {
    use super::*;

    pub async fn relay_event_keys_are_per_relay_window_and_kind(
        s: Arc<dyn Store>,
        _: &DatabaseUrl,
    ) {
        let keys = Keys::generate();
        let evs: Vec<_> = (0..6)
            .map(|i| {
                event(
                    &keys,
                    if i % 2 == 0 { 1 } else { 7 },
                    &format!("k{i}"),
                    vec![],
                    1000 + i,
                )
            })
            .collect();
        s.insert_events(&relay("wss://a.example.com"), 1, &evs[..4])
            .await
            .unwrap();
        s.insert_events(&relay("wss://b.example.com"), 1, &evs[2..])
            .await
            .unwrap();
        let mut got = s
            .relay_event_keys("wss://a.example.com", 1001, 1003, None)
            .await
            .unwrap();
        got.sort();
        let want: Vec<(i64, [u8; 32])> = evs[1..4].iter().map(|e| (e.created_at, e.id)).collect();
        assert_eq!(got, want);
        let kind1 = s
            .relay_event_keys("wss://a.example.com", 0, i64::MAX, Some(&[1]))
            .await
            .unwrap();
        assert_eq!(kind1.len(), 2);
        assert!(
            s.relay_event_keys("wss://nowhere.example.com", 0, i64::MAX, None)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn events_round_trip_byte_for_byte(s: Arc<dyn Store>, _: &DatabaseUrl) {
        let keys = Keys::generate();
        let nasty =
            "tab\there\nnewline\r\\N backslash \\ quote \" ' emoji 🦩 unicode ünï {brace} [x]";
        let ev = event(
            &keys,
            30023,
            nasty,
            vec![
                tag(&["d", "slug with \"quotes\" and \\"]),
                tag(&["e", &"ab".repeat(32), "wss://hint.example", "reply"]),
                tag(&["title", "multi-letter tag is not indexed"]),
                tag(&["t", "tab\tvalue"]),
            ],
            1_700_000_123,
        );
        let stats = s
            .insert_events(
                &relay("wss://r1.example.com"),
                42,
                std::slice::from_ref(&ev),
            )
            .await
            .unwrap();
        assert_eq!((stats.events_new, stats.links_new), (1, 1));
        let got = s.get_event(&ev.id).await.unwrap().expect("stored");
        assert_eq!(got.id, ev.id);
        assert_eq!(got.pubkey, ev.pubkey);
        assert_eq!(got.created_at, 1_700_000_123);
        assert_eq!(got.kind, 30023);
        assert_eq!(got.tagvalues, ev.tagvalues);
        assert_eq!(
            got.tagvalues.len(),
            3,
            "single-letter tags only: {:?}",
            got.tagvalues
        );
        match s.schema() {
            Schema::Full => {
                assert_eq!(got.content.as_deref(), Some(nasty));
                assert_eq!(got.sig.as_deref(), Some(&ev.sig[..]));
                let tags: serde_json::Value =
                    serde_json::from_str(got.tags_json.as_deref().unwrap()).unwrap();
                let want: serde_json::Value = serde_json::from_str(&ev.tags_json).unwrap();
                assert_eq!(tags, want);
            }
            Schema::Lite => {
                assert_eq!((got.content, got.sig, got.tags_json), (None, None, None));
            }
        }
        assert!(s.get_event(&[7; 32]).await.unwrap().is_none());
    }

    pub async fn replaying_a_batch_inserts_nothing(s: Arc<dyn Store>, _: &DatabaseUrl) {
        let batch = notes(50);
        let r = relay("wss://r1.example.com");
        let first = s.insert_events(&r, 1, &batch).await.unwrap();
        assert_eq!((first.events_new, first.links_new), (50, 50));
        let before = s.counts().await.unwrap();
        let again = s.insert_events(&r, 2, &batch).await.unwrap();
        assert_eq!((again.events_new, again.links_new), (0, 0));
        assert_eq!(s.counts().await.unwrap(), before);
        assert_eq!(
            (before.events, before.event_relays, before.relays),
            (50, 50, 1)
        );
    }

    pub async fn duplicates_inside_one_batch_are_stored_once(s: Arc<dyn Store>, _: &DatabaseUrl) {
        let n = notes(2);
        let batch = vec![n[0].clone(), n[0].clone(), n[1].clone()];
        let stats = s
            .insert_events(&relay("wss://r1.example.com"), 1, &batch)
            .await
            .unwrap();
        assert_eq!((stats.events_new, stats.links_new), (2, 2));
    }

    pub async fn same_event_on_two_relays_is_one_event_two_links(
        s: Arc<dyn Store>,
        _: &DatabaseUrl,
    ) {
        let ev = notes(1);
        s.insert_events(&relay("wss://r1.example.com"), 1, &ev)
            .await
            .unwrap();
        let second = s
            .insert_events(&relay("wss://r2.example.com/path"), 2, &ev)
            .await
            .unwrap();
        assert_eq!((second.events_new, second.links_new), (0, 1));
        assert_eq!(
            s.event_relays(&ev[0].id).await.unwrap(),
            vec![
                "wss://r1.example.com".to_owned(),
                "wss://r2.example.com/path".to_owned()
            ]
        );
        let c = s.counts().await.unwrap();
        assert_eq!((c.events, c.event_relays, c.relays), (1, 2, 2));
    }

    pub async fn batches_larger_than_the_chunk_size_are_stored_whole(
        s: Arc<dyn Store>,
        _: &DatabaseUrl,
    ) {
        let batch = notes(store::BATCH_SIZE * 2 + 17);
        let stats = s
            .insert_events(&relay("wss://r1.example.com"), 1, &batch)
            .await
            .unwrap();
        assert_eq!(stats.events_new, batch.len() as u64);
        assert_eq!(s.counts().await.unwrap().events, batch.len() as u64);
        assert!(s.event_storage_bytes().await.unwrap() > 0);
    }

    pub async fn relays_insert_idempotently_with_their_network(s: Arc<dyn Store>, _: &DatabaseUrl) {
        let onion = format!("ws://{}d.onion", "a".repeat(55));
        let relays = vec![
            relay("wss://r1.example.com"),
            relay(&onion),
            relay("wss://r1.example.com"),
        ];
        assert_eq!(s.insert_relays(&relays).await.unwrap(), 2);
        assert_eq!(s.insert_relays(&relays).await.unwrap(), 0);
        let listed = s.relays().await.unwrap();
        let urls: Vec<&str> = listed.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(urls, [onion.as_str(), "wss://r1.example.com"]);
        assert_eq!(listed[0].url.network(), brotr_probe::model::Network::Tor);
    }

    pub async fn candidates_skip_known_relays_and_keep_failure_counts(
        s: Arc<dyn Store>,
        _: &DatabaseUrl,
    ) {
        s.insert_relays(&[relay("wss://known.example.com")])
            .await
            .unwrap();
        let url = |u: &str| RelayUrl::parse(u).unwrap();
        let cands = vec![
            Candidate::new(url("wss://known.example.com"), 100),
            Candidate::new(url("wss://c1.example.com"), 100),
            Candidate::new(url("wss://c2.example.com"), 50),
        ];
        assert_eq!(s.insert_candidates(&cands).await.unwrap(), 2);
        // The validator records a failure on c1.
        let failed = Candidate {
            url: url("wss://c1.example.com"),
            failures: 3,
            timestamp: 200,
        };
        s.state_upsert(&[StateEntry {
            service: store::CANDIDATE_SERVICE.into(),
            kind: store::CANDIDATE_STATE.into(),
            key: failed.url.as_str().into(),
            value: serde_json::to_value(failed.state()).unwrap(),
        }])
        .await
        .unwrap();
        // Rediscovery must not reset it.
        assert_eq!(s.insert_candidates(&cands).await.unwrap(), 0);
        let listed = s.candidates(10).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed[0],
            Candidate {
                url: url("wss://c2.example.com"),
                failures: 0,
                timestamp: 50
            }
        );
        assert_eq!(listed[1], failed);
        assert_eq!(s.candidates(1).await.unwrap().len(), 1);
        assert_eq!(s.counts().await.unwrap().candidates, 2);
    }

    pub async fn identical_metadata_is_stored_once(s: Arc<dyn Store>, _: &DatabaseUrl) {
        let doc = Metadata::new(
            MetadataType::Nip11Info,
            &json!({"name": "r", "supported_nips": [1, 11]}),
        )
        .unwrap();
        let rtt = Metadata::new(MetadataType::Nip66Rtt, &json!({"rtt_open": 80})).unwrap();
        let (r1, r2) = (relay("wss://r1.example.com"), relay("wss://r2.example.com"));
        assert_eq!(
            s.insert_metadata(&r1, 10, &[doc.clone(), rtt.clone()])
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            s.insert_metadata(&r2, 10, std::slice::from_ref(&doc))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.insert_metadata(&r2, 10, std::slice::from_ref(&doc))
                .await
                .unwrap(),
            0,
            "replay"
        );
        assert_eq!(
            s.insert_metadata(&r1, 20, &[doc]).await.unwrap(),
            1,
            "new time point"
        );
        let c = s.counts().await.unwrap();
        assert_eq!((c.metadata, c.relay_metadata, c.relays), (2, 4, 2));
    }

    pub async fn service_state_upsert_get_delete(s: Arc<dyn Store>, _: &DatabaseUrl) {
        let e = |svc: &str, key: &str, v: serde_json::Value| StateEntry {
            service: svc.into(),
            kind: "cursor".into(),
            key: key.into(),
            value: v,
        };
        let batch = vec![
            e(
                "synchronizer",
                "wss://b.example.com",
                json!({"timestamp": 1}),
            ),
            e(
                "synchronizer",
                "wss://a.example.com",
                json!({"timestamp": 2}),
            ),
            e(
                "synchronizer",
                "wss://b.example.com",
                json!({"timestamp": 3}),
            ),
            e("finder", "wss://a.example.com", json!({"timestamp": 9})),
        ];
        assert_eq!(
            s.state_upsert(&batch).await.unwrap(),
            3,
            "last duplicate wins within a batch"
        );
        let all = s.state_get("synchronizer", "cursor", None).await.unwrap();
        assert_eq!(
            all,
            vec![
                ("wss://a.example.com".to_owned(), json!({"timestamp": 2})),
                ("wss://b.example.com".to_owned(), json!({"timestamp": 3})),
            ]
        );
        s.state_upsert(&[e(
            "synchronizer",
            "wss://a.example.com",
            json!({"timestamp": 5, "id": "x"}),
        )])
        .await
        .unwrap();
        let one = s
            .state_get("synchronizer", "cursor", Some("wss://a.example.com"))
            .await
            .unwrap();
        assert_eq!(
            one,
            vec![(
                "wss://a.example.com".to_owned(),
                json!({"timestamp": 5, "id": "x"})
            )]
        );
        let deleted = s
            .state_delete(
                "synchronizer",
                "cursor",
                &["wss://a.example.com".into(), "wss://zz".into()],
            )
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(
            s.state_get("synchronizer", "cursor", None)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.state_get("finder", "cursor", None).await.unwrap().len(),
            1,
            "isolated by service"
        );
    }

    pub async fn reopening_with_the_other_schema_is_refused_and_loses_nothing(
        s: Arc<dyn Store>,
        url: &DatabaseUrl,
    ) {
        s.insert_events(&relay("wss://r1.example.com"), 1, &notes(3))
            .await
            .unwrap();
        let other = match s.schema() {
            Schema::Full => Schema::Lite,
            Schema::Lite => Schema::Full,
        };
        let err = match store::open(url, Some(other)).await {
            Err(e) => e,
            Ok(_) => panic!("opening a {} database as {other} must fail", s.schema()),
        };
        assert!(matches!(err, StoreError::SchemaMismatch { .. }), "{err}");
        assert!(err.is_config_error());
        assert!(err.to_string().contains(&format!(
            "holds the {} schema but {other} was requested",
            s.schema()
        )));
        // Reopening without a preference keeps the database's schema and its data.
        let again = store::open(url, None).await.unwrap();
        assert_eq!(again.schema(), s.schema());
        assert_eq!(again.counts().await.unwrap().events, 3);
    }

    pub async fn candidate_queue_is_due_promoted_and_pruned(s: Arc<dyn Store>, _: &DatabaseUrl) {
        use brotr_probe::model::Network;
        let url = |u: &str| RelayUrl::parse(u).unwrap();
        let onion = format!("ws://{}d.onion", "a".repeat(55));
        let cands = vec![
            Candidate::new(url("wss://fresh.example.com"), 100),
            Candidate::new(url("wss://tried.example.com"), 100),
            Candidate::new(url("wss://worn.example.com"), 100),
            Candidate::new(url(&onion), 100),
        ];
        s.insert_candidates(&cands).await.unwrap();
        let attempt = |u: &str, failures: u32, timestamp: i64| Candidate {
            url: url(u),
            failures,
            timestamp,
        };
        s.record_candidate_attempts(&[
            attempt("wss://tried.example.com", 1, 500),
            attempt("wss://worn.example.com", 9, 100),
        ])
        .await
        .unwrap();
        // Due: never failed, or last tried before the retry horizon; per network.
        let due = s
            .due_candidates(&[Network::Clearnet], 400, 10)
            .await
            .unwrap();
        let names: Vec<&str> = due.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(names, ["wss://fresh.example.com", "wss://worn.example.com"]);
        let due = s
            .due_candidates(&[Network::Clearnet], 600, 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 3, "tried at 500 is due again after the horizon");
        assert_eq!(
            due[1].url.as_str(),
            "wss://tried.example.com",
            "fewest failures first"
        );
        let tor = s.due_candidates(&[Network::Tor], 600, 10).await.unwrap();
        assert_eq!(tor.len(), 1);
        assert_eq!(
            s.due_candidates(&[Network::Clearnet], 600, 1)
                .await
                .unwrap()
                .len(),
            1
        );
        // Promotion moves a candidate to `relay` atomically, once.
        let promoted = RelayRow {
            url: url("wss://fresh.example.com"),
            discovered_at: 700,
        };
        assert_eq!(
            s.promote_candidates(std::slice::from_ref(&promoted))
                .await
                .unwrap(),
            1
        );
        assert_eq!(s.promote_candidates(&[promoted]).await.unwrap(), 0);
        assert_eq!(s.counts().await.unwrap().relays, 1);
        assert!(
            s.candidates(10)
                .await
                .unwrap()
                .iter()
                .all(|c| c.url.as_str() != "wss://fresh.example.com")
        );
        // Pruning drops candidates out of attempts and nothing else.
        assert_eq!(s.prune_candidates(5).await.unwrap(), 1);
        let left: Vec<String> = s
            .candidates(10)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.url.as_str().to_owned())
            .collect();
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&"wss://worn.example.com".to_owned()));
    }

    fn doc(kind: MetadataType, v: serde_json::Value) -> brotr_probe::store::CheckRow {
        brotr_probe::store::CheckRow {
            metadata: Metadata::new(kind, &v).unwrap(),
            success: true,
            reason: None,
        }
    }

    pub async fn monitors_keep_separate_series_and_the_latest_is_found(
        s: Arc<dyn Store>,
        _: &DatabaseUrl,
    ) {
        let r = relay("wss://r.example.com");
        let (eu, us) = ([1u8; 32], [2u8; 32]);
        let rtt = |ms: u64| doc(MetadataType::Nip66Rtt, json!({"rtt_open": ms}));
        // Both monitors measure the same relay at the same second: two rows, not one.
        assert_eq!(s.insert_checks(&r, 100, &eu, &[rtt(20)]).await.unwrap(), 1);
        assert_eq!(s.insert_checks(&r, 100, &us, &[rtt(90)]).await.unwrap(), 1);
        assert_eq!(
            s.insert_checks(&r, 100, &us, &[rtt(90)]).await.unwrap(),
            0,
            "replay"
        );
        assert_eq!(
            s.insert_checks(&r, 100, &[], &[rtt(50)]).await.unwrap(),
            1,
            "keyless"
        );
        assert_eq!(s.counts().await.unwrap().relay_metadata, 3);
        let nip77 = |ok: bool| doc(MetadataType::Nip77Probe, json!({"negentropy": ok}));
        s.insert_checks(&r, 200, &eu, &[nip77(false)])
            .await
            .unwrap();
        s.insert_checks(&r, 300, &us, &[nip77(true)]).await.unwrap();
        let (at, latest) = s
            .latest_metadata("wss://r.example.com", MetadataType::Nip77Probe)
            .await
            .unwrap()
            .expect("a result");
        assert_eq!((at, latest), (300, json!({"negentropy": true})));
        assert!(
            s.latest_metadata("wss://other.example.com", MetadataType::Nip77Probe)
                .await
                .unwrap()
                .is_none()
        );
    }

    pub async fn retention_keeps_the_newest_result_of_every_series(
        s: Arc<dyn Store>,
        _: &DatabaseUrl,
    ) {
        let (a, b) = (relay("wss://a.example.com"), relay("wss://b.example.com"));
        let rtt = |ms: u64| doc(MetadataType::Nip66Rtt, json!({"rtt_open": ms}));
        for t in [100, 200, 300] {
            s.insert_checks(&a, t, &[1; 32], &[rtt(t as u64)])
                .await
                .unwrap();
            s.insert_checks(&a, t, &[2; 32], &[rtt(t as u64 + 1)])
                .await
                .unwrap();
        }
        // b was last checked long ago: its only result is kept however old.
        s.insert_checks(&b, 50, &[1; 32], &[rtt(7)]).await.unwrap();
        assert_eq!(s.counts().await.unwrap().relay_metadata, 7);
        // Everything before 250, in batches of 1: two monitors × two old rows of a.
        assert_eq!(s.delete_expired_metadata(250, 1).await.unwrap(), 4);
        assert_eq!(s.counts().await.unwrap().relay_metadata, 3);
        assert_eq!(
            s.delete_expired_metadata(250, 1).await.unwrap(),
            0,
            "idempotent"
        );
        assert_eq!(
            s.delete_expired_metadata(i64::MAX, 100).await.unwrap(),
            0,
            "newest kept"
        );
    }

    pub async fn cleanup_removes_orphans_in_batches_and_nothing_else(
        s: Arc<dyn Store>,
        url: &DatabaseUrl,
    ) {
        s.insert_events(&relay("wss://keep.example.com"), 1, &notes(3))
            .await
            .unwrap();
        s.insert_events(&relay("wss://gone.example.com"), 1, &notes(5))
            .await
            .unwrap();
        let r = relay("wss://gone.example.com");
        s.insert_checks(
            &r,
            1,
            &[],
            &[doc(MetadataType::Nip66Rtt, json!({"rtt_open": 1}))],
        )
        .await
        .unwrap();
        s.insert_checks(
            &relay("wss://keep.example.com"),
            1,
            &[],
            &[doc(MetadataType::Nip66Rtt, json!({"rtt_open": 2}))],
        )
        .await
        .unwrap();
        // A relay deleted by hand: its junction and results cascade, leaving orphans.
        delete_relay(url, "wss://gone.example.com").await;
        assert_eq!(s.delete_orphan_events(2).await.unwrap(), 5, "three batches");
        assert_eq!(s.delete_orphan_metadata(2).await.unwrap(), 1);
        assert_eq!(s.delete_orphan_events(2).await.unwrap(), 0, "idempotent");
        let c = s.counts().await.unwrap();
        assert_eq!((c.events, c.metadata, c.relay_metadata), (3, 1, 1));
    }

    /// Deletes a relay row directly (no API does: relays are never deleted by the services).
    async fn delete_relay(url: &DatabaseUrl, relay: &str) {
        match url {
            DatabaseUrl::Sqlite(p) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(p)
                    .foreign_keys(true);
                let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
                sqlx::query("DELETE FROM relay WHERE url = ?")
                    .bind(relay)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            DatabaseUrl::Postgres(u) => {
                let pool = sqlx::PgPool::connect(u).await.unwrap();
                sqlx::query("DELETE FROM relay WHERE url = $1")
                    .bind(relay)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// Records a migration as applied, as a newer binary would.
    async fn add_migration(url: &DatabaseUrl, version: i64, description: &str) {
        let sql = "INSERT INTO _sqlx_migrations \
                   (version, description, success, checksum, execution_time) \
                   VALUES ($1, $2, true, $3, 1)";
        match url {
            DatabaseUrl::Sqlite(p) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", p.display()))
                    .await
                    .unwrap();
                sqlx::query(sql)
                    .bind(version)
                    .bind(description)
                    .bind(vec![0u8])
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            DatabaseUrl::Postgres(u) => {
                let pool = sqlx::PgPool::connect(u).await.unwrap();
                sqlx::query(sql)
                    .bind(version)
                    .bind(description)
                    .bind(vec![0u8])
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// Runs `sql` on the database directly.
    async fn execute(url: &DatabaseUrl, sql: &str) {
        match url {
            DatabaseUrl::Sqlite(p) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", p.display()))
                    .await
                    .unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            DatabaseUrl::Postgres(u) => {
                let pool = sqlx::PgPool::connect(u).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    }

    pub async fn views_refresh_and_refresh_again(s: Arc<dyn Store>, _: &DatabaseUrl) {
        s.insert_events(&relay("wss://r.example.com"), 1, &notes(4))
            .await
            .unwrap();
        let first = s.refresh_views().await.unwrap();
        let again = s.refresh_views().await.unwrap();
        assert_eq!(first, again);
        match s.backend() {
            store::Backend::Postgres => {
                assert!(first.contains(&"relay_metadata_latest_by_monitor"));
                assert!(first.contains(&"event_stats"));
            }
            store::Backend::Sqlite => assert!(first.is_empty(), "plain views need no refresh"),
        }
    }

    pub async fn only_migrate_changes_the_schema_and_newer_migrations_are_judged(
        s: Arc<dyn Store>,
        url: &DatabaseUrl,
    ) {
        drop(s);
        // The database is migrated: opening without migrating works.
        store::open(url, None).await.unwrap();
        // A newer binary added a migration marked compatible: this one keeps working.
        add_migration(url, 9001, "compat add an index").await;
        store::open(url, None).await.unwrap();
        // ...and one that is not: refused with a configuration error, nothing changed.
        add_migration(url, 9002, "drop a column").await;
        let err = match store::open(url, None).await {
            Err(e) => e,
            Ok(_) => panic!("an unknown incompatible migration must be refused"),
        };
        assert!(err.is_config_error(), "{err}");
        assert!(
            err.to_string().contains("9002") && err.to_string().contains("upgrade"),
            "{err}"
        );
        // A database behind this binary is refused until migrated.
        execute(url, "DELETE FROM _sqlx_migrations WHERE version >= 3").await;
        let err = match store::open(url, None).await {
            Err(e) => e,
            Ok(_) => panic!("a database behind this binary must be refused"),
        };
        assert!(
            err.to_string().contains("run `brotr-probe migrate`"),
            "{err}"
        );
        assert!(err.is_config_error());
    }

    pub async fn promotions_are_announced_to_listeners(s: Arc<dyn Store>, url: &DatabaseUrl) {
        let rx = s.listen_promotions().await.unwrap();
        match url {
            DatabaseUrl::Sqlite(_) => assert!(rx.is_none(), "SQLite wakes in process only"),
            DatabaseUrl::Postgres(_) if pooled() => {
                assert!(
                    rx.is_none(),
                    "no LISTEN through a pooler in transaction mode"
                )
            }
            DatabaseUrl::Postgres(_) => {
                let mut rx = rx.expect("PostgreSQL listens");
                // Another process's store promotes.
                let other = store::open(url, None).await.unwrap();
                let url = RelayUrl::parse("wss://new.example.com").unwrap();
                other
                    .insert_candidates(&[Candidate::new(url.clone(), 1)])
                    .await
                    .unwrap();
                other
                    .promote_candidates(&[RelayRow {
                        url,
                        discovered_at: 1,
                    }])
                    .await
                    .unwrap();
                let got = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await;
                assert!(matches!(got, Ok(Some(()))), "notified: {got:?}");
            }
        }
    }
}
