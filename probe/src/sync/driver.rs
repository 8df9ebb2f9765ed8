//! The sync driver: turns one (relay, filter) window into batches of verified events, each handed
//! on with the [`Progress`] it completes — by REQ paging ([`page_window`], the [`Planner`] over
//! any [`PageSource`]) or by NIP-77 reconciliation ([`negentropy_window`]). The service, the
//! paging tests (a simulated relay as the source) and the benchmark all run this code.

use std::collections::HashSet;
use std::time::Duration;

use nostr::Filter;
use tokio::time::Instant;

use super::negentropy::{NegError, reconcile};
use super::paging::{PagingError, Planner, Progress, Step};
use super::reader::{self, Page, ReadLimits, Rejected};
use crate::model::EventRow;
use crate::net::{RelayError, RelaySession};

/// Where pages come from: a relay session, or a simulated relay in tests.
#[allow(async_fn_in_trait)]
pub trait PageSource {
    /// The answer to `base` with `since`/`until`/`limit`.
    async fn page(
        &mut self,
        base: &Filter,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Page, RelayError>;
}

/// A relay session read with limits.
pub struct SessionPages<'a> {
    pub session: &'a mut RelaySession,
    pub limits: ReadLimits,
}

impl PageSource for SessionPages<'_> {
    async fn page(
        &mut self,
        base: &Filter,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Page, RelayError> {
        reader::fetch(self.session, base, (since, until), limit, self.limits).await
    }
}

/// Where batches go: the writer, which commits the events and then persists the progress.
#[allow(async_fn_in_trait)]
pub trait BatchSink {
    /// Hands on `events` and the progress they complete for cursor `key`; `false` when the
    /// writer has stopped.
    async fn flush(&mut self, key: &str, events: Vec<EventRow>, progress: Progress) -> bool;
}

/// What the driver observed besides the events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriveReport {
    pub rejected: Rejected,
    /// Seconds that held at least `limit` events (REQ paging cannot fetch all of them).
    pub overflows: Vec<i64>,
    /// Ids NIP-77 listed that the relay then did not serve.
    pub missing: u64,
}

/// How a window's paging ended.
#[derive(Debug)]
pub enum PageEnd {
    /// Every event of the window is handed on; its progress says so.
    Done,
    /// The deadline passed; the pending progress is handed on.
    OutOfTime,
    /// The writer stopped.
    Stopped,
    /// The relay failed; what was complete is handed on, the planner keeps its place.
    Failed(RelayError),
    /// The relay's answers cannot be used.
    Invalid(PagingError),
}

/// Batching of one window: the buffer and what it completes.
struct Batcher<'a, K> {
    sink: &'a mut K,
    key: &'a str,
    buffer: Vec<EventRow>,
    batch_size: usize,
}

impl<K: BatchSink> Batcher<'_, K> {
    /// Hands on what is buffered with `progress`; `false` when the writer stopped.
    async fn flush(&mut self, progress: Progress) -> bool {
        let events = std::mem::take(&mut self.buffer);
        self.sink.flush(self.key, events, progress).await
    }

    /// Buffers `events`; flushes with `progress` once a batch is full.
    async fn push(&mut self, events: Vec<EventRow>, progress: impl Fn() -> Progress) -> bool {
        self.buffer.extend(events);
        if self.buffer.len() >= self.batch_size {
            return self.flush(progress()).await;
        }
        true
    }
}

/// The progress while `planner` is filling its window.
pub fn pending(done_until: Option<i64>, planner: &Planner) -> Progress {
    Progress {
        done_until,
        pending: (!planner.is_done()).then(|| planner.window()),
    }
}

/// One (relay, filter) cursor being worked on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The cursor's key in `service_state`.
    pub key: &'a str,
    pub base: &'a Filter,
    /// Where the cursor stood before this window.
    pub done_until: Option<i64>,
}

/// Batch size and time budget.
#[derive(Debug, Clone, Copy)]
pub struct DriveOptions {
    pub batch_size: usize,
    pub deadline: Option<Instant>,
}

