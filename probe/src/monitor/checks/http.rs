//! HTTP check: `Server` and `X-Powered-By` of the WebSocket handshake response. A response
//! without them is data ("none"), not a failed check.

use std::time::Duration;

use nostr::Keys;

use crate::model::RelayUrl;
use crate::monitor::report::{Check, HttpData};
use crate::net::{AuthMode, Dialer, HandshakeResponse, RelaySession, SessionOptions};

/// Header fields of a handshake response (pure).
pub fn from_response(resp: &HandshakeResponse) -> HttpData {
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().chars().take(256).collect::<String>())
            .filter(|s| !s.is_empty())
    };
    HttpData {
        http_server: h("server"),
        http_powered_by: h("x-powered-by"),
    }
}

/// One attempt within `timeout`.
pub async fn check(dialer: &Dialer, url: &RelayUrl, timeout: Duration) -> Check<HttpData> {
    let opts = SessionOptions::new(Keys::generate(), AuthMode::OnRequest);
    match tokio::time::timeout(timeout, RelaySession::open_with_response(dialer, url, opts)).await {
        Ok(Ok((s, resp))) => {
            s.close().await;
            Check::ok(from_response(&resp))
        }
        Ok(Err(e)) => Check::failed(e.to_string()),
        Err(_) => Check::failed(format!("no handshake within {timeout:?}")),
    }
}
