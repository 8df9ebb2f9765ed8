//! Relay health monitor (NIP-11 + NIP-66), issue 5. See `README.md` beside this file for the
//! decisions taken where the specification is silent.
//!
//! * [`nip11`], [`geohash`], [`tags`], [`render`] — pure: parsing, tag building, rendering.
//! * [`report`] — the result of checking one relay.
//! * [`checks`] — one module per check (thin async shells).
//! * [`probe`] — runs the checks of one relay.
//! * [`publish`] — signs and sends events to the publishing relays.
//! * [`service`] — one monitor cycle over a store.

pub mod checks;
pub mod geohash;
pub mod keys;
pub mod nip11;
pub mod probe;
pub mod publish;
pub mod render;
pub mod report;
pub mod service;
pub mod tags;

pub use probe::{Prober, SetupError};
pub use report::{Check, RelayReport};