/// Pages `planner`'s window over `src` until it is complete, the deadline passes, the writer
/// stops or the relay fails. Events are handed on in batches, each with the progress it
/// completes; the planner keeps its place, so a caller can go on with a new source.
pub async fn page_window<S: PageSource, K: BatchSink>(
    src: &mut S,
    t: Target<'_>,
    planner: &mut Planner,
    opts: DriveOptions,
    sink: &mut K,
    out: &mut DriveReport,
) -> PageEnd {
    let (base, done_until, deadline) = (t.base, t.done_until, opts.deadline);
    let mut b = Batcher {
        sink,
        key: t.key,
        buffer: Vec::new(),
        batch_size: opts.batch_size,
    };
    let mut last_received = 0usize;
    loop {
        if deadline.is_some_and(|d| Instant::now() > d) {
            b.flush(pending(done_until, planner)).await;
            return PageEnd::OutOfTime;
        }
        let (since, until, limit, probe) = match planner.next() {
            Step::Done => {
                let end = planner.window().end.max(done_until.unwrap_or(i64::MIN));
                let done = Progress {
                    done_until: Some(end),
                    pending: None,
                };
                return if b.flush(done).await {
                    PageEnd::Done
                } else {
                    PageEnd::Stopped
                };
            }
            Step::Fetch {
                since,
                until,
                limit,
            } => (since, until, limit, false),
            Step::Probe { since, until } => (since, until, 1, true),
        };
        let page = match src.page(base, since, until, limit).await {
            Ok(p) => p,
            Err(e) => {
                // What is buffered is complete per the planner: keep it.
                b.flush(pending(done_until, planner)).await;
                return PageEnd::Failed(e);
            }
        };
        out.rejected.add(&page.rejected);
        if probe {
            planner.on_probe(!page.events.is_empty(), last_received);
        } else {
            last_received = page.summary.received;
            match planner.on_page(&page.summary) {
                Ok(Some(o)) => out.overflows.push(o.second),
                Ok(None) => {}
                Err(e) => {
                    b.flush(pending(done_until, planner)).await;
                    return PageEnd::Invalid(e);
                }
            }
        }
        if !b.push(page.events, || pending(done_until, planner)).await {
            return PageEnd::Stopped;
        }
    }
}

/// How a NIP-77 window ended.
#[derive(Debug)]
pub enum NegEnd {
    /// Every event the relay holds in the window is handed on.
    Done,
    /// The relay does not really speak NIP-77 (its answer says why): page with REQs instead.
    Unsupported(String),
    /// The relay listed the difference in a message over our size limit (it has no frame size
    /// limit of its own) and the connection is gone: page with REQs instead, on a new one.
    TooLarge(RelayError),
    Stopped,
    Failed(RelayError),
}

/// One window to reconcile.
pub struct NegWindow<'a> {
    pub target: Target<'a>,
    /// Reconciled over `[since, end]`; the progress moves to `end` when done.
    pub since: i64,
    pub end: i64,
    /// `(created_at, id)` archived from this relay in the window.
    pub local: &'a [(i64, [u8; 32])],
    /// Ids asked for per REQ.
    pub ids_per_req: usize,
}

/// Reconciles the window with the relay, then fetches the missing events by id. Every round
/// gets `round_timeout`.
pub async fn negentropy_window<K: BatchSink>(
    s: &mut RelaySession,
    w: &NegWindow<'_>,
    limits: ReadLimits,
    round_timeout: Duration,
    batch_size: usize,
    sink: &mut K,
    out: &mut DriveReport,
) -> NegEnd {
    let filter = reader::window_filter(w.target.base, w.since, w.end, 0);
    let rec = match reconcile(s, &filter, w.local, round_timeout).await {
        Ok(r) => r,
        Err(NegError::Unsupported(reason)) => return NegEnd::Unsupported(reason),
        Err(NegError::Relay(e @ RelayError::TooLarge { .. })) => return NegEnd::TooLarge(e),
        Err(NegError::Relay(e)) => return NegEnd::Failed(e),
    };
    let keep = Progress {
        done_until: w.target.done_until,
        pending: None,
    };
    let mut b = Batcher {
        sink,
        key: w.target.key,
        buffer: Vec::new(),
        batch_size,
    };
    for chunk in rec.need.chunks(w.ids_per_req.clamp(1, 500)) {
        match fetch_ids(s, w, chunk, limits, &mut b, out).await {
            Ok(true) => {}
            Ok(false) => return NegEnd::Stopped,
            Err(e) => {
                b.flush(keep).await;
                return NegEnd::Failed(e);
            }
        }
    }
    let done = Progress {
        done_until: Some(w.end.max(w.target.done_until.unwrap_or(i64::MIN))),
        pending: None,
    };
    if b.flush(done).await {
        NegEnd::Done
    } else {
        NegEnd::Stopped
    }
}

