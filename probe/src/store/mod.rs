//! Storage: one [`Store`] trait, implemented for PostgreSQL (production) and SQLite (embedded
//! default). Both run the same test suite (`probe/tests/store_suite.rs`).

mod copy_text;
pub mod health;
mod maintain;
mod open;
mod pgbouncer;
mod postgres;
pub mod query;
pub mod read;
mod sqlite;
mod timed;
pub mod version;

use async_trait::async_trait;
use serde_json::Value;

use crate::model::{Candidate, EventRow, Metadata, MetadataType, Network, RelayUrl, Schema};

pub use copy_text::CopyWriter;
pub use health::{active_relays, relay_health};
pub use open::{
    DEFAULT_MAX_CONNECTIONS, DatabaseUrl, OpenMode, PoolConfig, Pooler, ensure_reader_login,
    migrate, open, open_archive, open_archive_with, open_sized, open_sized_archive,
};
pub use pgbouncer::PgBouncerFiles;
pub use postgres::{PgStore, encode_events};
pub use read::{Archive, Reader};
pub use sqlite::SqliteStore;
pub use timed::Timed;
pub use version::VersionError;

/// Rows per statement for bulk writes; callers may pass more, stores chunk internally.
pub const BATCH_SIZE: usize = 1000;

/// Why a store operation failed. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bad database URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to database {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "database {target} holds the {database} schema but {requested} was requested; \
         a database keeps the schema it was created with (use another database)"
    )]
    SchemaMismatch {
        target: String,
        database: Schema,
        requested: Schema,
    },
    #[error("migrating database {target} failed: {source}")]
    Migrate {
        target: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error during {op}: {source}")]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored {what} is malformed: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("cannot set up the read-only login {name:?}: {reason}")]
    ReaderLogin { name: String, reason: String },
    #[error(
        "{what} needs at least {need} database connections (one listens for notifications); \
         --db-max-connections gives it {have}"
    )]
    TooFewConnections {
        what: &'static str,
        need: u32,
        have: u32,
    },
    #[error(
        "migrating database {target} through a pooler in transaction mode (--db-pooler \
         transaction) is refused: migrations hold a session lock, which such a pooler does not \
         keep; run `brotr-probe migrate` with the server's own URL"
    )]
    MigrateThroughPooler { target: String },
    #[error(
        "{what} needs LISTEN, which a pooler in transaction mode (--db-pooler transaction) does \
         not carry; connect it to the server directly"
    )]
    ListenThroughPooler { what: &'static str },
    #[error("{what} needs the archive's reads, and was given a bare store (a bug)")]
    NoReader { what: &'static str },
}

impl StoreError {
    /// Whether the error is the caller's configuration (exit code 2) rather than a runtime failure.
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            StoreError::BadUrl { .. }
                | StoreError::SchemaMismatch { .. }
                | StoreError::Version(_)
                | StoreError::ReaderLogin { .. }
                | StoreError::TooFewConnections { .. }
                | StoreError::MigrateThroughPooler { .. }
                | StoreError::ListenThroughPooler { .. }
        ) || matches!(
            self,
            StoreError::Migrate {
                source: sqlx::migrate::MigrateError::VersionMissing(_),
                ..
            }
        )
    }
}

/// Tags a sqlx error with the operation it broke.
pub(crate) fn query_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A row of the `relay` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRow {
    pub url: RelayUrl,
    pub discovered_at: i64,
}

/// What one event batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Events not stored before.
    pub events_new: u64,
    /// (event, relay) pairs not recorded before.
    pub links_new: u64,
}

/// An event read back from the store. Lite stores leave `tags_json`, `content` and `sig` empty;
/// a full PostgreSQL store's event queries (the api's reads) leave `tagvalues` empty, the tags
/// being in `tags_json` (`get_event` and the live tail fill both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: [u8; 32],
    pub pubkey: [u8; 32],
    pub created_at: i64,
    pub kind: i32,
    pub tagvalues: Vec<String>,
    pub tags_json: Option<String>,
    pub content: Option<String>,
    pub sig: Option<Vec<u8>>,
}

/// Row counts of the main tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub relays: u64,
    pub candidates: u64,
    pub events: u64,
    pub event_relays: u64,
    pub metadata: u64,
    pub relay_metadata: u64,
}

