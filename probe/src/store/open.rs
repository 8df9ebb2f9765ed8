//! Choosing and opening a store from a database URL.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::{PgStore, SqliteStore, Store, StoreError};
use crate::model::Schema;

/// Where the data lives: a PostgreSQL server or an SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// The URL with any password replaced by `***`, for messages and logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Postgres(u) => redact(u),
            DatabaseUrl::Sqlite(p) => format!("sqlite:{}", p.display()),
        }
    }
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // Unparseable: keep only the scheme so a secret in a malformed URL is not echoed.
        Err(_) => format!("{}://…", url.split("://").next().unwrap_or("?")),
    }
}

impl FromStr for DatabaseUrl {
    type Err = StoreError;

    /// `postgres://…`/`postgresql://…`, `sqlite:PATH`/`sqlite://PATH`, or a bare file path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(StoreError::BadUrl {
                url: String::new(),
                reason: "empty".into(),
            });
        }
        if let Some(rest) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::BadUrl {
                    url: s.into(),
                    reason: "no file path".into(),
                });
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        match s.split_once("://") {
            Some(("postgres" | "postgresql", _)) => {
                let u = url::Url::parse(s).map_err(|e| StoreError::BadUrl {
                    url: redact(s),
                    reason: e.to_string(),
                })?;
                if u.host_str().is_none_or(str::is_empty)
                    && !u.query().unwrap_or("").contains("host=")
                {
                    return Err(StoreError::BadUrl {
                        url: redact(s),
                        reason: "no host".into(),
                    });
                }
                Ok(DatabaseUrl::Postgres(s.to_owned()))
            }
            Some((scheme, _)) => Err(StoreError::BadUrl {
                url: redact(s),
                reason: format!(
                    "unsupported scheme {scheme:?} (expected postgres://, postgresql://, sqlite: or a file path)"
                ),
            }),
            None => Ok(DatabaseUrl::Sqlite(PathBuf::from(s))),
        }
    }
}

/// Server connections a PostgreSQL store holds at most, unless told otherwise
/// (`--db-max-connections`). An SQLite file keeps its own few.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// How the store reaches PostgreSQL: straight to the server, or through a connection pooler in
/// transaction mode (PgBouncer's `pool_mode = transaction`), where consecutive transactions of one
/// client connection may run on different server connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooler {
    /// Connected to the server itself: prepared statements cached per connection, session
    /// settings, LISTEN.
    #[default]
    None,
    /// Behind a pooler in transaction mode: no named prepared statements, every statement inside
    /// a transaction (so a statement's Parse and Bind reach the same server connection), temporary
    /// tables dropped at commit, no LISTEN, no migrations (their lock is a session's).
    Transaction,
}

/// The connections a PostgreSQL store holds: how many at most, and through what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub pooler: Pooler,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            pooler: Pooler::None,
        }
    }
}

impl From<u32> for PoolConfig {
    /// At most `max_connections`, straight to the server.
    fn from(max_connections: u32) -> Self {
        PoolConfig {
            max_connections,
            pooler: Pooler::None,
        }
    }
}

/// Whether opening may change the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create or upgrade the schema (`migrate`, and `run`'s laptop mode).
    Migrate,
    /// Only check that this binary can work with the schema as it is (every other command).
    Check,
}

/// Creates or upgrades the database's schema and opens it.
///
/// `schema`: the schema the caller wants; `None` accepts whatever the database holds (a new
/// database gets `full`). A database created with one schema refuses the other.
pub async fn migrate(
    url: &DatabaseUrl,
    schema: Option<Schema>,
) -> Result<Arc<dyn Store>, StoreError> {
    open_sized(url, schema, OpenMode::Migrate, PoolConfig::default()).await
}

/// Opens the database without changing its schema: fails (a configuration error, exit code 2)
/// when the schema is missing, behind this binary, or ahead by migrations not marked compatible.
pub async fn open(url: &DatabaseUrl, schema: Option<Schema>) -> Result<Arc<dyn Store>, StoreError> {
    open_sized(url, schema, OpenMode::Check, PoolConfig::default()).await
}

/// Creates or updates `name`, a login role that reads the archive: a member of `brotr_reader`
/// (the role the migrations create, with SELECT on what the api serves), with `password`.
/// PostgreSQL only (SQLite has no roles: refused). Idempotent; the operator runs it in the
/// migration Job of a pipeline whose api it deploys.
pub async fn ensure_reader_login(
    url: &DatabaseUrl,
    name: &str,
    password: &str,
) -> Result<(), StoreError> {
    match url {
        DatabaseUrl::Postgres(u) => super::postgres::ensure_reader_login(u, name, password).await,
        DatabaseUrl::Sqlite(_) => Err(StoreError::ReaderLogin {
            name: name.to_owned(),
            reason: "SQLite has no roles (the api reads the file directly)".into(),
        }),
    }
}

/// Opens an existing, migrated database for reading (the api): the store with its reads.
pub async fn open_archive(
    url: &DatabaseUrl,
    schema: Option<Schema>,
) -> Result<Arc<dyn super::Archive>, StoreError> {
    open_archive_with(url, schema, None, PoolConfig::default()).await
}

