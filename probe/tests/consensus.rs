//! A liar outvoted: three real monitor processes (each its own key, all declaring a vantage
//! point in Frankfurt) check two loopback relays, one of them stopped; a lying third-party
//! monitor in Tokyo publishes signed kind 10166 and 30166 events to the running relay, saying
//! the stopped one is up with an RTT light cannot make. The synchronizer archives the lies,
//! `maintain consensus` judges them round after round, and the api serves the verdicts: the
//! stopped relay stays offline, the liar is flagged, and its weight falls every round.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use brotr_probe::config::ApiConfig;
use brotr_probe::metrics::Metrics;
use brotr_probe::model::{RelayUrl, Schema};
use brotr_probe::serve::{self, Api, Site};
use brotr_probe::store::{self, DatabaseUrl, RelayRow};
use futures_util::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Tag, Timestamp};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::{NEEDS_PG, fresh_pg_url, fresh_sqlite_url, peers};

/// Frankfurt and Tokyo: about 9,300 km apart, so at least ~93 ms there and back in fibre.
const FRANKFURT: &str = "u0yjj";
const TOKYO: &str = "xn76u";

/// Runs the binary without blocking the runtime (the loopback relays live on it).
async fn probe(db: &str, config: &Path, key: Option<&str>, args: &[&str]) -> Output {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_brotr-probe"));
    c.env_remove("DATABASE_URL")
        .env_remove("BROTR_SCHEMA")
        .env_remove("BROTR_MONITOR_KEY")
        .args(["--database", db, "--config"])
        .arg(config)
        .args(args);
    if let Some(k) = key {
        c.env("BROTR_MONITOR_KEY", k);
    }
    c.output().await.expect("run brotr-probe")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn tag(parts: &[&str]) -> Tag {
    Tag::parse(parts.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).expect("tag")
}

/// Sends `events` to the relay at `url` and waits for each OK true.
async fn publish(url: &str, events: &[Event]) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    for e in events {
        let e: Value = serde_json::from_str(&e.as_json()).unwrap();
        ws.send(Message::Text(json!(["EVENT", e]).to_string().into()))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("OK within 5 s")
            .expect("open")
            .expect("frame");
        let v: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        assert_eq!(v[0], "OK", "{v}");
        assert_eq!(v[2], true, "relay refused the liar's event: {v}");
    }
}

/// The liar's round: its announcement from Tokyo, and 30166s for both relays. `impossible`:
/// RTTs of 1 ms (and the stopped relay placed in Frankfurt); otherwise a plausible 300 ms, on
/// the stopped relay only.
fn lies(liar: &Keys, up: &str, stopped: &str, impossible: bool) -> Vec<Event> {
    let now = Timestamp::now();
    let announce = EventBuilder::new(Kind::Custom(10166), "")
        .tags([
            tag(&["frequency", "3600"]),
            tag(&["c", "open"]),
            tag(&["g", TOKYO]),
        ])
        .custom_created_at(now)
        .sign_with_keys(liar)
        .unwrap();
    let rtt = if impossible { "1" } else { "300" };
    let report = |d: &str, place: bool| {
        let mut tags = vec![
            tag(&["d", d]),
            tag(&["n", "clearnet"]),
            tag(&["rtt-open", rtt]),
        ];
        if place {
            tags.push(tag(&["g", FRANKFURT]));
        }
        EventBuilder::new(Kind::Custom(30166), "{}")
            .tags(tags)
            .custom_created_at(now)
            .sign_with_keys(liar)
            .unwrap()
    };
    if impossible {
        vec![announce, report(up, false), report(stopped, true)]
    } else {
        // Only the lie: a true report on the running relay would earn it a point.
        vec![announce, report(stopped, false)]
    }
}

/// An api over `url` on a loopback port.
async fn serve_api(url: &DatabaseUrl) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let archive = store::open_archive(url, None).await.expect("open archive");
    let cfg = ApiConfig {
        requests_per_second: 10_000,
        burst: 10_000,
        ..ApiConfig::default()
    };
    let api = Api::with_site(archive, cfg, Site::default(), Metrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve::serve(listener, api, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn get(addr: SocketAddr, path: &str, accept: &str) -> (u16, String) {
    let (status, _, body) = common::http_get(addr, path, accept).await;
    (status, body)
}

/// REQ `filter` on the api's relay: the events until EOSE.
async fn req(addr: SocketAddr, filter: Value) -> Vec<Event> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .expect("connect to the api");
    ws.send(Message::Text(
        json!(["REQ", "c", filter]).to_string().into(),
    ))
    .await
    .unwrap();
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .expect("frame");
        let v: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        match v[0].as_str() {
            Some("EVENT") => out.push(Event::from_json(v[2].to_string()).unwrap()),
            Some("EOSE") => return out,
            _ => panic!("unexpected {v}"),
        }
    }
}

