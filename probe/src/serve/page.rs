//! The web page: `GET /` for a browser (a table of relays with filters, sorting and pages,
//! rendered on the server so it works without JavaScript), `GET /relay?url=` (one relay: its
//! verdict, every monitor's latest result, its check history), `GET /v1/map` (every relay with
//! its position and verdict, for the map) and `/assets/…` (the map's script and style, built
//! from `web/` by `npm` and served from `--web-dir`; without them the page is the table alone).
//!
//! The relays come from one snapshot, [`Snapshot`], built by the shared queries and the
//! consensus ([`super::consensus`]) and kept for [`SNAPSHOT_TTL`]: the page, its filters and the
//! map read it, never the database per click.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Serialize;

use super::consensus::{self, Consensus};
use super::http::{ApiError, Params};
use super::{Api, ReadError};
use crate::model::consensus::Label;
use crate::store::read::{CheckResult, RelaySummary};

/// Where the image installs the page's built assets (the api's default `--web-dir`).
pub const INSTALLED_WEB_DIR: &str = "/usr/share/brotr/web";

/// How long one snapshot of the relays serves the page and the map.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(30);
/// Rows of one page of the table.
pub const PAGE_ROWS: usize = 100;
/// Relays in a snapshot, at most.
const MAX_RELAYS: usize = 200_000;

/// One relay as the page and the map show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MapRelay {
    pub url: String,
    pub network: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub country: Option<String>,
    pub software: Option<String>,
    pub nips: Vec<i64>,
    /// online, offline, disputed or unknown: the consensus label.
    pub verdict: String,
    /// Median RTT to open (ms) of the vantage points that agree it is online.
    pub rtt_ms: Option<u32>,
    /// Vantage points that voted, and those that agree with the verdict.
    pub monitors: usize,
    pub agreeing: usize,
    /// Flagged observations (against the majority, faster than light, stale).
    pub flags: usize,
}

/// Every relay with its verdict, at one time.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Snapshot {
    pub generated_at: i64,
    pub relays: Vec<MapRelay>,
}

impl MapRelay {
    pub fn new(r: &RelaySummary, c: &Consensus) -> Self {
        MapRelay {
            url: r.url.clone(),
            network: r.network.clone(),
            lat: r.lat,
            lon: r.lon,
            country: r.country.clone(),
            software: r.software.clone(),
            nips: r.supported_nips.clone(),
            verdict: c.label.clone(),
            rtt_ms: c.median_rtt_open(),
            monitors: c.verdict.vantage_points,
            agreeing: c.verdict.agreeing,
            flags: c.verdict.disagreements.len(),
        }
    }
}

/// The snapshot and its JSON, shared by every request until it is older than the TTL.
pub struct Cached {
    built: Instant,
    pub snapshot: Arc<Snapshot>,
    pub json: Arc<String>,
}

/// The current snapshot: the cached one, or a new one built now (one builder at a time; the
/// others wait for it).
pub async fn snapshot(api: &Arc<Api>) -> Result<Arc<Cached>, ReadError> {
    let mut slot = api.snapshot.lock().await;
    if let Some(c) = slot.as_ref()
        && c.built.elapsed() < SNAPSHOT_TTL
    {
        return Ok(c.clone());
    }
    let now = crate::runtime::unix_now();
    let max_age = api.site.consensus.max_age_secs;
    let reader = api.reader.clone();
    let snapshot = api
        .read_long("snapshot", async move {
            let relays = consensus::all_relays(reader.as_ref(), MAX_RELAYS).await?;
            let inputs = consensus::inputs(reader.as_ref(), &relays, true, now, max_age).await?;
            Ok(Snapshot {
                generated_at: now,
                relays: relays
                    .iter()
                    .map(|r| MapRelay::new(r, &consensus::judge(r, &inputs, now, max_age)))
                    .collect(),
            })
        })
        .await?;
    let json = serde_json::to_string(&snapshot).unwrap_or_else(|_| "{}".into());
    let cached = Arc::new(Cached {
        built: Instant::now(),
        snapshot: Arc::new(snapshot),
        json: Arc::new(json),
    });
    *slot = Some(cached.clone());
    Ok(cached)
}

/// Columns the table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Url,
    Network,
    Verdict,
    Rtt,
    Country,
    Software,
    Monitors,
}

