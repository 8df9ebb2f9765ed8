//! Synchronizer: archives the events of every active relay, incrementally.
//!
//! Per relay and per filter, a cursor ([`Progress`] in `service_state`, service `synchronizer`,
//! type `cursor`) says what is archived; the sync driver ([`crate::sync::driver`]) turns each
//! window into batches by NIP-77 reconciliation (when the monitor found the relay speaks it) or
//! REQ paging. Reading and writing overlap: a reader drives the relay while a writer commits the
//! previous batch, then persists the progress that batch completes — so a crash anywhere
//! re-reads at most one batch and stores nothing twice (inserts are idempotent). Memory per
//! relay is one page plus one batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use nostr::Filter;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Ctx, CycleReport, Service};
use crate::config::sync::{FilterSpec, parse_filter};
use crate::config::{LimitsConfig, NetworksConfig, Schedule, Shard, SyncConfig};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::model::relay_hints::relay_hints_from_row;
use crate::model::{Candidate, EventRow, LifecyclePolicy, MetadataType, RelayUrl};
use crate::net::{
    AuthMode, Dialer, NetworkLimits, RelaySession, SessionOptions, WireStats, tls_config,
};
use crate::nips::nip77;
use crate::progress::Tracker;
use crate::store::{RelayRow, StateEntry, Store, StoreError, active_relays};
use crate::sync::driver::{
    self, BatchSink, DriveOptions, DriveReport, LiveOptions, NegEnd, NegWindow, PageEnd,
    SessionPages, Target,
};
use crate::sync::{Planner, Progress, ReadLimits, Rejected};

/// `service_state` service name and type of the cursors.
pub const SERVICE: &str = "synchronizer";
pub const CURSOR_STATE: &str = "cursor";
/// `service_state` type recording seconds that held more events than a relay returns per REQ.
pub const OVERFLOW_STATE: &str = "overflow";
/// Reconnections per relay per cycle after a broken session.
const RECONNECTS: u32 = 2;
/// Windows with more archived events than this are paged with REQs instead (bounded memory).
const MAX_NEG_ITEMS: usize = 500_000;
/// The monitor's NIP-77 verdict is trusted this long.
const NIP77_VERDICT_SECS: i64 = 7 * 86_400;

/// Counts that add up across relays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncTotals {
    pub events_new: u64,
    pub links_new: u64,
    pub wire: WireStats,
    pub rejected: Rejected,
    pub overflows: u64,
    pub candidates: u64,
    /// (relay, filter) windows archived by REQ paging, NIP-77 reconciliation, live.
    pub req_windows: u64,
    pub negentropy_windows: u64,
    pub live_windows: u64,
}

impl SyncTotals {
    fn add(&mut self, o: &SyncTotals) {
        self.events_new += o.events_new;
        self.links_new += o.links_new;
        self.wire.add(&o.wire);
        self.rejected.add(&o.rejected);
        self.overflows += o.overflows;
        self.candidates += o.candidates;
        self.req_windows += o.req_windows;
        self.negentropy_windows += o.negentropy_windows;
        self.live_windows += o.live_windows;
    }
}

/// What syncing one relay did.
#[derive(Debug, Clone, Default)]
pub struct RelaySyncReport {
    pub totals: SyncTotals,
    /// Seconds between now and the oldest cursor of the relay after its sync.
    pub lag: Option<i64>,
    pub error: Option<String>,
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub relays: u64,
    pub relays_failed: u64,
    pub totals: SyncTotals,
    /// Each relay's lag after its sync (seconds).
    pub lags: Vec<i64>,
}

impl SyncReport {
    fn add(&mut self, r: &RelaySyncReport) {
        self.relays += 1;
        self.relays_failed += u64::from(r.error.is_some());
        self.totals.add(&r.totals);
        self.lags.extend(r.lag);
    }
}

