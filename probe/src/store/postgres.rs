//! PostgreSQL store: the production backend.
//!
//! Event ingestion (the hot path) COPYs each batch into a per-connection temporary staging table,
//! then moves it with `INSERT … SELECT … ON CONFLICT DO NOTHING` into `event` and `event_relay`
//! in the same transaction: COPY's throughput with idempotent inserts.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgTransactionManager;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row, SqlSafeStr};
use sqlx_core::transaction::TransactionManager;

use super::open::{DatabaseUrl, OpenMode, PoolConfig, Pooler, check_versions, resolve_schema};
use super::{
    BATCH_SIZE, Backend, CANDIDATE_SERVICE, CANDIDATE_STATE, CheckRow, CopyWriter, Counts,
    IngestStats, RelayRow, Result, StateEntry, Store, StoreError, StoredEvent,
    candidate_from_state, query_err, stored_relay,
};
use crate::model::{Candidate, EventRow, MetadataType, Network, Schema};

/// The channel promotions are announced on (`NOTIFY`), so every process's services wake.
const PROMOTED_CHANNEL: &str = "brotr_relays_promoted";

/// The channel each ingest batch that stored new events is announced on, with the payload
/// `"<relay id>:<seen_at>"`: the api's live tail reads that batch back by the
/// `(relay_id, seen_at)` index.
pub(crate) const EVENTS_CHANNEL: &str = "brotr_events";

/// The `(relay id, seen_at)` of an [`EVENTS_CHANNEL`] payload.
pub(crate) fn parse_batch_notice(payload: &str) -> Option<(i32, i64)> {
    let (relay, seen_at) = payload.split_once(':')?;
    Some((relay.parse().ok()?, seen_at.parse().ok()?))
}

static FULL: Migrator = sqlx::migrate!("../migrations/postgres/full");
static LITE: Migrator = sqlx::migrate!("../migrations/postgres/lite");

/// Creates the staging table once per connection; a DO block avoids the NOTICE that
/// `CREATE … IF NOT EXISTS` would log on every batch.
const STAGE_DDL: &str = "DO $$ BEGIN \
     IF to_regclass('pg_temp.event_stage') IS NULL THEN \
       CREATE TEMP TABLE event_stage (LIKE event) ON COMMIT DELETE ROWS; \
     END IF; END $$";

/// The staging table behind a pooler in transaction mode: the next transaction may run on
/// another server connection, so the table lives and dies within one.
const STAGE_DDL_POOLED: &str = "CREATE TEMP TABLE event_stage (LIKE event) ON COMMIT DROP";

/// A write transaction: begun on a pool connection, committed by [`Tx::commit`] (whose error
/// reaches the caller), rolled back when dropped uncommitted. Behind a pooler in transaction
/// mode the pool hands connections out already in a transaction ([`PgStore`]'s pool hooks), and
/// this one commits it.
pub(super) struct Tx {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
}

impl Tx {
    pub(super) async fn commit(mut self) -> std::result::Result<(), sqlx::Error> {
        PgTransactionManager::commit(&mut self.conn).await
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // Queues a ROLLBACK (a no-op once committed); the pool flushes it on release.
        PgTransactionManager::start_rollback(&mut self.conn);
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

/// A store on a PostgreSQL server.
pub struct PgStore {
    pool: PgPool,
    pooled: bool,
    schema: Schema,
    /// Relay URL → id. Relays are never renamed, so entries stay valid while the row exists.
    relay_ids: Mutex<HashMap<String, i32>>,
}

/// The connection options of `url` (as `brotr-probe`), and the URL without its password for
/// messages.
fn connect_options(url: &str) -> Result<(PgConnectOptions, String)> {
    let target = DatabaseUrl::Postgres(url.to_owned()).redacted();
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadUrl {
            url: target.clone(),
            reason: e.to_string(),
        })?
        .application_name("brotr-probe");
    Ok((options, target))
}

/// Why a role name or password is not taken, or None. Names are plain lowercase identifiers
/// (no quoting games); a password is any text without NUL, at most 1,024 bytes.
pub(crate) fn reader_login_problem(name: &str, password: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || name.len() > 63
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Some("the name must be 1-63 of a-z, 0-9 and _, not starting with a digit");
    }
    if name.starts_with("pg_") || name == "brotr_reader" {
        return Some("the name is reserved");
    }
    if password.is_empty() || password.len() > 1024 || password.contains('\0') {
        return Some("the password must be 1-1024 bytes without NUL");
    }
    None
}

