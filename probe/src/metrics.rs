//! Prometheus metrics of one process, named `brotr_<service>_<thing>_<unit>`, one unit per name,
//! with few, bounded labels (never a relay URL). README lists every one.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the process. Cheap to clone (the handles are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub service: ServiceMetrics,
    pub validator: ValidatorMetrics,
    pub finder: FinderMetrics,
    pub monitor: MonitorMetrics,
    pub synchronizer: SyncMetrics,
    pub maintain: MaintainMetrics,
    pub database: DatabaseMetrics,
    pub api: ApiMetrics,
}

/// Every service's cycles.
#[derive(Clone)]
pub struct ServiceMetrics {
    /// `brotr_service_cycles_total{service, outcome="ok|error"}`.
    pub cycles: IntCounterVec,
    /// `brotr_service_cycle_duration_seconds{service}`.
    pub cycle_seconds: HistogramVec,
    /// `brotr_service_consecutive_failures{service}`.
    pub consecutive_failures: IntGaugeVec,
    /// `brotr_service_last_success_timestamp_seconds{service}`.
    pub last_success: IntGaugeVec,
}

#[derive(Clone)]
pub struct ValidatorMetrics {
    pub checked: IntCounter,
    pub promoted: IntCounter,
    pub rejected: IntCounter,
    pub pruned: IntCounter,
    pub rechecked: IntCounter,
    pub dormant: IntGauge,
}

#[derive(Clone)]
pub struct FinderMetrics {
    /// By source URL (bounded by the configuration).
    pub urls_found: IntCounterVec,
    pub source_failures: IntCounterVec,
}

#[derive(Clone)]
pub struct MonitorMetrics {
    /// By network.
    pub relays_checked: IntCounterVec,
    /// By network: relays that answered (RTT open succeeded, or NIP-11 was served).
    pub relays_reachable: IntCounterVec,
    /// By check name (8 checks).
    pub check_failures: IntCounterVec,
    /// By kind (30166, 10166, 0, 10002).
    pub events_published: IntCounterVec,
    pub publish_failures: IntCounter,
    /// By network and phase (open, read, write): the NIP-66 round trips measured.
    pub rtt: HistogramVec,
}

#[derive(Clone)]
pub struct SyncMetrics {
    pub events_stored: IntCounter,
    pub events_received: IntCounter,
    /// By reason (malformed, bad_signature, off_filter, oversized, unstorable).
    pub events_rejected: IntCounterVec,
    pub bytes_received: IntCounter,
    /// REQ and NEG-OPEN requests.
    pub requests: IntCounter,
    /// (relay, filter) windows completed, by method (`req`, `negentropy`, `live`).
    pub windows: IntCounterVec,
    /// Relays not caught up at the end of the last cycle (failed or out of time).
    pub relays_behind: IntGauge,
    /// Seconds between now and each relay's cursor after its sync (one observation per relay
    /// per cycle).
    pub relay_lag_seconds: Histogram,
    /// Seconds holding more events than a relay returns per REQ.
    pub overflow_seconds: IntCounter,
    /// Relay URLs found in archived events and added as candidates.
    pub hints: IntCounter,
}

#[derive(Clone)]
pub struct MaintainMetrics {
    /// By step (`refresh`, `retention`, `cleanup`).
    pub step_seconds: HistogramVec,
    /// Rows deleted, by step and table.
    pub rows_deleted: IntCounterVec,
}

/// The archive's read side (`brotr-probe api`).
#[derive(Clone)]
pub struct ApiMetrics {
    /// HTTP requests by route (the route's template, never the URL) and status.
    pub requests: IntCounterVec,
    /// Relay messages from clients by type (REQ, COUNT, NEG-OPEN, …; `invalid` otherwise).
    pub messages: IntCounterVec,
    /// Reads of the archive by operation (`events`, `count`, `negentropy`, `relays`, …).
    pub query_seconds: HistogramVec,
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// Open subscriptions over all connections.
    pub subscriptions: IntGauge,
    /// Refusals by reason (`rate_limited`, `too_many_connections`, `too_many_subscriptions`,
    /// `invalid_filter`, `too_big`, `slow_reader`, `malformed`, `timeout`, `read_only`, `lite`).
    pub refusals: IntCounterVec,
    /// Events sent to subscriptions after their EOSE (the live tail).
    pub live_events: IntCounter,
}

