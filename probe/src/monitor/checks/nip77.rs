//! NIP-77 probe: does `NEG-OPEN` get a `NEG-MSG` back? Relays advertise 77 in NIP-11 without
//! negentropy enabled (strfry keeps it listed when disabled), so only a live answer counts.

use std::time::Duration;

use nostr::Keys;
use serde_json::json;
use tokio::time::Instant;

use super::session::{RelayMsg, Session};
use crate::model::RelayUrl;
use crate::monitor::report::{Check, Nip77Data, Refusal};
use crate::net::Dialer;

const SUB: &str = "brotr-neg";
/// Negentropy V1 initial message for an empty set (nips.md §1.10 vector 6).
pub const EMPTY_SET_MESSAGE: &str = "6100000200";

/// Runs one NEG-OPEN round trip within `timeout` per step.
pub async fn check(
    dialer: &Dialer,
    keys: &Keys,
    url: &RelayUrl,
    timeout: Duration,
) -> Check<Nip77Data> {
    let (mut s, _) = match tokio::time::timeout(timeout, Session::open(dialer, url)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Check::failed(format!("open: {e}")),
        Err(_) => return Check::failed(format!("open: no connection within {timeout:?}")),
    };
    // A small, recent window: enough to prove the protocol, cheap for the relay.
    let since = crate::runtime::unix_now() - 3600;
    let open = json!(["NEG-OPEN", SUB, {"kinds": [1], "since": since}, EMPTY_SET_MESSAGE]);
    let mut tried_auth = false;
    let result = loop {
        let start = Instant::now();
        let deadline = start + timeout;
        if let Err(e) = s.send(&open).await {
            break Check::failed(e.to_string());
        }
        let answer = loop {
            match s.recv(deadline).await {
                Ok(RelayMsg::NegMsg { sub }) if sub == SUB => break Ok((true, None)),
                Ok(RelayMsg::NegErr { sub, message }) if sub == SUB => {
                    break Ok((false, Some(message)));
                }
                Ok(RelayMsg::Closed { sub, message }) if sub == SUB => {
                    break Ok((false, Some(message)));
                }
                // Relays that do not know NEG-OPEN typically answer with a NOTICE.
                Ok(RelayMsg::Notice) => {
                    break Ok((false, Some("notice: NEG-OPEN not understood".to_owned())));
                }
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        let ms = start.elapsed().as_millis() as u64;
        match answer {
            Ok((true, _)) => {
                let _ = s.send(&json!(["NEG-CLOSE", SUB])).await;
                break Check::ok(Nip77Data {
                    negentropy: Some(true),
                    refused: None,
                    rtt: Some(ms),
                });
            }
            Ok((false, message)) => {
                let prefix = message.as_deref().map(|m| Refusal::parse(m).prefix);
                if prefix.as_deref() == Some("auth-required") && !tried_auth {
                    tried_auth = true;
                    if s.authenticate(keys, deadline).await.unwrap_or(false) {
                        continue;
                    }
                }
                let _ = s.send(&json!(["NEG-CLOSE", SUB])).await;
                // A definite "no" is a successful probe.
                break Check::ok(Nip77Data {
                    negentropy: Some(false),
                    refused: prefix,
                    rtt: Some(ms),
                });
            }
            Err(e) => {
                break Check::partial(
                    Nip77Data {
                        negentropy: Some(false),
                        ..Default::default()
                    },
                    format!("NEG-OPEN: {e}"),
                );
            }
        }
    };
    s.close().await;
    result
}
