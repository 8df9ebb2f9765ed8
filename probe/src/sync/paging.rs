//! Which REQ to send next so that every event of `[since, end]` is fetched, however the relay
//! truncates its answers. Pure: the I/O shell feeds it page summaries and persists its [`Progress`].
//!
//! # Algorithm ("descending fill")
//! NIP-01 says a relay answering a filter with `limit: L` returns the *newest* L matching events.
//! So one REQ over `[since, top]` that comes back with fewer than L events is the whole window;
//! one that comes back full holds every event newer than its oldest second `m`, and only second
//! `m` itself may be partial. The next REQ is `[since, m]`. Each REQ therefore brings about L new
//! events, re-reading just the events of one boundary second — against the reference system's
//! verification fetches on every window. Everything above `top` is
//! committed and `top` is persisted after each commit, so a crash resumes mid-window.
//!
//! Relays that cap results below L without saying so: a short, non-empty answer is believed only
//! once the relay has shown it serves L events per REQ, or when it reaches down to `since`;
//! otherwise one `limit: 1` probe below the page tells a complete window from a capped one (and
//! teaches the planner the relay's real cap).
//!
//! Relays that do not return the newest events first (answer not in descending order when
//! truncated): the planner switches to splitting: windows below `top` halve until an answer is
//! short, then grow again.
//!
//! A second holding L or more events cannot be split by time: it is reported as an
//! [`Overflow`] (the caller logs it, counts it and may reconcile it with negentropy) and paging
//! goes on below it — never a silent loss.

use serde::{Deserialize, Serialize};

/// Where one (relay, filter) stands. Persisted as JSON in `service_state` after each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Every event with `created_at <= done_until` has been archived (`None`: never synced).
    #[serde(default)]
    pub done_until: Option<i64>,
    /// A window in progress.
    #[serde(default)]
    pub pending: Option<Window>,
}

/// A window being filled from the top: events in `(top, end]` are archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub since: i64,
    pub end: i64,
    pub top: i64,
}

impl Progress {
    /// The window to work on now: the pending one, or a new one from the cursor (minus
    /// `lookback`, so late and backdated events are caught) or from `start` to `end`.
    pub fn next_window(&self, start: i64, lookback: i64, end: i64) -> Option<Window> {
        if let Some(w) = self.pending {
            return Some(w);
        }
        let since = match self.done_until {
            Some(d) => (d.saturating_add(1).saturating_sub(lookback)).max(start),
            None => start,
        };
        (since <= end).then_some(Window {
            since,
            end,
            top: end,
        })
    }
}

/// The next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `REQ` with `since`, `until` and `limit`.
    Fetch {
        since: i64,
        until: i64,
        limit: usize,
    },
    /// `REQ` with `limit: 1` below a short page: is anything older?
    Probe { since: i64, until: i64 },
    /// The window is complete.
    Done,
}

/// What a `Fetch` brought back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageSummary {
    /// Event frames the relay sent for the subscription (valid or not, duplicates included).
    pub received: usize,
    /// Oldest and newest `created_at` of the valid events kept (`None`: no valid event).
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
    /// Whether events arrived newest first.
    pub descending: bool,
}

/// A second holding at least `limit` events: REQ paging cannot fetch all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    pub second: i64,
    pub limit: usize,
}

/// Why a page cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error("the relay filled a page with {received} events of which none was valid")]
    NoValidEvents { received: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Descend,
    Split { width: i64 },
}

/// The planner of one window.
#[derive(Debug, Clone)]
pub struct Planner {
    window: Window,
    limit: usize,
    /// The relay has served a full page of `limit`: a short page is the whole window.
    cap_confirmed: bool,
    mode: Mode,
    /// Oldest second of a short page waiting for its probe.
    probing: Option<i64>,
}

impl Planner {
    pub fn new(window: Window, limit: usize) -> Self {
        Planner {
            window,
            limit: limit.max(1),
            cap_confirmed: false,
            mode: Mode::Descend,
            probing: None,
        }
    }

