//! Synchronizer: archives the events of every active relay, incrementally (spec §8, beating its
//! weaknesses 7 and 8).
//!
//! Per relay and per filter, a [`Planner`] decides the REQs and a [`Progress`] in `service_state`
//! (service `synchronizer`, type `cursor`) says what is archived. Fetching and writing overlap:
//! a reader pages the relay while a writer commits the previous batch, then persists the progress
//! that batch completes — so a crash anywhere re-reads at most one batch and stores nothing
//! twice (inserts are idempotent). Memory per relay is one page plus one batch.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nostr::{Filter, JsonUtil, Keys};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{NetworksConfig, Shard, SyncConfig};
use crate::model::relay_hints::relay_hints_from_row;
use crate::model::{Candidate, EventRow, LifecyclePolicy, Network, RelayUrl};
use crate::net::Dialer;
use crate::services::validator::active_relays;
use crate::store::{NewRelay, StateEntry, Store, StoreError};
use crate::sync::negentropy::NegError;
use crate::sync::{
    Planner, Progress, Rejected, Session, SessionError, SessionLimits, Step, WireStats,
};

/// `service_state` service name and type of the cursors.
pub const SERVICE: &str = "synchronizer";
pub const CURSOR_STATE: &str = "cursor";
/// `service_state` type recording seconds that held more events than a relay returns per REQ.
pub const OVERFLOW_STATE: &str = "overflow";
/// Reconnections per relay per cycle after a broken session.
const RECONNECTS: u32 = 2;

/// What the synchronizer needs besides a store.
#[derive(Clone)]
pub struct SyncContext {
    pub dialer: Dialer,
    pub keys: Keys,
    pub cfg: SyncConfig,
    pub shard: Shard,
    pub lifecycle: LifecyclePolicy,
    /// Relay hints pointing at local addresses become candidates (tests, private deployments).
    pub allow_local: bool,
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub relays: u64,
    pub relays_failed: u64,
    pub events_new: u64,
    pub links_new: u64,
    pub wire: WireStats,
    pub rejected: Rejected,
    pub overflows: u64,
    pub candidates: u64,
    /// (relay, filter) windows archived by NIP-77 reconciliation instead of REQ paging.
    pub negentropy_windows: u64,
}

impl CycleReport {
    fn add(&mut self, r: &RelayReport) {
        self.relays += 1;
        self.relays_failed += u64::from(r.error.is_some());
        self.events_new += r.events_new;
        self.links_new += r.links_new;
        self.wire.add(&r.wire);
        self.rejected.add(&r.rejected);
        self.overflows += r.overflows;
        self.candidates += r.candidates;
        self.negentropy_windows += r.negentropy_windows;
    }
}

/// What syncing one relay did.
#[derive(Debug, Clone, Default)]
pub struct RelayReport {
    pub events_new: u64,
    pub links_new: u64,
    pub wire: WireStats,
    pub rejected: Rejected,
    pub overflows: u64,
    pub candidates: u64,
    pub negentropy_windows: u64,
    pub error: Option<String>,
}

/// One cycle over every active relay of this shard, each network under its own concurrency
/// limit. A failing relay is reported and skipped; only store failures fail the cycle.
pub async fn run_cycle(
    store: Arc<dyn Store>,
    ctx: &SyncContext,
    now: i64,
) -> Result<CycleReport, StoreError> {
    let relays: Vec<NewRelay> = active_relays(store.as_ref(), &ctx.lifecycle)
        .await?
        .into_iter()
        .filter(|r| ctx.shard.owns(r.url.as_str()))
        .filter(|r| {
            let networks: &NetworksConfig = ctx.dialer.networks();
            networks.get(r.url.network()).enabled
        })
        .filter(|r| {
            !ctx.cfg
                .override_for(r.url.as_str())
                .is_some_and(|o| o.disabled)
        })
        .collect();
    let mut by_net: BTreeMap<Network, Vec<NewRelay>> = BTreeMap::new();
    for r in relays {
        by_net.entry(r.url.network()).or_default().push(r);
    }
    let per_net = by_net.into_iter().map(|(net, relays)| {
        let tasks = ctx.dialer.networks().get(net).max_tasks.max(1);
        let store = store.clone();
        async move {
            futures_util::stream::iter(relays)
                .map(|r| {
                    let store = store.clone();
                    async move { (sync_relay(store, ctx, &r, now).await, r) }
                })
                .buffer_unordered(tasks)
                .collect::<Vec<_>>()
                .await
        }
    });
    let mut report = CycleReport::default();
    for results in futures_util::future::join_all(per_net).await {
        for (result, relay) in results {
            let r = result?;
            if let Some(e) = &r.error {
                warn!(relay = %relay.url, error = %e, "relay not fully synced this cycle");
            }
            report.add(&r);
        }
    }
    info!(
        relays = report.relays,
        failed = report.relays_failed,
        events_new = report.events_new,
        received = report.wire.events_received,
        requests = report.wire.requests,
        "sync cycle done"
    );
    Ok(report)
}