macro_rules! totals_deref {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = SyncTotals;
            fn deref(&self) -> &SyncTotals {
                &self.totals
            }
        }
        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut SyncTotals {
                &mut self.totals
            }
        }
    };
}
totals_deref!(RelaySyncReport);
totals_deref!(SyncReport);

impl CycleReport for SyncReport {
    fn attempted(&self) -> u64 {
        self.relays
    }
    fn failed(&self) -> u64 {
        self.relays_failed
    }
    fn record(&self, m: &Metrics) {
        let s = &m.synchronizer;
        s.events_stored.inc_by(self.events_new);
        s.events_received.inc_by(self.wire.events_received);
        s.bytes_received.inc_by(self.wire.bytes_in);
        let r = &self.rejected;
        for (reason, n) in [
            ("malformed", r.malformed),
            ("bad_signature", r.bad_signature),
            ("off_filter", r.off_filter),
            ("oversized", r.oversized),
            ("unstorable", r.unstorable),
        ] {
            s.events_rejected.with_label_values(&[reason]).inc_by(n);
        }
        s.requests.inc_by(self.wire.requests);
        s.windows
            .with_label_values(&["req"])
            .inc_by(self.req_windows);
        s.windows
            .with_label_values(&["negentropy"])
            .inc_by(self.negentropy_windows);
        s.windows
            .with_label_values(&["live"])
            .inc_by(self.live_windows);
        s.relays_behind
            .set(i64::try_from(self.relays_failed).unwrap_or(i64::MAX));
        for lag in &self.lags {
            s.relay_lag_seconds.observe(*lag as f64);
        }
        s.overflow_seconds.inc_by(self.overflows);
        s.hints.inc_by(self.candidates);
    }
}

/// A configured filter: as written (its cursor key hashes it) and parsed.
#[derive(Debug, Clone)]
struct SyncFilter {
    spec: FilterSpec,
    filter: Filter,
}

/// The synchronizer service.
pub struct Synchronizer {
    dialer: Dialer,
    identity: Identity,
    cfg: SyncConfig,
    filters: Vec<SyncFilter>,
    overrides: HashMap<String, (Vec<SyncFilter>, usize)>,
    shard: Shard,
    lifecycle: LifecyclePolicy,
    /// Relay hints pointing at local addresses become candidates (tests, private deployments).
    allow_local: bool,
}

/// Why the synchronizer cannot start.
#[derive(Debug, thiserror::Error)]
#[error("bad sync filter {what}: {reason}")]
pub struct FilterError {
    what: String,
    reason: String,
}

fn parse_all(what: &str, specs: &[FilterSpec]) -> Result<Vec<SyncFilter>, FilterError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let filter = parse_filter(spec).map_err(|reason| FilterError {
                what: format!("{what}[{i}]"),
                reason,
            })?;
            Ok(SyncFilter {
                spec: spec.clone(),
                filter,
            })
        })
        .collect()
}

impl Synchronizer {
    /// Parses every filter once; `shard` overrides `sync.shard`.
    pub fn new(
        cfg: SyncConfig,
        networks: NetworksConfig,
        limits: LimitsConfig,
        identity: Identity,
        lifecycle: LifecyclePolicy,
        shard: Option<Shard>,
    ) -> Result<Self, FilterError> {
        let filters = parse_all("sync.filters", &cfg.filters)?;
        let mut overrides = HashMap::new();
        for (i, o) in cfg.overrides.iter().enumerate() {
            let f = match &o.filters {
                Some(specs) => parse_all(&format!("sync.overrides[{i}].filters"), specs)?,
                None => filters.clone(),
            };
            overrides.insert(o.url.clone(), (f, o.limit.unwrap_or(cfg.limit)));
        }
        Ok(Synchronizer {
            allow_local: limits.allow_private,
            dialer: Dialer::new(networks, limits, tls_config(&[])),
            identity,
            shard: shard.unwrap_or_else(|| cfg.shard()),
            filters,
            overrides,
            cfg,
            lifecycle,
        })
    }

