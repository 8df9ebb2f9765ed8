//! The HTTP API under `/v1`, and its OpenAPI 3.1 document at `/openapi.json` (utoipa: derived
//! from these handlers and types, so the document cannot drift from the routes).
//!
//! Paging is keyset: every list answers a `next` cursor (opaque) that continues in the list's
//! order; there is no OFFSET and no count per page. Errors are JSON, `400` naming the parameter
//! and why, `404`, `503` when the database is unreachable, `504` when a query times out; never
//! SQL, never a stack trace.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::consensus::{self, Consensus, Weighed};
use super::{Api, ReadError};
use crate::store::query::{Cursor, EventQuery, QueryError, RelayFilter, RelayStatus};
use crate::store::read::{CheckResult, MonitorHealth, RelayDetail, RelaySummary, Stats};

/// The OpenAPI document of every route below.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Brotr archive API",
        description = "Read what Brotr archived: events by NIP-01 filter, relays with their \
                       latest health per monitor, one relay's check history, archive statistics. \
                       The same archive is served as a read-only Nostr relay on `/`."
    ),
    paths(events, relays, relay, stats, super::page::map),
    components(schemas(
        ApiError,
        EventsPage,
        Event,
        RelaysPage,
        RelayView,
        RelayDetailView,
        Consensus,
        Weighed,
        super::page::Snapshot,
        super::page::MapRelay,
        RelaySummary,
        MonitorHealth,
        RelayDetail,
        CheckResult,
        Stats
    ))
)]
pub struct ApiDoc;

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/events", get(events))
        .route("/v1/relays", get(relays))
        .route("/v1/relays/{url}", get(relay))
        .route("/v1/stats", get(stats))
        .route("/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(doc) => ([(header::CONTENT_TYPE, "application/json")], doc).into_response(),
        Err(_) => ApiError::internal().into_response(),
    }
}

/// Rate limit per IP and the request counter by route and status, for every HTTP request. The
/// health and metrics routes are counted but never limited: the kubelet's probes and Prometheus'
/// scrapes must not be refused because a client on the same address is busy.
pub(super) async fn count_and_limit(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    // The WebSocket's own messages are limited in the session; its upgrade counts once here.
    let operational = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics");
    let response = if operational || api.allow(api.client(peer.ip(), req.headers())) {
        next.run(req).await
    } else {
        api.metrics
            .refusals
            .with_label_values(&["rate_limited"])
            .inc();
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            None,
            "too many requests from your address; slow down".into(),
        )
        .into_response()
    };
    api.metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// An error answer: what went wrong, and which parameter when one did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub(super) status: StatusCode,
    /// `bad_request`, `not_found`, `rate_limited`, `unavailable`, `timeout`, `internal`.
    error: &'static str,
    /// The query parameter at fault (400 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) parameter: Option<String>,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        error: &'static str,
        parameter: Option<String>,
        message: String,
    ) -> Self {
        ApiError {
            status,
            error,
            parameter,
            message,
        }
    }

    pub(super) fn bad(parameter: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some(parameter.to_owned()),
            message.into(),
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            "internal error".into(),
        )
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Timeout => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                None,
                "the query took too long; narrow it".into(),
            ),
            ReadError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                None,
                "the archive's database is unavailable; try again later".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = serde_json::to_string(&self).unwrap_or_else(|_| "{}".into());
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Query parameters, each at most once, only the known ones.
pub(super) struct Params(BTreeMap<String, String>);

impl Params {
    pub(super) fn new(pairs: Vec<(String, String)>, known: &[&str]) -> Result<Self, ApiError> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad(
                    &k,
                    format!("unknown parameter; known: {}", known.join(", ")),
                ));
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad(&k, "given more than once"));
            }
        }
        Ok(Params(map))
    }

    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn int<T: std::str::FromStr>(&self, k: &str, what: &str) -> Result<Option<T>, ApiError> {
        self.get(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad(k, format!("{v:?} is not {what}")))
            })
            .transpose()
    }

    /// A comma-separated list.
    fn list(&self, k: &str) -> Option<Vec<&str>> {
        self.get(k)
            .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
    }

    fn limit(&self, api: &Api) -> Result<u32, ApiError> {
        let max = api.cfg.max_limit;
        match self.int::<u32>("limit", "a whole number")? {
            None => Ok(api.limits.default_limit.min(100)),
            Some(0) => Err(ApiError::bad("limit", "must be at least 1")),
            Some(n) if n > max => Err(ApiError::bad("limit", format!("at most {max}"))),
            Some(n) => Ok(n),
        }
    }
}

