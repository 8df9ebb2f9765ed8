//! The one service loop: fixed-rate cycles (the interval runs from the start of the previous
//! cycle), an early cycle when relays are promoted, clean shutdown on SIGTERM/SIGINT, and a
//! consecutive-failure policy that makes the process exit non-zero instead of looping on a
//! broken dependency.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::services::{Ctx, CycleReport, Service};

/// After a wake-up, wait this long for more promotions before starting the cycle.
const WAKE_DEBOUNCE: Duration = Duration::from_secs(1);

/// Why a service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service {service} failed {failures} cycles in a row; last error: {last}")]
    TooManyFailures {
        service: &'static str,
        failures: u32,
        last: String,
    },
    #[error("service {service}: all {attempted} attempts of the cycle failed")]
    AllFailed {
        service: &'static str,
        attempted: u64,
    },
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A shutdown signal shared by every loop of the process.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal that fires on SIGTERM or SIGINT.
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutdown requested");
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    /// A signal fired by the returned sender (tests, embedding).
    pub fn manual() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when shutdown is requested.
    pub async fn requested(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                // Sender gone: nobody can request shutdown any more; wait forever.
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Whether each service's last cycle failed (for `/readyz`). Cheap to clone.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<&'static str, bool>>>);

impl Health {
    fn set(&self, service: &'static str, failed: bool) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(service, failed);
        }
    }

    /// The services whose last cycle failed.
    pub fn failing(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .map(|m| m.iter().filter(|(_, f)| **f).map(|(s, _)| *s).collect())
            .unwrap_or_default()
    }
}