#[derive(Clone)]
pub struct DatabaseMetrics {
    /// `state="in_use|idle"`, sampled at scrape time.
    pub pool_connections: IntGaugeVec,
    /// By operation (a fixed set of names).
    pub query_seconds: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers collectors; names and labels are static, so failure is a programming error caught
/// by the unit test that builds a `Metrics`.
struct Builder(Registry);

impl Builder {
    fn reg<C: Collector + Clone + 'static>(&self, c: C) -> C {
        self.0
            .register(Box::new(c.clone()))
            .expect("unique metric names");
        c
    }
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.reg(IntCounter::new(name, help).expect("static metric"))
    }
    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.reg(IntCounterVec::new(Opts::new(name, help), labels).expect("static metric"))
    }
    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.reg(IntGauge::new(name, help).expect("static metric"))
    }
    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.reg(IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric"))
    }
    fn histogram(&self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.reg(HistogramVec::new(opts, labels).expect("static metric"))
    }
}

/// Loopback to a slow Tor circuit.
const RTT_SECONDS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const SECONDS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
const QUERY_SECONDS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
/// A minute to a month: how far behind a relay's archive is.
const LAG_SECONDS: [f64; 8] = [
    60.0,
    300.0,
    900.0,
    3600.0,
    21_600.0,
    86_400.0,
    604_800.0,
    2_592_000.0,
];

impl ServiceMetrics {
    fn new(b: &Builder) -> Self {
        ServiceMetrics {
            cycles: b.counter_vec(
                "brotr_service_cycles_total",
                "Service cycles by outcome",
                &["service", "outcome"],
            ),
            cycle_seconds: b.histogram(
                "brotr_service_cycle_duration_seconds",
                "Duration of service cycles",
                &["service"],
                &SECONDS,
            ),
            consecutive_failures: b.gauge_vec(
                "brotr_service_consecutive_failures",
                "Failed cycles in a row",
                &["service"],
            ),
            last_success: b.gauge_vec(
                "brotr_service_last_success_timestamp_seconds",
                "Unix time of the last successful cycle",
                &["service"],
            ),
        }
    }
}

impl ValidatorMetrics {
    fn new(b: &Builder) -> Self {
        ValidatorMetrics {
            checked: b.counter(
                "brotr_validator_candidates_checked_total",
                "Candidates tried",
            ),
            promoted: b.counter(
                "brotr_validator_candidates_promoted_total",
                "Candidates that answered like relays and became relays",
            ),
            rejected: b.counter(
                "brotr_validator_candidates_rejected_total",
                "Candidates that did not answer like relays this time",
            ),
            pruned: b.counter(
                "brotr_validator_candidates_pruned_total",
                "Candidates dropped (already relays, or out of attempts)",
            ),
            rechecked: b.counter(
                "brotr_validator_relays_rechecked_total",
                "Promoted relays re-checked",
            ),
            dormant: b.gauge(
                "brotr_validator_relays_dormant",
                "Re-checked relays found dormant in the last cycle",
            ),
        }
    }
}

impl FinderMetrics {
    fn new(b: &Builder) -> Self {
        FinderMetrics {
            urls_found: b.counter_vec(
                "brotr_finder_urls_found_total",
                "New candidate URLs found, by source",
                &["source"],
            ),
            source_failures: b.counter_vec(
                "brotr_finder_source_failures_total",
                "Failed fetches, by source",
                &["source"],
            ),
        }
    }
}

impl MonitorMetrics {
    fn new(b: &Builder) -> Self {
        MonitorMetrics {
            relays_checked: b.counter_vec(
                "brotr_monitor_relays_checked_total",
                "Relays checked, by network",
                &["network"],
            ),
            relays_reachable: b.counter_vec(
                "brotr_monitor_relays_reachable_total",
                "Checked relays that answered, by network",
                &["network"],
            ),
            check_failures: b.counter_vec(
                "brotr_monitor_check_failures_total",
                "Failed checks, by check",
                &["check"],
            ),
            events_published: b.counter_vec(
                "brotr_monitor_events_published_total",
                "Events accepted by at least one publishing relay, by kind",
                &["kind"],
            ),
            publish_failures: b.counter(
                "brotr_monitor_publish_failures_total",
                "Events no publishing relay accepted",
            ),
            rtt: b.histogram(
                "brotr_monitor_rtt_seconds",
                "NIP-66 round trips measured, by network and phase (open, read, write)",
                &["network", "phase"],
                &RTT_SECONDS,
            ),
        }
    }
}