/// See [`super::ensure_reader_login`]. CREATE/ALTER ROLE take no bind parameters: the password
/// goes in as a quoted literal (standard_conforming_strings: only `'` needs doubling). The name
/// was checked to need no quoting.
pub(crate) async fn ensure_reader_login(url: &str, name: &str, password: &str) -> Result<()> {
    use sqlx::Connection;
    if let Some(reason) = reader_login_problem(name, password) {
        return Err(StoreError::ReaderLogin {
            name: name.to_owned(),
            reason: reason.into(),
        });
    }
    let (options, target) = connect_options(url)?;
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|source| StoreError::Connect { target, source })?;
    let fail = |reason: String| StoreError::ReaderLogin {
        name: name.to_owned(),
        reason,
    };
    let reader: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'brotr_reader')")
            .fetch_one(&mut conn)
            .await
            .map_err(query_err("reader login"))?;
    if !reader {
        return Err(fail(
            "the role brotr_reader does not exist: the migrations create it only when the \
             migrating user may create roles (see docs/operations.md)"
                .into(),
        ));
    }
    let pw = password.replace('\'', "''");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(query_err("reader login"))?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    let statements = [
        format!("{verb} ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{pw}'"),
        format!("GRANT brotr_reader TO {name}"),
    ];
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            // The statement holds the password: report PostgreSQL's message, never the SQL.
            .map_err(|e| {
                fail(
                    e.as_database_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
                )
            })?;
    }
    conn.close().await.ok();
    Ok(())
}

impl PgStore {
    /// Connects, then creates or upgrades the schema, or checks it (see [`super::open`]).
    pub async fn open(url: &str, requested: Option<Schema>, mode: OpenMode) -> Result<Self> {
        Self::open_sized(url, requested, mode, PoolConfig::default()).await
    }

    /// [`Self::open`] with the connections `pool` says: at most `max_connections` (the
    /// connection budget the operator gives each pod: `--db-max-connections`), straight to the
    /// server or through a pooler (`--db-pooler`).
    pub async fn open_sized(
        url: &str,
        requested: Option<Schema>,
        mode: OpenMode,
        pool: impl Into<PoolConfig>,
    ) -> Result<Self> {
        Self::open_with_session(url, requested, mode, pool.into(), Vec::new()).await
    }

    /// [`Self::open`] for the archive's readers: every connection turns JIT compilation off
    /// (it costs 50-300 ms on a statement the planner thinks large, for reads that take
    /// milliseconds) and, when given, sets PostgreSQL's `statement_timeout`, so the server stops a
    /// read the api has given up on. Behind a pooler the settings are the transaction's
    /// (`SET LOCAL`), since a session's would stay on whichever server connection ran them.
    pub async fn open_reader(
        url: &str,
        requested: Option<Schema>,
        statement_timeout: Option<Duration>,
        pool: PoolConfig,
    ) -> Result<Self> {
        let mut session = vec!["jit = off".to_owned()];
        if let Some(t) = statement_timeout {
            session.push(format!("statement_timeout = {}", t.as_millis().max(1)));
        }
        Self::open_with_session(url, requested, OpenMode::Check, pool, session).await
    }

