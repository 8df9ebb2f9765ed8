//! Prometheus metrics shared by every service, and the `/metrics` HTTP endpoint.
//!
//! Names follow `brotr_<thing>_<unit>` with a bounded `service` label (never a relay URL).

use std::net::SocketAddr;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metrics of one process (all its services).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Cycles by service and outcome (`ok`/`error`).
    pub cycles: IntCounterVec,
    /// Cycle duration by service.
    pub cycle_seconds: HistogramVec,
    /// Consecutive failed cycles by service (0 after a success).
    pub consecutive_failures: IntGaugeVec,
    /// Unix time of the last successful cycle by service.
    pub last_success: IntGaugeVec,
    /// Items a service handled, by service and outcome (e.g. validator `promoted`/`failed`).
    pub items: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        // Names and labels are static and valid, so construction cannot fail.
        let cycles = IntCounterVec::new(
            Opts::new("brotr_service_cycles_total", "Service cycles by outcome"),
            &["service", "outcome"],
        )
        .expect("static metric");
        let cycle_seconds = HistogramVec::new(
            HistogramOpts::new(
                "brotr_service_cycle_duration_seconds",
                "Duration of service cycles",
            )
            .buckets(vec![
                0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
            &["service"],
        )
        .expect("static metric");
        let consecutive_failures = IntGaugeVec::new(
            Opts::new(
                "brotr_service_consecutive_failures",
                "Failed cycles in a row",
            ),
            &["service"],
        )
        .expect("static metric");
        let last_success = IntGaugeVec::new(
            Opts::new(
                "brotr_service_last_success_timestamp_seconds",
                "Unix time of the last successful cycle",
            ),
            &["service"],
        )
        .expect("static metric");
        let items = IntCounterVec::new(
            Opts::new(
                "brotr_service_items_total",
                "Items handled by services, by outcome",
            ),
            &["service", "outcome"],
        )
        .expect("static metric");
        for c in [
            Box::new(cycles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cycle_seconds.clone()),
            Box::new(consecutive_failures.clone()),
            Box::new(last_success.clone()),
            Box::new(items.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            cycles,
            cycle_seconds,
            consecutive_failures,
            last_success,
            items,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Serves `GET /metrics` on `addr` until the future is dropped.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let m = self.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        m.render(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app).await
    }
}
