//! Sends signed events to the publishing relays. One connection per relay per cycle (a relay
//! that fails to connect is skipped for the rest of the cycle); a publication succeeds when at
//! least one relay answers `OK true`. A relay asking for AUTH gets it once per connection.

use std::time::Duration;

use futures_util::future::join_all;
use nostr::{Event, Keys};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::report::Refusal;
use crate::model::RelayUrl;
use crate::net::{AuthMode, Dialer, RelaySession, SessionOptions};
use crate::nips::nip01::{self, RelayMessage};

/// A publishing relay's connection for this cycle.
enum Conn {
    NotYet,
    Open(Box<RelaySession>),
    Failed,
}

/// The publishing relays and their connections.
pub struct Publisher {
    dialer: Dialer,
    keys: Keys,
    timeout: Duration,
    relays: Vec<(RelayUrl, Conn)>,
}

impl Publisher {
    pub fn new(dialer: Dialer, keys: Keys, relays: Vec<RelayUrl>, timeout: Duration) -> Self {
        Publisher {
            dialer,
            keys,
            timeout,
            relays: relays.into_iter().map(|r| (r, Conn::NotYet)).collect(),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The relay URLs events go to.
    pub fn relay_urls(&self) -> Vec<String> {
        self.relays
            .iter()
            .map(|(u, _)| u.as_str().to_owned())
            .collect()
    }

    /// Sends `events` to every publishing relay at once; returns, per event, how many relays
    /// accepted it.
    pub async fn publish(&mut self, events: &[Event]) -> Vec<usize> {
        self.publish_to(events).await.iter().map(Vec::len).collect()
    }

    /// [`Publisher::publish`], saying which relays accepted each event.
    pub async fn publish_to(&mut self, events: &[Event]) -> Vec<Vec<RelayUrl>> {
        let (dialer, keys, timeout) = (&self.dialer, &self.keys, self.timeout);
        let results = join_all(self.relays.iter_mut().map(|(url, conn)| async move {
            if matches!(conn, Conn::NotYet) {
                let opts = SessionOptions::new(keys.clone(), AuthMode::OnRequest);
                *conn = match tokio::time::timeout(timeout, RelaySession::open(dialer, url, opts))
                    .await
                {
                    Ok(Ok(s)) => Conn::Open(Box::new(s)),
                    Ok(Err(e)) => {
                        warn!(relay = %url, error = %e, "publishing relay unreachable this cycle");
                        Conn::Failed
                    }
                    Err(_) => {
                        warn!(relay = %url, "publishing relay did not connect in time");
                        Conn::Failed
                    }
                };
            }
            let Conn::Open(session) = conn else {
                return vec![false; events.len()];
            };
            match send_all(session, events, timeout).await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(relay = %url, error = %e, "publishing relay failed; dropped for this cycle");
                    *conn = Conn::Failed;
                    vec![false; events.len()]
                }
            }
        }))
        .await;
        (0..events.len())
            .map(|i| {
                self.relays
                    .iter()
                    .zip(&results)
                    .filter(|(_, r)| r[i])
                    .map(|((url, _), _)| url.clone())
                    .collect()
            })
            .collect()
    }

    /// Closes every connection.
    pub async fn close(self) {
        for (_, conn) in self.relays {
            if let Conn::Open(s) = conn {
                (*s).close().await;
            }
        }
    }
}

/// Sends every event, then collects the OKs; events refused with `auth-required` are sent
/// again after one AUTH.
async fn send_all(
    s: &mut RelaySession,
    events: &[Event],
    timeout: Duration,
) -> Result<Vec<bool>, String> {
    let mut accepted = vec![false; events.len()];
    let mut pending: Vec<usize> = (0..events.len()).collect();
    let mut tried_auth = false;
    loop {
        for i in &pending {
            s.send(nip01::event(&events[*i]))
                .await
                .map_err(|e| e.to_string())?;
        }
        let deadline = Instant::now() + timeout;
        let mut auth_needed = Vec::new();
        let mut left = pending.len();
        while left > 0 {
            let msg = match s.recv(deadline).await {
                Ok(r) => r.message,
                Err(e) => {
                    debug!(error = %e, missing = left, "OKs missing");
                    break;
                }
            };
            if let Ok(RelayMessage::Ok {
                event_id,
                status,
                message,
            }) = msg
                && let Some(i) = pending.iter().copied().find(|i| events[*i].id == event_id)
            {
                left -= 1;
                if status {
                    accepted[i] = true;
                } else if Refusal::parse(&message).is_auth() {
                    auth_needed.push(i);
                } else {
                    debug!(event = %event_id, reason = %message, "event refused");
                }
            }
        }
        if auth_needed.is_empty() || tried_auth {
            return Ok(accepted);
        }
        tried_auth = true;
        if !s.authenticate(timeout).await.is_ok_and(|o| o.may_retry()) {
            return Ok(accepted);
        }
        pending = auth_needed;
    }
}