    /// The relays this replica syncs: active, in its shard, on an enabled network, not disabled.
    async fn relays(&self, store: &dyn Store) -> Result<Vec<RelayRow>, StoreError> {
        Ok(active_relays(store, &self.lifecycle)
            .await?
            .into_iter()
            .filter(|r| self.shard.owns(r.url.as_str()))
            .filter(|r| self.dialer.networks().get(r.url.network()).enabled)
            .filter(|r| {
                !self
                    .cfg
                    .override_for(r.url.as_str())
                    .is_some_and(|o| o.disabled)
            })
            .collect())
    }

    fn read_limits(&self) -> ReadLimits {
        ReadLimits {
            page: Duration::from_secs_f64(self.cfg.page_timeout_secs),
            max_event_bytes: self.cfg.max_event_bytes,
        }
    }

    /// Syncs one relay: a writer commits what the reader hands on. Relay failures land in the
    /// report; store failures are errors.
    pub async fn sync_relay(
        &self,
        ctx: &Ctx,
        relay: &RelayRow,
        tracker: &Tracker,
    ) -> Result<RelaySyncReport, StoreError> {
        let (tx, rx) = mpsc::channel::<Batch>(2);
        let writer = Writer {
            store: ctx.store.clone(),
            relay: relay.clone(),
            now: ctx.now(),
            hints: self.cfg.extract_hints.then_some(self.allow_local),
        };
        let reader = RelayReader::new(self, ctx, &relay.url);
        let (written, read) = tokio::join!(writer.run(rx, tracker), reader.run(tx));
        let written = written?;
        let mut report = read?;
        report.events_new = written.events_new;
        report.links_new = written.links_new;
        report.candidates = written.candidates;
        report.lag = written.lag;
        Ok(report)
    }
}

#[async_trait]
impl Service for Synchronizer {
    type Report = SyncReport;

    fn name(&self) -> &'static str {
        "synchronizer"
    }

    fn schedule(&self) -> Schedule {
        self.cfg.schedule()
    }

    fn wakes_on_promotion(&self) -> bool {
        true
    }

    /// One cycle over every relay of this shard, each network under its own concurrency
    /// limit. A failing relay is reported and skipped; only store failures fail the cycle.
    async fn run_cycle(&self, ctx: &Ctx) -> Result<SyncReport, StoreError> {
        let relays = self.relays(ctx.store.as_ref()).await?;
        let limits = NetworkLimits::new(self.dialer.networks());
        let tracker = ctx
            .progress
            .start("synchronizer", relays.len() as u64, "relays");
        let in_flight = limits.total(&self.dialer.networks().enabled());
        let mut results = futures_util::stream::iter(relays)
            .map(|r| {
                let (limits, tracker) = (limits.clone(), tracker.clone());
                async move {
                    let _permit = limits.acquire(r.url.network()).await;
                    let result = self.sync_relay(ctx, &r, &tracker).await;
                    tracker.done(result.as_ref().is_ok_and(|x| x.error.is_none()));
                    (result, r)
                }
            })
            .buffer_unordered(in_flight);
        let mut report = SyncReport::default();
        while let Some((result, relay)) = results.next().await {
            let r = result?;
            if let Some(e) = &r.error {
                warn!(relay = %relay.url, error = %e, "relay not fully synced this cycle");
            }
            report.add(&r);
        }
        drop(results);
        tracker.finish();
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

/// The reader's side of the channel.
struct ChannelSink(mpsc::Sender<Batch>);

impl BatchSink for ChannelSink {
    async fn flush(&mut self, key: &str, events: Vec<EventRow>, progress: Progress) -> bool {
        let batch = Batch {
            events,
            key: key.to_owned(),
            progress,
        };
        self.0.send(batch).await.is_ok()
    }
}

/// What the writer stored.
#[derive(Debug, Default)]
struct Written {
    events_new: u64,
    links_new: u64,
    candidates: u64,
    lag: Option<i64>,
}

/// Commits batches, then the progress they complete.
struct Writer {
    store: Arc<dyn Store>,
    relay: RelayRow,
    now: i64,
    /// `Some(allow_local)` when relay hints become candidates.
    hints: Option<bool>,
}

impl Writer {
    async fn run(
        self,
        mut rx: mpsc::Receiver<Batch>,
        tracker: &Tracker,
    ) -> Result<Written, StoreError> {
        let mut out = Written::default();
        let mut done: BTreeMap<String, Option<i64>> = BTreeMap::new();
        while let Some(b) = rx.recv().await {
            if !b.events.is_empty() {
                let s = self
                    .store
                    .insert_events(&self.relay, self.now, &b.events)
                    .await?;
                out.events_new += s.events_new;
                out.links_new += s.links_new;
                tracker.events(s.events_new);
                if let Some(allow_local) = self.hints {
                    out.candidates +=
                        add_hints(self.store.as_ref(), &b.events, allow_local, self.now).await?;
                }
            }
            done.insert(b.key.clone(), b.progress.done_until);
            let value = serde_json::to_value(b.progress).unwrap_or(Value::Null);
            self.store
                .state_upsert(&[StateEntry {
                    service: SERVICE.into(),
                    kind: CURSOR_STATE.into(),
                    key: b.key,
                    value,
                }])
                .await?;
        }
        out.lag = done
            .values()
            .map(|d| d.map_or(self.now, |t| self.now - t))
            .max()
            .map(|l| l.max(0));
        Ok(out)
    }
}

/// The reader of one relay: its session (reopened after a failure), filters and budget.
struct RelayReader<'a> {
    sync: &'a Synchronizer,
    ctx: &'a Ctx,
    url: &'a RelayUrl,
    filters: Vec<(String, SyncFilter)>,
    limit: usize,
    session: Option<RelaySession>,
    reconnects: u32,
    deadline: Instant,
    out: RelaySyncReport,
    drive: DriveReport,
}

