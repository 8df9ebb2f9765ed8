//! The `brotr-probe` binary as a user runs it: exit codes, messages, idempotent seeding.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use brotr_probe::model::Schema;
use brotr_probe::store::DatabaseUrl;
use common::peers;
use common::*;

fn probe(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .env_remove("DATABASE_URL")
        .env_remove("BROTR_SCHEMA")
        .arg("--database")
        .arg(db)
        .args(args)
        .output()
        .expect("run brotr-probe")
}

/// `migrate`, which every test database needs first (only `migrate` and `run` change a schema).
fn migrate(db: &Path) {
    let out = probe(db, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn counts(db: &Path) -> brotr_probe::store::Counts {
    open(&DatabaseUrl::Sqlite(db.to_owned()), Schema::Full)
        .await
        .counts()
        .await
        .unwrap()
}

#[tokio::test]
async fn seeding_the_bundled_list_twice_adds_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("brotr.db");
    migrate(&db);
    let first = probe(&db, &["seed"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let c = counts(&db).await;
    assert!(
        c.candidates >= 200,
        "bundled list seeded {} candidates",
        c.candidates
    );
    let again = probe(&db, &["seed"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("inserted=0"), "{}", stderr(&again));
    assert_eq!(counts(&db).await, c, "a second run adds nothing");
}

#[tokio::test]
async fn malformed_seed_lines_are_skipped_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("brotr.db");
    migrate(&db);
    let seeds = dir.path().join("seeds.txt");
    std::fs::write(
        &seeds,
        "# comment\nwss://relay.one.example.com\nhttps://web.example.com\n\nwss://relay.two.example.com/\nwss://10.0.0.1\n",
    )
    .unwrap();
    let out = probe(&db, &["seed", "--file", seeds.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("seeds.txt")
            && err.contains("line=3")
            && err.contains("https://web.example.com"),
        "{err}"
    );
    assert!(err.contains("line=6") && err.contains("10.0.0.1"), "{err}");
    assert_eq!(counts(&db).await.candidates, 2);

    let out = probe(
        &db,
        &[
            "seed",
            "--file",
            seeds.to_str().unwrap(),
            "--to-validate",
            "false",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let c = counts(&db).await;
    assert_eq!(c.relays, 2, "inserted straight into relay");
}

#[test]
fn a_missing_seed_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    migrate(&dir.path().join("b.db"));
    let out = probe(
        &dir.path().join("b.db"),
        &["seed", "--file", "/nonexistent/seeds.txt"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read seed file /nonexistent/seeds.txt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_database_url_exits_2_naming_the_problem() {
    let out = Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .args(["--database", "mysql://root:secret@db/x", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unsupported scheme \"mysql\""), "{err}");
    assert!(!err.contains("secret"), "password leaked: {err}");
}

#[test]
fn an_unknown_schema_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = probe(&dir.path().join("b.db"), &["migrate", "--schema", "medium"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown schema \"medium\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_database_exits_1_with_one_line() {
    // Port 1 on loopback: nothing listens there.
    let out = Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .args([
            "--database",
            "postgres://brotr:pw@127.0.0.1:1/brotr",
            "migrate",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(
            "error: cannot connect to database postgres://brotr:***@127.0.0.1:1/brotr"
        ),
        "{err}"
    );
}

#[test]
fn a_database_refuses_the_other_schema() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    assert!(
        probe(&db, &["migrate", "--schema", "lite"])
            .status
            .success()
    );
    let out = probe(&db, &["migrate", "--schema", "full"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("holds the lite schema but full was requested"),
        "{}",
        stderr(&out)
    );
    // Still usable as lite.
    assert!(probe(&db, &["seed"]).status.success());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    migrate(&dir.path().join("b.db"));
    let out = probe(&dir.path().join("b.db"), &["--log-format", "json", "seed"]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(!err.is_empty());
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn run_once_validates_local_relays_and_archives_all_their_events() {
    // Relay 1 holds notes whose `p` tags hint at a relay nobody seeded.
    let hinted = "ws://127.0.0.1:9/";
    let hint = nostr::Tag::parse(["p", &"ab".repeat(32), hinted]).unwrap();
    let (_r1, url1) = peers::relay_with(&peers::recent_notes(700, vec![hint])).await;
    let (_r2, url2) = peers::relay_with(&peers::recent_notes(300, vec![])).await;
    let decoy = peers::http_server().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("brotr.db");
    let seeds = dir.path().join("local.txt");
    std::fs::write(&seeds, format!("{url1}\n{url2}\nws://{decoy}\n")).unwrap();
    // No external API sources: this machine has no internet.
    let cfg = dir.path().join("probe.yaml");
    std::fs::write(&cfg, "finder:\n  sources: []\n").unwrap();
    // The probe is a child process; the relays run in this test's runtime, so wait off-thread.
    let db2 = db.clone();
    let out = tokio::task::spawn_blocking(move || {
        probe(
            &db2,
            &[
                "--allow-private",
                "--config",
                cfg.to_str().unwrap(),
                "run",
                "--once",
                "--file",
                seeds.to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let c = counts(&db).await;
    assert_eq!(c.relays, 2, "{}", stderr(&out));
    assert_eq!(
        (c.events, c.event_relays),
        (1_000, 1_000),
        "{}",
        stderr(&out)
    );
    // The decoy stays a candidate, and the hinted relay was found at ingest.
    assert_eq!(c.candidates, 2, "{}", stderr(&out));
}

#[test]
fn sync_rejects_a_bad_shard_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = probe(
        &dir.path().join("b.db"),
        &["sync", "--once", "--shard", "3/3"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("3/3"), "{}", stderr(&out));
}

#[test]
fn a_config_filter_with_a_limit_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.yaml");
    std::fs::write(&cfg, "sync:\n  filters: [{kinds: [1], limit: 10}]\n").unwrap();
    let out = probe(
        &dir.path().join("b.db"),
        &["--config", cfg.to_str().unwrap(), "sync", "--once"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("sync.filters[0]"), "{}", stderr(&out));
}

#[test]
fn without_allow_private_local_seeds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    migrate(&dir.path().join("b.db"));
    let seeds = dir.path().join("local.txt");
    std::fs::write(&seeds, "ws://127.0.0.1:7777\n").unwrap();
    let out = probe(
        &dir.path().join("b.db"),
        &["seed", "--file", seeds.to_str().unwrap()],
    );
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("local, private or reserved"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_config_file_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.yaml");
    std::fs::write(&cfg, "validator:\n  chunkSize: 0\n").unwrap();
    let out = probe(
        &dir.path().join("b.db"),
        &["--config", cfg.to_str().unwrap(), "validate", "--once"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("validator.chunkSize"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn commands_other_than_migrate_refuse_an_unmigrated_database_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    for args in [&["seed"][..], &["sync", "--once"], &["maintain", "cleanup"]] {
        let out = probe(&db, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("run `brotr-probe migrate`"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!db.exists(), "{args:?} created the database");
    }
    migrate(&db);
    assert!(probe(&db, &["seed"]).status.success());
}

#[tokio::test]
async fn maintain_runs_each_step_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    migrate(&db);
    let store = open(&DatabaseUrl::Sqlite(db.clone()), Schema::Full).await;
    store
        .insert_events(&relay("wss://r.example.com"), 1, &notes(3))
        .await
        .unwrap();
    drop(store);
    for step in ["refresh", "retention", "cleanup", "cleanup"] {
        let out = probe(&db, &["maintain", step]);
        assert!(out.status.success(), "{step}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("step=\"{step}\""))
                || stderr(&out).contains(&format!("step={step}")),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(counts(&db).await.events, 3, "nothing of use deleted");
    let out = probe(&db, &["maintain", "vacuum"]);
    assert_eq!(out.status.code(), Some(2), "an unknown step is bad usage");
}

#[tokio::test]
async fn once_exits_1_when_every_relay_failed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    migrate(&db);
    let dead = peers::closed_port().await;
    let store = open(&DatabaseUrl::Sqlite(db.clone()), Schema::Full).await;
    store
        .insert_relays(&[brotr_probe::store::RelayRow {
            url: brotr_probe::model::RelayUrl::parse_allowing_local(&format!("ws://{dead}"))
                .unwrap(),
            discovered_at: 1,
        }])
        .await
        .unwrap();
    drop(store);
    let out = probe(&db, &["--allow-private", "sync", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("all 1 attempts of the cycle failed"),
        "{}",
        stderr(&out)
    );
    let out = probe(&db, &["--allow-private", "monitor", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// Health endpoints of a long-running service, as a kubelet probes them.
#[tokio::test]
async fn healthz_and_readyz_answer_on_the_metrics_port() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    migrate(&db);
    let port = common::external::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .env_remove("DATABASE_URL")
        .args(["--database", db.to_str().unwrap()])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "validate"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let get = |path: &'static str| http_get(port, path);
    let up = eventually(std::time::Duration::from_secs(10), || async {
        get("/readyz").await.is_some_and(|(code, _)| code == 200)
    })
    .await;
    let healthz = get("/healthz").await;
    let metrics = get("/metrics").await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "/readyz became ready");
    assert_eq!(healthz, Some((200, "ok\n".to_owned())));
    let (code, text) = metrics.unwrap();
    assert_eq!(code, 200);
    assert!(text.contains("brotr_database_pool_connections"), "{text}");
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// The laptop mode as a new user runs it: relays promoted by the validator are monitored and
/// archived at once, not after the monitor's and synchronizer's 5-minute interval.
#[tokio::test]
async fn run_archives_a_newly_validated_relay_without_waiting_an_interval() {
    let (_relay, url) = peers::relay_with(&peers::recent_notes(50, vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("brotr.db");
    let seeds = dir.path().join("local.txt");
    std::fs::write(&seeds, format!("{url}\n")).unwrap();
    let cfg = dir.path().join("probe.yaml");
    std::fs::write(&cfg, "finder:\n  sources: []\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .env_remove("DATABASE_URL")
        .args(["--database", db.to_str().unwrap(), "--allow-private"])
        .args(["--config", cfg.to_str().unwrap(), "run", "--file"])
        .arg(&seeds)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first cycles of every service run at once on an empty relay table; only the wake-up
    // brings the new relay's events in before the 300 s interval.
    let archived = eventually(std::time::Duration::from_secs(60), || async {
        counts_if_ready(&db).await.is_some_and(|c| c.events == 50)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(archived, "the promoted relay was archived within a minute");
}

/// The counts, once the database exists and is migrated.
async fn counts_if_ready(db: &Path) -> Option<brotr_probe::store::Counts> {
    let url = DatabaseUrl::Sqlite(db.to_owned());
    let store = brotr_probe::store::open(&url, None).await.ok()?;
    store.counts().await.ok()
}

#[test]
fn a_connection_budget_out_of_range_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("brotr.db");
    for bad in ["0", "101", "many"] {
        let out = probe(&db, &["--db-max-connections", bad, "migrate"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = stderr(&out);
        assert!(err.contains("--db-max-connections"), "{bad}: {err}");
        assert!(!db.exists(), "{bad}: nothing created");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .env("BROTR_DB_MAX_CONNECTIONS", "0")
        .args(["--database", db.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--db-max-connections"),
        "{}",
        stderr(&out)
    );
}