/// Fetches `ids` by id. A relay may cap the answer below the number of ids: ask again for the
/// rest until an answer brings nothing new. `false` when the writer stopped.
async fn fetch_ids<K: BatchSink>(
    s: &mut RelaySession,
    w: &NegWindow<'_>,
    ids: &[[u8; 32]],
    limits: ReadLimits,
    b: &mut Batcher<'_, K>,
    out: &mut DriveReport,
) -> Result<bool, RelayError> {
    let keep = Progress {
        done_until: w.target.done_until,
        pending: None,
    };
    let mut wanted: Vec<[u8; 32]> = ids.to_vec();
    while !wanted.is_empty() {
        let by_id = w.target.base.clone().ids(
            wanted
                .iter()
                .filter_map(|id| nostr::EventId::from_slice(id).ok()),
        );
        let page = reader::fetch(s, &by_id, (w.since, w.end), wanted.len(), limits).await?;
        out.rejected.add(&page.rejected);
        let got: HashSet<[u8; 32]> = page.events.iter().map(|e| e.id).collect();
        let before = wanted.len();
        wanted.retain(|id| !got.contains(id));
        if !b.push(page.events, || keep).await {
            return Ok(false);
        }
        if wanted.len() == before {
            out.missing += wanted.len() as u64;
            break;
        }
    }
    Ok(true)
}

/// The live tail's bounds.
#[derive(Debug, Clone, Copy)]
pub struct LiveOptions {
    /// Where the catch-up ended: the subscription starts at `end + 1`.
    pub end: i64,
    /// Unix time and the instant it was read, to date the close.
    pub clock: (i64, Instant),
    pub until: Instant,
    pub max_event_bytes: usize,
    pub batch_size: usize,
}

