//! Archiving relays.
//!
//! * [`paging`] — the pure REQ paging planner and the persisted [`Progress`] of a cursor.
//! * [`reader`] — reading verified events over a relay session (pages, live subscriptions).
//! * [`negentropy`] — NIP-77 reconciliation over a relay session.
//! * [`driver`] — one window into batches, by paging or reconciliation; what the service, the
//!   tests and the benchmark run.
//!
//! The service cycle over a store is `services::synchronizer`.

pub mod driver;
pub mod negentropy;
pub mod paging;
pub mod reader;

pub use driver::{BatchSink, DriveOptions, DriveReport, PageEnd, PageSource, Target};
pub use paging::{Overflow, PageSummary, Planner, Progress, Step, Window};
pub use reader::{Page, ReadLimits, Rejected};
