//! Every filter shape the api accepts is served by an index on PostgreSQL. With 100,000 events of
//! a realistic mix in the full schema (Zipf-like authors, kinds 1, 7, 6, 3, 0, 10002, 30023, `e`,
//! `p` and `t` tags), after `VACUUM ANALYZE` as autovacuum would leave it, `EXPLAIN` of every
//! shape the relay and the HTTP API build (events, NIP-45 COUNT, NIP-77 items) must not scan
//! the event table sequentially. The statements are the ones `store::query` builds, the same the
//! api runs.

mod common;

use brotr_probe::model::{EventRow, Schema, tagvalues};
use brotr_probe::store::query::{self, Cursor, Dialect, EventQuery, Sql};
use brotr_probe::store::{DatabaseUrl, OpenMode, PgStore, Reader, Store};
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

/// A fresh full archive holding `rows`, analysed as autovacuum would leave it.
async fn archive_of(rows: &[EventRow]) -> PgStore {
    let _ = NEEDS_PG;
    let DatabaseUrl::Postgres(url) = fresh_pg_url().await else {
        unreachable!()
    };
    let store = PgStore::open(&url, Some(Schema::Full), OpenMode::Migrate)
        .await
        .unwrap();
    let relay = relay("wss://relay.example.com");
    for chunk in rows.chunks(5_000) {
        store.insert_events(&relay, NOW, chunk).await.unwrap();
    }
    for table in ["event", "event_relay"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(store.pool())
            .await
            .unwrap();
    }
    store
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn every_filter_shape_uses_an_index_at_100k_events() {
    let (rows, authors) = dataset();
    let store = archive_of(&rows).await;

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
            "authors (10) + kinds [0, 3] (one branch per pair)",
            q(&|e| {
                e.authors = Some(some[..10].to_vec());
                e.kinds = Some(vec![0, 3]);
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
    // The statements of the PostgreSQL store's other routes (store::read): the kinds of a few
    // authors, then one branch per (author, kind); a popular tag read in a window of the newest
    // events, found by its depth in the time index, by the tag index or walked in time order.
    let all_kinds = [0, 1, 3, 6, 7, 10002, 30023];
    let heavy_pairs: Vec<([u8; 32], i32)> = all_kinds.iter().map(|k| (heavy, *k)).collect();
    let popular = q(&tag('p', hex::encode(heavy)));
    let window = EventQuery {
        since: Some(NOW - 30 * 86_400),
        ..popular.clone()
    };
    let routes: Vec<(&str, Sql)> = vec![
        ("kinds of 1 author", query::author_kinds(&[heavy])),
        ("kinds of 8 authors", query::author_kinds(&some[..8])),
        (
            "1 author, a branch per kind",
            query::events_by_pairs(Schema::Full, &q(&|_| {}), &heavy_pairs),
        ),
        (
            "#p matches (estimate)",
            query::tag_matches(Schema::Full, &popular),
        ),
        ("window start", query::time_at_depth(None, 20_000)),
        (
            "window start under a cursor",
            query::time_at_depth(Some(NOW - 86_400), 20_000),
        ),
        (
            "#p in a window, by the tag index",
            query::events(Dialect::Postgres, Schema::Full, &window),
        ),
        (
            "#p in a window, walked",
            query::events_walk(Schema::Full, &window),
        ),
    ];
    for (name, sql) in &routes {
        let plan = store.explain(sql).await.unwrap();
        let mut scans = Vec::new();
        seq_scans(&plan, &mut scans);
        let mut n = Vec::new();
        nodes(&plan, &mut n);
        report.push(format!("route    {name}: {}", n.join(" > ")));
        if !scans.is_empty() {
            bad.push(format!(
                "route {name}: Seq Scan on {scans:?}\n  {}",
                n.join(" > ")
            ));
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        bad.is_empty(),
        "{} of {} statements scan the event table sequentially:\n{}",
        bad.len(),
        shapes.len() * 3 + routes.len(),
        bad.join("\n")
    );
    let c = store.counts().await.unwrap();
    assert_eq!(c.events, EVENTS as u64, "every generated event stored");
}

/// What a filter returns by definition: the generated rows it matches, in NIP-01 order (newest
/// first, lowest id first on a tie), after the cursor, at most `limit`.
fn expected(rows: &[EventRow], q: &EventQuery) -> Vec<[u8; 32]> {
    let mut m: Vec<&EventRow> = rows
        .iter()
        .filter(|r| q.matches(&r.id, &r.pubkey, r.created_at, r.kind, &r.tagvalues))
        .filter(|r| {
            q.after.is_none_or(|c| {
                r.created_at < c.created_at || (r.created_at == c.created_at && r.id > c.id)
            })
        })
        .collect();
    m.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    m.into_iter().take(q.limit as usize).map(|r| r.id).collect()
}

/// The PostgreSQL store reads some filters by other routes than one statement (store::read): a
/// few authors kind by kind, a popular tag in a window of the newest events, walked in time
/// order for the most popular. Each must return exactly what the filter means, at its edges:
/// `until`, a keyset cursor, a `since` inside the window, a limit larger than the window holds.
#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn every_route_returns_what_the_filter_means() {
    let (mut rows, authors) = dataset();
    // A tag on every fourth event (25,000): popular enough for the window route.
    for (i, r) in rows.iter_mut().enumerate() {
        if i % 4 == 0 {
            let mut tags: Vec<Vec<String>> = serde_json::from_str(&r.tags_json).unwrap();
            tags.push(vec!["r".into(), "wss://relay.example.com/".into()]);
            r.tags_json = serde_json::to_string(&tags).unwrap();
            r.tagvalues = tagvalues(tags.iter());
        }
    }
    let store = archive_of(&rows).await;

    let heavy = authors[0];
    let mid = rows[EVENTS / 2].clone();
    let q = |f: &dyn Fn(&mut EventQuery)| {
        let mut e = EventQuery {
            limit: 500,
            ..Default::default()
        };
        f(&mut e);
        e
    };
    let r_tag = |e: &mut EventQuery| {
        e.tags
            .insert('r', vec!["wss://relay.example.com/".to_owned()]);
    };
    let cursor = Cursor {
        created_at: mid.created_at,
        id: mid.id,
    };
    let cases: Vec<(&str, EventQuery)> = vec![
        ("1 author", q(&|e| e.authors = Some(vec![heavy]))),
        ("8 authors", q(&|e| e.authors = Some(authors[..8].to_vec()))),
        (
            "1 author until the middle",
            q(&|e| {
                e.authors = Some(vec![heavy]);
                e.until = Some(mid.created_at);
            }),
        ),
        (
            "1 author after a cursor",
            q(&|e| {
                e.authors = Some(vec![heavy]);
                e.after = Some(cursor);
            }),
        ),
        (
            "1 author, kinds hidden",
            q(&|e| {
                e.authors = Some(vec![heavy]);
                e.hidden_kinds = vec![1, 7];
            }),
        ),
        (
            "3 authors + kinds [0, 3] + since",
            q(&|e| {
                e.authors = Some(authors[..3].to_vec());
                e.kinds = Some(vec![0, 3]);
                e.since = Some(NOW - 200 * 86_400);
            }),
        ),
        ("#r (25,000 events)", q(&r_tag)),
        (
            "#r until the middle",
            q(&|e| {
                r_tag(e);
                e.until = Some(mid.created_at);
            }),
        ),
        (
            "#r after a cursor",
            q(&|e| {
                r_tag(e);
                e.after = Some(cursor);
            }),
        ),
        (
            "#r since a week (inside the window)",
            q(&|e| {
                r_tag(e);
                e.since = Some(NOW - 7 * 86_400);
            }),
        ),
        (
            "#r, limit 20,000 (more than the window holds)",
            q(&|e| {
                r_tag(e);
                e.limit = 20_000;
            }),
        ),
        (
            "#r + #p",
            q(&|e| {
                r_tag(e);
                e.tags.insert('p', vec![hex::encode(heavy)]);
            }),
        ),
    ];
    // The tag is popular enough, by the planner's estimate, for the window route.
    let plan = store
        .explain(&query::tag_matches(Schema::Full, &cases[6].1))
        .await
        .unwrap();
    let estimate = plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    assert!(
        (query::TAG_WINDOW_FROM..query::TAG_WALK_FROM).contains(&estimate),
        "#r estimated at {estimate} matches"
    );
    for (name, c) in &cases {
        let got: Vec<[u8; 32]> = store
            .query_events(c)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        let want = expected(&rows, c);
        assert!(!want.is_empty(), "{name}: the case matches something");
        assert_eq!(
            got,
            want,
            "{name}: {} events, {} expected",
            got.len(),
            want.len()
        );
    }

    // The walk (chosen only past 150,000 estimated matches, more than this archive has) returns
    // what the window means.
    for (name, c) in &cases[6..] {
        let window = EventQuery {
            since: Some(c.since.unwrap_or(0).max(NOW - 60 * 86_400)),
            ..c.clone()
        };
        let got: Vec<[u8; 32]> = store
            .fetch_events(&query::events_walk(Schema::Full, &window))
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got, expected(&rows, &window), "walk, {name}");
    }
}