/// Runs `svc` once (`once = true`) or every interval until shutdown.
pub async fn run_service<S: Service>(
    svc: &S,
    ctx: &Ctx,
    once: bool,
    mut shutdown: Shutdown,
    health: &Health,
) -> Result<(), ServiceError> {
    let name = svc.name();
    let schedule = svc.schedule();
    let interval = Duration::from_secs(schedule.interval_secs);
    let mut wake = svc.wakes_on_promotion().then(|| ctx.wake.subscribe());
    let mut failures = 0u32;
    loop {
        if let Some(w) = wake.as_mut() {
            // Promotions before this cycle starts are covered by it.
            w.borrow_and_update();
        }
        let start = Instant::now();
        let outcome = tokio::select! {
            r = svc.run_cycle(ctx) => r,
            _ = shutdown.requested() => {
                info!(service = name, "shutdown during a cycle; its committed work is kept");
                return Ok(());
            }
        };
        let m = &ctx.metrics.service;
        m.cycle_seconds
            .with_label_values(&[name])
            .observe(start.elapsed().as_secs_f64());
        match outcome {
            Ok(report) => {
                failures = 0;
                report.record(&ctx.metrics);
                m.cycles.with_label_values(&[name, "ok"]).inc();
                m.last_success.with_label_values(&[name]).set(unix_now());
                let all_failed = report.attempted() > 0 && report.failed() == report.attempted();
                health.set(name, all_failed);
                if once && all_failed {
                    return Err(ServiceError::AllFailed {
                        service: name,
                        attempted: report.attempted(),
                    });
                }
            }
            Err(e) => {
                failures += 1;
                health.set(name, true);
                m.cycles.with_label_values(&[name, "error"]).inc();
                error!(service = name, failures, error = %e, "cycle failed");
                let max = schedule.max_consecutive_failures;
                if once || (max > 0 && failures >= max) {
                    m.consecutive_failures
                        .with_label_values(&[name])
                        .set(i64::from(failures));
                    return Err(ServiceError::TooManyFailures {
                        service: name,
                        failures,
                        last: e.to_string(),
                    });
                }
            }
        }
        m.consecutive_failures
            .with_label_values(&[name])
            .set(i64::from(failures));
        if once {
            return Ok(());
        }
        let next = start + interval;
        if Instant::now() > next {
            warn!(service = name, took = ?start.elapsed(), "cycle took longer than the interval");
        }
        let woken = async {
            match wake.as_mut() {
                Some(w) => {
                    if w.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = woken => {
                info!(service = name, "relays were promoted; starting a cycle early");
                tokio::time::sleep(WAKE_DEBOUNCE).await;
            }
            _ = shutdown.requested() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Schedule;
    use crate::metrics::Metrics;
    use crate::store::StoreError;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Report {
        attempted: u64,
        failed: u64,
    }

    impl CycleReport for Report {
        fn attempted(&self) -> u64 {
            self.attempted
        }
        fn failed(&self) -> u64 {
            self.failed
        }
        fn record(&self, _: &Metrics) {}
    }

    /// A service whose cycles follow a script: `Ok((attempted, failed))` or a store error.
    struct Scripted {
        cycles: AtomicU32,
        script: fn(u32) -> Result<(u64, u64), ()>,
        schedule: Schedule,
        wakes: bool,
    }

    #[async_trait]
    impl Service for Scripted {
        type Report = Report;
        fn name(&self) -> &'static str {
            "t"
        }
        fn schedule(&self) -> Schedule {
            self.schedule
        }
        fn wakes_on_promotion(&self) -> bool {
            self.wakes
        }
        async fn run_cycle(&self, _: &Ctx) -> Result<Report, StoreError> {
            let i = self.cycles.fetch_add(1, Ordering::SeqCst);
            (self.script)(i)
                .map(|(attempted, failed)| Report { attempted, failed })
                .map_err(|_| StoreError::Corrupt {
                    what: "t".into(),
                    reason: "db down".into(),
                })
        }
    }

    fn scripted(script: fn(u32) -> Result<(u64, u64), ()>, max_failures: u32) -> Scripted {
        Scripted {
            cycles: AtomicU32::new(0),
            script,
            schedule: Schedule {
                interval_secs: 60,
                max_consecutive_failures: max_failures,
            },
            wakes: false,
        }
    }

    async fn ctx() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::DatabaseUrl::Sqlite(dir.path().join("t.db"));
        let store = crate::store::migrate(&url, None).await.unwrap();
        std::mem::forget(dir);
        Ctx::new(store)
    }

    #[tokio::test]
    async fn once_runs_exactly_one_cycle() {
        let svc = scripted(|_| Ok((1, 0)), 5);
        let (_tx, sd) = Shutdown::manual();
        let ctx = ctx().await;
        run_service(&svc, &ctx, true, sd, &Health::default())
            .await
            .unwrap();
        assert_eq!(svc.cycles.load(Ordering::SeqCst), 1);
        assert!(
            ctx.metrics
                .render()
                .contains(r#"brotr_service_cycles_total{outcome="ok",service="t"} 1"#)
        );
    }

    #[tokio::test]
    async fn store_operations_are_timed_into_the_metrics() {
        let ctx = ctx().await;
        ctx.store.counts().await.unwrap();
        let text = ctx.metrics.render();
        assert!(
            text.contains(r#"brotr_database_query_duration_seconds_count{op="counts"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn once_fails_when_every_attempt_failed_but_not_when_nothing_was_attempted() {
        let (_tx, sd) = Shutdown::manual();
        let ctx = ctx().await;
        let health = Health::default();
        let svc = scripted(|_| Ok((2, 2)), 5);
        let err = run_service(&svc, &ctx, true, sd.clone(), &health)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ServiceError::AllFailed { attempted: 2, .. }),
            "{err}"
        );
        assert_eq!(health.failing(), vec!["t"]);
        let svc = scripted(|_| Ok((0, 0)), 5);
        run_service(&svc, &ctx, true, sd.clone(), &health)
            .await
            .unwrap();
        assert!(health.failing().is_empty());
        let svc = scripted(|_| Ok((3, 2)), 5);
        run_service(&svc, &ctx, true, sd, &health).await.unwrap();
    }

    #[tokio::test]
    async fn stops_after_max_consecutive_failures() {
        let svc = scripted(|_| Err(()), 3);
        let (_tx, sd) = Shutdown::manual();
        let ctx = ctx().await;
        tokio::time::pause();
        let err = run_service(&svc, &ctx, false, sd, &Health::default())
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ServiceError::TooManyFailures { failures: 3, .. }
        ));
        assert!(err.to_string().contains("db down"));
        assert!(
            ctx.metrics
                .render()
                .contains(r#"brotr_service_consecutive_failures{service="t"} 3"#)
        );
    }

    #[tokio::test]
    async fn a_success_resets_the_failure_count_and_shutdown_stops_the_loop() {
        // fail, ok, fail, ok, ...: never two failures in a row.
        let svc = Arc::new(scripted(
            |i| if i % 2 == 0 { Err(()) } else { Ok((1, 0)) },
            2,
        ));
        let (tx, sd) = Shutdown::manual();
        let ctx = ctx().await;
        tokio::time::pause();
        let s = svc.clone();
        let handle = tokio::spawn(async move {
            run_service(s.as_ref(), &ctx, false, sd, &Health::default()).await
        });
        tokio::time::sleep(Duration::from_secs(60 * 10 + 1)).await;
        tx.send(true).unwrap();
        assert!(handle.await.unwrap().is_ok());
        assert!(
            svc.cycles.load(Ordering::SeqCst) >= 10,
            "cycles keep coming at the interval"
        );
    }

    #[tokio::test]
    async fn promoted_relays_start_a_cycle_before_the_interval() {
        let mut svc = scripted(|_| Ok((0, 0)), 5);
        svc.schedule.interval_secs = 3600;
        svc.wakes = true;
        let svc = Arc::new(svc);
        let (tx, sd) = Shutdown::manual();
        let ctx = ctx().await;
        tokio::time::pause();
        let wake = ctx.wake.clone();
        let s = svc.clone();
        let handle = tokio::spawn(async move {
            run_service(s.as_ref(), &ctx, false, sd, &Health::default()).await
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(svc.cycles.load(Ordering::SeqCst), 1);
        wake.relays_promoted();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            svc.cycles.load(Ordering::SeqCst),
            2,
            "woken long before the hour"
        );
        tx.send(true).unwrap();
        handle.await.unwrap().unwrap();
    }
}
