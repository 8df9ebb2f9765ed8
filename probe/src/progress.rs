//! A live progress line for a person at a terminal: `validator  12/40 relays · 3 failed`,
//! `synchronizer  5/9 relays · 48,210 events (9,800/s) · 1 failed`. Hidden (every call a no-op)
//! when stderr is not a terminal or logs are JSON, so pods and CI get plain structured logs.
//!
//! Log lines and the bar share stderr; [`Progress::writer`] prints log lines above the bar.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress lines go. Cheap to clone.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Progress lines on stderr.
    pub fn terminal() -> Self {
        Progress {
            multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// No progress lines.
    pub fn hidden() -> Self {
        Progress { multi: None }
    }

    pub fn is_visible(&self) -> bool {
        self.multi.is_some()
    }

    /// Starts a line for `service` working on `total` items (relays, candidates, sources).
    pub fn start(&self, service: &'static str, total: u64, unit: &'static str) -> Tracker {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total));
            let style = ProgressStyle::with_template("{prefix:>12} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(service);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let t = Tracker {
            inner: Arc::new(TrackerInner {
                bar,
                unit,
                failed: AtomicU64::new(0),
                events: AtomicU64::new(0),
                started: Instant::now(),
            }),
        };
        t.redraw();
        t
    }

    /// A log writer that prints above the progress lines (plain stderr when hidden).
    pub fn writer(&self) -> ProgressWriter {
        ProgressWriter {
            multi: self.multi.clone(),
        }
    }
}

/// One service's line. Cheap to clone; updates from many tasks at once are fine.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<TrackerInner>,
}

struct TrackerInner {
    bar: Option<ProgressBar>,
    unit: &'static str,
    failed: AtomicU64,
    events: AtomicU64,
    started: Instant,
}

impl Tracker {
    /// One item finished.
    pub fn done(&self, ok: bool) {
        if !ok {
            self.inner.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(b) = &self.inner.bar {
            b.inc(1);
        }
        self.redraw();
    }

    /// `n` more items to do (when the total grows as work is found).
    pub fn add_total(&self, n: u64) {
        if let Some(b) = &self.inner.bar {
            b.inc_length(n);
        }
    }

    /// `n` more events archived.
    pub fn events(&self, n: u64) {
        self.inner.events.fetch_add(n, Ordering::Relaxed);
        self.redraw();
    }

    fn redraw(&self) {
        let Some(b) = &self.inner.bar else { return };
        let i = &self.inner;
        let mut msg = i.unit.to_owned();
        let events = i.events.load(Ordering::Relaxed);
        if events > 0 {
            let rate = events as f64 / i.started.elapsed().as_secs_f64().max(0.001);
            msg.push_str(&format!(" · {events} events ({rate:.0}/s)"));
        }
        let failed = i.failed.load(Ordering::Relaxed);
        if failed > 0 {
            msg.push_str(&format!(" · {failed} failed"));
        }
        b.set_message(msg);
    }

    /// Removes the line.
    pub fn finish(self) {
        if let Some(b) = &self.inner.bar {
            b.finish_and_clear();
        }
    }
}

/// `tracing` writer that suspends the progress lines while a log line is printed.
#[derive(Clone)]
pub struct ProgressWriter {
    multi: Option<MultiProgress>,
}

impl Write for ProgressWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.multi {
            Some(m) => m.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ProgressWriter {
    type Writer = ProgressWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_progress_counts_nothing_and_never_draws() {
        let p = Progress::hidden();
        assert!(!p.is_visible());
        let t = p.start("validator", 3, "relays");
        t.done(true);
        t.done(false);
        t.events(10);
        assert_eq!(t.inner.failed.load(Ordering::Relaxed), 1);
        assert_eq!(t.inner.events.load(Ordering::Relaxed), 10);
        t.finish();
    }

    #[test]
    fn a_visible_line_shows_done_total_events_and_failures() {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        let p = Progress { multi: Some(multi) };
        let t = p.start("synchronizer", 4, "relays");
        t.done(true);
        t.done(false);
        t.events(1000);
        let bar = t.inner.bar.as_ref().unwrap();
        assert_eq!((bar.position(), bar.length()), (2, Some(4)));
        let msg = bar.message();
        assert!(msg.starts_with("relays · 1000 events ("), "{msg}");
        assert!(msg.ends_with(" · 1 failed"), "{msg}");
    }
}
