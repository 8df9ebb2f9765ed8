//! The finder against a real HTTP server on loopback: good, nested, huge, HTML, wrong-shape,
//! empty and slow API answers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use brotr_probe::config::NetworksConfig;
use brotr_probe::model::Schema;
use brotr_probe::net::{HttpClient, tls_config};
use brotr_probe::services::Service;
use brotr_probe::services::finder::{ApiSource, Finder, FinderConfig};
use common::*;

async fn api_server() -> SocketAddr {
    let huge = || async {
        // 50 MiB, streamed: the client must stop at its cap without buffering it all.
        let chunk = bytes_of(1 << 20);
        let stream = futures_util::stream::iter(
            (0..50).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        );
        Body::from_stream(stream)
    };
    let app = Router::new()
        .route("/good", get(|| async { r#"["wss://a.example.com", "ws://b.example.com/", "http://web.example.com", "wss://127.0.0.1", "wss://10.1.2.3", "wss://a.example.com"]"# }))
        .route("/nested", get(|| async { r#"{"data": {"relays": [{"url": "wss://c.example.com"}, {"url": 7}]}}"# }))
        .route("/huge", get(huge))
        .route("/html", get(|| async { axum::response::Html("<html><body>not json</body></html>") }))
        .route("/object", get(|| async { r#"{"relays": {"a": 1}}"# }))
        .route("/empty", get(|| async { "" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "[]"
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn bytes_of(n: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b'['; n])
}

fn source(addr: SocketAddr, path: &str, expression: &str) -> ApiSource {
    ApiSource {
        url: format!("http://{addr}{path}"),
        select: expression.into(),
        enabled: true,
    }
}

#[tokio::test]
async fn good_sources_become_candidates_and_bad_ones_fail_alone() {
    let addr = api_server().await;
    let cfg = FinderConfig {
        sources: vec![
            source(addr, "/good", "[*]"),
            source(addr, "/nested", "data.relays[*].url"),
            source(addr, "/huge", "[*]"),
            source(addr, "/html", "[*]"),
            source(addr, "/object", "relays"),
            source(addr, "/empty", "[*]"),
            source(addr, "/slow", "[*]"),
            source(addr, "/missing", "[*]"),
        ],
        max_response_bytes: 5 << 20,
        timeout_secs: 1.0,
        ..FinderConfig::default()
    };
    let (url, _dir) = fresh_sqlite_url();
    let store = open(&url, Schema::Full).await;
    // The client may reach the loopback API; the URLs it returns are held to the SSRF rules.
    let http = HttpClient::new(&NetworksConfig::default(), tls_config(&[]), true).unwrap();
    let finder = Finder::with_http(cfg, http, false).unwrap();
    let r = finder.run_cycle(&ctx(&store, 1000)).await.unwrap();
    assert_eq!((r.sources_fetched, r.sources_failed), (2, 6), "{r:?}");
    assert_eq!(r.rejected, 3, "http:// and the two private addresses");
    let mut got: Vec<String> = store
        .candidates(100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.url.to_string())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "ws://b.example.com",
            "wss://a.example.com",
            "wss://c.example.com"
        ]
    );

    // Successful sources cool down; failed ones are retried next cycle.
    let again = finder.run_cycle(&ctx(&store, 1001)).await.unwrap();
    assert_eq!(
        (
            again.sources_cooling,
            again.sources_failed,
            again.candidates
        ),
        (2, 6, 0)
    );
    let later = finder.run_cycle(&ctx(&store, 1000 + 86_400)).await.unwrap();
    assert_eq!(
        (later.sources_fetched, later.candidates),
        (2, 0),
        "refetched, nothing new"
    );
}

#[tokio::test]
async fn the_api_client_refuses_private_addresses_unless_allowed() {
    let addr = api_server().await;
    let guarded = HttpClient::new(&NetworksConfig::default(), tls_config(&[]), false).unwrap();
    let url = format!("http://localhost:{}/good", addr.port());
    let err = guarded
        .get_ok(&url, "application/json", 1 << 20, Duration::from_secs(2))
        .await
        .unwrap_err();
    let chain = format!("{err} {:?}", err);
    assert!(chain.contains("SSRF guard"), "{chain}");
}