/// After catching up: one subscription for every filter from `end + 1` on, storing events as
/// they arrive (flushed at least every second) until `until`. A clean end moves every cursor to
/// the close time; a broken one leaves them where the catch-up put them (the events stored are
/// kept, and the next cycle re-reads the gap).
pub async fn live_tail<K: BatchSink>(
    s: &mut RelaySession,
    keyed: &[(String, Filter)],
    live: LiveOptions,
    sink: &mut K,
    out: &mut DriveReport,
) -> Result<(), RelayError> {
    let LiveOptions {
        end,
        clock,
        until,
        max_event_bytes,
        batch_size,
    } = live;
    let Some((first_key, _)) = keyed.first() else {
        return Ok(());
    };
    let filters: Vec<Filter> = keyed.iter().map(|(_, f)| f.clone()).collect();
    let live = reader::Live::open(s, &filters, end + 1, max_event_bytes).await?;
    let unchanged = Progress {
        done_until: Some(end),
        pending: None,
    };
    let mut b = Batcher {
        sink,
        key: first_key,
        buffer: Vec::new(),
        batch_size,
    };
    let result = loop {
        let now = Instant::now();
        if now >= until {
            break Ok(());
        }
        let tick = until.min(now + Duration::from_secs(1));
        match live.next(s, tick, &mut out.rejected).await {
            Ok(Some(row)) => {
                if !b.push(vec![row], || unchanged).await {
                    break Ok(());
                }
            }
            Ok(None) if !b.buffer.is_empty() => {
                if !b.flush(unchanged).await {
                    break Ok(());
                }
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = result {
        b.flush(unchanged).await;
        return Err(e);
    }
    live.close(s).await;
    // Everything created before the close arrived live (late clocks are what look-back is for).
    let elapsed = i64::try_from(clock.1.elapsed().as_secs()).unwrap_or(0);
    let closed_at = clock.0 + elapsed - 1;
    let done = Progress {
        done_until: Some(closed_at.max(end)),
        pending: None,
    };
    for (key, _) in keyed {
        b.key = key;
        b.flush(done).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The planner and the driver against simulated relays: every event is fetched, however the
    //! relay truncates, orders or crowds its answers.
    use super::*;
    use crate::sync::paging::{PageSummary, Window};

    /// A simulated relay: events are `(created_at, id)`; answers follow NIP-01 (newest `limit`
    /// first) unless `oldest_first`, and never more than `cap`.
    struct SimRelay {
        events: Vec<(i64, u32)>,
        cap: usize,
        oldest_first: bool,
    }

    impl SimRelay {
        fn answer(&self, since: i64, until: i64, limit: usize) -> Vec<(i64, u32)> {
            let mut m: Vec<(i64, u32)> = self
                .events
                .iter()
                .copied()
                .filter(|(t, _)| *t >= since && *t <= until)
                .collect();
            m.sort();
            if !self.oldest_first {
                m.reverse();
            }
            m.truncate(limit.min(self.cap));
            m
        }
    }

    fn row(t: i64, id: u32) -> EventRow {
        let mut idb = [0u8; 32];
        idb[..4].copy_from_slice(&id.to_be_bytes());
        EventRow {
            id: idb,
            pubkey: [0; 32],
            created_at: t,
            kind: 1,
            tags_json: "[]".into(),
            tagvalues: vec![],
            content: String::new(),
            sig: [0; 64],
        }
    }

    fn key_of(e: &EventRow) -> (i64, u32) {
        (
            e.created_at,
            u32::from_be_bytes([e.id[0], e.id[1], e.id[2], e.id[3]]),
        )
    }

    /// The simulated relay as a page source, counting requests.
    struct SimSource<'a> {
        relay: &'a SimRelay,
        requests: usize,
    }

    impl PageSource for SimSource<'_> {
        async fn page(
            &mut self,
            _base: &Filter,
            since: i64,
            until: i64,
            limit: usize,
        ) -> Result<Page, RelayError> {
            self.requests += 1;
            assert!(self.requests < 100_000, "planner loops");
            let answer = self.relay.answer(since, until, limit);
            Ok(Page {
                summary: PageSummary {
                    received: answer.len(),
                    oldest: answer.iter().map(|e| e.0).min(),
                    newest: answer.iter().map(|e| e.0).max(),
                    descending: answer.windows(2).all(|w| w[0].0 >= w[1].0),
                },
                events: answer.into_iter().map(|(t, id)| row(t, id)).collect(),
                rejected: Rejected::default(),
            })
        }
    }

    /// Collects every batch and the last progress.
    #[derive(Default)]
    struct Collect {
        events: Vec<(i64, u32)>,
        last: Option<Progress>,
        batches: usize,
    }

    impl BatchSink for Collect {
        async fn flush(&mut self, _key: &str, events: Vec<EventRow>, progress: Progress) -> bool {
            self.events.extend(events.iter().map(key_of));
            self.last = Some(progress);
            self.batches += 1;
            true
        }
    }

    /// Runs the driver over the whole window; returns (events handed on incl. repeats,
    /// requests, overflows).
    async fn drive(
        relay: &SimRelay,
        window: Window,
        limit: usize,
    ) -> (Vec<(i64, u32)>, usize, Vec<i64>) {
        let mut src = SimSource { relay, requests: 0 };
        let mut sink = Collect::default();
        let mut out = DriveReport::default();
        let mut planner = Planner::new(window, limit);
        let base = Filter::new();
        let target = Target {
            key: "k",
            base: &base,
            done_until: None,
        };
        let opts = DriveOptions {
            batch_size: 1000,
            deadline: None,
        };
        let end = page_window(&mut src, target, &mut planner, opts, &mut sink, &mut out).await;
        assert!(matches!(end, PageEnd::Done), "{end:?}");
        assert_eq!(
            sink.last,
            Some(Progress {
                done_until: Some(window.end),
                pending: None
            }),
            "the last batch completes the window"
        );
        (sink.events, src.requests, out.overflows)
    }

    fn dedup(mut v: Vec<(i64, u32)>) -> Vec<(i64, u32)> {
        v.sort();
        v.dedup();
        v
    }

    fn spread(n: u32, seconds: i64) -> Vec<(i64, u32)> {
        // Deterministic pseudo-random timestamps in [1000, 1000 + seconds).
        (0..n)
            .map(|i| {
                let x = u64::from(i)
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (1000 + (x >> 33) as i64 % seconds, i)
            })
            .collect()
    }

    fn whole(_events: &[(i64, u32)]) -> Window {
        Window {
            since: 0,
            end: 1_000_000,
            top: 1_000_000,
        }
    }

    #[tokio::test]
    async fn fetches_every_event_of_a_truncating_relay_with_little_amplification() {
        let events = spread(20_000, 200_000);
        let relay = SimRelay {
            events: events.clone(),
            cap: usize::MAX,
            oldest_first: false,
        };
        let (got, reqs, overflows) = drive(&relay, whole(&events), 500).await;
        assert!(overflows.is_empty());
        assert_eq!(dedup(got.clone()), dedup(events.clone()));
        let amplification = got.len() as f64 / events.len() as f64;
        assert!(amplification < 1.01, "amplification {amplification}");
        // 20,000 / 500 = 40 pages, +1 for the empty tail at most.
        assert!(reqs <= 42, "{reqs} requests");
    }

    #[tokio::test]
    async fn learns_a_hidden_cap_and_stays_complete() {
        let events = spread(5_000, 50_000);
        let relay = SimRelay {
            events: events.clone(),
            cap: 100,
            oldest_first: false,
        };
        let (got, reqs, _) = drive(&relay, whole(&events), 500).await;
        assert_eq!(dedup(got), dedup(events));
        assert!(reqs <= 5_000 / 100 + 3, "{reqs} requests");
    }

    #[tokio::test]
    async fn a_small_relay_costs_two_requests_and_an_empty_one_costs_one() {
        let events = spread(50, 1000);
        let relay = SimRelay {
            events: events.clone(),
            cap: usize::MAX,
            oldest_first: false,
        };
        let (got, reqs, _) = drive(&relay, whole(&events), 500).await;
        assert_eq!(dedup(got), dedup(events));
        assert_eq!(reqs, 2, "page + probe");
        let empty = SimRelay {
            events: vec![],
            cap: usize::MAX,
            oldest_first: false,
        };
        assert_eq!(drive(&empty, whole(&[]), 500).await.1, 1);
    }

    #[tokio::test]
    async fn an_oldest_first_relay_is_split_and_stays_complete() {
        let events = spread(3_000, 30_000);
        let relay = SimRelay {
            events: events.clone(),
            cap: usize::MAX,
            oldest_first: true,
        };
        let (got, _, overflows) = drive(&relay, whole(&events), 200).await;
        assert!(overflows.is_empty());
        assert_eq!(dedup(got), dedup(events));
    }

    #[tokio::test]
    async fn a_crowded_second_is_reported_and_the_rest_is_fetched() {
        let mut events = spread(2_000, 10_000);
        events.extend((0..700).map(|i| (5_000, 100_000 + i)));
        let relay = SimRelay {
            events: events.clone(),
            cap: usize::MAX,
            oldest_first: false,
        };
        let (got, _, overflows) = drive(&relay, whole(&events), 500).await;
        assert_eq!(overflows, vec![5_000]);
        let got = dedup(got);
        let missing: Vec<_> = dedup(events)
            .into_iter()
            .filter(|e| !got.contains(e))
            .collect();
        assert!(!missing.is_empty() && missing.iter().all(|e| e.0 == 5_000));
    }

    #[tokio::test]
    async fn many_events_in_few_seconds_page_down_correctly() {
        // 400 events in each of 10 seconds, limit 500: every page crosses a boundary second.
        let events: Vec<(i64, u32)> = (0..4000).map(|i| (2000 + i64::from(i / 400), i)).collect();
        let relay = SimRelay {
            events: events.clone(),
            cap: usize::MAX,
            oldest_first: false,
        };
        let (got, _, overflows) = drive(&relay, whole(&events), 500).await;
        assert!(overflows.is_empty());
        assert_eq!(dedup(got), dedup(events));
    }

    #[tokio::test]
    async fn a_failing_source_keeps_what_is_complete_and_the_planner_goes_on() {
        /// Fails every third request.
        struct Flaky<'a>(SimSource<'a>);
        impl PageSource for Flaky<'_> {
            async fn page(
                &mut self,
                base: &Filter,
                since: i64,
                until: i64,
                limit: usize,
            ) -> Result<Page, RelayError> {
                if self.0.requests % 3 == 2 {
                    self.0.requests += 1;
                    return Err(RelayError::Closed {
                        relay: "sim".into(),
                    });
                }
                self.0.page(base, since, until, limit).await
            }
        }
        let events = spread(3_000, 30_000);
        let relay = SimRelay {
            events: events.clone(),
            cap: usize::MAX,
            oldest_first: false,
        };
        let window = whole(&events);
        let mut src = Flaky(SimSource {
            relay: &relay,
            requests: 0,
        });
        let mut sink = Collect::default();
        let mut out = DriveReport::default();
        let mut planner = Planner::new(window, 200);
        let base = Filter::new();
        let target = Target {
            key: "k",
            base: &base,
            done_until: None,
        };
        let opts = DriveOptions {
            batch_size: 1000,
            deadline: None,
        };
        let mut failures = 0;
        loop {
            match page_window(&mut src, target, &mut planner, opts, &mut sink, &mut out).await {
                PageEnd::Done => break,
                PageEnd::Failed(_) => {
                    failures += 1;
                    // What was handed on is complete above the pending window's top.
                    let p = sink.last.expect("flushed before failing");
                    if let Some(w) = p.pending {
                        let got = dedup(sink.events.clone());
                        assert!(
                            events
                                .iter()
                                .filter(|e| e.0 > w.top)
                                .all(|e| got.contains(e))
                        );
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(failures > 3);
        assert_eq!(dedup(sink.events), dedup(events));
    }
}