fn hex32(k: &str, v: &str) -> Result<[u8; 32], ApiError> {
    let bad = || ApiError::bad(k, format!("{v:?} is not 64 lowercase hex digits"));
    if v.len() != 64 || v.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad());
    }
    let bytes = hex::decode(v).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

fn query_error(e: QueryError) -> ApiError {
    match &e {
        QueryError::TooMany { field, .. } => ApiError::bad(field, e.to_string()),
        QueryError::BadValue { field, .. } => {
            let field = if field.starts_with('#') {
                "tag"
            } else {
                field.as_str()
            };
            ApiError::bad(field, e.to_string())
        }
        QueryError::Search => ApiError::bad("filter", e.to_string()),
    }
}

/// One event (NIP-01).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Event {
    /// 64 hex digits.
    id: String,
    pubkey: String,
    created_at: i64,
    kind: i32,
    #[schema(value_type = Vec<Vec<String>>)]
    tags: serde_json::Value,
    content: String,
    sig: String,
}

/// A page of events, newest first (lowest id first on ties).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct EventsPage {
    events: Vec<Event>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next: Option<String>,
}

/// Events by NIP-01 filter: the same semantics as a REQ filter on the relay.
///
/// Either the filter's fields as parameters, or the whole filter as JSON in `filter`.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("ids" = Option<String>, Query, description = "Comma-separated event ids (64 hex)"),
        ("authors" = Option<String>, Query, description = "Comma-separated pubkeys (64 hex)"),
        ("kinds" = Option<String>, Query, description = "Comma-separated kinds"),
        ("tag" = Option<String>, Query, description = "Comma-separated `x:value` tag conditions; one letter's values are OR'd, letters AND'd"),
        ("since" = Option<i64>, Query, description = "created_at >= since"),
        ("until" = Option<i64>, Query, description = "created_at <= until"),
        ("filter" = Option<String>, Query, description = "A whole NIP-01 filter as JSON (instead of the fields above)"),
        ("limit" = Option<u32>, Query, description = "Events per page (default 100, at most the configured maximum)"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of events", body = EventsPage),
        (status = 400, description = "A bad parameter", body = ApiError),
        (status = 409, description = "A lite archive keeps no event bodies", body = ApiError),
        (status = 429, description = "Rate limited", body = ApiError),
        (status = 503, description = "Database unavailable", body = ApiError),
        (status = 504, description = "Query timed out", body = ApiError),
    )
)]
async fn events(
    State(api): State<Arc<Api>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let p = Params::new(
        pairs,
        &[
            "ids", "authors", "kinds", "tag", "since", "until", "filter", "limit", "cursor",
        ],
    )?;
    let q = match p.get("filter") {
        Some(json) => {
            if let Some(k) = ["ids", "authors", "kinds", "tag", "since", "until"]
                .into_iter()
                .find(|k| p.get(k).is_some())
            {
                return Err(ApiError::bad(
                    k,
                    "give either `filter` or the filter's fields",
                ));
            }
            let filter = <nostr::Filter as nostr::JsonUtil>::from_json(json)
                .map_err(|e| ApiError::bad("filter", format!("not a NIP-01 filter: {e}")))?;
            EventQuery::from_filter(&filter, &api.limits).map_err(query_error)?
        }
        None => {
            let mut q = EventQuery {
                since: p.int("since", "a unix time")?,
                until: p.int("until", "a unix time")?,
                ..EventQuery::default()
            };
            if let Some(ids) = p.list("ids") {
                q.ids = Some(
                    ids.iter()
                        .map(|v| hex32("ids", v))
                        .collect::<Result<_, _>>()?,
                );
            }
            if let Some(a) = p.list("authors") {
                q.authors = Some(
                    a.iter()
                        .map(|v| hex32("authors", v))
                        .collect::<Result<_, _>>()?,
                );
            }
            if let Some(kinds) = p.list("kinds") {
                q.kinds = Some(
                    kinds
                        .iter()
                        .map(|v| {
                            v.parse::<u16>().map(i32::from).map_err(|_| {
                                ApiError::bad("kinds", format!("{v:?} is not a kind (0-65535)"))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                );
            }
            if let Some(tags) = p.list("tag") {
                for t in tags {
                    let mut chars = t.chars();
                    match (chars.next(), chars.next()) {
                        (Some(letter), Some(':')) if letter.is_ascii_alphabetic() => {
                            q.tags.entry(letter).or_default().push(t[2..].to_owned());
                        }
                        _ => {
                            return Err(ApiError::bad(
                                "tag",
                                format!("{t:?} is not `x:value` with a single letter x"),
                            ));
                        }
                    }
                }
            }
            q.checked(&api.limits).map_err(query_error)?
        }
    };
    let mut q = api.hide(q);
    q.limit = p.limit(&api)?;
    if let Some(c) = p.get("cursor") {
        q.after = Some(Cursor::decode(c).map_err(|e| ApiError::bad("cursor", e.to_string()))?);
    }
    if api.reader.schema() == crate::model::Schema::Lite {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "lite",
            None,
            "this archive is lite and keeps no event bodies".into(),
        ));
    }
    // One more row than the page tells whether there is a next page.
    let want = q.limit;
    q.limit = want.saturating_add(1);
    let mut rows = api.read("events", api.reader.query_events(&q)).await?;
    let next = if rows.len() > want as usize {
        rows.truncate(want as usize);
        rows.last().map(|e| {
            Cursor {
                created_at: e.created_at,
                id: e.id,
            }
            .encode()
        })
    } else {
        None
    };
    let mut body = String::from(r#"{"events":["#);
    for (i, e) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&super::event_json(e));
    }
    body.push_str(r#"],"next":"#);
    body.push_str(&serde_json::to_string(&next).unwrap_or_else(|_| "null".into()));
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A page of relays, by URL.
#[derive(Serialize, ToSchema)]
pub struct RelaysPage {
    relays: Vec<RelayView>,
    next: Option<String>,
}

/// A relay with what its monitors last saw, and the verdict of every vantage point.
#[derive(Serialize, ToSchema)]
pub struct RelayView {
    #[serde(flatten)]
    relay: RelaySummary,
    /// The consensus: online, offline, disputed or unknown.
    verdict: String,
    /// Vantage points that voted (our monitors and third-party NIP-66 monitors), and those
    /// that agree with the verdict.
    vantage_points: usize,
    agreeing: usize,
}

/// One relay's detail and history, with its consensus.
#[derive(Serialize, ToSchema)]
pub struct RelayDetailView {
    #[serde(flatten)]
    detail: RelayDetail,
    consensus: Consensus,
}

/// Relays with their latest health per monitor.
#[utoipa::path(
    get,
    path = "/v1/relays",
    tag = "relays",
    params(
        ("network" = Option<String>, Query, description = "clearnet, tor, i2p or loki"),
        ("nip" = Option<u16>, Query, description = "Relays whose NIP-11 lists this NIP (0-65535)"),
        ("software" = Option<String>, Query, description = "Relays whose NIP-11 software contains this text (case-insensitive)"),
        ("country" = Option<String>, Query, description = "ISO 3166 country code"),
        ("status" = Option<String>, Query, description = "online, offline or unknown"),
        ("limit" = Option<u32>, Query, description = "Relays per page"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of relays", body = RelaysPage),
        (status = 400, description = "A bad parameter", body = ApiError),
        (status = 429, description = "Rate limited", body = ApiError),
        (status = 503, description = "Database unavailable", body = ApiError),
        (status = 504, description = "Query timed out", body = ApiError),
    )
)]
async fn relays(
    State(api): State<Arc<Api>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let p = Params::new(
        pairs,
        &[
            "network", "nip", "software", "country", "status", "limit", "cursor",
        ],
    )?;
    let network = match p.get("network") {
        None => None,
        Some(n) => Some(n.parse::<crate::model::Network>().map_err(|_| {
            ApiError::bad(
                "network",
                format!("{n:?} is not clearnet, tor, i2p or loki"),
            )
        })?),
    };
    let status = match p.get("status") {
        None => None,
        Some("online") => Some(RelayStatus::Online),
        Some("offline") => Some(RelayStatus::Offline),
        Some("unknown") => Some(RelayStatus::Unknown),
        Some(s) => {
            return Err(ApiError::bad(
                "status",
                format!("{s:?} is not online, offline or unknown"),
            ));
        }
    };
    let country = p.get("country").map(str::to_ascii_uppercase);
    if let Some(c) = &country
        && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err(ApiError::bad(
            "country",
            format!("{c:?} is not a two-letter country code"),
        ));
    }
    let software = p.get("software").map(str::to_owned);
    if software.as_ref().is_some_and(|s| s.len() > 256) {
        return Err(ApiError::bad("software", "at most 256 characters"));
    }
    let after = match p.get("cursor") {
        None => None,
        Some(c) => Some(
            hex::decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad("cursor", "not a cursor this API returned"))?,
        ),
    };
    let filter = RelayFilter {
        network,
        nip: p
            .int::<u16>("nip", "a NIP number (0-65535)")?
            .map(u32::from),
        software,
        country,
        status,
        after,
        limit: p.limit(&api)?,
    };
    let mut page = api.read("relays", api.reader.relays_page(&filter)).await?;
    let next = if page.len() > filter.limit as usize {
        page.truncate(filter.limit as usize);
        page.last().map(|r| hex::encode(r.url.as_bytes()))
    } else {
        None
    };
    let now = crate::runtime::unix_now();
    let max_age = api.site.consensus.max_age_secs;
    let inputs = api
        .read(
            "consensus",
            consensus::inputs(api.reader.as_ref(), &page, false, now, max_age),
        )
        .await?;
    let relays = page
        .into_iter()
        .map(|relay| {
            let c = consensus::judge(&relay, &inputs, now, max_age);
            RelayView {
                relay,
                verdict: c.label,
                vantage_points: c.verdict.vantage_points,
                agreeing: c.verdict.agreeing,
            }
        })
        .collect();
    Ok(axum::Json(RelaysPage { relays, next }).into_response())
}

