//! The archive's reads, for the api (relay and HTTP routes alike): events by [`EventQuery`], a
//! count, NIP-77 items, and the newest events since a mark (the live tail). Each statement comes
//! from [`super::query`]; this file only runs them.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use tokio::sync::mpsc;

use serde::Serialize;

use super::query::{self, Bind, Dialect, EventQuery, RelayFilter, Sql};
use super::{PgStore, Result, SqliteStore, StoreError, StoredEvent, query_err};
use crate::model::Schema;

/// Reads of the archive. Implemented by both stores; one suite checks both.
#[async_trait]
pub trait Reader: Send + Sync {
    /// Events matching `q`, in NIP-01 order, at most `q.limit`.
    async fn query_events(&self, q: &EventQuery) -> Result<Vec<StoredEvent>>;
    /// Events matching any of `qs`, each filter with its own limit, merged in NIP-01 order
    /// without repeats (one REQ).
    async fn query_any(&self, qs: &[EventQuery]) -> Result<Vec<StoredEvent>> {
        let mut rows = Vec::new();
        for q in qs.iter().filter(|q| !q.is_empty() && q.limit > 0) {
            rows.extend(self.query_events(q).await?);
        }
        Ok(query::merge_in_order(rows, |e| (e.created_at, e.id)))
    }
    /// How many events match any of `qs`.
    async fn count_events(&self, qs: &[EventQuery]) -> Result<u64>;
    /// `(created_at, id)` of the events matching `q`, ascending; `None` when there are more
    /// than `cap`.
    async fn negentropy_items(&self, q: &EventQuery, cap: u32) -> Result<Option<Vec<Item>>>;
    /// New events as they are archived, in batches, from now on: PostgreSQL's ingest
    /// transaction announces each batch (`NOTIFY`), SQLite is polled every `poll` by rowid. A
    /// batch may repeat events already sent (an event linked to a second relay); the receiver
    /// drops repeats. Ends when the receiver is dropped.
    async fn live(&self, poll: Duration) -> Result<mpsc::Receiver<Vec<StoredEvent>>>;
    /// One page of relays (`f.limit + 1` rows, so the caller can tell a next page), each with
    /// its latest health per monitor.
    async fn relays_page(&self, f: &RelayFilter) -> Result<Vec<RelaySummary>>;
    /// One relay and its results, newest first; `None` when the archive has no such relay.
    async fn relay_detail(
        &self,
        url: &str,
        since: Option<i64>,
        until: Option<i64>,
        check: Option<&str>,
        limit: u32,
    ) -> Result<Option<RelayDetail>>;
    /// Whole-archive statistics.
    async fn stats(&self) -> Result<Stats>;
}

/// One monitor's latest view of a relay.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonitorHealth {
    /// The monitor's public key (hex; empty for a monitor without a key).
    pub monitor: String,
    /// When it last checked the relay's round trips (unix time).
    pub checked_at: i64,
    /// Whether it could open a connection.
    pub online: bool,
    pub rtt_open_ms: Option<u64>,
    pub rtt_read_ms: Option<u64>,
    pub rtt_write_ms: Option<u64>,
    /// Why the check failed.
    pub reason: Option<String>,
    /// Whether this monitor's latest NIP-11 document says the relay requires NIP-42 AUTH, and
    /// payment (`None`: it does not say, or the monitor read no document).
    pub auth_required: Option<bool>,
    pub payment_required: Option<bool>,
}

/// A relay with what its monitors last saw.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RelaySummary {
    pub url: String,
    /// clearnet, tor, i2p or loki.
    pub network: String,
    pub discovered_at: i64,
    /// `online` (some monitor's last check connected), `offline` (none did), `unknown`.
    pub status: String,
    pub name: Option<String>,
    pub software: Option<String>,
    pub supported_nips: Vec<i64>,
    /// ISO 3166 country code from the geo check.
    pub country: Option<String>,
    /// Position from the geo check (a geohash, and its latitude and longitude).
    pub geohash: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub health: Vec<MonitorHealth>,
}

