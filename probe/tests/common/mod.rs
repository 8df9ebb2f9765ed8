//! Shared test helpers: stores on both backends, realistic signed events, real peers.
#![allow(dead_code)]

pub mod evil;
pub mod external;
pub mod monitor_peers;
pub mod peers;

use std::sync::Arc;

use brotr_probe::model::{EventRow, RelayUrl, Schema};
use brotr_probe::store::{self, DatabaseUrl, RelayRow, Store};
use nostr::{EventBuilder, Keys, Kind, Tag};

/// Env var with an admin URL of a throwaway PostgreSQL server (set by `e2e/run-tests.sh`).
pub const PG_URL_ENV: &str = "BROTR_TEST_PG_URL";

/// A fresh, empty PostgreSQL database URL, or `None` when no test server is configured.
/// With `BROTR_REQUIRE_POSTGRES=1` (as in CI) a missing server is a failure, not a skip.
pub async fn fresh_pg_url() -> Option<DatabaseUrl> {
    let Ok(admin) = std::env::var(PG_URL_ENV) else {
        assert!(
            std::env::var("BROTR_REQUIRE_POSTGRES").is_err(),
            "{PG_URL_ENV} is not set but BROTR_REQUIRE_POSTGRES is"
        );
        eprintln!("skipping PostgreSQL case: {PG_URL_ENV} not set");
        return None;
    };
    let name = format!("brotr_test_{}", hex::encode(rand::random::<[u8; 6]>()));
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to test server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create db");
    pool.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(DatabaseUrl::Postgres(format!("{base}/{name}")))
}

/// A fresh SQLite database in a temporary directory (kept alive by the returned guard).
pub fn fresh_sqlite_url() -> (DatabaseUrl, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    (DatabaseUrl::Sqlite(dir.path().join("brotr.db")), dir)
}

pub async fn open(url: &DatabaseUrl, schema: Schema) -> Arc<dyn Store> {
    store::open(url, Some(schema)).await.expect("open store")
}

pub fn relay(url: &str) -> RelayRow {
    RelayRow {
        url: RelayUrl::parse(url).expect("test relay url"),
        discovered_at: 1_700_000_000,
    }
}

pub fn tag(parts: &[&str]) -> Tag {
    Tag::parse(parts.iter().copied()).expect("test tag")
}

/// A signed event with the given content and tags.
pub fn event(keys: &Keys, kind: u16, content: &str, tags: Vec<Tag>, created_at: u64) -> EventRow {
    let ev = EventBuilder::new(Kind::from(kind), content)
        .tags(tags)
        .custom_created_at(nostr::Timestamp::from(created_at))
        .sign_with_keys(keys)
        .expect("sign");
    EventRow::from_event(&ev).expect("valid event")
}

/// `n` distinct small text notes.
pub fn notes(n: usize) -> Vec<EventRow> {
    let keys = Keys::generate();
    (0..n)
        .map(|i| {
            event(
                &keys,
                1,
                &format!("note {i}"),
                vec![tag(&["t", "test"])],
                1_700_000_000 + i as u64,
            )
        })
        .collect()
}

/// A dialer for loopback peers (SSRF guard off) with a short clearnet timeout.
pub fn local_dialer(timeout_secs: f64) -> brotr_probe::net::Dialer {
    let mut networks = brotr_probe::config::NetworksConfig::default();
    networks.clearnet.timeout_secs = timeout_secs;
    brotr_probe::net::Dialer::new(
        networks,
        brotr_probe::config::LimitsConfig {
            allow_private: true,
            ..Default::default()
        },
        brotr_probe::net::dial::tls_config(&[]),
    )
}

/// A synchronizer context for loopback relays: ephemeral key, every relay, local hints allowed.
pub fn sync_context(
    cfg: brotr_probe::config::SyncConfig,
) -> brotr_probe::services::synchronizer::SyncContext {
    brotr_probe::services::synchronizer::SyncContext {
        dialer: local_dialer(5.0),
        keys: Keys::generate(),
        cfg,
        shard: brotr_probe::config::Shard::ALL,
        lifecycle: brotr_probe::services::validator::ValidatorConfig::default().lifecycle(),
        allow_local: true,
    }
}
