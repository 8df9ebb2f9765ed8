//! RTT check (NIP-66 `rtt-open`, `rtt-read`, `rtt-write`) and what reading and writing require.
//!
//! * open: dial to completed WebSocket handshake.
//! * read: `REQ {limit:1}` to the first EVENT **or EOSE** (an empty relay still reads).
//! * write: EVENT to `OK` — judged by the OK message alone. The reference system re-reads its
//!   ephemeral event and so marks every compliant relay write-failed (spec weakness 5); NIP-01
//!   says relays answer every EVENT with OK, so OK true is the proof.
//!
//! When the relay refuses with `auth-required:` and has sent a challenge, the probe
//! authenticates once with the monitor's key and tries again: `read_auth` / `write_auth` record
//! that AUTH was needed, the RTT is of the successful attempt.

use std::time::Duration;

use nostr::{EventBuilder, Keys, Kind, Tag};
use serde_json::json;
use tokio::time::Instant;

use super::session::{RelayMsg, Session};
use crate::model::RelayUrl;
use crate::monitor::report::{Check, Refusal, RttData};
use crate::net::Dialer;

const READ_SUB: &str = "brotr-rtt";
/// Content of the write probe (as the reference system).
pub const WRITE_CONTENT: &str = "nip66-test";
/// Highest NIP-13 difficulty the probe mines (≈ 2^28 hashes is seconds of CPU; beyond that
/// the relay is recorded as refusing our write rather than stalling the monitor).
pub const MAX_POW: u8 = 24;

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
    let (mut s, open_ms) = match tokio::time::timeout(timeout, Session::open(dialer, url)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Check::failed(format!("open: {e}")),
        Err(_) => return Check::failed(format!("open: no connection within {timeout:?}")),
    };
    let mut data = RttData {
        rtt_open: Some(open_ms),
        ..Default::default()
    };
    let mut reasons = Vec::new();
    if let Err(r) = read(&mut s, keys, &mut data, timeout).await {
        reasons.push(format!("read: {r}"));
    }
    if s.challenge.is_some() {
        data.auth_challenge = Some(true);
    }
    // After AUTH for reading, the write is tried on a fresh connection: whether writing needs
    // AUTH on its own is what `write_auth` records.
    if s.authed {
        s.close().await;
        s = match tokio::time::timeout(timeout, Session::open(dialer, url)).await {
            Ok(Ok((fresh, _))) => fresh,
            Ok(Err(e)) => return Check::partial(data, format!("write: reopen: {e}")),
            Err(_) => {
                return Check::partial(
                    data,
                    format!("write: reopen: no connection within {timeout:?}"),
                );
            }
        };
    }
    let pow = pow.await;
    if let Err(r) = write_phase(&mut s, keys, url, write_kind, pow, &mut data, timeout).await {
        reasons.push(format!("write: {r}"));
    }
    s.close().await;
    if reasons.is_empty() {
        Check::ok(data)
    } else {
        Check::partial(data, reasons.join("; "))
    }
}

async fn read(
    s: &mut Session,
    keys: &Keys,
    data: &mut RttData,
    timeout: Duration,
) -> Result<(), String> {
    let mut tried_auth = false;
    loop {
        let start = Instant::now();
        let deadline = start + timeout;
        s.send(&json!(["REQ", READ_SUB, {"limit": 1}]))
            .await
            .map_err(|e| e.to_string())?;
        let refusal = loop {
            match s.recv(deadline).await.map_err(|e| e.to_string())? {
                RelayMsg::Event { sub } | RelayMsg::Eose { sub } if sub == READ_SUB => {
                    data.rtt_read = Some(start.elapsed().as_millis() as u64);
                    let _ = s.send(&json!(["CLOSE", READ_SUB])).await;
                    return Ok(());
                }
                RelayMsg::Closed { sub, message } if sub == READ_SUB => break message,
                _ => {}
            }
        };
        let r = Refusal::parse(&refusal);
        if r.is_auth() {
            data.read_auth = Some(true);
        }
        data.read_refused = Some(r.clone());
        if r.is_auth() && !tried_auth && wait_challenge(s, deadline).await {
            tried_auth = true;
            if s.authenticate(keys, deadline).await.unwrap_or(false) {
                continue;
            }
        }
        return Err(format!("refused: {refusal}"));
    }
}

/// Waits briefly for an AUTH challenge when none arrived yet (relays send it on connect or with
/// the refusal).
async fn wait_challenge(s: &mut Session, deadline: Instant) -> bool {
    let short = (Instant::now() + Duration::from_millis(500)).min(deadline);
    while s.challenge.is_none() {
        if s.recv(short).await.is_err() {
            break;
        }
    }
    s.challenge.is_some()
}

async fn write_phase(
    s: &mut Session,
    keys: &Keys,
    url: &RelayUrl,
    kind: u16,
    pow: u8,
    data: &mut RttData,
    timeout: Duration,
) -> Result<(), String> {
    let pow = pow.min(MAX_POW);
    data.write_kind = Some(kind);
    if pow > 0 {
        data.write_pow = Some(pow);
    }
    let event = build_write_event(keys, url, kind, pow).await?;
    let id = event.id.to_hex();
    let mut tried_auth = false;
    loop {
        let start = Instant::now();
        let deadline = start + timeout;
        s.send(&json!(["EVENT", event]))
            .await
            .map_err(|e| e.to_string())?;
        let (accepted, message) = loop {
            match s.recv(deadline).await.map_err(|e| e.to_string())? {
                RelayMsg::Ok {
                    id: got,
                    accepted,
                    message,
                } if got == id => break (accepted, message),
                _ => {}
            }
        };
        if accepted {
            data.rtt_write = Some(start.elapsed().as_millis() as u64);
            data.write_refused = None;
            return Ok(());
        }
        let r = Refusal::parse(&message);
        if r.is_auth() {
            data.write_auth = Some(true);
        }
        data.write_refused = Some(r.clone());
        if r.is_auth() && !tried_auth && wait_challenge(s, deadline).await {
            tried_auth = true;
            if s.authenticate(keys, deadline).await.unwrap_or(false) {
                continue;
            }
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
