//! Opening a NIP-77 reconciliation and telling a relay's "no" from its silence quickly.
//!
//! Most relays do not speak NIP-77 and many ignore unknown messages, so silence is the commonest
//! answer and waiting a full timeout for it costs seconds per relay. NEG-OPEN is followed at once
//! by a REQ that matches nothing (`ids: [0…0]`): every relay answers it with EOSE. Once that
//! EOSE is back after `t`, the NEG-OPEN answer gets `max(4 t, 250 ms)` more, never past the
//! caller's cap; then silence is the verdict. A relay that answers NEG-OPEN answers it before or
//! soon after a no-op REQ sent behind it.

use std::time::Duration;

use nostr::{EventId, Filter};
use tokio::time::Instant;

use super::{RelayError, RelaySession};
use crate::nips::nip01::{self, RelayMessage};
use crate::nips::nip77;

/// The first answer to a NEG-OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegAnswer {
    /// A NEG-MSG (hex decoded): the relay reconciles.
    Msg(Vec<u8>),
    /// A NEG-MSG whose payload is not hex.
    BadMsg(String),
    /// NEG-ERR or CLOSED for our subscription, with its reason.
    Refused(String),
    /// A NOTICE (relays that do not know NEG-OPEN often say so).
    Notice(String),
    /// Nothing about NEG-OPEN although the relay answered the REQ behind it.
    Silent,
}

/// How long after the marker REQ's EOSE a NEG-OPEN answer is still awaited.
pub fn grace(marker_rtt: Duration) -> Duration {
    (marker_rtt * 4).max(Duration::from_millis(250))
}

impl RelaySession {
    /// Sends NEG-OPEN on `sub` with `filter` and the initial message, plus the marker REQ, and
    /// returns the first answer and how long it took. `cap` bounds the whole wait.
    pub async fn neg_open(
        &mut self,
        sub: &str,
        filter: &Filter,
        initial: &[u8],
        cap: Duration,
    ) -> Result<(NegAnswer, Duration), RelayError> {
        let start = Instant::now();
        let hard = start + cap;
        self.send_request(nip77::neg_open(sub, filter, &hex::encode(initial)))
            .await?;
        let marker = self.new_sub("brotr-mark");
        let nothing = Filter::new().id(EventId::all_zeros());
        self.send(nip01::req(&marker, &[nothing])).await?;
        let mut deadline = hard;
        let answer = loop {
            let r = match self.recv(deadline).await {
                Ok(r) => r,
                Err(e) if e.is_silence() => break NegAnswer::Silent,
                Err(e) => return Err(e),
            };
            let Ok(m) = r.message else { continue };
            let ours = nip01::subscription_of(&m) == Some(sub);
            match m {
                RelayMessage::NegMsg { message, .. } if ours => {
                    break match hex::decode(message.as_ref()) {
                        Ok(bytes) => NegAnswer::Msg(bytes),
                        Err(_) => NegAnswer::BadMsg(nip01::shorten(&message, 80)),
                    };
                }
                RelayMessage::NegErr { message, .. } | RelayMessage::Closed { message, .. }
                    if ours =>
                {
                    break NegAnswer::Refused(message.into_owned());
                }
                RelayMessage::Notice(n) => break NegAnswer::Notice(n.into_owned()),
                RelayMessage::EndOfStoredEvents(id) if id.as_str() == marker => {
                    let _ = self.send(nip01::close(&marker)).await;
                    deadline = (Instant::now() + grace(start.elapsed())).min(hard);
                }
                _ => {}
            }
        };
        Ok((answer, start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_a_few_round_trips_and_never_tiny() {
        assert_eq!(grace(Duration::from_millis(1)), Duration::from_millis(250));
        assert_eq!(
            grace(Duration::from_millis(200)),
            Duration::from_millis(800)
        );
    }
}
