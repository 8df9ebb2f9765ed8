//! `brotr-probe api`: the archive's read side on one port, like a relay.
//!
//! - `GET /` upgrades to the read-only relay ([`relay`]), answers NIP-11 for
//!   `Accept: application/nostr+json`, and otherwise says what is served here;
//! - `/v1/…`: the HTTP API ([`http`]) with its OpenAPI document at `/openapi.json`;
//! - `/healthz`, `/readyz`, `/metrics`, as the other services have them.
//!
//! Both the relay and the HTTP routes read through one [`Reader`] with the queries of
//! `store::query`: a filter means the same thing wherever it is asked.

pub mod consensus;
pub mod http;
pub mod page;
pub mod relay;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::broadcast;

use crate::config::ApiConfig;
use crate::metrics::Metrics;
use crate::nips::nip01;
use crate::nips::nip11::ArchiveInfo;
use crate::store::query::{EventQuery, QueryLimits};
use crate::store::{Archive, StoreError, StoredEvent};

/// New events as the live tail delivers them, rendered once for every connection.
pub type LiveBatch = Arc<Vec<LiveEvent>>;

/// One new event: what a subscription's filter looks at, and its JSON.
#[derive(Debug)]
pub struct LiveEvent {
    pub id: [u8; 32],
    pub pubkey: [u8; 32],
    pub created_at: i64,
    pub kind: i32,
    pub tagvalues: Vec<String>,
    pub json: String,
}

/// Why a read of the archive failed, as a client sees it (never SQL, never a stack trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the query took too long")]
    Timeout,
    #[error("the archive's database is unavailable")]
    Unavailable,
}

impl ReadError {
    /// The `reason` label of `brotr_api_refusals_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::Timeout => "timeout",
            ReadError::Unavailable => "unavailable",
        }
    }
}

/// Everything a request or a session needs. One per process.
pub struct Api {
    pub reader: Arc<dyn Archive>,
    pub cfg: ApiConfig,
    pub limits: QueryLimits,
    /// `cfg.hidden_kinds` as the queries bind them.
    hidden_kinds: Vec<i32>,
    pub metrics: crate::metrics::ApiMetrics,
    pub(crate) all_metrics: Metrics,
    pub live: broadcast::Sender<LiveBatch>,
    info: String,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    connections: Mutex<HashMap<IpAddr, u32>>,
    /// `cfg.trusted_proxies`, parsed.
    trusted: Vec<ipnet::IpNet>,
    pub site: Site,
    /// The web page's and the map's snapshot of every relay.
    pub(crate) snapshot: tokio::sync::Mutex<Option<Arc<page::Cached>>>,
}

/// What the api serves besides the archive's own limits: the consensus settings its verdicts
/// use, and the web page's built assets.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pub consensus: crate::config::ConsensusConfig,
    /// Directory holding `app.js` and `app.css` (built from `web/`); `None`: the page has no map.
    pub web_dir: Option<std::path::PathBuf>,
}

/// The client's address: the connection's, or behind trusted proxies the rightmost
/// `X-Forwarded-For` address that is not itself a trusted proxy. An entry that is not an address
/// stops the walk at the proxy that passed it on: nothing to the left of it is believed.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if !is_trusted(&client) {
        return client;
    }
    for hop in forwarded_for.unwrap_or("").rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            return client;
        };
        client = ip;
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

impl Api {
    /// `q` with the kinds the archive never serves (`api.hiddenKinds`).
    pub fn hide(&self, mut q: EventQuery) -> EventQuery {
        q.hidden_kinds.clone_from(&self.hidden_kinds);
        q
    }

    pub fn new(reader: Arc<dyn Archive>, cfg: ApiConfig, metrics: Metrics) -> Arc<Self> {
        Self::with_site(reader, cfg, Site::default(), metrics)
    }

