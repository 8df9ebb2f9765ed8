//! One WebSocket session with a relay, shared by every service: dialled through [`Dialer`] (SSRF
//! guard, SOCKS5, TLS, size limits), client messages out, typed relay messages in (the one
//! parser, [`crate::nips::nip01`]) under a deadline and an idle limit, NIP-42 AUTH answered in
//! one place, wire statistics counted.
//!
//! What a caller does with the messages (page through a window, reconcile, time a round trip)
//! lives with the caller; this type only moves messages and keeps the AUTH state.
//!
//! Why not nostr-sdk's relay client: it manages its own connections and pools, so it cannot
//! dial through our guarded [`Dialer`] (SSRF guard on the resolved address, SOCKS5 for
//! overlays), it hides the frames a monitor must time and judge (an `OK` vs. the event echoed
//! back, silence vs. a NOTICE), and it decides REQ paging itself. See README, Decisions.

mod answer;
mod error;
mod neg;
mod stats;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr::{EventId, Keys};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

pub use answer::{Answer, speaks_nostr};
pub use error::RelayError;
pub use neg::{NegAnswer, grace as neg_grace};
pub use stats::WireStats;

use super::dial::{Dialer, HandshakeResponse, WsStream};
use crate::model::RelayUrl;
use crate::nips::nip01::{self, ParseError, RelayMessage};
use crate::nips::nip42;

/// When AUTH challenges are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// As soon as a challenge arrives (archiving: we want the data).
    Eager,
    /// Only when the caller asks ([`RelaySession::authenticate`]): the monitor first observes
    /// whether the relay requires AUTH at all.
    OnRequest,
}

/// How an AUTH attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted,
    Refused(String),
    /// No OK came back in time (the caller may try its request again).
    NoAnswer,
    /// The relay never sent a challenge.
    NoChallenge,
}

impl AuthOutcome {
    /// Worth retrying the refused request.
    pub fn may_retry(&self) -> bool {
        matches!(self, AuthOutcome::Accepted | AuthOutcome::NoAnswer)
    }
}

/// How a session behaves.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The key AUTH challenges are answered with.
    pub keys: Keys,
    pub auth: AuthMode,
    /// Longest silence tolerated while waiting for a message (`None`: only the deadline).
    pub idle: Option<Duration>,
}

impl SessionOptions {
    pub fn new(keys: Keys, auth: AuthMode) -> Self {
        SessionOptions {
            keys,
            auth,
            idle: None,
        }
    }

    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }
}

/// One message received, or why the frame was not one, with its size on the wire.
#[derive(Debug)]
pub struct Received {
    pub message: Result<RelayMessage, ParseError>,
    pub bytes: usize,
}

/// An open session with one relay.
pub struct RelaySession {
    ws: WsStream,
    url: RelayUrl,
    opts: SessionOptions,
    opened_in: Duration,
    next_sub: u64,
    challenge: Option<String>,
    /// Our AUTH event while its OK is awaited.
    auth_pending: Option<EventId>,
    authed: bool,
    auth_refused: Option<String>,
    /// AUTH messages sent on this connection.
    auths_sent: u64,
    pub stats: WireStats,
}

/// Where AUTH stood when a request went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthMark {
    sent: u64,
    authed: bool,
}

/// How AUTH changed between a request (`then`) and the end of its answer (`now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthChange {
    None,
    Accepted,
    /// An AUTH sent meanwhile awaits its OK.
    Pending,
}

fn auth_changed(then: AuthMark, now: AuthMark, pending: bool) -> AuthChange {
    if then.authed {
        AuthChange::None
    } else if now.authed {
        AuthChange::Accepted
    } else if now.sent != then.sent && pending {
        AuthChange::Pending
    } else {
        AuthChange::None
    }
}

impl RelaySession {
    /// Connects to `url` within its network's timeout.
    pub async fn open(
        dialer: &Dialer,
        url: &RelayUrl,
        opts: SessionOptions,
    ) -> Result<Self, RelayError> {
        Ok(Self::open_with_response(dialer, url, opts).await?.0)
    }

    /// [`RelaySession::open`], also returning the handshake response (the monitor's HTTP check
    /// reads its headers).
    pub async fn open_with_response(
        dialer: &Dialer,
        url: &RelayUrl,
        opts: SessionOptions,
    ) -> Result<(Self, HandshakeResponse), RelayError> {
        let start = Instant::now();
        let (ws, response) = dialer.connect_with_response(url).await?;
        let session = RelaySession {
            ws,
            url: url.clone(),
            opts,
            opened_in: start.elapsed(),
            next_sub: 0,
            challenge: None,
            auth_pending: None,
            authed: false,
            auth_refused: None,
            auths_sent: 0,
            stats: WireStats::default(),
        };
        Ok((session, response))
    }