impl SortKey {
    const ALL: [(SortKey, &'static str, &'static str); 7] = [
        (SortKey::Url, "url", "Relay"),
        (SortKey::Network, "network", "Network"),
        (SortKey::Verdict, "verdict", "Verdict"),
        (SortKey::Rtt, "rtt_ms", "RTT (ms)"),
        (SortKey::Country, "country", "Country"),
        (SortKey::Software, "software", "Software"),
        (SortKey::Monitors, "monitors", "Monitors"),
    ];

    fn key(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _, _)| *k == self)
            .map_or("url", |(_, key, _)| key)
    }
}

/// What the table shows: the filters (the same as the map's), the order, the page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    pub network: Option<String>,
    pub nip: Option<i64>,
    pub software: Option<String>,
    pub country: Option<String>,
    pub verdict: Option<Label>,
    pub sort: Option<SortKey>,
    pub desc: bool,
    /// 1-based.
    pub page: usize,
}

impl View {
    /// From the query string; a bad value is a 400 naming the parameter.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<View, ApiError> {
        let p = Params::new(
            pairs,
            &[
                "network", "nip", "software", "country", "verdict", "sort", "order", "page",
            ],
        )?;
        // An empty field of the form means "any".
        let text = |k: &str| p.get(k).map(str::trim).filter(|v| !v.is_empty());
        let network = match text("network") {
            None => None,
            Some(n) => Some(
                n.parse::<crate::model::Network>()
                    .map_err(|_| {
                        ApiError::bad(
                            "network",
                            format!("{n:?} is not clearnet, tor, i2p or loki"),
                        )
                    })?
                    .as_str()
                    .to_owned(),
            ),
        };
        let nip = match text("nip") {
            None => None,
            Some(n) => Some(
                n.parse::<u16>()
                    .map_err(|_| {
                        ApiError::bad("nip", format!("{n:?} is not a NIP number (0-65535)"))
                    })?
                    .into(),
            ),
        };
        let software = text("software").map(str::to_lowercase);
        if software.as_ref().is_some_and(|s| s.len() > 256) {
            return Err(ApiError::bad("software", "at most 256 characters"));
        }
        let country = text("country").map(str::to_ascii_uppercase);
        if let Some(c) = &country
            && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(ApiError::bad(
                "country",
                format!("{c:?} is not a two-letter country code"),
            ));
        }
        let verdict = match text("verdict") {
            None => None,
            Some(v) => Some(Label::parse(v).ok_or_else(|| {
                ApiError::bad(
                    "verdict",
                    format!("{v:?} is not online, offline, disputed or unknown"),
                )
            })?),
        };
        let sort = match text("sort") {
            None => None,
            Some(s) => Some(
                SortKey::ALL
                    .iter()
                    .find(|(_, k, _)| *k == s)
                    .map(|(k, _, _)| *k)
                    .ok_or_else(|| {
                        let keys: Vec<&str> = SortKey::ALL.iter().map(|(_, k, _)| *k).collect();
                        ApiError::bad("sort", format!("{s:?} is not one of {}", keys.join(", ")))
                    })?,
            ),
        };
        let desc = match text("order") {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(o) => return Err(ApiError::bad("order", format!("{o:?} is not asc or desc"))),
        };
        let page = match text("page") {
            None => 1,
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| ApiError::bad("page", format!("{n:?} is not a page number")))?,
        };
        Ok(View {
            network,
            nip,
            software,
            country,
            verdict,
            sort,
            desc,
            page,
        })
    }

    fn keeps(&self, r: &MapRelay) -> bool {
        self.network.as_ref().is_none_or(|n| &r.network == n)
            && self.nip.is_none_or(|n| r.nips.contains(&n))
            && self.software.as_ref().is_none_or(|s| {
                r.software
                    .as_ref()
                    .is_some_and(|x| x.to_lowercase().contains(s.as_str()))
            })
            && self
                .country
                .as_ref()
                .is_none_or(|c| r.country.as_deref() == Some(c.as_str()))
            && self.verdict.is_none_or(|v| r.verdict == v.as_str())
    }

    /// The relays this view keeps, in its order (ties by URL).
    pub fn select<'a>(&self, relays: &'a [MapRelay]) -> Vec<&'a MapRelay> {
        let mut rows: Vec<&MapRelay> = relays.iter().filter(|r| self.keeps(r)).collect();
        if let Some(key) = self.sort {
            // Unknown values sort last either way.
            rows.sort_by(|a, b| {
                use std::cmp::Ordering;
                fn last<T: Ord>(a: &Option<T>, b: &Option<T>, desc: bool) -> Ordering {
                    match (a, b) {
                        (Some(x), Some(y)) if desc => y.cmp(x),
                        (Some(x), Some(y)) => x.cmp(y),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => Ordering::Equal,
                    }
                }
                let d = self.desc;
                let flip = |o: Ordering| if d { o.reverse() } else { o };
                let o = match key {
                    SortKey::Url => flip(a.url.cmp(&b.url)),
                    SortKey::Network => flip(a.network.cmp(&b.network)),
                    SortKey::Verdict => flip(a.verdict.cmp(&b.verdict)),
                    SortKey::Monitors => flip(a.monitors.cmp(&b.monitors)),
                    SortKey::Rtt => last(&a.rtt_ms, &b.rtt_ms, d),
                    SortKey::Country => last(&a.country, &b.country, d),
                    SortKey::Software => last(&a.software, &b.software, d),
                };
                o.then_with(|| a.url.cmp(&b.url))
            });
        }
        rows
    }

    /// The query string of this view with `page` (and the sort of `sort` when given, toggling
    /// the order when it is the current one).
    fn href(&self, page: usize, sort: Option<SortKey>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(n) = &self.network {
            q.append_pair("network", n);
        }
        if let Some(n) = self.nip {
            q.append_pair("nip", &n.to_string());
        }
        if let Some(s) = &self.software {
            q.append_pair("software", s);
        }
        if let Some(c) = &self.country {
            q.append_pair("country", c);
        }
        if let Some(v) = self.verdict {
            q.append_pair("verdict", v.as_str());
        }
        let (key, desc) = match sort {
            Some(k) => (Some(k), self.sort == Some(k) && !self.desc),
            None => (self.sort, self.desc),
        };
        if let Some(k) = key {
            q.append_pair("sort", k.key());
            q.append_pair("order", if desc { "desc" } else { "asc" });
        }
        if page > 1 {
            q.append_pair("page", &page.to_string());
        }
        let q = q.finish();
        if q.is_empty() {
            "/".into()
        } else {
            format!("/?{q}")
        }
    }
}