impl Counts {
    /// From the six counts in table order (relays, candidates, events, event_relays, metadata,
    /// relay_metadata), as both backends' count query returns them.
    pub(crate) fn from_columns(get: impl Fn(usize) -> i64) -> Self {
        let c = |i| u64::try_from(get(i)).unwrap_or(0);
        Counts {
            relays: c(0),
            candidates: c(1),
            events: c(2),
            event_relays: c(3),
            metadata: c(4),
            relay_metadata: c(5),
        }
    }
}

/// Connections of a pool: (in use, idle, the most it opens).
pub(crate) fn pool_usage<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> (u32, u32, u32) {
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    (
        pool.size().saturating_sub(idle),
        idle,
        pool.options().get_max_connections(),
    )
}

/// A check result with its outcome, for [`Store::insert_checks`]: the document is
/// content-addressed, the outcome and reason go on the time-series row.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    pub metadata: Metadata,
    pub success: bool,
    /// Why the check failed (absent iff it succeeded).
    pub reason: Option<String>,
}

/// A `service_state` row: per-service checkpoints and cursors.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry {
    pub service: String,
    pub kind: String,
    pub key: String,
    pub value: Value,
}

/// Service name and state type under which candidates live.
pub const CANDIDATE_SERVICE: &str = "validator";
pub const CANDIDATE_STATE: &str = "checkpoint";

/// Everything the services need from a database. Bulk methods accept any number of rows and are
/// idempotent: replaying a batch changes nothing and reports zero new rows.
#[async_trait]
pub trait Store: Send + Sync {
    fn backend(&self) -> Backend;
    fn schema(&self) -> Schema;

    /// Adds relays; returns how many were new.
    async fn insert_relays(&self, relays: &[RelayRow]) -> Result<u64>;
    /// All relays, ordered by URL.
    async fn relays(&self) -> Result<Vec<RelayRow>>;

    /// Adds candidates whose URL is neither a relay nor already a candidate (existing candidates
    /// keep their failure counts); returns how many were new.
    async fn insert_candidates(&self, candidates: &[Candidate]) -> Result<u64>;
    /// All candidates, fewest failures and oldest attempt first.
    async fn candidates(&self, limit: u32) -> Result<Vec<Candidate>> {
        self.due_candidates(&Network::ALL, i64::MAX, limit).await
    }
    /// Candidates on `networks` due for a validation attempt: never failed, or last tried before
    /// `retry_before`. Fewest failures and oldest attempt first.
    async fn due_candidates(
        &self,
        networks: &[Network],
        retry_before: i64,
        limit: u32,
    ) -> Result<Vec<Candidate>>;
    /// Adds validated candidates to `relay` and removes their candidate rows, atomically.
    /// Returns how many relays were new.
    async fn promote_candidates(&self, relays: &[RelayRow]) -> Result<u64>;
    /// Removes candidates that are already relays or have failed `max_failures` times or more.
    async fn prune_candidates(&self, max_failures: u32) -> Result<u64>;
    /// Records validation attempts (failure counts and times) of existing candidates.
    async fn record_candidate_attempts(&self, candidates: &[Candidate]) -> Result<u64> {
        let entries: Vec<StateEntry> = candidates
            .iter()
            .map(|c| StateEntry {
                service: CANDIDATE_SERVICE.into(),
                kind: CANDIDATE_STATE.into(),
                key: c.url.as_str().into(),
                value: serde_json::to_value(c.state()).unwrap_or(Value::Null),
            })
            .collect();
        self.state_upsert(&entries).await
    }

    /// Stores verified events seen on `relay` at `seen_at` (adding the relay if needed).
    async fn insert_events(
        &self,
        relay: &RelayRow,
        seen_at: i64,
        events: &[EventRow],
    ) -> Result<IngestStats>;
    async fn get_event(&self, id: &[u8; 32]) -> Result<Option<StoredEvent>>;
    /// URLs of the relays an event was seen on, sorted.
    async fn event_relays(&self, id: &[u8; 32]) -> Result<Vec<String>>;

    /// Stores check results for `relay` at `generated_at` as measured by the keyless monitor;
    /// identical documents share one row. Returns how many time-series rows were new.
    async fn insert_metadata(
        &self,
        relay: &RelayRow,
        generated_at: i64,
        items: &[Metadata],
    ) -> Result<u64> {
        let rows: Vec<CheckRow> = items
            .iter()
            .map(|m| CheckRow {
                metadata: m.clone(),
                success: true,
                reason: None,
            })
            .collect();
        self.insert_checks(relay, generated_at, &[], &rows).await
    }