    async fn open_with_session(
        url: &str,
        requested: Option<Schema>,
        mode: OpenMode,
        config: PoolConfig,
        settings: Vec<String>,
    ) -> Result<Self> {
        let (mut options, target) = connect_options(url)?;
        let pooled = config.pooler == Pooler::Transaction;
        if pooled && mode == OpenMode::Migrate {
            return Err(StoreError::MigrateThroughPooler { target });
        }
        let mut pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        if pooled {
            // No named statements (sqlx 0.9.1 makes them unnamed with the cache off), and no
            // startup parameter PgBouncer refuses (extra_float_digits; `options` is never sent).
            options = options.statement_cache_capacity(0).extra_float_digits(None);
            // Every use of a connection is one transaction: handed out inside one (with the
            // settings as SET LOCAL), committed when returned unless the user committed it. A
            // statement's Parse and its Bind then reach the same server connection, which a
            // transaction-mode pooler only guarantees within a transaction.
            let begin: std::sync::Arc<str> = std::iter::once("BEGIN".to_owned())
                .chain(settings.iter().map(|s| format!("SET LOCAL {s}")))
                .collect::<Vec<_>>()
                .join("; ")
                .into();
            let on_connect = begin.clone();
            pool = pool
                .after_connect(move |conn, _meta| {
                    let begin = on_connect.clone();
                    Box::pin(async move { pooled_begin(conn, &begin).await })
                })
                .before_acquire(move |conn, _meta| {
                    let begin = begin.clone();
                    Box::pin(async move { pooled_begin(conn, &begin).await.map(|()| true) })
                })
                .after_release(|conn, _meta| {
                    Box::pin(async move {
                        // Reads end here; writes committed through `Tx` left nothing open.
                        Ok(PgTransactionManager::commit(conn).await.is_ok())
                    })
                });
        } else {
            let settings = std::sync::Arc::new(settings);
            pool = pool.after_connect(move |conn, _meta| {
                let settings = settings.clone();
                Box::pin(async move {
                    for s in settings.iter() {
                        // Fixed text built above from numbers only.
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET {s}")))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                target: if pooled {
                    format!("{target} (a pooler in transaction mode: --db-pooler transaction)")
                } else {
                    target.clone()
                },
                source,
            })?;
        let existing = read_schema(&pool).await?;
        let schema = resolve_schema(&target, existing, requested, mode)?;
        let migrator = match schema {
            Schema::Full => &FULL,
            Schema::Lite => &LITE,
        };
        match mode {
            OpenMode::Migrate => {
                migrator
                    .run(&pool)
                    .await
                    .map_err(|source| StoreError::Migrate {
                        target: target.clone(),
                        source,
                    })?;
            }
            OpenMode::Check => {
                let applied: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT version, description FROM _sqlx_migrations WHERE success \
                     ORDER BY version",
                )
                .fetch_all(&pool)
                .await
                .map_err(query_err("migration check"))?;
                check_versions(&target, migrator, &applied)?;
            }
        }
        Ok(PgStore {
            pool,
            pooled,
            schema,
            relay_ids: Mutex::new(HashMap::new()),
        })
    }

    /// Whether this store reaches the server through a pooler in transaction mode.
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// Runs one write statement so that its commit's error reaches the caller. Straight to the
    /// server a statement commits by itself; behind a pooler it runs in the transaction its
    /// connection was handed out in, committed here (on release, an error could only be logged).
    pub(super) async fn write<T>(
        &self,
        op: &'static str,
        f: impl AsyncFnOnce(&mut sqlx::PgConnection) -> std::result::Result<T, sqlx::Error>,
    ) -> Result<T> {
        if !self.pooled {
            let mut conn = self.pool.acquire().await.map_err(query_err(op))?;
            return f(&mut conn).await.map_err(query_err(op));
        }
        let mut tx = self.begin(op).await?;
        let out = f(&mut tx).await.map_err(query_err(op))?;
        tx.commit().await.map_err(query_err(op))?;
        Ok(out)
    }

    /// Begins a write transaction (see [`Tx`]).
    pub(super) async fn begin(&self, op: &'static str) -> Result<Tx> {
        let mut conn = self.pool.acquire().await.map_err(query_err(op))?;
        if !self.pooled {
            PgTransactionManager::begin(&mut conn, None)
                .await
                .map_err(query_err(op))?;
        }
        Ok(Tx { conn })
    }

    /// The connection pool, for benchmarks and maintenance SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn relay_id(&self, relay: &RelayRow) -> Result<i32> {
        if let Some(id) = self.cached_relay_id(relay.url.as_str()) {
            return Ok(id);
        }
        let id: i32 = self
            .write("relay id lookup", async |c| {
                sqlx::query_scalar(
                "WITH ins AS (INSERT INTO relay (url, network, discovered_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (url) DO NOTHING RETURNING id) \
                 SELECT id FROM ins UNION ALL SELECT id FROM relay WHERE url = $1 LIMIT 1",
            )
            .bind(relay.url.as_str())
            .bind(relay.url.network().as_str())
            .bind(relay.discovered_at)
            .fetch_one(c)
            .await
            })
            .await?;
        if let Ok(mut ids) = self.relay_ids.lock() {
            ids.insert(relay.url.as_str().to_owned(), id);
        }
        Ok(id)
    }

    fn cached_relay_id(&self, url: &str) -> Option<i32> {
        self.relay_ids
            .lock()
            .ok()
            .and_then(|ids| ids.get(url).copied())
    }
}

/// Encodes events as COPY text rows in the column order of `event` for `schema` (see the
/// migrations). Public so benchmarks can COPY the very same bytes.
pub fn encode_events(schema: Schema, events: &[EventRow]) -> CopyWriter {
    let per_row = if schema == Schema::Full { 1200 } else { 400 };
    let mut w = CopyWriter::with_capacity(events.len() * per_row);
    for e in events {
        w.int(e.created_at)
            .int(i64::from(e.kind))
            .bytea(&e.id)
            .bytea(&e.pubkey);
        if schema == Schema::Full {
            // Full keeps no tagvalues column: its tag index is an expression on `tags`.
            w.bytea(&e.sig).text(&e.tags_json).text(&e.content);
        } else {
            w.text_array(&e.tagvalues);
        }
        w.end_row();
    }
    w
}

/// Opens the transaction a pooled connection is handed out in (see
/// [`PgStore::open_with_session`]); `begin` is fixed text built from numbers only.
async fn pooled_begin(
    conn: &mut sqlx::PgConnection,
    begin: &str,
) -> std::result::Result<(), sqlx::Error> {
    if PgTransactionManager::get_transaction_depth(conn) > 0 {
        return Ok(());
    }
    PgTransactionManager::begin(
        conn,
        Some(sqlx::AssertSqlSafe(begin.to_owned()).into_sql_str()),
    )
    .await
}

async fn read_schema(pool: &PgPool) -> Result<Option<Schema>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('public.brotr_schema') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(query_err("schema check"))?;
    if !exists {
        return Ok(None);
    }
    let name: String = sqlx::query_scalar("SELECT schema FROM brotr_schema")
        .fetch_one(pool)
        .await
        .map_err(query_err("schema check"))?;
    name.parse()
        .map(Some)
        .map_err(|e: crate::model::UnknownSchema| StoreError::Corrupt {
            what: "brotr_schema".into(),
            reason: e.to_string(),
        })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn schema(&self) -> Schema {
        self.schema
    }