    pub fn with_site(
        reader: Arc<dyn Archive>,
        cfg: ApiConfig,
        site: Site,
        metrics: Metrics,
    ) -> Arc<Self> {
        let limits = QueryLimits {
            max_limit: cfg.max_limit,
            default_limit: cfg.default_limit.min(cfg.max_limit),
            max_ids: cfg.max_ids_per_filter as usize,
            max_authors: cfg.max_ids_per_filter as usize,
            max_tag_values: cfg.max_tag_values as usize,
            ..QueryLimits::default()
        };
        let info = ArchiveInfo {
            name: cfg.name.clone(),
            description: cfg.description.clone(),
            software: "https://example.invalid/brotr".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            lite: reader.schema() == crate::model::Schema::Lite,
            max_message_length: cfg.max_message_bytes,
            max_subscriptions: cfg.max_subscriptions,
            max_filters: cfg.max_filters,
            max_limit: cfg.max_limit,
            default_limit: limits.default_limit,
            max_subid_length: cfg.max_subid_length,
        }
        .to_json();
        let one = NonZeroU32::MIN;
        let quota = Quota::per_second(NonZeroU32::new(cfg.requests_per_second).unwrap_or(one))
            .allow_burst(NonZeroU32::new(cfg.burst).unwrap_or(one));
        Arc::new(Api {
            reader,
            limits,
            hidden_kinds: cfg.hidden_kinds.iter().map(|k| i32::from(*k)).collect(),
            metrics: metrics.api.clone(),
            all_metrics: metrics,
            live: broadcast::channel(256).0,
            info,
            limiter: RateLimiter::keyed(quota),
            connections: Mutex::new(HashMap::new()),
            // Validated with the config; an entry that still fails to parse trusts nothing.
            trusted: cfg
                .trusted_proxies
                .iter()
                .filter_map(|c| crate::config::api::parse_cidr(c).ok())
                .collect(),
            cfg,
            site,
            snapshot: tokio::sync::Mutex::new(None),
        })
    }

    /// Who is asking: see [`client_ip`].
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.trusted.is_empty() {
            return peer;
        }
        // Several X-Forwarded-For headers are one list, in order.
        let joined: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        client_ip(peer, Some(&joined.join(",")), &self.trusted)
    }

    /// One request or message from `ip`, within its rate.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.limiter.check_key(&ip).is_ok()
    }

    /// A connection slot for `ip`, released when the guard drops; `None` when it has
    /// `max_connections_per_ip` open.
    fn connect(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        let mut open = self.connections.lock().ok()?;
        let n = open.entry(ip).or_insert(0);
        if *n >= self.cfg.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            api: self.clone(),
            ip,
        })
    }

    /// Runs one read with the statement timeout, timed into the query histogram.
    pub async fn read<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ReadError> {
        self.read_within(op, 1, fut).await
    }

    /// A read of many statements (the page's snapshot of every relay): each statement within
    /// the statement timeout, the whole within [`LONG_READ_STATEMENTS`] of them.
    pub async fn read_long<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ReadError> {
        self.read_within(op, LONG_READ_STATEMENTS, fut).await
    }

    async fn read_within<T>(
        &self,
        op: &'static str,
        statements: u32,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ReadError> {
        let timer = self
            .metrics
            .query_seconds
            .with_label_values(&[op])
            .start_timer();
        let limit = Duration::from_millis(self.cfg.statement_timeout_ms) * statements;
        let out = match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_timeout(&e) => Err(ReadError::Timeout),
            Ok(Err(e)) => {
                tracing::warn!(op, error = %e, "archive read failed");
                Err(ReadError::Unavailable)
            }
            Err(_) => Err(ReadError::Timeout),
        };
        timer.observe_duration();
        out
    }

    /// Starts the live tail: new archived events, rendered once, to every session.
    pub async fn start_live(self: &Arc<Self>) -> Result<(), StoreError> {
        // A lite archive answers no REQ, so nothing would read the tail.
        if self.reader.schema() == crate::model::Schema::Lite {
            return Ok(());
        }
        let poll = Duration::from_secs_f64(self.cfg.poll_secs);
        let mut rx = self.reader.live(poll).await?;
        let tx = self.live.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                let batch: Vec<LiveEvent> = batch
                    .into_iter()
                    .filter(|e| e.content.is_some())
                    .map(|e| LiveEvent {
                        json: event_json(&e),
                        id: e.id,
                        pubkey: e.pubkey,
                        created_at: e.created_at,
                        kind: e.kind,
                        tagvalues: e.tagvalues,
                    })
                    .collect();
                // No receiver (no connection) is not an error.
                let _ = tx.send(Arc::new(batch));
            }
        });
        Ok(())
    }
}

/// How many statement timeouts a long read may take in all.
pub const LONG_READ_STATEMENTS: u32 = 12;

/// A statement cancelled by PostgreSQL's `statement_timeout` (SQLSTATE 57014).
fn is_timeout(e: &StoreError) -> bool {
    match e {
        StoreError::Query {
            source: sqlx::Error::Database(db),
            ..
        } => db.code().as_deref() == Some("57014"),
        _ => false,
    }
}

