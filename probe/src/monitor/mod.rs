//! What the monitor measures about one relay (NIP-11 and the NIP-66 checks), and how results are
//! published. The cycle over the store is `services::monitor`; see `README.md` beside this file
//! for the decisions taken where the specification is silent.
//!
//! * [`report`] — the result of checking one relay; [`discovery`] turns it into 30166 tags.
//! * [`checks`] — one module per check (thin async shells over `net`).
//! * [`probe`] — runs the checks of one relay.
//! * [`publish`] — signs and sends events to the publishing relays.
//! * [`render`] — the `check` command's text report.

pub mod checks;
pub mod discovery;
pub mod probe;
pub mod publish;
pub mod render;
pub mod report;

pub use probe::{Prober, SetupError};
pub use report::{Check, RelayReport};