fn enc(url: &str) -> String {
    url::form_urlencoded::byte_serialize(url.as_bytes()).collect()
}

/// The consensus on `relay` as the api serves it.
async fn consensus_of(addr: SocketAddr, relay: &str) -> Value {
    let (code, body) = get(
        addr,
        &format!("/v1/relays/{}", enc(relay)),
        "application/json",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["consensus"].clone()
}

fn observation<'a>(c: &'a Value, monitor: &str) -> &'a Value {
    c["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["monitor"] == monitor)
        .unwrap_or_else(|| panic!("no observation of {monitor} in {c:#}"))
}

fn flag_of<'a>(c: &'a Value, monitor: &str) -> Option<&'a Value> {
    c["verdict"]["disagreements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["monitor"] == monitor)
        .map(|d| &d["flag"])
}

async fn liar_outvoted(url: DatabaseUrl) {
    let db = match &url {
        DatabaseUrl::Postgres(u) => u.clone(),
        DatabaseUrl::Sqlite(p) => p.display().to_string(),
    };
    // Relay `up` runs all along; relay `stopped` is a port nothing listens on any more.
    let (_up_relay, up) = peers::relay_with(&[]).await;
    let stopped = format!("ws://{}", peers::closed_port().await);
    // The consensus publishes its verdicts to `up` with a key of its own.
    let consensus_keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("consensus.key");
    std::fs::write(&key_file, consensus_keys.secret_key().to_secret_hex()).unwrap();
    let config = dir.path().join("probe.yaml");
    std::fs::write(
        &config,
        format!(
            "limits: {{allowPrivate: true}}\n\
             networks: {{clearnet: {{timeoutSecs: 1.5}}}}\n\
             monitor:\n  recheckSecs: 0\n  checks:\n\
             \x20   ssl: {{enabled: false}}\n    dns: {{enabled: false}}\n    geo: {{enabled: false}}\n\
             \x20   net: {{enabled: false}}\n    http: {{enabled: false}}\n    nip77: {{enabled: false}}\n\
             \x20 publish: {{relays: [], geohash: {FRANKFURT}}}\n\
             consensus:\n  publish: {{enabled: true, relays: [\"{up}\"], keyFile: \"{}\", timeoutSecs: 3}}\n",
            key_file.display()
        ),
    )
    .unwrap();
    ok(&probe(&db, &config, None, &["migrate"]).await, "migrate");

    let archive = common::open(&url, Schema::Full).await;
    archive
        .insert_relays(&[&up, &stopped].map(|u| RelayRow {
            url: RelayUrl::parse_allowing_local(u).unwrap(),
            discovered_at: 1,
        }))
        .await
        .unwrap();
    let (up, stopped) = (
        RelayUrl::parse_allowing_local(&up)
            .unwrap()
            .as_str()
            .to_owned(),
        RelayUrl::parse_allowing_local(&stopped)
            .unwrap()
            .as_str()
            .to_owned(),
    );

    let monitors: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let liar = Keys::generate();
    let liar_hex = liar.public_key().to_hex();
    let (api, _stop) = serve_api(&url).await;
    let mut weights = Vec::new();
    for round in 0..3usize {
        // The three monitors run at once, as a fleet does.
        let keys: Vec<String> = monitors
            .iter()
            .map(|k| k.secret_key().to_secret_hex())
            .collect();
        let runs = futures_util::future::join_all(
            keys.iter()
                .map(|key| probe(&db, &config, Some(key), &["monitor", "--once"])),
        )
        .await;
        for out in &runs {
            ok(out, "monitor");
        }
        publish(&up, &lies(&liar, &up, &stopped, round < 2)).await;
        let out = probe(&db, &config, None, &["sync", "--once"]).await;
        // The stopped relay fails its attempt; the running one is archived.
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("sync cycle done")
                || out.status.success(),
            "sync: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ok(
            &probe(&db, &config, None, &["maintain", "consensus"]).await,
            "maintain consensus",
        );

        let c = consensus_of(api, &stopped).await;
        assert_eq!(c["label"], "offline", "round {round}: {c:#}");
        assert_eq!(c["verdict"]["online"]["value"], false);
        for k in &monitors {
            let o = observation(&c, &k.public_key().to_hex());
            assert_eq!(o["source"], "own");
            assert_eq!(o["open"], false);
            assert_eq!(o["region"], FRANKFURT);
        }
        let lie = observation(&c, &liar_hex);
        assert_eq!(
            (&lie["source"], &lie["open"]),
            (&json!("third_party"), &json!(true))
        );
        assert_eq!(lie["region"], TOKYO, "placed by its own 10166");
        let flag = flag_of(&c, &liar_hex).unwrap_or_else(|| panic!("liar not flagged: {c:#}"));
        if round < 2 {
            // 1 ms between Tokyo and Frankfurt: thrown out, it does not vote.
            assert_eq!(flag["kind"], "faster_than_light", "{c:#}");
            assert_eq!(lie["weight"], 0.0);
            assert_eq!(c["verdict"]["vantage_points"], 3);
        } else {
            // A plausible RTT votes, and is outvoted by three monitors.
            assert_eq!(flag["kind"], "against_majority", "{c:#}");
            assert_eq!(flag["said_open"], true);
            assert_eq!(c["verdict"]["vantage_points"], 4);
            assert_eq!(c["verdict"]["agreeing"], 3);
            let w = lie["weight"].as_f64().unwrap();
            assert!(
                w > 0.0 && w < 0.5,
                "a liar weighs less than a newcomer: {w}"
            );
        }
        assert_eq!(c["verdict"]["agreement"][&liar_hex], false);

        // The running relay: online by our three; the liar's 1 ms from Tokyo against our
        // monitors' few ms from Frankfurt breaks physics too (no relay position needed).
        let c = consensus_of(api, &up).await;
        assert_eq!(c["label"], "online", "{c:#}");
        if round < 2 {
            assert_eq!(flag_of(&c, &liar_hex).unwrap()["kind"], "faster_than_light");
        }

        let tracks = archive
            .state_get("consensus", "track", Some(&liar_hex))
            .await
            .unwrap();
        let t = &tracks.first().expect("the liar has a track record").1;
        let (agreed, rounds) = (t["agreed"].as_f64().unwrap(), t["rounds"].as_f64().unwrap());
        assert_eq!(agreed, 0.0, "{t}");
        // Two reports a round, then one: each judged once, however many rounds see it.
        assert_eq!(rounds, [2.0, 4.0, 5.0][round], "{t}");
        weights.push((agreed + 1.0) / (rounds + 2.0));
        // Reports are replaced in place: wait a second so the next round's are newer.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    assert!(
        weights.windows(2).all(|w| w[1] < w[0]) && weights[0] < 0.5,
        "the liar's weight falls round after round: {weights:?}"
    );

    // The consensus as a NIP-66 monitor of its own: a signed 30166 for the running relay only,
    // naming the monitors it rests on, served by the api's relay from the archive.
    let got = req(
        api,
        json!({"kinds": [30166], "authors": [consensus_keys.public_key().to_hex()]}),
    )
    .await;
    assert!(!got.is_empty(), "no consensus event served");
    for e in &got {
        e.verify().expect("a valid signature");
        let tags: Vec<Vec<String>> = e.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        assert!(tags.contains(&vec!["d".into(), up.clone()]), "{tags:?}");
        assert!(tags.contains(&vec!["l".into(), "online".into(), "brotr.consensus".into()]));
    }
    let newest: Vec<Vec<String>> = got[0].tags.iter().map(|t| t.as_slice().to_vec()).collect();
    for k in &monitors {
        let v = vec!["vantage".into(), k.public_key().to_hex(), "agrees".into()];
        assert!(newest.contains(&v), "{newest:?}");
    }
    assert!(
        newest.contains(&vec!["vantage".into(), liar_hex.clone(), "flagged".into()]),
        "{newest:?}"
    );
    assert!(newest.iter().any(|t| t[0] == "rtt-open"), "{newest:?}");

    // The page and the map show the same verdicts.
    let (code, map) = get(api, "/v1/map", "application/json").await;
    assert_eq!(code, 200);
    let map: Value = serde_json::from_str(&map).unwrap();
    let verdict = |u: &str| {
        map["relays"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["url"] == u)
            .map(|r| r["verdict"].clone())
    };
    assert_eq!(verdict(&stopped), Some(json!("offline")));
    assert_eq!(verdict(&up), Some(json!("online")));
    let (code, html) = get(api, "/?verdict=offline", "text/html").await;
    assert_eq!(code, 200);
    assert!(html.contains(&format!("data-url=\"{stopped}\"")), "{html}");
    assert!(!html.contains(&format!("data-url=\"{up}\"")));
    let (code, html) = get(api, &format!("/relay?url={}", enc(&stopped)), "text/html").await;
    assert_eq!(code, 200);
    for k in monitors
        .iter()
        .map(Keys::public_key)
        .chain([liar.public_key()])
    {
        assert!(
            html.contains(&format!("data-monitor=\"{}\"", k.to_hex())),
            "{html}"
        );
    }
    assert!(html.contains("against the majority"), "{html}");
}

