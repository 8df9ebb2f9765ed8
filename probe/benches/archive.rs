//! The archive's read side at scale: `BROTR_BENCH_EVENTS` (default 1,000,000) synthetic, validly
//! signed events of realistic shape (authors with Zipf-distributed activity, kinds 1, 7, 6, 3, 0,
//! 10002 and 30023, `e` and `p` tags) loaded into PostgreSQL (full schema) through the normal
//! ingest path, then read through `brotr-probe api` running as its own process:
//!
//! - ingest rate over the first and the last 100,000 events, bytes per event and per index;
//! - REQ latency (REQ to EOSE, limit 500) by shape, with 1 and with `BROTR_BENCH_CLIENTS` (100)
//!   concurrent clients: p50, p95, p99;
//! - with `BROTR_NOSTR_RS_RELAY` set (and at most 1,000,000 events), the same queries against
//!   nostr-rs-relay holding the same events, in the same run;
//! - HTTP keyset paging at page 1 and at page 10,000, and what OFFSET costs at that depth;
//! - NIP-77: a client missing 1% of a window reconciles against the api: seconds and bytes;
//! - the api's RSS with 1,000 open subscriptions.
//!
//! Figures only, no assertions on time. `bash e2e/bench-archive.sh` runs it on a throwaway
//! PostgreSQL; the test command runs it at 100,000 events as a smoke (`BROTR_BENCH_SMOKE=1`:
//! fewer requests per shape). Env: `BROTR_BENCH_PG_URL` (admin URL, required).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brotr_probe::model::{EventRow, RelayUrl, Schema};
use brotr_probe::nips::nip77::Reconciliation;
use brotr_probe::store::{self, BATCH_SIZE, PgStore, RelayRow, Store};
use futures_util::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Tag, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const NOW: i64 = 1_790_000_000;
const CHUNK: usize = 20_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// What the queries pick their parameters from, sampled while the events are made.
#[derive(Default)]
struct Samples {
    ids: Vec<String>,
    heavy_authors: Vec<String>,
    authors: Vec<String>,
    p_tags: Vec<String>,
    e_tags: Vec<String>,
    /// (created_at, id) of every event, for NIP-77.
    items: Vec<(i64, [u8; 32])>,
}

/// One chunk of events, signed on every core. Deterministic per (seed, chunk).
fn make_chunk(keys: &[Keys], start: usize, n: usize, total: usize, seed: u64) -> Vec<Event> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed ^ ((start + t * per) as u64) << 8);
                    let lo = start + t * per;
                    let hi = (lo + per).min(start + n);
                    (lo..hi)
                        .map(|i| one_event(keys, i, total, &mut rng))
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

fn zipf(rng: &mut StdRng, n: usize) -> usize {
    let u: f64 = rng.random();
    (((n as f64 + 1.0).powf(u)) as usize)
        .saturating_sub(1)
        .min(n - 1)
}

