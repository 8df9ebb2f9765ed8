//! Reading events for the archive over a [`RelaySession`]: REQ pages read to EOSE under an idle
//! and a page deadline, every event verified (id, signature, filter, size) before it is kept,
//! and live subscriptions.

use std::collections::HashSet;
use std::time::Duration;

use nostr::filter::MatchEventOptions;
use nostr::{Event, Filter, Timestamp};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::model::EventRow;
use crate::net::{RelayError, RelaySession};
use crate::nips::nip01::{self, ParseError, RelayMessage};

use super::paging::PageSummary;

/// Events dropped while reading, by reason.
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

/// Limits of reading.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// One page (REQ → EOSE) may take at most this long, however the relay drips it.
    pub page: Duration,
    /// Events whose JSON is larger are dropped.
    pub max_event_bytes: usize,
}

/// How a subscription's answer ended.
enum End {
    Eose,
    Closed(String),
}

/// How long an AUTH answered during a request may take to be accepted before the request is
/// asked again.
pub const AUTH_OK_WAIT: Duration = Duration::from_secs(1);

/// Sends `base` with `since`/`until`/`limit` and reads the answer to EOSE (or CLOSED). Keeps the
/// newest `limit` valid, distinct events matching `base`. A CLOSED `auth-required:` is answered
/// once (AUTH, then the same REQ again); so is an AUTH accepted after the REQ went out (the
/// relay may have answered as to an anonymous client, silently leaving out e.g. DMs to us).
pub async fn fetch(
    s: &mut RelaySession,
    base: &Filter,
    window: (i64, i64),
    limit: usize,
    limits: ReadLimits,
) -> Result<Page, RelayError> {
    let filter = window_filter(base, window.0, window.1, limit);
    let (mut auth_retry, mut reread) = (true, true);
    loop {
        let mark = s.auth_mark();
        let sub = s.new_sub("brotr-sync");
        s.send_request(nip01::req(&sub, std::slice::from_ref(&filter)))
            .await?;
        let deadline = Instant::now() + limits.page;
        let (page, end) = read_page(s, &sub, &filter, limit, deadline, limits).await?;
        match end {
            End::Eose => {
                // Close the subscription; a relay that already closed it ignores this.
                s.send(nip01::close(&sub)).await?;
                if reread && s.authed_since(mark, AUTH_OK_WAIT).await? {
                    reread = false;
                    debug!(relay = %s.url(), "AUTH accepted during a REQ: asking again");
                    continue;
                }
                return Ok(page);
            }
            End::Closed(reason) if page.events.is_empty() => {
                if reason.starts_with("auth-required:") && auth_retry {
                    auth_retry = false;
                    s.wait_authed(deadline).await?;
                    continue;
                }
                return Err(RelayError::Refused {
                    relay: s.url().to_string(),
                    reason,
                });
            }
            End::Closed(_) => return Ok(page),
        }
    }
}

/// Reads one subscription's answer. A relay ignoring `limit` must not grow memory without bound:
/// past twice the limit, what came so far is verified and only the newest valid events are kept
/// (those pushed out are older than every kept one, so the next page asks for them again).
async fn read_page(
    s: &mut RelaySession,
    sub: &str,
    filter: &Filter,
    limit: usize,
    deadline: Instant,
    limits: ReadLimits,
) -> Result<(Page, End), RelayError> {
    let mut page = Page::default();
    let mut raw: Vec<(Event, usize)> = Vec::new();
    let mut valid: Vec<EventRow> = Vec::new();
    let mut unordered = false;
    let mut received = 0usize;
    let end = loop {
        let r = s.recv(deadline).await?;
        match r.message {
            Ok(RelayMessage::Event {
                subscription_id,
                event,
            }) if subscription_id.as_str() == sub => {
                received += 1;
                raw.push((event.into_owned(), r.bytes));
                if raw.len() >= limit.saturating_mul(2).max(64) {
                    let chunk = std::mem::take(&mut raw);
                    let (rows, rejected) = verify_all(chunk, filter, limits.max_event_bytes).await;
                    page.rejected.add(&rejected);
                    valid.extend(rows);
                    if valid.len() >= limit.saturating_mul(2) {
                        keep_newest(&mut valid, limit);
                        // Order is lost; a relay sending this much is not trusted to answer
                        // newest first anyway.
                        unordered = true;
                    }
                }
            }
            Err(ParseError::BadEvent { subscription, .. }) if subscription == sub => {
                received += 1;
                page.rejected.malformed += 1;
            }
            Ok(RelayMessage::EndOfStoredEvents(id)) if id.as_str() == sub => break End::Eose,
            Ok(RelayMessage::Closed {
                subscription_id,
                message,
            }) if subscription_id.as_str() == sub => break End::Closed(message.into_owned()),
            Ok(RelayMessage::Notice(n)) => {
                debug!(relay = %s.url(), notice = %nip01::shorten(&n, 120), "relay notice");
            }
            _ => {}
        }
    };
    let (rows, rejected) = verify_all(raw, filter, limits.max_event_bytes).await;
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
    keep_newest(&mut page.events, limit);
    page.summary = PageSummary {
        received,
        oldest: page.events.iter().map(|e| e.created_at).min(),
        newest: page.events.iter().map(|e| e.created_at).max(),
        descending,
    };
    if page.rejected.total() > 0 {
        warn!(relay = %s.url(), rejected = ?page.rejected, "dropped invalid events");
    }
    Ok((page, end))
}

