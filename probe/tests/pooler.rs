//! The probe through PgBouncer (Debian's 1.18, the one `e2e/pg.sh` starts) in transaction mode:
//! the whole pipeline on both schemas, what breaks when the store is not told of the pooler, and
//! what is refused through it (migrations, LISTEN) with a message naming the setting.
//! The shared store suite runs through the same pooler too (`store_suite.rs`, `pooled::`).

mod common;

use std::process::{Command, Output};
use std::sync::Arc;

use brotr_probe::model::{RelayUrl, Schema};
use brotr_probe::store::{self, DatabaseUrl, OpenMode, PoolConfig, Pooler, RelayRow, Store};
use common::*;

fn url_str(u: &DatabaseUrl) -> &str {
    match u {
        DatabaseUrl::Postgres(s) => s,
        DatabaseUrl::Sqlite(_) => panic!("a PostgreSQL URL"),
    }
}

fn probe(url: &DatabaseUrl, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .env_remove("DATABASE_URL")
        .env_remove("BROTR_SCHEMA")
        .env_remove("BROTR_DB_POOLER")
        .arg("--database")
        .arg(url_str(url))
        .args(args)
        .output()
        .expect("run brotr-probe")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `run --once` through a pooler in transaction mode (`url`, plus `extra` global flags), over a
/// seed list of `relays` written to `dir`, with the finder's external sources off.
async fn run_once_pooled(
    url: &DatabaseUrl,
    extra: &[&str],
    dir: &std::path::Path,
    relays: &[String],
) -> Output {
    let seeds = dir.join("local.txt");
    std::fs::write(&seeds, relays.join("\n") + "\n").unwrap();
    let cfg = dir.join("probe.yaml");
    std::fs::write(&cfg, "finder:\n  sources: []\n").unwrap();
    let url = url.clone();
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "--db-pooler",
            "transaction",
            "--allow-private",
            "--config",
            cfg.to_str().unwrap(),
            "run",
            "--once",
            "--file",
            seeds.to_str().unwrap(),
        ]
        .map(String::from),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        probe(&url, &args)
    })
    .await
    .unwrap()
}

/// The archive's counts, read straight from the server.
async fn counts(url: &DatabaseUrl, schema: Option<Schema>) -> store::Counts {
    store::open(url, schema)
        .await
        .unwrap()
        .counts()
        .await
        .unwrap()
}

const POOLED: PoolConfig = PoolConfig {
    max_connections: 8,
    pooler: Pooler::Transaction,
};