fn one_event(keys: &[Keys], i: usize, total: usize, rng: &mut StdRng) -> Event {
    let author = &keys[zipf(rng, keys.len())];
    // A year of history, oldest first, a few events per second at the end.
    let created_at = NOW - 365 * 86_400 + (i as i64 * 365 * 86_400) / total as i64;
    fn other(rng: &mut StdRng) -> String {
        hex::encode(rng.random::<[u8; 32]>())
    }
    let (kind, content, tags): (u16, String, Vec<Vec<String>>) = match rng.random_range(0..100) {
        0..=54 => {
            let mut tags = Vec::new();
            if rng.random_range(0..3) == 0 {
                tags.push(vec!["e".into(), other(rng)]);
                tags.push(vec![
                    "p".into(),
                    keys[zipf(rng, keys.len())].public_key().to_hex(),
                ]);
            }
            let words = rng.random_range(5..60);
            (1, "gm nostr ".repeat(words), tags)
        }
        55..=74 => (
            7,
            "+".into(),
            vec![
                vec!["e".into(), other(rng)],
                vec![
                    "p".into(),
                    keys[zipf(rng, keys.len())].public_key().to_hex(),
                ],
            ],
        ),
        75..=82 => (
            6,
            String::new(),
            vec![
                vec!["e".into(), other(rng)],
                vec![
                    "p".into(),
                    keys[zipf(rng, keys.len())].public_key().to_hex(),
                ],
            ],
        ),
        83..=85 => (
            3,
            String::new(),
            (0..rng.random_range(10..150))
                .map(|_| {
                    vec![
                        "p".into(),
                        keys[rng.random_range(0..keys.len())].public_key().to_hex(),
                    ]
                })
                .collect(),
        ),
        86..=89 => (
            0,
            r#"{"name":"someone","about":"a nostr user"}"#.into(),
            vec![],
        ),
        90..=92 => (
            10002,
            String::new(),
            (0..rng.random_range(2..8))
                .map(|k| vec!["r".into(), format!("wss://relay{k}.example.com")])
                .collect(),
        ),
        _ => (
            30023,
            "# A long-form article\n\n".to_owned()
                + &"Lorem ipsum dolor sit amet. ".repeat(rng.random_range(20..120)),
            vec![
                vec![
                    "d".into(),
                    format!("article-{}", rng.random_range(0..10_000)),
                ],
                vec!["t".into(), "nostr".into()],
            ],
        ),
    };
    let tags: Vec<Tag> = tags
        .iter()
        .map(|t| Tag::parse(t.iter().map(String::as_str)).expect("tag"))
        .collect();
    EventBuilder::new(Kind::from(kind), content)
        .tags(tags)
        .custom_created_at(Timestamp::from(created_at as u64))
        .sign_with_keys(author)
        .expect("sign")
}