/// One relay's detail and check history.
#[utoipa::path(
    get,
    path = "/v1/relays/{url}",
    tag = "relays",
    params(
        ("url" = String, Path, description = "The relay URL (percent-encoded), e.g. wss%3A%2F%2Frelay.example.com"),
        ("since" = Option<i64>, Query, description = "History from this unix time"),
        ("until" = Option<i64>, Query, description = "History up to this unix time"),
        ("check" = Option<String>, Query, description = "Only this check type"),
        ("limit" = Option<u32>, Query, description = "History rows"),
    ),
    responses(
        (status = 200, description = "The relay, its history and its consensus", body = RelayDetailView),
        (status = 400, description = "A bad parameter", body = ApiError),
        (status = 404, description = "No such relay in the archive", body = ApiError),
        (status = 503, description = "Database unavailable", body = ApiError),
        (status = 504, description = "Query timed out", body = ApiError),
    )
)]
async fn relay(
    State(api): State<Arc<Api>>,
    Path(url): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let p = Params::new(pairs, &["since", "until", "check", "limit"])?;
    if url.len() > 2048 {
        return Err(ApiError::bad("url", "at most 2048 characters"));
    }
    let check = p.get("check").map(str::to_owned);
    if let Some(c) = &check
        && !crate::model::MetadataType::ALL
            .iter()
            .any(|t| t.as_str() == c)
    {
        return Err(ApiError::bad("check", format!("{c:?} is not a check type")));
    }
    let since = p.int::<i64>("since", "a unix time")?;
    let until = p.int::<i64>("until", "a unix time")?;
    let limit = p.limit(&api)?;
    let found = consensus::relay_detail(&api, &url, since, until, check.as_deref(), limit).await?;
    match found {
        Some((detail, consensus)) => {
            Ok(axum::Json(RelayDetailView { detail, consensus }).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            format!("no relay {url:?} in the archive"),
        )),
    }
}

/// Archive statistics, with the time they were last refreshed.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "stats",
    responses(
        (status = 200, description = "Statistics", body = Stats),
        (status = 503, description = "Database unavailable", body = ApiError),
        (status = 504, description = "Query timed out", body = ApiError),
    )
)]
async fn stats(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let s = api.read("stats", api.reader.stats()).await?;
    Ok(axum::Json(s).into_response())
}
