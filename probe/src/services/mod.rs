//! The services. Each is built once from its configuration and exposes one
//! [`Service::run_cycle`] over a [`Ctx`]; services share nothing but the database (and the
//! wake-up signal that says "relays were promoted"). The runtime runs them.

pub mod api;
pub mod consensus;
pub mod finder;
pub mod maintainer;
pub mod monitor;
pub mod seeder;
pub mod synchronizer;
pub mod validator;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::config::Schedule;
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::runtime::unix_now;
use crate::store::{Archive, Store, StoreError, Timed};

/// What a cycle needs besides the service's own settings.
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub wake: Wake,
    pub progress: Progress,
    /// The archive's reads (the same database as `store`, untimed), for the services that
    /// read what the api serves (consensus). `None` in contexts built over a bare store.
    pub reader: Option<Arc<dyn Archive>>,
    clock: Clock,
}

#[derive(Clone, Copy)]
enum Clock {
    System,
    Fixed(i64),
}

impl Ctx {
    /// A context over `store`, every operation of it timed into the context's metrics.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let metrics = Metrics::new();
        let seconds = metrics.database.query_seconds.clone();
        Ctx {
            store: Arc::new(Timed::new(store, seconds)),
            metrics,
            wake: Wake::new(),
            progress: Progress::hidden(),
            reader: None,
            clock: Clock::System,
        }
    }

    /// A context over `archive`: its store, and its reads.
    pub fn over(archive: Arc<dyn Archive>) -> Self {
        let mut ctx = Ctx::new(archive.clone());
        ctx.reader = Some(archive);
        ctx
    }

    /// The same context with the clock stopped at `now` (tests, benchmarks).
    pub fn at(mut self, now: i64) -> Self {
        self.clock = Clock::Fixed(now);
        self
    }

    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Unix time in seconds.
    pub fn now(&self) -> i64 {
        match self.clock {
            Clock::System => unix_now(),
            Clock::Fixed(t) => t,
        }
    }
}

/// "Relays were promoted": lets the monitor and the synchronizer start a cycle at once instead
/// of waiting out their interval. Bumped in process by the validator and, across processes, by
/// the store's change notifications (PostgreSQL `LISTEN`).
#[derive(Clone)]
pub struct Wake {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for Wake {
    fn default() -> Self {
        Self::new()
    }
}

impl Wake {
    pub fn new() -> Self {
        Wake {
            tx: Arc::new(watch::channel(0).0),
        }
    }

    /// Signals that relays were promoted.
    pub fn relays_promoted(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees later signals.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

/// What one cycle did, as the runtime needs it.
pub trait CycleReport: Debug + Send + Sync {
    /// Things the cycle tried (relays, candidates, sources).
    fn attempted(&self) -> u64;
    /// Of which failed. A `--once` run in which every attempt failed exits non-zero.
    fn failed(&self) -> u64;
    /// Adds the cycle's counts to the service's metrics.
    fn record(&self, metrics: &Metrics);
}

/// A long-running service.
#[async_trait]
pub trait Service: Send + Sync {
    type Report: CycleReport;

    /// The `service` label of its metrics and logs.
    fn name(&self) -> &'static str;
    fn schedule(&self) -> Schedule;
    /// Whether promoted relays should start a cycle before the interval is up.
    fn wakes_on_promotion(&self) -> bool {
        false
    }
    /// One cycle; only store failures are errors (a failing relay is part of the report).
    async fn run_cycle(&self, ctx: &Ctx) -> Result<Self::Report, StoreError>;
}
