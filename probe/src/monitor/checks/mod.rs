//! The checks, one module each. Every check takes its own timeout, returns a
//! [`Check`](super::report::Check) even when it fails, and never affects another check.

pub mod dns;
pub mod geo;
pub mod http;
pub mod nip11;
pub mod nip77;
pub mod rtt;
pub mod ssl;
