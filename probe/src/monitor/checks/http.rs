//! HTTP check: `Server` and `X-Powered-By` of the WebSocket handshake response.

use std::time::Duration;

use crate::model::RelayUrl;
use crate::monitor::report::{Check, HttpData};
use crate::net::{Dialer, HandshakeResponse};

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
    match tokio::time::timeout(timeout, dialer.connect_with_response(url)).await {
        Ok(Ok((mut ws, resp))) => {
            let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
            let data = from_response(&resp);
            if data == HttpData::default() {
                Check::definite("no Server or X-Powered-By header")
            } else {
                Check::ok(data)
            }
        }
        Ok(Err(e)) => Check::failed(e.to_string()),
        Err(_) => Check::failed(format!("no handshake within {timeout:?}")),
    }
}
