//! Synchronizer settings (the reference system's, with its weaknesses fixed: `since` is honoured for new
//! relays, `endLag` defaults to 0, resumption looks back, filters can be overridden per relay).

use garde::Validate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A NIP-01 filter as written in the config (`{"kinds":[1]}`); `since`/`until`/`limit` are set by
/// the synchronizer and must not be given.
pub type FilterSpec = Map<String, Value>;

/// Per-relay settings that replace the global ones.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RelayOverride {
    /// The relay, as stored (`wss://relay.example.com`).
    #[garde(length(min = 6, max = 2048))]
    pub url: String,
    /// Filters for this relay instead of `filters`.
    #[serde(default)]
    #[garde(custom(check_filters))]
    pub filters: Option<Vec<FilterSpec>>,
    /// Events per REQ for this relay instead of `limit`.
    #[serde(default)]
    #[garde(range(min = 1, max = 5000))]
    pub limit: Option<usize>,
    /// Skip this relay entirely.
    #[serde(default)]
    #[garde(skip)]
    pub disabled: bool,
}

/// Synchronizer settings.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncConfig {
    /// Seconds from the start of one cycle to the start of the next.
    #[garde(range(min = 1, max = 604_800))]
    pub interval_secs: u64,
    /// Exit (code 1) after this many failed cycles in a row; 0 = never.
    #[garde(range(max = 1000))]
    pub max_consecutive_failures: u32,
    /// NIP-01 filters to archive (default: one empty filter = every event). Each filter is paged
    /// and has a cursor of its own.
    #[garde(custom(check_filters))]
    pub filters: Vec<FilterSpec>,
    /// Unix time a relay without a cursor is synced from.
    #[garde(range(min = 0))]
    pub since: i64,
    /// Events newer than `now - endLag` seconds are left for the next cycle (0: up to now).
    #[garde(range(min = 0, max = 604_800))]
    pub end_lag_secs: i64,
    /// On resume, re-read this many seconds before the cursor, so events that arrive late or are
    /// backdated are still caught (duplicates are dropped by the store).
    #[garde(range(min = 0, max = 2_592_000))]
    pub lookback_secs: i64,
    /// Events asked for per REQ. Lowered automatically to a relay's own cap when it truncates
    /// earlier.
    #[garde(range(min = 1, max = 5000))]
    pub limit: usize,
    /// Events written per database transaction.
    #[garde(range(min = 1, max = 10_000))]
    pub batch_size: usize,
    /// Events whose JSON is larger than this many bytes are not stored.
    #[garde(range(min = 1024, max = 67_108_864))]
    pub max_event_bytes: usize,
    /// Seconds a relay may stay silent in the middle of an answer before the page is abandoned.
    #[garde(range(min = 0.1, max = 3600.0))]
    pub idle_timeout_secs: f64,
    /// Seconds one page (REQ → EOSE) may take at most, however the relay drips it.
    #[garde(range(min = 0.1, max = 3600.0))]
    pub page_timeout_secs: f64,
    /// Seconds one relay may be synced per cycle; the cursor keeps what was done.
    #[garde(range(min = 1, max = 86_400))]
    pub max_relay_secs: u64,
    /// Use NIP-77 negentropy on relays that really support it (probed), REQ paging otherwise.
    #[garde(skip)]
    pub negentropy: bool,
    /// After catching up, stay subscribed this many seconds per cycle and store new events as
    /// they arrive (0: off).
    #[garde(range(max = 86_400))]
    pub live_secs: u64,
    /// Relays handled by this replica: `i/n` takes the relays whose URL hash is `i` mod `n`
    /// (also `--shard`).
    #[serde(default)]
    #[garde(pattern(r"^[0-9]{1,4}/[0-9]{1,4}$"), custom(check_shard))]
    pub shard: Option<String>,
    /// Per-relay replacements of `filters`/`limit`.
    #[garde(length(max = 10_000), dive)]
    pub overrides: Vec<RelayOverride>,
    /// Add relay URLs found in archived events (NIP-65 `r` tags, kind 3/2 content, tag hints,
    /// NIP-66 `d` tags) as validator candidates, once per stored event.
    #[garde(skip)]
    pub extract_hints: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            interval_secs: 300,
            max_consecutive_failures: 5,
            filters: vec![Map::new()],
            since: 0,
            end_lag_secs: 0,
            lookback_secs: 3600,
            limit: 500,
            batch_size: 1000,
            max_event_bytes: 256 * 1024,
            idle_timeout_secs: 30.0,
            page_timeout_secs: 120.0,
            max_relay_secs: 3600,
            negentropy: true,
            live_secs: 0,
            shard: None,
            overrides: Vec::new(),
            extract_hints: true,
        }
    }
}

/// Which share of the relays one replica syncs (`--shard i/n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether `url` belongs to this shard. FNV-1a of the URL: stable across versions and
    /// platforms (std's hasher is not), so every replica agrees.
    pub fn owns(&self, url: &str) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in url.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("shard {s:?} must be i/n with 0 <= i < n, e.g. 0/3");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Keys the synchronizer sets itself; a configured filter must not carry them.