    pub fn url(&self) -> &RelayUrl {
        &self.url
    }

    /// How long opening the connection took (TCP or proxy, TLS, WebSocket handshake).
    pub fn opened_in(&self) -> Duration {
        self.opened_in
    }

    /// The last AUTH challenge the relay sent.
    pub fn challenge(&self) -> Option<&str> {
        self.challenge.as_deref()
    }

    /// Whether the relay accepted our AUTH on this connection.
    pub fn is_authed(&self) -> bool {
        self.authed
    }

    /// A fresh subscription id, `<prefix>-<n>`.
    pub fn new_sub(&mut self, prefix: &str) -> String {
        self.next_sub += 1;
        format!("{prefix}-{}", self.next_sub)
    }

    fn err_ws(&self, e: tokio_tungstenite::tungstenite::Error) -> RelayError {
        let (relay, reason) = (self.url.to_string(), e.to_string());
        match e {
            tokio_tungstenite::tungstenite::Error::Capacity(_) => {
                RelayError::TooLarge { relay, reason }
            }
            _ => RelayError::Ws { relay, reason },
        }
    }

    /// Sends one client message.
    pub async fn send(&mut self, text: String) -> Result<(), RelayError> {
        self.stats.bytes_out += text.len() as u64;
        let r = self.ws.send(Message::text(text)).await;
        r.map_err(|e| self.err_ws(e))
    }

    /// Sends a request (REQ, COUNT, NEG-OPEN): counted in the wire statistics.
    pub async fn send_request(&mut self, text: String) -> Result<(), RelayError> {
        self.stats.requests += 1;
        self.send(text).await
    }