/// One result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// nip11_info, nip66_rtt, nip66_ssl, nip66_geo, nip66_net, nip66_dns, nip66_http, nip77_probe.
    pub check: String,
    pub monitor: String,
    pub generated_at: i64,
    pub success: bool,
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// One relay, and its check history over a time range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RelayDetail {
    pub relay: RelaySummary,
    /// Newest first, at most `limit`.
    pub history: Vec<CheckResult>,
}

/// Whole-archive statistics.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub events: i64,
    pub relays: i64,
    pub pubkeys: Option<i64>,
    /// Events per kind (kind as text → count), the 50 most frequent.
    #[schema(value_type = Object)]
    pub kinds: serde_json::Value,
    /// When the statistics views were last refreshed (unix time). SQLite's views are plain
    /// views, always current: the time of the answer.
    pub refreshed_at: Option<i64>,
}

/// A latest-result row: `(relay_url, check, monitor, generated_at, success, reason, data)`.
pub(crate) type HealthRow = (String, String, String, i64, bool, Option<String>, String);

/// Relays of a page with their health rows folded in (pure; both stores call it).
pub(crate) fn assemble(
    relays: Vec<(String, String, i64)>,
    rows: Vec<HealthRow>,
) -> Vec<RelaySummary> {
    let mut by_url: std::collections::HashMap<String, Vec<HealthRow>> =
        std::collections::HashMap::new();
    for r in rows {
        by_url.entry(r.0.clone()).or_default().push(r);
    }
    relays
        .into_iter()
        .map(|(url, network, discovered_at)| {
            let rows = by_url.remove(&url).unwrap_or_default();
            let mut s = RelaySummary {
                url,
                network,
                discovered_at,
                status: "unknown".into(),
                name: None,
                software: None,
                supported_nips: Vec::new(),
                country: None,
                geohash: None,
                lat: None,
                lon: None,
                health: Vec::new(),
            };
            let mut limits: std::collections::HashMap<String, (Option<bool>, Option<bool>)> =
                std::collections::HashMap::new();
            for (_, check, monitor, at, success, reason, data) in rows {
                let data: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                let text = |k: &str| data.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                let ms = |k: &str| data.get(k).and_then(serde_json::Value::as_u64);
                match check.as_str() {
                    "nip66_rtt" => s.health.push(MonitorHealth {
                        monitor,
                        checked_at: at,
                        online: success,
                        rtt_open_ms: ms("rtt_open"),
                        rtt_read_ms: ms("rtt_read"),
                        rtt_write_ms: ms("rtt_write"),
                        reason,
                        auth_required: None,
                        payment_required: None,
                    }),
                    "nip11_info" if success => {
                        let flag = |k: &str| {
                            data.pointer(&format!("/limitation/{k}"))
                                .and_then(serde_json::Value::as_bool)
                        };
                        limits.insert(monitor, (flag("auth_required"), flag("payment_required")));
                        s.name = s.name.or_else(|| text("name"));
                        s.software = s.software.or_else(|| text("software"));
                        if s.supported_nips.is_empty() {
                            s.supported_nips = data
                                .get("supported_nips")
                                .and_then(|v| v.as_array())
                                .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
                                .unwrap_or_default();
                        }
                    }
                    "nip66_geo" if success => {
                        s.country = s.country.or_else(|| text("geo_country"));
                        if s.geohash.is_none() {
                            s.geohash = text("geo_hash");
                            s.lat = data.get("geo_lat").and_then(serde_json::Value::as_f64);
                            s.lon = data.get("geo_lon").and_then(serde_json::Value::as_f64);
                        }
                    }
                    _ => {}
                }
            }
            for h in &mut s.health {
                if let Some((auth, payment)) = limits.get(&h.monitor) {
                    (h.auth_required, h.payment_required) = (*auth, *payment);
                }
            }
            if !s.health.is_empty() {
                s.status = if s.health.iter().any(|h| h.online) {
                    "online".into()
                } else {
                    "offline".into()
                };
            }
            s
        })
        .collect()
}

