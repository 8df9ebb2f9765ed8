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

/// Env var with the URL of a PgBouncer in transaction mode in front of `BROTR_TEST_PG_URL`'s
/// server, serving every database (set by `e2e/run-tests.sh`).
pub const PGBOUNCER_URL_ENV: &str = "BROTR_TEST_PGBOUNCER_URL";

/// Why a test through the pooler is ignored by a plain `cargo test`.
pub const NEEDS_PGBOUNCER: &str = "needs PostgreSQL and PgBouncer: BROTR_TEST_PG_URL, BROTR_TEST_PGBOUNCER_URL (e2e/run-tests.sh starts them)";

/// A fresh database: its URL on the server itself (for migrations) and through the pooler.
pub async fn fresh_pooled_pg_url() -> (DatabaseUrl, DatabaseUrl) {
    let pooler = std::env::var(PGBOUNCER_URL_ENV)
        .unwrap_or_else(|_| panic!("{PGBOUNCER_URL_ENV} is not set: run e2e/run-tests.sh"));
    let direct = fresh_pg_url().await;
    let DatabaseUrl::Postgres(d) = &direct else {
        unreachable!("fresh_pg_url is PostgreSQL")
    };
    let name = d.rsplit_once('/').map(|(_, n)| n).unwrap_or_default();
    let base = pooler.rsplit_once('/').map(|(b, _)| b).unwrap_or(&pooler);
    let pooled = DatabaseUrl::Postgres(format!("{base}/{name}"));
    (direct, pooled)
}

/// Migrates `direct`, then opens the same database through the pooler in transaction mode.
pub async fn open_pooled(
    direct: &DatabaseUrl,
    pooled: &DatabaseUrl,
    schema: Schema,
) -> Arc<dyn Store> {
    open(direct, schema).await;
    store::open_sized(
        pooled,
        Some(schema),
        store::OpenMode::Check,
        store::PoolConfig {
            max_connections: store::DEFAULT_MAX_CONNECTIONS,
            pooler: store::Pooler::Transaction,
        },
    )
    .await
    .expect("open store through the pooler")
}

thread_local! {
    /// Set while a store-suite case runs on a store behind the pooler (each `#[tokio::test]` runs
    /// its case on its own thread).
    pub static POOLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the running case's store is behind the pooler.
pub fn pooled() -> bool {
    POOLED.with(|p| p.get())
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

/// GET `path` from an HTTP server on `addr` with `accept`: (status, headers, body).
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    accept: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .header("accept", accept)
        .send()
        .await
        .expect("http");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// A PgBouncer of its own (Debian's `/usr/sbin/pgbouncer`) running the `pgbouncer.ini` the
/// operator renders in front of an external server (its golden file, which the operator's render
/// test keeps equal to what it renders): transaction mode, SCRAM against `userlist.txt`, and
/// `server.ini` (the `[databases]` entry) included at the end, both read from `dir` as
/// `brotr-probe pooler-config` wrote them. Only the paths, the address and the port are moved
/// (and a pid file added, to stop it). Stopped when dropped.
pub struct PgBouncer {
    pub port: u16,
    pidfile: std::path::PathBuf,
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

pub fn pgbouncer_including(dir: &std::path::Path) -> PgBouncer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let d = dir.display();
    let rendered = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../operator/tests/golden/pgbouncer-external.ini"),
    )
    .expect("the operator's rendered pgbouncer.ini");
    let mut ini = String::new();
    for line in rendered.lines() {
        let line = line.replace("/run/pgbouncer", &d.to_string());
        match line.as_str() {
            "[pgbouncer]" => ini.push_str(&format!(
                "[pgbouncer]\npidfile = {d}/pgbouncer.pid\nlogfile = {d}/pgbouncer.log\n"
            )),
            "listen_addr = 0.0.0.0" => ini.push_str("listen_addr = 127.0.0.1\n"),
            "listen_port = 5432" => ini.push_str(&format!("listen_port = {port}\n")),
            l => {
                ini.push_str(l);
                ini.push('\n');
            }
        }
    }
    assert!(ini.contains(&format!("listen_port = {port}")), "{ini}");
    std::fs::write(dir.join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
    // PgBouncer will not run as root: as root, hand the directory to postgres and run as it.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = if root {
        let ok = std::process::Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown {d} to postgres");
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", "/usr/sbin/pgbouncer"]);
        c
    } else {
        std::process::Command::new("/usr/sbin/pgbouncer")
    };
    let status = cmd
        .arg("-d")
        .arg(dir.join("pgbouncer.ini"))
        .status()
        .expect("run /usr/sbin/pgbouncer");
    assert!(status.success(), "pgbouncer -d failed: {status}");
    let bouncer = PgBouncer {
        port,
        pidfile: dir.join("pgbouncer.pid"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return bouncer;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
    panic!("pgbouncer did not listen on {port}: {log}");
}
