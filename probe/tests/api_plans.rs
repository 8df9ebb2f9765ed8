//! Every filter shape the api accepts is served by an index on PostgreSQL. With 100,000 events of
//! a realistic mix in the full schema (Zipf-like authors, kinds 1, 7, 6, 3, 0, 10002, 30023, `e`,
//! `p` and `t` tags), after `VACUUM ANALYZE` as autovacuum would leave it, `EXPLAIN` of every
//! shape the relay and the HTTP API build (events, NIP-45 COUNT, NIP-77 items) must not scan
//! the event table sequentially. The statements are the ones `store::query` builds, the same the
//! api runs.

mod common;

use brotr_probe::model::{EventRow, Schema, tagvalues};
use brotr_probe::store::query::{self, Cursor, Dialect, EventQuery, Sql};
use brotr_probe::store::{DatabaseUrl, OpenMode, PgStore, Store};
use serde_json::Value;

use common::{NEEDS_PG, fresh_pg_url, relay};

const EVENTS: usize = 100_000;
const AUTHORS: usize = 5_000;
const NOW: i64 = 1_760_000_000;

/// A small deterministic generator (the plans must not depend on the run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        b
    }
    /// Zipf-like: index i with weight ~1/(i+1) over n.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        (((n as f64 + 1.0).powf(u)) as usize)
            .saturating_sub(1)
            .min(n - 1)
    }
}

fn dataset() -> (Vec<EventRow>, Vec<[u8; 32]>) {
    let mut r = Lcg(7);
    let authors: Vec<[u8; 32]> = (0..AUTHORS).map(|_| r.bytes32()).collect();
    let mut ids: Vec<[u8; 32]> = Vec::with_capacity(EVENTS);
    let mut rows = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let kind = match r.below(100) {
            0..=59 => 1,
            60..=79 => 7,
            80..=86 => 6,
            87..=90 => 3,
            91..=93 => 0,
            94..=96 => 10002,
            _ => 30023,
        };
        let mut tags: Vec<Vec<String>> = Vec::new();
        if matches!(kind, 7 | 6) || (kind == 1 && r.below(3) == 0) {
            if !ids.is_empty() {
                let target = ids[ids.len() - 1 - r.below(ids.len().min(5_000))];
                tags.push(vec!["e".into(), hex::encode(target)]);
            }
            tags.push(vec!["p".into(), hex::encode(authors[r.zipf(AUTHORS)])]);
        }
        if kind == 1 && r.below(10) == 0 {
            tags.push(vec![
                "t".into(),
                ["nostr", "bitcoin", "art", "news"][r.below(4)].into(),
            ]);
        }
        if kind == 30023 {
            tags.push(vec!["d".into(), format!("article-{}", r.below(1000))]);
        }
        let id = r.bytes32();
        ids.push(id);
        rows.push(EventRow {
            id,
            pubkey: authors[r.zipf(AUTHORS)],
            // A year of history, newest last.
            created_at: NOW - 365 * 86_400 + (i as i64) * (365 * 86_400 / EVENTS as i64),
            kind,
            tags_json: serde_json::to_string(&tags).unwrap(),
            tagvalues: tagvalues(tags.iter()),
            content: "x".repeat(40 + r.below(200)),
            sig: [0u8; 64],
        });
    }
    (rows, authors)
}