impl<'a> RelayReader<'a> {
    fn new(sync: &'a Synchronizer, ctx: &'a Ctx, url: &'a RelayUrl) -> Self {
        let (filters, limit) = match sync.overrides.get(url.as_str()) {
            Some((f, limit)) => (f.clone(), *limit),
            None => (sync.filters.clone(), sync.cfg.limit),
        };
        let filters = filters
            .into_iter()
            .map(|f| (cursor_key(url.as_str(), &f.spec), f))
            .collect();
        RelayReader {
            sync,
            ctx,
            url,
            filters,
            limit,
            session: None,
            reconnects: 0,
            deadline: Instant::now() + Duration::from_secs(sync.cfg.max_relay_secs),
            out: RelaySyncReport::default(),
            drive: DriveReport::default(),
        }
    }

    /// The open session (opened when needed) and the drive report, borrowed apart.
    async fn session(&mut self) -> Result<(&mut RelaySession, &mut DriveReport), String> {
        if self.session.is_none() {
            let opts = SessionOptions::new(self.sync.identity.keys().clone(), AuthMode::Eager)
                .idle(Duration::from_secs_f64(self.sync.cfg.idle_timeout_secs));
            let s = RelaySession::open(&self.sync.dialer, self.url, opts)
                .await
                .map_err(|e| e.to_string())?;
            self.session = Some(s);
        }
        match self.session.as_mut() {
            Some(s) => Ok((s, &mut self.drive)),
            None => Err("no session".to_owned()),
        }
    }

    /// Drops the session (the next use opens a new one), keeping its traffic figures.
    fn drop_session(&mut self) {
        if let Some(old) = self.session.take() {
            self.out.wire.add(&old.stats);
        }
    }

    /// Drops the session after a failure; whether another attempt is allowed.
    fn broke(&mut self) -> bool {
        self.drop_session();
        self.reconnects += 1;
        self.reconnects <= RECONNECTS
    }

