//! NIP-77 reconciliation over a [`RelaySession`]: which events of a window does the relay hold
//! that we have not archived from it? Only the ids travel, so re-syncing an unchanged relay costs
//! a few fingerprints instead of re-reading events.
//!
//! Whether a relay "really supports" NIP-77 is judged by the answer: a `NEG-MSG` that decodes and
//! reconciles. `NEG-ERR`, `CLOSED`, a `NOTICE`, garbage or silence all mean "unsupported", and
//! the caller falls back to REQ paging.

use std::time::Duration;

use nostr::Filter;
use tokio::time::Instant;

use super::reader::AUTH_OK_WAIT;
use crate::net::relay::NegAnswer;
use crate::net::{RelayError, RelaySession};
use crate::nips::nip01::{self, RelayMessage};
use crate::nips::nip77;

/// Reconciliation rounds before giving up: a safety net against a relay that never finishes
/// (time is bounded separately by the round timeout and the relay's time budget). Listing
/// 200,000 ids we lack in 60 kB frames alone takes over 100 rounds.
const MAX_ROUNDS: u32 = 10_000;

/// The outcome of a reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Ids the relay has and we do not (for this relay and window).
    pub need: Vec<[u8; 32]>,
    /// How many ids we have that the relay no longer serves.
    pub have: usize,
    pub rounds: u32,
}

/// Why reconciliation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum NegError {
    /// The relay does not (really) speak NIP-77; fall back to REQ paging.
    #[error("NIP-77 not supported: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Relay(#[from] RelayError),
}

impl From<nip77::NegentropyError> for NegError {
    fn from(e: nip77::NegentropyError) -> Self {
        NegError::Unsupported(e.to_string())
    }
}

/// Reconciles `filter` (with its since/until, no limit) against `local` = `(created_at, id)` of
/// what we archived from this relay in that window. Every round gets `round_timeout`. An AUTH
/// accepted meanwhile may widen what the relay lists: then the reconciliation is done again.
pub async fn reconcile(
    s: &mut RelaySession,
    filter: &Filter,
    local: &[(i64, [u8; 32])],
    round_timeout: Duration,
) -> Result<Reconciled, NegError> {
    let mark = s.auth_mark();
    let first = reconcile_once(s, filter, local, round_timeout).await?;
    if s.authed_since(mark, AUTH_OK_WAIT).await? {
        let mut again = reconcile_once(s, filter, local, round_timeout).await?;
        again.rounds += first.rounds;
        return Ok(again);
    }
    Ok(first)
}

async fn reconcile_once(
    s: &mut RelaySession,
    filter: &Filter,
    local: &[(i64, [u8; 32])],
    round_timeout: Duration,
) -> Result<Reconciled, NegError> {
    let unsupported = |what: String| NegError::Unsupported(what);
    let mut neg = nip77::Reconciliation::new(local)?;
    let init = neg.initiate()?;
    let sub = s.new_sub("brotr-neg");
    let (first, _) = s.neg_open(&sub, filter, &init, round_timeout).await?;
    let mut msg = match first {
        NegAnswer::Msg(m) => m,
        NegAnswer::BadMsg(m) => return Err(unsupported(format!("bad NEG-MSG: {m}"))),
        NegAnswer::Refused(r) => return Err(unsupported(nip01::shorten(&r, 120))),
        NegAnswer::Notice(n) => {
            return Err(unsupported(format!("NOTICE {}", nip01::shorten(&n, 120))));
        }
        NegAnswer::Silent => return Err(unsupported("no answer to NEG-OPEN".into())),
    };
    let mut out = Reconciled::default();
    loop {
        out.rounds += 1;
        let Some(next) = neg.step(&msg)? else { break };
        if out.rounds >= MAX_ROUNDS {
            return Err(unsupported(format!("over {MAX_ROUNDS} rounds")));
        }
        s.send(nip77::neg_msg(&sub, &next)).await?;
        msg = next_message(s, &sub, round_timeout).await?;
    }
    let _ = s.send(nip77::neg_close(&sub)).await;
    let d = neg.finish();
    (out.need, out.have) = (d.need, d.have);
    Ok(out)
}

/// The next NEG-MSG of `sub`; NEG-ERR, CLOSED or garbage end the reconciliation.
async fn next_message(
    s: &mut RelaySession,
    sub: &str,
    round_timeout: Duration,
) -> Result<Vec<u8>, NegError> {
    let deadline = Instant::now() + round_timeout;
    loop {
        let r = s.recv(deadline).await?;
        let Ok(m) = r.message else { continue };
        if nip01::subscription_of(&m) != Some(sub) {
            continue;
        }
        match m {
            RelayMessage::NegMsg { message, .. } => {
                return hex::decode(message.as_ref()).map_err(|_| {
                    NegError::Unsupported(format!("bad NEG-MSG: {}", nip01::shorten(&message, 80)))
                });
            }
            RelayMessage::NegErr { message, .. } | RelayMessage::Closed { message, .. } => {
                return Err(NegError::Unsupported(nip01::shorten(&message, 120)));
            }
            _ => {}
        }
    }
}
