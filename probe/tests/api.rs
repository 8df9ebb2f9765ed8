//! `brotr-probe api` against both stores: the read-only relay (REQ in NIP-01 order with every
//! filter field, checked against nostr's own `Filter::match_event`; COUNT; EVENT refused; NIP-77
//! reconciliation; the live tail), NIP-11, and the HTTP API (keyset paging, errors, OpenAPI).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use brotr_probe::config::ApiConfig;
use brotr_probe::metrics::Metrics;
use brotr_probe::model::{EventRow, Schema};
use brotr_probe::nips::nip77::Reconciliation;
use brotr_probe::serve::{self, Api};
use brotr_probe::services::Service as _;
use brotr_probe::store::{self, DatabaseUrl, Store};
use futures_util::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, Filter, JsonUtil, Keys, Kind, Tag, Timestamp};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::{NEEDS_PG, fresh_pg_url, fresh_sqlite_url, relay, tag};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An api serving `url` on a loopback port, stopped when dropped.
struct Served {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// An api over a new archive holding `events` (stored before it starts, so they are not "new"
/// to its live tail).
async fn serve_with(url: &DatabaseUrl, schema: Schema, cfg: ApiConfig, events: &[Event]) -> Served {
    let store = common::open(url, schema).await;
    if !events.is_empty() {
        store
            .insert_events(
                &relay("wss://relay.example.com"),
                1_700_000_000,
                &rows(events),
            )
            .await
            .unwrap();
    }
    let archive = store::open_archive(&reader_url(url).await, None)
        .await
        .expect("open archive");
    let api = Api::new(archive, cfg, Metrics::new());
    api.start_live().await.expect("live tail");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve::serve(listener, api, async move {
        let _ = stopped.await;
    }));
    Served {
        addr,
        store,
        _stop: stop,
    }
}

/// On PostgreSQL, the URL of a new login role in `brotr_reader` (what a deployment gives the
/// api); SQLite has no roles.
async fn reader_url(url: &DatabaseUrl) -> DatabaseUrl {
    let DatabaseUrl::Postgres(admin) = url else {
        return url.clone();
    };
    let role = format!("brotr_api_{}", hex::encode(rand::random::<[u8; 4]>()));
    let pool = sqlx::PgPool::connect(admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN IN ROLE brotr_reader"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    DatabaseUrl::Postgres(admin.replacen("://postgres@", &format!("://{role}@"), 1))
}

fn test_cfg() -> ApiConfig {
    ApiConfig {
        poll_secs: 0.1,
        requests_per_second: 10_000,
        burst: 10_000,
        ..ApiConfig::default()
    }
}

/// A client as browsers and nostr libraries are: Nagle off.
async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/"), None, true)
        .await
        .expect("websocket");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next text frame as JSON (5 s at most).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = frame {
            return serde_json::from_str(&t).expect("json frame");
        }
    }
}

/// REQ, then every EVENT until EOSE; the CLOSED message instead when refused.
async fn req(ws: &mut Ws, sub: &str, filters: &[Value]) -> Result<Vec<Event>, String> {
    let mut msg = vec![json!("REQ"), json!(sub)];
    msg.extend(filters.iter().cloned());
    send(ws, Value::Array(msg)).await;
    let mut out = Vec::new();
    loop {
        let m = next(ws).await;
        match m[0].as_str() {
            Some("EVENT") if m[1] == sub => {
                let e = Event::from_json(m[2].to_string()).expect("event json");
                e.verify().expect("a valid signature");
                out.push(e);
            }
            Some("EOSE") if m[1] == sub => return Ok(out),
            Some("CLOSED") if m[1] == sub => return Err(m[2].as_str().unwrap_or("").to_owned()),
            _ => panic!("unexpected frame {m}"),
        }
    }
}

/// The archive's test data: three authors, several kinds and tags, and ties in created_at.
fn dataset() -> Vec<Event> {
    let keys: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let mut events = Vec::new();
    for i in 0..30u64 {
        let k = &keys[(i % 3) as usize];
        let kind = [1u16, 7, 1, 0, 30023][(i % 5) as usize];
        let mut tags: Vec<Tag> = vec![tag(&["t", if i % 2 == 0 { "even" } else { "odd" }])];
        if i % 4 == 0 {
            tags.push(tag(&["p", &keys[2].public_key().to_hex()]));
        }
        if i % 6 == 0 {
            tags.push(tag(&["e", &"ab".repeat(32)]));
        }
        if kind == 30023 {
            tags.push(tag(&["d", &format!("article-{i}")]));
        }
        // Pairs share a second: NIP-01's tie rule (lowest id first) decides their order.
        let created_at = 1_700_000_000 + (i / 2) * 10;
        events.push(
            EventBuilder::new(Kind::from(kind), format!("content {i} \"quoted\" \\ é"))
                .tags(tags)
                .custom_created_at(Timestamp::from(created_at))
                .sign_with_keys(k)
                .unwrap(),
        );
    }
    events
}

fn rows(events: &[Event]) -> Vec<EventRow> {
    events
        .iter()
        .map(|e| EventRow::from_event(e).unwrap())
        .collect()
}

/// What a relay must answer for `filter`: nostr's own matcher, NIP-01's order and limit.
fn expected(events: &[Event], filter: &Filter) -> Vec<nostr::EventId> {
    let mut m: Vec<&Event> = events
        .iter()
        .filter(|e| filter.match_event(e, Default::default()))
        .collect();
    m.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    if let Some(l) = filter.limit {
        m.truncate(l);
    }
    m.into_iter().map(|e| e.id).collect()
}

