//! "Does this endpoint speak Nostr?" — the validator's test.
//!
//! Valid means a Nostr relay message arrived in answer to a REQ: a WebSocket handshake alone is
//! not enough (echo servers and generic WebSocket apps complete handshakes too).

use nostr::Keys;
use tokio::time::Instant;

use super::{AuthMode, RelayError, RelaySession, SessionOptions};
use crate::model::RelayUrl;
use crate::net::Dialer;
use crate::nips::nip01::{self, ParseError};

/// The relay message that proved an endpoint is a Nostr relay (its NIP-01 name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer(pub &'static str);

impl Answer {
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// Connects to `url`, asks for one event and judges the first frame; connecting and answering
/// each get the network's timeout. Anything that is clearly not a relay fails at once.
pub async fn speaks_nostr(dialer: &Dialer, url: &RelayUrl) -> Result<Answer, RelayError> {
    // Never authenticates: an AUTH challenge is itself the proof.
    let opts = SessionOptions::new(Keys::generate(), AuthMode::OnRequest);
    let mut s = RelaySession::open(dialer, url, opts).await?;
    let filter = nostr::Filter::new().kind(nostr::Kind::TextNote).limit(1);
    let sub = s.new_sub("brotr-validate");
    let result = match s.send_request(nip01::req(&sub, &[filter])).await {
        Ok(()) => {
            let deadline = Instant::now() + dialer.timeout(url);
            match s.recv(deadline).await {
                Ok(r) => match r.message {
                    Ok(m) => Ok(Answer(nip01::message_name(&m))),
                    // The right shape with a broken event inside: it speaks the protocol.
                    Err(ParseError::BadEvent { .. }) => Ok(Answer("EVENT")),
                    Err(e) => Err(RelayError::NotNostr {
                        relay: url.to_string(),
                        got: e.to_string(),
                    }),
                },
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    s.close().await;
    result
}
