//! Everything that opens a socket to a relay lives here.
//!
//! * [`dial`] — WebSocket dialing: TCP with the SSRF guard for clearnet, SOCKS5 with remote DNS
//!   for overlays, rustls for `wss://`, message-size limits, one timeout over the whole handshake.
//! * [`http`] — HTTP GET for APIs with the same SSRF guard, redirect bound, body cap, timeout.
//! * [`answer`] — "does this endpoint speak Nostr?": send a REQ, judge the first answer.

pub mod answer;
pub mod dial;
pub mod http;

pub use answer::{Answer, ProbeError, probe_nostr};
pub use dial::{DialError, Dialer, HandshakeResponse, WsStream};
pub use http::{HttpClient, HttpError};
