//! Peers for the monitor tests: an in-process DNS server (hickory-server), NIP-11 HTTP
//! answers in front of relays, scripted relays with chosen refusals, closing and silent peers.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

/// A DNS record for the test server.
pub enum Rec {
    A(&'static str, Ipv4Addr),
    Aaaa(&'static str, Ipv6Addr),
    Cname(&'static str, &'static str),
    Ns(&'static str, &'static str),
    Ptr(&'static str, &'static str),
}

fn name(s: &str) -> Name {
    Name::from_str(s).expect("test DNS name")
}

/// An authoritative DNS server on 127.0.0.1 (UDP) for the zones `brotr.test.` and
/// `in-addr.arpa.` holding `records`; lives as long as the test runtime.
pub async fn dns_server(records: Vec<Rec>) -> SocketAddr {
    let mut zones: Vec<(Name, InMemoryZoneHandler<TokioRuntimeProvider>)> =
        ["brotr.test.", "in-addr.arpa."]
            .into_iter()
            .map(|origin| {
                let origin = name(origin);
                let mut z = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
                    origin.clone(),
                    ZoneType::Primary,
                    AxfrPolicy::Deny,
                );
                let soa = SOA::new(
                    name("ns1.brotr.test."),
                    name("admin.brotr.test."),
                    1,
                    3600,
                    600,
                    86400,
                    60,
                );
                z.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1);
                (origin, z)
            })
            .collect();
    for rec in records {
        let (owner, ttl, rdata) = match rec {
            Rec::A(n, ip) => (n, 300, RData::A(A(ip))),
            Rec::Aaaa(n, ip) => (n, 300, RData::AAAA(AAAA(ip))),
            Rec::Cname(n, t) => (n, 300, RData::CNAME(CNAME(name(t)))),
            Rec::Ns(n, t) => (n, 3600, RData::NS(NS(name(t)))),
            Rec::Ptr(n, t) => (n, 300, RData::PTR(PTR(name(t)))),
        };
        let owner = name(owner);
        let zone = zones
            .iter_mut()
            .find(|(o, _)| o.zone_of(&owner))
            .expect("record inside a test zone");
        zone.1.upsert_mut(Record::from_rdata(owner, ttl, rdata), 1);
    }
    let mut catalog = Catalog::new();
    for (origin, z) in zones {
        catalog.upsert(
            LowerName::new(&origin),
            vec![Arc::new(z) as Arc<dyn ZoneHandler>],
        );
    }
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
    let addr = socket.local_addr().expect("addr");
    let mut server = Server::new(catalog);
    server.register_socket(socket);
    tokio::spawn(async move {
        let _ = server.block_until_done().await;
    });
    addr
}

/// A UDP port that receives DNS queries and never answers.
pub async fn silent_dns() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while socket.recv_from(&mut buf).await.is_ok() {}
    });
    addr
}

/// What a plain HTTP request (a NIP-11 fetch) gets.
#[derive(Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Extra raw header lines (`name: value`).
    pub headers: Vec<String>,
}

impl HttpAnswer {
    pub fn json(body: Value) -> Self {
        HttpAnswer {
            status: 200,
            content_type: "application/nostr+json".into(),
            body: body.to_string().into_bytes(),
            headers: vec!["access-control-allow-origin: *".into()],
        }
    }
    pub fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpAnswer {
            status,
            content_type: content_type.into(),
            body: body.into(),
            headers: Vec::new(),
        }
    }
}

/// The request head without consuming it (so a WebSocket handshake can still be accepted or
/// forwarded untouched).
async fn peek_head(s: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..200 {
        let n = s.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains("\r\n\r\n") {
            return Some(text.to_ascii_lowercase());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    None
}

/// Answers a plain HTTP request with `a`, or 406 when the request does not ask for
/// `application/nostr+json` (so every successful NIP-11 fetch in the tests proves the header).
async fn answer_http(mut s: TcpStream, a: &HttpAnswer) {
    let mut buf = [0u8; 16 * 1024];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    let refused;
    let a = if request.contains("accept: application/nostr+json") {
        a
    } else {
        refused = HttpAnswer::raw(406, "text/plain", "ask for application/nostr+json");
        &refused
    };
    let mut head = format!(
        "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        a.status,
        a.content_type,
        a.body.len()
    );
    for h in &a.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(&a.body).await;
    let _ = s.shutdown().await;
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    (l, addr)
}

/// Serves `answer` to HTTP requests and forwards WebSocket upgrades to `backend` (a relay).
pub async fn nip11_front(answer: HttpAnswer, backend: SocketAddr) -> SocketAddr {
    let (l, addr) = listener().await;
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Some(head) = peek_head(&s).await else {
                    return;
                };
                if head.contains("upgrade: websocket") {
                    let mut s = s;
                    if let Ok(mut up) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                    }
                } else {
                    answer_http(s, &answer).await;
                }
            });
        }
    });
    addr
}

