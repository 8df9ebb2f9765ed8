//! Monitor benchmark: one cycle over 1,100 loopback relays — 700 healthy (rust-nostr
//! `LocalRelay` behind a NIP-11 front), 200 slow (every answer delayed 250 ms, NIP-11 included),
//! 100 dead (closed ports), 100 that ignore NEG-OPEN as most relays without NIP-77 do
//! (`BROTR_BENCH_NEG_SILENT`, default 100; 0 leaves them out) — at the default concurrency and
//! the default per-check timeouts and retries, stored in SQLite. The relays run in a child process (this binary with `--peers`) so the figures are the
//! monitor's own. Prints wall time against the ideal (relays × mean per-relay check time ÷
//! concurrency), peak RSS and CPU time.
//!
//! `cargo bench -p brotr-probe --bench monitor`

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brotr_probe::config::{LimitsConfig, MonitorConfig, NetworksConfig, ValidatorConfig};
use brotr_probe::identity::Identity;
use brotr_probe::model::{Network, RelayUrl, Schema};
use brotr_probe::services::monitor::Monitor;
use brotr_probe::services::{Ctx, Service};
use brotr_probe::store::{self, DatabaseUrl, RelayRow};
use futures_util::{SinkExt, StreamExt};
use nostr_relay_builder::prelude::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

// The tests' NIP-11 front (HTTP answers NIP-11, WebSocket upgrades go to the relay).
#[path = "../tests/common/monitor_peers.rs"]
mod monitor_peers;
// The tests' scripted relay, here in its NEG-OPEN-ignoring mode.
#[path = "../tests/common/evil.rs"]
mod evil;