/// A live subscription: `filters` from `since` on, no limit.
pub struct Live {
    sub: String,
    filters: Vec<Filter>,
    max_event_bytes: usize,
}

impl Live {
    pub async fn open(
        s: &mut RelaySession,
        filters: &[Filter],
        since: i64,
        max_event_bytes: usize,
    ) -> Result<Live, RelayError> {
        let sub = s.new_sub("brotr-live");
        let ts = Timestamp::from_secs(u64::try_from(since).unwrap_or(0));
        let with_since: Vec<Filter> = filters.iter().map(|f| f.clone().since(ts)).collect();
        s.send_request(nip01::req(&sub, &with_since)).await?;
        Ok(Live {
            sub,
            filters: filters.to_vec(),
            max_event_bytes,
        })
    }

    /// The next valid event, or `None` when `tick` passes first.
    pub async fn next(
        &self,
        s: &mut RelaySession,
        tick: Instant,
        rejected: &mut Rejected,
    ) -> Result<Option<EventRow>, RelayError> {
        loop {
            let r = match s.recv(tick).await {
                Ok(r) => r,
                Err(e) if e.is_silence() => return Ok(None),
                Err(e) => return Err(e),
            };
            match r.message {
                Ok(RelayMessage::Event {
                    subscription_id,
                    event,
                }) if subscription_id.as_str() == self.sub => {
                    let row = check_event(
                        &event,
                        r.bytes,
                        &self.filters,
                        self.max_event_bytes,
                        rejected,
                    );
                    if row.is_some() {
                        return Ok(row);
                    }
                }
                Err(ParseError::BadEvent { subscription, .. }) if subscription == self.sub => {
                    rejected.malformed += 1;
                }
                Ok(RelayMessage::Closed {
                    subscription_id,
                    message,
                }) if subscription_id.as_str() == self.sub => {
                    return Err(RelayError::Refused {
                        relay: s.url().to_string(),
                        reason: message.into_owned(),
                    });
                }
                _ => {}
            }
        }
    }

    pub async fn close(self, s: &mut RelaySession) {
        let _ = s.send(nip01::close(&self.sub)).await;
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
    filter: &Filter,
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
        return run(raw, filter.clone());
    }
    let mut first = raw;
    let second = first.split_off(first.len() / 2);
    let (f1, f2) = (filter.clone(), filter.clone());
    let a = tokio::task::spawn_blocking(move || run(first, f1));
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

/// Sorts newest first by (created_at desc, id asc) and keeps `limit`.
fn keep_newest(events: &mut Vec<EventRow>, limit: usize) {
    events.sort_unstable_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    events.truncate(limit);
}

/// The base filter with the window and limit (`limit` 0: none).
pub fn window_filter(base: &Filter, since: i64, until: i64, limit: usize) -> Filter {
    let ts = |t: i64| Timestamp::from_secs(u64::try_from(t).unwrap_or(0));
    let f = base.clone().since(ts(since)).until(ts(until));
    if limit == 0 { f } else { f.limit(limit) }
}
