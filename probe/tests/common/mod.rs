//! Shared test helpers: stores on both backends, realistic signed events, real peers.
#![allow(dead_code)]

pub mod evil;
pub mod external;
pub mod monitor_peers;
pub mod peers;

use std::sync::Arc;

use brotr_probe::config::{LimitsConfig, NetworksConfig, SyncConfig, ValidatorConfig};
use brotr_probe::identity::Identity;
use brotr_probe::model::{EventRow, RelayUrl, Schema};
use brotr_probe::net::{Dialer, tls_config};
use brotr_probe::services::Ctx;
use brotr_probe::services::synchronizer::Synchronizer;
use brotr_probe::services::validator::Validator;
use brotr_probe::store::{self, DatabaseUrl, RelayRow, Store};
use nostr::{EventBuilder, Keys, Kind, Tag};

/// Env var with an admin URL of a throwaway PostgreSQL server (set by `e2e/run-tests.sh`).
pub const PG_URL_ENV: &str = "BROTR_TEST_PG_URL";

/// Why a PostgreSQL test is ignored by a plain `cargo test` (CI runs it with
/// `--include-ignored` and a server).
pub const NEEDS_PG: &str = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)";

/// A fresh, empty PostgreSQL database URL. A test that asks for one runs only with a server:
/// it is `#[ignore]`d by default and fails (never skips) when run without `BROTR_TEST_PG_URL`.
pub async fn fresh_pg_url() -> DatabaseUrl {
    let admin = std::env::var(PG_URL_ENV)
        .unwrap_or_else(|_| panic!("{PG_URL_ENV} is not set: run e2e/run-tests.sh"));
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
    DatabaseUrl::Postgres(format!("{base}/{name}"))
}

/// A fresh SQLite database in a temporary directory (kept alive by the returned guard).
pub fn fresh_sqlite_url() -> (DatabaseUrl, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    (DatabaseUrl::Sqlite(dir.path().join("brotr.db")), dir)
}

/// Creates (migrates) and opens a store.
pub async fn open(url: &DatabaseUrl, schema: Schema) -> Arc<dyn Store> {
    store::migrate(url, Some(schema)).await.expect("open store")
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

/// Loopback networks (SSRF guard off) with a short clearnet timeout.
pub fn local_networks(timeout_secs: f64) -> (NetworksConfig, LimitsConfig) {
    let mut networks = NetworksConfig::default();
    networks.clearnet.timeout_secs = Some(timeout_secs);
    let limits = LimitsConfig {
        allow_private: true,
        ..Default::default()
    };
    (networks, limits)
}

/// A dialer for loopback peers (SSRF guard off) with a short clearnet timeout.
pub fn local_dialer(timeout_secs: f64) -> Dialer {
    let (networks, limits) = local_networks(timeout_secs);
    Dialer::new(networks, limits, tls_config(&[]))
}

/// A synchronizer for loopback relays: ephemeral key, every relay, local hints allowed.
pub fn synchronizer(cfg: SyncConfig) -> Synchronizer {
    synchronizer_with_limits(cfg, |_| {})
}

/// [`synchronizer`] with its limits changed by `tune`.
pub fn synchronizer_with_limits(
    cfg: SyncConfig,
    tune: impl FnOnce(&mut LimitsConfig),
) -> Synchronizer {
    let (networks, mut limits) = local_networks(5.0);
    tune(&mut limits);
    Synchronizer::new(
        cfg,
        networks,
        limits,
        Identity::ephemeral(),
        ValidatorConfig::default().lifecycle(),
        None,
    )
    .expect("valid sync config")
}

/// A validator for loopback candidates.
pub fn validator(cfg: ValidatorConfig, timeout_secs: f64) -> Validator {
    let (networks, limits) = local_networks(timeout_secs);
    Validator::new(cfg, networks, limits)
}

/// A context over `store` with the clock at `now`.
pub fn ctx(store: &Arc<dyn Store>, now: i64) -> Ctx {
    Ctx::new(store.clone()).at(now)
}

/// Polls `cond` every 20 ms until it holds or `within` passes; whether it held.
pub async fn eventually<F, Fut>(within: std::time::Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