fn sample(rng: &mut StdRng, list: &mut Vec<String>, value: String, every: u32) {
    if list.len() < 10_000 && rng.random_ratio(1, every) {
        list.push(value);
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The api as its own process (its RSS is its own), on a free port.
fn start_api(db: &str) -> (Child, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("api.yaml");
    std::fs::write(
        &cfg,
        "api:\n  requestsPerSecond: 1000000\n  burst: 1000000\n  maxConnectionsPerIp: 5000\n  \
         maxSubscriptions: 2000\n  statementTimeoutMs: 60000\n  maxNegentropyItems: 50000000\n  \
         maxOutbox: 100000\n",
    )
    .expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let child = Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .args(["--database", db, "--config"])
        .arg(&cfg)
        .args(["api", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("brotr-probe api");
    (child, addr, dir)
}

async fn wait_http(addr: SocketAddr) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on {addr}");
}

/// A client as browsers and nostr libraries are: Nagle off.
async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("websocket")
        .0
}

/// How long a REQ may go unanswered (EOSE or CLOSED) before it counts as unanswered, at this
/// time, and its connection is replaced.
const REQ_TIMEOUT: Duration = Duration::from_secs(30);

/// REQ → EOSE (or CLOSED); events received and seconds. `None`: no end within [`REQ_TIMEOUT`].
async fn req(ws: &mut Ws, sub: &str, filter: &Value) -> Option<(usize, f64)> {
    let t = Instant::now();
    ws.send(Message::Text(
        json!(["REQ", sub, filter]).to_string().into(),
    ))
    .await
    .expect("send");
    let mut n = 0;
    let answer = tokio::time::timeout(REQ_TIMEOUT, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                if t.starts_with("[\"EVENT\"") {
                    n += 1;
                } else if t.starts_with("[\"EOSE\"") || t.starts_with("[\"CLOSED\"") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    if !matches!(answer, Ok(true)) {
        return None;
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = ws
        .send(Message::Text(json!(["CLOSE", sub]).to_string().into()))
        .await;
    Some((n, secs))
}

type Shape = (
    &'static str,
    Box<dyn Fn(&mut StdRng) -> Value + Send + Sync>,
);

fn shapes(s: &Samples) -> Vec<Shape> {
    let ids = s.ids.clone();
    let heavy = s.heavy_authors.clone();
    let authors = s.authors.clone();
    let ps = s.p_tags.clone();
    let es = s.e_tags.clone();
    let pick = |v: &Vec<String>, r: &mut StdRng| v[r.random_range(0..v.len())].clone();
    let authors2 = authors.clone();
    vec![
        ("by id", Box::new(move |r| json!({"ids": [pick(&ids, r)]}))),
        (
            "by 1 author",
            Box::new(move |r| json!({"authors": [pick(&heavy, r)], "limit": 500})),
        ),
        (
            "by 100 authors",
            Box::new(move |r| {
                let a: Vec<String> = (0..100).map(|_| pick(&authors, r)).collect();
                json!({"authors": a, "limit": 500})
            }),
        ),
        (
            "kind 1 since a day",
            Box::new(
                |r| json!({"kinds": [1], "since": NOW - 86_400 - r.random_range(0..30) * 86_400, "limit": 500}),
            ),
        ),
        (
            "#p",
            Box::new(move |r| json!({"#p": [pick(&ps, r)], "limit": 500})),
        ),
        (
            "#e",
            Box::new(move |r| json!({"#e": [pick(&es, r)], "limit": 500})),
        ),
        (
            "time range (an hour)",
            Box::new(|r| {
                let since = NOW - r.random_range(1..300) * 86_400;
                json!({"since": since, "until": since + 3600, "limit": 500})
            }),
        ),
        (
            "kinds 0,3 of 10 authors",
            Box::new(move |r| {
                let a: Vec<String> = (0..10).map(|_| pick(&authors2, r)).collect();
                json!({"kinds": [0, 3], "authors": a, "limit": 500})
            }),
        ),
    ]
}

/// "; N unanswered in 30 s", or nothing.
fn unanswered(n: usize) -> String {
    if n > 0 {
        format!("; {n} unanswered in 30 s")
    } else {
        String::new()
    }
}

/// p50/p95/p99 (ms) of `per_client` REQs by each of `clients` connections, the mean events per
/// answer, and the REQs left unanswered (counted at [`REQ_TIMEOUT`] in the percentiles).
async fn load(
    url: &str,
    shape: &Shape,
    clients: usize,
    per_client: usize,
) -> (f64, f64, f64, f64, usize) {
    let f = &shape.1;
    let mut rng = StdRng::seed_from_u64(42);
    let filters: Vec<Vec<Value>> = (0..clients)
        .map(|_| (0..per_client).map(|_| f(&mut rng)).collect())
        .collect();
    let mut tasks = Vec::new();
    for (c, fs) in filters.into_iter().enumerate() {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(&url).await;
            let mut out = Vec::new();
            for (i, f) in fs.iter().enumerate() {
                match req(&mut ws, &format!("c{c}-{i}"), f).await {
                    Some((n, secs)) => out.push(Some((n, secs * 1000.0))),
                    None => {
                        out.push(None);
                        ws = connect(&url).await;
                    }
                }
            }
            out
        }));
    }
    let mut ms = Vec::new();
    let (mut events, mut answered, mut unanswered) = (0, 0, 0);
    for t in tasks {
        for r in t.await.expect("client") {
            match r {
                Some((n, m)) => {
                    events += n;
                    answered += 1;
                    ms.push(m);
                }
                None => {
                    unanswered += 1;
                    ms.push(REQ_TIMEOUT.as_secs_f64() * 1000.0);
                }
            }
        }
    }
    ms.sort_by(f64::total_cmp);
    let mean_events = events as f64 / answered.max(1) as f64;
    (
        pct(&ms, 0.5),
        pct(&ms, 0.95),
        pct(&ms, 0.99),
        mean_events,
        unanswered,
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let Ok(admin) = std::env::var("BROTR_BENCH_PG_URL") else {
        eprintln!("BROTR_BENCH_PG_URL is not set: run e2e/bench-archive.sh");
        std::process::exit(2);
    };
    let n = env_usize("BROTR_BENCH_EVENTS", 1_000_000);
    let smoke = std::env::var("BROTR_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let clients = env_usize("BROTR_BENCH_CLIENTS", 100);
    let peer = std::env::var("BROTR_NOSTR_RS_RELAY")
        .ok()
        .filter(|_| n <= 1_000_000);
    let per_shape = if smoke { 20 } else { 200 };
    let n_authors = (n / 100).clamp(1_000, 100_000);
    println!(
        "== archive benchmark: {n} events, {n_authors} authors{}",
        if smoke { " (smoke)" } else { "" }
    );

    let url = common::fresh_pg(&admin, "archive").await;
    let store = PgStore::open(&url, Some(Schema::Full), store::OpenMode::Migrate)
        .await
        .expect("open");
    let t = Instant::now();
    let keys: Vec<Keys> = (0..n_authors).map(|_| Keys::generate()).collect();
    println!(
        "{n_authors} author keys in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Generate and ingest in chunks; the JSON is kept on disk for nostr-rs-relay when compared.
    let relay = RelayRow {
        url: RelayUrl::parse("wss://relay.example.com").expect("url"),
        discovered_at: NOW,
    };
    let peer_file = tempfile::NamedTempFile::new().expect("tmp");
    let mut peer_out = peer
        .as_ref()
        .map(|_| std::io::BufWriter::new(peer_file.reopen().expect("reopen")));
    let mut rng = StdRng::seed_from_u64(1);
    let mut samples = Samples::default();
    let (mut sign_secs, mut ingest_secs) = (0.0, 0.0);
    let mut windows: Vec<(usize, f64)> = Vec::new();
    let mut window_start = (0usize, 0.0f64);
    let mut start = 0;
    while start < n {
        let len = CHUNK.min(n - start);
        let t = Instant::now();
        let events = make_chunk(&keys, start, len, n, 7);
        sign_secs += t.elapsed().as_secs_f64();
        let rows: Vec<EventRow> = events
            .iter()
            .map(|e| EventRow::from_event(e).expect("row"))
            .collect();
        for e in &events {
            samples
                .items
                .push((e.created_at.as_secs() as i64, e.id.to_bytes()));
            sample(&mut rng, &mut samples.ids, e.id.to_hex(), 50);
            sample(&mut rng, &mut samples.authors, e.pubkey.to_hex(), 20);
            for t in e.tags.iter() {
                match t.as_slice() {
                    [k, v, ..] if k == "p" => sample(&mut rng, &mut samples.p_tags, v.clone(), 20),
                    [k, v, ..] if k == "e" => sample(&mut rng, &mut samples.e_tags, v.clone(), 20),
                    _ => {}
                }
            }
            if let Some(w) = peer_out.as_mut() {
                use std::io::Write;
                writeln!(w, "{}", e.as_json()).expect("write");
            }
        }
        let t = Instant::now();
        for batch in rows.chunks(BATCH_SIZE) {
            store
                .insert_events(&relay, NOW, batch)
                .await
                .expect("ingest");
        }
        ingest_secs += t.elapsed().as_secs_f64();
        start += len;
        if start - window_start.0 >= 100_000 || start == n {
            windows.push((start - window_start.0, ingest_secs - window_start.1));
            window_start = (start, ingest_secs);
        }
    }
    drop(peer_out);
    samples.heavy_authors = keys
        .iter()
        .take(20)
        .map(|k| k.public_key().to_hex())
        .collect();
    let rate = |(k, s): (usize, f64)| k as f64 / s;
    println!(
        "generated and signed in {sign_secs:.0} s; ingested in {ingest_secs:.0} s: {:.0} events/s; \
         first 100k {:.0}/s, last 100k {:.0}/s",
        n as f64 / ingest_secs,
        rate(windows[0]),
        rate(*windows.last().expect("a window"))
    );
    sqlx::query("VACUUM ANALYZE")
        .execute(store.pool())
        .await
        .expect("analyze");
    let sizes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
         WHERE c.relname IN ('event', 'event_relay') \
            OR c.oid IN (SELECT indexrelid FROM pg_index \
                         WHERE indrelid IN ('event'::regclass, 'event_relay'::regclass)) \
         ORDER BY 2 DESC",
    )
    .fetch_all(store.pool())
    .await
    .expect("sizes");
    let total: i64 = sizes
        .iter()
        .filter(|(r, _)| r == "event" || r == "event_relay")
        .map(|(_, b)| b)
        .sum();
    println!(
        "bytes per event: {:.0} (tables with their indexes and TOAST); by relation: {}",
        total as f64 / n as f64,
        sizes
            .iter()
            .map(|(r, b)| format!("{r} {:.0}", *b as f64 / n as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The materialized views over the archive (`maintain refresh`): the first run fills them,
    // the second refreshes them concurrently, as every later run does.
    for run in ["first (fills them)", "second (concurrently)"] {
        let t = Instant::now();
        let views = store.refresh_views().await.expect("refresh");
        println!(
            "materialized views, {run}: {} refreshed in {:.1} s",
            views.len(),
            t.elapsed().as_secs_f64()
        );
    }

    // The api, its own process, over the archive.
    let (mut api, addr, _cfg) = start_api(&url);
    wait_http(addr).await;
    let ws_url = format!("ws://{addr}/");
    let mut peer_proc = None;
    let mut peer_url = None;
    if let Some(bin) = &peer {
        let (p, u, dir) = start_peer(bin, peer_file.path()).await;
        peer_proc = Some((p, dir));
        peer_url = Some(u);
    }
    println!(
        "\n| shape | Brotr 1 client p50/p95/p99 ms | Brotr {clients} clients p50/p95/p99 ms |{} events/answer |",
        if peer_url.is_some() {
            format!(
                " nostr-rs-relay p95 ms, 1 client (50 REQs) / {clients} clients (2 REQs each) |"
            )
        } else {
            String::new()
        }
    );
    println!(
        "|---|---|---|{}---:|",
        if peer_url.is_some() { "---|" } else { "" }
    );
    for shape in shapes(&samples) {
        let one = load(&ws_url, &shape, 1, per_shape).await;
        let many = load(&ws_url, &shape, clients, (per_shape / 20).max(2)).await;
        let peer_cells = match &peer_url {
            Some(u) => {
                // Fewer requests to the peer: nostr-rs-relay takes seconds for some shapes.
                let p1 = load(u, &shape, 1, (per_shape / 4).max(5)).await;
                let pm = load(u, &shape, clients, 2).await;
                format!(
                    " {:.1} / {:.1} ({:.0} events{}) |",
                    p1.1,
                    pm.1,
                    p1.3,
                    unanswered(p1.4 + pm.4)
                )
            }
            None => String::new(),
        };
        println!(
            "| {} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1}{} |{peer_cells} {:.0} |",
            shape.0,
            one.0,
            one.1,
            one.2,
            many.0,
            many.1,
            many.2,
            unanswered(one.4 + many.4),
            one.3
        );
    }
    if let Some((mut p, _dir)) = peer_proc {
        let _ = p.kill();
        let _ = p.wait();
    }

    // HTTP keyset paging, and OFFSET at the same depth.
    let limit = 50;
    let depth = 10_000usize.min(n / limit - 1);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let page = |path: String| {
        let http = http.clone();
        async move {
            let t = Instant::now();
            let r = http
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("http");
            let body: Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
            (t.elapsed().as_secs_f64() * 1000.0, body)
        }
    };
    let mut first = Vec::new();
    for _ in 0..20 {
        first.push(page(format!("/v1/events?limit={limit}")).await.0);
    }
    let (c_at, c_id): (i64, Vec<u8>) = sqlx::query_as(
        "SELECT created_at, id FROM event ORDER BY created_at DESC, id ASC OFFSET $1 LIMIT 1",
    )
    .bind((depth * limit) as i64)
    .fetch_one(store.pool())
    .await
    .expect("row at depth");
    let cursor = brotr_probe::store::query::Cursor {
        created_at: c_at,
        id: c_id.try_into().expect("id"),
    }
    .encode();
    let mut deep = Vec::new();
    for _ in 0..20 {
        let (ms, body) = page(format!("/v1/events?limit={limit}&cursor={cursor}")).await;
        assert!(
            body["events"].as_array().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        deep.push(ms);
    }
    let mut offset = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let _: Vec<(Vec<u8>,)> = sqlx::query_as(
            "SELECT id FROM event ORDER BY created_at DESC, id ASC OFFSET $1 LIMIT $2",
        )
        .bind((depth * limit) as i64)
        .bind(limit as i64)
        .fetch_all(store.pool())
        .await
        .expect("offset");
        offset.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for v in [&mut first, &mut deep, &mut offset] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "\nHTTP /v1/events, {limit} a page: page 1 p95 {:.1} ms; page {depth} by keyset cursor p95 {:.1} ms; \
         the same page by OFFSET (SQL alone) p95 {:.1} ms",
        pct(&first, 0.95),
        pct(&deep, 0.95),
        pct(&offset, 0.95)
    );

    // NIP-77: a client missing 1% of a window of up to 1,000,000 events.
    let window = samples.items.len().min(1_000_000);
    let items = &samples.items[samples.items.len() - window..];
    let since = items.iter().map(|i| i.0).min().unwrap_or(0);
    let have: Vec<(i64, [u8; 32])> = items
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 100 != 0)
        .map(|(_, x)| *x)
        .collect();
    let t = Instant::now();
    let mut ws = connect(&ws_url).await;
    let mut recon = Reconciliation::new(&have).expect("reconciliation");
    let open = recon.initiate().expect("initiate");
    let (mut sent, mut received, mut rounds) = (open.len(), 0usize, 0);
    ws.send(Message::Text(
        json!(["NEG-OPEN", "n", {"since": since}, hex::encode(&open)])
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    loop {
        let Some(Ok(Message::Text(m))) = ws.next().await else {
            panic!("NIP-77 session ended")
        };
        let v: Value = serde_json::from_str(&m).expect("json");
        assert_eq!(v[0], "NEG-MSG", "{v}");
        let msg = hex::decode(v[2].as_str().unwrap_or("")).expect("hex");
        received += msg.len();
        rounds += 1;
        match recon.step(&msg).expect("step") {
            Some(next) => {
                sent += next.len();
                ws.send(Message::Text(
                    json!(["NEG-MSG", "n", hex::encode(&next)])
                        .to_string()
                        .into(),
                ))
                .await
                .expect("send");
            }
            None => break,
        }
    }
    let outcome = recon.finish();
    println!(
        "NIP-77: a window of {window} events, the client missing {}: found {} in {:.2} s, {rounds} rounds, \
         {:.0} kB sent and {:.0} kB received (binary; twice that as hex on the wire)",
        window - have.len(),
        outcome.need.len(),
        t.elapsed().as_secs_f64(),
        sent as f64 / 1000.0,
        received as f64 / 1000.0
    );

    // Memory with 1,000 open subscriptions (each over the live tail after its EOSE): in the api
    // that served the runs above, and in a fresh one.
    let rss0 = rss_kib(api.id());
    let conns = open_subscriptions(&ws_url).await;
    let rss1 = rss_kib(api.id());
    drop(conns);
    let _ = api.kill();
    let _ = api.wait();
    let (mut fresh, addr, _cfg) = start_api(&url);
    wait_http(addr).await;
    let rss2 = rss_kib(fresh.id());
    let conns = open_subscriptions(&format!("ws://{addr}/")).await;
    println!(
        "api RSS: {:.1} MiB idle after the runs above, {:.1} MiB with 1,000 open subscriptions on \
         10 connections; a fresh api: {:.1} MiB started, {:.1} MiB with the same 1,000 subscriptions",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0,
        rss_kib(fresh.id()) as f64 / 1024.0
    );
    drop(conns);
    let _ = fresh.kill();
    let _ = fresh.wait();
}

/// 1,000 subscriptions on 10 connections, each past its EOSE (kept open: the caller drops them).
async fn open_subscriptions(ws_url: &str) -> Vec<Ws> {
    let mut conns = Vec::new();
    for c in 0..10 {
        let mut ws = connect(ws_url).await;
        for s in 0..100 {
            ws.send(Message::Text(
                json!(["REQ", format!("m{c}-{s}"), {"kinds": [1], "limit": 1}])
                    .to_string()
                    .into(),
            ))
            .await
            .expect("send");
        }
        let mut eose = 0;
        while eose < 100 {
            if let Some(Ok(Message::Text(m))) = ws.next().await
                && m.starts_with("[\"EOSE\"")
            {
                eose += 1;
            }
        }
        conns.push(ws);
    }
    conns
}

/// nostr-rs-relay holding the same events (published over its WebSocket).
/// Its data directory goes with the returned guard.
async fn start_peer(bin: &str, events: &std::path::Path) -> (Child, String, tempfile::TempDir) {
    let guard = tempfile::tempdir().expect("tempdir");
    let dir = guard.path().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[info]\nrelay_url = \"ws://127.0.0.1:{port}/\"\n\n[database]\nengine = \"sqlite\"\n\
             data_directory = {:?}\n\n[network]\naddress = \"127.0.0.1\"\nport = {port}\n\n\
             [limits]\nmessages_per_sec = 1000000\nmax_event_bytes = 1048576\n\
             max_ws_message_bytes = 4194304\nmax_ws_frame_bytes = 4194304\n",
            dir.display().to_string()
        ),
    )
    .expect("config");
    let spawn = || {
        Command::new(bin)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .current_dir(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nostr-rs-relay")
    };
    let mut child = spawn();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_http(addr).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let t = Instant::now();
    // Its own bulk loader when there is one: the relay has created its schema; stopped, the
    // loader writes the JSON lines into the same SQLite file (./config.toml), and the relay
    // starts again on it. Publishing over the WebSocket instead stores ~340 events/s.
    if let Ok(loader) = std::env::var("BROTR_NOSTR_RS_RELAY_BULKLOADER") {
        let _ = child.kill();
        let _ = child.wait();
        let status = Command::new(&loader)
            .current_dir(&dir)
            .env("RUST_LOG", "warn")
            .stdin(std::fs::File::open(events).expect("events"))
            .stdout(Stdio::null())
            .status()
            .expect("nostr-rs-relay bulkloader");
        assert!(status.success(), "nostr-rs-relay bulkloader: {status}");
        child = spawn();
        wait_http(addr).await;
        println!(
            "nostr-rs-relay: events bulk-loaded in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        return (child, url, guard);
    }
    let text = std::fs::read_to_string(events).expect("events");
    let lines: Vec<&str> = text.lines().collect();
    let mut tasks = Vec::new();
    for part in lines.chunks(lines.len().div_ceil(8)) {
        let part: Vec<String> = part.iter().map(|s| s.to_string()).collect();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = connect(&url).await.split();
            let total = part.len();
            let reader = tokio::spawn(async move {
                let mut ok = 0;
                while ok < total {
                    match rx.next().await {
                        Some(Ok(Message::Text(m))) if m.starts_with("[\"OK\"") => ok += 1,
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            });
            for e in part {
                tx.send(Message::Text(format!("[\"EVENT\",{e}]").into()))
                    .await
                    .expect("send");
            }
            reader.await.expect("reader");
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    println!(
        "nostr-rs-relay: {} events published in {:.0} s",
        lines.len(),
        t.elapsed().as_secs_f64()
    );
    (child, url, guard)
}