/// A store with its reads: what the api opens.
pub trait Archive: super::Store + Reader {}

impl<T: super::Store + Reader + ?Sized> Archive for T {}

fn id32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    v.try_into().map_err(|v: Vec<u8>| StoreError::Corrupt {
        what: what.into(),
        reason: format!("{} bytes, expected 32", v.len()),
    })
}

fn pg_query(sql: &Sql) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    // Built from fixed fragments; every value is a bind (store::query).
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.text.as_str()));
    for b in &sql.binds {
        q = match b {
            Bind::Int(v) => q.bind(*v),
            Bind::Bytes(v) => q.bind(v.as_slice()),
            Bind::Text(v) => q.bind(v.as_str()),
            Bind::Ints(v) => q.bind(v.as_slice()),
            Bind::ByteArrays(v) => q.bind(v.as_slice()),
            Bind::Texts(v) => q.bind(v.as_slice()),
        };
    }
    q
}

impl PgStore {
    /// Events for `q` on PostgreSQL, by the cheapest of three routes (all built in
    /// [`super::query`]): a few authors without kinds look up their kinds first and read one index
    /// range per `(author, kind)`; a tag filter is read window by window, newest first; any other
    /// filter in one statement.
    async fn read_events(&self, q: &EventQuery) -> Result<Vec<StoredEvent>> {
        let schema = super::Store::schema(self);
        if q.wants_author_kinds() {
            let authors = q.authors.as_deref().unwrap_or_default();
            let rows: Vec<(Vec<u8>, i32)> = pg_query(&query::author_kinds(authors))
                .fetch_all(self.pool())
                .await
                .and_then(two_columns)
                .map_err(query_err("event query"))?;
            if rows.len() <= query::MAX_PAIRS {
                let pairs = rows
                    .into_iter()
                    .filter(|(_, k)| !q.hidden_kinds.contains(k))
                    .map(|(a, k)| Ok((id32(a, "event pubkey")?, k)))
                    .collect::<Result<Vec<_>>>()?;
                return self
                    .fetch_events(&query::events_by_pairs(schema, q, &pairs))
                    .await;
            }
        }
        if q.wants_tag_window()
            && let Some(rows) = self.read_tag_window(q).await?
        {
            return Ok(rows);
        }
        self.fetch_events(&query::events(Dialect::Postgres, schema, q))
            .await
    }

    /// A tag filter the planner expects to match many events, read in a window of the newest
    /// events that should hold twice `limit` of them ([`query::tag_window_depth`]): by the tag
    /// index within the window, or, for the most common tags, by walking the window in time
    /// order. `None` when the tag is rare, or the window fell short (then the filter is read
    /// whole).
    async fn read_tag_window(&self, q: &EventQuery) -> Result<Option<Vec<StoredEvent>>> {
        let schema = super::Store::schema(self);
        let plan = self.explain(&query::tag_matches(schema, q)).await?;
        let matches = plan
            .pointer("/0/Plan/Plan Rows")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
        if matches < query::TAG_WINDOW_FROM {
            return Ok(None);
        }
        let total: f64 = pg_query(&query::events_total())
            .fetch_optional(self.pool())
            .await
            .and_then(|r| r.map(|r| r.try_get(0)).transpose())
            .map_err(query_err("event query"))?
            .unwrap_or(0.0);
        let Some(depth) = query::tag_window_depth(q.limit, matches, total) else {
            return Ok(None);
        };
        let start: Option<i64> = pg_query(&query::time_at_depth(q.upper(), depth))
            .fetch_optional(self.pool())
            .await
            .and_then(|r| r.map(|r| r.try_get(0)).transpose())
            .map_err(query_err("event query"))?;
        let Some(start) = start else {
            return Ok(None);
        };
        let whole = q.since.is_some_and(|s| s >= start);
        let window = EventQuery {
            since: Some(q.since.map_or(start, |s| s.max(start))),
            ..q.clone()
        };
        let sql = if matches >= query::TAG_WALK_FROM {
            query::events_walk(schema, &window)
        } else {
            query::events(Dialect::Postgres, schema, &window)
        };
        let rows = self.fetch_events(&sql).await?;
        Ok((whole || rows.len() >= q.limit as usize).then_some(rows))
    }

