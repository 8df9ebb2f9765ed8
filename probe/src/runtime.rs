//! The one service loop: fixed-rate cycles (the interval runs from the start of the previous
//! cycle), clean shutdown on SIGTERM/SIGINT, and a consecutive-failure policy that makes the
//! process exit non-zero instead of looping on a broken dependency.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::metrics::Metrics;

/// Scheduling of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoopConfig {
    /// Seconds from the start of one cycle to the start of the next.
    pub interval_secs: u64,
    /// Stop (exit code 1) after this many failed cycles in a row; 0 = never.
    pub max_consecutive_failures: u32,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            interval_secs: 300,
            max_consecutive_failures: 5,
        }
    }
}

/// A service stopped by its failure policy.
#[derive(Debug, thiserror::Error)]
#[error("service {service} failed {failures} cycles in a row; last error: {last}")]
pub struct TooManyFailures {
    pub service: &'static str,
    pub failures: u32,
    pub last: String,
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
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `cycle` once (`once = true`) or every `cfg.interval_secs` until shutdown.
pub async fn run_loop<F, Fut, E>(
    service: &'static str,
    cfg: &LoopConfig,
    once: bool,
    metrics: &Metrics,
    mut shutdown: Shutdown,
    mut cycle: F,
) -> Result<(), TooManyFailures>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let interval = Duration::from_secs(cfg.interval_secs);
    let mut failures = 0u32;
    loop {
        let start = Instant::now();
        let outcome = tokio::select! {
            r = cycle() => r,
            _ = shutdown.requested() => {
                info!(service, "shutdown during a cycle; its committed work is kept");
                return Ok(());
            }
        };
        metrics
            .cycle_seconds
            .with_label_values(&[service])
            .observe(start.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                failures = 0;
                metrics.cycles.with_label_values(&[service, "ok"]).inc();
                metrics
                    .last_success
                    .with_label_values(&[service])
                    .set(unix_now());
            }
            Err(e) => {
                failures += 1;
                metrics.cycles.with_label_values(&[service, "error"]).inc();
                error!(service, failures, error = %e, "cycle failed");
                if once
                    || (cfg.max_consecutive_failures > 0
                        && failures >= cfg.max_consecutive_failures)
                {
                    metrics
                        .consecutive_failures
                        .with_label_values(&[service])
                        .set(i64::from(failures));
                    return Err(TooManyFailures {
                        service,
                        failures,
                        last: e.to_string(),
                    });
                }
            }
        }
        metrics
            .consecutive_failures
            .with_label_values(&[service])
            .set(i64::from(failures));
        if once {
            return Ok(());
        }
        let next = start + interval;
        if Instant::now() > next {
            warn!(service, took = ?start.elapsed(), "cycle took longer than the interval");
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.requested() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn once_runs_exactly_one_cycle() {
        let n = Arc::new(AtomicU32::new(0));
        let (_tx, sd) = Shutdown::manual();
        let m = Metrics::new();
        let c = n.clone();
        run_loop("t", &LoopConfig::default(), true, &m, sd, || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(
            m.render()
                .contains(r#"brotr_service_cycles_total{outcome="ok",service="t"} 1"#)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stops_after_max_consecutive_failures() {
        let (_tx, sd) = Shutdown::manual();
        let m = Metrics::new();
        let cfg = LoopConfig {
            interval_secs: 60,
            max_consecutive_failures: 3,
        };
        let err = run_loop("t", &cfg, false, &m, sd, || async {
            Err::<(), _>("db down")
        })
        .await
        .unwrap_err();
        assert_eq!(err.failures, 3);
        assert!(err.to_string().contains("db down"));
        assert!(
            m.render()
                .contains(r#"brotr_service_consecutive_failures{service="t"} 3"#)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_count_and_shutdown_stops_the_loop() {
        let (tx, sd) = Shutdown::manual();
        let m = Metrics::new();
        let cfg = LoopConfig {
            interval_secs: 60,
            max_consecutive_failures: 2,
        };
        let n = Arc::new(AtomicU32::new(0));
        let c = n.clone();
        let handle = tokio::spawn(async move {
            run_loop("t", &cfg, false, &m, sd, move || {
                let i = c.fetch_add(1, Ordering::SeqCst);
                // fail, ok, fail, ok, ...: never two failures in a row.
                async move {
                    if i.is_multiple_of(2) {
                        Err("flaky".to_owned())
                    } else {
                        Ok(())
                    }
                }
            })
            .await
        });
        tokio::time::sleep(Duration::from_secs(60 * 10 + 1)).await;
        tx.send(true).unwrap();
        assert!(handle.await.unwrap().is_ok());
        assert!(
            n.load(Ordering::SeqCst) >= 10,
            "cycles keep coming at the interval"
        );
    }
}