    async fn insert_relays(&self, relays: &[RelayRow]) -> Result<u64> {
        let mut total = 0;
        for chunk in relays.chunks(BATCH_SIZE) {
            let urls: Vec<&str> = chunk.iter().map(|r| r.url.as_str()).collect();
            let nets: Vec<&str> = chunk.iter().map(|r| r.url.network().as_str()).collect();
            let ats: Vec<i64> = chunk.iter().map(|r| r.discovered_at).collect();
            let n: i64 = self
                .write("relay insert", async |c| {
                    sqlx::query_scalar("SELECT relay_insert($1, $2, $3)")
                        .bind(urls)
                        .bind(nets)
                        .bind(ats)
                        .fetch_one(c)
                        .await
                })
                .await?;
            total += count(n);
        }
        Ok(total)
    }

    async fn relays(&self) -> Result<Vec<RelayRow>> {
        let rows = sqlx::query("SELECT url, discovered_at FROM relay ORDER BY url")
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("relay list"))?;
        rows.iter()
            .map(|r| stored_relay(r.get(0), r.get(1)))
            .collect()
    }

    async fn insert_candidates(&self, candidates: &[Candidate]) -> Result<u64> {
        let mut total = 0;
        for chunk in candidates.chunks(BATCH_SIZE) {
            let urls: Vec<&str> = chunk.iter().map(|c| c.url.as_str()).collect();
            let states: Vec<String> = chunk
                .iter()
                .map(|c| serde_json::to_string(&c.state()).unwrap_or_else(|_| "{}".into()))
                .collect();
            let n: i64 = self.write("candidate insert", async |c| {
                sqlx::query_scalar(
                    "WITH ins AS (INSERT INTO service_state \
                       (service_name, state_type, state_key, state_value) \
                     SELECT $3, $4, u.url, u.val::jsonb FROM unnest($1::text[], $2::text[]) AS u(url, val) \
                     WHERE NOT EXISTS (SELECT 1 FROM relay r WHERE r.url = u.url) \
                     ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins",
                )
                .bind(urls)
                .bind(states)
                .bind(CANDIDATE_SERVICE)
                .bind(CANDIDATE_STATE)
                .fetch_one(c)
                .await
            })
            .await?;
            total += count(n);
        }
        Ok(total)
    }

    async fn due_candidates(
        &self,
        networks: &[Network],
        retry_before: i64,
        limit: u32,
    ) -> Result<Vec<Candidate>> {
        let nets: Vec<&str> = networks.iter().map(|n| n.as_str()).collect();
        let rows = sqlx::query(
            "SELECT state_key, state_value FROM service_state \
             WHERE service_name = $1 AND state_type = $2 AND state_value->>'network' = ANY($3) \
               AND ((state_value->>'failures')::bigint = 0 \
                    OR (state_value->>'timestamp')::bigint < $4) \
             ORDER BY (state_value->>'failures')::bigint, (state_value->>'timestamp')::bigint, state_key \
             LIMIT $5",
        )
        .bind(CANDIDATE_SERVICE)
        .bind(CANDIDATE_STATE)
        .bind(nets)
        .bind(retry_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("due candidates"))?;
        rows.iter()
            .map(|r| candidate_from_state(r.get::<&str, _>(0), &r.get::<Value, _>(1)))
            .collect()
    }

    async fn promote_candidates(&self, relays: &[RelayRow]) -> Result<u64> {
        let mut total = 0;
        for chunk in relays.chunks(BATCH_SIZE) {
            let urls: Vec<&str> = chunk.iter().map(|r| r.url.as_str()).collect();
            let nets: Vec<&str> = chunk.iter().map(|r| r.url.network().as_str()).collect();
            let ats: Vec<i64> = chunk.iter().map(|r| r.discovered_at).collect();
            let mut tx = self.begin("promote").await?;
            let n: i64 = sqlx::query_scalar("SELECT relay_insert($1, $2, $3)")
                .bind(&urls)
                .bind(nets)
                .bind(ats)
                .fetch_one(&mut *tx)
                .await
                .map_err(query_err("promote"))?;
            sqlx::query(
                "DELETE FROM service_state WHERE service_name = $1 AND state_type = $2 \
                 AND state_key = ANY($3)",
            )
            .bind(CANDIDATE_SERVICE)
            .bind(CANDIDATE_STATE)
            .bind(&urls)
            .execute(&mut *tx)
            .await
            .map_err(query_err("promote"))?;
            if n > 0 {
                // Delivered at commit to every process listening (their services wake).
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(PROMOTED_CHANNEL)
                    .bind(n.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(query_err("promote notify"))?;
            }
            tx.commit().await.map_err(query_err("promote commit"))?;
            total += count(n);
        }
        Ok(total)
    }

    async fn prune_candidates(&self, max_failures: u32) -> Result<u64> {
        let r = self
            .write("candidate prune", async |c| {
                sqlx::query(
                    "DELETE FROM service_state s WHERE service_name = $1 AND state_type = $2 \
                 AND ((state_value->>'failures')::bigint >= $3 \
                      OR EXISTS (SELECT 1 FROM relay r WHERE r.url = s.state_key))",
                )
                .bind(CANDIDATE_SERVICE)
                .bind(CANDIDATE_STATE)
                .bind(i64::from(max_failures))
                .execute(c)
                .await
            })
            .await?;
        Ok(r.rows_affected())
    }

    async fn insert_events(
        &self,
        relay: &RelayRow,
        seen_at: i64,
        events: &[EventRow],
    ) -> Result<IngestStats> {
        let mut stats = IngestStats::default();
        if events.is_empty() {
            return Ok(stats);
        }
        let relay_id = self.relay_id(relay).await?;
        for chunk in events.chunks(BATCH_SIZE) {
            let rows = encode_events(self.schema, chunk);
            let mut tx = self.begin("event ingest").await?;
            let stage = if self.pooled {
                STAGE_DDL_POOLED
            } else {
                STAGE_DDL
            };
            tx.execute(stage)
                .await
                .map_err(query_err("event staging"))?;
            let mut copy = tx
                .copy_in_raw("COPY event_stage FROM STDIN")
                .await
                .map_err(query_err("event copy"))?;
            copy.send(rows.as_bytes())
                .await
                .map_err(query_err("event copy"))?;
            copy.finish().await.map_err(query_err("event copy"))?;
            let new: i64 = sqlx::query_scalar(
                "WITH ins AS (INSERT INTO event SELECT * FROM event_stage \
                 ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT count(*) FROM ins",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(query_err("event insert"))?;
            let links: i64 = sqlx::query_scalar(
                "WITH ins AS (INSERT INTO event_relay (seen_at, relay_id, event_id) \
                 SELECT $1, $2, id FROM event_stage ON CONFLICT DO NOTHING RETURNING 1) \
                 SELECT count(*) FROM ins",
            )
            .bind(seen_at)
            .bind(relay_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_err("event_relay insert"))?;
            if new > 0 {
                // Delivered on commit, to the api's live tail; nobody listening costs nothing.
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(EVENTS_CHANNEL)
                    .bind(format!("{relay_id}:{seen_at}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(query_err("event notify"))?;
            }
            tx.commit()
                .await
                .map_err(query_err("event ingest commit"))?;
            stats.events_new += count(new);
            stats.links_new += count(links);
        }
        Ok(stats)
    }

    async fn get_event(&self, id: &[u8; 32]) -> Result<Option<StoredEvent>> {
        let sql = match self.schema {
            Schema::Full => {
                "SELECT id, pubkey, created_at, kind, tags_to_tagvalues(tags), tags::text, content, \
                 sig FROM event WHERE id = $1"
            }
            Schema::Lite => {
                "SELECT id, pubkey, created_at, kind, tagvalues, NULL::text, NULL::text, \
                 NULL::bytea FROM event WHERE id = $1"
            }
        };
        let row = sqlx::query(sql)
            .bind(&id[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("event read"))?;
        row.map(|r| stored_event(&r)).transpose()
    }

    async fn event_relays(&self, id: &[u8; 32]) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT r.url FROM event_relay er JOIN relay r ON r.id = er.relay_id \
             WHERE er.event_id = $1 ORDER BY r.url",
        )
        .bind(&id[..])
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("event relays read"))
    }

    async fn insert_checks(
        &self,
        relay: &RelayRow,
        generated_at: i64,
        monitor: &[u8],
        rows: &[CheckRow],
    ) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let relay_id = self.relay_id(relay).await?;
        let ids: Vec<Vec<u8>> = rows.iter().map(|r| r.metadata.id().to_vec()).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.metadata.kind().as_str()).collect();
        let data: Vec<&str> = rows.iter().map(|r| r.metadata.canonical_json()).collect();
        let success: Vec<bool> = rows.iter().map(|r| r.success).collect();
        let reasons: Vec<Option<&str>> = rows.iter().map(|r| r.reason.as_deref()).collect();
        let mut tx = self.begin("metadata insert").await?;
        sqlx::query(
            "INSERT INTO metadata (id, type, data) \
             SELECT i, t, d::jsonb FROM unnest($1::bytea[], $2::text[], $3::text[]) AS u(i, t, d) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&types)
        .bind(&data)
        .execute(&mut *tx)
        .await
        .map_err(query_err("metadata insert"))?;
        let n: i64 = sqlx::query_scalar(
            "WITH ins AS (INSERT INTO relay_metadata \
             (generated_at, relay_id, monitor, metadata_type, metadata_id, success, reason) \
             SELECT $1, $2, $7, t, i, s, r FROM unnest($3::text[], $4::bytea[], $5::bool[], $6::text[]) \
             AS u(t, i, s, r) ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins",
        )
        .bind(generated_at)
        .bind(relay_id)
        .bind(&types)
        .bind(&ids)
        .bind(&success)
        .bind(&reasons)
        .bind(monitor)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_err("relay_metadata insert"))?;
        tx.commit().await.map_err(query_err("metadata commit"))?;
        Ok(count(n))
    }

    async fn latest_metadata(
        &self,
        relay: &str,
        kind: MetadataType,
    ) -> Result<Option<(i64, Value)>> {
        let row: Option<(i64, Value)> = sqlx::query_as(
            "SELECT rm.generated_at, m.data FROM relay_metadata rm \
             JOIN relay r ON r.id = rm.relay_id \
             JOIN metadata m ON m.id = rm.metadata_id AND m.type = rm.metadata_type \
             WHERE r.url = $1 AND rm.metadata_type = $2 \
             ORDER BY rm.generated_at DESC LIMIT 1",
        )
        .bind(relay)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("latest metadata"))?;
        Ok(row)
    }

    async fn state_upsert(&self, entries: &[StateEntry]) -> Result<u64> {
        let entries = last_per_key(entries);
        let mut total = 0;
        for chunk in entries.chunks(BATCH_SIZE) {
            let col = |f: fn(&StateEntry) -> &str| chunk.iter().map(|e| f(e)).collect::<Vec<_>>();
            let values: Vec<String> = chunk.iter().map(|e| e.value.to_string()).collect();
            let n: i64 = self.write("service_state upsert", async |c| {
                sqlx::query_scalar(
                    "WITH up AS (INSERT INTO service_state (service_name, state_type, state_key, state_value) \
                     SELECT s, t, k, v::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
                     AS u(s, t, k, v) \
                     ON CONFLICT (service_name, state_type, state_key) \
                     DO UPDATE SET state_value = EXCLUDED.state_value RETURNING 1) SELECT count(*) FROM up",
                )
                .bind(col(|e| &e.service))
                .bind(col(|e| &e.kind))
                .bind(col(|e| &e.key))
                .bind(values)
                .fetch_one(c)
                .await
            })
            .await?;
            total += count(n);
        }
        Ok(total)
    }

    async fn state_get(
        &self,
        service: &str,
        kind: &str,
        key: Option<&str>,
    ) -> Result<Vec<(String, Value)>> {
        let rows = sqlx::query(
            "SELECT state_key, state_value FROM service_state \
             WHERE service_name = $1 AND state_type = $2 AND ($3::text IS NULL OR state_key = $3) \
             ORDER BY state_key",
        )
        .bind(service)
        .bind(kind)
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("service_state read"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn state_delete(&self, service: &str, kind: &str, keys: &[String]) -> Result<u64> {
        let r = self
            .write("service_state delete", async |c| {
                sqlx::query(
                    "DELETE FROM service_state WHERE service_name = $1 AND state_type = $2 \
                 AND state_key = ANY($3)",
                )
                .bind(service)
                .bind(kind)
                .bind(keys)
                .execute(c)
                .await
            })
            .await?;
        Ok(r.rows_affected())
    }

    async fn relay_event_keys(
        &self,
        relay: &str,
        since: i64,
        until: i64,
        kinds: Option<&[i32]>,
    ) -> Result<Vec<(i64, [u8; 32])>> {
        let rows: Vec<(i64, Vec<u8>, i32)> = sqlx::query_as(
            "SELECT e.created_at, e.id, e.kind FROM event_relay er \
             JOIN relay r ON r.id = er.relay_id JOIN event e ON e.id = er.event_id \
             WHERE r.url = $1 AND e.created_at >= $2 AND e.created_at <= $3",
        )
        .bind(relay)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("relay event keys read"))?;
        super::event_keys(rows, kinds)
    }

    async fn counts(&self) -> Result<Counts> {
        let r = sqlx::query(
            "SELECT (SELECT count(*) FROM relay), \
                    (SELECT count(*) FROM service_state WHERE service_name = $1 AND state_type = $2), \
                    (SELECT count(*) FROM event), (SELECT count(*) FROM event_relay), \
                    (SELECT count(*) FROM metadata), (SELECT count(*) FROM relay_metadata)",
        )
        .bind(CANDIDATE_SERVICE)
        .bind(CANDIDATE_STATE)
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("counts"))?;
        Ok(Counts::from_columns(|i| r.get::<i64, _>(i)))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_err("ping"))?;
        Ok(())
    }

    fn pool_usage(&self) -> (u32, u32, u32) {
        super::pool_usage(&self.pool)
    }

    async fn listen_promotions(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        // A listener holds a pool connection for good: with a pool of one it would leave the
        // work none. The wake-ups are an optimisation (services run on their intervals anyway).
        if self.pooled {
            tracing::info!(
                "behind a pooler in transaction mode: not listening for promotions (services run on their intervals)"
            );
            return Ok(None);
        }
        if self.pool.options().get_max_connections() < 2 {
            tracing::info!(
                "one database connection: not listening for promotions (services run on their intervals)"
            );
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(query_err("listen"))?;
        listener
            .listen(PROMOTED_CHANNEL)
            .await
            .map_err(query_err("listen"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            // PgListener reconnects by itself after a lost connection.
            while let Ok(_n) = listener.recv().await {
                if tx.is_closed() {
                    break;
                }
                let _ = tx.try_send(());
            }
        });
        Ok(Some(rx))
    }

    async fn refresh_views(&self) -> Result<Vec<&'static str>> {
        super::maintain::pg_refresh_views(self).await
    }

    async fn refresh_latest_results(&self) -> Result<Vec<&'static str>> {
        super::maintain::pg_refresh_latest_results(self).await
    }

    async fn delete_expired_metadata(&self, cutoff: i64, batch: u32) -> Result<u64> {
        super::maintain::pg_delete_expired_metadata(self, cutoff, batch).await
    }

    async fn delete_orphan_events(&self, batch: u32) -> Result<u64> {
        super::maintain::pg_delete_orphan_events(self, batch).await
    }

    async fn delete_orphan_metadata(&self, batch: u32) -> Result<u64> {
        super::maintain::pg_delete_orphan_metadata(self, batch).await
    }

    async fn event_storage_bytes(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT pg_total_relation_size('event') + pg_total_relation_size('event_relay')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("storage size"))?;
        Ok(count(n))
    }
}

fn stored_event(r: &sqlx::postgres::PgRow) -> Result<StoredEvent> {
    let fixed = |i: usize| -> Result<[u8; 32]> {
        let v: Vec<u8> = r.get(i);
        v.try_into().map_err(|v: Vec<u8>| StoreError::Corrupt {
            what: "event row".into(),
            reason: format!("column {i} holds {} bytes, expected 32", v.len()),
        })
    };
    Ok(StoredEvent {
        id: fixed(0)?,
        pubkey: fixed(1)?,
        created_at: r.get(2),
        kind: r.get(3),
        tagvalues: r.get(4),
        tags_json: r.get(5),
        content: r.get(6),
        sig: r.get(7),
    })
}

/// Keeps the last entry per (service, kind, key), in first-seen order: a batch may repeat a key.
pub(crate) fn last_per_key(entries: &[StateEntry]) -> Vec<&StateEntry> {
    let mut index: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut out: Vec<&StateEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        match index.get(&(e.service.as_str(), e.kind.as_str(), e.key.as_str())) {
            Some(&i) => out[i] = e,
            None => {
                index.insert((&e.service, &e.kind, &e.key), out.len());
                out.push(e);
            }
        }
    }
    out
}