fn relay_href(url: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("url", url);
    format!("/relay?{}", q.finish())
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/assets/app.css";
                script type="module" src="/assets/app.js" {}
            }
            body {
                (body)
                footer {
                    p {
                        "Brotr archive. The same URL is a read-only Nostr relay; the data is at "
                        a href="/openapi.json" { "/openapi.json" } "."
                    }
                }
            }
        }
    }
}

fn verdict_badge(v: &str) -> Markup {
    html! { span class={ "verdict verdict-" (v) } { (v) } }
}

/// The index page: the map's place, the filters, one page of the table.
pub fn index(s: &Snapshot, view: &View) -> Markup {
    let rows = view.select(&s.relays);
    let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
    let page = view.page.min(pages);
    let first = (page - 1) * PAGE_ROWS;
    let shown = &rows[first.min(rows.len())..(first + PAGE_ROWS).min(rows.len())];
    let networks = ["clearnet", "tor", "i2p", "loki"];
    let verdicts = ["online", "offline", "disputed", "unknown"];
    layout(
        "Brotr: relays",
        html! {
            header {
                h1 { "Brotr" }
                p #summary { (s.relays.len()) " relays" }
            }
            main {
                section #map aria-label="Map of relays" data-src="/v1/map" {}
                form #filters method="get" action="/" role="search" aria-label="Filter relays" {
                    label for="f-network" { "Network" }
                    select #f-network name="network" {
                        option value="" { "any" }
                        @for n in networks {
                            option selected[view.network.as_deref() == Some(n)] { (n) }
                        }
                    }
                    label for="f-nip" { "Supports NIP" }
                    input #f-nip name="nip" type="number" min="0" max="65535"
                        value=[view.nip.map(|n| n.to_string())];
                    label for="f-software" { "Software" }
                    input #f-software name="software" value=[view.software.as_deref()];
                    label for="f-country" { "Country" }
                    input #f-country name="country" maxlength="2" value=[view.country.as_deref()];
                    label for="f-verdict" { "Verdict" }
                    select #f-verdict name="verdict" {
                        option value="" { "any" }
                        @for v in verdicts {
                            option selected[view.verdict.map(Label::as_str) == Some(v)] { (v) }
                        }
                    }
                    button type="submit" { "Filter" }
                }
                p #count aria-live="polite" {
                    @if rows.is_empty() {
                        "No relays match."
                    } @else {
                        "Showing " (first + 1) "–" (first + shown.len()) " of " (rows.len()) " relays"
                    }
                }
                table #relays {
                    caption { "Relays" }
                    thead {
                        tr {
                            @for (key, name, label) in SortKey::ALL {
                                th scope="col" data-key=(name)
                                    aria-sort=[(view.sort == Some(key)).then_some(if view.desc { "descending" } else { "ascending" })] {
                                    a href=(view.href(1, Some(key))) { (label) }
                                }
                            }
                        }
                    }
                    tbody {
                        @for r in shown {
                            tr data-url=(r.url) {
                                td { a href=(relay_href(&r.url)) { (r.url) } }
                                td { (r.network) }
                                td { (verdict_badge(&r.verdict)) }
                                td { @if let Some(ms) = r.rtt_ms { (ms) } @else { "—" } }
                                td { @if let Some(c) = &r.country { (c) } @else { "—" } }
                                td { @if let Some(sw) = &r.software { (sw) } @else { "—" } }
                                td { (r.monitors) }
                            }
                        }
                    }
                }
                nav #pages aria-label="Pages" {
                    @if page > 1 {
                        a rel="prev" href=(view.href(page - 1, None)) { "Previous" }
                        " "
                    }
                    "Page " (page) " of " (pages)
                    @if page < pages {
                        " "
                        a rel="next" href=(view.href(page + 1, None)) { "Next" }
                    }
                }
            }
        },
    )
}