    /// The next message before `deadline`, within the idle limit. AUTH bookkeeping happens here:
    /// challenges are remembered (and answered in [`AuthMode::Eager`]), the OK to our AUTH sets
    /// [`RelaySession::is_authed`]. Every message is still returned to the caller.
    pub async fn recv(&mut self, deadline: Instant) -> Result<Received, RelayError> {
        loop {
            let (until, idle) = match self.opts.idle {
                Some(idle) if Instant::now() + idle < deadline => {
                    (Instant::now() + idle, Some(idle))
                }
                _ => (deadline, None),
            };
            let frame = match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return Err(self.silence(idle)),
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Err(RelayError::Closed {
                        relay: self.url.to_string(),
                    });
                }
                Ok(Some(Err(e))) => return Err(self.err_ws(e)),
                Ok(Some(Ok(f))) => f,
            };
            self.stats.frames += 1;
            let received = match frame {
                Message::Text(text) => {
                    self.stats.bytes_in += text.len() as u64;
                    Received {
                        message: nip01::parse_relay_message(text.as_str()),
                        bytes: text.len(),
                    }
                }
                Message::Binary(b) => {
                    self.stats.bytes_in += b.len() as u64;
                    Received {
                        message: Err(ParseError::Binary(b.len())),
                        bytes: b.len(),
                    }
                }
                // Pings are answered by tungstenite.
                _ => continue,
            };
            match &received.message {
                Ok(RelayMessage::Event { .. }) | Err(ParseError::BadEvent { .. }) => {
                    self.stats.events_received += 1;
                }
                Ok(m) => self.observe(m).await?,
                Err(_) => {}
            }
            return Ok(received);
        }
    }

    fn silence(&self, idle: Option<Duration>) -> RelayError {
        let relay = self.url.to_string();
        match idle {
            Some(after) => RelayError::Idle { relay, after },
            None => RelayError::Timeout { relay },
        }
    }

    /// AUTH bookkeeping for one received message.
    async fn observe(&mut self, m: &RelayMessage) -> Result<(), RelayError> {
        match m {
            RelayMessage::Auth { challenge } => {
                self.challenge = Some(challenge.to_string());
                if self.opts.auth == AuthMode::Eager && self.auth_pending.is_none() {
                    self.answer_challenge().await?;
                }
            }
            RelayMessage::Ok {
                event_id,
                status,
                message,
            } if Some(*event_id) == self.auth_pending => {
                self.auth_pending = None;
                self.authed = *status;
                if !*status {
                    self.auth_refused = Some(message.to_string());
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn answer_challenge(&mut self) -> Result<(), RelayError> {
        let Some(challenge) = self.challenge.clone() else {
            return Ok(());
        };
        let event =
            nip42::auth_event(&self.opts.keys, &challenge, self.url.as_str()).map_err(|e| {
                RelayError::Auth {
                    relay: self.url.to_string(),
                    reason: e.to_string(),
                }
            })?;
        debug!(relay = %self.url, "answering NIP-42 AUTH");
        self.auth_pending = Some(event.id);
        self.authed = false;
        self.auths_sent += 1;
        self.send(nip42::auth_message(&event)).await
    }

    /// Answers the last challenge and waits up to `wait` for the relay's OK (other messages
    /// received meanwhile are dropped). Some relays never answer an AUTH they accept, so silence
    /// is [`AuthOutcome::NoAnswer`], not an error.
    pub async fn authenticate(&mut self, wait: Duration) -> Result<AuthOutcome, RelayError> {
        if self.challenge.is_none() {
            return Ok(AuthOutcome::NoChallenge);
        }
        if self.auth_pending.is_none() {
            self.answer_challenge().await?;
        }
        let deadline = Instant::now() + wait;
        while self.auth_pending.is_some() {
            match self.recv(deadline).await {
                Ok(_) => {}
                Err(e) if e.is_silence() => return Ok(AuthOutcome::NoAnswer),
                Err(e) => return Err(e),
            }
        }
        Ok(match self.auth_refused.take() {
            None if self.authed => AuthOutcome::Accepted,
            Some(reason) => AuthOutcome::Refused(reason),
            None => AuthOutcome::NoAnswer,
        })
    }

    /// Where AUTH stands, to mark when a request goes out (see [`RelaySession::authed_since`]).
    pub fn auth_mark(&self) -> AuthMark {
        AuthMark {
            sent: self.auths_sent,
            authed: self.authed,
        }
    }

    /// Whether the answer to a request sent at `mark` may lack what only an authenticated client
    /// may read (relays such as nostr-rs-relay leave it out silently): an AUTH went out during
    /// the answer and was not refused (its OK awaited up to `wait`; some relays never send
    /// one), or one pending at `mark` was accepted since.
    pub async fn authed_since(
        &mut self,
        mark: AuthMark,
        wait: Duration,
    ) -> Result<bool, RelayError> {
        match auth_changed(mark, self.auth_mark(), self.auth_pending.is_some()) {
            AuthChange::None => Ok(false),
            AuthChange::Accepted => Ok(true),
            AuthChange::Pending => Ok(self.authenticate(wait).await?.may_retry()),
        }
    }

    /// Waits until the relay accepted our AUTH (answered as the challenge arrives, before or
    /// after the refusal that made the caller wait). Messages received meanwhile are dropped.
    pub async fn wait_authed(&mut self, deadline: Instant) -> Result<(), RelayError> {
        loop {
            if self.authed {
                return Ok(());
            }
            if let Some(reason) = self.auth_refused.take() {
                return Err(RelayError::AuthRejected {
                    relay: self.url.to_string(),
                    reason,
                });
            }
            if self.challenge.is_some() && self.auth_pending.is_none() {
                self.answer_challenge().await?;
            }
            self.recv(deadline).await?;
        }
    }

    /// Waits up to `wait` for an AUTH challenge (relays send it on connect or with a refusal);
    /// whether one is known afterwards.
    pub async fn await_challenge(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        while self.challenge.is_none() {
            if self.recv(until).await.is_err() {
                break;
            }
        }
        self.challenge.is_some()
    }

    /// Best-effort close that never holds the caller long.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), self.ws.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(sent: u64, authed: bool) -> AuthMark {
        AuthMark { sent, authed }
    }

    #[test]
    fn an_answer_is_read_again_only_when_auth_changed_during_it() {
        use AuthChange::{Accepted, None, Pending};
        // (before the request, after the answer, an AUTH awaiting its OK) → what changed
        let cases = [
            // Authenticated before the request: the answer was complete.
            ((1, true), (1, true), false, None),
            // Accepted during the answer, or an AUTH sent during it awaits its OK.
            ((0, false), (1, true), false, Accepted),
            ((1, false), (1, true), false, Accepted),
            ((0, false), (1, false), true, Pending),
            // Refused; never challenged; or pending since before the request (a relay that
            // never answers AUTH: waiting again on every page would cost a timeout each).
            ((0, false), (1, false), false, None),
            ((0, false), (0, false), false, None),
            ((1, false), (1, false), true, None),
        ];
        for ((s0, a0), (s1, a1), pending, want) in cases {
            assert_eq!(
                auth_changed(mark(s0, a0), mark(s1, a1), pending),
                want,
                "before ({s0}, {a0}), after ({s1}, {a1}), pending {pending}"
            );
        }
    }
}
