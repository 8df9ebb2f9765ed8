//! Finder: relay URLs from external HTTP JSON APIs. Relay hints inside events are extracted once
//! per event by [`crate::model::relay_hints`] where events are ingested.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tracing::{info, warn};

use super::{Ctx, CycleReport, Service};
pub use crate::config::{ApiSource, FinderConfig};
use crate::config::{NetworksConfig, Schedule};
use crate::metrics::Metrics;
use crate::model::{Candidate, RelayUrl};
use crate::net::{HttpClient, HttpError, tls_config};
use crate::store::{StateEntry, StoreError};

const SERVICE: &str = "finder";
const CHECKPOINT: &str = "checkpoint";

/// Why one API source yielded nothing.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url}: response is not JSON: {reason}")]
    NotJson { url: String, reason: String },
    #[error("{url}: expression {expression:?} selected {got}, not a list")]
    NotAList {
        url: String,
        expression: String,
        got: &'static str,
    },
    #[error("{url}: bad JMESPath expression {expression:?}: {reason}")]
    BadExpression {
        url: String,
        expression: String,
        reason: String,
    },
}

/// Checks every source's JMESPath expression (config load time; exit code 2 on error).
pub fn check_expressions(cfg: &FinderConfig) -> Result<(), SourceError> {
    for s in &cfg.sources {
        jmespath::compile(&s.select).map_err(|e| SourceError::BadExpression {
            url: s.url.clone(),
            expression: s.select.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Applies `src.select` to a response body and returns the string items (pure).
pub fn select_urls(src: &ApiSource, body: &[u8]) -> Result<Vec<String>, SourceError> {
    let json: Value = serde_json::from_slice(body).map_err(|e| SourceError::NotJson {
        url: src.url.clone(),
        reason: e.to_string(),
    })?;
    let expr = jmespath::compile(&src.select).map_err(|e| SourceError::BadExpression {
        url: src.url.clone(),
        expression: src.select.clone(),
        reason: e.to_string(),
    })?;
    let found = expr.search(json).map_err(|e| SourceError::BadExpression {
        url: src.url.clone(),
        expression: src.select.clone(),
        reason: e.to_string(),
    })?;
    let value: Value = serde_json::to_value(&*found).unwrap_or(Value::Null);
    match value {
        Value::Array(items) => Ok(items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()),
        other => Err(SourceError::NotAList {
            url: src.url.clone(),
            expression: src.select.clone(),
            got: kind_of(&other),
        }),
    }
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinderReport {
    pub sources_fetched: u64,
    pub sources_failed: u64,
    pub sources_cooling: u64,
    /// URLs found that are not relay URLs (or are local/private, refused).
    pub rejected: u64,
    /// New candidates stored.
    pub candidates: u64,
    /// Per source URL: (new candidates, failed).
    pub by_source: Vec<(String, u64, bool)>,
}

impl CycleReport for FinderReport {
    fn attempted(&self) -> u64 {
        self.sources_fetched + self.sources_failed
    }
    fn failed(&self) -> u64 {
        self.sources_failed
    }
    fn record(&self, m: &Metrics) {
        for (source, found, failed) in &self.by_source {
            m.finder
                .urls_found
                .with_label_values(&[source.as_str()])
                .inc_by(*found);
            if *failed {
                m.finder
                    .source_failures
                    .with_label_values(&[source.as_str()])
                    .inc();
            }
        }
    }
}

/// The finder service.
pub struct Finder {
    cfg: FinderConfig,
    http: HttpClient,
    allow_local: bool,
}

impl Finder {
    /// Checks every source's expression (a bad one is a configuration error) and builds the
    /// guarded HTTP client.
    pub fn new(cfg: FinderConfig, allow_local: bool) -> Result<Self, SourceError> {
        let http = HttpClient::new(&NetworksConfig::default(), tls_config(&[]), allow_local)?;
        Self::with_http(cfg, http, allow_local)
    }

    /// With a given client: tests reach a loopback API while the URLs it lists are still held
    /// to the SSRF rules (`allow_local` false).
    pub fn with_http(
        cfg: FinderConfig,
        http: HttpClient,
        allow_local: bool,
    ) -> Result<Self, SourceError> {
        check_expressions(&cfg)?;
        Ok(Finder {
            cfg,
            http,
            allow_local,
        })
    }

    /// URLs of one source's answer, as candidates not seen yet this cycle.
    fn candidates(
        &self,
        urls: &[String],
        seen: &mut HashSet<RelayUrl>,
        now: i64,
        report: &mut FinderReport,
    ) -> Vec<Candidate> {
        let mut out = Vec::new();
        for raw in urls {
            let parsed = if self.allow_local {
                RelayUrl::parse_allowing_local(raw)
            } else {
                RelayUrl::parse(raw)
            };
            match parsed {
                Ok(url) if seen.insert(url.clone()) => out.push(Candidate::new(url, now)),
                Ok(_) => {}
                Err(_) => report.rejected += 1,
            }
        }
        out
    }
}

#[async_trait]
impl Service for Finder {
    type Report = FinderReport;

    fn name(&self) -> &'static str {
        "finder"
    }

    fn schedule(&self) -> Schedule {
        self.cfg.schedule()
    }

    /// Fetches every enabled source past its cooldown, stores the relay URLs as candidates and
    /// checkpoints the sources that succeeded (failed ones retry next cycle).
    async fn run_cycle(&self, ctx: &Ctx) -> Result<FinderReport, StoreError> {
        let (store, now, cfg) = (ctx.store.as_ref(), ctx.now(), &self.cfg);
        let mut report = FinderReport::default();
        let last: HashMap<String, i64> = store
            .state_get(SERVICE, CHECKPOINT, None)
            .await?
            .into_iter()
            .map(|(k, v)| (k, v.get("timestamp").and_then(Value::as_i64).unwrap_or(0)))
            .collect();
        let due: Vec<&ApiSource> = cfg
            .sources
            .iter()
            .filter(|s| s.enabled)
            .filter(|s| {
                last.get(&s.url)
                    .is_none_or(|t| now - t >= cfg.cooldown_secs)
            })
            .collect();
        report.sources_cooling =
            cfg.sources.iter().filter(|s| s.enabled).count() as u64 - due.len() as u64;
        let tracker = ctx.progress.start("finder", due.len() as u64, "sources");
        let mut seen = HashSet::new();
        let mut checkpoints = Vec::new();
        let timeout = Duration::from_secs_f64(cfg.timeout_secs);
        for src in due {
            let fetched = match self
                .http
                .get_ok(
                    &src.url,
                    "application/json",
                    cfg.max_response_bytes,
                    timeout,
                )
                .await
            {
                Ok(body) => select_urls(src, &body),
                Err(e) => Err(e.into()),
            };
            tracker.done(fetched.is_ok());
            let urls = match fetched {
                Ok(urls) => urls,
                Err(e) => {
                    report.sources_failed += 1;
                    report.by_source.push((src.url.clone(), 0, true));
                    warn!(source = %src.url, reason = %e, "relay list source failed");
                    continue;
                }
            };
            report.sources_fetched += 1;
            let candidates = self.candidates(&urls, &mut seen, now, &mut report);
            let new = store.insert_candidates(&candidates).await?;
            report.candidates += new;
            report.by_source.push((src.url.clone(), new, false));
            info!(source = %src.url, urls = urls.len(), new, "fetched relay list");
            checkpoints.push(StateEntry {
                service: SERVICE.into(),
                kind: CHECKPOINT.into(),
                key: src.url.clone(),
                value: serde_json::json!({ "timestamp": now }),
            });
        }
        tracker.finish();
        store.state_upsert(&checkpoints).await?;
        info!(
            fetched = report.sources_fetched,
            failed = report.sources_failed,
            cooling = report.sources_cooling,
            rejected = report.rejected,
            candidates = report.candidates,
            "finder cycle done"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(expression: &str) -> ApiSource {
        ApiSource {
            url: "https://api.example".into(),
            select: expression.into(),
            enabled: true,
        }
    }

    #[test]
    fn selects_urls_with_jmespath_shapes() {
        let cases: [(&str, &str, &[&str]); 5] = [
            (
                r#"["wss://a.com", "wss://b.com"]"#,
                "[*]",
                &["wss://a.com", "wss://b.com"],
            ),
            (
                r#"{"data": {"relays": ["wss://a.com"]}}"#,
                "data.relays",
                &["wss://a.com"],
            ),
            (
                r#"[{"url": "wss://a.com"}, {"url": 5}, {"x": 1}]"#,
                "[*].url",
                &["wss://a.com"],
            ),
            (
                r#"{"wss://a.com": {}, "wss://b.com": {}}"#,
                "keys(@)",
                &["wss://a.com", "wss://b.com"],
            ),
            (r#"["wss://a.com", 1, null, true]"#, "[*]", &["wss://a.com"]),
        ];
        for (body, expr, want) in cases {
            assert_eq!(
                select_urls(&src(expr), body.as_bytes()).unwrap(),
                want,
                "{expr} on {body}"
            );
        }
    }

    #[test]
    fn names_what_was_wrong() {
        let e = select_urls(&src("[*]"), b"<html>nope</html>").unwrap_err();
        assert!(e.to_string().contains("is not JSON"), "{e}");
        let e = select_urls(&src("[*]"), br#"{"a": 1}"#).unwrap_err();
        assert!(
            e.to_string().contains("null, not a list") || e.to_string().contains("not a list"),
            "{e}"
        );
        let e = select_urls(&src("data"), br#"{"data": {"a": 1}}"#).unwrap_err();
        assert!(
            e.to_string().contains("selected an object, not a list"),
            "{e}"
        );
        let e = select_urls(&src("[*"), b"[]").unwrap_err();
        assert!(e.to_string().contains("bad JMESPath"), "{e}");
    }

    #[test]
    fn bad_expressions_are_caught_at_load() {
        let mut cfg = FinderConfig::default();
        assert!(check_expressions(&cfg).is_ok());
        cfg.sources.push(src("[?"));
        assert!(
            check_expressions(&cfg)
                .unwrap_err()
                .to_string()
                .contains("https://api.example")
        );
    }
}
