//! Synchronizer benchmark (issue 4). Run with `bash e2e/bench-sync.sh` (throwaway PostgreSQL).
//!
//! The relays run in a child process (this binary with `BROTR_BENCH_ROLE=relay`), so the peak
//! RSS and CPU measured here are the synchronizer's alone. Each measurement runs in its own
//! process (`BROTR_BENCH_ROLE=sync|many`) so peak RSS is per scenario. Scenarios:
//! * one relay holding N events (N = 100,000 and 200,000) → PostgreSQL full, REQ paging: events/s,
//!   CPU s per 1,000 events, peak RSS, REQs, wire amplification; the relay's ceiling (a bare
//!   client reading the same events in one REQ without parsing or storing); re-sync cost with REQ
//!   paging; first sync and re-sync with NIP-77.
//! * 50 relays × 2,000 events at once: total time and peak RSS.
//!
//! Env: `BROTR_BENCH_PG_URL` (admin URL, required), `BROTR_BENCH_EVENTS` (default 100000; the
//! doubled run uses twice as many).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use brotr_probe::config::{LimitsConfig, NetworksConfig, Shard, SyncConfig};
use brotr_probe::model::RelayUrl;
use brotr_probe::net::Dialer;
use brotr_probe::net::dial::tls_config;
use brotr_probe::services::synchronizer::{CycleReport, SyncContext, run_cycle};
use brotr_probe::services::validator::ValidatorConfig;
use brotr_probe::store::{self, DatabaseUrl, RelayRow, Store};
use futures_util::{SinkExt, StreamExt};
use nostr_relay_builder::prelude::*;

const NOW: i64 = 1_800_000_000;
/// Events are spread over the 30 days before `NOW`.
const SPREAD: i64 = 30 * 86_400;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (user + system CPU seconds, peak RSS KiB) of this process.
fn usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; 100 Hz ticks.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, hwm)
}

/// Realistic notes: 50–600 bytes of content, a few tags, many authors.
fn generate(relay: usize, n: usize) -> Vec<Event> {
    let threads = 2;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let keys: Vec<Keys> = (0..50).map(|_| Keys::generate()).collect();
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let x = (i as i64).wrapping_mul(2_654_435_761) % SPREAD;
                            let len = 50 + (i * 37) % 550;
                            let content: String = format!("relay {relay} note {i} ")
                                .chars()
                                .chain(std::iter::repeat('n'))
                                .take(len)
                                .collect();
                            EventBuilder::text_note(content)
                                .tag(Tag::parse(["t", "bench"]).expect("tag"))
                                .tag(Tag::public_key(keys[(i + 1) % keys.len()].public_key()))
                                .custom_created_at(Timestamp::from((NOW - x) as u64))
                                .sign_with_keys(&keys[i % keys.len()])
                                .expect("sign")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signer"))
            .collect()
    })
}