    /// The events a statement of [`query`] returns (its [`query::events`] columns), as read.
    pub async fn fetch_events(&self, sql: &Sql) -> Result<Vec<StoredEvent>> {
        let rows = pg_query(sql)
            .fetch_all(self.pool())
            .await
            .map_err(query_err("event query"))?;
        rows.iter().map(pg_event).collect()
    }

    /// PostgreSQL's plan for `sql` (`EXPLAIN (FORMAT JSON)`; the statement is not run): how the
    /// api's query shapes are checked to use an index.
    pub async fn explain(&self, sql: &Sql) -> Result<serde_json::Value> {
        let explain = Sql {
            text: format!("EXPLAIN (FORMAT JSON) {}", sql.text),
            binds: sql.binds.clone(),
        };
        let row = pg_query(&explain)
            .fetch_one(self.pool())
            .await
            .map_err(query_err("explain"))?;
        let plan: sqlx::types::Json<serde_json::Value> =
            row.try_get(0).map_err(query_err("explain"))?;
        Ok(plan.0)
    }
}

impl SqliteStore {
    /// Events for `q` on SQLite: one statement.
    async fn read_events(&self, q: &EventQuery) -> Result<Vec<StoredEvent>> {
        let sql = query::events(Dialect::Sqlite, super::Store::schema(self), q);
        let rows = sqlite_query(&sql)
            .fetch_all(self.pool())
            .await
            .map_err(query_err("event query"))?;
        rows.iter().map(sqlite_event).collect()
    }
}

/// The first two columns of every row.
fn two_columns<R, A, B>(rows: Vec<R>) -> std::result::Result<Vec<(A, B)>, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    A: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    B: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

fn sqlite_query(sql: &Sql) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    // Built from fixed fragments; every value is a bind (store::query).
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.text.as_str()));
    for b in &sql.binds {
        q = match b {
            Bind::Int(v) => q.bind(*v),
            Bind::Bytes(v) => q.bind(v.as_slice()),
            Bind::Text(v) => q.bind(v.as_str()),
            // The SQLite builder never emits arrays; an empty text keeps the placeholder count.
            Bind::Ints(_) | Bind::ByteArrays(_) | Bind::Texts(_) => q.bind(""),
        };
    }
    q
}

fn pg_event(r: &sqlx::postgres::PgRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: id32(r.try_get(0).map_err(query_err("event read"))?, "event id")?,
        pubkey: id32(
            r.try_get(1).map_err(query_err("event read"))?,
            "event pubkey",
        )?,
        created_at: r.try_get(2).map_err(query_err("event read"))?,
        kind: r.try_get(3).map_err(query_err("event read"))?,
        tagvalues: r.try_get(4).map_err(query_err("event read"))?,
        tags_json: r.try_get(5).map_err(query_err("event read"))?,
        content: r.try_get(6).map_err(query_err("event read"))?,
        sig: r.try_get(7).map_err(query_err("event read"))?,
    })
}

