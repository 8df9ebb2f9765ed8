//! A scriptable relay on loopback that serves real signed events the NIP-01 way (matching
//! events, newest first, `limit` honoured) and then misbehaves in one chosen way.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr::filter::MatchEventOptions;
use nostr::{Event, Filter, JsonUtil};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// A well-behaved relay.
    None,
    /// Invalid JSON and malformed EVENT frames between the real events.
    Garbage,
    /// Each real event is preceded by a copy with altered content (wrong id).
    WrongId,
    /// Each real event is preceded by a copy with another event's signature.
    BadSignature,
    /// Events outside the requested window and of other kinds are mixed in.
    OffFilter,
    /// One frame larger than any sane limit (3 MiB).
    Oversized,
    /// Events are sent but EOSE never comes.
    NoEose,
    /// The first event frame is written one byte every 300 ms.
    Drip,
    /// Half the answer, then the TCP connection is dropped.
    Disconnect,
    /// `limit` is ignored: up to ten times as many events are sent.
    TenTimes,
    /// NEG-OPEN is answered with garbage.
    NegGarbage,
    /// NEG-OPEN is ignored (no answer at all), as most relays without NIP-77 do; everything else
    /// is well behaved.
    NegSilent,
}

/// Starts the relay; it lives until the test's runtime ends.
pub async fn evil_relay(events: Vec<Event>, how: Misbehaviour) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = l.local_addr().expect("addr");
    let events = Arc::new(events);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let events = events.clone();
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let Ok(ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                serve(ws, &events, how).await;
            });
        }
    });
    format!("ws://{addr}")
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn serve(mut ws: Ws, events: &[Event], how: Misbehaviour) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        match items.first().and_then(Value::as_str) {
            Some("REQ") if items.len() >= 3 => {
                let sub = items[1].as_str().unwrap_or_default().to_owned();
                let Ok(filter) = Filter::from_json(items[2].to_string()) else {
                    continue;
                };
                if answer(&mut ws, events, &sub, &filter, how).await.is_err() {
                    return;
                }
            }
            // Writes are acknowledged (and not stored): the relay is otherwise well behaved.
            Some("EVENT") => {
                let id = items
                    .get(1)
                    .and_then(|e| e.get("id"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let ok = serde_json::json!(["OK", id, true, ""]);
                let _ = ws.send(Message::text(ok.to_string())).await;
            }
            Some("NEG-OPEN") if how == Misbehaviour::NegSilent => {}
            Some("NEG-OPEN") if how == Misbehaviour::NegGarbage => {
                let sub = items.get(1).and_then(Value::as_str).unwrap_or_default();
                let _ = ws
                    .send(Message::text(format!(
                        r#"["NEG-MSG","{sub}","zz-not-hex"]"#
                    )))
                    .await;
            }
            Some("NEG-OPEN") => {
                let sub = items.get(1).and_then(Value::as_str).unwrap_or_default();
                let _ = ws
                    .send(Message::text(format!(
                        r#"["NEG-ERR","{sub}","error: not supported"]"#
                    )))
                    .await;
            }
            _ => {}
        }
    }
}

fn matching<'a>(events: &'a [Event], filter: &Filter) -> Vec<&'a Event> {
    let mut m: Vec<&Event> = events
        .iter()
        .filter(|e| filter.match_event(e, MatchEventOptions::new()))
        .collect();
    m.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    m
}

fn frame(sub: &str, e: &Event) -> Message {
    Message::text(format!(r#"["EVENT","{sub}",{}]"#, e.as_json()))
}

async fn answer(
    ws: &mut Ws,
    events: &[Event],
    sub: &str,
    filter: &Filter,
    how: Misbehaviour,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let limit = filter.limit.unwrap_or(500);
    let mut unlimited = filter.clone();
    unlimited.limit = None;
    let all = matching(events, &unlimited);
    let take = if how == Misbehaviour::TenTimes {
        limit * 10
    } else {
        limit
    };
    let page: Vec<&Event> = all.into_iter().take(take).collect();
    for (i, e) in page.iter().enumerate() {
        match how {
            Misbehaviour::Garbage => {
                ws.send(Message::text("{not json")).await?;
                ws.send(Message::text(format!(
                    r#"["EVENT","{sub}",{{"id":"xyz"}}]"#
                )))
                .await?;
                ws.send(Message::text(format!(r#"["EVENT","{sub}"]"#)))
                    .await?;
            }
            Misbehaviour::WrongId => {
                let mut v: Value = serde_json::from_str(&e.as_json()).expect("json");
                v["content"] = Value::String("tampered".into());
                ws.send(Message::text(format!(r#"["EVENT","{sub}",{v}]"#)))
                    .await?;
            }
            Misbehaviour::BadSignature => {
                let other = page[(i + 1) % page.len()];
                if other.id != e.id {
                    let mut v: Value = serde_json::from_str(&e.as_json()).expect("json");
                    v["sig"] = Value::String(other.sig.to_string());
                    ws.send(Message::text(format!(r#"["EVENT","{sub}",{v}]"#)))
                        .await?;
                }
            }
            Misbehaviour::OffFilter => {
                // Any event outside the filter's window or kinds.
                if let Some(off) = events
                    .iter()
                    .find(|x| !filter.match_event(x, MatchEventOptions::new()))
                {
                    ws.send(frame(sub, off)).await?;
                }
            }
            Misbehaviour::Oversized if i == 1 => {
                let big = "x".repeat(3 << 20);
                ws.send(Message::text(format!(r#"["NOTICE","{big}"]"#)))
                    .await?;
            }
            Misbehaviour::Disconnect if i == page.len() / 2 && i > 0 => {
                // Drop the TCP connection without a close frame.
                let _ = ws.get_mut().shutdown().await;
                return Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed);
            }
            Misbehaviour::Drip if i == 0 => {
                let text = format!(r#"["EVENT","{sub}",{}]"#, e.as_json());
                let mut raw = vec![0x81u8];
                let len = text.len();
                if len < 126 {
                    raw.push(len as u8);
                } else {
                    raw.push(126);
                    raw.extend_from_slice(&(len as u16).to_be_bytes());
                }
                raw.extend_from_slice(text.as_bytes());
                for b in raw {
                    ws.get_mut()
                        .write_all(&[b])
                        .await
                        .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                continue;
            }
            _ => {}
        }
        ws.send(frame(sub, e)).await?;
    }
    if how != Misbehaviour::NoEose {
        ws.send(Message::text(format!(r#"["EOSE","{sub}"]"#)))
            .await?;
    }
    Ok(())
}