    async fn run(mut self, tx: mpsc::Sender<Batch>) -> Result<RelaySyncReport, StoreError> {
        let mut sink = ChannelSink(tx);
        let end = self.ctx.now() - self.sync.cfg.end_lag_secs;
        let filters = self.filters.clone();
        for (key, f) in &filters {
            match self.sync_filter(key, &f.filter, end, &mut sink).await? {
                Step::Next => {}
                Step::Stop(e) => {
                    self.out.error = e;
                    break;
                }
            }
        }
        if self.sync.cfg.live_secs > 0 && self.out.error.is_none() && !sink.0.is_closed() {
            self.live(end, &mut sink).await;
        }
        let overflows = std::mem::take(&mut self.drive.overflows);
        self.out.overflows = overflows.len() as u64;
        for second in overflows {
            record_overflow(self.ctx.store.as_ref(), self.url, second).await?;
        }
        if self.drive.missing > 0 {
            warn!(relay = %self.url, missing = self.drive.missing, "relay listed events in NIP-77 that it did not serve");
        }
        self.out.rejected = self.drive.rejected;
        if let Some(s) = self.session.take() {
            self.out.wire.add(&s.stats);
            s.close().await;
        }
        Ok(self.out)
    }

    /// One filter's window: reconciled when the relay speaks NIP-77, paged otherwise.
    async fn sync_filter(
        &mut self,
        key: &str,
        filter: &Filter,
        end: i64,
        sink: &mut ChannelSink,
    ) -> Result<Step, StoreError> {
        if sink.0.is_closed() {
            return Ok(Step::Stop(None));
        }
        let store = self.ctx.store.as_ref();
        let progress = load_progress(store, key).await?;
        let Some(window) =
            progress.next_window(self.sync.cfg.since, self.sync.cfg.lookback_secs, end)
        else {
            return Ok(Step::Next);
        };
        let target = Target {
            key,
            base: filter,
            done_until: progress.done_until,
        };
        if self.use_negentropy(filter).await? {
            // `None`: unsupported, page with REQs.
            if let Some(step) = self.negentropy(target, window.since, end, sink).await? {
                return Ok(step);
            }
        }
        Ok(self
            .page(target, Planner::new(window, self.limit), sink)
            .await)
    }

    /// Whether to reconcile: configured, a reconcilable filter, and the monitor did not find
    /// the relay without NIP-77 (its verdict is the one answer; unknown means try).
    async fn use_negentropy(&self, filter: &Filter) -> Result<bool, StoreError> {
        if !self.sync.cfg.negentropy || !nip77::reconcilable(filter) {
            return Ok(false);
        }
        let verdict = self
            .ctx
            .store
            .latest_metadata(self.url.as_str(), MetadataType::Nip77Probe)
            .await?;
        let says_no = verdict.is_some_and(|(at, doc)| {
            self.ctx.now() - at < NIP77_VERDICT_SECS
                && doc.get("negentropy") == Some(&Value::Bool(false))
        });
        Ok(!says_no)
    }

