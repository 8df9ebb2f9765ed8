//! An HTTP client with the dialer's guards, for external APIs (and later NIP-11): the SSRF guard
//! in the DNS resolver (so every redirect hop is checked too), bounded redirects, a hard body
//! cap enforced while streaming, and timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::model::is_local_ip;

/// Why a fetch failed. Messages name the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("GET {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: body larger than the {cap}-byte cap")]
    TooLarge { url: String, cap: usize },
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Resolves with the system resolver and refuses local/private/reserved answers.
pub(crate) struct GuardedResolver;

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
pub(crate) fn redirect_policy(max: usize, allow_private: bool) -> reqwest::redirect::Policy {
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

/// A guarded HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// `allow_private` lifts the SSRF guard (tests); `timeout` bounds a whole request.
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        allow_private: bool,
        timeout: Duration,
    ) -> Result<Self, HttpError> {
        let mut b = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(redirect_policy(3, allow_private))
            .user_agent(concat!("brotr-probe/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if !allow_private {
            b = b.dns_resolver(Arc::new(GuardedResolver));
        }
        Ok(HttpClient {
            client: b.build().map_err(HttpError::Build)?,
        })
    }

    /// GETs `url` and returns at most `cap` bytes of body; a larger body is an error, detected
    /// while streaming (never buffered whole).
    pub async fn get_capped(
        &self,
        url: &str,
        accept: &str,
        cap: usize,
    ) -> Result<Vec<u8>, HttpError> {
        let req_err = |source| HttpError::Request {
            url: url.to_owned(),
            source,
        };
        let mut resp = self
            .client
            .get(url)
            .header("accept", accept)
            .send()
            .await
            .map_err(req_err)?;
        if !resp.status().is_success() {
            return Err(HttpError::Status {
                url: url.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(HttpError::TooLarge {
                url: url.to_owned(),
                cap,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(req_err)? {
            if body.len() + chunk.len() > cap {
                return Err(HttpError::TooLarge {
                    url: url.to_owned(),
                    cap,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
