//! RTT check (NIP-66 `rtt-open`, `rtt-read`, `rtt-write`) and what reading and writing require.
//!
//! * open: dial to completed WebSocket handshake.
//! * read: `REQ` for the probe's own kind and key (`limit: 1`) to the first EVENT **or EOSE** (an
//!   empty relay still reads).
//! * write: EVENT to whichever comes first of `OK` for it and the event itself coming back on the
//!   read's subscription, kept open for that. NIP-01 makes OK mandatory, but some relays
//!   (nostr-rs-relay) only broadcast ephemeral events and never OK them; the echo proves the
//!   write as well, and nothing is stored on the relay. `write_ack` records which it was. Reusing
//!   the read's subscription costs no extra message (a relay that handles messages one by one
//!   answers as fast as before).
//!
//! When the relay refuses and has sent a challenge, the probe authenticates once with the
//! monitor's key and tries again: `read_auth` / `write_auth` record that AUTH was needed, the
//! RTT is of the successful attempt.

use std::time::Duration;

use nostr::{EventBuilder, EventId, Filter, Keys, Kind, Tag, Timestamp};
use tokio::time::Instant;

use crate::model::RelayUrl;
use crate::monitor::report::{Check, Refusal, RttData};
use crate::net::{AuthMode, Dialer, RelaySession, SessionOptions};
use crate::nips::nip01::{self, ParseError, RelayMessage};

/// Content of the write probe (as the reference system).
pub const WRITE_CONTENT: &str = "nip66-test";
/// Highest NIP-13 difficulty the probe mines (≈ 2^28 hashes is seconds of CPU; beyond that
/// the relay is recorded as refusing our write rather than stalling the monitor).
pub const MAX_POW: u8 = 24;

async fn open(
    dialer: &Dialer,
    keys: &Keys,
    url: &RelayUrl,
    timeout: Duration,
) -> Result<RelaySession, String> {
    let opts = SessionOptions::new(keys.clone(), AuthMode::OnRequest);
    match tokio::time::timeout(timeout, RelaySession::open(dialer, url, opts)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("open: {e}")),
        Err(_) => Err(format!("open: no connection within {timeout:?}")),
    }
}

/// Runs one RTT attempt: each phase gets `timeout`. The write waits for `pow`, the NIP-13
/// difficulty the relay's NIP-11 document asks for (so NIP-11 can be fetched meanwhile).
pub async fn check(
    dialer: &Dialer,
    keys: &Keys,
    url: &RelayUrl,
    write_kind: u16,
    pow: impl std::future::Future<Output = u8>,
    timeout: Duration,
) -> Check<RttData> {
    let mut s = match open(dialer, keys, url, timeout).await {
        Ok(s) => s,
        Err(e) => return Check::failed(e),
    };
    let mut data = RttData {
        rtt_open: Some(s.opened_in().as_millis() as u64),
        ..Default::default()
    };
    let mut reasons = Vec::new();
    let probe = Filter::new()
        .kind(Kind::from(write_kind))
        .author(keys.public_key())
        .since(Timestamp::now());
    let mut echo = match read(&mut s, &probe, &mut data, timeout).await {
        Ok(sub) => Some(sub),
        Err(r) => {
            reasons.push(format!("read: {r}"));
            None
        }
    };
    if s.challenge().is_some() {
        data.auth_challenge = Some(true);
    }
    // After AUTH for reading, the write is tried on a fresh connection: whether writing needs
    // AUTH on its own is what `write_auth` records.
    if s.is_authed() || data.read_auth == Some(true) {
        s.close().await;
        s = match open(dialer, keys, url, timeout).await {
            Ok(s) => s,
            Err(e) => return Check::partial(data, format!("write: re{e}")),
        };
        echo = None;
    }
    let pow = pow.await;
    let w = Write {
        keys,
        url,
        kind: write_kind,
        pow,
        timeout,
    };
    if let Err(r) = write(&mut s, &w, echo, &mut data).await {
        reasons.push(format!("write: {r}"));
    }
    s.close().await;
    if reasons.is_empty() {
        Check::ok(data)
    } else {
        Check::partial(data, reasons.join("; "))
    }
}

/// How long an AUTH's OK is awaited: a few round trips, as some relays never send it.
fn auth_wait(s: &RelaySession, timeout: Duration) -> Duration {
    (s.opened_in() * 4).clamp(Duration::from_millis(500), timeout)
}

/// After a refusal: authenticate once when the relay challenged us (now or within a moment).
/// Whether the request is worth sending again.
async fn try_auth(s: &mut RelaySession, timeout: Duration) -> bool {
    if !s.await_challenge(Duration::from_millis(500)).await {
        return false;
    }
    let wait = auth_wait(s, timeout);
    s.authenticate(wait)
        .await
        .is_ok_and(|outcome| outcome.may_retry())
}

/// A refusal by NOTICE: some relays refuse with a NOTICE instead of CLOSED/OK. Only a message
/// with a machine-readable prefix counts.
fn notice_refusal(text: &str) -> Option<String> {
    let r = Refusal::parse(text);
    (r.prefix != "error").then(|| text.to_owned())
}

