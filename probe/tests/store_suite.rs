//! The one store test suite, run against SQLite and a real PostgreSQL server, full and lite.

mod common;

use std::sync::Arc;

use brotr_probe::model::{Candidate, Metadata, MetadataType, RelayUrl, Schema};
use brotr_probe::store::{self, DatabaseUrl, StateEntry, Store, StoreError};
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
                async fn $case() {
                    for schema in [Schema::Full, Schema::Lite] {
                        let Some(url) = fresh_pg_url().await else { return };
                        let s = open(&url, schema).await;
                        super::cases::$case(s, &url).await;
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
}
