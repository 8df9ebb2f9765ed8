//! SQLite store: the embedded default (`./brotr.db`), for laptops and single-node use.
//!
//! Writes go through multi-row `INSERT OR IGNORE` statements inside one transaction per batch;
//! WAL mode lets readers run beside the writer.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::open::{OpenMode, check_versions, resolve_schema};
use super::postgres::last_per_key;
use super::{
    Backend, CANDIDATE_SERVICE, CANDIDATE_STATE, CheckRow, Counts, IngestStats, RelayRow, Result,
    StateEntry, Store, StoreError, StoredEvent, candidate_from_state, query_err, stored_relay,
};
use crate::model::{Candidate, EventRow, MetadataType, Network, Schema};

static FULL: Migrator = sqlx::migrate!("../migrations/sqlite/full");
static LITE: Migrator = sqlx::migrate!("../migrations/sqlite/lite");

/// Rows per multi-row statement; 8 columns × 100 rows stays far below SQLite's variable limit.
const ROWS_PER_STATEMENT: usize = 100;

/// A store in an SQLite file.
pub struct SqliteStore {
    pool: SqlitePool,
    schema: Schema,
}

impl SqliteStore {
    /// The connection pool, for the read side.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Opens the file (created only when migrating), then creates or upgrades the schema, or
    /// checks it.
    pub async fn open(path: &Path, requested: Option<Schema>, mode: OpenMode) -> Result<Self> {
        let target = format!("sqlite:{}", path.display());
        if mode == OpenMode::Check && !path.exists() {
            return Err(super::VersionError::Empty { target }.into());
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StoreError::BadUrl {
                url: target.clone(),
                reason: e.to_string(),
            })?
            .filename(path)
            .create_if_missing(mode == OpenMode::Migrate)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                target: target.clone(),
                source,
            })?;
        let existing = read_schema(&pool).await?;
        let schema = resolve_schema(&target, existing, requested, mode)?;
        let migrator = match schema {
            Schema::Full => &FULL,
            Schema::Lite => &LITE,
        };
        match mode {
            OpenMode::Migrate => migrator
                .run(&pool)
                .await
                .map_err(|source| StoreError::Migrate { target, source })?,
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
        Ok(SqliteStore { pool, schema })
    }

    async fn relay_id(&self, tx: &mut sqlx::SqliteConnection, relay: &RelayRow) -> Result<i64> {
        sqlx::query(
            "INSERT INTO relay (url, network, discovered_at) VALUES (?, ?, ?) \
             ON CONFLICT (url) DO NOTHING",
        )
        .bind(relay.url.as_str())
        .bind(relay.url.network().as_str())
        .bind(relay.discovered_at)
        .execute(&mut *tx)
        .await
        .map_err(query_err("relay insert"))?;
        sqlx::query_scalar("SELECT id FROM relay WHERE url = ?")
            .bind(relay.url.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(query_err("relay id lookup"))
    }
}