    /// Stores monitor check results for `relay` at `generated_at`, measured by `monitor` (its
    /// 32-byte public key; empty for a monitor without a key): identical documents share one
    /// `metadata` row; each result's outcome and reason are kept on its `relay_metadata` row.
    /// Returns how many time-series rows were new.
    async fn insert_checks(
        &self,
        relay: &RelayRow,
        generated_at: i64,
        monitor: &[u8],
        rows: &[CheckRow],
    ) -> Result<u64>;

    /// The newest document of type `kind` for `relay` by any monitor, with its time.
    async fn latest_metadata(
        &self,
        relay: &str,
        kind: MetadataType,
    ) -> Result<Option<(i64, Value)>>;

    async fn state_upsert(&self, entries: &[StateEntry]) -> Result<u64>;
    /// One key, or every key of (service, kind) ordered by key when `key` is `None`.
    async fn state_get(
        &self,
        service: &str,
        kind: &str,
        key: Option<&str>,
    ) -> Result<Vec<(String, Value)>>;
    async fn state_delete(&self, service: &str, kind: &str, keys: &[String]) -> Result<u64>;

    /// `(created_at, id)` of the events seen on `relay` with `since <= created_at <= until`,
    /// only of `kinds` when given: the local side of a NIP-77 reconciliation.
    async fn relay_event_keys(
        &self,
        relay: &str,
        since: i64,
        until: i64,
        kinds: Option<&[i32]>,
    ) -> Result<Vec<(i64, [u8; 32])>>;

    async fn counts(&self) -> Result<Counts>;
    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;
    /// Connections of the pool: (in use, idle, the most it opens).
    fn pool_usage(&self) -> (u32, u32, u32);
    /// A receiver that gets a message whenever any process promotes relays (PostgreSQL
    /// `LISTEN`); `None` where the store cannot tell (SQLite: one process, in-process signal).
    async fn listen_promotions(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>>;

    /// Refreshes the statistics views (concurrently where the database can); their names.
    async fn refresh_views(&self) -> Result<Vec<&'static str>>;
    /// Refreshes only the views of every relay's latest results (what consensus reads); their
    /// names.
    async fn refresh_latest_results(&self) -> Result<Vec<&'static str>>;
    /// Deletes monitor results generated before `cutoff`, keeping the newest of every (relay,
    /// check, monitor), `batch` rows per statement.
    async fn delete_expired_metadata(&self, cutoff: i64, batch: u32) -> Result<u64>;
    /// Deletes events seen at no relay, `batch` per statement.
    async fn delete_orphan_events(&self, batch: u32) -> Result<u64>;
    /// Deletes documents no result points at, `batch` per statement.
    async fn delete_orphan_metadata(&self, batch: u32) -> Result<u64>;
    /// Bytes on disk of the event and event↔relay tables with their indexes.
    async fn event_storage_bytes(&self) -> Result<u64>;
}

/// A `relay` row read back. Stored URLs were canonical when written; local hosts are accepted
/// so a test or private deployment's relays read back.
pub(crate) fn stored_relay(url: &str, discovered_at: i64) -> Result<RelayRow> {
    let url = RelayUrl::parse_allowing_local(url).map_err(|e| StoreError::Corrupt {
        what: format!("relay {url:?}"),
        reason: e.to_string(),
    })?;
    Ok(RelayRow { url, discovered_at })
}

/// Parses a candidate's `service_state` row back into a [`Candidate`].
pub(crate) fn candidate_from_state(key: &str, value: &Value) -> Result<Candidate> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: format!("candidate {key:?}"),
        reason,
    };
    // Candidates were canonical when written; accept local hosts so a test deployment's
    // candidates read back.
    let url = RelayUrl::parse_allowing_local(key).map_err(|e| corrupt(e.to_string()))?;
    let state: crate::model::candidate::CandidateState =
        serde_json::from_value(value.clone()).map_err(|e| corrupt(e.to_string()))?;
    Ok(Candidate {
        url,
        failures: state.failures,
        timestamp: state.timestamp,
    })
}

/// Rows of `relay_event_keys` queries, filtered by kind.
pub(crate) fn event_keys(
    rows: Vec<(i64, Vec<u8>, i32)>,
    kinds: Option<&[i32]>,
) -> Result<Vec<(i64, [u8; 32])>> {
    rows.into_iter()
        .filter(|(_, _, k)| kinds.is_none_or(|ks| ks.contains(k)))
        .map(|(t, id, _)| {
            let id: [u8; 32] = id.try_into().map_err(|v: Vec<u8>| StoreError::Corrupt {
                what: "event id".into(),
                reason: format!("{} bytes", v.len()),
            })?;
            Ok((t, id))
        })
        .collect()
}
