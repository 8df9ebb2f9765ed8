//! NIP-11 fetch: `GET` on the relay's URL with `ws→http`, `wss→https`, header
//! `Accept: application/nostr+json`, bounded redirects, a body cap enforced while streaming, a
//! timeout, the SSRF guard on clearnet and SOCKS5 (remote DNS) for overlays. Every failure is a
//! [`Check`] with a reason, never an error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::NetworksConfig;
use crate::model::{Network, RelayUrl};
use crate::monitor::nip11::{Nip11, info_url, is_json_content_type};
use crate::monitor::report::{Check, Nip11Data};
use crate::net::dial::parse_proxy;

/// Redirects followed at most (each hop passes the SSRF guard again).
const MAX_REDIRECTS: usize = 3;

/// One HTTP client per network.
#[derive(Clone)]
pub struct Nip11Fetcher {
    clients: HashMap<Network, reqwest::Client>,
}

impl Nip11Fetcher {
    /// `tls` verifies clearnet servers; overlays go through their proxy with any certificate.
    pub fn new(
        networks: &NetworksConfig,
        tls: Arc<rustls::ClientConfig>,
        allow_private: bool,
    ) -> Result<Self, String> {
        let mut clients = HashMap::new();
        let base = || {
            reqwest::Client::builder()
                .redirect(crate::net::http::redirect_policy(
                    MAX_REDIRECTS,
                    allow_private,
                ))
                .connect_timeout(Duration::from_secs(30))
        };
        let mut clearnet = base().use_preconfigured_tls((*tls).clone()).no_proxy();
        if !allow_private {
            clearnet = clearnet.dns_resolver(Arc::new(crate::net::http::GuardedResolver));
        }
        clients.insert(
            Network::Clearnet,
            clearnet.build().map_err(|e| e.to_string())?,
        );
        for n in [Network::Tor, Network::I2p, Network::Loki] {
            let cfg = networks.get(n);
            let Some(proxy) = cfg.proxy_url.as_deref().and_then(parse_proxy) else {
                continue;
            };
            let proxy = reqwest::Proxy::all(format!("socks5h://{proxy}"))
                .map_err(|e| format!("proxy of {n}: {e}"))?;
            let client = base()
                .use_preconfigured_tls(super::ssl::accept_any_config()?)
                .proxy(proxy)
                .build()
                .map_err(|e| e.to_string())?;
            clients.insert(n, client);
        }
        Ok(Nip11Fetcher { clients })
    }

    /// Fetches and parses the document of `relay` within `timeout`.
    pub async fn check(
        &self,
        relay: &RelayUrl,
        max_bytes: usize,
        timeout: Duration,
    ) -> Check<Nip11Data> {
        let Some(client) = self.clients.get(&relay.network()) else {
            return Check::failed(format!(
                "no proxy configured for network {}",
                relay.network()
            ));
        };
        match tokio::time::timeout(timeout, fetch(client, relay, max_bytes)).await {
            Ok(Ok(data)) => Check::ok(data),
            Ok(Err(Fail::Transient(reason))) => Check::failed(reason),
            Ok(Err(Fail::Definite(reason))) => Check::definite(reason),
            Err(_) => Check::failed(format!("no complete answer within {timeout:?}")),
        }
    }
}

/// Transport trouble is worth another attempt; an answer (status, type, body) is not.
enum Fail {
    Transient(String),
    Definite(String),
}

async fn fetch(client: &reqwest::Client, relay: &RelayUrl, cap: usize) -> Result<Nip11Data, Fail> {
    let url = info_url(relay);
    let mut resp = client
        .get(&url)
        .header("accept", "application/nostr+json")
        .send()
        .await
        .map_err(|e| Fail::Transient(request_error(&e)))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(Fail::Definite(format!("HTTP {}", resp.status().as_u16())));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !is_json_content_type(&content_type) {
        let shown: String = content_type.chars().take(64).collect();
        return Err(Fail::Definite(format!("Invalid Content-Type: {shown}")));
    }
    let cors = resp
        .headers()
        .contains_key(reqwest::header::ACCESS_CONTROL_ALLOW_ORIGIN);
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Fail::Definite(format!("body larger than {cap} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Fail::Transient(request_error(&e)))?
    {
        if body.len() + chunk.len() > cap {
            return Err(Fail::Definite(format!("body larger than {cap} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let doc = Nip11::parse(&body).map_err(|e| Fail::Definite(e.to_string()))?;
    Ok(Nip11Data {
        doc,
        cors: Some(cors),
    })
}

/// A reqwest error with its causes (reqwest's own message is often just "error sending
/// request").
fn request_error(e: &reqwest::Error) -> String {
    let mut msg = if e.is_redirect() {
        "too many redirects".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
