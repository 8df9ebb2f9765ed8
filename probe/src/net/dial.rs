//! WebSocket dialing with the project's guards.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::config::{LimitsConfig, NetworksConfig};
use crate::model::{Network, RelayUrl, is_local_ip};

/// A byte stream: plain TCP or a SOCKS5 tunnel.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// The HTTP response that completed a WebSocket handshake.
pub type HandshakeResponse = tokio_tungstenite::tungstenite::handshake::client::Response;

/// An open WebSocket to a relay.
pub type WsStream = WebSocketStream<MaybeTlsStream<Box<dyn Io>>>;

/// Why a relay could not be reached. Every message names the host.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("network {0} is disabled")]
    Disabled(Network),
    #[error("no proxy configured for network {0}")]
    NoProxy(Network),
    #[error("bad proxy URL {url:?} for network {network}: expected socks5://host:port")]
    BadProxy { network: Network, url: String },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing {host}: it resolves to {ip}, a local/private/reserved address (SSRF guard)")]
    Refused { host: String, ip: IpAddr },
    #[error("cannot connect to {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("proxy {proxy} could not reach {host}: {source}")]
    Proxy {
        proxy: String,
        host: String,
        #[source]
        source: tokio_socks::Error,
    },
    #[error("WebSocket handshake with {host} failed: {source}")]
    Handshake {
        host: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("{host} did not complete the connection within {after:?}")]
    Timeout { host: String, after: Duration },
    #[error("{host}: {reason}")]
    Tls { host: String, reason: String },
}

/// Opens WebSockets to relays according to the network and limit settings. Cheap to clone.
#[derive(Clone)]
pub struct Dialer {
    inner: Arc<Inner>,
}

struct Inner {
    networks: NetworksConfig,
    limits: LimitsConfig,
    tls: Arc<rustls::ClientConfig>,
}

impl Dialer {
    pub fn new(
        networks: NetworksConfig,
        limits: LimitsConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        Dialer {
            inner: Arc::new(Inner {
                networks,
                limits,
                tls,
            }),
        }
    }

    pub fn networks(&self) -> &NetworksConfig {
        &self.inner.networks
    }

    pub fn limits(&self) -> &LimitsConfig {
        &self.inner.limits
    }

    /// The TLS configuration `wss://` connections verify with.
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.inner.tls.clone()
    }

    /// The connect timeout of `url`'s network.
    pub fn timeout(&self, url: &RelayUrl) -> Duration {
        self.inner.networks.get(url.network()).timeout()
    }

    /// Connects to `url`: transport, TLS and WebSocket handshake, all within the network's
    /// timeout.
    pub async fn connect(&self, url: &RelayUrl) -> Result<WsStream, DialError> {
        Ok(self.connect_with_response(url).await?.0)
    }

    /// [`Dialer::connect`], also returning the handshake response (its headers are the
    /// monitor's HTTP check).
    pub async fn connect_with_response(
        &self,
        url: &RelayUrl,
    ) -> Result<(WsStream, HandshakeResponse), DialError> {
        let net = self.inner.networks.get(url.network());
        if !net.enabled {
            return Err(DialError::Disabled(url.network()));
        }
        let after = net.timeout();
        tokio::time::timeout(after, self.connect_inner(url))
            .await
            .map_err(|_| DialError::Timeout {
                host: url.host().to_owned(),
                after,
            })?
    }

    async fn connect_inner(
        &self,
        url: &RelayUrl,
    ) -> Result<(WsStream, HandshakeResponse), DialError> {
        let host = url.host().to_owned();
        let port = url.port().unwrap_or(if url.is_tls() { 443 } else { 80 });
        let io: Box<dyn Io> = match url.network() {
            Network::Clearnet => Box::new(self.tcp(&host, port).await?),
            overlay => Box::new(self.socks(overlay, &host, port).await?),
        };
        let request = url
            .as_str()
            .into_client_request()
            .map_err(|e| DialError::Handshake {
                host: host.clone(),
                source: Box::new(e),
            })?;
        let max = self.inner.limits.max_message_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let connector = if url.is_tls() {
            Connector::Rustls(self.inner.tls.clone())
        } else {
            Connector::Plain
        };
        let (ws, response) = tokio_tungstenite::client_async_tls_with_config(
            request,
            io,
            Some(config),
            Some(connector),
        )
        .await
        .map_err(|e| DialError::Handshake {
            host,
            source: Box::new(e),
        })?;
        Ok((ws, response))
    }

    /// Resolves `host`, refuses local addresses unless allowed, and connects to the first address
    /// that answers. Connecting only to addresses it checked defeats DNS rebinding.
    pub async fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| DialError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect();
        if !self.inner.limits.allow_private
            && let Some(bad) = addrs.iter().find(|a| is_local_ip(a.ip()))
        {
            return Err(DialError::Refused {
                host: host.to_owned(),
                ip: bad.ip(),
            });
        }
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(DialError::Connect {
            host: host.to_owned(),
            source: last,
        })
    }

    /// Opens a SOCKS5 tunnel; the proxy resolves `host` (remote DNS), so overlay names never leak
    /// to the local resolver. The socket to the proxy has `TCP_NODELAY` like direct connections:
    /// without it every small request on an overlay waits on Nagle's algorithm.
    async fn socks(
        &self,
        network: Network,
        host: &str,
        port: u16,
    ) -> Result<tokio_socks::tcp::Socks5Stream<TcpStream>, DialError> {
        let settings = self.inner.networks.get(network);
        let raw = settings
            .proxy_url
            .as_deref()
            .ok_or(DialError::NoProxy(network))?;
        let proxy = parse_proxy(raw).ok_or_else(|| DialError::BadProxy {
            network,
            url: raw.to_owned(),
        })?;
        let proxy_err = |source| DialError::Proxy {
            proxy: proxy.clone(),
            host: host.to_owned(),
            source,
        };
        // The proxy is configured by the operator, not found in the wild: no SSRF guard here.
        let socket = TcpStream::connect(proxy.as_str())
            .await
            .map_err(|e| proxy_err(tokio_socks::Error::Io(e)))?;
        let _ = socket.set_nodelay(true);
        tokio_socks::tcp::Socks5Stream::connect_with_socket(socket, (host, port))
            .await
            .map_err(proxy_err)
    }
}

/// `socks5://host:port` or `socks5h://host:port` (default port 1080) → `host:port`.
pub fn parse_proxy(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("socks5h://")
        .or_else(|| url.strip_prefix("socks5://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return None;
    }
    match rest.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty()
                && (h.starts_with('[') || !h.contains(':'))
                && !p.is_empty()
                && p.bytes().all(|c| c.is_ascii_digit()) =>
        {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .map(|_| rest.to_owned())
        }
        // A bare IPv6 address needs brackets.
        _ if rest.contains(':') && !rest.starts_with('[') => None,
        _ => Some(format!("{rest}:1080")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let cases = [
            ("socks5://tor:9050", Some("tor:9050")),
            ("socks5h://127.0.0.1:9050", Some("127.0.0.1:9050")),
            ("socks5://proxy", Some("proxy:1080")),
            ("socks5://[::1]:9050", Some("[::1]:9050")),
            ("http://tor:9050", None),
            ("socks5://", None),
            ("socks5://tor:0", None),
            ("socks5://tor:99999", None),
            ("socks5://user:pw@tor:9050", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_proxy(input).as_deref(), want, "{input}");
        }
    }
}