async fn read_schema(pool: &SqlitePool) -> Result<Option<Schema>> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'brotr_schema'",
    )
    .fetch_one(pool)
    .await
    .map_err(query_err("schema check"))?;
    if exists == 0 {
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

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn parse_json(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn schema(&self) -> Schema {
        self.schema
    }

    async fn insert_relays(&self, relays: &[RelayRow]) -> Result<u64> {
        let mut tx = self.pool.begin().await.map_err(query_err("relay insert"))?;
        let mut total = 0;
        for chunk in relays.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO relay (url, network, discovered_at) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.url.as_str())
                    .push_bind(r.url.network().as_str())
                    .push_bind(r.discovered_at);
            });
            total += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(query_err("relay insert"))?
                .rows_affected();
        }
        tx.commit()
            .await
            .map_err(query_err("relay insert commit"))?;
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("candidate insert"))?;
        let mut total = 0;
        for c in candidates {
            total += sqlx::query(
                "INSERT OR IGNORE INTO service_state (service_name, state_type, state_key, state_value) \
                 SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM relay WHERE url = ?)",
            )
            .bind(CANDIDATE_SERVICE)
            .bind(CANDIDATE_STATE)
            .bind(c.url.as_str())
            .bind(json_text(&c.state()))
            .bind(c.url.as_str())
            .execute(&mut *tx)
            .await
            .map_err(query_err("candidate insert"))?
            .rows_affected();
        }
        tx.commit()
            .await
            .map_err(query_err("candidate insert commit"))?;
        Ok(total)
    }

    async fn due_candidates(
        &self,
        networks: &[Network],
        retry_before: i64,
        limit: u32,
    ) -> Result<Vec<Candidate>> {
        let nets = json_text(&networks.iter().map(|n| n.as_str()).collect::<Vec<_>>());
        let rows = sqlx::query(
            "SELECT state_key, state_value FROM service_state \
             WHERE service_name = ? AND state_type = ? \
               AND json_extract(state_value, '$.network') IN (SELECT value FROM json_each(?)) \
               AND (json_extract(state_value, '$.failures') = 0 \
                    OR json_extract(state_value, '$.timestamp') < ?) \
             ORDER BY json_extract(state_value, '$.failures'), \
                      json_extract(state_value, '$.timestamp'), state_key \
             LIMIT ?",
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
            .map(|r| {
                let key: String = r.get(0);
                let value = parse_json(&format!("candidate {key:?}"), r.get(1))?;
                candidate_from_state(&key, &value)
            })
            .collect()
    }

    async fn promote_candidates(&self, relays: &[RelayRow]) -> Result<u64> {
        let mut tx = self.pool.begin().await.map_err(query_err("promote"))?;
        let mut total = 0;
        for r in relays {
            total += sqlx::query(
                "INSERT OR IGNORE INTO relay (url, network, discovered_at) VALUES (?, ?, ?)",
            )
            .bind(r.url.as_str())
            .bind(r.url.network().as_str())
            .bind(r.discovered_at)
            .execute(&mut *tx)
            .await
            .map_err(query_err("promote"))?
            .rows_affected();
            sqlx::query(
                "DELETE FROM service_state WHERE service_name = ? AND state_type = ? AND state_key = ?",
            )
            .bind(CANDIDATE_SERVICE)
            .bind(CANDIDATE_STATE)
            .bind(r.url.as_str())
            .execute(&mut *tx)
            .await
            .map_err(query_err("promote"))?;
        }
        tx.commit().await.map_err(query_err("promote commit"))?;
        Ok(total)
    }

    async fn prune_candidates(&self, max_failures: u32) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM service_state WHERE service_name = ? AND state_type = ? \
             AND (json_extract(state_value, '$.failures') >= ? \
                  OR state_key IN (SELECT url FROM relay))",
        )
        .bind(CANDIDATE_SERVICE)
        .bind(CANDIDATE_STATE)
        .bind(i64::from(max_failures))
        .execute(&self.pool)
        .await
        .map_err(query_err("candidate prune"))?;
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
        let full = self.schema == Schema::Full;
        let mut tx = self.pool.begin().await.map_err(query_err("event ingest"))?;
        let relay_id = self.relay_id(&mut tx, relay).await?;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(if full {
                "INSERT OR IGNORE INTO event \
                 (id, pubkey, created_at, kind, tagvalues, tags, content, sig) "
            } else {
                "INSERT OR IGNORE INTO event (id, pubkey, created_at, kind, tagvalues) "
            });
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.id[..])
                    .push_bind(&e.pubkey[..])
                    .push_bind(e.created_at)
                    .push_bind(e.kind)
                    .push_bind(json_text(&e.tagvalues));
                if full {
                    b.push_bind(e.tags_json.as_str())
                        .push_bind(e.content.as_str())
                        .push_bind(&e.sig[..]);
                }
            });
            stats.events_new += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(query_err("event insert"))?
                .rows_affected();
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO event_relay (event_id, relay_id, seen_at) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.id[..])
                    .push_bind(relay_id)
                    .push_bind(seen_at);
            });
            stats.links_new += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(query_err("event_relay insert"))?
                .rows_affected();
        }
        tx.commit()
            .await
            .map_err(query_err("event ingest commit"))?;
        Ok(stats)
    }

    async fn get_event(&self, id: &[u8; 32]) -> Result<Option<StoredEvent>> {
        let sql = match self.schema {
            Schema::Full => {
                "SELECT id, pubkey, created_at, kind, tagvalues, tags, content, sig \
                 FROM event WHERE id = ?"
            }
            Schema::Lite => {
                "SELECT id, pubkey, created_at, kind, tagvalues, NULL, NULL, NULL \
                 FROM event WHERE id = ?"
            }
        };
        let Some(r) = sqlx::query(sql)
            .bind(&id[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("event read"))?
        else {
            return Ok(None);
        };
        let fixed = |i: usize| -> Result<[u8; 32]> {
            let v: Vec<u8> = r.get(i);
            v.try_into().map_err(|v: Vec<u8>| StoreError::Corrupt {
                what: "event row".into(),
                reason: format!("column {i} holds {} bytes, expected 32", v.len()),
            })
        };
        let tagvalues: Vec<String> =
            serde_json::from_str(r.get::<&str, _>(4)).map_err(|e| StoreError::Corrupt {
                what: "event tagvalues".into(),
                reason: e.to_string(),
            })?;
        Ok(Some(StoredEvent {
            id: fixed(0)?,
            pubkey: fixed(1)?,
            created_at: r.get(2),
            kind: r.get(3),
            tagvalues,
            tags_json: r.get(5),
            content: r.get(6),
            sig: r.get(7),
        }))
    }

    async fn event_relays(&self, id: &[u8; 32]) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT r.url FROM event_relay er JOIN relay r ON r.id = er.relay_id \
             WHERE er.event_id = ? ORDER BY r.url",
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("metadata insert"))?;
        let relay_id = self.relay_id(&mut tx, relay).await?;
        let mut total = 0;
        for row in rows {
            let m = &row.metadata;
            sqlx::query("INSERT OR IGNORE INTO metadata (id, type, data) VALUES (?, ?, ?)")
                .bind(&m.id()[..])
                .bind(m.kind().as_str())
                .bind(m.canonical_json())
                .execute(&mut *tx)
                .await
                .map_err(query_err("metadata insert"))?;
            total += sqlx::query(
                "INSERT OR IGNORE INTO relay_metadata \
                 (relay_id, generated_at, monitor, metadata_type, metadata_id, success, reason) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(relay_id)
            .bind(generated_at)
            .bind(monitor)
            .bind(m.kind().as_str())
            .bind(&m.id()[..])
            .bind(row.success)
            .bind(row.reason.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(query_err("relay_metadata insert"))?
            .rows_affected();
        }
        tx.commit().await.map_err(query_err("metadata commit"))?;
        Ok(total)
    }

    async fn latest_metadata(
        &self,
        relay: &str,
        kind: MetadataType,
    ) -> Result<Option<(i64, Value)>> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT rm.generated_at, m.data FROM relay_metadata rm \
             JOIN relay r ON r.id = rm.relay_id \
             JOIN metadata m ON m.id = rm.metadata_id AND m.type = rm.metadata_type \
             WHERE r.url = ? AND rm.metadata_type = ? \
             ORDER BY rm.generated_at DESC LIMIT 1",
        )
        .bind(relay)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("latest metadata"))?;
        row.map(|(t, d)| Ok((t, parse_json("metadata", &d)?)))
            .transpose()
    }

    async fn state_upsert(&self, entries: &[StateEntry]) -> Result<u64> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("service_state upsert"))?;
        let mut total = 0;
        for e in last_per_key(entries) {
            total += sqlx::query(
                "INSERT INTO service_state (service_name, state_type, state_key, state_value) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (service_name, state_type, state_key) \
                 DO UPDATE SET state_value = excluded.state_value",
            )
            .bind(&e.service)
            .bind(&e.kind)
            .bind(&e.key)
            .bind(e.value.to_string())
            .execute(&mut *tx)
            .await
            .map_err(query_err("service_state upsert"))?
            .rows_affected();
        }
        tx.commit()
            .await
            .map_err(query_err("service_state commit"))?;
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
             WHERE service_name = ? AND state_type = ? AND (? IS NULL OR state_key = ?) \
             ORDER BY state_key",
        )
        .bind(service)
        .bind(kind)
        .bind(key)
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("service_state read"))?;
        rows.iter()
            .map(|r| {
                let k: String = r.get(0);
                let v = parse_json(&format!("service_state {service}/{kind}/{k}"), r.get(1))?;
                Ok((k, v))
            })
            .collect()
    }

    async fn state_delete(&self, service: &str, kind: &str, keys: &[String]) -> Result<u64> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("service_state delete"))?;
        let mut total = 0;
        for k in keys {
            total += sqlx::query(
                "DELETE FROM service_state WHERE service_name = ? AND state_type = ? AND state_key = ?",
            )
            .bind(service)
            .bind(kind)
            .bind(k)
            .execute(&mut *tx)
            .await
            .map_err(query_err("service_state delete"))?
            .rows_affected();
        }
        tx.commit()
            .await
            .map_err(query_err("service_state delete commit"))?;
        Ok(total)
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
             WHERE r.url = ? AND e.created_at >= ? AND e.created_at <= ?",
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
                    (SELECT count(*) FROM service_state WHERE service_name = ? AND state_type = ?), \
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
        Ok(None)
    }

    async fn refresh_views(&self) -> Result<Vec<&'static str>> {
        // SQLite's views are plain views: always current, nothing to refresh.
        Ok(Vec::new())
    }

    async fn refresh_latest_results(&self) -> Result<Vec<&'static str>> {
        Ok(Vec::new())
    }

    async fn delete_expired_metadata(&self, cutoff: i64, batch: u32) -> Result<u64> {
        super::maintain::sqlite_delete_expired_metadata(&self.pool, cutoff, batch).await
    }

    async fn delete_orphan_events(&self, batch: u32) -> Result<u64> {
        super::maintain::sqlite_delete_orphan_events(&self.pool, batch).await
    }

    async fn delete_orphan_metadata(&self, batch: u32) -> Result<u64> {
        super::maintain::sqlite_delete_orphan_metadata(&self.pool, batch).await
    }

    async fn event_storage_bytes(&self) -> Result<u64> {
        // dbstat is not compiled into every SQLite; page counts of the whole file are the
        // portable measure (events dominate it).
        let pages: i64 = sqlx::query_scalar(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("storage size"))?;
        Ok(u64::try_from(pages).unwrap_or(0))
    }
}