#[tokio::test]
#[ignore = "needs PostgreSQL and PgBouncer: BROTR_TEST_PG_URL, BROTR_TEST_PGBOUNCER_URL (e2e/run-tests.sh starts them)"]
async fn the_whole_pipeline_runs_through_pgbouncer_in_transaction_mode_on_both_schemas() {
    let (_r1, url1) = common::peers::relay_with(&common::peers::recent_notes(400, vec![])).await;
    let (_r2, url2) = common::peers::relay_with(&common::peers::recent_notes(200, vec![])).await;
    let decoy = common::peers::http_server().await;
    for schema in [Schema::Full, Schema::Lite] {
        let (direct, pooled) = fresh_pooled_pg_url().await;
        let dir = tempfile::tempdir().unwrap();
        // Migrations go to the server itself; everything else through the pooler.
        let out = probe(&direct, &["--schema", schema.as_str(), "migrate"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let relays = [url1.to_string(), url2.to_string(), format!("ws://{decoy}")];
        let out = run_once_pooled(&pooled, &[], dir.path(), &relays).await;
        assert!(out.status.success(), "{schema}: {}", stderr(&out));
        let counts = counts(&direct, Some(schema)).await;
        assert_eq!(counts.relays, 2, "{schema}: {}", stderr(&out));
        assert_eq!(
            (counts.events, counts.event_relays),
            (600, 600),
            "{schema}: {}",
            stderr(&out)
        );
        assert_eq!(
            counts.candidates, 1,
            "{schema}: the decoy stays a candidate"
        );
        // The monitor's results went through the pooler too.
        assert!(
            counts.relay_metadata > 0,
            "{schema}: the monitor stored nothing: {}",
            stderr(&out)
        );
    }
}

/// A fresh `brotr_tight` (the pooler's database with two server connections), migrated.
async fn tight_database() -> (DatabaseUrl, DatabaseUrl) {
    let admin = std::env::var(PG_URL_ENV).expect("BROTR_TEST_PG_URL");
    let pooler = std::env::var(PGBOUNCER_URL_ENV).expect("BROTR_TEST_PGBOUNCER_URL");
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::raw_sql("DROP DATABASE IF EXISTS brotr_tight WITH (FORCE)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE DATABASE brotr_tight")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let base = |u: &str| u.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let direct = DatabaseUrl::Postgres(format!("{}/brotr_tight", base(&admin)));
    let pooled = DatabaseUrl::Postgres(format!("{}/brotr_tight", base(&pooler)));
    store::migrate(&direct, Some(Schema::Full)).await.unwrap();
    (direct, pooled)
}

/// 16 tasks, each `rounds` times: a write (its own relay), then three reads. The errors, and
/// how many relays were written.
async fn hammer(s: Arc<dyn Store>, run: &str, rounds: usize) -> (Vec<String>, u64) {
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut written = 0;
            for r in 0..rounds {
                let relay = RelayRow {
                    url: RelayUrl::parse(&format!("wss://{run}-{t}-{r}.example.com")).unwrap(),
                    discovered_at: 1,
                };
                match s.insert_relays(&[relay]).await {
                    Ok(n) => written += n,
                    Err(e) => errors.push(e.to_string()),
                }
                if let Err(e) = s.counts().await {
                    errors.push(e.to_string());
                }
                if let Err(e) = s.relays().await {
                    errors.push(e.to_string());
                }
                if let Err(e) = s.state_get("t", "k", None).await {
                    errors.push(e.to_string());
                }
            }
            (errors, written)
        }));
    }
    let mut errors = Vec::new();
    let mut written = 0;
    for t in tasks {
        let (e, w) = t.await.unwrap();
        errors.extend(e);
        written += w;
    }
    (errors, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and PgBouncer: BROTR_TEST_PG_URL, BROTR_TEST_PGBOUNCER_URL (e2e/run-tests.sh starts them)"]
async fn two_server_connections_shared_by_sixteen_clients_break_a_store_not_told_of_the_pooler() {
    let (direct, pooled) = tight_database().await;
    // Not told: named statements prepared on one server connection are bound on another, or
    // meet another client's of the same name (the server connections outlive the clients, so
    // even opening may fail).
    let naive = store::open_sized(
        &pooled,
        Some(Schema::Full),
        OpenMode::Check,
        PoolConfig {
            max_connections: 16,
            pooler: Pooler::None,
        },
    )
    .await;
    let errors = match naive {
        Err(e) => vec![e.to_string()],
        Ok(naive) => hammer(naive, "naive", 40).await.0,
    };
    assert!(
        errors.iter().any(|e| e.contains("prepared statement")),
        "the trap did not show: {} errors {:?}",
        errors.len(),
        errors.iter().take(3).collect::<Vec<_>>()
    );
    // Told: every statement unnamed and inside its transaction; nothing fails, nothing is lost.
    let before = counts(&direct, None).await;
    let told = store::open_sized(
        &pooled,
        Some(Schema::Full),
        OpenMode::Check,
        PoolConfig {
            max_connections: 16,
            ..POOLED
        },
    )
    .await
    .unwrap();
    let (errors, written) = hammer(told, "told", 40).await;
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    let after = counts(&direct, None).await;
    assert_eq!(after.relays - before.relays, 16 * 40);
    assert_eq!(written, 16 * 40);
}

#[tokio::test]
#[ignore = "needs PostgreSQL and PgBouncer: BROTR_TEST_PG_URL, BROTR_TEST_PGBOUNCER_URL (e2e/run-tests.sh starts them)"]
async fn migrating_through_the_pooler_is_refused_naming_the_setting_and_changes_nothing() {
    let (direct, pooled) = fresh_pooled_pg_url().await;
    let out = tokio::task::spawn_blocking(move || {
        probe(&pooled, &["--db-pooler", "transaction", "migrate"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--db-pooler transaction"), "{err}");
    assert!(err.contains("brotr-probe migrate"), "{err}");
    // Nothing was created: the database has no schema (opening it says so).
    let e = store::open(&direct, None).await.err().expect("no schema");
    assert!(e.to_string().contains("no Brotr schema"), "{e}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL and PgBouncer: BROTR_TEST_PG_URL, BROTR_TEST_PGBOUNCER_URL (e2e/run-tests.sh starts them)"]
async fn the_api_behind_the_pooler_is_refused_naming_the_setting() {
    let (direct, pooled) = fresh_pooled_pg_url().await;
    open(&direct, Schema::Full).await;
    let out = tokio::task::spawn_blocking(move || {
        probe(
            &pooled,
            &[
                "--db-pooler",
                "transaction",
                "api",
                "--listen",
                "127.0.0.1:0",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("live tail needs LISTEN"), "{err}");
    assert!(err.contains("--db-pooler transaction"), "{err}");
}

#[tokio::test]
async fn a_pooler_that_does_not_answer_exits_2_naming_the_url_and_the_setting() {
    // A loopback port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = DatabaseUrl::Postgres(format!("postgres://brotr:secret@127.0.0.1:{port}/brotr"));
    let out = tokio::task::spawn_blocking(move || {
        probe(&url, &["--db-pooler", "transaction", "monitor", "--once"])
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("--db-pooler transaction"), "{err}");
    assert!(
        !err.contains("secret"),
        "the password is never printed: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// The pooler the operator renders in front of an external server: PgBouncer's `[databases]`
/// entry and auth file written by `brotr-probe pooler-config` from the server's URL (a login
/// whose password needs percent-encoding), the rest of `pgbouncer.ini` as the operator renders
/// it. The pipeline then runs through it with the same URL and `--db-via`.
#[tokio::test]
#[ignore = "needs PostgreSQL and PgBouncer: BROTR_TEST_PG_URL (e2e/run-tests.sh starts it; /usr/sbin/pgbouncer)"]
async fn the_pipeline_runs_through_a_pgbouncer_written_by_pooler_config() {
    let admin = std::env::var(PG_URL_ENV).expect("BROTR_TEST_PG_URL");
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    for sql in [
        "DROP DATABASE IF EXISTS brotr_fronted WITH (FORCE)",
        "DROP ROLE IF EXISTS \"fronted@app\"",
        "CREATE ROLE \"fronted@app\" LOGIN PASSWORD 'p@ss \"w\":rd/%'",
        "CREATE DATABASE brotr_fronted OWNER \"fronted@app\"",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let server = url::Url::parse(&admin).unwrap();
    let (host, port) = (server.host_str().unwrap(), server.port().unwrap_or(5432));
    let login = "fronted%40app:p%40ss%20%22w%22%3Ard%2F%25";
    let direct = DatabaseUrl::Postgres(format!(
        "postgres://{login}@{host}:{port}/brotr_fronted?sslmode=disable"
    ));
    let dir = tempfile::tempdir().unwrap();
    let out = probe(
        &direct,
        &["pooler-config", "--out", dir.path().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let server_ini = std::fs::read_to_string(dir.path().join("server.ini")).unwrap();
    assert!(
        server_ini.contains(&format!(
            "brotr_fronted = host={host} port={port} dbname=brotr_fronted"
        )),
        "{server_ini}"
    );
    assert!(
        !stderr(&out).contains("p@ss"),
        "the password is never logged"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("userlist.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the auth file is the owner's only");

    let _bouncer = common::pgbouncer_including(dir.path());
    let via = format!("127.0.0.1:{}", _bouncer.port);

    // Migrations to the server itself; the pipeline through the pooler.
    let out = probe(&direct, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_r1, url1) = common::peers::relay_with(&common::peers::recent_notes(300, vec![])).await;
    let out = run_once_pooled(
        &direct,
        &["--db-via", &via],
        dir.path(),
        &[url1.to_string()],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("@{via}/brotr_fronted")),
        "it went through the pooler: {}",
        stderr(&out)
    );
    let ran = counts(&direct, None).await;
    assert_eq!((ran.relays, ran.events), (1, 300), "{}", stderr(&out));
    assert!(ran.relay_metadata > 0, "the monitor wrote through it");

    // The pooler checks the password (SCRAM against the auth file): a wrong one is refused,
    // naming the pooler, and changes nothing.
    let wrong = DatabaseUrl::Postgres(format!(
        "postgres://fronted%40app:nope@{host}:{port}/brotr_fronted"
    ));
    let out = probe(
        &wrong,
        &[
            "--db-via",
            &via,
            "--db-pooler",
            "transaction",
            "maintain",
            "cleanup",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&via) && err.contains("--db-pooler transaction"),
        "{err}"
    );
    assert!(
        !err.contains("nope"),
        "the password is never printed: {err}"
    );
    let after = counts(&direct, None).await;
    assert_eq!(after.events, 300);

    // `--db-via` that is not HOST:PORT: exit 2 naming it.
    let out = probe(&direct, &["--db-via", "nowhere", "monitor", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--db-via nowhere"),
        "{}",
        stderr(&out)
    );
}
