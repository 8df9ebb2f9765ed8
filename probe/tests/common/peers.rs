//! Real peers on loopback for tests: rust-nostr relays and decoys that must not validate.
#![allow(dead_code)]

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use nostr_relay_builder::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A rust-nostr relay on loopback already holding `events`.
pub async fn relay_with(events: &[nostr::Event]) -> (LocalRelay, String) {
    let db = MemoryDatabase::with_opts(MemoryDatabaseOptions {
        events: true,
        max_events: None,
    });
    for e in events {
        db.save_event(e).await.unwrap();
    }
    nostr_relay(RelayBuilder::default().database(db)).await
}

pub fn recent_notes(n: usize, tags: Vec<nostr::Tag>) -> Vec<nostr::Event> {
    let keys = nostr::Keys::generate();
    let now = nostr::Timestamp::now().as_secs();
    (0..n)
        .map(|i| {
            nostr::EventBuilder::text_note(format!("cli {i}"))
                .tags(tags.clone())
                .custom_created_at(nostr::Timestamp::from(now - 1 - (i as u64 * 61) % 86_400))
                .sign_with_keys(&keys)
                .unwrap()
        })
        .collect()
}

/// A rust-nostr in-process relay on 127.0.0.1; stops when dropped.
pub async fn nostr_relay(builder: RelayBuilder) -> (LocalRelay, String) {
    let relay = LocalRelay::new(builder.addr([127, 0, 0, 1].into()));
    relay.run().await.expect("start local relay");
    let url = relay.url().await.to_string();
    (relay, url.trim_end_matches('/').to_owned())
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    (l, addr)
}

/// A plain HTTP server answering 200 "hello" to anything.
pub async fn http_server() -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                    )
                    .await;
            });
        }
    });
    addr
}

/// A WebSocket server that echoes every message back.
pub async fn echo_ws() -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A WebSocket server that completes the handshake and then says nothing.
pub async fn silent_ws() -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    addr
}

/// A TCP server that accepts and never answers (not even the WebSocket handshake).
pub async fn silent_tcp() -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A loopback port with nothing listening.
pub async fn closed_port() -> SocketAddr {
    let (l, addr) = listener().await;
    drop(l);
    addr
}

/// A local certificate authority and a TLS front for a relay (terminates TLS, forwards bytes).
pub struct LocalCa {
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl LocalCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Brotr test CA");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Brotr Test");
        let cert = params.self_signed(&key).expect("ca cert");
        LocalCa {
            ca_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Serves TLS for `names` on a loopback port and forwards each connection to `backend`.
    pub async fn tls_front(&self, names: &[&str], backend: SocketAddr) -> SocketAddr {
        self.tls_front_with(names, backend, false).await
    }

    /// [`LocalCa::tls_front`] with a certificate that expired in 2020.
    pub async fn tls_front_expired(&self, names: &[&str], backend: SocketAddr) -> SocketAddr {
        self.tls_front_with(names, backend, true).await
    }

    async fn tls_front_with(
        &self,
        names: &[&str],
        backend: SocketAddr,
        expired: bool,
    ) -> SocketAddr {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        if let Some(name) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, *name);
        }
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let (l, addr) = listener().await;
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        addr
    }
}

/// A minimal SOCKS5 proxy (no auth, CONNECT only) that sends every destination to `backend` and
/// records the destination names it was asked for (proof of remote DNS).
pub async fn socks5_proxy(
    backend: SocketAddr,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (l, addr) = listener().await;
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 2];
                if s.read_exact(&mut head).await.is_err() || head[0] != 5 {
                    return;
                }
                let mut methods = vec![0u8; head[1] as usize];
                let _ = s.read_exact(&mut methods).await;
                let _ = s.write_all(&[5, 0]).await;
                let mut req = [0u8; 4];
                if s.read_exact(&mut req).await.is_err() || req[1] != 1 {
                    return;
                }
                let name = match req[3] {
                    3 => {
                        let mut len = [0u8; 1];
                        let _ = s.read_exact(&mut len).await;
                        let mut n = vec![0u8; len[0] as usize];
                        let _ = s.read_exact(&mut n).await;
                        String::from_utf8_lossy(&n).into_owned()
                    }
                    1 => {
                        let mut ip = [0u8; 4];
                        let _ = s.read_exact(&mut ip).await;
                        std::net::Ipv4Addr::from(ip).to_string()
                    }
                    _ => return,
                };
                let mut port = [0u8; 2];
                let _ = s.read_exact(&mut port).await;
                if let Ok(mut names) = log.lock() {
                    names.push(format!("{name}:{}", u16::from_be_bytes(port)));
                }
                let Ok(mut up) = tokio::net::TcpStream::connect(backend).await else {
                    let _ = s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
                    return;
                };
                // A proxy that adds no delay of its own (Debian's microsocks would).
                let _ = (s.set_nodelay(true), up.set_nodelay(true));
                let _ = s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await;
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    (addr, seen)
}
