//! Ingest benchmark: 100,000 realistic signed events into PostgreSQL full and lite and SQLite,
//! against the ceiling of a raw COPY of the same rows into the same PostgreSQL schema.
//!
//! Run with `bash e2e/bench-ingest.sh` (starts a throwaway PostgreSQL). Env:
//! `BROTR_BENCH_PG_URL` (admin URL; PostgreSQL cases are skipped without it),
//! `BROTR_BENCH_EVENTS` (default 100000), `BROTR_BENCH_MAX_CONTENT` (content bytes, default 2000).

mod common;

use std::sync::Arc;
use std::time::Instant;

use brotr_probe::model::{EventRow, RelayUrl, Schema};
use brotr_probe::store::{self, BATCH_SIZE, DatabaseUrl, PgStore, RelayRow, Store, encode_events};
use nostr::{EventBuilder, Keys, Kind, Tag};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WORDS: &[&str] = &[
    "nostr",
    "relay",
    "bitcoin",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "gm",
    "zap",
    "sats",
    "freedom",
    "protocol",
    "client",
    "notes",
    "key",
    "sign",
    "event",
    "today",
    "just",
    "like",
    "this",
    "that",
    "with",
    "for",
    "on",
    "are",
    "you",
    "we",
    "they",
    "people",
    "time",
    "good",
    "build",
    "open",
    "source",
    "network",
    "world",
    "censorship",
    "resistant",
    "lightning",
    "wallet",
    "podcast",
    "music",
    "photo",
    "https://example.com/image.jpg",
    "#nostr",
    "🤙",
    "💜",
];

/// Realistic mix: mostly short notes and reactions, some long-form, contact lists with many
/// tags. Tags reference what real ones do: authors of the corpus (popular ones more often),
/// earlier events, and a few dozen common relays as hints.
fn generate(n: usize, max_content: f64) -> Vec<EventRow> {
    let mut rng = StdRng::seed_from_u64(42);
    let keys: Vec<Keys> = (0..500).map(|_| Keys::generate()).collect();
    let pubkeys: Vec<String> = keys.iter().map(|k| k.public_key().to_hex()).collect();
    let hints: Vec<String> = (0..40)
        .map(|i| format!("wss://relay{i}.example.com"))
        .collect();
    // Popularity skew: cube of a uniform draw picks low indexes far more often.
    let skewed = |rng: &mut StdRng, len: usize| {
        ((rng.random::<f64>().powi(3)) * len as f64) as usize % len.max(1)
    };
    let mut ids: Vec<String> = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let k = &keys[rng.random_range(0..keys.len())];
        let roll = rng.random_range(0..100);
        let (kind, ntags) = match roll {
            0..55 => (1, rng.random_range(0..=6)),
            55..70 => (7, 3),
            70..75 => (6, 2),
            75..80 => (9735, rng.random_range(4..=8)),
            80..85 => (0, 0),
            85..88 => (3, 20),
            88..90 => (10002, rng.random_range(2..=12)),
            90..95 => (30023, rng.random_range(3..=12)),
            _ => (1111, rng.random_range(2..=20)),
        };
        // Content 50..max_content bytes, log-uniform (most notes are short).
        let target = (50.0 * (max_content / 50.0).powf(rng.random::<f64>())) as usize;
        let mut content = String::with_capacity(target + 16);
        while content.len() < target {
            content.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            content.push(' ');
        }
        let tags: Vec<Tag> = (0..ntags)
            .map(|t| {
                let hint = hints[skewed(&mut rng, hints.len())].clone();
                let parts: Vec<String> = match (kind, t % 4) {
                    (10002, _) => vec!["r".into(), hint],
                    (3, _) => vec!["p".into(), pubkeys[skewed(&mut rng, pubkeys.len())].clone()],
                    (30023, 0) => vec!["d".into(), format!("article-{i}")],
                    (30023, _) => vec!["t".into(), WORDS[rng.random_range(0..WORDS.len())].into()],
                    (_, 0) if !ids.is_empty() => {
                        // Replies and reactions point at recent events mostly.
                        let back = skewed(&mut rng, ids.len().min(5000));
                        vec![
                            "e".into(),
                            ids[ids.len() - 1 - back].clone(),
                            hint,
                            "root".into(),
                        ]
                    }
                    (_, 0 | 1) => {
                        vec!["p".into(), pubkeys[skewed(&mut rng, pubkeys.len())].clone()]
                    }
                    (_, 2) => vec!["k".into(), "1".into()],
                    _ => vec!["t".into(), WORDS[rng.random_range(0..WORDS.len())].into()],
                };
                Tag::parse(parts).expect("bench tag")
            })
            .collect();
        let ev = EventBuilder::new(Kind::from(kind), content)
            .tags(tags)
            .custom_created_at(nostr::Timestamp::from(1_600_000_000 + i as u64 * 7))
            .sign_with_keys(k)
            .expect("sign");
        ids.push(ev.id.to_hex());
        out.push(EventRow::from_event(&ev).expect("valid"));
    }
    out
}