/// Holds one of an IP's connection slots.
pub(crate) struct ConnectionGuard {
    api: Arc<Api>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Ok(mut open) = self.api.connections.lock()
            && let Some(n) = open.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// An event's NIP-01 JSON from its stored columns (full schema).
pub fn event_json(e: &StoredEvent) -> String {
    nip01::event_json(
        &e.id,
        &e.pubkey,
        e.created_at,
        e.kind,
        e.tags_json.as_deref().unwrap_or("[]"),
        e.content.as_deref().unwrap_or(""),
        e.sig.as_deref().unwrap_or(&[]),
    )
}

/// The whole app: relay, NIP-11, HTTP API, OpenAPI, health and metrics.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(root).options(cors_preflight))
        .route("/relay", get(page::relay))
        .route("/v1/map", get(page::map))
        .route("/assets/{name}", get(page::asset))
        .merge(http::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            http::count_and_limit,
        ))
        .with_state(api)
}

/// Serves `router(api)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // TCP_NODELAY: an answer's last small frame (EOSE after the events) must not wait for the
    // client's delayed ACK; without it a REQ took 40-90 ms whatever its size.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(
        listener,
        router(api).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// NIP-11 asks for these on the relay's URL.
fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
}

async fn cors_preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    cors(r.headers_mut());
    r
}

async fn root(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::extract::Query(pairs): axum::extract::Query<Vec<(String, String)>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Ok(ws) = ws {
        let ip = api.client(peer.ip(), &headers);
        let Some(guard) = api.connect(ip) else {
            api.metrics
                .refusals
                .with_label_values(&["too_many_connections"])
                .inc();
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from your address\n",
            )
                .into_response();
        };
        let max = api.cfg.max_message_bytes as usize;
        return ws
            .max_message_size(max)
            .max_frame_size(max)
            .on_upgrade(move |socket| async move {
                relay::session(socket, api, ip).await;
                drop(guard);
            });
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/nostr+json") {
        let mut r = (
            [(header::CONTENT_TYPE, "application/nostr+json")],
            api.info.clone(),
        )
            .into_response();
        cors(r.headers_mut());
        return r;
    }
    if accept.contains("text/html") {
        return page::index_page(&api, pairs).await;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Brotr archive: a read-only Nostr relay on this URL (WebSocket; NIP-11 with \
         Accept: application/nostr+json), an HTTP API under /v1 (OpenAPI at /openapi.json), \
         /healthz, /readyz and /metrics.\n",
    )
        .into_response()
}

async fn readyz(State(api): State<Arc<Api>>) -> Response {
    match api.read("ping", api.reader.ping()).await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database not ready: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let (in_use, idle, max) = api.reader.pool_usage();
    let pool = &api.all_metrics.database.pool_connections;
    pool.with_label_values(&["in_use"]).set(i64::from(in_use));
    pool.with_label_values(&["idle"]).set(i64::from(idle));
    pool.with_label_values(&["max"]).set(i64::from(max));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.all_metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let trusted: Vec<ipnet::IpNet> = ["10.0.0.0/8", "fd00::/8"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: [(&str, Option<&str>, &str); 9] = [
            // Not from a proxy: the header is never read.
            ("198.51.100.7", Some("203.0.113.1"), "198.51.100.7"),
            // From the ingress: the address it saw.
            ("10.1.2.3", Some("203.0.113.1"), "203.0.113.1"),
            // A client forging hops on the left is still itself.
            ("10.1.2.3", Some("1.1.1.1, 203.0.113.1"), "203.0.113.1"),
            // Chained proxies are skipped.
            ("10.1.2.3", Some("203.0.113.1, 10.9.9.9"), "203.0.113.1"),
            ("fd00::1", Some("2001:db8::5"), "2001:db8::5"),
            // Garbage stops the walk at the proxy that passed it on.
            ("10.1.2.3", Some("203.0.113.1, not-an-ip"), "10.1.2.3"),
            ("10.1.2.3", Some("?, 10.4.4.4"), "10.4.4.4"),
            // Only proxies, or no header: the last proxy.
            ("10.1.2.3", Some("10.0.0.9"), "10.0.0.9"),
            ("10.1.2.3", None, "10.1.2.3"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(
                client_ip(ip(peer), xff, &trusted),
                ip(want),
                "{peer} {xff:?}"
            );
        }
        assert_eq!(
            client_ip(ip("10.1.2.3"), Some("203.0.113.1"), &[]),
            ip("10.1.2.3"),
            "nothing trusted: the peer"
        );
    }
}