fn sqlite_event(r: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent> {
    let tagvalues: String = r.try_get(4).map_err(query_err("event read"))?;
    Ok(StoredEvent {
        id: id32(r.try_get(0).map_err(query_err("event read"))?, "event id")?,
        pubkey: id32(
            r.try_get(1).map_err(query_err("event read"))?,
            "event pubkey",
        )?,
        created_at: r.try_get(2).map_err(query_err("event read"))?,
        kind: r.try_get(3).map_err(query_err("event read"))?,
        tagvalues: serde_json::from_str(&tagvalues).map_err(|e| StoreError::Corrupt {
            what: "event tagvalues".into(),
            reason: e.to_string(),
        })?,
        tags_json: r.try_get(5).map_err(query_err("event read"))?,
        content: r.try_get(6).map_err(query_err("event read"))?,
        sig: r.try_get(7).map_err(query_err("event read"))?,
    })
}

/// `(created_at, id)` of one event, NIP-77's item.
pub type Item = (i64, [u8; 32]);

fn keys(rows: Vec<(i64, Vec<u8>)>, cap: u32) -> Result<Option<Vec<Item>>> {
    if rows.len() > cap as usize {
        return Ok(None);
    }
    rows.into_iter()
        .map(|(t, id)| Ok((t, id32(id, "event id")?)))
        .collect::<Result<Vec<Item>>>()
        .map(Some)
}

/// `impl Reader` for one store: the reads both stores share, written once (`$dialect` picks the
/// SQL, `$query` binds it, `$event`, `$health` and `$check` decode rows of that backend), plus
/// the store's own methods (`live`, `stats`). One macro for the whole impl, so `async_trait`
/// sees every method.
macro_rules! reader_impl {
    ($store:ty, $dialect:expr, $query:ident, $event:ident, $health:ident, $check:ident,
     $relay_sql:literal, { $($own:tt)* }) => {
        #[async_trait]
        impl Reader for $store {
        async fn query_events(&self, q: &EventQuery) -> Result<Vec<StoredEvent>> {
            if q.is_empty() || q.limit == 0 {
                return Ok(Vec::new());
            }
            self.read_events(q).await
        }

        async fn count_events(&self, qs: &[EventQuery]) -> Result<u64> {
            let sql = query::count($dialect, super::Store::schema(self), qs);
            let n: i64 = $query(&sql)
                .fetch_one(self.pool())
                .await
                .and_then(|r| r.try_get(0))
                .map_err(query_err("event count"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        }

        async fn negentropy_items(&self, q: &EventQuery, cap: u32) -> Result<Option<Vec<Item>>> {
            if q.is_empty() {
                return Ok(Some(Vec::new()));
            }
            let sql = query::negentropy_items($dialect, super::Store::schema(self), q, cap);
            let rows: Vec<(i64, Vec<u8>)> = $query(&sql)
                .fetch_all(self.pool())
                .await
                .and_then(two_columns)
                .map_err(query_err("negentropy items"))?;
            keys(rows, cap)
        }

        async fn relays_page(&self, f: &RelayFilter) -> Result<Vec<RelaySummary>> {
            let sql = query::relays($dialect, f);
            let relays: Vec<(String, String, i64)> = $query(&sql)
                .fetch_all(self.pool())
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                        .collect()
                })
                .map_err(query_err("relays read"))?;
            let urls: Vec<String> = relays.iter().map(|r| r.0.clone()).collect();
            let sql = query::relay_health($dialect, &urls);
            let rows: Vec<HealthRow> = $query(&sql)
                .fetch_all(self.pool())
                .await
                .and_then(|rows| rows.iter().map($health).collect())
                .map_err(query_err("relay health read"))?;
            Ok(assemble(relays, rows))
        }

        async fn relay_detail(
            &self,
            url: &str,
            since: Option<i64>,
            until: Option<i64>,
            check: Option<&str>,
            limit: u32,
        ) -> Result<Option<RelayDetail>> {
            let relay: Option<(String, String, i64)> = sqlx::query_as($relay_sql)
                .bind(url)
                .fetch_optional(self.pool())
                .await
                .map_err(query_err("relay read"))?;
            let Some(relay) = relay else { return Ok(None) };
            let sql = query::relay_health($dialect, std::slice::from_ref(&relay.0));
            let rows: Vec<HealthRow> = $query(&sql)
                .fetch_all(self.pool())
                .await
                .and_then(|rows| rows.iter().map($health).collect())
                .map_err(query_err("relay health read"))?;
            let sql = query::relay_history($dialect, url, since, until, check, limit);
            let history = $query(&sql)
                .fetch_all(self.pool())
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map($check)
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
                .map_err(query_err("relay history read"))?;
            Ok(assemble(vec![relay], rows)
                .pop()
                .map(|relay| RelayDetail { relay, history }))
        }

        $($own)*
        }
    };
}

reader_impl!(
    PgStore,
    Dialect::Postgres,
    pg_query,
    pg_event,
    health_row_pg,
    check_row_pg,
    "SELECT url, network, discovered_at FROM relay WHERE url = $1",
    {
        async fn live(&self, _poll: Duration) -> Result<mpsc::Receiver<Vec<StoredEvent>>> {
            if self.pooled() {
                return Err(StoreError::ListenThroughPooler {
                    what: "the api's live tail",
                });
            }
            let pool = self.pool().clone();
            // The listener holds one pool connection for good; the reads need another.
            let have = pool.options().get_max_connections();
            if have < 2 {
                return Err(StoreError::TooFewConnections {
                    what: "the api's live tail",
                    need: 2,
                    have,
                });
            }
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
                .await
                .map_err(query_err("listen"))?;
            listener
                .listen(super::postgres::EVENTS_CHANNEL)
                .await
                .map_err(query_err("listen"))?;
            let sql = match super::Store::schema(self) {
                Schema::Full => {
                    "SELECT e.id, e.pubkey, e.created_at, e.kind, tags_to_tagvalues(e.tags), \
                 e.tags::text, e.content, e.sig FROM event_relay er JOIN event e \
                 ON e.id = er.event_id WHERE er.relay_id = $1 AND er.seen_at = $2"
                }
                Schema::Lite => {
                    "SELECT e.id, e.pubkey, e.created_at, e.kind, e.tagvalues, NULL::text, \
                 NULL::text, NULL::bytea FROM event_relay er JOIN event e \
                 ON e.id = er.event_id WHERE er.relay_id = $1 AND er.seen_at = $2"
                }
            };
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                // PgListener reconnects by itself after a lost connection (what was announced
                // meanwhile is in the archive, not in the tail).
                while let Ok(n) = listener.recv().await {
                    if tx.is_closed() {
                        break;
                    }
                    let Some((relay_id, seen_at)) =
                        super::postgres::parse_batch_notice(n.payload())
                    else {
                        continue;
                    };
                    let batch = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(relay_id)
                        .bind(seen_at)
                        .fetch_all(&pool)
                        .await
                        .map_err(query_err("live tail"))
                        .and_then(|rows| rows.iter().map(pg_event).collect::<Result<Vec<_>>>());
                    match batch {
                        Ok(b) if b.is_empty() => {}
                        Ok(b) => {
                            if tx.send(b).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "live tail: reading a batch failed"),
                    }
                }
            });
            Ok(rx)
        }
        async fn stats(&self) -> Result<Stats> {
            let (events, relays, pubkeys, refreshed_at): (i64, i64, Option<i64>, Option<i64>) =
                sqlx::query_as(
                    "SELECT coalesce((SELECT event_count FROM event_stats), 0)::bigint, \
                    (SELECT count(*) FROM relay)::bigint, \
                    (SELECT unique_pubkeys FROM event_stats)::bigint, \
                    (SELECT (state_value ->> 'refreshed_at')::bigint FROM service_state \
                     WHERE service_name = 'maintain' AND state_type = 'refresh' \
                       AND state_key = 'views')",
                )
                .fetch_one(self.pool())
                .await
                .map_err(query_err("stats read"))?;
            let kinds: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT kind, event_count::bigint FROM kind_counts ORDER BY event_count DESC, kind LIMIT 50",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_err("stats read"))?;
            Ok(Stats {
                events,
                relays,
                pubkeys,
                kinds: kinds_json(kinds),
                refreshed_at,
            })
        }
    }
);

