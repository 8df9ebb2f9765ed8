//! The one error type of relay sessions. Every message names the relay.

use std::time::Duration;

use crate::net::DialError;

/// Why a session with a relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("{relay}: WebSocket error: {reason}")]
    Ws { relay: String, reason: String },
    /// A message or frame over the session's size limit; the connection is gone.
    #[error("{relay}: WebSocket error: {reason}")]
    TooLarge { relay: String, reason: String },
    #[error("{relay} closed the connection")]
    Closed { relay: String },
    #[error("{relay} sent nothing for {after:?} in the middle of an answer")]
    Idle { relay: String, after: Duration },
    #[error("{relay} did not answer in time")]
    Timeout { relay: String },
    #[error("{relay} refused the subscription: {reason}")]
    Refused { relay: String, reason: String },
    #[error("{relay} rejected our AUTH: {reason}")]
    AuthRejected { relay: String, reason: String },
    #[error("{relay} answered with something that is not a Nostr relay message: {got}")]
    NotNostr { relay: String, got: String },
    #[error("{relay}: cannot authenticate: {reason}")]
    Auth { relay: String, reason: String },
}

impl RelayError {
    /// The relay stayed silent (idle or past the deadline), as opposed to answering wrongly.
    pub fn is_silence(&self) -> bool {
        matches!(self, RelayError::Idle { .. } | RelayError::Timeout { .. })
    }
}