    /// `None` when the relay does not really speak NIP-77 (page with REQs instead).
    async fn negentropy(
        &mut self,
        target: Target<'_>,
        window_since: i64,
        end: i64,
        sink: &mut ChannelSink,
    ) -> Result<Option<Step>, StoreError> {
        let cfg = &self.sync.cfg;
        let kinds: Option<Vec<i32>> = target
            .base
            .kinds
            .as_ref()
            .map(|ks| ks.iter().map(|k| i32::from(k.as_u16())).collect());
        let store = self.ctx.store.as_ref();
        // Reconciling costs ids, not events: check the whole history (so events backdated far
        // below the cursor are caught too), or only the current window when it is too large.
        let mut since = cfg.since.min(window_since);
        let mut local = store
            .relay_event_keys(self.url.as_str(), since, end, kinds.as_deref())
            .await?;
        if local.len() > MAX_NEG_ITEMS {
            since = window_since;
            local = store
                .relay_event_keys(self.url.as_str(), since, end, kinds.as_deref())
                .await?;
            if local.len() > MAX_NEG_ITEMS {
                return Ok(None);
            }
        }
        let (limits, limit) = (self.sync.read_limits(), self.limit);
        let round = Duration::from_secs_f64(cfg.idle_timeout_secs);
        let batch_size = cfg.batch_size;
        let (s, drive) = match self.session().await {
            Ok(s) => s,
            Err(e) => return Ok(Some(Step::Stop(Some(e)))),
        };
        let w = NegWindow {
            target,
            since,
            end,
            local: &local,
            ids_per_req: limit,
        };
        let end = driver::negentropy_window(s, &w, limits, round, batch_size, sink, drive).await;
        Ok(match end {
            NegEnd::Done => {
                self.out.negentropy_windows += 1;
                Some(Step::Next)
            }
            NegEnd::Unsupported(reason) => {
                info!(relay = %self.url, %reason, "no NIP-77; paging with REQ");
                None
            }
            NegEnd::TooLarge(e) => {
                // Not a broken relay: the next cycle's difference may fit again.
                self.drop_session();
                info!(relay = %self.url, error = %e, "NIP-77 answer too large; paging with REQ");
                None
            }
            NegEnd::Stopped => Some(Step::Stop(None)),
            NegEnd::Failed(e) => {
                self.broke();
                Some(Step::Stop(Some(e.to_string())))
            }
        })
    }

    /// REQ paging of one window, reconnecting after a broken session.
    async fn page(
        &mut self,
        target: Target<'_>,
        mut planner: Planner,
        sink: &mut ChannelSink,
    ) -> Step {
        let opts = DriveOptions {
            batch_size: self.sync.cfg.batch_size,
            deadline: Some(self.deadline),
        };
        let limits = self.sync.read_limits();
        loop {
            let (session, drive) = match self.session().await {
                Ok(s) => s,
                Err(e) => return Step::Stop(Some(e)),
            };
            let mut src = SessionPages { session, limits };
            let end = driver::page_window(&mut src, target, &mut planner, opts, sink, drive).await;
            match end {
                PageEnd::Done => {
                    self.out.req_windows += 1;
                    return Step::Next;
                }
                PageEnd::OutOfTime => {
                    return Step::Stop(Some(format!(
                        "time budget of {}s used up; resuming next cycle",
                        self.sync.cfg.max_relay_secs
                    )));
                }
                PageEnd::Stopped => return Step::Stop(None),
                PageEnd::Invalid(e) => return Step::Stop(Some(format!("{}: {e}", self.url))),
                PageEnd::Failed(e) => {
                    let refused = matches!(e, crate::net::RelayError::Refused { .. });
                    if !self.broke() || refused {
                        return Step::Stop(Some(e.to_string()));
                    }
                    warn!(relay = %self.url, error = %e, "session broke; reconnecting");
                }
            }
        }
    }

    /// The live tail after catching up.
    async fn live(&mut self, end: i64, sink: &mut ChannelSink) {
        let cfg = &self.sync.cfg;
        let live = LiveOptions {
            end,
            clock: (self.ctx.now(), Instant::now()),
            until: self
                .deadline
                .min(Instant::now() + Duration::from_secs(cfg.live_secs)),
            max_event_bytes: cfg.max_event_bytes,
            batch_size: cfg.batch_size,
        };
        let keyed: Vec<(String, Filter)> = self
            .filters
            .iter()
            .map(|(k, f)| (k.clone(), f.filter.clone()))
            .collect();
        let result = match self.session().await {
            Ok((s, drive)) => driver::live_tail(s, &keyed, live, sink, drive)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => self.out.live_windows = 1,
            Err(e) => self.out.error = Some(format!("live subscription ended: {e}")),
        }
    }
}

/// What to do after a filter.
enum Step {
    Next,
    /// Stop this relay, with the error to report (`None`: the writer stopped; its error is the
    /// relay's result).
    Stop(Option<String>),
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
    warn!(relay = %url, second,
        "one second holds at least `limit` events; REQ paging cannot fetch all of them \
         (recorded in service_state synchronizer/overflow)");
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