fn when(t: i64) -> String {
    // Unix time as UTC `YYYY-MM-DD HH:MM` without a date library: days since the epoch to a
    // civil date (Howard Hinnant's algorithm).
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// One relay's page: verdict, monitors, history.
pub fn relay_page(r: &RelaySummary, c: &Consensus, history: &[CheckResult]) -> Markup {
    let flags: std::collections::HashMap<&str, String> = c
        .verdict
        .disagreements
        .iter()
        .map(|d| {
            let text = match &d.flag {
                crate::model::consensus::Flag::AgainstMajority { said_open } => format!(
                    "against the majority (said {})",
                    if *said_open { "up" } else { "down" }
                ),
                crate::model::consensus::Flag::FasterThanLight { rtt_ms, min_ms } => {
                    format!("faster than light ({rtt_ms} ms, at least {min_ms} ms possible)")
                }
                crate::model::consensus::Flag::Stale { age_secs } => {
                    format!("stale ({} h old)", age_secs / 3600)
                }
            };
            (d.monitor.as_str(), text)
        })
        .collect();
    layout(
        &format!("Brotr: {}", r.url),
        html! {
            header {
                p { a href="/" { "All relays" } }
                h1 { (r.url) }
                p #verdict {
                    "Verdict: " (verdict_badge(&c.label)) ", "
                    (c.verdict.agreeing) " of " (c.verdict.vantage_points) " vantage points agree"
                }
            }
            main {
                dl #facts {
                    dt { "Network" } dd { (r.network) }
                    @if let Some(n) = &r.name { dt { "Name" } dd { (n) } }
                    @if let Some(s) = &r.software { dt { "Software" } dd { (s) } }
                    @if let Some(c) = &r.country { dt { "Country" } dd { (c) } }
                    @if !r.supported_nips.is_empty() {
                        dt { "NIPs" }
                        dd { (r.supported_nips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) }
                    }
                    @if !c.verdict.rtt_by_region.is_empty() {
                        dt { "Median RTT to open, by monitor region (geohash cell)" }
                        dd {
                            (c.verdict.rtt_by_region.iter().map(|(r, ms)| format!("{r}: {ms} ms")).collect::<Vec<_>>().join(", "))
                        }
                    }
                    dt { "Readable" } dd { (yes_no(c.verdict.readable.value)) }
                    dt { "Writable" } dd { (yes_no(c.verdict.writable.value)) }
                    dt { "Auth required" } dd { (yes_no(c.verdict.auth_required.value)) }
                    dt { "Payment required" } dd { (yes_no(c.verdict.payment_required.value)) }
                }
                table #monitors {
                    caption { "Monitors: each vantage point's latest result" }
                    thead {
                        tr {
                            th scope="col" { "Monitor" }
                            th scope="col" { "Source" }
                            th scope="col" { "Says" }
                            th scope="col" { "RTT open (ms)" }
                            th scope="col" { "Checked" }
                            th scope="col" { "Weight" }
                            th scope="col" { "Flag" }
                        }
                    }
                    tbody {
                        @for w in &c.observations {
                            @let o = &w.observation;
                            tr data-monitor=(o.monitor) {
                                td { code { @if o.monitor.is_empty() { "(keyless)" } @else { (o.monitor) } } }
                                td { @match o.source { crate::model::consensus::Source::Own => "own", crate::model::consensus::Source::ThirdParty => "third party" } }
                                td { @match o.open { Some(true) => "up", Some(false) => "down", None => "nothing" } }
                                td { @if let Some(ms) = o.rtt_open_ms { (ms) } @else { "—" } }
                                td { (when(o.at)) }
                                td { (format!("{:.2}", w.weight)) }
                                td { @if let Some(f) = flags.get(o.monitor.as_str()) { (f) } @else { "—" } }
                            }
                        }
                    }
                }
                table #history {
                    caption { "History: check results, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Checked" }
                            th scope="col" { "Check" }
                            th scope="col" { "Monitor" }
                            th scope="col" { "Result" }
                        }
                    }
                    tbody {
                        @for h in history {
                            tr {
                                td { (when(h.generated_at)) }
                                td { (h.check) }
                                td { code { (short(&h.monitor)) } }
                                td {
                                    @if h.success { "ok" } @else { "failed" }
                                    @if let Some(r) = &h.reason { ": " (r) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not known",
    }
}

fn short(monitor: &str) -> String {
    if monitor.is_empty() {
        "(keyless)".into()
    } else {
        monitor.chars().take(12).collect::<String>() + "…"
    }
}

fn html_response(status: StatusCode, m: Markup) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response();
    // Everything comes from here: no inline script, no other host.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

fn error_page(e: ApiError) -> Response {
    let body = layout(
        "Brotr: error",
        html! {
            main {
                h1 { "Cannot show this page" }
                p #error {
                    @if let Some(p) = &e.parameter { "Parameter " code { (p) } ": " }
                    (e.message)
                }
                p { a href="/" { "All relays" } }
            }
        },
    );
    html_response(e.status, body)
}

/// `GET /` for a browser.
pub async fn index_page(api: &Arc<Api>, pairs: Vec<(String, String)>) -> Response {
    let view = match View::parse(pairs) {
        Ok(v) => v,
        Err(e) => return error_page(e),
    };
    match snapshot(api).await {
        Ok(c) => html_response(StatusCode::OK, index(&c.snapshot, &view)),
        Err(e) => error_page(e.into()),
    }
}

/// `GET /relay?url=…`.
pub async fn relay(
    State(api): State<Arc<Api>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let url = match Params::new(pairs, &["url"]) {
        Ok(p) => match p.get("url") {
            Some(u) if u.len() <= 2048 => u.to_owned(),
            Some(_) => return error_page(ApiError::bad("url", "at most 2048 characters")),
            None => return error_page(ApiError::bad("url", "missing: /relay?url=wss://…")),
        },
        Err(e) => return error_page(e),
    };
    match consensus::relay_detail(&api, &url, None, None, None, 50).await {
        Ok(Some((detail, c))) => html_response(
            StatusCode::OK,
            relay_page(&detail.relay, &c, &detail.history),
        ),
        Ok(None) => error_page(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            format!("no relay {url:?} in the archive"),
        )),
        Err(e) => error_page(e.into()),
    }
}

/// Every relay with its position and verdict (the map's data).
#[utoipa::path(
    get,
    path = "/v1/map",
    tag = "relays",
    responses(
        (status = 200, description = "Every relay with its position and verdict", body = Snapshot),
        (status = 503, description = "Database unavailable", body = ApiError),
        (status = 504, description = "Query timed out", body = ApiError),
    )
)]
pub async fn map(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let c = snapshot(&api).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        c.json.as_str().to_owned(),
    )
        .into_response())
}

