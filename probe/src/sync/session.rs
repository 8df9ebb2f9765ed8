//! One WebSocket session with a relay for archiving: REQ pages read to EOSE under an idle and a
//! page deadline, every event verified (id, signature, filter, size) before it is kept, NIP-42
//! AUTH answered with the probe's key, and wire statistics for the benchmarks.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr::filter::MatchEventOptions;
use nostr::{Event, EventBuilder, Filter, JsonUtil, Keys, Timestamp};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

use crate::model::{EventRow, RelayUrl};
use crate::net::{DialError, Dialer, WsStream};

use super::paging::PageSummary;

/// Why a session failed. Every message names the relay.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("{relay}: WebSocket error: {reason}")]
    Ws { relay: String, reason: String },
    #[error("{relay} closed the connection")]
    Closed { relay: String },
    #[error("{relay} sent nothing for {after:?} in the middle of an answer")]
    Idle { relay: String, after: Duration },
    #[error("{relay} did not finish an answer within {after:?}")]
    PageTimeout { relay: String, after: Duration },
    #[error("{relay} refused the subscription: {reason}")]
    Refused { relay: String, reason: String },
    #[error("{relay} rejected our AUTH: {reason}")]
    AuthRejected { relay: String, reason: String },
}

/// Bytes, frames and requests exchanged, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    pub requests: u64,
    pub frames: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// EVENT frames received for our subscriptions.
    pub events_received: u64,
}

impl WireStats {
    pub fn add(&mut self, o: &WireStats) {
        self.requests += o.requests;
        self.frames += o.frames;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.events_received += o.events_received;
    }
}

/// Events dropped while reading a page, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejected {
    pub malformed: u64,
    pub bad_signature: u64,
    pub off_filter: u64,
    pub oversized: u64,
    pub unstorable: u64,
}

impl Rejected {
    pub fn total(&self) -> u64 {
        self.malformed + self.bad_signature + self.off_filter + self.oversized + self.unstorable
    }

    pub fn add(&mut self, o: &Rejected) {
        self.malformed += o.malformed;
        self.bad_signature += o.bad_signature;
        self.off_filter += o.off_filter;
        self.oversized += o.oversized;
        self.unstorable += o.unstorable;
    }
}

/// The answer to one REQ.
#[derive(Debug, Default)]
pub struct Page {
    /// Valid, distinct events, the newest `limit` of those received.
    pub events: Vec<EventRow>,
    pub summary: PageSummary,
    pub rejected: Rejected,
}

/// Session limits.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub page: Duration,
    pub max_event_bytes: usize,
}

pub struct Session {
    ws: WsStream,
    relay: RelayUrl,
    keys: Keys,
    limits: SessionLimits,
    next_sub: u64,
    /// Our AUTH event id while waiting for its OK, and whether the relay accepted it.
    auth_pending: Option<nostr::EventId>,
    authed: bool,
    pub stats: WireStats,
}

/// What the page reader should do with a frame.
enum Frame {
    Event(Box<Event>, usize),
    Eose,
    Closed(String),
    Malformed,
    Other,
}

impl Session {
    pub async fn open(
        dialer: &Dialer,
        relay: &RelayUrl,
        keys: Keys,
        limits: SessionLimits,
    ) -> Result<Self, SessionError> {
        let ws = dialer.connect(relay).await?;
        Ok(Session {
            ws,
            relay: relay.clone(),
            keys,
            limits,
            next_sub: 0,
            auth_pending: None,
            authed: false,
            stats: WireStats::default(),
        })
    }

    pub fn relay(&self) -> &RelayUrl {
        &self.relay
    }

    fn ws_err(&self, e: impl std::fmt::Display) -> SessionError {
        SessionError::Ws {
            relay: self.relay.to_string(),
            reason: e.to_string(),
        }
    }

    pub(crate) async fn send_text(&mut self, text: String) -> Result<(), SessionError> {
        self.stats.bytes_out += text.len() as u64;
        let r = self.ws.send(Message::text(text)).await;
        r.map_err(|e| self.ws_err(e))
    }

