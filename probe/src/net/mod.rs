//! Everything that opens a socket lives here.
//!
//! * [`dial`] — WebSocket dialing: TCP with the SSRF guard for clearnet, SOCKS5 with remote DNS
//!   for overlays, rustls for `wss://`, message-size limits, one timeout over the whole handshake.
//! * [`tls`] — TLS configurations and the SSL check's capturing handshake.
//! * [`http`] — HTTP GET with the same SSRF guard, redirect bound, body cap, timeout, per network.
//! * [`relay`] — one Nostr session with a relay, used by every service.

pub mod dial;
pub mod http;
pub mod limits;
pub mod relay;
pub mod tls;

pub use dial::{DialError, Dialer, HandshakeResponse, WsStream};
pub use http::{HttpClient, HttpError};
pub use limits::NetworkLimits;
pub use relay::{AuthMode, AuthOutcome, RelayError, RelaySession, SessionOptions, WireStats};
pub use tls::tls_config;