/// The page's built assets, from `--web-dir`: only the files the build makes.
pub async fn asset(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    let kind = match name.as_str() {
        "app.js" => "text/javascript; charset=utf-8",
        "app.css" => "text/css; charset=utf-8",
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    let Some(dir) = &api.site.web_dir else {
        return (
            StatusCode::NOT_FOUND,
            "no web assets: start the api with --web-dir (built by `npm ci && node build.mjs` in web/)\n",
        )
            .into_response();
    };
    match tokio::fs::read(FsPath::new(dir).join(&name)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "asset not built\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(
        url: &str,
        network: &str,
        verdict: &str,
        rtt: Option<u32>,
        sw: Option<&str>,
    ) -> MapRelay {
        MapRelay {
            url: url.into(),
            network: network.into(),
            lat: Some(1.0),
            lon: Some(2.0),
            country: Some("DE".into()),
            software: sw.map(Into::into),
            nips: vec![1, 11],
            verdict: verdict.into(),
            rtt_ms: rtt,
            monitors: 3,
            agreeing: 3,
            flags: 0,
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_view_filters_and_sorts_like_the_map() {
        let rs = vec![
            relay("wss://c", "clearnet", "online", Some(30), Some("strfry")),
            relay("wss://a", "tor", "offline", None, None),
            relay(
                "wss://b",
                "clearnet",
                "online",
                Some(10),
                Some("nostr-rs-relay"),
            ),
            relay("wss://d", "clearnet", "disputed", None, Some("STRFRY 1.0")),
        ];
        let urls = |v: &View| {
            v.select(&rs)
                .iter()
                .map(|r| r.url.as_str())
                .collect::<Vec<_>>()
        };
        let v = View::parse(pairs(&[("network", "clearnet"), ("sort", "rtt_ms")])).unwrap();
        assert_eq!(
            urls(&v),
            vec!["wss://b", "wss://c", "wss://d"],
            "unknown RTT last"
        );
        let v = View::parse(pairs(&[("sort", "rtt_ms"), ("order", "desc")])).unwrap();
        assert_eq!(urls(&v), vec!["wss://c", "wss://b", "wss://a", "wss://d"]);
        let v = View::parse(pairs(&[("software", "strfry")])).unwrap();
        assert_eq!(
            urls(&v),
            vec!["wss://c", "wss://d"],
            "case-insensitive, by relay order"
        );
        let v = View::parse(pairs(&[("verdict", "offline"), ("network", "")])).unwrap();
        assert_eq!(urls(&v), vec!["wss://a"]);
        let v = View::parse(pairs(&[("nip", "11"), ("country", "de")])).unwrap();
        assert_eq!(urls(&v).len(), 4);
        let v = View::parse(pairs(&[("nip", "50")])).unwrap();
        assert!(urls(&v).is_empty());
    }

    #[test]
    fn a_bad_view_names_its_parameter() {
        for (k, v) in [
            ("network", "moon"),
            ("nip", "-1"),
            ("country", "DEU"),
            ("verdict", "up"),
            ("sort", "id"),
            ("order", "up"),
            ("page", "0"),
            ("bogus", "1"),
        ] {
            let e = View::parse(pairs(&[(k, v)])).unwrap_err();
            assert_eq!(e.parameter.as_deref(), Some(k), "{k}={v}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn the_index_pages_the_table_and_escapes_what_relays_say() {
        let mut rs: Vec<MapRelay> = (0..250)
            .map(|i| {
                relay(
                    &format!("wss://r{i:03}"),
                    "clearnet",
                    "online",
                    Some(i),
                    None,
                )
            })
            .collect();
        rs[0].software = Some("<script>alert(1)</script>".into());
        let s = Snapshot {
            generated_at: 0,
            relays: rs,
        };
        let page1 = index(&s, &View::parse(vec![]).unwrap()).into_string();
        assert_eq!(page1.matches("<tr data-url=").count(), PAGE_ROWS);
        assert!(page1.contains("Showing 1–100 of 250 relays"));
        assert!(
            page1.contains(r#"<a rel="next" href="/?page=2">"#),
            "{page1}"
        );
        assert!(!page1.contains("rel=\"prev\""));
        assert!(!page1.contains("<script>alert"));
        assert!(page1.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let v = View::parse(pairs(&[
            ("page", "3"),
            ("sort", "rtt_ms"),
            ("order", "desc"),
        ]))
        .unwrap();
        let page3 = index(&s, &v).into_string();
        assert_eq!(page3.matches("<tr data-url=").count(), 50);
        assert!(page3.contains("Showing 201–250 of 250 relays"));
        assert!(page3.contains(r#"aria-sort="descending""#));
        assert!(
            page3.contains(r#"href="/?sort=rtt_ms&amp;order=desc&amp;page=2""#),
            "{page3}"
        );
        // The sorted column's link flips the order; the others sort ascending.
        assert!(page3.contains(r#"href="/?sort=rtt_ms&amp;order=asc""#));
        assert!(page3.contains(r#"href="/?sort=url&amp;order=asc""#));
    }

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_800_000_000), "2027-01-15 08:00 UTC");
        assert_eq!(when(951_782_400), "2000-02-29 00:00 UTC");
    }
}
