//! Synchronizer benchmark. Run with `bash e2e/bench-sync.sh` (throwaway PostgreSQL).
//!
//! The relays run in a child process (this binary with `BROTR_BENCH_ROLE=relay`), so the peak
//! RSS and CPU measured here are the synchronizer's alone. Each measurement runs in its own
//! process (`BROTR_BENCH_ROLE=sync|many`) so peak RSS is per scenario. Scenarios:
//! * one relay holding N events (N = 100,000 and 200,000) → PostgreSQL full, REQ paging: events/s,
//!   CPU s per 1,000 events, peak RSS, REQs, wire amplification; the relay's ceiling (a bare
//!   client reading the same events in one REQ without parsing or storing); re-sync cost with REQ
//!   paging; first sync and re-sync with NIP-77.
//! * 50 relays × 2,000 events at once: total time and peak RSS.
//! * the overlay path: one relay of 50,000 events archived directly and as a `.onion` through a
//!   SOCKS5 proxy that adds no delay of its own (`TCP_NODELAY` on both legs), alternating.
//! * 50 relays × 2,000 events that ignore NEG-OPEN (as most relays without NIP-77 do): the
//!   first sync with NIP-77 on (silence costs the wait) against NIP-77 off.
//! * sharded sync: 200 relays × 1,000 events archived by 1, 2 and 4 synchronizer shards, each a
//!   process of its own (`--shard i/N`'s split), all at once: events/s of the whole, CPU of
//!   each shard and of PostgreSQL, nothing archived twice.
//!
//! Env: `BROTR_BENCH_PG_URL` (admin URL, required), `BROTR_BENCH_EVENTS` (default 100000; the
//! doubled run uses twice as many).

mod common;
#[path = "../tests/common/evil.rs"]
mod evil;
#[path = "../tests/common/peers.rs"]
mod peers;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use brotr_probe::config::{LimitsConfig, NetworksConfig, SyncConfig, ValidatorConfig};
use brotr_probe::identity::Identity;
use brotr_probe::model::{Network, RelayUrl};
use brotr_probe::net::{AuthMode, Dialer, RelaySession, SessionOptions, tls_config};
use brotr_probe::services::synchronizer::{SyncReport, Synchronizer};
use brotr_probe::services::{Ctx, Service};
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