async fn archive_suite(url: DatabaseUrl) {
    let events = dataset();
    let served = serve_with(&url, Schema::Full, test_cfg(), &events).await;
    let mut ws = connect(served.addr).await;

    // Every filter field, alone and together, against nostr's matcher.
    let a = events[0].pubkey.to_hex();
    let b = events[1].pubkey.to_hex();
    let p = events[2].pubkey.to_hex();
    let filters = [
        json!({}),
        json!({"limit": 5}),
        json!({"ids": [events[3].id.to_hex(), events[17].id.to_hex()]}),
        json!({"authors": [a]}),
        json!({"authors": [a, b], "kinds": [1]}),
        json!({"kinds": [7, 0]}),
        json!({"#t": ["even"]}),
        json!({"#p": [p]}),
        json!({"#e": ["ab".repeat(32)], "kinds": [1]}),
        json!({"#d": ["article-4", "article-9"]}),
        json!({"#t": ["odd"], "#p": [p]}),
        json!({"since": 1_700_000_050, "until": 1_700_000_100}),
        json!({"since": 1_700_000_050, "until": 1_700_000_050}),
        json!({"kinds": [1], "limit": 3}),
        json!({"authors": [a], "since": 1_700_000_040, "limit": 2}),
        json!({"kinds": [9999]}),
    ];
    for (i, f) in filters.iter().enumerate() {
        let filter = Filter::from_json(f.to_string()).unwrap();
        let got: Vec<_> = req(&mut ws, &format!("s{i}"), std::slice::from_ref(f))
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got, expected(&events, &filter), "filter {f}");
    }
    // An empty list is an OR over nothing: it matches nothing (nostr's own matcher reads it as
    // "no condition", so it is not the oracle here).
    for f in [
        json!({"ids": []}),
        json!({"authors": []}),
        json!({"kinds": [], "limit": 5}),
    ] {
        assert!(
            req(&mut ws, "empty", std::slice::from_ref(&f))
                .await
                .unwrap()
                .is_empty(),
            "{f}"
        );
    }
    // Several filters of one REQ: their union, once each, in order.
    let (f1, f2) = (
        json!({"kinds": [7]}),
        json!({"authors": [a], "kinds": [7, 1]}),
    );
    let got: Vec<_> = req(&mut ws, "union", &[f1.clone(), f2.clone()])
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let mut want = expected(&events, &Filter::from_json(f1.to_string()).unwrap());
    want.extend(expected(
        &events,
        &Filter::from_json(f2.to_string()).unwrap(),
    ));
    let mut want: Vec<&Event> = events.iter().filter(|e| want.contains(&e.id)).collect();
    want.sort_by(|x, y| y.created_at.cmp(&x.created_at).then(x.id.cmp(&y.id)));
    assert_eq!(got, want.iter().map(|e| e.id).collect::<Vec<_>>());

    // COUNT: several filters OR'd into one number.
    send(&mut ws, json!(["COUNT", "c", f1, f2])).await;
    let m = next(&mut ws).await;
    assert_eq!(m[0], "COUNT");
    assert_eq!(m[2]["count"], want.len());

    // EVENT is refused: the archive is read-only, and nothing was stored.
    let outsider = EventBuilder::text_note("let me in")
        .sign_with_keys(&Keys::generate())
        .unwrap();
    send(
        &mut ws,
        json!(["EVENT", serde_json::to_value(&outsider).unwrap()]),
    )
    .await;
    let m = next(&mut ws).await;
    assert_eq!(
        m,
        json!([
            "OK",
            outsider.id.to_hex(),
            false,
            "blocked: read-only archive"
        ])
    );
    assert!(
        served
            .store
            .get_event(&outsider.id.to_bytes())
            .await
            .unwrap()
            .is_none()
    );

    // Bad filters are CLOSED with a reason, and the connection goes on.
    let many: Vec<String> = (0..501).map(|i| format!("{i:064x}")).collect();
    let err = req(&mut ws, "big", &[json!({"authors": many})])
        .await
        .unwrap_err();
    assert_eq!(err, "invalid: authors: 501 values, at most 500 allowed");
    let err = req(&mut ws, "s", &[json!({"search": "x"})])
        .await
        .unwrap_err();
    assert!(err.starts_with("invalid: search"), "{err}");
    send(&mut ws, json!(["REQ"])).await;
    let m = next(&mut ws).await;
    assert_eq!(m[0], "NOTICE");
    assert!(m[1].as_str().unwrap().starts_with("invalid:"), "{m}");
    assert_eq!(
        req(&mut ws, "after", &[json!({"limit": 1})])
            .await
            .unwrap()
            .len(),
        1
    );

    // NIP-77: a client holding half the archive learns exactly the other half.
    let items: Vec<(i64, [u8; 32])> = events
        .iter()
        .map(|e| (e.created_at.as_secs() as i64, e.id.to_bytes()))
        .collect();
    let mut recon = Reconciliation::new(&items[..15]).unwrap();
    let open = recon.initiate().unwrap();
    send(&mut ws, json!(["NEG-OPEN", "n", {}, hex::encode(open)])).await;
    loop {
        let m = next(&mut ws).await;
        assert_eq!(m[0], "NEG-MSG", "{m}");
        let msg = hex::decode(m[2].as_str().unwrap()).unwrap();
        match recon.step(&msg).unwrap() {
            Some(next_msg) => send(&mut ws, json!(["NEG-MSG", "n", hex::encode(next_msg)])).await,
            None => break,
        }
    }
    send(&mut ws, json!(["NEG-CLOSE", "n"])).await;
    let mut missing: Vec<[u8; 32]> = items[15..].iter().map(|(_, id)| *id).collect();
    missing.sort_unstable();
    assert_eq!(recon.finish().need, missing);

    // The live tail: archived after EOSE, delivered to matching subscriptions only (on a new
    // connection: the subscriptions above are still open and would match too).
    let mut ws = connect(served.addr).await;
    assert!(
        req(&mut ws, "live", &[json!({"kinds": [1], "#t": ["new"]})])
            .await
            .unwrap()
            .is_empty()
    );
    let k = Keys::generate();
    let fresh = |kind: u16, t: &str| {
        EventBuilder::new(Kind::from(kind), "fresh")
            .tag(tag(&["t", t]))
            .sign_with_keys(&k)
            .unwrap()
    };
    let (wanted, other_kind, other_tag) = (fresh(1, "new"), fresh(7, "new"), fresh(1, "old"));
    served
        .store
        .insert_events(
            &relay("wss://relay2.example.com"),
            1_800_000_000,
            &rows(&[other_kind, wanted.clone(), other_tag]),
        )
        .await
        .unwrap();
    let m = next(&mut ws).await;
    assert_eq!(m[0], "EVENT", "{m}");
    assert_eq!(m[1], "live");
    assert_eq!(m[2]["id"], wanted.id.to_hex());
    // Nothing else arrives for it: the next frame is the answer to a new request.
    assert_eq!(
        req(&mut ws, "z", &[json!({"ids": []})])
            .await
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn the_relay_serves_the_sqlite_archive() {
    let (url, _dir) = fresh_sqlite_url();
    archive_suite(url).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn the_relay_serves_the_postgres_archive() {
    let _ = NEEDS_PG;
    archive_suite(fresh_pg_url().await).await;
}

use common::http_get as get;

async fn http_suite(url: DatabaseUrl) {
    let events = dataset();
    let served = serve_with(&url, Schema::Full, test_cfg(), &events).await;
    let addr = served.addr;

    // NIP-11 on the relay's URL, with the CORS headers NIP-11 asks for.
    let (status, headers, body) = get(addr, "/", "application/nostr+json").await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["supported_nips"], json!([1, 11, 45, 77]));
    assert_eq!(info["limitation"]["max_limit"], 500);
    assert_eq!(info["limitation"]["restricted_writes"], true);

    // Keyset pages of 4 walk the whole filter in NIP-01 order, ties included.
    let filter = Filter::from_json(r#"{"kinds":[1,7]}"#).unwrap();
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/v1/events?kinds=1,7&limit=4".to_owned(),
            Some(c) => format!("/v1/events?kinds=1,7&limit=4&cursor={c}"),
        };
        let (status, _, body) = get(addr, &path, "application/json").await;
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let evs = page["events"].as_array().unwrap();
        assert!(evs.len() <= 4);
        for e in evs {
            got.push(Event::from_json(e.to_string()).unwrap().id);
        }
        pages += 1;
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(got, expected(&events, &filter));
    assert_eq!(pages, got.len().div_ceil(4));
    // The same filter as JSON means the same thing.
    let (_, _, body) = get(
        addr,
        "/v1/events?filter=%7B%22kinds%22%3A%5B1%2C7%5D%7D&limit=500",
        "application/json",
    )
    .await;
    let page: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Event::from_json(e.to_string()).unwrap().id)
        .collect();
    assert_eq!(ids, got);

    // 400 names the parameter and why; never SQL.
    for (path, param) in [
        ("/v1/events?authors=xyz", "authors"),
        ("/v1/events?kinds=1,banana", "kinds"),
        ("/v1/events?limit=0", "limit"),
        ("/v1/events?limit=100000", "limit"),
        ("/v1/events?cursor=nope", "cursor"),
        ("/v1/events?tag=pp", "tag"),
        ("/v1/events?colour=red", "colour"),
        ("/v1/events?kinds=1&kinds=2", "kinds"),
        ("/v1/events?filter=%7B%22kinds%22%3A1%7D", "filter"),
        ("/v1/relays?network=moon", "network"),
        ("/v1/relays?status=sleepy", "status"),
        ("/v1/relays?country=Germany", "country"),
    ] {
        let (status, _, body) = get(addr, path, "application/json").await;
        assert_eq!(status, 400, "{path}: {body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["parameter"], param, "{path}: {body}");
        assert!(!body.to_lowercase().contains("select"), "{body}");
    }
    let (status, _, _) = get(
        addr,
        "/v1/relays/wss%3A%2F%2Fnowhere.example",
        "application/json",
    )
    .await;
    assert_eq!(status, 404);

    // The relay we stored through, listed and detailed.
    let (status, _, body) = get(addr, "/v1/relays?network=clearnet", "application/json").await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["relays"][0]["url"], "wss://relay.example.com");
    assert_eq!(page["relays"][0]["status"], "unknown");
    let (status, _, body) = get(
        addr,
        "/v1/relays/wss%3A%2F%2Frelay.example.com",
        "application/json",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Stats come from the statistics views, with the time they were refreshed.
    served.store.refresh_views().await.unwrap();
    let (status, _, body) = get(addr, "/v1/stats", "application/json").await;
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["events"], events.len());
    assert_eq!(stats["relays"], 1);
    assert!(
        stats["refreshed_at"].as_i64().unwrap() > 1_700_000_000,
        "{stats}"
    );
    let kinds = &stats["kinds"];
    let ones = events.iter().filter(|e| e.kind.as_u16() == 1).count();
    assert_eq!(kinds["1"], ones, "{stats}");

    // The OpenAPI document is 3.1 and lists every route.
    let (status, _, body) = get(addr, "/openapi.json", "application/json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for p in ["/v1/events", "/v1/relays", "/v1/relays/{url}", "/v1/stats"] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }

    // Health and metrics, as the other services have them.
    assert_eq!(get(addr, "/healthz", "*/*").await.0, 200);
    assert_eq!(get(addr, "/readyz", "*/*").await.0, 200);
    let (_, _, metrics) = get(addr, "/metrics", "*/*").await;
    assert!(
        metrics.contains("brotr_api_requests_total{route=\"/v1/events\",status=\"400\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brotr_api_query_duration_seconds_bucket{op=\"events\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_http_api_serves_the_sqlite_archive() {
    let (url, _dir) = fresh_sqlite_url();
    http_suite(url).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn the_http_api_serves_the_postgres_archive() {
    http_suite(fresh_pg_url().await).await;
}

#[tokio::test]
async fn a_lite_archive_refuses_req_but_counts() {
    let (url, _dir) = fresh_sqlite_url();
    let events = dataset();
    let served = serve_with(&url, Schema::Lite, test_cfg(), &events).await;
    let mut ws = connect(served.addr).await;
    let err = req(&mut ws, "s", &[json!({"kinds": [1]})])
        .await
        .unwrap_err();
    assert!(err.starts_with("blocked: this archive is lite"), "{err}");
    send(&mut ws, json!(["COUNT", "c", {"kinds": [1]}])).await;
    let m = next(&mut ws).await;
    let want = expected(&events, &Filter::from_json(r#"{"kinds":[1]}"#).unwrap()).len();
    assert_eq!(m, json!(["COUNT", "c", {"count": want}]));
    let (status, _, _) = get(served.addr, "/v1/events", "application/json").await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn limits_refuse_and_cut_without_harm_to_others() {
    let (url, _dir) = fresh_sqlite_url();
    let cfg = ApiConfig {
        max_subscriptions: 3,
        max_filters: 2,
        max_connections_per_ip: 2,
        ..test_cfg()
    };
    let served = serve_with(&url, Schema::Full, cfg, &[]).await;
    let mut ws = connect(served.addr).await;
    for i in 0..3 {
        req(&mut ws, &format!("s{i}"), &[json!({"kinds": [1]})])
            .await
            .unwrap();
    }
    let err = req(&mut ws, "s3", &[json!({})]).await.unwrap_err();
    assert!(err.starts_with("blocked: 3 subscriptions open"), "{err}");
    // Replacing an open one is allowed.
    req(&mut ws, "s1", &[json!({"kinds": [7]})]).await.unwrap();
    let err = req(&mut ws, "s1", &[json!({}), json!({}), json!({})])
        .await
        .unwrap_err();
    assert_eq!(err, "invalid: 3 filters, at most 2 per request");
    let err = req(&mut ws, &"x".repeat(65), &[json!({})])
        .await
        .unwrap_err();
    assert!(err.starts_with("invalid: subscription ids"), "{err}");
    // Binary and oversized frames: a NOTICE, then the connection is cut for the oversized one.
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await[0], "NOTICE");
    // Per-IP connections: the third is refused with 429 before the upgrade.
    let _second = connect(served.addr).await;
    let third = tokio_tungstenite::connect_async(format!("ws://{}/", served.addr)).await;
    assert!(third.is_err(), "a third connection from one address");
    let big = format!(r##"["REQ","s",{{"#t":["{}"]}}]"##, "x".repeat(200_000));
    ws.send(Message::Text(big.into())).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(end, Ok(true), "an oversized frame ends the connection");
    // The server still serves a fresh connection (the cut one freed its slot).
    let mut again = connect(served.addr).await;
    req(&mut again, "ok", &[json!({"limit": 1})]).await.unwrap();
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn the_api_role_reads_and_cannot_write() {
    let url = fresh_pg_url().await;
    let store = common::open(&url, Schema::Full).await;
    let events = dataset();
    store
        .insert_events(
            &relay("wss://relay.example.com"),
            1_700_000_000,
            &rows(&events),
        )
        .await
        .unwrap();
    let reader = reader_url(&url).await;
    let DatabaseUrl::Postgres(reader_pg) = &reader else {
        unreachable!()
    };
    assert!(!reader_pg.contains("://postgres@"), "{reader_pg}");
    // It reads everything the api serves.
    let archive = store::open_archive(&reader, None).await.unwrap();
    let all = brotr_probe::store::query::EventQuery {
        limit: 1000,
        ..Default::default()
    };
    assert_eq!(
        archive.query_events(&all).await.unwrap().len(),
        events.len()
    );
    archive.stats().await.unwrap();
    archive
        .relays_page(&brotr_probe::store::query::RelayFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    // Its connection cannot write: a plain INSERT, and the store's own ingest, are refused.
    let pg = brotr_probe::store::PgStore::open(reader_pg, None, store::OpenMode::Check)
        .await
        .unwrap();
    let err = sqlx::query(
        "INSERT INTO relay (discovered_at, url, network) VALUES (1, 'wss://x.example', 'clearnet')",
    )
    .execute(pg.pool())
    .await
    .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let fresh = EventBuilder::text_note("no")
        .sign_with_keys(&Keys::generate())
        .unwrap();
    assert!(
        archive
            .insert_events(&relay("wss://y.example"), 1, &rows(&[fresh]))
            .await
            .is_err()
    );
    // Nothing was written.
    let c = store.counts().await.unwrap();
    assert_eq!((c.relays, c.events), (1, events.len() as u64));
}

/// `brotr-probe migrate --reader-login ROLE`: what the operator's migration Job runs on a
/// managed database, so that the api logs in as a member of `brotr_reader` with its own
/// password. Run again, it updates the password. Bad names and missing passwords are refused
/// with exit code 2 and nothing is created.
#[tokio::test]
#[ignore = "needs PostgreSQL (BROTR_TEST_PG_URL)"]
async fn migrate_creates_the_read_only_login_the_api_uses() {
    let url = fresh_pg_url().await;
    let DatabaseUrl::Postgres(admin) = &url else {
        unreachable!()
    };
    let migrate = |login: &str, password: Option<&str>, database: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_brotr-probe"));
        cmd.args(["--database", database, "migrate", "--reader-login", login])
            .env_remove("BROTR_READER_PASSWORD");
        if let Some(p) = password {
            cmd.env("BROTR_READER_PASSWORD", p);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let login = format!("brotr_api_{}", hex::encode(rand::random::<[u8; 3]>()));
    let pool = sqlx::PgPool::connect(admin).await.unwrap();
    let role = |name: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (bool, bool, Option<String>)>(
                "SELECT rolcanlogin, pg_has_role(rolname, 'brotr_reader', 'MEMBER'), rolpassword \
                 FROM pg_authid WHERE rolname = $1",
            )
            .bind(name)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };
    let mut verifiers = Vec::new();
    for password in ["it's-a-secret", "another one"] {
        let (code, text) = migrate(&login, Some(password), admin);
        assert_eq!(code, Some(0), "{text}");
        assert!(!text.contains(password), "the password was printed: {text}");
        let (can_login, member, verifier) = role(login.clone()).await.expect("the login exists");
        assert!(can_login && member, "login {can_login}, member {member}");
        verifiers.push(verifier.expect("a password is set"));
    }
    assert_ne!(
        verifiers[0], verifiers[1],
        "the second run set the new password"
    );

    // Through that login the archive reads and cannot be written.
    let reader = admin.replacen("://postgres@", &format!("://{login}@"), 1);
    let archive = store::open_archive(&DatabaseUrl::Postgres(reader.clone()), None)
        .await
        .unwrap();
    archive.stats().await.unwrap();
    let conn = sqlx::PgPool::connect(&reader).await.unwrap();
    let err = sqlx::query("DELETE FROM relay")
        .execute(&conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    // Refused: a name that would need quoting, no password, SQLite. Exit code 2, nothing made.
    let bad = "api\"; DROP ROLE postgres; --";
    let (code, text) = migrate(bad, Some("pw"), admin);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("read-only login") && text.contains("a-z, 0-9"),
        "{text}"
    );
    assert!(role(bad.into()).await.is_none());
    let other = format!("{login}_2");
    let (code, text) = migrate(&other, None, admin);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("password must be"), "{text}");
    assert!(role(other).await.is_none());
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("b.db");
    let (code, text) = migrate("brotr_api", Some("pw"), sqlite.to_str().unwrap());
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("SQLite has no roles"), "{text}");
}

/// The per-IP request rate: HTTP requests past the burst get 429 with a JSON error naming the
/// reason, and relay messages a NOTICE; the health and metrics routes are never limited (the
/// kubelet and Prometheus share an address with nobody's quota); refusals are counted.
#[tokio::test]
async fn the_request_rate_is_limited_per_address_but_not_health_or_metrics() {
    let (url, _dir) = fresh_sqlite_url();
    let cfg = ApiConfig {
        requests_per_second: 1,
        burst: 3,
        ..test_cfg()
    };
    let served = serve_with(&url, Schema::Full, cfg, &dataset()).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(get(served.addr, "/v1/stats", "application/json").await.0);
    }
    assert_eq!(&codes[..3], &[200, 200, 200], "the burst passes: {codes:?}");
    assert!(codes[3..].contains(&429), "past the burst: {codes:?}");
    let (status, _, body) = get(served.addr, "/v1/events?limit=1", "application/json").await;
    assert_eq!(status, 429, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"], "rate_limited", "{body}");
    for path in ["/healthz", "/readyz", "/metrics", "/healthz", "/metrics"] {
        assert_eq!(get(served.addr, path, "*/*").await.0, 200, "{path}");
    }
    let (_, _, metrics) = get(served.addr, "/metrics", "text/plain").await;
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("brotr_api_refusals_total{reason=\"rate_limited\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 2.0, "refusals counted: {refused}");
    // Relay messages draw on the same budget: a NOTICE, and the connection stays up. (The
    // upgrade is a request too: wait for the budget to refill.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut ws = connect(served.addr).await;
    let mut notices = 0;
    for i in 0..4 {
        ws.send(Message::Text(format!(r#"["CLOSE","s{i}"]"#).into()))
            .await
            .unwrap();
    }
    while let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(500), ws.next()).await
    {
        let v: Value = serde_json::from_str(&t).unwrap();
        if v[0] == "NOTICE" && v[1].as_str().unwrap_or("").starts_with("rate-limited") {
            notices += 1;
        }
    }
    assert!(notices >= 1, "a NOTICE for messages past the rate");
}

/// Behind a trusted proxy (an Ingress controller) the per-address rate applies per client, read
/// from `X-Forwarded-For`; from anyone else the header is ignored, so it cannot be used to dodge
/// the limit.
#[tokio::test]
async fn the_rate_follows_x_forwarded_for_only_from_trusted_proxies() {
    async fn statuses(addr: SocketAddr, forwarded_for: &str, n: usize) -> Vec<u16> {
        let client = reqwest::Client::new();
        let mut codes = Vec::new();
        for _ in 0..n {
            let r = client
                .get(format!("http://{addr}/v1/stats"))
                .header("x-forwarded-for", forwarded_for)
                .send()
                .await
                .expect("http");
            codes.push(r.status().as_u16());
        }
        codes
    }
    let (url, _dir) = fresh_sqlite_url();
    let limited = ApiConfig {
        requests_per_second: 1,
        burst: 3,
        ..test_cfg()
    };
    // The test client is 127.0.0.1: trusted here, so each forwarded client has its own budget.
    let trusting = ApiConfig {
        trusted_proxies: vec!["127.0.0.0/8".into()],
        ..limited.clone()
    };
    let served = serve_with(&url, Schema::Full, trusting, &dataset()).await;
    let a = statuses(served.addr, "198.51.100.1", 5).await;
    assert!(a.contains(&429), "client A past its burst: {a:?}");
    let b = statuses(served.addr, "203.0.113.9, 127.0.0.1", 3).await;
    assert_eq!(b, [200, 200, 200], "client B has its own budget: {b:?}");
    // Not trusted: the header is ignored and everyone shares 127.0.0.1's budget.
    let (url, _dir2) = fresh_sqlite_url();
    let served = serve_with(&url, Schema::Full, limited, &dataset()).await;
    let a = statuses(served.addr, "198.51.100.1", 4).await;
    let b = statuses(served.addr, "203.0.113.9", 2).await;
    assert!(
        a.contains(&429) && b.iter().all(|c| *c == 429),
        "a forged header buys nothing: {a:?} then {b:?}"
    );
}

/// A second Brotr whose only relay is this api archives the same events, by NIP-77: its
/// synchronizer reconciles against the api's negentropy responder and fetches each event once.
/// Re-synced with nothing new, it moves under 2% of the first sync's bytes.
async fn a_second_brotr_mirrors_the_archive_by_nip77(url: DatabaseUrl) {
    const NOW: i64 = 1_800_000_000;
    let keys: Vec<Keys> = (0..5).map(|_| Keys::generate()).collect();
    let events: Vec<Event> = (0..2_000u64)
        .map(|i| {
            EventBuilder::new(
                Kind::from([1u16, 7, 1, 30023, 1][i as usize % 5]),
                format!("event {i}"),
            )
            .tag(Tag::parse(["t", "mirror"]).unwrap())
            .custom_created_at(Timestamp::from(NOW as u64 - (i * 7_919) % 86_400))
            .sign_with_keys(&keys[i as usize % 5])
            .unwrap()
        })
        .collect();
    let served = serve_with(&url, Schema::Full, test_cfg(), &events).await;
    let api_url = format!("ws://{}", served.addr);

    let (b_url, _b_dir) = fresh_sqlite_url();
    let b = common::open(&b_url, Schema::Full).await;
    b.insert_relays(&[store::RelayRow {
        url: brotr_probe::model::RelayUrl::parse_allowing_local(&api_url).unwrap(),
        discovered_at: NOW,
    }])
    .await
    .unwrap();
    let sync = common::synchronizer(brotr_probe::config::SyncConfig::default());
    let first = sync.run_cycle(&common::ctx(&b, NOW)).await.unwrap();
    assert_eq!(first.relays_failed, 0, "{first:?}");
    assert_eq!(
        first.negentropy_windows, 1,
        "reconciled by NIP-77: {first:?}"
    );
    assert_eq!(
        first.wire.events_received, 2_000,
        "each event fetched once: {first:?}"
    );

    // The same archive: every id, nothing else.
    let all = brotr_probe::store::query::EventQuery {
        limit: 10_000,
        ..Default::default()
    };
    let ids = |rows: Vec<store::StoredEvent>| {
        let mut v: Vec<[u8; 32]> = rows.iter().map(|e| e.id).collect();
        v.sort();
        v
    };
    let a_archive = store::open_archive(&url, None).await.unwrap();
    let a_ids = ids(a_archive.query_events(&all).await.unwrap());
    let b_archive = store::open_archive(&b_url, None).await.unwrap();
    let b_ids = ids(b_archive.query_events(&all).await.unwrap());
    assert_eq!(a_ids.len(), 2_000);
    assert_eq!(a_ids, b_ids, "the mirror holds exactly the api's events");

    // Nothing new: fingerprints only.
    let again = sync.run_cycle(&common::ctx(&b, NOW + 60)).await.unwrap();
    assert_eq!(again.wire.events_received, 0, "{again:?}");
    let ratio = again.wire.bytes_in as f64 / first.wire.bytes_in as f64;
    println!(
        "mirror by NIP-77: first sync {} bytes in, re-sync {} bytes in ({:.3}%)",
        first.wire.bytes_in,
        again.wire.bytes_in,
        ratio * 100.0
    );
    assert!(
        ratio < 0.02,
        "re-sync read {ratio:.4} of the first sync's bytes"
    );
}

#[tokio::test]
async fn a_second_brotr_mirrors_a_sqlite_archive_by_nip77() {
    let (url, _dir) = fresh_sqlite_url();
    a_second_brotr_mirrors_the_archive_by_nip77(url).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn a_second_brotr_mirrors_a_postgres_archive_by_nip77() {
    a_second_brotr_mirrors_the_archive_by_nip77(fresh_pg_url().await).await;
}

/// Latencies of `n` REQs (each 50 kind-1 events then EOSE) on one connection, in ms, sorted.
async fn good_client(addr: SocketAddr, n: usize) -> Vec<f64> {
    let mut ws = connect(addr).await;
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let t = std::time::Instant::now();
        let got = req(
            &mut ws,
            &format!("g{i}"),
            &[json!({"kinds": [1], "limit": 50})],
        )
        .await
        .expect("the well-behaved client is served");
        assert_eq!(got.len(), 50);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        send(&mut ws, json!(["CLOSE", format!("g{i}")])).await;
    }
    ms.sort_by(f64::total_cmp);
    ms
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Reads until the server ends the connection (true) or `within` passes (false); the text frames
/// seen on the way.
async fn until_cut(ws: &mut Ws, within: Duration) -> (bool, Vec<String>) {
    let mut frames = Vec::new();
    let cut = tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(t))) => frames.push(t.to_string()),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok();
    (cut, frames)
}

/// Hostile clients (10,000 subscriptions, a filter of 10,000 authors, a reader that never reads,
/// malformed frames) are refused, then cut, and a well-behaved client on the same server keeps
/// getting complete answers meanwhile. Its p50/p95 before and during are printed (a figure for
/// BENCHMARKS.md, not an assertion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_refused_or_cut_while_others_are_served() {
    let (url, _dir) = fresh_sqlite_url();
    let keys = Keys::generate();
    let events: Vec<Event> = (0..3_000u64)
        .map(|i| {
            EventBuilder::text_note(format!("note {i} {}", "x".repeat(200)))
                .custom_created_at(Timestamp::from(1_700_000_000 + i))
                .sign_with_keys(&keys)
                .unwrap()
        })
        .collect();
    // Everyone here is 127.0.0.1: the per-address rate and connection limits are set out of
    // the way, so what is measured is the per-connection defences.
    let cfg = ApiConfig {
        requests_per_second: 1_000_000,
        burst: 1_000_000,
        max_connections_per_ip: 100,
        ..ApiConfig::default()
    };
    let max_subs = cfg.max_subscriptions as usize;
    let served = serve_with(&url, Schema::Full, cfg, &events).await;
    let addr = served.addr;
    let before = good_client(addr, 100).await;

    // 10,000 subscriptions on one connection.
    let subs = tokio::spawn(async move {
        // Read while sending: this client is hostile, not slow.
        let (mut tx, mut rx) = connect(addr).await.split();
        let reader = tokio::spawn(async move {
            let (mut eose, mut blocked, mut cut) = (0, 0, false);
            while eose + blocked < 10_000 {
                let frame = tokio::time::timeout(Duration::from_secs(10), rx.next()).await;
                let Ok(Some(Ok(Message::Text(t)))) = frame else {
                    cut = matches!(frame, Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))));
                    break;
                };
                let m: Value = serde_json::from_str(&t).unwrap();
                match m[0].as_str() {
                    Some("EOSE") => eose += 1,
                    Some("CLOSED") if m[2].as_str().unwrap_or("").starts_with("blocked:") => {
                        blocked += 1
                    }
                    _ => {}
                }
            }
            (eose, blocked, cut)
        });
        for i in 0..10_000 {
            let m = json!(["REQ", format!("h{i}"), {"kinds": [1], "limit": 1}]);
            // The server may cut this client before it has sent them all.
            if tx.send(Message::Text(m.to_string().into())).await.is_err() {
                break;
            }
        }
        reader.await.unwrap()
    });
    // A filter of 10,000 authors (660 kB: over the message limit).
    let authors = tokio::spawn(async move {
        let mut ws = connect(addr).await;
        let authors: Vec<String> = (0..10_000).map(|i| format!("{i:064x}")).collect();
        let _ = ws
            .send(Message::Text(
                json!(["REQ", "a", {"authors": authors}]).to_string().into(),
            ))
            .await;
        until_cut(&mut ws, Duration::from_secs(10)).await
    });
    // A reader that asks for everything, many times, and never reads.
    let slow = tokio::spawn(async move {
        let mut ws = connect(addr).await;
        for i in 0..40 {
            send(&mut ws, json!(["REQ", format!("s{i}"), {"limit": 500}])).await;
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (cut, frames) = until_cut(&mut ws, Duration::from_secs(20)).await;
        (cut, frames.len())
    });
    // Malformed frames.
    let garbage = tokio::spawn(async move {
        let mut ws = connect(addr).await;
        for i in 0..2_000 {
            let frame = match i % 4 {
                0 => Message::Text("{".into()),
                1 => Message::Text(r#"["REQ"]"#.into()),
                2 => Message::Text(r#"["REQ","x",{"kinds":"one"}]"#.into()),
                _ => Message::Binary(vec![0xff; 64].into()),
            };
            if ws.send(frame).await.is_err() {
                break;
            }
        }
        until_cut(&mut ws, Duration::from_secs(10)).await
    });
    let during = good_client(addr, 100).await;

    // Refused past the limit, then cut after 32 refusals: never more than the limit open.
    let (eose, blocked, cut) = subs.await.unwrap();
    assert!(
        eose <= max_subs,
        "{eose} subscriptions open, at most {max_subs}"
    );
    assert!(
        cut && blocked <= 32,
        "10,000 subscriptions: {eose} open, {blocked} refused, cut {cut}"
    );
    println!("10,000 subscriptions: {eose} opened, {blocked} refused, cut: {cut}");
    let (cut, _) = authors.await.unwrap();
    assert!(cut, "the 10,000-author filter's connection is cut");
    let (cut, frames) = slow.await.unwrap();
    assert!(cut, "the reader that never reads is cut");
    assert!(
        frames < 40 * 500,
        "cut before it got everything ({frames} frames)"
    );
    // Malformed frames are answered with NOTICEs, then the connection is cut after 32.
    let (cut, notices) = garbage.await.unwrap();
    assert!(cut, "the client sending malformed frames is cut");
    assert!(
        (2..=34).contains(&notices.len()),
        "{} NOTICEs before the cut",
        notices.len()
    );
    // It kept writing after the cut, so its last frames may be lost to the reset; one that
    // reads each answer sees why it is cut.
    let mut ws = connect(addr).await;
    let mut answers = Vec::new();
    for _ in 0..32 {
        ws.send(Message::Text("{".into())).await.unwrap();
        answers.push(next(&mut ws).await.to_string());
    }
    let (cut, last) = until_cut(&mut ws, Duration::from_secs(5)).await;
    assert!(cut, "cut after 32 refusals");
    answers.extend(last);
    assert_eq!(
        answers.len(),
        33,
        "32 refusals, then the reason: {answers:?}"
    );
    assert!(
        answers[32].contains("blocked: 32 messages refused"),
        "the last NOTICE says why: {}",
        answers[32]
    );
    // The server is still up for everyone else.
    good_client(addr, 5).await;
    let (_, _, metrics) = get(addr, "/metrics", "text/plain").await;
    assert!(
        metrics.contains("brotr_api_refusals_total{reason=\"slow_reader\"}"),
        "the slow reader counted"
    );
    assert!(
        metrics.contains("brotr_api_refusals_total{reason=\"misbehaving\"}"),
        "the cut misbehaving clients counted"
    );
    println!(
        "hostile clients: well-behaved REQ (50 events) p50 {:.2} ms p95 {:.2} ms before; \
         p50 {:.2} ms p95 {:.2} ms during ({:.2}x at p95)",
        pct(&before, 0.5),
        pct(&before, 0.95),
        pct(&during, 0.5),
        pct(&during, 0.95),
        pct(&during, 0.95) / pct(&before, 0.95)
    );
}

/// Direct messages (kind 4) and gift wraps (1059) are archived when a relay gave them to the
/// pipeline's key after AUTH; the api never serves them to anyone (`api.hiddenKinds`), by REQ,
/// COUNT or HTTP. An operator who wants them served says so.
#[tokio::test]
async fn direct_messages_are_archived_but_never_served() {
    let keys = Keys::generate();
    let note = EventBuilder::text_note("public")
        .sign_with_keys(&keys)
        .unwrap();
    let dm = EventBuilder::new(Kind::from(4u16), "ciphertext?iv=abc")
        .tag(Tag::parse(["p", &Keys::generate().public_key().to_hex()]).unwrap())
        .sign_with_keys(&keys)
        .unwrap();
    let wrap = EventBuilder::new(Kind::from(1059u16), "sealed")
        .sign_with_keys(&Keys::generate())
        .unwrap();
    let all = [note.clone(), dm.clone(), wrap.clone()];
    let (url, _dir) = fresh_sqlite_url();
    let served = serve_with(&url, Schema::Full, test_cfg(), &all).await;
    assert_eq!(
        served.store.counts().await.unwrap().events,
        3,
        "all three archived"
    );
    let mut ws = connect(served.addr).await;
    let ids = |evs: Vec<Event>| evs.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(req(&mut ws, "a", &[json!({})]).await.unwrap()),
        [note.id]
    );
    assert_eq!(
        req(&mut ws, "b", &[json!({"kinds": [4, 1059]})])
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        req(
            &mut ws,
            "c",
            &[json!({"ids": [dm.id.to_hex(), wrap.id.to_hex()]})]
        )
        .await
        .unwrap(),
        []
    );
    send(&mut ws, json!(["COUNT", "n", {}])).await;
    assert_eq!(next(&mut ws).await[2]["count"], 1);
    let (status, _, body) = get(served.addr, "/v1/events?kinds=1,4,1059", "application/json").await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{body}");

    // An archive configured to serve them does.
    let (url, _dir2) = fresh_sqlite_url();
    let open = ApiConfig {
        hidden_kinds: vec![],
        ..test_cfg()
    };
    let served = serve_with(&url, Schema::Full, open, &all).await;
    let mut ws = connect(served.addr).await;
    assert_eq!(req(&mut ws, "a", &[json!({})]).await.unwrap().len(), 3);
}
