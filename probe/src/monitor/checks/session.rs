//! A Nostr WebSocket session for the probes: send client messages, read relay messages with a
//! deadline, remember the AUTH challenge, answer it once (NIP-42).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr::{EventBuilder, Keys};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::model::RelayUrl;
use crate::net::{DialError, Dialer, WsStream};

/// A relay-to-client message the probes care about.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayMsg {
    Event {
        sub: String,
    },
    Eose {
        sub: String,
    },
    Closed {
        sub: String,
        message: String,
    },
    Ok {
        id: String,
        accepted: bool,
        message: String,
    },
    Auth {
        challenge: String,
    },
    Notice,
    NegMsg {
        sub: String,
    },
    NegErr {
        sub: String,
        message: String,
    },
    /// Valid JSON array of another type, or garbage: ignored by the probes.
    Other,
}

/// Parses one text frame (pure).
pub fn parse_relay_msg(text: &str) -> RelayMsg {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return RelayMsg::Other;
    };
    let s = |i: usize| items.get(i).and_then(Value::as_str).map(str::to_owned);
    match items.first().and_then(Value::as_str) {
        Some("EVENT") => s(1).map_or(RelayMsg::Other, |sub| RelayMsg::Event { sub }),
        Some("EOSE") => s(1).map_or(RelayMsg::Other, |sub| RelayMsg::Eose { sub }),
        Some("CLOSED") => match s(1) {
            Some(sub) => RelayMsg::Closed {
                sub,
                message: s(2).unwrap_or_default(),
            },
            None => RelayMsg::Other,
        },
        Some("OK") => match (s(1), items.get(2).and_then(Value::as_bool)) {
            (Some(id), Some(accepted)) => RelayMsg::Ok {
                id,
                accepted,
                message: s(3).unwrap_or_default(),
            },
            _ => RelayMsg::Other,
        },
        Some("AUTH") => s(1).map_or(RelayMsg::Other, |challenge| RelayMsg::Auth { challenge }),
        Some("NOTICE") => RelayMsg::Notice,
        Some("NEG-MSG") => s(1).map_or(RelayMsg::Other, |sub| RelayMsg::NegMsg { sub }),
        Some("NEG-ERR") => match s(1) {
            Some(sub) => RelayMsg::NegErr {
                sub,
                message: s(2).unwrap_or_default(),
            },
            None => RelayMsg::Other,
        },
        _ => RelayMsg::Other,
    }
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection closed by the relay")]
    Closed,
    #[error("WebSocket error: {0}")]
    Ws(String),
}

/// An open probe connection.
pub struct Session {
    ws: WsStream,
    url: RelayUrl,
    /// The last AUTH challenge received.
    pub challenge: Option<String>,
    /// AUTH was answered and accepted on this connection.
    pub authed: bool,
}

impl Session {
    /// Opens a connection; returns it with the milliseconds the opening took.
    pub async fn open(dialer: &Dialer, url: &RelayUrl) -> Result<(Session, u64), SessionError> {
        let start = Instant::now();
        let ws = dialer.connect(url).await?;
        let ms = start.elapsed().as_millis() as u64;
        Ok((
            Session {
                ws,
                url: url.clone(),
                challenge: None,
                authed: false,
            },
            ms,
        ))
    }

    pub async fn send(&mut self, msg: &Value) -> Result<(), SessionError> {
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| SessionError::Ws(e.to_string()))
    }

    /// The next relay message before `deadline`; remembers AUTH challenges (and returns them).
    pub async fn recv(&mut self, deadline: Instant) -> Result<RelayMsg, SessionError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(SessionError::Timeout(left)),
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return Err(SessionError::Closed),
                Ok(Some(Err(e))) => return Err(SessionError::Ws(e.to_string())),
                Ok(Some(Ok(f))) => f,
            };
            if let Message::Text(text) = frame {
                let msg = parse_relay_msg(&text);
                if let RelayMsg::Auth { challenge } = &msg {
                    self.challenge = Some(challenge.clone());
                }
                return Ok(msg);
            }
        }
    }

    /// Answers the stored challenge with a kind 22242 event signed by `keys` and waits for the
    /// relay's OK. Returns whether it was accepted; `false` when there is no challenge.
    pub async fn authenticate(
        &mut self,
        keys: &Keys,
        deadline: Instant,
    ) -> Result<bool, SessionError> {
        let Some(challenge) = self.challenge.clone() else {
            return Ok(false);
        };
        let Ok(relay) = nostr::RelayUrl::parse(self.url.as_str()) else {
            return Ok(false);
        };
        let Ok(event) = EventBuilder::auth(challenge, relay).sign_with_keys(keys) else {
            return Ok(false);
        };
        let id = event.id.to_hex();
        self.send(&serde_json::json!(["AUTH", event])).await?;
        loop {
            match self.recv(deadline).await? {
                RelayMsg::Ok {
                    id: got, accepted, ..
                } if got == id => {
                    self.authed = accepted;
                    return Ok(accepted);
                }
                _ => continue,
            }
        }
    }

    /// Best-effort close that never holds the caller long.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), self.ws.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_relay_messages() {
        let cases = [
            (r#"["EVENT","s",{}]"#, RelayMsg::Event { sub: "s".into() }),
            (r#"["EOSE","s"]"#, RelayMsg::Eose { sub: "s".into() }),
            (
                r#"["CLOSED","s","auth-required: x"]"#,
                RelayMsg::Closed {
                    sub: "s".into(),
                    message: "auth-required: x".into(),
                },
            ),
            (
                r#"["OK","ab",false,"pow: 20"]"#,
                RelayMsg::Ok {
                    id: "ab".into(),
                    accepted: false,
                    message: "pow: 20".into(),
                },
            ),
            (
                r#"["AUTH","c"]"#,
                RelayMsg::Auth {
                    challenge: "c".into(),
                },
            ),
            (r#"["NOTICE","x"]"#, RelayMsg::Notice),
            (
                r#"["NEG-MSG","n","61"]"#,
                RelayMsg::NegMsg { sub: "n".into() },
            ),
            (
                r#"["NEG-ERR","n","blocked: too big"]"#,
                RelayMsg::NegErr {
                    sub: "n".into(),
                    message: "blocked: too big".into(),
                },
            ),
            (r#"["OK","ab","true",""]"#, RelayMsg::Other),
            ("<html>", RelayMsg::Other),
            ("{}", RelayMsg::Other),
        ];
        for (text, want) in cases {
            assert_eq!(parse_relay_msg(text), want, "{text}");
        }
    }
}
