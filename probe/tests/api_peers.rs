//! `brotr-probe api` checked by clients and a relay no one here wrote: go-nostr and nostr-tools
//! query it, and for every filter field its answer is the answer of nostr-rs-relay holding the
//! same events; openapi-spec-validator checks its OpenAPI document and schemathesis sends every
//! route the requests that document allows.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use brotr_probe::config::ApiConfig;
use brotr_probe::metrics::Metrics;
use brotr_probe::model::{EventRow, Schema};
use brotr_probe::serve::{self, Api};
use brotr_probe::store;
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Tag, Timestamp};
use serde_json::json;

use common::external::{NostrRsRelay, NostrRsRelayConfig, Tool, verify_with_nostr_tools};
use common::{fresh_sqlite_url, relay, tag};

/// 60 events: four authors, kinds 1, 6, 7, 1111 and 30023 (each its own `d`), e/p/t/d tags, one a
/// second (nostr-rs-relay breaks ties in created_at its own way; NIP-01 order is checked by
/// tests/api.rs). No replaceable kind (0, 3, 1xxxx) and no repeated `d`: nostr-rs-relay keeps
/// only the newest of those, where the archive keeps every version it saw.
fn dataset() -> Vec<Event> {
    let keys: Vec<Keys> = (0..4).map(|_| Keys::generate()).collect();
    (0..60u64)
        .map(|i| {
            let k = &keys[(i % 4) as usize];
            let kind = [1u16, 7, 1, 6, 30023, 1111][(i % 6) as usize];
            let mut tags: Vec<Tag> = vec![tag(&["t", ["nostr", "rust", "go"][(i % 3) as usize]])];
            if i % 5 == 0 {
                tags.push(tag(&["p", &keys[3].public_key().to_hex()]));
            }
            if i % 7 == 0 {
                tags.push(tag(&["e", &format!("{:064x}", i / 7)]));
            }
            if kind == 30023 {
                tags.push(tag(&["d", &format!("post-{i}")]));
            }
            EventBuilder::new(Kind::from(kind), format!("event {i}"))
                .tags(tags)
                .custom_created_at(Timestamp::from(1_700_000_000 + i * 60))
                .sign_with_keys(k)
                .unwrap()
        })
        .collect()
}

/// The events one client received for `filter` from `url`, as ids.
fn query(client: &str, url: &str, filter: &serde_json::Value) -> Vec<String> {
    let out = match client {
        "go-nostr" => Command::new(Tool::GoClient.path())
            .args(["req", "-relay", url, "-filter", &filter.to_string()])
            .output(),
        "nostr-tools" => {
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/nostr-tools-req.mjs");
            // Tool::NostrTools.path() checks the install; the script imports from its prefix.
            Tool::NostrTools.path();
            Command::new("node")
                .arg("--experimental-websocket")
                .arg(script)
                .args([url, &filter.to_string()])
                .output()
        }
        _ => unreachable!(),
    }
    .unwrap_or_else(|e| panic!("{client}: {e}"));
    assert!(
        out.status.success(),
        "{client} REQ {filter} on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let e = Event::from_json(l).unwrap_or_else(|e| panic!("{client}: {e}: {l}"));
            e.id.to_hex()
        })
        .collect()
}

