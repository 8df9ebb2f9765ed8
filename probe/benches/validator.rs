//! Validator benchmark: 1,000 candidates on loopback — 500 real relays (rust-nostr, in process)
//! and 500 decoys (plain HTTP, echo WebSocket, TLS to a plain port, closed port) — validated in
//! one cycle at the default concurrency. Prints time per cycle, decoys accepted and memory.
//!
//! `cargo bench -p brotr-probe --bench validator`

use std::time::Instant;

use brotr_probe::config::{LimitsConfig, NetworksConfig};
use brotr_probe::model::{Candidate, RelayUrl, Schema};
use brotr_probe::services::validator::{Validator, ValidatorConfig};
use brotr_probe::services::{Ctx, Service};
use brotr_probe::store::{self, DatabaseUrl};
use nostr_relay_builder::prelude::*;

// The same decoys the tests use.
#[path = "../tests/common/peers.rs"]
mod peers;
use tokio::net::TcpListener;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let n_real = 500;
    let mut relays = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n_real {
        let r = LocalRelay::new(RelayBuilder::default().addr([127, 0, 0, 1].into()));
        r.run().await.expect("relay");
        urls.push(r.url().await.to_string().trim_end_matches('/').to_owned());
        relays.push(r);
    }
    let (http, echo) = (peers::http_server().await, peers::echo_ws().await);
    let mut decoys = Vec::new();
    for i in 0..125 {
        decoys.push(format!("ws://{http}/d{i}"));
        decoys.push(format!("wss://{http}/t{i}"));
        decoys.push(format!("ws://{echo}/e{i}"));
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        decoys.push(format!("ws://{closed}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store::migrate(
        &DatabaseUrl::Sqlite(dir.path().join("v.db")),
        Some(Schema::Full),
    )
    .await
    .expect("store");
    let cands: Vec<Candidate> = urls
        .iter()
        .chain(&decoys)
        .map(|u| Candidate::new(RelayUrl::parse_allowing_local(u).expect("url"), 0))
        .collect();
    store.insert_candidates(&cands).await.expect("candidates");
    let cfg = ValidatorConfig {
        chunk_size: 1000,
        ..Default::default()
    };
    let limits = LimitsConfig {
        allow_private: true,
        ..Default::default()
    };
    let validator = Validator::new(cfg, NetworksConfig::default(), limits);
    let hwm_before = vm_hwm_kib();
    let start = Instant::now();
    let report = validator
        .run_cycle(&Ctx::new(store.clone()).at(1))
        .await
        .expect("cycle");
    let secs = start.elapsed().as_secs_f64();
    let promoted: Vec<String> = store
        .relays()
        .await
        .expect("relays")
        .into_iter()
        .map(|r| r.url.to_string())
        .collect();
    let decoys_accepted = promoted
        .iter()
        .filter(|u| {
            decoys.iter().any(|d| {
                RelayUrl::parse_allowing_local(d).map(|x| x.to_string()) == Ok((*u).clone())
            })
        })
        .count();
    println!(
        "validator: {} candidates ({} real relays, {} decoys), default concurrency (clearnet 30, chunk 1000)",
        cands.len(),
        n_real,
        decoys.len()
    );
    println!(
        "cycle time: {secs:.2} s; promoted {} (real relays missed: {}); decoys accepted: {decoys_accepted}",
        report.promoted,
        n_real as u64 - (report.promoted - decoys_accepted as u64)
    );
    println!(
        "process peak RSS (VmHWM): {} KiB before the cycle, {} KiB after (includes the {} in-process relays)",
        hwm_before,
        vm_hwm_kib(),
        n_real
    );
}
