//! Maintenance SQL: refreshing the statistics views, retention of monitor results, orphan
//! cleanup. Deletes run in batches of separate statements, so none holds locks on millions of
//! rows while the services write.

use std::future::Future;

use sqlx::SqlitePool;

use super::{PgStore, Result, query_err};

/// The statistics views, dependencies first (`relay_stats` reads `relay_metadata_latest`). Each
/// has a `<view>_refresh()` function that refreshes it concurrently once populated.
const PG_VIEWS: [&str; 8] = [
    "relay_metadata_latest",
    "relay_metadata_latest_by_monitor",
    "event_stats",
    "relay_stats",
    "kind_counts",
    "kind_counts_by_relay",
    "pubkey_counts",
    "pubkey_counts_by_relay",
];

/// Runs `step` until it deletes fewer than `batch` rows; the total.
async fn in_batches<F, Fut>(batch: u32, mut step: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = step().await?;
        total += n;
        if n < u64::from(batch) {
            return Ok(total);
        }
    }
}

async fn pg_refresh(store: &PgStore, views: &[&'static str]) -> Result<()> {
    for view in views {
        store
            .write("view refresh", async |c| {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {view}_refresh()")))
                    .execute(c)
                    .await
            })
            .await?;
    }
    Ok(())
}

/// The latest-result views alone (the first two of [`PG_VIEWS`]): what a consensus round reads.
pub(super) async fn pg_refresh_latest_results(store: &PgStore) -> Result<Vec<&'static str>> {
    pg_refresh(store, &PG_VIEWS[..2]).await?;
    Ok(PG_VIEWS[..2].to_vec())
}

pub(super) async fn pg_refresh_views(store: &PgStore) -> Result<Vec<&'static str>> {
    pg_refresh(store, &PG_VIEWS).await?;
    // When they were refreshed, for the api's `/v1/stats` (PostgreSQL keeps no such time).
    store
        .write("view refresh time", async |c| {
            sqlx::query(
                "SELECT service_state_upsert(ARRAY['maintain'], ARRAY['refresh'], ARRAY['views'], \
                 ARRAY[jsonb_build_object('refreshed_at', extract(epoch FROM now())::bigint)])",
            )
            .execute(c)
            .await
        })
        .await?;
    Ok(PG_VIEWS.to_vec())
}

/// Deletes in batches with `sql` (its last parameter is the batch size); the total.
macro_rules! delete_batches {
    ($pool:expr, $batch:expr, $op:literal, $sql:expr $(, $bind:expr)*) => {
        in_batches($batch, || async move {
            let r = sqlx::query($sql)
                $(.bind($bind))*
                .bind(i64::from($batch))
                .execute($pool)
                .await
                .map_err(query_err($op))?;
            Ok(r.rows_affected())
        })
        .await
    };
}

/// [`delete_batches`] on PostgreSQL: each batch its own transaction, committed before the next.
macro_rules! pg_delete_batches {
    ($store:expr, $batch:expr, $op:literal, $sql:expr $(, $bind:expr)*) => {
        in_batches($batch, || async move {
            let r = $store
                .write($op, async |c| {
                    sqlx::query($sql)
                        $(.bind($bind))*
                        .bind(i64::from($batch))
                        .execute(c)
                        .await
                })
                .await?;
            Ok(r.rows_affected())
        })
        .await
    };
}

/// Older than the cutoff and not the newest of its (relay, check, monitor). `?` placeholders;
/// [`numbered`] turns them into PostgreSQL's `$n`.
const EXPIRED: &str = "DELETE FROM relay_metadata \
   WHERE (relay_id, generated_at, metadata_type, monitor) IN ( \
     SELECT rm.relay_id, rm.generated_at, rm.metadata_type, rm.monitor FROM relay_metadata rm \
     WHERE rm.generated_at < ? AND EXISTS ( \
       SELECT 1 FROM relay_metadata n WHERE n.relay_id = rm.relay_id \
         AND n.metadata_type = rm.metadata_type AND n.monitor = rm.monitor \
         AND n.generated_at > rm.generated_at) \
     LIMIT ?)";
const ORPHAN_EVENTS: &str = "DELETE FROM event WHERE id IN (SELECT e.id FROM event e \
   WHERE NOT EXISTS (SELECT 1 FROM event_relay er WHERE er.event_id = e.id) LIMIT ?)";
const ORPHAN_METADATA: &str = "DELETE FROM metadata WHERE (id, type) IN ( \
   SELECT m.id, m.type FROM metadata m WHERE NOT EXISTS (SELECT 1 FROM relay_metadata rm \
     WHERE rm.metadata_id = m.id AND rm.metadata_type = m.type) LIMIT ?)";

/// `?` placeholders as PostgreSQL's `$1`, `$2`, ….
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) async fn pg_delete_expired_metadata(
    store: &PgStore,
    cutoff: i64,
    batch: u32,
) -> Result<u64> {
    let sql = numbered(EXPIRED);
    let sql = sql.as_str();
    pg_delete_batches!(
        store,
        batch,
        "metadata retention",
        sqlx::AssertSqlSafe(sql.to_owned()),
        cutoff
    )
}

pub(super) async fn pg_delete_orphan_events(store: &PgStore, batch: u32) -> Result<u64> {
    let sql = numbered(ORPHAN_EVENTS);
    let sql = sql.as_str();
    pg_delete_batches!(
        store,
        batch,
        "orphan events",
        sqlx::AssertSqlSafe(sql.to_owned())
    )
}

pub(super) async fn pg_delete_orphan_metadata(store: &PgStore, batch: u32) -> Result<u64> {
    let sql = numbered(ORPHAN_METADATA);
    let sql = sql.as_str();
    pg_delete_batches!(
        store,
        batch,
        "orphan metadata",
        sqlx::AssertSqlSafe(sql.to_owned())
    )
}

pub(super) async fn sqlite_delete_expired_metadata(
    pool: &SqlitePool,
    cutoff: i64,
    batch: u32,
) -> Result<u64> {
    delete_batches!(pool, batch, "metadata retention", EXPIRED, cutoff)
}

pub(super) async fn sqlite_delete_orphan_events(pool: &SqlitePool, batch: u32) -> Result<u64> {
    delete_batches!(pool, batch, "orphan events", ORPHAN_EVENTS)
}

pub(super) async fn sqlite_delete_orphan_metadata(pool: &SqlitePool, batch: u32) -> Result<u64> {
    delete_batches!(pool, batch, "orphan metadata", ORPHAN_METADATA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered("a < ? AND b = ? LIMIT ?"),
            "a < $1 AND b = $2 LIMIT $3"
        );
    }
}
