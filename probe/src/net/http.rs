//! HTTP GET with the dialer's guards, for external APIs (finder) and NIP-11 documents (monitor):
//! the SSRF guard in the DNS resolver (so every redirect hop is checked too), bounded redirects,
//! a hard body cap enforced while streaming, timeouts, and SOCKS5 with remote DNS for overlays.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::dial::parse_proxy;
use super::tls::accept_any_config;
use crate::config::NetworksConfig;
use crate::model::{Network, is_local_ip};

/// Redirects followed at most (each hop passes the SSRF guard again).
const MAX_REDIRECTS: usize = 3;

/// Why a fetch failed. Messages name the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("GET {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("GET {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: body larger than the {cap}-byte cap")]
    TooLarge { url: String, cap: usize },
    #[error("GET {url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("no proxy configured for network {0}")]
    NoProxy(Network),
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

impl HttpError {
    /// Transport trouble, worth another attempt; an answer (status, size) is not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HttpError::Request { .. } | HttpError::Timeout { .. } | HttpError::NoProxy(_)
        )
    }
}

/// Resolves with the system resolver and refuses local/private/reserved answers.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_local_ip(a.ip())) {
                let msg = format!(
                    "{host} resolves to {}, a local/private/reserved address (SSRF guard)",
                    bad.ip()
                );
                return Err(msg.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// At most `max` redirect hops, and none to a local IP literal unless `allow_private`: the
/// guarded resolver only sees names, so a redirect to `http://127.0.0.1/` is refused here.
fn redirect_policy(max: usize, allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= max {
            return attempt.error("too many redirects");
        }
        let local = match attempt.url().host() {
            Some(url::Host::Ipv4(ip)) => is_local_ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => is_local_ip(ip.into()),
            _ => false,
        };
        if local && !allow_private {
            return attempt.error("redirect to a local address refused (SSRF guard)");
        }
        attempt.follow()
    })
}

/// A response: status, the headers callers judge, and the capped body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Guarded HTTP clients, one per network (overlays through their SOCKS5 proxy). Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    clients: Arc<HashMap<Network, reqwest::Client>>,
}

impl HttpClient {
    /// Clients for clearnet and every overlay with a proxy. `tls` verifies clearnet servers;
    /// overlays accept any certificate (an onion address authenticates the service, and their
    /// certificates are usually self-signed). `allow_private` lifts the SSRF guard (tests).
    pub fn new(
        networks: &NetworksConfig,
        tls: Arc<rustls::ClientConfig>,
        allow_private: bool,
    ) -> Result<Self, HttpError> {
        let base = || {
            reqwest::Client::builder()
                .redirect(redirect_policy(MAX_REDIRECTS, allow_private))
                .connect_timeout(Duration::from_secs(30))
                .user_agent(concat!("brotr-probe/", env!("CARGO_PKG_VERSION")))
        };
        let build =
            |b: reqwest::ClientBuilder| b.build().map_err(|e| HttpError::Build(e.to_string()));
        let mut clients = HashMap::new();
        let mut clearnet = base().use_preconfigured_tls((*tls).clone()).no_proxy();
        if !allow_private {
            clearnet = clearnet.dns_resolver(Arc::new(GuardedResolver));
        }
        clients.insert(Network::Clearnet, build(clearnet)?);
        for n in [Network::Tor, Network::I2p, Network::Loki] {
            let Some(proxy) = networks.get(n).proxy_url.as_deref().and_then(parse_proxy) else {
                continue;
            };
            let proxy = reqwest::Proxy::all(format!("socks5h://{proxy}"))
                .map_err(|e| HttpError::Build(format!("proxy of {n}: {e}")))?;
            let b = base()
                .use_preconfigured_tls(accept_any_config())
                .proxy(proxy);
            clients.insert(n, build(b)?);
        }
        Ok(HttpClient {
            clients: Arc::new(clients),
        })
    }

    /// GETs `url` on `network` within `timeout`; the body is capped at `cap` bytes while
    /// streaming (never buffered whole). Any status comes back; only transport fails.
    pub async fn get(
        &self,
        network: Network,
        url: &str,
        accept: &str,
        cap: usize,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let client = self
            .clients
            .get(&network)
            .ok_or(HttpError::NoProxy(network))?;
        tokio::time::timeout(timeout, fetch(client, url, accept, cap))
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.to_owned(),
                after: timeout,
            })?
    }

    /// [`HttpClient::get`] on clearnet, failing on a non-2xx status; the body only.
    pub async fn get_ok(
        &self,
        url: &str,
        accept: &str,
        cap: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, HttpError> {
        let r = self
            .get(Network::Clearnet, url, accept, cap, timeout)
            .await?;
        if !(200..300).contains(&r.status) {
            return Err(HttpError::Status {
                url: url.to_owned(),
                status: r.status,
            });
        }
        Ok(r.body)
    }
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    accept: &str,
    cap: usize,
) -> Result<Response, HttpError> {
    let req_err = |e: reqwest::Error| HttpError::Request {
        url: url.to_owned(),
        reason: request_error(&e),
    };
    let too_large = || HttpError::TooLarge {
        url: url.to_owned(),
        cap,
    };
    let mut resp = client
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .map_err(req_err)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(req_err)? {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        headers,
        body,
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