fn publish(url: &str, events: &[Event]) {
    let mut child = Command::new(Tool::GoClient.path())
        .args(["publish", "-relay", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("go client");
    {
        let mut stdin = child.stdin.take().unwrap();
        for e in events {
            writeln!(stdin, "{}", e.as_json()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "publishing to {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn serve(
    events: &[Event],
) -> (
    SocketAddr,
    tempfile::TempDir,
    tokio::sync::oneshot::Sender<()>,
) {
    let (url, dir) = fresh_sqlite_url();
    let store = common::open(&url, Schema::Full).await;
    let rows: Vec<EventRow> = events
        .iter()
        .map(|e| EventRow::from_event(e).unwrap())
        .collect();
    store
        .insert_events(&relay("wss://relay.example.com"), 1_700_000_000, &rows)
        .await
        .unwrap();
    let archive = store::open_archive(&url, None).await.unwrap();
    // Clients here send many requests from one address: not the rate limit's business.
    let cfg = ApiConfig {
        requests_per_second: 100_000,
        burst: 100_000,
        ..ApiConfig::default()
    };
    let api = Api::new(archive, cfg, Metrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve::serve(listener, api, async move {
        let _ = stopped.await;
    }));
    (addr, dir, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nostr-rs-relay, go-nostr's client and nostr-tools (e2e/tools.sh)"]
async fn clients_we_did_not_write_get_what_nostr_rs_relay_answers() {
    let events = dataset();
    let (addr, _dir, _stop) = serve(&events).await;
    let ours = format!("ws://{addr}/");
    let peer = NostrRsRelay::start(&NostrRsRelayConfig::default()).await;
    publish(&peer.url, &events);

    let author = events[0].pubkey.to_hex();
    let other = events[1].pubkey.to_hex();
    let p = events[3].pubkey.to_hex();
    let filters = [
        json!({}),
        json!({"ids": [events[5].id.to_hex(), events[40].id.to_hex()]}),
        json!({"authors": [author]}),
        json!({"authors": [author, other], "kinds": [1]}),
        json!({"kinds": [7, 6]}),
        json!({"kinds": [30023], "#d": ["post-4", "post-10"]}),
        json!({"#t": ["rust"]}),
        json!({"#p": [p]}),
        json!({"#e": [format!("{:064x}", 1)]}),
        json!({"#t": ["go"], "#p": [p]}),
        json!({"since": 1_700_000_600, "until": 1_700_001_800}),
        json!({"since": 1_700_000_600, "until": 1_700_000_600}),
        json!({"kinds": [1], "limit": 4}),
        json!({"authors": [other], "limit": 2}),
        json!({"#t": ["nostr"], "since": 1_700_001_000, "limit": 3}),
        json!({"kinds": [9999]}),
    ];
    for filter in &filters {
        // nostr-rs-relay without a limit answers oldest first: compare what is answered.
        let want: BTreeSet<String> = query("go-nostr", &peer.url, filter).into_iter().collect();
        for client in ["go-nostr", "nostr-tools"] {
            let got = query(client, &ours, filter);
            assert_eq!(
                got.len(),
                want.len(),
                "{client} {filter}: {got:?} vs nostr-rs-relay {want:?}"
            );
            assert_eq!(
                got.iter().cloned().collect::<BTreeSet<_>>(),
                want,
                "{client} {filter}: ours vs nostr-rs-relay"
            );
            // Newest first (one event a second here, so no ties), as nostr-tools received them
            // (go-nostr's QuerySync does not keep the arrival order).
            if client != "nostr-tools" {
                continue;
            }
            let order: Vec<&Event> = got
                .iter()
                .map(|id| events.iter().find(|e| &e.id.to_hex() == id).unwrap())
                .collect();
            assert!(
                order.windows(2).all(|w| w[0].created_at > w[1].created_at),
                "{client} {filter}: not newest first"
            );
        }
    }
    assert!(query("go-nostr", &ours, &json!({})).len() == events.len());
    // Every event we serve is valid for nostr-tools' own verifier too.
    assert!(verify_with_nostr_tools(&events).iter().all(|ok| *ok));
}

/// The OpenAPI document passes openapi-spec-validator (OpenAPI 3.1), and schemathesis, reading
/// only that document, exercises every route: no answer is a 5xx, every answer (status, content
/// type, headers, body) is one the document declares, and requests the document calls invalid
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs openapi-spec-validator and schemathesis (e2e/tools.sh openapi-check)"]
async fn the_openapi_document_validates_and_every_route_holds_to_it() {
    let (addr, _dir, _stop) = serve(&dataset()).await;
    let doc = format!("http://{addr}/openapi.json");
    let validator = Tool::OpenApiSpecValidator.path();
    let st = Tool::Schemathesis.path();
    // openapi-spec-validator reads a file: the document as the api serves it.
    let file = tempfile::NamedTempFile::with_suffix(".json").unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = reqwest::get(&doc).await.unwrap().text().await.unwrap();
    std::fs::write(file.path(), body).unwrap();
    let path = file.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let v = Command::new(&validator).arg(&path).output().unwrap();
        let s = Command::new(&st)
            .args([
                "--no-color",
                "run",
                &doc,
                "--checks",
                "all",
                // The document does not spell out every rule a handler checks (a hex id's
                // length, a cursor's form, a relay URL's shape): such a request is a 400, which
                // this check would call a schema-valid request rejected. Every other check runs.
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "40",
                "--phases",
                "examples,coverage,fuzzing",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap();
        (v, s)
    })
    .await
    .unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(
        out.0.status.success(),
        "openapi-spec-validator: {}",
        text(&out.0)
    );
    let report = text(&out.1);
    println!("{report}");
    assert!(
        out.1.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // Every operation of the document (the five /v1 routes) was exercised.
    assert!(
        report.contains("Selected: 5/5") && report.contains("Tested: 5"),
        "schemathesis did not exercise every route"
    );
}