/// Child: `count` relays of `n` events each; prints their URLs, then lives until stdin closes.
async fn relay_role() {
    let n = env_usize("BROTR_BENCH_RELAY_EVENTS", 100_000);
    let count = env_usize("BROTR_BENCH_RELAY_COUNT", 1);
    let mut relays = Vec::new();
    let mut out = std::io::stdout();
    for r in 0..count {
        let db = MemoryDatabase::with_opts(MemoryDatabaseOptions {
            events: true,
            max_events: None,
        });
        for e in generate(r, n) {
            db.save_event(&e).await.expect("save");
        }
        let b = RelayBuilder::default()
            .database(db)
            .addr([127, 0, 0, 1].into())
            .rate_limit(RateLimit {
                max_reqs: 1000,
                notes_per_minute: 60,
            });
        let relay = LocalRelay::new(b);
        relay.run().await.expect("relay");
        writeln!(out, "URL {}", relay.url().await).expect("stdout");
        relays.push(relay);
    }
    writeln!(out, "READY").expect("stdout");
    out.flush().expect("flush");
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

struct RelayProcess {
    child: Child,
    urls: Vec<String>,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_relays(count: usize, n: usize) -> RelayProcess {
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .env("BROTR_BENCH_ROLE", "relay")
        .env("BROTR_BENCH_RELAY_EVENTS", n.to_string())
        .env("BROTR_BENCH_RELAY_COUNT", count.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn relay process");
    let stdout = child.stdout.take().expect("stdout");
    let mut urls = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line == "READY" {
            break;
        }
        if let Some(u) = line.strip_prefix("URL ") {
            urls.push(u.trim_end_matches('/').to_owned());
        }
    }
    RelayProcess { child, urls }
}

async fn fresh_pg(admin: &str) -> Arc<dyn Store> {
    let url = DatabaseUrl::Postgres(common::fresh_pg(admin, "sync").await);
    store::open(&url, Some(brotr_probe::model::Schema::Full))
        .await
        .expect("open")
}

fn context(negentropy: bool) -> SyncContext {
    let mut networks = NetworksConfig::default();
    networks.clearnet.timeout_secs = 10.0;
    networks.clearnet.max_tasks = 50;
    SyncContext {
        dialer: Dialer::new(
            networks,
            LimitsConfig {
                allow_private: true,
                ..Default::default()
            },
            tls_config(&[]),
        ),
        keys: Keys::generate(),
        cfg: SyncConfig {
            negentropy,
            ..Default::default()
        },
        shard: Shard::ALL,
        lifecycle: ValidatorConfig::default().lifecycle(),
        allow_local: true,
    }
}

async fn add(store: &dyn Store, urls: &[String]) {
    let relays: Vec<RelayRow> = urls
        .iter()
        .map(|u| RelayRow {
            url: RelayUrl::parse_allowing_local(u).expect("url"),
            discovered_at: NOW,
        })
        .collect();
    store.insert_relays(&relays).await.expect("relays");
}

/// The relay's ceiling: one REQ for everything, frames counted, nothing parsed or stored.
async fn ceiling(url: &str, n: usize) -> f64 {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("connect");
    let start = Instant::now();
    ws.send(tokio_tungstenite::tungstenite::Message::text(format!(
        r#"["REQ","ceiling",{{"limit":{n}}}]"#
    )))
    .await
    .expect("send");
    let mut events = 0usize;
    while let Some(Ok(m)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            if t.starts_with("[\"EVENT\"") {
                events += 1;
            } else if t.starts_with("[\"EOSE\"") {
                break;
            }
        }
    }
    assert_eq!(events, n, "the ceiling client read everything");
    events as f64 / start.elapsed().as_secs_f64()
}

/// The relay's paging ceiling: the same descending REQ pages as the synchronizer, read by a
/// bare client that only extracts `created_at` (no verification, nothing stored). Nagle is off,
/// as in the probe's dialer: small REQs must not wait for delayed ACKs.
async fn paging_ceiling(url: &str, n: usize) -> f64 {
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("connect");
    let start = Instant::now();
    let (mut top, mut total, mut sub) = (NOW, 0usize, 0u64);
    loop {
        sub += 1;
        ws.send(Message::text(format!(
            r#"["REQ","p{sub}",{{"since":0,"until":{top},"limit":500}}]"#
        )))
        .await
        .expect("send");
        let (mut count, mut oldest) = (0usize, i64::MAX);
        while let Some(Ok(m)) = ws.next().await {
            let Message::Text(t) = m else { continue };
            if t.starts_with("[\"EOSE\"") {
                break;
            }
            if let Some(i) = t.find("\"created_at\":") {
                let digits: String = t[i + 13..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                oldest = oldest.min(digits.parse().unwrap_or(i64::MAX));
                count += 1;
            }
        }
        let _ = ws
            .send(Message::text(format!(r#"["CLOSE","p{sub}"]"#)))
            .await;
        total += count;
        if count < 500 {
            break;
        }
        top = oldest;
    }
    assert!(total >= n, "read {total}");
    n as f64 / start.elapsed().as_secs_f64()
}

/// Our reading side alone: the same REQ paging, every event parsed and verified, nothing stored.
async fn reader_alone(ctx: &SyncContext, url: &str, n: usize) -> f64 {
    use brotr_probe::sync::{Planner, Session, SessionLimits, Step, Window};
    let relay = RelayUrl::parse_allowing_local(url).expect("url");
    let limits = SessionLimits {
        idle: std::time::Duration::from_secs(30),
        page: std::time::Duration::from_secs(120),
        max_event_bytes: 1 << 20,
    };
    let mut s = Session::open(&ctx.dialer, &relay, Keys::generate(), limits)
        .await
        .expect("session");
    let base = Filter::new();
    let start = Instant::now();
    let mut p = Planner::new(
        Window {
            since: 0,
            end: NOW,
            top: NOW,
        },
        500,
    );
    let mut ids = std::collections::HashSet::new();
    let mut last = 0;
    loop {
        match p.next() {
            Step::Done => break,
            Step::Fetch {
                since,
                until,
                limit,
            } => {
                let page = s.fetch(&base, since, until, limit).await.expect("page");
                last = page.summary.received;
                ids.extend(page.events.iter().map(|e| e.id));
                p.on_page(&page.summary).expect("paging");
            }
            Step::Probe { since, until } => {
                let page = s.fetch(&base, since, until, 1).await.expect("probe");
                p.on_probe(!page.events.is_empty(), last);
            }
        }
    }
    assert_eq!(ids.len(), n);
    n as f64 / start.elapsed().as_secs_f64()
}

async fn timed(store: Arc<dyn Store>, ctx: &SyncContext, now: i64) -> (CycleReport, f64, f64) {
    let (cpu0, _) = usage();
    let t = Instant::now();
    let r = run_cycle(store, ctx, now).await.expect("cycle");
    let secs = t.elapsed().as_secs_f64();
    let (cpu1, _) = usage();
    (r, secs, cpu1 - cpu0)
}

async fn sync_role(admin: &str) {
    let n = env_usize("BROTR_BENCH_EVENTS", 100_000);
    let relay = spawn_relays(1, n);
    let url = relay.urls[0].clone();
    let ceiling = ceiling(&url, n).await;
    let paging = paging_ceiling(&url, n).await;
    println!(
        "sync N={n}: relay paging ceiling (same REQ pages, bare client): {paging:.0} events/s"
    );
    let reader = reader_alone(&context(false), &url, n).await;
    println!(
        "sync N={n}: our reader alone (REQ paging, parse + verify, no store): {reader:.0} events/s"
    );

    // REQ paging into PostgreSQL full.
    let store = fresh_pg(admin).await;
    add(store.as_ref(), std::slice::from_ref(&url)).await;
    let paging = context(false);
    let (r, secs, cpu) = timed(store.clone(), &paging, NOW).await;
    assert_eq!(r.events_new as usize, n, "every event archived: {r:?}");
    let (_, rss) = usage();
    println!(
        "sync N={n}: REQ paging {:.0} events/s ({secs:.2} s), relay ceiling {ceiling:.0} events/s, \
         CPU {:.3} s per 1,000 events, peak RSS {} KiB, {} REQs, amplification {:.4} received per stored, {} bytes in",
        n as f64 / secs,
        cpu * 1000.0 / n as f64,
        rss,
        r.wire.requests,
        r.wire.events_received as f64 / r.events_new as f64,
        r.wire.bytes_in,
    );
    let (again, secs2, _) = timed(store.clone(), &paging, NOW + 60).await;
    println!(
        "sync N={n}: REQ paging re-sync of the unchanged relay (1 h look-back): {} REQs, {} events re-read, {} bytes in, {secs2:.3} s",
        again.wire.requests, again.wire.events_received, again.wire.bytes_in
    );

    // NIP-77 into a second database.
    let store = fresh_pg(admin).await;
    add(store.as_ref(), std::slice::from_ref(&url)).await;
    let neg = context(true);
    let (first, secs, cpu) = timed(store.clone(), &neg, NOW).await;
    assert_eq!(
        first.events_new as usize, n,
        "negentropy archived everything: {first:?}"
    );
    let (again, secs2, _) = timed(store.clone(), &neg, NOW + 60).await;
    println!(
        "sync N={n}: NIP-77 first sync {:.0} events/s ({secs:.2} s, CPU {:.3} s per 1,000), {} REQs, {} bytes in; \
         re-sync {} requests, {} bytes in ({:.3}% of the first), {secs2:.3} s",
        n as f64 / secs,
        cpu * 1000.0 / n as f64,
        first.wire.requests,
        first.wire.bytes_in,
        again.wire.requests,
        again.wire.bytes_in,
        100.0 * again.wire.bytes_in as f64 / first.wire.bytes_in as f64
    );
    let (_, rss) = usage();
    println!("sync N={n}: process peak RSS over all of the above {rss} KiB");
}

async fn many_role(admin: &str) {
    let (relays, per) = (50, 2_000);
    let procs = spawn_relays(relays, per);
    let store = fresh_pg(admin).await;
    add(store.as_ref(), &procs.urls).await;
    let (r, secs, cpu) = timed(store, &context(false), NOW).await;
    assert_eq!(r.events_new as usize, relays * per, "{r:?}");
    let (_, rss) = usage();
    println!(
        "{relays} relays x {per} events, REQ paging, concurrently: {secs:.2} s ({:.0} events/s), CPU {cpu:.2} s, peak RSS {rss} KiB, {} REQs",
        (relays * per) as f64 / secs,
        r.wire.requests
    );
}

fn run_child(role: &str, events: usize) {
    let exe = std::env::current_exe().expect("exe");
    let status = Command::new(exe)
        .env("BROTR_BENCH_ROLE", role)
        .env("BROTR_BENCH_EVENTS", events.to_string())
        .status()
        .expect("spawn");
    assert!(status.success(), "{role} {events} failed");
}

#[tokio::main]
async fn main() {
    let role = std::env::var("BROTR_BENCH_ROLE").unwrap_or_default();
    if role == "relay" {
        return relay_role().await;
    }
    let Ok(admin) = std::env::var("BROTR_BENCH_PG_URL") else {
        eprintln!("BROTR_BENCH_PG_URL is not set; run `bash e2e/bench-sync.sh`");
        return;
    };
    match role.as_str() {
        "sync" => sync_role(&admin).await,
        "many" => many_role(&admin).await,
        _ => {
            let n = env_usize("BROTR_BENCH_EVENTS", 100_000);
            run_child("sync", n);
            run_child("sync", 2 * n);
            run_child("many", 0);
        }
    }
}
