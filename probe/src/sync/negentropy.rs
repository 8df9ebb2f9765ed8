//! NIP-77 reconciliation over an open [`Session`]: which events of a window does the relay hold
//! that we have not archived from it? Only the ids travel, so re-syncing an unchanged relay costs
//! a few fingerprints instead of re-reading events.
//!
//! Whether a relay "really supports" NIP-77 is judged by the answer: a `NEG-MSG` that decodes and
//! reconciles. `NEG-ERR`, `CLOSED`, a `NOTICE`, garbage or silence all mean "unsupported", and
//! the caller falls back to REQ paging.

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::{Filter, JsonUtil};
use serde_json::Value;
use tokio::time::Instant;

use super::session::{Session, SessionError, shorten};

/// Largest negentropy message we send (bytes before hex); relays commonly accept far more.
const FRAME_LIMIT: u64 = 60_000;
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
    Session(#[from] SessionError),
}

impl Session {
    /// Reconciles `filter` (with its since/until, no limit) against `local` = `(created_at, id)`
    /// of what we archived from this relay in that window.
    pub async fn reconcile(
        &mut self,
        filter: &Filter,
        local: &[(i64, [u8; 32])],
        round_timeout: std::time::Duration,
    ) -> Result<Reconciled, NegError> {
        let unsupported = |what: String| NegError::Unsupported(what);
        let neg_err = |e: negentropy::Error| NegError::Unsupported(format!("negentropy: {e}"));
        let mut storage = NegentropyStorageVector::with_capacity(local.len());
        for (t, id) in local {
            storage
                .insert(u64::try_from(*t).unwrap_or(0), Id::from_byte_array(*id))
                .map_err(neg_err)?;
        }
        storage.seal().map_err(neg_err)?;
        let mut neg = Negentropy::owned(storage, FRAME_LIMIT).map_err(neg_err)?;
        let init = neg.initiate().map_err(neg_err)?;
        let sub = self.new_sub();
        self.stats.requests += 1;
        self.send_text(format!(
            r#"["NEG-OPEN","{sub}",{},"{}"]"#,
            filter.as_json(),
            hex::encode(init)
        ))
        .await?;
        let mut out = Reconciled::default();
        let mut have: Vec<Id> = Vec::new();
        let mut need: Vec<Id> = Vec::new();
        loop {
            let deadline = Instant::now() + round_timeout;
            let text = match self.recv_text(deadline).await {
                Ok(t) => t,
                // Silence is the commonest way of not supporting a message type.
                Err(SessionError::Idle { .. } | SessionError::PageTimeout { .. }) => {
                    return Err(unsupported("no answer to NEG-OPEN".into()));
                }
                Err(e) => return Err(e.into()),
            };
            let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text) else {
                if text.is_empty() {
                    continue;
                }
                return Err(unsupported(format!("not JSON: {}", shorten(&text))));
            };
            let for_us = items.get(1).and_then(Value::as_str) == Some(sub.as_str());
            match items.first().and_then(Value::as_str) {
                Some("NEG-MSG") if for_us => {
                    let msg = items
                        .get(2)
                        .and_then(Value::as_str)
                        .and_then(|h| hex::decode(h).ok())
                        .ok_or_else(|| unsupported(format!("bad NEG-MSG: {}", shorten(&text))))?;
                    out.rounds += 1;
                    let next = neg
                        .reconcile_with_ids(&msg, &mut have, &mut need)
                        .map_err(neg_err)?;
                    match next {
                        None => break,
                        Some(_) if out.rounds >= MAX_ROUNDS => {
                            return Err(unsupported(format!("over {MAX_ROUNDS} rounds")));
                        }
                        Some(next) => {
                            self.send_text(format!(
                                r#"["NEG-MSG","{sub}","{}"]"#,
                                hex::encode(next)
                            ))
                            .await?;
                        }
                    }
                }
                Some("NEG-ERR") | Some("CLOSED") if for_us => {
                    return Err(unsupported(shorten(&text)));
                }
                Some("NOTICE") => return Err(unsupported(shorten(&text))),
                _ => continue,
            }
        }
        let _ = self.send_text(format!(r#"["NEG-CLOSE","{sub}"]"#)).await;
        out.have = have.len();
        out.need = need.into_iter().map(|id| *id).collect();
        Ok(out)
    }
}
