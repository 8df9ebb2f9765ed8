//! Brotr probe: the pipeline that talks to Nostr relays and the database.
//!
//! * [`model`] — pure types (no I/O): relay URLs, events, metadata, candidates, cursors.
//! * [`seed`] — pure seed-list parsing.
//! * `store` — the [`store::Store`] trait with PostgreSQL and SQLite implementations.
//! * `services` — the services (seeder so far), each one cycle of work over a store.

pub mod config;
pub mod model;
#[cfg(feature = "runtime")]
pub mod monitor;
pub mod seed;

#[cfg(feature = "runtime")]
pub mod cli;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod net;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod services;
#[cfg(feature = "runtime")]
pub mod store;
#[cfg(feature = "runtime")]
pub mod sync;