/// The `service_state` key of a (relay, filter) cursor: the URL for the default empty filter,
/// else the URL and a short hash of the filter, so changing a filter starts a fresh cursor.
pub fn cursor_key(url: &str, filter: &serde_json::Map<String, Value>) -> String {
    if filter.is_empty() {
        return url.to_owned();
    }
    let digest = Sha256::digest(Value::Object(filter.clone()).to_string().as_bytes());
    format!("{url}#{}", hex::encode(&digest[..6]))
}

/// A batch for the writer: events, then the progress they complete.
struct Batch {
    events: Vec<EventRow>,
    key: String,
    progress: Progress,
}

/// Syncs one relay: every filter to completion or until the relay's time budget runs out.
/// Relay failures land in the report; store failures are errors.
pub async fn sync_relay(
    store: Arc<dyn Store>,
    ctx: &SyncContext,
    relay: &NewRelay,
    now: i64,
) -> Result<RelayReport, StoreError> {
    let (tx, mut rx) = mpsc::channel::<Batch>(2);
    let writer = {
        let store = store.clone();
        let relay = relay.clone();
        let cfg = &ctx.cfg;
        let allow_local = ctx.allow_local;
        async move {
            let mut out = RelayReport::default();
            while let Some(b) = rx.recv().await {
                if !b.events.is_empty() {
                    let s = store.insert_events(&relay, now, &b.events).await?;
                    out.events_new += s.events_new;
                    out.links_new += s.links_new;
                    if cfg.extract_hints {
                        out.candidates +=
                            add_hints(store.as_ref(), &b.events, allow_local, now).await?;
                    }
                }
                let value = serde_json::to_value(b.progress).unwrap_or(Value::Null);
                store
                    .state_upsert(&[StateEntry {
                        service: SERVICE.into(),
                        kind: CURSOR_STATE.into(),
                        key: b.key,
                        value,
                    }])
                    .await?;
            }
            Ok::<RelayReport, StoreError>(out)
        }
    };
    let reader = read_relay(store.as_ref(), ctx, &relay.url, now, tx);
    let (written, read) = tokio::join!(writer, reader);
    let written = written?;
    // The reader reports the wire side, the writer what was stored.
    Ok(RelayReport {
        events_new: written.events_new,
        links_new: written.links_new,
        candidates: written.candidates,
        ..read?
    })
}

