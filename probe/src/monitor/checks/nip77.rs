//! NIP-77 probe: does `NEG-OPEN` get a `NEG-MSG` back? Relays advertise 77 in NIP-11 without
//! negentropy enabled (strfry keeps it listed when disabled), so only a live answer counts.
//! Silence is an answer too, and a quick one: see [`crate::net::relay::NegAnswer`].

use std::time::Duration;

use nostr::{Filter, Keys, Kind, Timestamp};

use crate::model::RelayUrl;
use crate::monitor::report::{Check, Nip77Data, Refusal};
use crate::net::relay::NegAnswer;
use crate::net::{AuthMode, Dialer, RelaySession, SessionOptions};
use crate::nips::nip77;

/// The probe's verdict on one answer (pure).
pub fn verdict(answer: &NegAnswer, ms: u64) -> Nip77Data {
    let (negentropy, name, refused) = match answer {
        NegAnswer::Msg(_) => (true, "NEG-MSG", None),
        NegAnswer::BadMsg(_) => (false, "NEG-MSG", Some("invalid".to_owned())),
        NegAnswer::Refused(m) => (false, "NEG-ERR", Some(Refusal::parse(m).prefix)),
        NegAnswer::Notice(_) => (false, "NOTICE", None),
        NegAnswer::Silent => (false, "none", None),
    };
    Nip77Data {
        negentropy: Some(negentropy),
        answer: Some(name.to_owned()),
        refused,
        rtt: Some(ms),
    }
}

/// Runs one NEG-OPEN round trip within `timeout` per step. A definite "no", silence included,
/// is a successful probe.
pub async fn check(
    dialer: &Dialer,
    keys: &Keys,
    url: &RelayUrl,
    timeout: Duration,
) -> Check<Nip77Data> {
    let opts = SessionOptions::new(keys.clone(), AuthMode::OnRequest);
    let mut s = match tokio::time::timeout(timeout, RelaySession::open(dialer, url, opts)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Check::failed(format!("open: {e}")),
        Err(_) => return Check::failed(format!("open: no connection within {timeout:?}")),
    };
    // A small, recent window: enough to prove the protocol, cheap for the relay.
    let since = crate::runtime::unix_now() - 3600;
    let filter = Filter::new()
        .kind(Kind::TextNote)
        .since(Timestamp::from_secs(u64::try_from(since).unwrap_or(0)));
    let mut tried_auth = false;
    let result = loop {
        let sub = s.new_sub("brotr-neg");
        let initial = hex::decode(nip77::EMPTY_SET_MESSAGE).unwrap_or_default();
        let (answer, took) = match s.neg_open(&sub, &filter, &initial, timeout).await {
            Ok(a) => a,
            Err(e) => break Check::failed(format!("NEG-OPEN: {e}")),
        };
        let _ = s.send(nip77::neg_close(&sub)).await;
        if let NegAnswer::Refused(m) = &answer
            && Refusal::parse(m).is_auth()
            && !tried_auth
        {
            tried_auth = true;
            let wait = (s.opened_in() * 4).clamp(Duration::from_millis(500), timeout);
            if s.authenticate(wait).await.is_ok_and(|o| o.may_retry()) {
                continue;
            }
        }
        break Check::ok(verdict(&answer, took.as_millis() as u64));
    };
    s.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_a_verdict() {
        let v = verdict(&NegAnswer::Msg(vec![0x61]), 3);
        assert_eq!(
            (v.negentropy, v.answer.as_deref()),
            (Some(true), Some("NEG-MSG"))
        );
        let v = verdict(&NegAnswer::Silent, 250);
        assert_eq!(
            (v.negentropy, v.answer.as_deref()),
            (Some(false), Some("none"))
        );
        let v = verdict(&NegAnswer::Refused("blocked: too big".into()), 1);
        assert_eq!(v.refused.as_deref(), Some("blocked"));
        let v = verdict(&NegAnswer::Notice("unknown message".into()), 1);
        assert_eq!(v.answer.as_deref(), Some("NOTICE"));
    }
}
