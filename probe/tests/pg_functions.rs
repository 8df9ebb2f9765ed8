//! The PostgreSQL stored functions and materialized views on a real server,
//! for both schemas: what SQL users and maintenance jobs call directly.

mod common;

use brotr_probe::model::Schema;
use brotr_probe::store::{DatabaseUrl, OpenMode, PgStore};
use common::*;
use nostr::Keys;

async fn pg(schema: Schema) -> (PgStore, sqlx::PgPool) {
    let DatabaseUrl::Postgres(url) = fresh_pg_url().await else {
        unreachable!("fresh_pg_url gives a PostgreSQL URL")
    };
    let store = PgStore::open(&url, Some(schema), OpenMode::Migrate)
        .await
        .expect("open");
    let pool = store.pool().clone();
    (store, pool)
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn bulk_functions_are_idempotent_and_views_refresh() {
    for schema in [Schema::Full, Schema::Lite] {
        let (_store, pool) = pg(schema).await;
        let keys = Keys::generate();
        let evs: Vec<_> = (0..3)
            .map(|i| {
                event(
                    &keys,
                    1,
                    &format!("n{i}"),
                    vec![tag(&["t", "x"]), tag(&["p", &"ab".repeat(32)])],
                    1_700_000_000 + i,
                )
            })
            .collect();
        let ids: Vec<Vec<u8>> = evs.iter().map(|e| e.id.to_vec()).collect();
        let pks: Vec<Vec<u8>> = evs.iter().map(|e| e.pubkey.to_vec()).collect();
        let cas: Vec<i64> = evs.iter().map(|e| e.created_at).collect();
        let kinds: Vec<i32> = evs.iter().map(|e| e.kind).collect();
        let tags: Vec<String> = evs.iter().map(|e| e.tags_json.clone()).collect();
        let contents: Vec<String> = evs.iter().map(|e| e.content.clone()).collect();
        let sigs: Vec<Vec<u8>> = evs.iter().map(|e| e.sig.to_vec()).collect();
        let relays = vec!["wss://a.example.com".to_owned(); 3];
        let nets = vec!["clearnet".to_owned(); 3];
        let cascade = |n: i64| {
            let q = sqlx::query_scalar::<_, i64>(
                "SELECT event_relay_insert_cascade($1, $2, $3, $4, $5::text[]::jsonb[], $6, $7, $8, $9, $10, $11)",
            )
            .bind(ids.clone())
            .bind(pks.clone())
            .bind(cas.clone())
            .bind(kinds.clone())
            .bind(tags.clone())
            .bind(contents.clone())
            .bind(sigs.clone())
            .bind(relays.clone())
            .bind(nets.clone())
            .bind(vec![1i64; 3])
            .bind(vec![n; 3]);
            let pool = pool.clone();
            async move { q.fetch_one(&pool).await.expect("cascade") }
        };
        assert_eq!(cascade(10).await, 3, "{schema}");
        assert_eq!(cascade(11).await, 0, "{schema}: replay inserts nothing");

        // The tag index answers tag queries in both schemas (expression in full, column in lite).
        let tag_sql = match schema {
            Schema::Full => {
                "SELECT count(*) FROM event WHERE tags_to_tagvalues(tags) @> ARRAY['t:x']"
            }
            Schema::Lite => "SELECT count(*) FROM event WHERE tagvalues @> ARRAY['t:x']",
        };
        let n: i64 = sqlx::query_scalar(tag_sql).fetch_one(&pool).await.unwrap();
        assert_eq!(n, 3, "{schema}");
        let tv: Vec<String> = sqlx::query_scalar("SELECT unnest(tags_to_tagvalues($1::jsonb))")
            .bind(r#"[["e","x"],["p","y","hint"],["t"],["tt","z"],[1,"a"],["d",""]]"#)
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(tv, ["e:x", "p:y", "d:"], "same rule as EventRow::tagvalues");

        sqlx::query("SELECT all_statistics_refresh()")
            .execute(&pool)
            .await
            .expect("refresh");
        sqlx::query("SELECT all_statistics_refresh()")
            .execute(&pool)
            .await
            .expect("refresh again");
        let (count, pubkeys): (i64, i64) =
            sqlx::query_as("SELECT event_count, unique_pubkeys FROM event_stats")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((count, pubkeys), (3, 1), "{schema}");
        let kind1: i64 = sqlx::query_scalar("SELECT event_count FROM kind_counts WHERE kind = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(kind1, 3);
        let by_relay: i64 = sqlx::query_scalar("SELECT count(*) FROM pubkey_counts_by_relay")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(by_relay, 1, "one author with ≥ 2 events on one relay");
    }
}

/// The tag index's keys (SQL, `tagvalues_to_tagkeys`) and the query side's (Rust, `tag_key`) are
/// the same bytes, and a tag filter finds its events through the index in both schemas.
#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn tag_keys_agree_between_sql_and_rust() {
    use brotr_probe::store::query::tag_key;
    let hex = "0a".repeat(32);
    let cases: Vec<(char, String)> = vec![
        ('p', hex.clone()),
        ('e', "ff".repeat(32)),
        ('p', hex.to_uppercase()),
        ('p', hex[..63].to_owned()),
        ('p', format!("{hex}0")),
        ('t', "nostr".into()),
        ('t', String::new()),
        ('é', "ünïcode".into()),
        ('d', "a:b:c".into()),
    ];
    for schema in [Schema::Full, Schema::Lite] {
        let (_store, pool) = pg(schema).await;
        for (letter, value) in &cases {
            let sql: Vec<Vec<u8>> = sqlx::query_scalar("SELECT tagvalues_to_tagkeys($1::text[])")
                .bind(vec![format!("{letter}:{value}")])
                .fetch_one(&pool)
                .await
                .expect("tagvalues_to_tagkeys");
            assert_eq!(
                sql,
                vec![tag_key(*letter, value)],
                "{schema} {letter}:{value}"
            );
        }
        let empty: Vec<Vec<u8>> = sqlx::query_scalar("SELECT tagvalues_to_tagkeys('{}')")
            .fetch_one(&pool)
            .await
            .expect("no tags");
        assert!(empty.is_empty());
    }
}

/// The tag functions of migration 0009 return what their first definitions (0002, 0008) return,
/// for tags of every shape, so the index built by either stays valid. The first definitions are
/// read from their migration files and created under other names.
#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn faster_tag_functions_return_what_the_first_definitions_did() {
    fn function(file: &str, name: &str, renamed: &str) -> String {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../migrations/postgres/full")
                .join(file),
        )
        .expect("migration file");
        let start = text
            .find(&format!("CREATE FUNCTION {name}("))
            .expect("definition");
        let body = &text[start..];
        let end = body[body.find("AS $$").expect("body") + 5..]
            .find("$$;")
            .expect("end")
            + body.find("AS $$").expect("body")
            + 5
            + 3;
        body[..end]
            .replacen(
                &format!("FUNCTION {name}("),
                &format!("FUNCTION {renamed}("),
                1,
            )
            .replace(&format!("{name}."), &format!("{renamed}."))
    }
    let (_store, pool) = pg(Schema::Full).await;
    for sql in [
        function(
            "0002_functions.sql",
            "tags_to_tagvalues",
            "first_tags_to_tagvalues",
        ),
        function(
            "0008_compat_lean_indexes.sql",
            "tagvalues_to_tagkeys",
            "first_tagvalues_to_tagkeys",
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .expect("first definition");
    }
    let hex = "0a".repeat(32);
    let tags = [
        "[]".to_owned(),
        "{}".into(),
        "\"p\"".into(),
        "null".into(),
        format!(
            r#"[["p","{hex}"],["e","{}","wss://r"],["t","nostr"]]"#,
            "ff".repeat(32)
        ),
        format!(
            r#"[["p","{}"],["p","{}"],["p","{hex}0"]]"#,
            hex.to_uppercase(),
            &hex[..63]
        ),
        r#"[["é","ünïcode"],["d","a:b:c"],["t",""],["x"],[],["tt","long name"],[1,"x"],["a",2]]"#
            .into(),
        format!(
            r#"[["r","{}"],["z","{}"],"text",null,[null,"v"]]"#,
            "v".repeat(1024),
            "w".repeat(1025)
        ),
        format!(r#"[["é","{hex}"],["P","{hex}"]]"#),
    ];
    for t in &tags {
        let (same_values, same_keys, values): (bool, bool, Vec<String>) = sqlx::query_as(
            "SELECT tags_to_tagvalues($1::jsonb) = first_tags_to_tagvalues($1::jsonb), \
                    tagvalues_to_tagkeys(tags_to_tagvalues($1::jsonb)) \
                      = first_tagvalues_to_tagkeys(first_tags_to_tagvalues($1::jsonb)), \
                    tags_to_tagvalues($1::jsonb)",
        )
        .bind(t)
        .fetch_one(&pool)
        .await
        .expect("compare");
        assert!(same_values && same_keys, "{t}: {values:?}");
    }
    // A NULL element of a tagvalues array (the lite schema's column) stays a NULL key.
    let (same,): (bool,) = sqlx::query_as(
        "SELECT tagvalues_to_tagkeys(ARRAY['t:x', NULL, 'p:' || repeat('0a', 32)]) \
                IS NOT DISTINCT FROM first_tagvalues_to_tagkeys(ARRAY['t:x', NULL, 'p:' || repeat('0a', 32)])",
    )
    .fetch_one(&pool)
    .await
    .expect("null element");
    assert!(same);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn orphan_cleanup_keeps_shared_rows() {
    let (_store, pool) = pg(Schema::Full).await;
    sqlx::query("SELECT relay_insert($1, $2, $3)")
        .bind(vec!["wss://a.example.com"])
        .bind(vec!["clearnet"])
        .bind(vec![1i64])
        .execute(&pool)
        .await
        .unwrap();
    let deleted: i64 = sqlx::query_scalar("SELECT orphan_metadata_delete(1)")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    let deleted: i64 = sqlx::query_scalar("SELECT orphan_event_delete(1)")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deleted, 0);
}

/// The store's connections to `db` (it names itself; the watcher's pool may hold several).
async fn store_connections(watcher: &sqlx::PgPool, db: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'brotr-probe'",
    )
    .bind(db)
    .fetch_one(watcher)
    .await
    .unwrap()
}

/// A store opened with a connection budget holds at most that many server connections, however
/// many reads wait on it (the operator splits `spec.database.maxConnections` over every pod).
#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn a_store_holds_at_most_its_connection_budget() {
    let DatabaseUrl::Postgres(url) = fresh_pg_url().await else {
        unreachable!()
    };
    let db = url.rsplit('/').next().unwrap().to_owned();
    let watcher = sqlx::PgPool::connect(&url).await.unwrap();
    for budget in [1u32, 3] {
        let store = PgStore::open_sized(&url, Some(Schema::Full), OpenMode::Migrate, budget)
            .await
            .unwrap();
        let reads: Vec<_> = (0..12)
            .map(|_| {
                let pool = store.pool().clone();
                tokio::spawn(async move {
                    sqlx::query("SELECT pg_sleep(0.05)")
                        .execute(&pool)
                        .await
                        .unwrap();
                })
            })
            .collect();
        let mut most = 0i64;
        while reads.iter().any(|r| !r.is_finished()) {
            most = most.max(store_connections(&watcher, &db).await);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        for r in reads {
            r.await.unwrap();
        }
        assert_eq!(
            most,
            i64::from(budget),
            "budget {budget}: at most, and used"
        );
        store.pool().close().await;
        // A closed connection's backend leaves pg_stat_activity a moment later: wait, so the
        // next budget is not charged for it.
        for _ in 0..200 {
            if store_connections(&watcher, &db).await == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// With a pool of one connection, nothing holds it for good: a service does not listen for
/// promotions (it would take the only connection) and keeps working; the api, whose live tail
/// must listen, refuses to start, naming the setting (exit 2), instead of hanging.
#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn a_pool_of_one_is_never_held_by_a_listener() {
    let DatabaseUrl::Postgres(url) = fresh_pg_url().await else {
        unreachable!()
    };
    let store = PgStore::open_sized(&url, Some(Schema::Full), OpenMode::Migrate, 1)
        .await
        .unwrap();
    use brotr_probe::store::Store;
    assert!(store.listen_promotions().await.unwrap().is_none());
    let c = tokio::time::timeout(std::time::Duration::from_secs(5), store.counts())
        .await
        .expect("the one connection is free")
        .unwrap();
    assert_eq!(c.events, 0);
    // Two connections: the listener takes one, the work the other.
    let two = PgStore::open_sized(&url, None, OpenMode::Check, 2)
        .await
        .unwrap();
    assert!(two.listen_promotions().await.unwrap().is_some());
    tokio::time::timeout(std::time::Duration::from_secs(5), two.counts())
        .await
        .expect("the second connection is free")
        .unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .args(["--database", &url, "--db-max-connections", "1"])
        .args(["api", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("needs at least 2 database connections")
            && err.contains("--db-max-connections"),
        "{err}"
    );
}

/// Rows in the event table's TOAST table.
async fn toasted(pool: &sqlx::PgPool) -> i64 {
    let toast: String = sqlx::query_scalar(
        "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'event'::regclass",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {toast}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn a_contact_list_stays_in_its_row_and_a_huge_one_still_reads_back_whole() {
    use brotr_probe::model::RelayUrl;
    use brotr_probe::store::{RelayRow, Store};
    let relay = RelayRow {
        url: RelayUrl::parse("wss://a.example.com").unwrap(),
        discovered_at: 1,
    };
    let contacts = |n: usize| -> Vec<nostr::Tag> {
        (0..n)
            .map(|_| tag(&["p", &Keys::generate().public_key().to_hex()]))
            .collect()
    };
    for schema in [Schema::Full, Schema::Lite] {
        let (store, pool) = pg(schema).await;
        let keys = Keys::generate();
        // A contact list of 80 follows (about 6 kB of tags): kept in its row, so reading it
        // costs its heap page and no TOAST index or TOAST pages.
        let usual = event(&keys, 3, "", contacts(80), 1_700_000_000);
        store
            .insert_events(&relay, 1, std::slice::from_ref(&usual))
            .await
            .unwrap();
        assert_eq!(
            toasted(&pool).await,
            0,
            "{schema:?}: an 80-follow list left its row"
        );
        // 1,000 follows (about 72 kB) cannot fit a page: out of the row, and read back whole.
        let huge = event(&keys, 3, "", contacts(1_000), 1_700_000_001);
        store
            .insert_events(&relay, 1, std::slice::from_ref(&huge))
            .await
            .unwrap();
        assert!(toasted(&pool).await > 0, "{schema:?}");
        for ev in [&usual, &huge] {
            let got = store.get_event(&ev.id).await.unwrap().expect("stored");
            match schema {
                Schema::Full => {
                    let want: serde_json::Value = serde_json::from_str(&ev.tags_json).unwrap();
                    let read: serde_json::Value =
                        serde_json::from_str(got.tags_json.as_deref().expect("full: tags"))
                            .unwrap();
                    assert_eq!(read, want, "{schema:?}");
                }
                Schema::Lite => assert_eq!(got.tagvalues.len(), ev.tagvalues.len()),
            }
        }
    }
}