#[tokio::test]
async fn a_lying_monitor_is_outvoted_flagged_and_loses_weight_on_sqlite() {
    let (url, _dir) = fresh_sqlite_url();
    liar_outvoted(url).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn a_lying_monitor_is_outvoted_flagged_and_loses_weight_on_postgres() {
    let _ = NEEDS_PG;
    liar_outvoted(fresh_pg_url().await).await;
}

/// The page's and the map's bad input: a 400 naming the parameter, as HTML for a browser.
#[tokio::test]
async fn the_page_names_a_bad_filter_and_a_missing_relay() {
    let (url, _dir) = fresh_sqlite_url();
    let _ = common::open(&url, Schema::Full).await;
    let (api, _stop) = serve_api(&url).await;
    for (path, param) in [
        ("/?verdict=up", "verdict"),
        ("/?network=moon", "network"),
        ("/?country=Germany", "country"),
        ("/?sort=id", "sort"),
        ("/?page=0", "page"),
        ("/relay", "url"),
    ] {
        let (code, html) = get(api, path, "text/html").await;
        assert_eq!(code, 400, "{path}: {html}");
        assert!(
            html.contains(&format!("<code>{param}</code>")),
            "{path}: {html}"
        );
        assert!(html.contains("<!DOCTYPE html>"));
    }
    let (code, html) = get(api, "/relay?url=wss%3A%2F%2Fnowhere.example", "text/html").await;
    assert_eq!(code, 404);
    assert!(html.contains("no relay"), "{html}");
    // Only the built files are assets; without --web-dir none is served.
    assert_eq!(get(api, "/assets/app.js", "*/*").await.0, 404);
    assert_eq!(get(api, "/assets/..%2FCargo.toml", "*/*").await.0, 404);
    // An empty archive: an empty table, and the plain-text answer for non-browsers.
    let (code, html) = get(api, "/", "text/html").await;
    assert_eq!(code, 200);
    assert!(html.contains("No relays match."), "{html}");
    let (_, text) = get(api, "/", "*/*").await;
    assert!(text.starts_with("Brotr archive"), "{text}");
}

/// Publishing turned on without a key, or without a relay: exit 2 naming the setting, before
/// the database is touched.
#[tokio::test]
async fn publishing_without_a_key_or_a_relay_is_refused_naming_the_setting() {
    let (url, dir) = fresh_sqlite_url();
    let DatabaseUrl::Sqlite(path) = &url else {
        unreachable!()
    };
    let db = path.display().to_string();
    let config = dir.path().join("probe.yaml");
    for (yaml, says) in [
        (
            "consensus: {publish: {enabled: true, relays: [\"wss://relay.example.com\"]}}\n",
            "consensus.publish: needs a key: set keyFile or the environment variable BROTR_CONSENSUS_KEY",
        ),
        (
            "consensus: {publish: {enabled: true, keyEnv: BROTR_TEST_NO_SUCH_KEY_VAR}}\n",
            "needs a key",
        ),
    ] {
        std::fs::write(&config, yaml).unwrap();
        let out = probe(&db, &config, None, &["maintain", "consensus"]).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!path.exists(), "the database was not touched");
    }
    let key = dir.path().join("k");
    std::fs::write(&key, Keys::generate().secret_key().to_secret_hex()).unwrap();
    std::fs::write(
        &config,
        format!(
            "consensus: {{publish: {{enabled: true, keyFile: \"{}\"}}}}\n",
            key.display()
        ),
    )
    .unwrap();
    let out = probe(&db, &config, None, &["maintain", "consensus"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("consensus.publish: needs at least one relay"),
        "{err}"
    );
}