/// Child: `count` relays of `n` events each; prints their URLs (and a SOCKS5 proxy to the first
/// with `BROTR_BENCH_PROXY=1`), then lives until stdin closes. `BROTR_BENCH_NEG_SILENT=1`: relays
/// that ignore NEG-OPEN instead of rust-nostr's.
async fn relay_role() {
    let n = env_usize("BROTR_BENCH_RELAY_EVENTS", 100_000);
    let count = env_usize("BROTR_BENCH_RELAY_COUNT", 1);
    let mut relays = Vec::new();
    let mut out = std::io::stdout();
    if env_usize("BROTR_BENCH_NEG_SILENT", 0) == 1 {
        for r in 0..count {
            let url = evil::evil_relay(generate(r, n), evil::Misbehaviour::NegSilent).await;
            writeln!(out, "URL {url}").expect("stdout");
        }
    }
    for r in 0..count * usize::from(env_usize("BROTR_BENCH_NEG_SILENT", 0) != 1) {
        let db = MemoryDatabase::with_opts(MemoryDatabaseOptions {
            events: true,
            max_events: None,
        });
        for e in generate(r, n) {
            db.save_event(&e).await.expect("save");
        }
        let mut b = RelayBuilder::default()
            .database(db)
            .addr([127, 0, 0, 1].into());
        let cap = env_usize("BROTR_BENCH_RELAY_CAP", 0);
        if cap > 0 {
            b = b.max_filter_limit(cap);
        }
        let b = b.rate_limit(RateLimit {
            max_reqs: 1000,
            notes_per_minute: 60,
        });
        let relay = LocalRelay::new(b);
        relay.run().await.expect("relay");
        let url = relay.url().await;
        writeln!(out, "URL {url}").expect("stdout");
        if r == 0 && env_usize("BROTR_BENCH_PROXY", 0) == 1 {
            let backend = url
                .as_str()
                .trim_start_matches("ws://")
                .trim_end_matches('/');
            let (proxy, _) = peers::socks5_proxy(backend.parse().expect("relay addr")).await;
            writeln!(out, "PROXY {proxy}").expect("stdout");
        }
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
    proxy: Option<String>,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_relays(count: usize, n: usize) -> RelayProcess {
    spawn_relays_with(count, n, &[])
}

fn spawn_relays_with(count: usize, n: usize, env: &[(&str, &str)]) -> RelayProcess {
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .envs(env.iter().copied())
        .env("BROTR_BENCH_ROLE", "relay")
        .env("BROTR_BENCH_RELAY_EVENTS", n.to_string())
        .env("BROTR_BENCH_RELAY_COUNT", count.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn relay process");
    let stdout = child.stdout.take().expect("stdout");
    let (mut urls, mut proxy) = (Vec::new(), None);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line == "READY" {
            break;
        }
        if let Some(u) = line.strip_prefix("URL ") {
            urls.push(u.trim_end_matches('/').to_owned());
        }
        if let Some(p) = line.strip_prefix("PROXY ") {
            proxy = Some(p.to_owned());
        }
    }
    RelayProcess { child, urls, proxy }
}

async fn fresh_pg(admin: &str) -> Arc<dyn Store> {
    let url = DatabaseUrl::Postgres(common::fresh_pg(admin, "sync").await);
    store::migrate(&url, Some(brotr_probe::model::Schema::Full))
        .await
        .expect("open")
}

fn networks() -> (NetworksConfig, LimitsConfig) {
    let mut networks = NetworksConfig::default();
    networks.clearnet.timeout_secs = Some(10.0);
    networks.clearnet.max_tasks = Some(50);
    let limits = LimitsConfig {
        allow_private: true,
        ..Default::default()
    };
    (networks, limits)
}

fn synchronizer(networks: NetworksConfig, limits: LimitsConfig, cfg: SyncConfig) -> Synchronizer {
    sharded_synchronizer(networks, limits, cfg, None)
}

fn sharded_synchronizer(
    networks: NetworksConfig,
    limits: LimitsConfig,
    cfg: SyncConfig,
    shard: Option<brotr_probe::config::Shard>,
) -> Synchronizer {
    let lifecycle = ValidatorConfig::default().lifecycle();
    Synchronizer::new(
        cfg,
        networks,
        limits,
        Identity::ephemeral(),
        lifecycle,
        shard,
    )
    .expect("synchronizer")
}

fn context(negentropy: bool) -> Synchronizer {
    let (networks, limits) = networks();
    let cfg = SyncConfig {
        negentropy,
        ..Default::default()
    };
    synchronizer(networks, limits, cfg)
}

/// REQ paging with `.onion` relays reached through the SOCKS5 proxy at `proxy`.
fn overlay_context(proxy: &str) -> Synchronizer {
    let (mut networks, limits) = networks();
    networks.enable_overlay(Network::Tor, format!("socks5://{proxy}"));
    networks.tor.max_tasks = Some(50);
    networks.tor.timeout_secs = Some(10.0);
    let cfg = SyncConfig {
        negentropy: false,
        ..Default::default()
    };
    synchronizer(networks, limits, cfg)
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

/// Counts what the driver hands on, storing nothing.
struct CountIds(std::collections::HashSet<[u8; 32]>);

impl brotr_probe::sync::BatchSink for CountIds {
    async fn flush(
        &mut self,
        _key: &str,
        events: Vec<brotr_probe::model::EventRow>,
        _progress: brotr_probe::sync::Progress,
    ) -> bool {
        self.0.extend(events.iter().map(|e| e.id));
        true
    }
}

/// Our reading side alone: the sync driver's REQ paging, every event parsed and verified,
/// nothing stored.
async fn reader_alone(url: &str, n: usize) -> f64 {
    use brotr_probe::sync::driver::{SessionPages, page_window};
    use brotr_probe::sync::{DriveOptions, DriveReport, Planner, ReadLimits, Target, Window};
    let (networks, limits) = networks();
    let dialer = Dialer::new(networks, limits, tls_config(&[]));
    let relay = RelayUrl::parse_allowing_local(url).expect("url");
    let opts = SessionOptions::new(Keys::generate(), AuthMode::Eager)
        .idle(std::time::Duration::from_secs(30));
    let mut session = RelaySession::open(&dialer, &relay, opts)
        .await
        .expect("session");
    let limits = ReadLimits {
        page: std::time::Duration::from_secs(120),
        max_event_bytes: 1 << 20,
    };
    let base = Filter::new();
    let start = Instant::now();
    let window = Window {
        since: 0,
        end: NOW,
        top: NOW,
    };
    let mut planner = Planner::new(window, 500);
    let mut sink = CountIds(std::collections::HashSet::new());
    let target = Target {
        key: "bench",
        base: &base,
        done_until: None,
    };
    let drive = DriveOptions {
        batch_size: 1000,
        deadline: None,
    };
    let mut src = SessionPages {
        session: &mut session,
        limits,
    };
    let mut out = DriveReport::default();
    page_window(&mut src, target, &mut planner, drive, &mut sink, &mut out).await;
    assert_eq!(sink.0.len(), n);
    n as f64 / start.elapsed().as_secs_f64()
}

async fn timed(store: Arc<dyn Store>, sync: &Synchronizer, now: i64) -> (SyncReport, f64, f64) {
    let (cpu0, _) = usage();
    let t = Instant::now();
    let r = sync
        .run_cycle(&Ctx::new(store).at(now))
        .await
        .expect("cycle");
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
    let reader = reader_alone(&url, n).await;
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

/// One shard's process (`BROTR_BENCH_SHARD=i/N`): one cycle over the database's relays that fall
/// in its shard; prints `SHARD <events new> <seconds> <cpu seconds>`.
async fn shard_role() {
    let url = std::env::var("BROTR_BENCH_SHARD_DB").expect("BROTR_BENCH_SHARD_DB");
    let spec = std::env::var("BROTR_BENCH_SHARD").expect("BROTR_BENCH_SHARD");
    let (i, n) = spec.split_once('/').expect("i/N");
    let shard = brotr_probe::config::Shard {
        index: i.parse().expect("i"),
        count: n.parse().expect("N"),
    };
    let store = store::open(&DatabaseUrl::Postgres(url), None)
        .await
        .expect("open");
    let (networks, limits) = networks();
    let cfg = SyncConfig {
        negentropy: false,
        ..Default::default()
    };
    let sync = sharded_synchronizer(networks, limits, cfg, Some(shard));
    let (r, secs, cpu) = timed(store, &sync, NOW).await;
    println!("SHARD {} {secs:.3} {cpu:.3}", r.events_new);
}

/// CPU seconds (user + system) PostgreSQL's processes have used so far, from /proc: every live
/// `postgres` process's own, plus what the postmaster's exited children (the backends of closed
/// connections) used, which the kernel adds to its `cutime`/`cstime`. None where /proc is not
/// readable.
fn postgres_cpu() -> Option<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").ok()? {
        let path = entry.ok()?.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !comm.ends_with("(postgres") {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += (ticks(11) + ticks(12) + ticks(13) + ticks(14)) / 100.0;
    }
    Some(total)
}

/// 200 relays archived by 1, 2 and 4 shards at once, each shard a process; a fresh database each.
async fn shards_role(admin: &str) {
    let (count, per) = (
        env_usize("BROTR_BENCH_SHARD_RELAYS", 200),
        env_usize("BROTR_BENCH_SHARD_EVENTS", 1_000),
    );
    let relays = spawn_relays(count, per);
    let exe = std::env::current_exe().expect("exe");
    let mut base = None;
    for shards in [1u32, 2, 4] {
        let url = common::fresh_pg(admin, "shards").await;
        let store = store::migrate(
            &DatabaseUrl::Postgres(url.clone()),
            Some(brotr_probe::model::Schema::Full),
        )
        .await
        .expect("open");
        add(store.as_ref(), &relays.urls).await;
        let pg0 = postgres_cpu();
        let t = Instant::now();
        let children: Vec<Child> = (0..shards)
            .map(|i| {
                Command::new(&exe)
                    .env("BROTR_BENCH_ROLE", "shard")
                    .env("BROTR_BENCH_SHARD", format!("{i}/{shards}"))
                    .env("BROTR_BENCH_SHARD_DB", &url)
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn shard")
            })
            .collect();
        let mut per_shard = Vec::new();
        for c in children {
            let out = c.wait_with_output().expect("shard");
            assert!(out.status.success(), "shard failed");
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("SHARD "))
                .expect("shard figures");
            let f: Vec<f64> = line
                .split_whitespace()
                .map(|v| v.parse().expect("number"))
                .collect();
            per_shard.push((f[0] as u64, f[1], f[2]));
        }
        let secs = t.elapsed().as_secs_f64();
        let pg = match (pg0, postgres_cpu()) {
            (Some(a), Some(b)) => format!("{:.1} s", b - a),
            _ => "n/a".into(),
        };
        let stored = store.counts().await.expect("counts");
        let new: u64 = per_shard.iter().map(|s| s.0).sum();
        assert_eq!(stored.events as usize, count * per, "every event archived");
        assert_eq!(
            new as usize,
            count * per,
            "each archived once, by one shard"
        );
        let rate = new as f64 / secs;
        let speedup = base.map_or(1.0, |b| rate / b);
        base.get_or_insert(rate);
        println!(
            "sharded sync, {count} relays x {per} events, {shards} shard(s): {secs:.2} s, {rate:.0} events/s ({speedup:.2}x of 1 shard); per shard (events, s, CPU s) {:?}; PostgreSQL CPU {pg}",
            per_shard
                .iter()
                .map(|(e, s, c)| (*e, (s * 100.0).round() / 100.0, (c * 100.0).round() / 100.0))
                .collect::<Vec<_>>()
        );
    }
}

/// The same relay archived directly and as a `.onion` through the proxy, alternating (three
/// rounds each, a fresh database every time); events/s of each run.
async fn overlay_role(admin: &str) {
    let n = env_usize("BROTR_BENCH_OVERLAY_EVENTS", 50_000);
    let relays = spawn_relays_with(1, n, &[("BROTR_BENCH_PROXY", "1")]);
    let direct_url = relays.urls[0].clone();
    let proxy = relays.proxy.clone().expect("proxy");
    let onion = format!("ws://{}d.onion", "q".repeat(55));
    let (direct, overlay) = (context(false), overlay_context(&proxy));
    let mut figures = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (url, sync, out) in [
            (&direct_url, &direct, &mut figures.0),
            (&onion, &overlay, &mut figures.1),
        ] {
            let store = fresh_pg(admin).await;
            add(store.as_ref(), std::slice::from_ref(url)).await;
            let (r, secs, _) = timed(store, sync, NOW).await;
            assert_eq!(r.events_new as usize, n, "every event archived: {r:?}");
            out.push(n as f64 / secs);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, o) = (median(&mut figures.0), median(&mut figures.1));
    println!(
        "overlay N={n}: direct {d:.0} events/s, via SOCKS5 (.onion, TCP_NODELAY proxy) {o:.0} events/s \
         ({:.1}% of direct); runs direct {:?}, overlay {:?}",
        100.0 * o / d,
        figures.0.iter().map(|x| x.round()).collect::<Vec<_>>(),
        figures.1.iter().map(|x| x.round()).collect::<Vec<_>>()
    );
}

/// Relays that ignore NEG-OPEN: the first sync with NIP-77 on (no monitor verdict, so each
/// relay is asked once and its silence waited for) against NIP-77 off.
async fn neg_silent_role(admin: &str) {
    let (count, per) = (50, 2_000);
    let relays = spawn_relays_with(count, per, &[("BROTR_BENCH_NEG_SILENT", "1")]);
    for negentropy in [true, false] {
        let store = fresh_pg(admin).await;
        add(store.as_ref(), &relays.urls).await;
        let (r, secs, _) = timed(store, &context(negentropy), NOW).await;
        assert_eq!(r.events_new as usize, count * per, "{r:?}");
        assert_eq!(r.negentropy_windows, 0);
        println!(
            "{count} relays ignoring NEG-OPEN x {per} events, NIP-77 {}: {secs:.2} s, {} requests",
            if negentropy { "on " } else { "off" },
            r.wire.requests
        );
    }
}

/// nostr-sdk's relay client against ours on the same relay: one REQ for everything (reading
/// speed), and the same against a relay capping answers at 500 (completeness: the SDK returns
/// what one answer holds, our planner pages to the end).
async fn sdk_role() {
    use nostr_sdk::Client;
    let n = env_usize("BROTR_BENCH_SDK_EVENTS", 50_000);
    let timeout = std::time::Duration::from_secs(120);
    for cap in [0usize, 500] {
        let relays = spawn_relays_with(1, n, &[("BROTR_BENCH_RELAY_CAP", &cap.to_string())]);
        let url = relays.urls[0].clone();
        let client = Client::default();
        client.add_relay(url.as_str()).await.expect("add relay");
        client.connect().await;
        let t = Instant::now();
        let got = client
            .fetch_events(Filter::new().limit(n), timeout)
            .await
            .expect("fetch");
        let sdk = (got.len(), got.len() as f64 / t.elapsed().as_secs_f64());
        client.disconnect().await;
        let ours = if cap == 0 {
            // One REQ, read and verified by our session and reader.
            let (networks, limits) = networks();
            let dialer = Dialer::new(networks, limits, tls_config(&[]));
            let relay = RelayUrl::parse_allowing_local(&url).expect("url");
            let opts = SessionOptions::new(Keys::generate(), AuthMode::Eager);
            let mut s = RelaySession::open(&dialer, &relay, opts)
                .await
                .expect("session");
            let limits = brotr_probe::sync::ReadLimits {
                page: timeout,
                max_event_bytes: 1 << 20,
            };
            let t = Instant::now();
            let page =
                brotr_probe::sync::reader::fetch(&mut s, &Filter::new(), (0, NOW), n, limits)
                    .await
                    .expect("page");
            (
                page.events.len(),
                page.events.len() as f64 / t.elapsed().as_secs_f64(),
            )
        } else {
            let t = Instant::now();
            let rate = reader_alone(&url, n).await;
            let _ = t;
            (n, rate)
        };
        println!(
            "sdk comparison, relay cap {}: nostr-sdk fetch_events {} of {n} events ({:.0}/s); brotr {} of {n} ({:.0}/s{})",
            if cap == 0 {
                "none".to_owned()
            } else {
                cap.to_string()
            },
            sdk.0,
            sdk.1,
            ours.0,
            ours.1,
            if cap == 0 { ", one REQ" } else { ", paged" }
        );
    }
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
        "overlay" => overlay_role(&admin).await,
        "neg-silent" => neg_silent_role(&admin).await,
        "sdk" => sdk_role().await,
        "shard" => shard_role().await,
        "shards" => shards_role(&admin).await,
        _ => {
            let n = env_usize("BROTR_BENCH_EVENTS", 100_000);
            run_child("sync", n);
            run_child("sync", 2 * n);
            run_child("many", 0);
            run_child("overlay", 0);
            run_child("neg-silent", 0);
            run_child("sdk", 0);
            run_child("shards", 0);
        }
    }
}
