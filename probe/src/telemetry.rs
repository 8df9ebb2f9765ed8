//! The metrics port: `/metrics` (Prometheus), `/healthz` (the process is alive and serving) and
//! `/readyz` (the database answers and no service's last cycle failed).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::runtime::Health;
use crate::store::Store;

/// What the endpoints read.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: Metrics,
    pub health: Health,
    pub store: Arc<dyn Store>,
}

/// How long `/readyz` waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

impl Telemetry {
    fn metrics_text(&self) -> String {
        let (in_use, idle, max) = self.store.pool_usage();
        let pool = &self.metrics.database.pool_connections;
        pool.with_label_values(&["in_use"]).set(i64::from(in_use));
        pool.with_label_values(&["idle"]).set(i64::from(idle));
        pool.with_label_values(&["max"]).set(i64::from(max));
        self.metrics.render()
    }

    /// `/readyz`: the status and a one-line reason.
    pub async fn readiness(&self) -> (StatusCode, String) {
        match tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("database unreachable: {e}\n"),
                );
            }
            Err(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("database did not answer within {PING_TIMEOUT:?}\n"),
                );
            }
        }
        let failing = self.health.failing();
        if failing.is_empty() {
            (StatusCode::OK, "ready\n".to_owned())
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("last cycle failed: {}\n", failing.join(", ")),
            )
        }
    }

    /// Serves the endpoints on `listener` until the future is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let (m, r) = (self.clone(), self);
        let app = axum::Router::new()
            .route(
                "/metrics",
                get(move || {
                    let t = m.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            t.metrics_text(),
                        )
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(move || {
                    let t = r.clone();
                    async move { t.readiness().await.into_response() }
                }),
            );
        axum::serve(listener, app).await
    }
}