    /// Keeps what an earlier window learnt about the relay (its real cap, its ordering).
    pub fn continue_with(window: Window, previous: &Planner) -> Self {
        Planner {
            window,
            limit: previous.limit,
            cap_confirmed: previous.cap_confirmed,
            mode: match previous.mode {
                Mode::Descend => Mode::Descend,
                Mode::Split { .. } => Mode::Split {
                    width: (window.end - window.since + 1).max(1),
                },
            },
            probing: None,
        }
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// The effective limit (lowered when the relay turned out to cap earlier).
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn is_done(&self) -> bool {
        self.window.top < self.window.since
    }

    pub fn next(&self) -> Step {
        if self.is_done() {
            return Step::Done;
        }
        let Window { since, top, .. } = self.window;
        if let Some(m) = self.probing {
            return Step::Probe {
                since,
                until: m - 1,
            };
        }
        let lower = match self.mode {
            Mode::Descend => since,
            Mode::Split { width } => top.saturating_sub(width - 1).max(since),
        };
        Step::Fetch {
            since: lower,
            until: top,
            limit: self.limit,
        }
    }

    /// Feeds the answer to the last `Fetch`. Events newer than the new `window().top` are
    /// complete once the page's events are committed.
    pub fn on_page(&mut self, page: &PageSummary) -> Result<Option<Overflow>, PagingError> {
        let Window { since, top, .. } = self.window;
        let lower = match self.mode {
            Mode::Descend => since,
            Mode::Split { width } => top.saturating_sub(width - 1).max(since),
        };
        let full = page.received >= self.limit;
        let (Some(oldest), Some(newest)) = (page.oldest, page.newest) else {
            if full {
                return Err(PagingError::NoValidEvents {
                    received: page.received,
                });
            }
            // Nothing valid in [lower, top]: done down to lower.
            self.finish_down_to(lower);
            return Ok(None);
        };
        if !full {
            let believed = self.cap_confirmed || oldest <= lower;
            if believed || matches!(self.mode, Mode::Split { .. }) {
                self.finish_down_to(lower);
            } else {
                self.probing = Some(oldest);
            }
            return Ok(None);
        }
        self.cap_confirmed = true;
        if let Mode::Split { width } = self.mode {
            if width <= 1 {
                self.window.top = top - 1;
                return Ok(Some(Overflow {
                    second: top,
                    limit: self.limit,
                }));
            }
            self.mode = Mode::Split { width: width / 2 };
            return Ok(None);
        }
        if !page.descending {
            // Cannot trust "newest L first": split the window instead.
            self.mode = Mode::Split {
                width: ((top - since + 1) / 2).max(1),
            };
            return Ok(None);
        }
        if oldest == newest {
            // L or more events in one second.
            self.window.top = oldest - 1;
            return Ok(Some(Overflow {
                second: oldest,
                limit: self.limit,
            }));
        }
        self.window.top = oldest;
        Ok(None)
    }

    /// Feeds the answer to the last `Probe`: whether any valid event came back and how many
    /// events the page above it held.
    pub fn on_probe(&mut self, found: bool, page_received: usize) {
        let Some(m) = self.probing.take() else {
            return;
        };
        if found {
            // The relay capped the page: its cap is what it sent.
            self.limit = page_received.clamp(1, self.limit);
            self.cap_confirmed = true;
            self.window.top = m;
        } else {
            self.finish_down_to(self.window.since);
        }
    }

    fn finish_down_to(&mut self, lower: i64) {
        self.window.top = lower - 1;
        if let Mode::Split { width } = self.mode {
            self.mode = Mode::Split {
                width: width.saturating_mul(2),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_of_garbage_is_an_error() {
        let mut p = Planner::new(
            Window {
                since: 0,
                end: 10,
                top: 10,
            },
            5,
        );
        let e = p
            .on_page(&PageSummary {
                received: 5,
                oldest: None,
                newest: None,
                descending: true,
            })
            .unwrap_err();
        assert_eq!(e, PagingError::NoValidEvents { received: 5 });
    }

    #[test]
    fn progress_resumes_pending_or_looks_back() {
        let fresh = Progress::default();
        assert_eq!(
            fresh.next_window(100, 50, 1000),
            Some(Window {
                since: 100,
                end: 1000,
                top: 1000
            })
        );
        let done = Progress {
            done_until: Some(900),
            pending: None,
        };
        assert_eq!(done.next_window(100, 50, 1000).unwrap().since, 851);
        assert_eq!(done.next_window(880, 50, 1000).unwrap().since, 880);
        let pending = Progress {
            done_until: Some(900),
            pending: Some(Window {
                since: 851,
                end: 1000,
                top: 950,
            }),
        };
        assert_eq!(pending.next_window(0, 50, 2000).unwrap().top, 950);
        assert_eq!(fresh.next_window(2000, 0, 1000), None);
        let json = serde_json::to_string(&pending).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&json).unwrap(), pending);
    }
}