reader_impl!(
    SqliteStore,
    Dialect::Sqlite,
    sqlite_query,
    sqlite_event,
    health_row_sqlite,
    check_row_sqlite,
    "SELECT url, network, discovered_at FROM relay WHERE url = ?",
    {
        async fn live(&self, poll: Duration) -> Result<mpsc::Receiver<Vec<StoredEvent>>> {
            let pool = self.pool().clone();
            // `event` keeps a rowid that only grows: it marks insertion order exactly.
            let mut mark: i64 = sqlx::query_scalar("SELECT coalesce(max(rowid), 0) FROM event")
                .fetch_one(&pool)
                .await
                .map_err(query_err("live tail"))?;
            let cols = match super::Store::schema(self) {
                Schema::Full => "id, pubkey, created_at, kind, tagvalues, tags, content, sig",
                Schema::Lite => "id, pubkey, created_at, kind, tagvalues, NULL, NULL, NULL",
            };
            let sql = format!(
                "SELECT {cols}, rowid FROM event WHERE rowid > ? ORDER BY rowid LIMIT 1000"
            );
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(poll);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if tx.is_closed() {
                        break;
                    }
                    let rows = match sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(mark)
                        .fetch_all(&pool)
                        .await
                    {
                        Ok(rows) => rows,
                        Err(e) => {
                            tracing::warn!(error = %e, "live tail: polling failed");
                            continue;
                        }
                    };
                    let mut batch = Vec::with_capacity(rows.len());
                    for r in &rows {
                        if let Ok(rowid) = r.try_get::<i64, _>(8) {
                            mark = mark.max(rowid);
                        }
                        match sqlite_event(r) {
                            Ok(e) => batch.push(e),
                            Err(e) => {
                                tracing::warn!(error = %e, "live tail: a stored event is malformed")
                            }
                        }
                    }
                    if !batch.is_empty() && tx.send(batch).await.is_err() {
                        break;
                    }
                }
            });
            Ok(rx)
        }

        async fn stats(&self) -> Result<Stats> {
            let (events, relays, pubkeys): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM event), (SELECT count(*) FROM relay), \
                    (SELECT count(DISTINCT pubkey) FROM event)",
            )
            .fetch_one(self.pool())
            .await
            .map_err(query_err("stats read"))?;
            let kinds: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT kind, count(*) AS n FROM event GROUP BY kind ORDER BY n DESC, kind LIMIT 50",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_err("stats read"))?;
            Ok(Stats {
                events,
                relays,
                pubkeys: Some(pubkeys),
                kinds: kinds_json(kinds),
                refreshed_at: Some(crate::runtime::unix_now()),
            })
        }
    }
);