/// The reader side of [`sync_relay`]: sessions, planners, batches.
async fn read_relay(
    store: &dyn Store,
    ctx: &SyncContext,
    url: &RelayUrl,
    now: i64,
    tx: mpsc::Sender<Batch>,
) -> Result<RelayReport, StoreError> {
    let cfg = &ctx.cfg;
    let ov = cfg.override_for(url.as_str());
    let specs = ov
        .and_then(|o| o.filters.clone())
        .unwrap_or_else(|| cfg.filters.clone());
    let limit = ov.and_then(|o| o.limit).unwrap_or(cfg.limit);
    let limits = session_limits(cfg);
    let mut out = RelayReport::default();
    // Checked at config load; a filter that no longer parses is reported and skipped.
    let mut filters: Vec<(String, Filter)> = Vec::with_capacity(specs.len());
    for spec in &specs {
        let key = cursor_key(url.as_str(), spec);
        match Filter::from_json(Value::Object(spec.clone()).to_string()) {
            Ok(f) => filters.push((key, f)),
            Err(e) => out.error = Some(format!("filter {key}: {e}")),
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cfg.max_relay_secs);
    let end = now - cfg.end_lag_secs;
    let mut session: Option<Session> = None;
    let mut reconnects = 0u32;
    'filters: for (key, base) in &filters {
        if tx.is_closed() {
            break;
        }
        let (key, base) = (key.as_str(), base);
        let progress = load_progress(store, key).await?;
        let Some(window) = progress.next_window(cfg.since, cfg.lookback_secs, end) else {
            continue;
        };
        let done_until = progress.done_until;
        if cfg.negentropy
            && negentropy_applies(base)
            && !nip77_known_unsupported(store, url, now).await?
        {
            if session.is_none() {
                match Session::open(&ctx.dialer, url, ctx.keys.clone(), limits).await {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        out.error = Some(e.to_string());
                        break 'filters;
                    }
                }
            }
            if let Some(s) = session.as_mut() {
                let neg = NegRun {
                    store,
                    url,
                    base,
                    window,
                    limit,
                    key,
                    done_until,
                    now,
                };
                match sync_by_negentropy(s, &neg, cfg, &tx, &mut out).await? {
                    NegOutcome::Done => continue 'filters,
                    NegOutcome::Skipped => {}
                    NegOutcome::Failed(e) => {
                        if let Some(old) = session.take() {
                            out.wire.add(&old.stats);
                        }
                        out.error = Some(e);
                        break 'filters;
                    }
                }
            }
        }
        let mut planner = Planner::new(window, limit);
        let mut buffer: Vec<EventRow> = Vec::new();
        let mut last_received = 0usize;
        loop {
            if Instant::now() > deadline {
                out.error = Some(format!(
                    "time budget of {}s used up; resuming next cycle",
                    cfg.max_relay_secs
                ));
                flush(&tx, &mut buffer, key, pending(done_until, &planner)).await;
                break 'filters;
            }
            let step = planner.next();
            if step == Step::Done {
                let done = Progress {
                    done_until: Some(planner.window().end.max(done_until.unwrap_or(i64::MIN))),
                    pending: None,
                };
                flush(&tx, &mut buffer, key, done).await;
                break;
            }
            if session.is_none() {
                match Session::open(&ctx.dialer, url, ctx.keys.clone(), limits).await {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        out.error = Some(e.to_string());
                        flush(&tx, &mut buffer, key, pending(done_until, &planner)).await;
                        break 'filters;
                    }
                }
            }
            let Some(s) = session.as_mut() else {
                break 'filters;
            };
            let (since, until, page_limit) = match step {
                Step::Fetch {
                    since,
                    until,
                    limit,
                } => (since, until, limit),
                Step::Probe { since, until } => (since, until, 1),
                Step::Done => break,
            };
            let fetched = s.fetch(base, since, until, page_limit).await;
            let page = match fetched {
                Ok(p) => p,
                Err(e) => {
                    // What is buffered is complete per the planner; keep it, then retry on a
                    // fresh connection or give up for this cycle.
                    flush(&tx, &mut buffer, key, pending(done_until, &planner)).await;
                    if let Some(old) = session.take() {
                        out.wire.add(&old.stats);
                    }
                    reconnects += 1;
                    if reconnects > RECONNECTS || matches!(e, SessionError::Refused { .. }) {
                        out.error = Some(e.to_string());
                        break 'filters;
                    }
                    warn!(relay = %url, error = %e, "session broke; reconnecting");
                    continue;
                }
            };
            out.rejected.add(&page.rejected);
            match step {
                Step::Probe { .. } => {
                    planner.on_probe(!page.events.is_empty(), last_received);
                }
                _ => {
                    let summary = page.summary;
                    last_received = summary.received;
                    match planner.on_page(&summary) {
                        Ok(Some(o)) => {
                            out.overflows += 1;
                            warn!(relay = %url, second = o.second, limit = o.limit,
                                "one second holds at least `limit` events; REQ paging cannot \
                                 fetch all of them (recorded in service_state synchronizer/overflow)");
                            record_overflow(store, url, o.second).await?;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            out.error = Some(format!("{url}: {e}"));
                            flush(&tx, &mut buffer, key, pending(done_until, &planner)).await;
                            break 'filters;
                        }
                    }
                }
            }
            buffer.extend(page.events);
            if buffer.len() >= cfg.batch_size {
                flush(&tx, &mut buffer, key, pending(done_until, &planner)).await;
                if tx.is_closed() {
                    // The writer failed (its error is the relay's result): stop reading.
                    break 'filters;
                }
            }
        }
    }
    if cfg.live_secs > 0 && out.error.is_none() && !tx.is_closed() {
        let live_until = deadline.min(Instant::now() + Duration::from_secs(cfg.live_secs));
        let clock = (now, started);
        if let Err(e) = live_tail(
            ctx,
            url,
            &filters,
            end,
            clock,
            live_until,
            &mut session,
            &tx,
            &mut out,
        )
        .await
        {
            out.error = Some(format!("live subscription ended: {e}"));
        }
    }
    if let Some(s) = session.take() {
        out.wire.add(&s.stats);
        s.close().await;
    }
    Ok(out)
}