const RESERVED: [&str; 3] = ["since", "until", "limit"];

impl SyncConfig {
    /// The override for `url`, if any.
    pub fn override_for(&self, url: &str) -> Option<&RelayOverride> {
        self.overrides.iter().find(|o| o.url == url)
    }

    /// The configured shard (`Shard::ALL` when none). The config was checked, so it parses.
    pub fn shard(&self) -> Shard {
        self.shard
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(Shard::ALL)
    }

    pub fn schedule(&self) -> super::Schedule {
        super::Schedule {
            interval_secs: self.interval_secs,
            max_consecutive_failures: self.max_consecutive_failures,
        }
    }
}

/// Parses a filter as written in the config into a NIP-01 filter.
pub fn parse_filter(spec: &FilterSpec) -> Result<nostr::Filter, String> {
    if let Some(k) = RESERVED.iter().find(|k| spec.contains_key(**k)) {
        return Err(format!(
            "sets {k:?}; the synchronizer sets since/until/limit itself \
             (use sync.since and sync.endLagSecs)"
        ));
    }
    let json = Value::Object(spec.clone()).to_string();
    <nostr::Filter as nostr::JsonUtil>::from_json(&json)
        .map_err(|e| format!("is not a NIP-01 filter: {e}"))
}

fn check_filters<T: AsFilters + ?Sized>(filters: &T, _: &()) -> garde::Result {
    let Some(filters) = filters.as_filters() else {
        return Ok(());
    };
    if filters.is_empty() {
        return Err(garde::Error::new(
            "must hold at least one filter ({} = everything)",
        ));
    }
    for (i, f) in filters.iter().enumerate() {
        parse_filter(f).map_err(|e| garde::Error::new(format!("[{i}] {e}")))?;
    }
    Ok(())
}

/// `Vec<FilterSpec>` and `Option<Vec<FilterSpec>>` for [`check_filters`].
trait AsFilters {
    fn as_filters(&self) -> Option<&[FilterSpec]>;
}
impl AsFilters for Vec<FilterSpec> {
    fn as_filters(&self) -> Option<&[FilterSpec]> {
        Some(self)
    }
}
impl AsFilters for Option<Vec<FilterSpec>> {
    fn as_filters(&self) -> Option<&[FilterSpec]> {
        self.as_deref()
    }
}

fn check_shard(shard: &Option<String>, _: &()) -> garde::Result {
    match shard {
        Some(s) => s.parse::<Shard>().map(|_| ()).map_err(garde::Error::new),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: &SyncConfig) -> Result<(), String> {
        super::super::ProbeConfig {
            sync: c.clone(),
            ..Default::default()
        }
        .check()
    }

    #[test]
    fn defaults_check() {
        let c = SyncConfig::default();
        check(&c).unwrap();
        assert_eq!(c.end_lag_secs, 0);
        assert_eq!(c.filters, vec![Map::new()]);
        assert_eq!(c.shard(), Shard::ALL);
    }

    #[test]
    fn reserved_and_malformed_filters_are_named() {
        let mut c = SyncConfig {
            filters: vec![serde_json::from_str(r#"{"limit":5}"#).unwrap()],
            ..Default::default()
        };
        let e = check(&c).unwrap_err();
        assert!(
            e.contains("sync.filters[0] sets") && e.contains("limit"),
            "{e}"
        );
        c.filters = vec![serde_json::from_str(r#"{"kinds":"one"}"#).unwrap()];
        let e = check(&c).unwrap_err();
        assert!(e.contains("not a NIP-01 filter"), "{e}");
        c.filters = vec![];
        assert!(check(&c).unwrap_err().contains("at least one filter"));
        c.filters = vec![Map::new()];
        c.overrides = vec![RelayOverride {
            url: "wss://a.example".into(),
            filters: Some(vec![serde_json::from_str(r#"{"until":5}"#).unwrap()]),
            limit: None,
            disabled: false,
        }];
        let e = check(&c).unwrap_err();
        assert!(e.contains("sync.overrides[0].filters"), "{e}");
        c.overrides.clear();
        c.shard = Some("3/3".into());
        assert!(check(&c).unwrap_err().contains("sync.shard"));
        c.shard = Some("1/3".into());
        assert_eq!(c.shard(), Shard { index: 1, count: 3 });
    }

    #[test]
    fn shards_parse_and_partition() {
        assert_eq!(
            "1/3".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 3 }
        );
        for bad in ["3/3", "1", "a/b", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let urls: Vec<String> = (0..300).map(|i| format!("wss://r{i}.example")).collect();
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        let mut sizes = [0usize; 3];
        for u in &urls {
            let owners: Vec<usize> = (0..3).filter(|i| shards[*i].owns(u)).collect();
            assert_eq!(owners.len(), 1, "{u} has exactly one owner");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|s| *s > 60), "roughly even: {sizes:?}");
        assert!(urls.iter().all(|u| Shard::ALL.owns(u)));
    }
}