/// The read; `Ok` with the subscription, left open for the write's echo.
async fn read(
    s: &mut RelaySession,
    filter: &Filter,
    data: &mut RttData,
    timeout: Duration,
) -> Result<String, String> {
    let mut tried_auth = false;
    loop {
        let sub = s.new_sub("brotr-rtt");
        let start = Instant::now();
        let deadline = start + timeout;
        let req = nip01::req(&sub, std::slice::from_ref(&filter.clone().limit(1)));
        s.send_request(req).await.map_err(|e| e.to_string())?;
        let refusal = loop {
            let r = s.recv(deadline).await.map_err(|e| e.to_string())?;
            let Ok(m) = r.message else { continue };
            let ours = nip01::subscription_of(&m) == Some(sub.as_str());
            match m {
                RelayMessage::Event { .. } | RelayMessage::EndOfStoredEvents(_) if ours => {
                    data.rtt_read = Some(start.elapsed().as_millis() as u64);
                    if tried_auth {
                        data.read_auth = Some(true);
                    }
                    return Ok(sub);
                }
                RelayMessage::Closed { message, .. } if ours => break message.into_owned(),
                RelayMessage::Notice(n) => {
                    if let Some(r) = notice_refusal(&n) {
                        break r;
                    }
                }
                _ => {}
            }
        };
        let r = Refusal::parse(&refusal);
        if r.is_auth() {
            data.read_auth = Some(true);
        }
        data.read_refused = Some(r);
        if !tried_auth && try_auth(s, timeout).await {
            tried_auth = true;
            data.read_refused = None;
            continue;
        }
        return Err(format!("refused: {refusal}"));
    }
}

/// The answer to our write.
enum WriteAnswer {
    Accepted { echo: bool },
    Refused(String),
}

/// The answer to our write: its `OK` (an empty-id `OK` counts, as ours is the only event in
/// flight) or the event itself on `sub`. A `NOTICE` refusal is only believed when nothing else
/// comes: relays also answer the subscription with one (e.g. when reading needs AUTH), and the
/// write's own `OK` may come seconds later.
async fn await_write(
    s: &mut RelaySession,
    id: EventId,
    sub: &str,
    deadline: Instant,
) -> Result<WriteAnswer, String> {
    let mut notice = None;
    loop {
        let r = match s.recv(deadline).await {
            Ok(r) => r,
            Err(e) if e.is_silence() => {
                return notice
                    .map(WriteAnswer::Refused)
                    .ok_or_else(|| e.to_string());
            }
            Err(e) => return Err(e.to_string()),
        };
        match r.message {
            Ok(RelayMessage::Ok {
                event_id,
                status,
                message,
            }) if event_id == id => {
                return Ok(if status {
                    WriteAnswer::Accepted { echo: false }
                } else {
                    WriteAnswer::Refused(message.into_owned())
                });
            }
            Err(ParseError::OkWithoutId {
                accepted, message, ..
            }) => {
                return Ok(if accepted {
                    WriteAnswer::Accepted { echo: false }
                } else {
                    WriteAnswer::Refused(message)
                });
            }
            Ok(RelayMessage::Event {
                subscription_id,
                event,
            }) if subscription_id.as_str() == sub && event.id == id => {
                return Ok(WriteAnswer::Accepted { echo: true });
            }
            Ok(RelayMessage::Notice(n)) => notice = notice.or(notice_refusal(&n)),
            _ => {}
        }
    }
}

/// What the write sends and how long it waits.
struct Write<'a> {
    keys: &'a Keys,
    url: &'a RelayUrl,
    kind: u16,
    pow: u8,
    timeout: Duration,
}

/// The write; `echo` is an open subscription the event would come back on (else one is opened
/// for its id before it is sent).
async fn write(
    s: &mut RelaySession,
    w: &Write<'_>,
    mut echo: Option<String>,
    data: &mut RttData,
) -> Result<(), String> {
    let pow = w.pow.min(MAX_POW);
    data.write_kind = Some(w.kind);
    if pow > 0 {
        data.write_pow = Some(pow);
    }
    let event = build_write_event(w.keys, w.url, w.kind, pow).await?;
    let mut tried_auth = false;
    loop {
        let sub = match echo.take() {
            Some(sub) => sub,
            None => {
                // Subscribed before sending, so the event coming back is seen.
                let sub = s.new_sub("brotr-write");
                s.send(nip01::req(&sub, &[Filter::new().id(event.id)]))
                    .await
                    .map_err(|e| e.to_string())?;
                sub
            }
        };
        let start = Instant::now();
        s.send(nip01::event(&event))
            .await
            .map_err(|e| e.to_string())?;
        let answer = await_write(s, event.id, &sub, start + w.timeout).await;
        let _ = s.send(nip01::close(&sub)).await;
        let message = match answer? {
            WriteAnswer::Accepted { echo } => {
                data.rtt_write = Some(start.elapsed().as_millis() as u64);
                data.write_ack = Some(if echo { "echo" } else { "ok" }.to_owned());
                data.write_refused = None;
                if tried_auth {
                    data.write_auth = Some(true);
                }
                return Ok(());
            }
            WriteAnswer::Refused(m) => m,
        };
        let r = Refusal::parse(&message);
        if r.is_auth() {
            data.write_auth = Some(true);
        }
        data.write_refused = Some(r);
        if !tried_auth && try_auth(s, w.timeout).await {
            tried_auth = true;
            continue;
        }
        return Err(format!("refused: {message}"));
    }
}

/// The write probe event: `kind`, content `nip66-test`, `["d", <relay url>]`, NIP-13 `pow`.
/// Mining runs off the async threads.
pub async fn build_write_event(
    keys: &Keys,
    url: &RelayUrl,
    kind: u16,
    pow: u8,
) -> Result<nostr::Event, String> {
    let keys = keys.clone();
    let d = url.as_str().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut b = EventBuilder::new(Kind::from(kind), WRITE_CONTENT).tag(Tag::identifier(d));
        if pow > 0 {
            b = b.pow(pow);
        }
        b.sign_with_keys(&keys).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