/// After catching up: one subscription for every filter from `end + 1` on, storing events as
/// they arrive (flushed at least every second) until `until`. A clean end moves every cursor to
/// the close time; a broken one leaves them where the catch-up put them (the events stored are
/// kept, and the next cycle re-reads the gap).
#[allow(clippy::too_many_arguments)]
async fn live_tail(
    ctx: &SyncContext,
    url: &RelayUrl,
    keyed: &[(String, Filter)],
    end: i64,
    clock: (i64, Instant),
    until: Instant,
    session: &mut Option<Session>,
    tx: &mpsc::Sender<Batch>,
    out: &mut RelayReport,
) -> Result<(), SessionError> {
    let Some((first_key, _)) = keyed.first() else {
        return Ok(());
    };
    let filters: Vec<Filter> = keyed.iter().map(|(_, f)| f.clone()).collect();
    let cfg = &ctx.cfg;
    if session.is_none() {
        let limits = session_limits(cfg);
        *session = Some(Session::open(&ctx.dialer, url, ctx.keys.clone(), limits).await?);
    }
    let Some(s) = session.as_mut() else {
        return Ok(());
    };
    let sub = s.live_open(&filters, end + 1).await?;
    let unchanged = Progress {
        done_until: Some(end),
        pending: None,
    };
    let mut buffer: Vec<EventRow> = Vec::new();
    let mut rejected = Rejected::default();
    let result = loop {
        let now = Instant::now();
        if now >= until || tx.is_closed() {
            break Ok(());
        }
        let tick = until.min(now + Duration::from_secs(1));
        match s.live_next(&sub, &filters, tick, &mut rejected).await {
            Ok(Some(row)) => {
                buffer.push(row);
                if buffer.len() >= cfg.batch_size {
                    flush(tx, &mut buffer, first_key, unchanged).await;
                }
            }
            Ok(None) => {
                if !buffer.is_empty() {
                    flush(tx, &mut buffer, first_key, unchanged).await;
                }
            }
            Err(e) => break Err(e),
        }
    };
    out.rejected.add(&rejected);
    if let Err(e) = result {
        flush(tx, &mut buffer, first_key, unchanged).await;
        return Err(e);
    }
    let _ = s.send_text(format!(r#"["CLOSE","{sub}"]"#)).await;
    // Everything created before the close arrived live (late clocks are what look-back is for).
    let elapsed = i64::try_from(clock.1.elapsed().as_secs()).unwrap_or(0);
    let closed_at = clock.0 + elapsed - 1;
    let done = Progress {
        done_until: Some(closed_at.max(end)),
        pending: None,
    };
    for (key, _) in keyed {
        flush(tx, &mut buffer, key, done).await;
    }
    Ok(())
}

/// Seconds after which a relay found without NIP-77 is probed again.
const NIP77_RECHECK_SECS: i64 = 7 * 86_400;
/// `service_state` type recording whether a relay really supports NIP-77.
pub const NIP77_STATE: &str = "nip77";
/// Windows with more archived events than this are paged with REQs instead (bounded memory).
const MAX_NEG_ITEMS: usize = 500_000;

/// Negentropy reconciles by id, time and (here) kind; filters on authors or tags would need the
/// same selection on the local side, so they are paged with REQs.
fn negentropy_applies(base: &Filter) -> bool {
    base.ids.is_none()
        && base.authors.is_none()
        && base.generic_tags.is_empty()
        && base.search.is_none()
}

async fn nip77_known_unsupported(
    store: &dyn Store,
    url: &RelayUrl,
    now: i64,
) -> Result<bool, StoreError> {
    let rows = store
        .state_get(SERVICE, NIP77_STATE, Some(url.as_str()))
        .await?;
    Ok(rows.first().is_some_and(|(_, v)| {
        v.get("supported") == Some(&Value::Bool(false))
            && v.get("checkedAt")
                .and_then(Value::as_i64)
                .is_some_and(|t| now - t < NIP77_RECHECK_SECS)
    }))
}

async fn record_nip77(
    store: &dyn Store,
    url: &RelayUrl,
    supported: bool,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    store
        .state_upsert(&[StateEntry {
            service: SERVICE.into(),
            kind: NIP77_STATE.into(),
            key: url.as_str().into(),
            value: serde_json::json!({"supported": supported, "checkedAt": now, "reason": reason}),
        }])
        .await?;
    Ok(())
}

struct NegRun<'a> {
    store: &'a dyn Store,
    url: &'a RelayUrl,
    base: &'a Filter,
    window: crate::sync::Window,
    limit: usize,
    key: &'a str,
    done_until: Option<i64>,
    now: i64,
}

enum NegOutcome {
    /// The window is archived.
    Done,
    /// Use REQ paging (unsupported, or too many local items).
    Skipped,
    /// The session broke.
    Failed(String),
}

/// Reconciles the window, then fetches the missing events by id.
async fn sync_by_negentropy(
    s: &mut Session,
    run: &NegRun<'_>,
    cfg: &SyncConfig,
    tx: &mpsc::Sender<Batch>,
    out: &mut RelayReport,
) -> Result<NegOutcome, StoreError> {
    let end = run.window.end;
    let kinds: Option<Vec<i32>> = run
        .base
        .kinds
        .as_ref()
        .map(|ks| ks.iter().map(|k| i32::from(k.as_u16())).collect());
    // Reconciling costs ids, not events: check the whole history (so events backdated far below
    // the cursor are caught too), or only the current window when the history is too large.
    let mut since = cfg.since.min(run.window.since);
    let mut local = run
        .store
        .relay_event_keys(run.url.as_str(), since, end, kinds.as_deref())
        .await?;
    if local.len() > MAX_NEG_ITEMS {
        since = run.window.since;
        local = run
            .store
            .relay_event_keys(run.url.as_str(), since, end, kinds.as_deref())
            .await?;
        if local.len() > MAX_NEG_ITEMS {
            return Ok(NegOutcome::Skipped);
        }
    }
    let filter = crate::sync::session::window_filter(run.base, since, end, 0);
    let filter = Filter {
        limit: None,
        ..filter
    };
    let idle = Duration::from_secs_f64(cfg.idle_timeout_secs);
    let rec = match s.reconcile(&filter, &local, idle).await {
        Ok(r) => r,
        Err(NegError::Unsupported(reason)) => {
            info!(relay = %run.url, %reason, "no NIP-77; paging with REQ");
            record_nip77(run.store, run.url, false, &reason, run.now).await?;
            return Ok(NegOutcome::Skipped);
        }
        Err(NegError::Session(e)) => return Ok(NegOutcome::Failed(e.to_string())),
    };
    record_nip77(run.store, run.url, true, "", run.now).await?;
    let keep = Progress {
        done_until: run.done_until,
        pending: None,
    };
    let mut buffer: Vec<EventRow> = Vec::new();
    let mut missing = 0usize;
    for chunk in rec.need.chunks(run.limit.clamp(1, 500)) {
        // A relay may cap the answer below the number of ids: ask again for the rest until an
        // answer brings nothing new.
        let mut wanted: Vec<[u8; 32]> = chunk.to_vec();
        while !wanted.is_empty() {
            let ids = wanted
                .iter()
                .filter_map(|id| nostr::EventId::from_slice(id).ok());
            let by_id = run.base.clone().ids(ids);
            let page = match s.fetch(&by_id, since, end, wanted.len()).await {
                Ok(p) => p,
                Err(e) => {
                    flush(tx, &mut buffer, run.key, keep).await;
                    return Ok(NegOutcome::Failed(e.to_string()));
                }
            };
            out.rejected.add(&page.rejected);
            let got: HashSet<[u8; 32]> = page.events.iter().map(|e| e.id).collect();
            let before = wanted.len();
            wanted.retain(|id| !got.contains(id));
            buffer.extend(page.events);
            if buffer.len() >= cfg.batch_size {
                flush(tx, &mut buffer, run.key, keep).await;
                if tx.is_closed() {
                    return Ok(NegOutcome::Failed("the writer stopped".into()));
                }
            }
            if wanted.len() == before {
                missing += wanted.len();
                break;
            }
        }
    }
    if missing > 0 {
        warn!(relay = %run.url, missing, "relay listed events in NIP-77 that it did not serve");
    }
    let done = Progress {
        done_until: Some(end.max(run.done_until.unwrap_or(i64::MIN))),
        pending: None,
    };
    flush(tx, &mut buffer, run.key, done).await;
    out.negentropy_windows += 1;
    Ok(NegOutcome::Done)
}

fn session_limits(cfg: &SyncConfig) -> SessionLimits {
    SessionLimits {
        idle: Duration::from_secs_f64(cfg.idle_timeout_secs),
        page: Duration::from_secs_f64(cfg.page_timeout_secs),
        max_event_bytes: cfg.max_event_bytes,
    }
}

fn pending(done_until: Option<i64>, planner: &Planner) -> Progress {
    Progress {
        done_until,
        pending: (!planner.is_done()).then(|| planner.window()),
    }
}

/// Hands the buffer and the progress it completes to the writer. A closed channel means the
/// writer failed; its error is what the caller reports.
async fn flush(
    tx: &mpsc::Sender<Batch>,
    buffer: &mut Vec<EventRow>,
    key: &str,
    progress: Progress,
) {
    let events = std::mem::take(buffer);
    let _ = tx
        .send(Batch {
            events,
            key: key.to_owned(),
            progress,
        })
        .await;
}

async fn load_progress(store: &dyn Store, key: &str) -> Result<Progress, StoreError> {
    let rows = store.state_get(SERVICE, CURSOR_STATE, Some(key)).await?;
    Ok(match rows.into_iter().next() {
        // A malformed cursor restarts that filter from `since`: re-reading is safe.
        Some((_, v)) => serde_json::from_value(v).unwrap_or_default(),
        None => Progress::default(),
    })
}

/// Remembers a second that overflowed the relay's limit (for operators and a later
/// reconciliation), as a sorted list per relay.
async fn record_overflow(store: &dyn Store, url: &RelayUrl, second: i64) -> Result<(), StoreError> {
    let rows = store
        .state_get(SERVICE, OVERFLOW_STATE, Some(url.as_str()))
        .await?;
    let mut seconds: Vec<i64> = rows
        .into_iter()
        .next()
        .and_then(|(_, v)| serde_json::from_value(v).ok())
        .unwrap_or_default();
    if !seconds.contains(&second) {
        seconds.push(second);
        seconds.sort_unstable();
    }
    store
        .state_upsert(&[StateEntry {
            service: SERVICE.into(),
            kind: OVERFLOW_STATE.into(),
            key: url.as_str().into(),
            value: serde_json::to_value(seconds).unwrap_or(Value::Null),
        }])
        .await?;
    Ok(())
}

/// Relay URLs found in the batch become validator candidates (once per received event; the
/// store ignores URLs that are already relays or candidates).
async fn add_hints(
    store: &dyn Store,
    events: &[EventRow],
    allow_local: bool,
    now: i64,
) -> Result<u64, StoreError> {
    let mut urls: HashSet<RelayUrl> = HashSet::new();
    for e in events {
        urls.extend(relay_hints_from_row(e, allow_local).urls);
    }
    if urls.is_empty() {
        return Ok(0);
    }
    let candidates: Vec<Candidate> = urls.into_iter().map(|u| Candidate::new(u, now)).collect();
    store.insert_candidates(&candidates).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_keys_are_the_url_for_everything_and_hashed_per_filter() {
        let empty = serde_json::Map::new();
        assert_eq!(cursor_key("wss://a.example", &empty), "wss://a.example");
        let kinds: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"kinds":[1]}"#).unwrap();
        let other: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"kinds":[3]}"#).unwrap();
        let k1 = cursor_key("wss://a.example", &kinds);
        assert!(k1.starts_with("wss://a.example#") && k1.len() == "wss://a.example#".len() + 12);
        assert_ne!(k1, cursor_key("wss://a.example", &other));
        assert_eq!(k1, cursor_key("wss://a.example", &kinds));
    }
}
