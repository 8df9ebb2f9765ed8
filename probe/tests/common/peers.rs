//! Real peers on loopback for tests: rust-nostr relays and decoys that must not validate.
#![allow(dead_code)]

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use nostr_relay_builder::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
