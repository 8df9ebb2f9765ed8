//! Brotr probe: the pipeline that talks to Nostr relays and the database.
//!
//! * [`model`] — pure types (no I/O): relay URLs, events, metadata, candidates, health.
//! * [`config`] — every setting, its default and its bounds, declared once (the operator embeds
//!   these types in its CRDs).
//! * [`nips`] — Nostr protocol code without I/O, one file per NIP.
//! * `net` — everything that opens a socket: dialing with the SSRF guard, HTTP, one relay
//!   session type.
//! * `store` — the [`store::Store`] trait with PostgreSQL and SQLite implementations.
//! * `monitor` — what the monitor measures about one relay; `sync` — reading and reconciling
//!   relays for the archive.
//! * `serve` — the archive's read side (`brotr-probe api`): the read-only relay and the HTTP API.
//! * `services` — seeder, finder, validator, monitor, synchronizer, maintenance; each one cycle
//!   of work over a store, run by `runtime`.

pub mod config;
pub mod model;
pub mod seed;

#[cfg(feature = "runtime")]
pub mod cli;
#[cfg(feature = "runtime")]
pub mod identity;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod monitor;
#[cfg(feature = "runtime")]
pub mod net;
#[cfg(feature = "runtime")]
pub mod nips;
#[cfg(feature = "runtime")]
pub mod progress;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod serve;
#[cfg(feature = "runtime")]
pub mod services;
#[cfg(feature = "runtime")]
pub mod store;
#[cfg(feature = "runtime")]
pub mod sync;
#[cfg(feature = "runtime")]
pub mod telemetry;
