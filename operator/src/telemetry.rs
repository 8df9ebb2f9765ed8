//! The operator's metrics, health endpoints and logs.
//!
//! `/metrics` (Prometheus text), `/healthz` (the process answers), `/readyz` (the controllers
//! run: this replica leads, or leader election is off, and every watch has listed once).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Counts a kind's cached objects by state: `(kind, [(status, count)])`.
pub type Census = Box<dyn Fn() -> (&'static str, Vec<(&'static str, i64)>) + Send + Sync>;

/// Reconcile metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `brotr_operator_reconciles_total{kind}`.
    pub reconciles: IntCounterVec,
    /// `brotr_operator_reconcile_failures_total{kind, reason}`.
    pub failures: IntCounterVec,
    /// `brotr_operator_reconcile_duration_seconds{kind}`.
    pub duration: HistogramVec,
    /// `brotr_operator_writes_total{kind, verb}`: writes to children and statuses.
    pub writes: IntCounterVec,
    /// `brotr_operator_leader`: 1 while this replica runs the controllers.
    pub leader: IntGauge,
    /// `brotr_operator_watch_restarts_total`: controllers restarted because a watch fell behind.
    pub watch_restarts: IntCounter,
    /// `brotr_operator_objects{kind, status}`: custom resources by state (ready, reconciling,
    /// stalled), counted from the controllers' caches at each scrape so deleted objects drop out.
    pub objects: IntGaugeVec,
    census: Arc<Mutex<Vec<Census>>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "brotr_operator_reconciles_total",
                "Reconciles by custom resource kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "brotr_operator_reconcile_failures_total",
                "Reconciles that ended in an error or a Stalled verdict, by kind and reason",
            ),
            &["kind", "reason"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "brotr_operator_reconcile_duration_seconds",
                "Time one reconcile took",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        let writes = IntCounterVec::new(
            Opts::new(
                "brotr_operator_writes_total",
                "API writes to children and statuses, by object kind and verb",
            ),
            &["kind", "verb"],
        )
        .expect("valid metric");
        let leader = IntGauge::new("brotr_operator_leader", "1 while this replica leads")
            .expect("valid metric");
        let watch_restarts = IntCounter::new(
            "brotr_operator_watch_restarts_total",
            "Controllers restarted because a watch fell behind the API server",
        )
        .expect("valid metric");
        let objects = IntGaugeVec::new(
            Opts::new(
                "brotr_operator_objects",
                "Custom resources by kind and state (ready, reconciling, stalled)",
            ),
            &["kind", "status"],
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(writes.clone()),
            Box::new(leader.clone()),
            Box::new(objects.clone()),
            Box::new(watch_restarts.clone()),
        ] {
            registry.register(c).expect("registered once");
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            writes,
            leader,
            objects,
            watch_restarts,
            census: Arc::default(),
        }
    }

    /// Adds a source for `brotr_operator_objects` (one per controller).
    pub fn add_census(&self, census: Census) {
        if let Ok(mut c) = self.census.lock() {
            c.push(census);
        }
    }

    fn take_census(&self) {
        let Ok(census) = self.census.lock() else {
            return;
        };
        self.objects.reset();
        for count in census.iter() {
            let (kind, by_status) = count();
            for (status, n) in by_status {
                self.objects.with_label_values(&[kind, status]).add(n);
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.take_census();
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Readiness of the process, set by the controllers.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    ready: Readiness,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { s.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                if s.ready.get() {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .with_state(AppState { metrics, ready });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Structured logs: JSON (for clusters) or text, filtered by `RUST_LOG`-style `level`.
pub fn init_logging(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Tunes glibc's malloc for a process whose memory comes in bursts (the initial lists of a
/// fleet, decoded on several threads at once, then a quiet cache):
/// - at most two arenas (by default each thread that contends for the heap gets its own, up to
///   8 per core, and memory one arena freed is not reused by another: the resident set held the
///   high-water mark of every arena);
/// - allocations from 128 KiB up (list pages, response bodies) mapped and unmapped on their own,
///   and free memory above 512 KiB returned to the kernel; setting these also stops glibc from
///   raising the mapping threshold after each large free, which moved later large buffers onto
///   the heap for good.
///
/// Called once, before the runtime starts its threads. A no-op off glibc.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 * 1024);
    }
}

/// Hands the heap's free pages back to the kernel (glibc keeps freed memory for reuse; after a
/// burst, such as the initial lists or the watchdog's periodic ones, the resident set would
/// otherwise stay at the burst's size). A no-op off glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim walks the allocator's own free lists under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