/// `{"<kind>": count, …}`.
fn kinds_json(kinds: Vec<(i32, i64)>) -> serde_json::Value {
    serde_json::Value::Object(
        kinds
            .into_iter()
            .map(|(k, n)| (k.to_string(), serde_json::Value::from(n)))
            .collect(),
    )
}

/// `health_row_pg` / `health_row_sqlite`, `check_row_pg` / `check_row_sqlite`: the same decoding
/// for each backend's row type.
macro_rules! row_decoders {
    ($health:ident, $check:ident, $row:ty) => {
        fn $health(r: &$row) -> std::result::Result<HealthRow, sqlx::Error> {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
            ))
        }

        fn $check(r: &$row) -> std::result::Result<CheckResult, sqlx::Error> {
            Ok(check_row(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get::<&str, _>(5)?,
            ))
        }
    };
}

row_decoders!(health_row_pg, check_row_pg, sqlx::postgres::PgRow);
row_decoders!(health_row_sqlite, check_row_sqlite, sqlx::sqlite::SqliteRow);

fn check_row(
    check: String,
    monitor: String,
    generated_at: i64,
    success: bool,
    reason: Option<String>,
    data: &str,
) -> CheckResult {
    CheckResult {
        check,
        monitor,
        generated_at,
        success,
        reason,
        data: serde_json::from_str(data).unwrap_or(serde_json::Value::Null),
    }
}