/// Every `Seq Scan` node on an event table in a plan, by relation.
fn seq_scans(plan: &Value, out: &mut Vec<String>) {
    match plan {
        Value::Object(m) => {
            if m.get("Node Type").and_then(Value::as_str) == Some("Seq Scan") {
                let rel = m
                    .get("Relation Name")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                if rel.starts_with("event") {
                    out.push(rel.to_owned());
                }
            }
            m.values().for_each(|v| seq_scans(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| seq_scans(v, out)),
        _ => {}
    }
}

/// The node types of a plan, outermost first (for the failure message and the figures).
fn nodes(plan: &Value, out: &mut Vec<String>) {
    match plan {
        Value::Object(m) => {
            if let Some(t) = m.get("Node Type").and_then(Value::as_str) {
                let on = m
                    .get("Index Name")
                    .or(m.get("Relation Name"))
                    .and_then(Value::as_str)
                    .map(|r| format!(" on {r}"))
                    .unwrap_or_default();
                out.push(format!("{t}{on}"));
            }
            m.values().for_each(|v| nodes(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| nodes(v, out)),
        _ => {}
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn every_filter_shape_uses_an_index_at_100k_events() {
    let _ = NEEDS_PG;
    let DatabaseUrl::Postgres(url) = fresh_pg_url().await else {
        unreachable!()
    };
    let store = PgStore::open(&url, Some(Schema::Full), OpenMode::Migrate)
        .await
        .unwrap();
    let (rows, authors) = dataset();
    let relay = relay("wss://relay.example.com");
    for chunk in rows.chunks(5_000) {
        store.insert_events(&relay, NOW, chunk).await.unwrap();
    }
    sqlx::query("VACUUM ANALYZE event")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("VACUUM ANALYZE event_relay")
        .execute(store.pool())
        .await
        .unwrap();

    let heavy = authors[0];
    let some: Vec<[u8; 32]> = authors.iter().step_by(50).take(100).copied().collect();
    let recent = rows[EVENTS - 10].id;
    let q = |f: &dyn Fn(&mut EventQuery)| {
        let mut e = EventQuery {
            limit: 500,
            ..Default::default()
        };
        f(&mut e);
        e
    };
    let tag = |letter: char, v: String| {
        move |e: &mut EventQuery| {
            e.tags.insert(letter, vec![v.clone()]);
        }
    };
    let shapes: Vec<(&str, EventQuery)> = vec![
        ("{} (newest 500)", q(&|_| {})),
        (
            "ids (3)",
            q(&|e| e.ids = Some(vec![rows[5].id, rows[50_000].id, recent])),
        ),
        (
            "authors (1, the most active)",
            q(&|e| e.authors = Some(vec![heavy])),
        ),
        ("authors (100)", q(&|e| e.authors = Some(some.clone()))),
        (
            "authors (1) + kinds [1]",
            q(&|e| {
                e.authors = Some(vec![heavy]);
                e.kinds = Some(vec![1]);
            }),
        ),
        (
            "kinds [1] + since (a day)",
            q(&|e| {
                e.kinds = Some(vec![1]);
                e.since = Some(NOW - 86_400);
            }),
        ),
        ("kinds [30023] (rare)", q(&|e| e.kinds = Some(vec![30023]))),
        (
            "kinds [0, 3, 10002] (replaceable)",
            q(&|e| e.kinds = Some(vec![0, 3, 10002])),
        ),
        ("#p (one pubkey)", q(&tag('p', hex::encode(heavy)))),
        (
            "#e (one event)",
            q(&tag('e', hex::encode(rows[EVENTS - 100].id))),
        ),
        ("#t (a common hashtag)", q(&tag('t', "nostr".into()))),
        (
            "since + until (a week)",
            q(&|e| {
                e.since = Some(NOW - 200 * 86_400);
                e.until = Some(NOW - 193 * 86_400);
            }),
        ),
        (
            "authors (100) + #p",
            q(&|e| {
                e.authors = Some(some.clone());
                e.tags.insert('p', vec![hex::encode(heavy)]);
            }),
        ),
        (
            "kinds [7] + #e",
            q(&|e| {
                e.kinds = Some(vec![7]);
                e.tags.insert('e', vec![hex::encode(rows[EVENTS - 100].id)]);
            }),
        ),
        (
            "kinds [1], page 2 (keyset cursor)",
            q(&|e| {
                e.kinds = Some(vec![1]);
                e.after = Some(Cursor {
                    created_at: rows[EVENTS - 1000].created_at,
                    id: rows[EVENTS - 1000].id,
                });
            }),
        ),
        (
            "{} at page depth 90,000 (keyset cursor)",
            q(&|e| {
                e.after = Some(Cursor {
                    created_at: rows[10_000].created_at,
                    id: rows[10_000].id,
                });
            }),
        ),
    ];

    let mut bad = Vec::new();
    let mut report = Vec::new();
    for (name, shape) in &shapes {
        let statements: [(&str, Sql); 3] = [
            (
                "REQ/HTTP",
                query::events(Dialect::Postgres, Schema::Full, shape),
            ),
            (
                "COUNT",
                query::count(Dialect::Postgres, Schema::Full, std::slice::from_ref(shape)),
            ),
            (
                "NIP-77",
                query::negentropy_items(Dialect::Postgres, Schema::Full, shape, 2_000_000),
            ),
        ];
        for (what, sql) in statements {
            let plan = store.explain(&sql).await.unwrap();
            let mut scans = Vec::new();
            seq_scans(&plan, &mut scans);
            let mut n = Vec::new();
            nodes(&plan, &mut n);
            report.push(format!("{what:8} {name}: {}", n.join(" > ")));
            if !scans.is_empty() {
                bad.push(format!(
                    "{what} {name}: Seq Scan on {scans:?}\n  {}",
                    n.join(" > ")
                ));
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        bad.is_empty(),
        "{} of {} statements scan the event table sequentially:\n{}",
        bad.len(),
        shapes.len() * 3,
        bad.join("\n")
    );
    let c = store.counts().await.unwrap();
    assert_eq!(c.events, EVENTS as u64, "every generated event stored");
}