/// [`open_archive`] with PostgreSQL's `statement_timeout` set on every connection (the api's
/// `statementTimeoutMs`), so the server, too, stops a read the api has given up on, and at most
/// the connections `pool` says.
pub async fn open_archive_with(
    url: &DatabaseUrl,
    schema: Option<Schema>,
    statement_timeout: Option<std::time::Duration>,
    pool: impl Into<PoolConfig>,
) -> Result<Arc<dyn super::Archive>, StoreError> {
    Ok(match url {
        DatabaseUrl::Postgres(u) => {
            Arc::new(PgStore::open_reader(u, schema, statement_timeout, pool.into()).await?)
        }
        DatabaseUrl::Sqlite(p) => Arc::new(SqliteStore::open(p, schema, OpenMode::Check).await?),
    })
}

/// Opens (`mode`: migrating or checking) with the PostgreSQL connections `pool` says (a number
/// alone: at most that many, straight to the server).
pub async fn open_sized(
    url: &DatabaseUrl,
    schema: Option<Schema>,
    mode: OpenMode,
    pool: impl Into<PoolConfig>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open_sized_archive(url, schema, mode, pool).await?)
}

/// [`open_sized`], with the archive's reads too (a writer that also reads what the api serves).
pub async fn open_sized_archive(
    url: &DatabaseUrl,
    schema: Option<Schema>,
    mode: OpenMode,
    pool: impl Into<PoolConfig>,
) -> Result<Arc<dyn super::Archive>, StoreError> {
    Ok(match url {
        DatabaseUrl::Postgres(u) => Arc::new(PgStore::open_sized(u, schema, mode, pool).await?),
        DatabaseUrl::Sqlite(p) => Arc::new(SqliteStore::open(p, schema, mode).await?),
    })
}

/// The schema to use and the migrations to check against, after `mode`'s step: migrate, or
/// verify the applied versions.
pub(crate) fn check_versions(
    target: &str,
    migrator: &sqlx::migrate::Migrator,
    applied: &[(i64, String)],
) -> Result<(), StoreError> {
    let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    let compatible = super::version::judge(target, &known, applied)?;
    if !compatible.is_empty() {
        tracing::warn!(
            database = target,
            migrations = ?compatible,
            "the database has newer migrations marked compatible; working with it"
        );
    }
    Ok(())
}

/// The schema to use, given what the database holds and what the caller asked for. Without
/// migrating, a database must already hold one.
pub(crate) fn resolve_schema(
    target: &str,
    existing: Option<Schema>,
    requested: Option<Schema>,
    mode: OpenMode,
) -> Result<Schema, StoreError> {
    if existing.is_none() && mode == OpenMode::Check {
        return Err(super::VersionError::Empty {
            target: target.to_owned(),
        }
        .into());
    }
    match (existing, requested) {
        (Some(db), Some(req)) if db != req => Err(StoreError::SchemaMismatch {
            target: target.to_owned(),
            database: db,
            requested: req,
        }),
        (Some(db), _) => Ok(db),
        (None, req) => Ok(req.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_form() {
        let cases = [
            (
                "postgres://u:p@h:5432/db",
                DatabaseUrl::Postgres("postgres://u:p@h:5432/db".into()),
            ),
            (
                "postgresql://h/db",
                DatabaseUrl::Postgres("postgresql://h/db".into()),
            ),
            ("sqlite:./x.db", DatabaseUrl::Sqlite("./x.db".into())),
            (
                "sqlite:///tmp/x.db",
                DatabaseUrl::Sqlite("/tmp/x.db".into()),
            ),
            ("sqlite://x.db?mode=rwc", DatabaseUrl::Sqlite("x.db".into())),
            ("./brotr.db", DatabaseUrl::Sqlite("./brotr.db".into())),
            (
                "/var/lib/brotr/brotr.db",
                DatabaseUrl::Sqlite("/var/lib/brotr/brotr.db".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<DatabaseUrl>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_urls_naming_the_problem_without_the_password() {
        let cases = [
            ("mysql://u:secret@h/db", "unsupported scheme \"mysql\""),
            ("", "empty"),
            ("sqlite:", "no file path"),
            ("postgres://u:secret@[bad/db", "invalid"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<DatabaseUrl>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(reason), "{input}: {msg}");
            assert!(!msg.contains("secret"), "password leaked: {msg}");
            assert!(err.is_config_error());
        }
    }

    #[test]
    fn redacts_passwords() {
        let u: DatabaseUrl = "postgres://brotr:hunter2@db:5432/brotr".parse().unwrap();
        assert_eq!(u.redacted(), "postgres://brotr:***@db:5432/brotr");
    }

    #[test]
    fn schema_resolution() {
        use OpenMode::*;
        use Schema::*;
        assert_eq!(resolve_schema("t", None, None, Migrate).unwrap(), Full);
        assert_eq!(
            resolve_schema("t", None, Some(Lite), Migrate).unwrap(),
            Lite
        );
        assert_eq!(resolve_schema("t", Some(Lite), None, Check).unwrap(), Lite);
        assert_eq!(
            resolve_schema("t", Some(Full), Some(Full), Check).unwrap(),
            Full
        );
        let empty = resolve_schema("t", None, None, Check).unwrap_err();
        assert!(
            empty.to_string().contains("run `brotr-probe migrate`"),
            "{empty}"
        );
        assert!(empty.is_config_error());
        let err = resolve_schema("t", Some(Full), Some(Lite), Migrate).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds the full schema but lite was requested")
        );
    }
}
