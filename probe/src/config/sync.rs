//! Synchronizer settings (spec §8, with its weaknesses 7 and 8 fixed: `since` is honoured for new
//! relays, `endLag` defaults to 0, resumption looks back, filters can be overridden per relay).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A NIP-01 filter as written in the config (`{"kinds":[1]}`); `since`/`until`/`limit` are set by
/// the synchronizer and must not be given.
pub type FilterSpec = Map<String, Value>;

/// Per-relay settings that replace the global ones.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RelayOverride {
    /// The relay, as stored (`wss://relay.example.com`).
    #[cfg_attr(feature = "schemars", schemars(length(min = 6, max = 2048)))]
    pub url: String,
    /// Filters for this relay instead of `filters`.
    #[serde(default)]
    pub filters: Option<Vec<FilterSpec>>,
    /// Events per REQ for this relay instead of `limit`.
    #[serde(default)]
    #[cfg_attr(feature = "schemars", schemars(range(min = 1, max = 5000)))]
    pub limit: Option<usize>,
    /// Skip this relay entirely.
    #[serde(default)]
    pub disabled: bool,
}

/// Synchronizer settings.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncConfig {
    /// Seconds from the start of one cycle to the start of the next.
    pub interval_secs: u64,
    /// Exit (code 1) after this many failed cycles in a row; 0 = never.
    pub max_consecutive_failures: u32,
    /// NIP-01 filters to archive (default: one empty filter = every event). Each filter is paged
    /// and has a cursor of its own.
    pub filters: Vec<FilterSpec>,
    /// Unix time a relay without a cursor is synced from.
    pub since: i64,
    /// Events newer than `now - endLag` seconds are left for the next cycle (0: up to now).
    #[cfg_attr(feature = "schemars", schemars(range(min = 0, max = 604800)))]
    pub end_lag_secs: i64,
    /// On resume, re-read this many seconds before the cursor, so events that arrive late or are
    /// backdated are still caught (duplicates are dropped by the store).
    #[cfg_attr(feature = "schemars", schemars(range(min = 0, max = 2592000)))]
    pub lookback_secs: i64,
    /// Events asked for per REQ. Lowered automatically to a relay's own cap when it truncates
    /// earlier.
    #[cfg_attr(feature = "schemars", schemars(range(min = 10, max = 5000)))]
    pub limit: usize,
    /// Events written per database transaction.
    #[cfg_attr(feature = "schemars", schemars(range(min = 100, max = 10000)))]
    pub batch_size: usize,
    /// Events whose JSON is larger than this many bytes are not stored.
    #[cfg_attr(feature = "schemars", schemars(range(min = 1024)))]
    pub max_event_bytes: usize,
    /// Seconds a relay may stay silent in the middle of an answer before the page is abandoned.
    pub idle_timeout_secs: f64,
    /// Seconds one page (REQ → EOSE) may take at most, however the relay drips it.
    pub page_timeout_secs: f64,
    /// Seconds one relay may be synced per cycle; the cursor keeps what was done.
    pub max_relay_secs: u64,
    /// Use NIP-77 negentropy on relays that really support it (probed), REQ paging otherwise.
    pub negentropy: bool,
    /// After catching up, stay subscribed this many seconds per cycle and store new events as
    /// they arrive (0: off).
    pub live_secs: u64,
    /// Relays handled by this replica: `i/n` takes the relays whose URL hash is `i` mod `n`
    /// (also `--shard`).
    #[serde(default)]
    pub shard: Option<String>,
    /// Per-relay replacements of `filters`/`limit`.
    pub overrides: Vec<RelayOverride>,
    /// Add relay URLs found in archived events (NIP-65 `r` tags, kind 3/2 content, tag hints,
    /// NIP-66 `d` tags) as validator candidates, once per stored event.
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
    /// Checks what serde cannot: filters are NIP-01 filters without reserved keys, the shard
    /// parses, ranges hold. Messages name the offending setting.
    pub fn check(&self) -> Result<(), String> {
        check_filters("sync.filters", &self.filters)?;
        for (i, o) in self.overrides.iter().enumerate() {
            if let Some(f) = &o.filters {
                check_filters(&format!("sync.overrides[{i}].filters ({})", o.url), f)?;
            }
            if o.limit == Some(0) {
                return Err(format!("sync.overrides[{i}].limit must be at least 1"));
            }
        }
        if !(1..=5000).contains(&self.limit) {
            return Err(format!("sync.limit {} must be 1..=5000", self.limit));
        }
        if self.batch_size == 0 {
            return Err("sync.batchSize must be at least 1".into());
        }
        if !(0..=604_800).contains(&self.end_lag_secs) {
            return Err(format!(
                "sync.endLagSecs {} must be 0..=604800",
                self.end_lag_secs
            ));
        }
        if self.lookback_secs < 0 {
            return Err("sync.lookbackSecs must not be negative".into());
        }
        if !(self.idle_timeout_secs > 0.0 && self.page_timeout_secs > 0.0) {
            return Err("sync.idleTimeoutSecs and sync.pageTimeoutSecs must be positive".into());
        }
        if let Some(s) = &self.shard {
            s.parse::<Shard>().map_err(|e| format!("sync.shard: {e}"))?;
        }
        Ok(())
    }

    /// The override for `url`, if any.
    pub fn override_for(&self, url: &str) -> Option<&RelayOverride> {
        self.overrides.iter().find(|o| o.url == url)
    }
}

fn check_filters(what: &str, filters: &[FilterSpec]) -> Result<(), String> {
    if filters.is_empty() {
        return Err(format!(
            "{what} must hold at least one filter ({{}} = everything)"
        ));
    }
    for (i, f) in filters.iter().enumerate() {
        if let Some(k) = RESERVED.iter().find(|k| f.contains_key(**k)) {
            return Err(format!(
                "{what}[{i}] sets {k:?}; the synchronizer sets since/until/limit itself \
                 (use sync.since and sync.endLagSecs)"
            ));
        }
        let json = Value::Object(f.clone()).to_string();
        <nostr::Filter as nostr::JsonUtil>::from_json(&json)
            .map_err(|e| format!("{what}[{i}] is not a NIP-01 filter: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_follow_the_issue() {
        let c = SyncConfig::default();
        c.check().unwrap();
        assert_eq!(c.end_lag_secs, 0);
        assert_eq!(c.filters, vec![Map::new()]);
    }

    #[test]
    fn reserved_and_malformed_filters_are_named() {
        let mut c = SyncConfig {
            filters: vec![serde_json::from_str(r#"{"limit":5}"#).unwrap()],
            ..Default::default()
        };
        let e = c.check().unwrap_err();
        assert!(e.contains("sync.filters[0]") && e.contains("limit"), "{e}");
        c.filters = vec![serde_json::from_str(r#"{"kinds":"one"}"#).unwrap()];
        let e = c.check().unwrap_err();
        assert!(e.contains("not a NIP-01 filter"), "{e}");
        c.filters = vec![];
        assert!(c.check().unwrap_err().contains("at least one filter"));
        c.filters = vec![Map::new()];
        c.overrides = vec![RelayOverride {
            url: "wss://a.example".into(),
            filters: Some(vec![serde_json::from_str(r#"{"until":5}"#).unwrap()]),
            limit: None,
            disabled: false,
        }];
        let e = c.check().unwrap_err();
        assert!(
            e.contains("overrides[0]") && e.contains("wss://a.example"),
            "{e}"
        );
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
