//! PostgreSQL restarted in the middle of a sync: no event lost or duplicated, and the
//! synchronizer recovers by itself on its next cycles. A test binary of its own, because it
//! restarts the shared test server (cargo runs test binaries one at a time).

mod common;

use std::time::Duration;

use brotr_probe::config::SyncConfig;
use brotr_probe::model::{RelayUrl, Schema};
use brotr_probe::services::Service;
use brotr_probe::services::synchronizer::{CURSOR_STATE, SERVICE};
use brotr_probe::store::RelayRow;
use brotr_probe::sync::Progress;
use common::peers::nostr_relay;
use common::*;
use nostr_relay_builder::prelude::*;

const NOW: i64 = 1_800_000_000;

#[tokio::test]
#[ignore = "needs a PostgreSQL server it may restart: BROTR_TEST_PG_URL, PG_BIN, PG_DIR (e2e/pg.sh)"]
async fn postgres_restarting_mid_sync_loses_and_duplicates_nothing() {
    let db = fresh_pg_url().await;
    let (Ok(bin), Ok(dir)) = (std::env::var("PG_BIN"), std::env::var("PG_DIR")) else {
        panic!("PG_BIN/PG_DIR (from e2e/pg.sh) are needed to restart the server");
    };
    let n = 20_000usize;
    let keys = Keys::generate();
    let mem = MemoryDatabase::with_opts(MemoryDatabaseOptions {
        events: true,
        max_events: None,
    });
    for i in 0..n {
        let e = EventBuilder::text_note(format!("restart {i}"))
            .custom_created_at(Timestamp::from((NOW - (i as i64 * 13) % 500_000) as u64))
            .sign_with_keys(&keys)
            .unwrap();
        mem.save_event(&e).await.unwrap();
    }
    let (_relay, url) = nostr_relay(RelayBuilder::default().database(mem)).await;
    let store = open(&db, Schema::Full).await;
    store
        .insert_relays(&[RelayRow {
            url: RelayUrl::parse_allowing_local(&url).unwrap(),
            discovered_at: NOW,
        }])
        .await
        .unwrap();
    let sync = synchronizer(SyncConfig {
        negentropy: false,
        limit: 200,
        batch_size: 500,
        ..Default::default()
    });

    // Restart the server once a few batches are in.
    let watcher = {
        let store = store.clone();
        tokio::spawn(async move {
            while store.counts().await.map(|c| c.events).unwrap_or(0) < 2_000 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // `-l`: the restarted server must not inherit (and hold open) our pipes.
            let status = tokio::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{bin}/pg_ctl"))
                .args(["-D", &format!("{dir}/data"), "-l", &format!("{dir}/log")])
                .args(["-m", "immediate", "restart", "-w"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .expect("pg_ctl");
            assert!(status.success(), "pg_ctl restart: {status:?}");
        })
    };

    // The service loop: cycles until one succeeds completely.
    let mut failures = 0;
    for _ in 0..20 {
        match sync.run_cycle(&ctx(&store, NOW)).await {
            Ok(r) if r.relays_failed == 0 => break,
            Ok(r) => panic!("relay failed: {r:?}"),
            Err(e) => {
                failures += 1;
                eprintln!("cycle failed as expected while the server restarts: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    watcher.await.unwrap();
    assert!(failures >= 1, "the restart happened during the sync");
    let c = store.counts().await.unwrap();
    assert_eq!((c.events, c.event_relays), (n as u64, n as u64));
    let rows = store
        .state_get(SERVICE, CURSOR_STATE, Some(&url))
        .await
        .unwrap();
    let p: Progress = serde_json::from_value(rows[0].1.clone()).unwrap();
    assert_eq!((p.done_until, p.pending), (Some(NOW), None));
}