/// How a scripted relay behaves.
#[derive(Clone, Default)]
pub struct Script {
    /// `Some(msg)`: EVENTs get `OK false msg`; `None`: `OK true`.
    pub refuse_events: Option<String>,
    /// `Some(msg)`: REQs get `CLOSED msg`; `None`: EOSE.
    pub refuse_reqs: Option<String>,
    /// Answer NEG-OPEN with NEG-MSG (else NOTICE).
    pub negentropy: bool,
    /// NIP-11 answer for plain HTTP requests (else 404).
    pub nip11: Option<HttpAnswer>,
}

/// A relay speaking just enough NIP-01 to script refusals; its handshake response carries
/// `Server: brotr-scripted/1.0` and `X-Powered-By: brotr-tests`.
// The handshake callback's error type is tungstenite's, large by its design.
#[allow(clippy::result_large_err)]
pub async fn scripted_relay(script: Script) -> SocketAddr {
    let (l, addr) = listener().await;
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let Some(head) = peek_head(&s).await else {
                    return;
                };
                if !head.contains("upgrade: websocket") {
                    let a = script
                        .nip11
                        .clone()
                        .unwrap_or_else(|| HttpAnswer::raw(404, "text/plain", "not found"));
                    answer_http(s, &a).await;
                    return;
                }
                let cb = |_req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    let h = resp.headers_mut();
                    h.insert("server", "brotr-scripted/1.0".parse().expect("header"));
                    h.insert("x-powered-by", "brotr-tests".parse().expect("header"));
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(s, cb).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(text) = m else { continue };
                    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    let sub = items.get(1).cloned().unwrap_or(Value::Null);
                    let reply = match items.first().and_then(Value::as_str) {
                        Some("REQ") => match &script.refuse_reqs {
                            Some(msg) => json!(["CLOSED", sub, msg]),
                            None => json!(["EOSE", sub]),
                        },
                        Some("EVENT") => {
                            let id = items
                                .get(1)
                                .and_then(|e| e.get("id"))
                                .cloned()
                                .unwrap_or(Value::Null);
                            match &script.refuse_events {
                                Some(msg) => json!(["OK", id, false, msg]),
                                None => json!(["OK", id, true, ""]),
                            }
                        }
                        Some("NEG-OPEN") if script.negentropy => {
                            json!(["NEG-MSG", sub, "6100000200"])
                        }
                        Some("NEG-OPEN") => json!(["NOTICE", "unknown message type NEG-OPEN"]),
                        _ => continue,
                    };
                    if ws.send(Message::text(reply.to_string())).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A TCP server that closes every connection as soon as it is accepted.
pub async fn closing_tcp() -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    addr
}

/// Path of the MaxMind test databases: `BROTR_GEOIP_TEST_DIR` (set by `e2e/tools.sh`, which takes
/// them from the `maxminddb` sdist on PyPI), else `shared/` beside the repo.
/// MaxMind's test databases, from `BROTR_GEOIP_TEST_DIR` (`e2e/tools.sh` fetches them). Tests
/// that need them are `#[ignore]`d by default and fail, never skip, when run without them.
pub fn geoip_dir() -> std::path::PathBuf {
    let dir = std::env::var("BROTR_GEOIP_TEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| panic!("BROTR_GEOIP_TEST_DIR is not set: source e2e/tools.sh"));
    assert!(
        dir.join("GeoLite2-City-Test.mmdb").exists(),
        "MaxMind test databases not found in {}: run `bash e2e/tools.sh` and set \
         BROTR_GEOIP_TEST_DIR to the directory it prints",
        dir.display()
    );
    dir
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}