fn relays() -> Vec<RelayRow> {
    (0..10)
        .map(|i| RelayRow {
            url: RelayUrl::parse(&format!("wss://relay{i}.bench.example.com")).expect("url"),
            discovered_at: 1,
        })
        .collect()
}

struct Figure {
    name: String,
    secs: f64,
    bytes: u64,
}

/// Ingests through the Store (the production path); each batch comes from the next relay.
async fn ingest(s: &dyn Store, events: &[EventRow]) -> f64 {
    let relays = relays();
    let start = Instant::now();
    for (i, chunk) in events.chunks(BATCH_SIZE).enumerate() {
        s.insert_events(&relays[i % relays.len()], 1_700_000_000, chunk)
            .await
            .expect("ingest");
    }
    start.elapsed().as_secs_f64()
}

/// Raw COPY of the same rows straight into `event` and `event_relay`: no staging, no conflict
/// handling. The ceiling the Store's path is compared with.
async fn raw_copy(s: &PgStore, events: &[EventRow]) -> f64 {
    let relays = relays();
    s.insert_relays(&relays).await.expect("relays");
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM relay ORDER BY url")
        .fetch_all(s.pool())
        .await
        .expect("relay ids");
    let start = Instant::now();
    for (i, chunk) in events.chunks(BATCH_SIZE).enumerate() {
        let rows = encode_events(s.schema(), chunk);
        let mut links = brotr_probe::store::CopyWriter::with_capacity(chunk.len() * 90);
        for e in chunk {
            links
                .int(1_700_000_000)
                .int(i64::from(ids[i % ids.len()]))
                .bytea(&e.id);
            links.end_row();
        }
        let mut tx = s.pool().begin().await.expect("tx");
        let mut copy = tx.copy_in_raw("COPY event FROM STDIN").await.expect("copy");
        copy.send(rows.as_bytes()).await.expect("send");
        copy.finish().await.expect("finish");
        let mut copy = tx
            .copy_in_raw("COPY event_relay (seen_at, relay_id, event_id) FROM STDIN")
            .await
            .expect("copy");
        copy.send(links.as_bytes()).await.expect("send");
        copy.finish().await.expect("finish");
        tx.commit().await.expect("commit");
    }
    start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BROTR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let t = Instant::now();
    let max_content: f64 = std::env::var("BROTR_BENCH_MAX_CONTENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000.0);
    let events = generate(n, max_content);
    let json_bytes: usize = events
        .iter()
        .map(|e| e.content.len() + e.tags_json.len() + 64 * 2 + 128 + 64)
        .sum();
    println!(
        "generated {n} signed events in {:.1}s (≈{} bytes of NIP-01 JSON each)",
        t.elapsed().as_secs_f64(),
        json_bytes / n
    );

    // Verification cost on the ingest path (id + Schnorr signature), for scale.
    let jsons: Vec<String> = {
        let keys = Keys::generate();
        (0..2000)
            .map(|i| {
                let ev = EventBuilder::text_note(format!("verify me {i}"))
                    .sign_with_keys(&keys)
                    .expect("sign");
                nostr::JsonUtil::as_json(&ev)
            })
            .collect()
    };
    let t = Instant::now();
    for j in &jsons {
        EventRow::from_json(j).expect("valid");
    }
    println!(
        "parse+verify: {:.0} events/s (one core)",
        jsons.len() as f64 / t.elapsed().as_secs_f64()
    );

    let mut figures = Vec::new();
    if let Ok(admin) = std::env::var("BROTR_BENCH_PG_URL") {
        for schema in [Schema::Full, Schema::Lite] {
            let url = common::fresh_pg(&admin, &format!("{schema}_copy")).await;
            let s = PgStore::open(&url, Some(schema), store::OpenMode::Migrate)
                .await
                .expect("open");
            let secs = raw_copy(&s, &events).await;
            let bytes = s.event_storage_bytes().await.expect("size");
            figures.push(Figure {
                name: format!("PostgreSQL {schema}: raw COPY ceiling"),
                secs,
                bytes,
            });

            let url = common::fresh_pg(&admin, &schema.to_string()).await;
            let url_for_sizes = url.clone();
            let s: Arc<dyn Store> = store::migrate(&DatabaseUrl::Postgres(url), Some(schema))
                .await
                .expect("open");
            let secs = ingest(s.as_ref(), &events).await;
            let bytes = s.event_storage_bytes().await.expect("size");
            figures.push(Figure {
                name: format!("PostgreSQL {schema}: Store::insert_events"),
                secs,
                bytes,
            });
            if let Ok(pg) =
                store::PgStore::open(&url_for_sizes, Some(schema), store::OpenMode::Migrate).await
            {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_class c \
                     WHERE c.relname IN ('event', 'event_relay') \
                        OR c.oid IN (SELECT indexrelid FROM pg_index \
                                     WHERE indrelid IN ('event'::regclass, 'event_relay'::regclass)) \
                        OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE relname = 'event') \
                     ORDER BY 2 DESC",
                )
                .fetch_all(pg.pool())
                .await
                .expect("sizes");
                let parts: Vec<String> = rows
                    .iter()
                    .map(|(r, b)| format!("{r} {:.0}", *b as f64 / n as f64))
                    .collect();
                println!(
                    "PostgreSQL {schema} bytes/event by relation: {}",
                    parts.join(", ")
                );
            }
            let replay = ingest(s.as_ref(), &events[..events.len().min(10_000)]).await;
            println!(
                "PostgreSQL {schema}: replay of 10,000 already-stored events: {:.0} events/s",
                10_000f64.min(n as f64) / replay
            );
        }
    } else {
        println!("BROTR_BENCH_PG_URL not set: PostgreSQL cases skipped");
    }
    for schema in [Schema::Full, Schema::Lite] {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = DatabaseUrl::Sqlite(dir.path().join("bench.db"));
        let s = store::migrate(&url, Some(schema)).await.expect("open");
        let secs = ingest(s.as_ref(), &events).await;
        let bytes = s.event_storage_bytes().await.expect("size");
        figures.push(Figure {
            name: format!("SQLite {schema}: Store::insert_events"),
            secs,
            bytes,
        });
    }

    println!("\n| case | events/s | bytes/event on disk (event + event_relay, tables + indexes) |");
    println!("|---|---:|---:|");
    for f in &figures {
        println!(
            "| {} | {:.0} | {:.0} |",
            f.name,
            n as f64 / f.secs,
            f.bytes as f64 / n as f64
        );
    }
    let rate = |name: &str| {
        figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| n as f64 / f.secs)
    };
    for schema in ["full", "lite"] {
        if let (Some(store), Some(ceiling)) = (
            rate(&format!("PostgreSQL {schema}: Store::insert_events")),
            rate(&format!("PostgreSQL {schema}: raw COPY ceiling")),
        ) {
            println!(
                "PostgreSQL {schema}: Store ingest = {:.0}% of the COPY ceiling",
                100.0 * store / ceiling
            );
        }
    }
    let size = |name: &str| {
        figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bytes as f64)
    };
    if let (Some(full), Some(lite)) = (
        size("PostgreSQL full: Store::insert_events"),
        size("PostgreSQL lite: Store::insert_events"),
    ) {
        println!("PostgreSQL lite / full bytes = {:.0}%", 100.0 * lite / full);
    }
}
