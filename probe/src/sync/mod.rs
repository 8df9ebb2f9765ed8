//! Archiving relays: the pure paging planner ([`paging`]) and the relay session that executes
//! its requests ([`session`]). The service cycle over a store is `services::synchronizer`.

pub mod negentropy;
pub mod paging;
pub mod session;

pub use paging::{Overflow, PageSummary, Planner, Progress, Step, Window};
pub use session::{Page, Rejected, Session, SessionError, SessionLimits, WireStats};