    /// Next text frame within `deadline` (page) and the idle limit. AUTH challenges and the OK
    /// to our AUTH are handled here and come back as an empty string.
    pub(crate) async fn recv_text(&mut self, deadline: Instant) -> Result<String, SessionError> {
        loop {
            let idle_end = Instant::now() + self.limits.idle;
            let (until, idle) = if idle_end < deadline {
                (idle_end, true)
            } else {
                (deadline, false)
            };
            let msg = match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) if idle => {
                    return Err(SessionError::Idle {
                        relay: self.relay.to_string(),
                        after: self.limits.idle,
                    });
                }
                Err(_) => {
                    return Err(SessionError::PageTimeout {
                        relay: self.relay.to_string(),
                        after: self.limits.page,
                    });
                }
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Err(SessionError::Closed {
                        relay: self.relay.to_string(),
                    });
                }
                Ok(Some(Err(e))) => return Err(self.ws_err(e)),
                Ok(Some(Ok(m))) => m,
            };
            self.stats.frames += 1;
            let Message::Text(text) = msg else {
                continue;
            };
            self.stats.bytes_in += text.len() as u64;
            let text = text.as_str();
            // AUTH and OK-for-AUTH are handled here so every reader gets them for free.
            if (text.starts_with("[\"AUTH\"") || text.starts_with("[\"OK\""))
                && self.handle_auth_frames(text).await?
            {
                // An empty frame lets a caller waiting for authentication re-check.
                return Ok(String::new());
            }
            return Ok(text.to_owned());
        }
    }

    /// Answers `["AUTH", challenge]`; consumes the OK of our AUTH event. True when consumed.
    async fn handle_auth_frames(&mut self, text: &str) -> Result<bool, SessionError> {
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
            return Ok(false);
        };
        match (items.first().and_then(Value::as_str), items.len()) {
            (Some("AUTH"), 2) => {
                let Some(challenge) = items[1].as_str() else {
                    return Ok(true);
                };
                let url = nostr::RelayUrl::parse(self.relay.as_str())
                    .map_err(|e| self.ws_err(format!("relay URL for AUTH: {e}")))?;
                let event = EventBuilder::auth(challenge, url)
                    .sign_with_keys(&self.keys)
                    .map_err(|e| self.ws_err(format!("signing AUTH: {e}")))?;
                self.auth_pending = Some(event.id);
                debug!(relay = %self.relay, "answering NIP-42 AUTH");
                self.send_text(format!(r#"["AUTH",{}]"#, event.as_json()))
                    .await?;
                Ok(true)
            }
            (Some("OK"), 4) => {
                let id = items[1].as_str().unwrap_or_default();
                match self.auth_pending {
                    Some(p) if p.to_hex() == id => {
                        self.auth_pending = None;
                        if items[2].as_bool() == Some(true) {
                            self.authed = true;
                        } else {
                            return Err(SessionError::AuthRejected {
                                relay: self.relay.to_string(),
                                reason: items[3].as_str().unwrap_or_default().to_owned(),
                            });
                        }
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
            _ => Ok(false),
        }
    }

    pub(crate) fn new_sub(&mut self) -> String {
        self.next_sub += 1;
        format!("brotr-sync-{}", self.next_sub)
    }

    /// Sends `filter` with since/until/limit and reads the answer to EOSE (or CLOSED). Keeps the
    /// newest `limit` valid, distinct events matching `filter`.
    pub async fn fetch(
        &mut self,
        base: &Filter,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Page, SessionError> {
        let filter = window_filter(base, since, until, limit);
        let mut auth_retry = true;
        'req: loop {
            let sub = self.new_sub();
            self.stats.requests += 1;
            self.send_text(format!(r#"["REQ","{sub}",{}]"#, filter.as_json()))
                .await?;
            let deadline = Instant::now() + self.limits.page;
            let mut page = Page::default();
            let mut raw: Vec<(Event, usize)> = Vec::new();
            let mut valid: Vec<EventRow> = Vec::new();
            let mut unordered = false;
            let mut received = 0usize;
            let eose_or_closed = loop {
                let text = self.recv_text(deadline).await?;
                match classify(&text, &sub) {
                    Frame::Eose => break None,
                    Frame::Closed(reason) => break Some(reason),
                    Frame::Other => {
                        if text.starts_with("[\"NOTICE\"") {
                            debug!(relay = %self.relay, notice = %shorten(&text), "relay notice");
                        }
                        continue;
                    }
                    Frame::Event(event, len) => {
                        received += 1;
                        self.stats.events_received += 1;
                        raw.push((*event, len));
                        // A relay ignoring `limit` must not grow memory without bound: verify
                        // what came so far and keep the newest valid events (those pushed out are
                        // older than every kept one, so the next page asks for them again).
                        if raw.len() >= limit.saturating_mul(2).max(64) {
                            let chunk = std::mem::take(&mut raw);
                            let (rows, rejected) =
                                verify_all(chunk, filter.clone(), self.limits.max_event_bytes)
                                    .await;
                            page.rejected.add(&rejected);
                            valid.extend(rows);
                            if valid.len() >= limit.saturating_mul(2) {
                                keep_newest(&mut valid, limit);
                                // Order is lost; a relay sending this much is not trusted to
                                // answer newest first anyway.
                                unordered = true;
                            }
                        }
                    }
                    Frame::Malformed => {
                        received += 1;
                        page.rejected.malformed += 1;
                    }
                }
            };
            let (rows, rejected) =
                verify_all(raw, filter.clone(), self.limits.max_event_bytes).await;
            page.rejected.add(&rejected);
            valid.extend(rows);
            let mut seen: HashSet<[u8; 32]> = HashSet::with_capacity(valid.len());
            let mut descending = !unordered;
            let mut last_ts = i64::MAX;
            for row in valid {
                if row.created_at > last_ts {
                    descending = false;
                }
                last_ts = row.created_at;
                if seen.insert(row.id) {
                    page.events.push(row);
                }
            }
            // Close the subscription; a relay that already closed it ignores this.
            if eose_or_closed.is_none() {
                self.send_text(format!(r#"["CLOSE","{sub}"]"#)).await?;
            }
            if let Some(reason) = eose_or_closed {
                if reason.starts_with("auth-required:") && auth_retry && !page_has(&page) {
                    auth_retry = false;
                    self.await_auth(deadline).await?;
                    continue 'req;
                }
                if !page_has(&page) {
                    return Err(SessionError::Refused {
                        relay: self.relay.to_string(),
                        reason,
                    });
                }
            }
            keep_newest(&mut page.events, limit);
            page.summary = PageSummary {
                received,
                oldest: page.events.iter().map(|e| e.created_at).min(),
                newest: page.events.iter().map(|e| e.created_at).max(),
                descending,
            };
            if page.rejected.total() > 0 {
                warn!(relay = %self.relay, rejected = ?page.rejected, "dropped invalid events");
            }
            return Ok(page);
        }
    }

    /// Checks one received live event (see [`check_event`]).
    fn admit(
        &mut self,
        event: &Event,
        len: usize,
        filters: &[Filter],
        rejected: &mut Rejected,
    ) -> Option<EventRow> {
        self.stats.events_received += 1;
        check_event(event, len, filters, self.limits.max_event_bytes, rejected)
    }

    /// Opens a live subscription: `filters` from `since` on, no limit. Returns its id.
    pub async fn live_open(
        &mut self,
        filters: &[Filter],
        since: i64,
    ) -> Result<String, SessionError> {
        let sub = self.new_sub();
        let ts = Timestamp::from_secs(u64::try_from(since).unwrap_or(0));
        let body: Vec<String> = filters
            .iter()
            .map(|f| f.clone().since(ts).as_json())
            .collect();
        self.stats.requests += 1;
        self.send_text(format!(r#"["REQ","{sub}",{}]"#, body.join(",")))
            .await?;
        Ok(sub)
    }

    /// The next valid event of live subscription `sub`, or `None` when `tick` passes first.
    pub async fn live_next(
        &mut self,
        sub: &str,
        filters: &[Filter],
        tick: Instant,
        rejected: &mut Rejected,
    ) -> Result<Option<EventRow>, SessionError> {
        loop {
            let text = match self.recv_text(tick).await {
                Ok(t) => t,
                Err(SessionError::PageTimeout { .. } | SessionError::Idle { .. }) => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            match classify(&text, sub) {
                Frame::Event(event, len) => {
                    if let Some(row) = self.admit(&event, len, filters, rejected) {
                        return Ok(Some(row));
                    }
                }
                Frame::Malformed => rejected.malformed += 1,
                Frame::Closed(reason) => {
                    return Err(SessionError::Refused {
                        relay: self.relay.to_string(),
                        reason,
                    });
                }
                Frame::Eose | Frame::Other => {}
            }
        }
    }

    /// Waits until our AUTH is accepted (the challenge may come before or after CLOSED).
    async fn await_auth(&mut self, deadline: Instant) -> Result<(), SessionError> {
        while !self.authed {
            let text = self.recv_text(deadline).await?;
            debug!(relay = %self.relay, frame = %shorten(&text), "ignored while authenticating");
        }
        Ok(())
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Checks one received event: size, id, signature, one of `filters`, storable. Counts the
/// reason of a refusal in `rejected`.
pub fn check_event(
    event: &Event,
    len: usize,
    filters: &[Filter],
    max_event_bytes: usize,
    rejected: &mut Rejected,
) -> Option<EventRow> {
    if len > max_event_bytes {
        rejected.oversized += 1;
        return None;
    }
    if !event.verify_id() || !event.verify_signature() {
        rejected.bad_signature += 1;
        return None;
    }
    if !filters
        .iter()
        .any(|f| f.match_event(event, MatchEventOptions::new()))
    {
        rejected.off_filter += 1;
        return None;
    }
    match EventRow::from_verified(event) {
        Ok(r) => Some(r),
        Err(_) => {
            rejected.unstorable += 1;
            None
        }
    }
}

/// Pages at least this large are verified on two blocking threads.
const PARALLEL_VERIFY_MIN: usize = 128;

/// Verifies a page's events, in arrival order. Signature checks dominate the probe's CPU, so
/// large pages are split over two blocking threads: the second core works while the first waits
/// for the relay or the database.
async fn verify_all(
    raw: Vec<(Event, usize)>,
    filter: Filter,
    max_event_bytes: usize,
) -> (Vec<EventRow>, Rejected) {
    let run = move |chunk: Vec<(Event, usize)>, filter: Filter| {
        let mut rejected = Rejected::default();
        let rows: Vec<EventRow> = chunk
            .iter()
            .filter_map(|(e, len)| {
                check_event(
                    e,
                    *len,
                    std::slice::from_ref(&filter),
                    max_event_bytes,
                    &mut rejected,
                )
            })
            .collect();
        (rows, rejected)
    };
    if raw.len() < PARALLEL_VERIFY_MIN {
        return run(raw, filter);
    }
    let mut first = raw;
    let second = first.split_off(first.len() / 2);
    let f2 = filter.clone();
    let a = tokio::task::spawn_blocking(move || run(first, filter));
    let b = tokio::task::spawn_blocking(move || run(second, f2));
    match (a.await, b.await) {
        (Ok((mut rows, mut rejected)), Ok((rows2, rejected2))) => {
            rows.extend(rows2);
            rejected.add(&rejected2);
            (rows, rejected)
        }
        // A verification thread panicked: keep nothing of this page (it will be fetched again).
        _ => (Vec::new(), Rejected::default()),
    }
}

fn page_has(page: &Page) -> bool {
    !page.events.is_empty()
}

/// Sorts newest first by (created_at desc, id asc) and keeps `limit`.
fn keep_newest(events: &mut Vec<EventRow>, limit: usize) {
    events.sort_unstable_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    events.truncate(limit);
}

/// The base filter with the window and limit.
pub fn window_filter(base: &Filter, since: i64, until: i64, limit: usize) -> Filter {
    let ts = |t: i64| Timestamp::from_secs(u64::try_from(t).unwrap_or(0));
    base.clone().since(ts(since)).until(ts(until)).limit(limit)
}

/// Classifies a frame for subscription `sub`. Frames of other (closed) subscriptions are
/// `Other`; EVENT frames that do not parse are `Malformed`.
fn classify(text: &str, sub: &str) -> Frame {
    if text.starts_with("[\"EVENT\"") {
        // Typed parse straight into an Event: one pass, no intermediate Value tree.
        return match serde_json::from_str::<(String, String, Event)>(text) {
            Ok((_, s, e)) if s == sub => Frame::Event(Box::new(e), text.len()),
            Ok(_) => Frame::Other,
            Err(_) => Frame::Malformed,
        };
    }
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return Frame::Other;
    };
    let is_sub = items.get(1).and_then(Value::as_str) == Some(sub);
    match items.first().and_then(Value::as_str) {
        Some("EOSE") if is_sub => Frame::Eose,
        Some("CLOSED") if is_sub => Frame::Closed(
            items
                .get(2)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        _ => Frame::Other,
    }
}

pub(crate) fn shorten(s: &str) -> String {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