/// Relays that ignore NEG-OPEN.
fn neg_silent() -> usize {
    std::env::var("BROTR_BENCH_NEG_SILENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

const HEALTHY: usize = 700;
const SLOW: usize = 200;
const DEAD: usize = 100;
const DELAY: Duration = Duration::from_millis(250);

fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// User + system CPU seconds of this process.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A relay that answers every message (and NIP-11 requests) after `DELAY`.
async fn slow_relay() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.peek(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                if !head.contains("upgrade: websocket") {
                    tokio::time::sleep(DELAY).await;
                    let mut s = s;
                    let body = r#"{"name":"slow","supported_nips":[1,11]}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/nostr+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    return;
                }
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(Message::Text(t))) = ws.next().await {
                    let Ok(Value::Array(m)) = serde_json::from_str::<Value>(&t) else {
                        continue;
                    };
                    let sub = m.get(1).cloned().unwrap_or(Value::Null);
                    let reply = match m.first().and_then(Value::as_str) {
                        Some("REQ") => json!(["EOSE", sub]),
                        Some("EVENT") => json!([
                            "OK",
                            sub.get("id").cloned().unwrap_or(Value::Null),
                            true,
                            ""
                        ]),
                        Some("NEG-OPEN") => json!(["NEG-MSG", sub, "6100000200"]),
                        _ => continue,
                    };
                    tokio::time::sleep(DELAY).await;
                    if ws.send(Message::text(reply.to_string())).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Child: start the peers, print their URLs, run until stdin closes.
async fn peers() {
    let mut keep = Vec::new();
    let mut out = std::io::stdout().lock();
    for _ in 0..HEALTHY {
        let r = LocalRelay::new(RelayBuilder::default().addr([127, 0, 0, 1].into()));
        r.run().await.expect("relay");
        let url = r.url().await.to_string();
        let backend: SocketAddr = url
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .parse()
            .expect("addr");
        let doc = json!({"name": "healthy", "supported_nips": [1, 11, 42, 77]});
        let answer = monitor_peers::HttpAnswer::json(doc);
        let front = monitor_peers::nip11_front(answer, backend).await;
        writeln!(out, "healthy ws://{front}").unwrap();
        keep.push(r);
    }
    for _ in 0..SLOW {
        writeln!(out, "slow ws://{}", slow_relay().await).unwrap();
    }
    for _ in 0..neg_silent() {
        let url = evil::evil_relay(Vec::new(), evil::Misbehaviour::NegSilent).await;
        let backend: SocketAddr = url.trim_start_matches("ws://").parse().expect("addr");
        let doc = json!({"name": "no negentropy", "supported_nips": [1, 11]});
        let answer = monitor_peers::HttpAnswer::json(doc);
        let front = monitor_peers::nip11_front(answer, backend).await;
        writeln!(out, "silent-neg ws://{front}").unwrap();
    }
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    drop(out);
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await
    .ok();
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--peers") {
        return peers().await;
    }
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .arg("--peers")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn peers");
    let mut classes: Vec<(&'static str, String)> = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("line");
        if line == "ready" {
            break;
        }
        let (class, url) = line.split_once(' ').expect("class url");
        let class = match class {
            "healthy" => "healthy",
            "silent-neg" => "silent-neg",
            _ => "slow",
        };
        classes.push((class, url.to_owned()));
    }
    // Bind all before closing any, so no two dead relays share a port.
    let mut closed = Vec::new();
    for _ in 0..DEAD {
        closed.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    for l in closed {
        classes.push(("dead", format!("ws://{}", l.local_addr().expect("addr"))));
    }

    let limits = LimitsConfig {
        allow_private: true,
        ..Default::default()
    };
    let networks = NetworksConfig::default();
    let concurrency = networks.get(Network::Clearnet).max_tasks;
    // GeoIP files are not on a loopback run's path; their lookups are memory reads anyway.
    let monitor = Monitor::new(
        MonitorConfig::default(),
        networks,
        limits,
        Identity::ephemeral(),
        ValidatorConfig::default().lifecycle(),
    )
    .expect("monitor");
    let prober = monitor.prober();

    // Per-relay check time, one relay at a time, on a sample of each class.
    let mut mean = std::collections::HashMap::new();
    let sampled: &[&str] = if neg_silent() > 0 {
        &["healthy", "slow", "dead", "silent-neg"]
    } else {
        &["healthy", "slow", "dead"]
    };
    for &class in sampled {
        let sample: Vec<&String> = classes
            .iter()
            .filter(|(c, _)| *c == class)
            .map(|(_, u)| u)
            .take(10)
            .collect();
        let start = Instant::now();
        for (i, u) in sample.iter().enumerate() {
            let r = prober
                .check_relay(&RelayUrl::parse_allowing_local(u).unwrap(), 0)
                .await;
            if i == 0 {
                // What one relay of the class looks like (failed checks with their reasons).
                let failed: Vec<String> = serde_json::to_value(&r)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, c)| c.get("success") == Some(&Value::Bool(false)))
                    .map(|(k, c)| format!("{k} ({} attempts): {}", c["attempts"], c["reason"]))
                    .collect();
                println!("  sample {class}: failed checks {failed:?}");
            }
        }
        mean.insert(class, start.elapsed().as_secs_f64() / sample.len() as f64);
    }
    let work: f64 = classes.iter().map(|(c, _)| mean[c]).sum();
    let ideal = work / concurrency as f64;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = store::migrate(
        &DatabaseUrl::Sqlite(dir.path().join("m.db")),
        Some(Schema::Full),
    )
    .await
    .expect("store");
    let relays: Vec<RelayRow> = classes
        .iter()
        .map(|(_, u)| RelayRow {
            url: RelayUrl::parse_allowing_local(u).unwrap(),
            discovered_at: 1,
        })
        .collect();
    let inserted = store.insert_relays(&relays).await.expect("relays");
    let distinct: std::collections::HashSet<&str> = relays.iter().map(|r| r.url.as_str()).collect();
    println!(
        "  relays inserted {inserted} ({} distinct URLs of {})",
        distinct.len(),
        relays.len()
    );
    let rss_before = proc_status("VmRSS:");
    let cpu_before = cpu_secs();
    let start = Instant::now();
    let report = monitor
        .run_cycle(&Ctx::new(store.clone()).at(2_000_000_000))
        .await
        .expect("cycle");
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    let counts = store.counts().await.expect("counts");
    drop(child.stdin.take());
    let _ = child.wait();

    println!(
        "monitor cycle over {} relays ({HEALTHY} healthy, {SLOW} slow, {DEAD} dead, {} ignoring NEG-OPEN), concurrency {concurrency}",
        classes.len(),
        neg_silent()
    );
    println!(
        "  per-relay check time (sequential sample of 10): healthy {:.3} s, slow {:.3} s, dead {:.3} s{}",
        mean["healthy"],
        mean["slow"],
        mean["dead"],
        mean.get("silent-neg")
            .map(|m| format!(", ignoring NEG-OPEN {m:.3} s"))
            .unwrap_or_default()
    );
    println!(
        "  ideal {ideal:.2} s, wall {wall:.2} s, parallel efficiency {:.0}%",
        100.0 * ideal / wall
    );
    println!(
        "  checked {}, reachable {}, rows {}, metadata documents {}",
        report.checked, report.reachable, report.rows, counts.metadata
    );
    println!(
        "  peak RSS (VmHWM) {} MiB (RSS {} MiB before the cycle); CPU {cpu:.2} s ({:.1} ms per relay)",
        proc_status("VmHWM:") / 1024,
        rss_before / 1024,
        1000.0 * cpu / classes.len() as f64
    );
}