impl SyncMetrics {
    fn new(b: &Builder) -> Self {
        SyncMetrics {
            events_stored: b.counter(
                "brotr_synchronizer_events_stored_total",
                "Events stored that were not in the archive",
            ),
            events_received: b.counter(
                "brotr_synchronizer_events_received_total",
                "EVENT frames received",
            ),
            events_rejected: b.counter_vec(
                "brotr_synchronizer_events_rejected_total",
                "Events dropped before storing, by reason",
                &["reason"],
            ),
            bytes_received: b.counter(
                "brotr_synchronizer_bytes_received_total",
                "Bytes received from relays",
            ),
            requests: b.counter(
                "brotr_synchronizer_requests_total",
                "Requests sent to relays (REQ, NEG-OPEN)",
            ),
            windows: b.counter_vec(
                "brotr_synchronizer_windows_total",
                "(relay, filter) windows completed, by method",
                &["method"],
            ),
            relays_behind: b.gauge(
                "brotr_synchronizer_relays_behind",
                "Relays not caught up at the end of the last cycle",
            ),
            relay_lag_seconds: b.reg(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "brotr_synchronizer_relay_lag_seconds",
                        "How far each relay's archive is behind now, after its sync",
                    )
                    .buckets(LAG_SECONDS.to_vec()),
                )
                .expect("static metric"),
            ),
            overflow_seconds: b.counter(
                "brotr_synchronizer_overflow_seconds_total",
                "Seconds holding more events than a relay returns per REQ",
            ),
            hints: b.counter(
                "brotr_synchronizer_hints_total",
                "Relay URLs found in archived events and added as candidates",
            ),
        }
    }
}

impl MaintainMetrics {
    fn new(b: &Builder) -> Self {
        MaintainMetrics {
            step_seconds: b.histogram(
                "brotr_maintain_step_duration_seconds",
                "Duration of maintenance steps",
                &["step"],
                &SECONDS,
            ),
            rows_deleted: b.counter_vec(
                "brotr_maintain_rows_deleted_total",
                "Rows deleted by maintenance, by step and table",
                &["step", "table"],
            ),
        }
    }
}

impl DatabaseMetrics {
    fn new(b: &Builder) -> Self {
        DatabaseMetrics {
            pool_connections: b.gauge_vec(
                "brotr_database_pool_connections",
                "Database pool connections by state (in_use, idle; max: the most the pool opens)",
                &["state"],
            ),
            query_seconds: b.histogram(
                "brotr_database_query_duration_seconds",
                "Duration of store operations, by operation",
                &["op"],
                &QUERY_SECONDS,
            ),
        }
    }
}

impl ApiMetrics {
    fn new(b: &Builder) -> Self {
        ApiMetrics {
            requests: b.counter_vec(
                "brotr_api_requests_total",
                "HTTP requests, by route and status",
                &["route", "status"],
            ),
            messages: b.counter_vec(
                "brotr_api_messages_total",
                "Relay messages from clients, by type",
                &["type"],
            ),
            query_seconds: b.histogram(
                "brotr_api_query_duration_seconds",
                "Duration of archive reads, by operation",
                &["op"],
                &QUERY_SECONDS,
            ),
            connections: b.gauge("brotr_api_connections", "Open WebSocket connections"),
            subscriptions: b.gauge("brotr_api_subscriptions", "Open subscriptions"),
            refusals: b.counter_vec(
                "brotr_api_refusals_total",
                "Requests, messages and connections refused, by reason",
                &["reason"],
            ),
            live_events: b.counter(
                "brotr_api_live_events_total",
                "Events sent to open subscriptions after their EOSE",
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let b = Builder(Registry::new());
        Metrics {
            service: ServiceMetrics::new(&b),
            validator: ValidatorMetrics::new(&b),
            finder: FinderMetrics::new(&b),
            monitor: MonitorMetrics::new(&b),
            synchronizer: SyncMetrics::new(&b),
            maintain: MaintainMetrics::new(&b),
            database: DatabaseMetrics::new(&b),
            api: ApiMetrics::new(&b),
            registry: b.0,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_says_its_service_and_unit() {
        let m = Metrics::new();
        // Families appear once they have a sample; touch one of each.
        m.validator.checked.inc();
        let text = m.render();
        assert!(text.contains("brotr_validator_candidates_checked_total 1"));
        let units = [
            "_total",
            "_seconds",
            "_connections",
            "_subscriptions",
            "_failures",
            "_behind",
            "_dormant",
        ];
        for name in m.registry.gather().iter().map(|f| f.name().to_owned()) {
            assert!(name.starts_with("brotr_"), "{name}");
            assert!(
                units.iter().any(|u| name.ends_with(u)),
                "{name} has no unit suffix"
            );
        }
    }
}
