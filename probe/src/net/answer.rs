//! "Does this endpoint speak Nostr?" — the validator's test.
//!
//! Valid means a Nostr relay message arrived in answer to a REQ: a WebSocket handshake alone is
//! not enough (echo servers and generic WebSocket apps complete handshakes too).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::dial::{DialError, Dialer};
use crate::model::RelayUrl;

/// The subscription id of validation REQs.
const SUB_ID: &str = "brotr-validate";

/// The relay message that proved an endpoint is a Nostr relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Eose,
    Event,
    Closed,
    Notice,
    Auth,
    Ok,
    Count,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Eose => "EOSE",
            Answer::Event => "EVENT",
            Answer::Closed => "CLOSED",
            Answer::Notice => "NOTICE",
            Answer::Auth => "AUTH",
            Answer::Ok => "OK",
            Answer::Count => "COUNT",
        }
    }
}

/// Why an endpoint is not (or could not be shown to be) a Nostr relay.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("{host} answered with something that is not a Nostr relay message: {got}")]
    NotNostr { host: String, got: String },
    #[error("{host} closed the connection without a Nostr answer")]
    Closed { host: String },
    #[error("{host} sent no Nostr answer within {after:?}")]
    Silent { host: String, after: Duration },
    #[error("{host}: WebSocket error: {source}")]
    Ws {
        host: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
}

/// Judges one text frame: `Some` when it is a well-formed relay-to-client message (NIP-01,
/// NIP-42, NIP-45).
pub fn judge(text: &str) -> Option<Answer> {
    let Value::Array(items) = serde_json::from_str::<Value>(text).ok()? else {
        return None;
    };
    let s = |i: usize| items.get(i).is_some_and(Value::is_string);
    let answer = match items.first()?.as_str()? {
        "EOSE" if items.len() == 2 && s(1) => Answer::Eose,
        "EVENT" if items.len() == 3 && s(1) && items[2].is_object() => Answer::Event,
        "CLOSED" if items.len() == 3 && s(1) && s(2) => Answer::Closed,
        "NOTICE" if items.len() == 2 && s(1) => Answer::Notice,
        "AUTH" if items.len() == 2 && s(1) => Answer::Auth,
        "OK" if items.len() == 4 && s(1) && items[2].is_boolean() && s(3) => Answer::Ok,
        "COUNT" if items.len() == 3 && s(1) && items[2].is_object() => Answer::Count,
        _ => return None,
    };
    Some(answer)
}

/// Connects to `url`, asks for one event and waits for the first frame, all within the network's
/// timeout (connect and answer each get the full timeout). Fails fast on anything that is
/// clearly not a relay.
pub async fn probe_nostr(dialer: &Dialer, url: &RelayUrl) -> Result<Answer, ProbeError> {
    let host = || url.host().to_owned();
    let mut ws = dialer.connect(url).await?;
    let req = format!(r#"["REQ","{SUB_ID}",{{"kinds":[1],"limit":1}}]"#);
    ws.send(Message::text(req))
        .await
        .map_err(|e| ProbeError::Ws {
            host: host(),
            source: Box::new(e),
        })?;
    let after = dialer.timeout(url);
    let deadline = Instant::now() + after;
    let result = loop {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                break Err(ProbeError::Silent {
                    host: host(),
                    after,
                });
            }
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                break Err(ProbeError::Closed { host: host() });
            }
            Ok(Some(Err(e))) => {
                break Err(ProbeError::Ws {
                    host: host(),
                    source: Box::new(e),
                });
            }
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            Message::Text(text) => {
                break judge(&text).ok_or_else(|| ProbeError::NotNostr {
                    host: host(),
                    got: shorten(&text),
                });
            }
            Message::Binary(b) => {
                break Err(ProbeError::NotNostr {
                    host: host(),
                    got: format!("{} bytes of binary", b.len()),
                });
            }
            // Pings are answered by tungstenite; keep waiting for the real answer.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(_) => break Err(ProbeError::Closed { host: host() }),
        }
    };
    // Best effort: a relay that hangs on close must not hold the validator.
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    result
}

/// At most 80 characters of untrusted text, for messages.
fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(80).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_relay_messages() {
        let ok = [
            (r#"["EOSE","s"]"#, Answer::Eose),
            (r#"["EVENT","s",{"id":"x"}]"#, Answer::Event),
            (r#"["CLOSED","s","auth-required: log in"]"#, Answer::Closed),
            (r#"["NOTICE","rate limited"]"#, Answer::Notice),
            (r#"["AUTH","challenge"]"#, Answer::Auth),
            (r#"["OK","id",true,""]"#, Answer::Ok),
            (r#"["COUNT","s",{"count":3}]"#, Answer::Count),
        ];
        for (text, want) in ok {
            assert_eq!(judge(text), Some(want), "{text}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let bad = [
            r#"["REQ","brotr-validate",{"kinds":[1],"limit":1}]"#, // an echo server
            r#"["EOSE"]"#,
            r#"["EOSE",1]"#,
            r#"["EVENT","s","not an object"]"#,
            r#"["OK","id","true",""]"#,
            r#"["HELLO","s"]"#,
            r#"{"type":"EOSE"}"#,
            "<html>hello</html>",
            "",
            "[]",
            "[1,2]",
        ];
        for text in bad {
            assert_eq!(judge(text), None, "{text}");
        }
    }

    #[test]
    fn shortens_long_untrusted_text() {
        assert_eq!(shorten("abc"), "abc");
        let long = "é".repeat(100);
        assert_eq!(shorten(&long).chars().count(), 81);
    }
}
