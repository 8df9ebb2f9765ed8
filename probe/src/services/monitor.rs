//! One monitor cycle over a store: publish the periodic events that are due, then check the
//! relays that are due for this monitor (never checked by it, or checked `recheckSecs` ago;
//! oldest first; dormant relays skipped): relays stream through the checks (each network's
//! `maxTasks` at once) and every `chunkSize` results are stored, published as 30166 and
//! checkpointed. Results and scheduling state carry the monitor's identity, so several monitors
//! share one database without splitting the relays or mixing their series.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Ctx, CycleReport, Service};
use crate::config::{LimitsConfig, MonitorConfig, NetworksConfig, Schedule};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::model::consensus::{VANTAGE_SERVICE, VANTAGE_TYPE};
use crate::model::{LifecyclePolicy, Network, RelayUrl};
use crate::monitor::discovery::discovery_from_report;
use crate::monitor::publish::Publisher;
use crate::monitor::{Prober, RelayReport, SetupError};
use crate::net::NetworkLimits;
use crate::nips::nip66::{
    Announcement, Discovery, DiscoveryOptions, KIND_ANNOUNCEMENT, KIND_DISCOVERY, build_10166,
    build_30166, build_profile, build_relay_list,
};
use crate::progress::Tracker;
use crate::store::{CheckRow, RelayRow, StateEntry, Store, StoreError, active_relays};

/// State type of the per-relay and per-publication checkpoints (`{"timestamp": unix}`).
pub const CHECKPOINT: &str = "checkpoint";
/// State type of the last 30166 published per relay (`{"timestamp", "fingerprint"}`).
pub const PUBLISHED: &str = "published";
/// Checkpoint keys of the periodic publications, with their event kinds.
pub const PERIODIC: [(&str, u16); 3] = [
    ("announcement", KIND_ANNOUNCEMENT),
    ("profile", 0),
    ("relay_list", 10002),
];

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorReport {
    /// Per check name: (succeeded, failed).
    pub checks: BTreeMap<&'static str, (u64, u64)>,
    /// Per network: (checked, reachable).
    pub networks: BTreeMap<&'static str, (u64, u64)>,
    pub checked: u64,
    pub reachable: u64,
    /// Time-series rows written.
    pub rows: u64,
    /// 30166 events accepted by at least one publishing relay.
    pub published: u64,
    /// 30166 events no publishing relay accepted.
    pub publish_failed: u64,
    /// 30166 events not sent because nothing changed.
    pub unchanged: u64,
    /// Periodic events published, by kind.
    pub periodic: Vec<u16>,
    /// Round trips measured: (network, phase open/read/write, milliseconds).
    pub rtt: Vec<(&'static str, &'static str, u64)>,
}

impl CycleReport for MonitorReport {
    fn attempted(&self) -> u64 {
        self.checked
    }
    /// Relays that did not answer at all.
    fn failed(&self) -> u64 {
        self.checked - self.reachable
    }
    fn record(&self, m: &Metrics) {
        let mm = &m.monitor;
        for (net, (checked, reachable)) in &self.networks {
            mm.relays_checked.with_label_values(&[net]).inc_by(*checked);
            mm.relays_reachable
                .with_label_values(&[net])
                .inc_by(*reachable);
        }
        for (check, (_, failed)) in &self.checks {
            mm.check_failures
                .with_label_values(&[check])
                .inc_by(*failed);
        }
        let kind = KIND_DISCOVERY.to_string();
        mm.events_published
            .with_label_values(&[kind.as_str()])
            .inc_by(self.published);
        for k in &self.periodic {
            mm.events_published
                .with_label_values(&[k.to_string().as_str()])
                .inc();
        }
        mm.publish_failures.inc_by(self.publish_failed);
        for (net, phase, ms) in &self.rtt {
            mm.rtt
                .with_label_values(&[net, phase])
                .observe(*ms as f64 / 1000.0);
        }
    }
}

/// The monitor service.
pub struct Monitor {
    prober: Prober,
    identity: Identity,
    publish_relays: Vec<RelayUrl>,
    policy: LifecyclePolicy,
    networks: NetworksConfig,
}

impl Monitor {
    pub fn new(
        cfg: MonitorConfig,
        networks: NetworksConfig,
        limits: LimitsConfig,
        identity: Identity,
        policy: LifecyclePolicy,
    ) -> Result<Self, SetupError> {
        let publish_relays = publish_relays(&cfg, limits.allow_private);
        if !identity.is_configured() {
            warn!(
                env = %cfg.publish.key_env,
                "no monitor key configured: checks are stored but nothing is published"
            );
        }
        let prober = Prober::new(cfg, networks.clone(), limits, identity.keys().clone(), &[])?;
        Ok(Monitor {
            prober,
            identity,
            publish_relays,
            policy,
            networks,
        })
    }

    /// The prober (for tests and the `check` command's peers).
    pub fn prober(&self) -> &Prober {
        &self.prober
    }

    fn cfg(&self) -> &MonitorConfig {
        &self.prober.cfg
    }

    /// A publisher for one cycle, when this monitor publishes at all.
    fn publisher(&self) -> Option<Publisher> {
        (self.identity.is_configured() && !self.publish_relays.is_empty()).then(|| {
            Publisher::new(
                self.prober.dialer.clone(),
                self.identity.keys().clone(),
                self.publish_relays.clone(),
                Duration::from_secs_f64(self.cfg().publish.timeout_secs),
            )
        })
    }

    /// Relays due for this monitor at `now`, oldest checkpoint first (never-checked first of
    /// all, then by discovery time), at most `maxRelays`.
    pub async fn due_relays(
        &self,
        store: &dyn Store,
        now: i64,
    ) -> Result<Vec<RelayRow>, StoreError> {
        let service = self.identity.state_service();
        let checkpoints: HashMap<String, i64> = store
            .state_get(&service, CHECKPOINT, None)
            .await?
            .into_iter()
            .filter_map(|(k, v)| timestamp_of(&v).map(|t| (k, t)))
            .collect();
        let networks = self.networks.enabled();
        let recheck = self.cfg().recheck_secs;
        let mut due: Vec<(Option<i64>, RelayRow)> = active_relays(store, &self.policy)
            .await?
            .into_iter()
            .filter(|r| networks.contains(&r.url.network()))
            .map(|r| (checkpoints.get(r.url.as_str()).copied(), r))
            .filter(|(ts, _)| ts.is_none_or(|t| t <= now - recheck))
            .collect();
        due.sort_by_key(|(ts, r)| (ts.unwrap_or(i64::MIN), r.discovered_at));
        let mut relays: Vec<RelayRow> = due.into_iter().map(|(_, r)| r).collect();
        if let Some(max) = self.cfg().max_relays {
            relays.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        }
        Ok(relays)
    }

    /// Publishes the 10166, 0 and 10002 events whose interval has passed; a checkpoint is
    /// written only when at least one relay accepted. The kinds published.
    async fn publish_periodic(
        &self,
        store: &dyn Store,
        publisher: &mut Publisher,
        now: i64,
    ) -> Result<Vec<u16>, StoreError> {
        let p = &self.cfg().publish;
        let keys = self.identity.keys();
        let (pubkey, created) = (keys.public_key(), now.max(0) as u64);
        let announcement = Announcement::from_config(self.cfg(), &self.networks.enabled());
        let candidates = [
            (
                PERIODIC[0],
                p.announcement.enabled,
                p.announcement.interval_secs,
                build_10166(&announcement, pubkey, created),
            ),
            (
                PERIODIC[1],
                p.profile.enabled,
                p.profile.interval_secs,
                build_profile(&p.profile, pubkey, created),
            ),
            (
                PERIODIC[2],
                p.relay_list.enabled,
                p.relay_list.interval_secs,
                build_relay_list(&publisher.relay_urls(), pubkey, created),
            ),
        ];
        let service = self.identity.state_service();
        let mut due = Vec::new();
        let mut events = Vec::new();
        for ((key, kind), enabled, interval, unsigned) in candidates {
            let last = store
                .state_get(&service, CHECKPOINT, Some(key))
                .await?
                .first()
                .and_then(|(_, v)| timestamp_of(v));
            if !enabled || last.is_some_and(|t| t > now - interval) {
                continue;
            }
            match unsigned.sign_with_keys(keys) {
                Ok(ev) => {
                    due.push((key, kind));
                    events.push(ev);
                }
                Err(e) => warn!(event = key, error = %e, "cannot sign"),
            }
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let accepted = publisher.publish(&events).await;
        let mut entries = Vec::new();
        let mut kinds = Vec::new();
        for ((key, kind), n) in due.iter().zip(&accepted) {
            if *n == 0 {
                warn!(event = key, "no publishing relay accepted the event");
                continue;
            }
            kinds.push(*kind);
            entries.push(StateEntry {
                service: service.clone(),
                kind: CHECKPOINT.into(),
                key: (*key).into(),
                value: json!({ "timestamp": now }),
            });
        }
        store.state_upsert(&entries).await?;
        Ok(kinds)
    }

    /// Checks `due` with each network's concurrency, handing every `chunkSize` finished reports
    /// to `flush`; no chunk waits for its slowest relay.
    async fn check_stream(
        &self,
        ctx: &Ctx,
        due: &[RelayRow],
        tracker: &Tracker,
        mut chunk: Chunk<'_>,
    ) -> Result<MonitorReport, StoreError> {
        let now = ctx.now();
        let limits = NetworkLimits::new(&self.networks);
        let in_flight = limits.total(&self.networks.enabled()) * 2;
        let mut results = futures_util::stream::iter(due.iter().cloned())
            .map(|relay| {
                let (prober, url, limits) =
                    (self.prober.clone(), relay.url.clone(), limits.clone());
                // A task per relay: checks keep running (and their timings stay true) while a
                // finished batch is being stored or published.
                let task = tokio::spawn(async move {
                    let _permit = limits.acquire(url.network()).await;
                    prober.check_relay(&url, now).await
                });
                async move {
                    let report = task.await.unwrap_or_else(|e| {
                        let mut r = RelayReport::new(&relay.url, now);
                        r.skipped
                            .push(("all".into(), format!("check task failed: {e}")));
                        r
                    });
                    (relay, report)
                }
            })
            .buffer_unordered(in_flight);
        let size = self.cfg().chunk_size.max(1) as usize;
        let mut batch: Vec<(RelayRow, RelayReport)> = Vec::with_capacity(size);
        while let Some(item) = results.next().await {
            tracker.done(item.1.reachable());
            batch.push(item);
            if batch.len() >= size {
                chunk.flush(ctx, std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            chunk.flush(ctx, batch).await?;
        }
        Ok(chunk.report)
    }
}

/// What a chunk of finished reports needs: where to publish, what was published before.
struct Chunk<'a> {
    monitor: &'a Monitor,
    publisher: Option<&'a mut Publisher>,
    published: HashMap<String, Value>,
    report: MonitorReport,
}

impl Chunk<'_> {
    /// Stores a batch of reports, publishes their 30166 events and writes their checkpoints.
    async fn flush(
        &mut self,
        ctx: &Ctx,
        batch: Vec<(RelayRow, RelayReport)>,
    ) -> Result<(), StoreError> {
        let (store, now) = (ctx.store.as_ref(), ctx.now());
        let cfg = self.monitor.cfg();
        let service = self.monitor.identity.state_service();
        let monitor_id = self.monitor.identity.monitor_id();
        let opts = DiscoveryOptions {
            extra_tags: cfg.publish.discovery.extra_tags,
        };
        let mut events = Vec::new();
        let mut fingerprints = Vec::new();
        for (relay, r) in &batch {
            self.count(r);
            self.report.rows += store
                .insert_checks(relay, now, &monitor_id, &check_rows(relay, r))
                .await?;
            if self.publisher.is_none() || !cfg.publish.discovery.enabled {
                continue;
            }
            let d = discovery_from_report(r, opts);
            let last = self.published.get(r.relay.as_str());
            if !should_publish(&cfg.publish.discovery, &d, last, now) {
                self.report.unchanged += 1;
                continue;
            }
            let keys = self.monitor.identity.keys();
            match build_30166(&d, keys.public_key(), now.max(0) as u64).sign_with_keys(keys) {
                Ok(ev) => {
                    events.push(ev);
                    fingerprints.push((relay.url.as_str().to_owned(), d.fingerprint()));
                }
                Err(e) => warn!(relay = %relay.url, error = %e, "cannot sign 30166"),
            }
        }
        let mut entries: Vec<StateEntry> = batch
            .iter()
            .map(|(r, _)| StateEntry {
                service: service.clone(),
                kind: CHECKPOINT.into(),
                key: r.url.as_str().into(),
                value: json!({ "timestamp": now }),
            })
            .collect();
        if let Some(p) = self.publisher.as_deref_mut()
            && !events.is_empty()
        {
            let accepted = p.publish(&events).await;
            for ((url, fp), n) in fingerprints.into_iter().zip(accepted) {
                if n == 0 {
                    self.report.publish_failed += 1;
                    continue;
                }
                self.report.published += 1;
                entries.push(StateEntry {
                    service: service.clone(),
                    kind: PUBLISHED.into(),
                    key: url,
                    value: json!({ "timestamp": now, "fingerprint": fp }),
                });
            }
        }
        store.state_upsert(&entries).await.map(|_| ())
    }

    fn count(&mut self, r: &RelayReport) {
        let rep = &mut self.report;
        rep.checked += 1;
        let reachable = r.reachable();
        rep.reachable += u64::from(reachable);
        let net = network_name(&r.network);
        let n = rep.networks.entry(net).or_default();
        n.0 += 1;
        n.1 += u64::from(reachable);
        if let Some(d) = r.rtt.as_ref().map(|c| &c.data) {
            for (phase, ms) in [
                ("open", d.rtt_open),
                ("read", d.rtt_read),
                ("write", d.rtt_write),
            ] {
                if let Some(ms) = ms {
                    rep.rtt.push((net, phase, ms));
                }
            }
        }
        for (name, ok) in r.outcomes() {
            let e = rep.checks.entry(name).or_default();
            if ok {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
}

/// The static label of a network name (bounded metric labels).
fn network_name(name: &str) -> &'static str {
    Network::ALL
        .into_iter()
        .find(|n| n.as_str() == name)
        .map_or("other", |n| n.as_str())
}

/// The stored rows of one report (logged and skipped when not storable).
fn check_rows(relay: &RelayRow, r: &RelayReport) -> Vec<CheckRow> {
    match r.to_stored() {
        Ok(rows) => rows
            .into_iter()
            .map(|s| CheckRow {
                metadata: s.metadata,
                success: s.success,
                reason: s.reason,
            })
            .collect(),
        Err(e) => {
            warn!(relay = %relay.url, error = %e, "check results not storable");
            Vec::new()
        }
    }
}

fn timestamp_of(v: &Value) -> Option<i64> {
    v.get("timestamp").and_then(Value::as_i64)
}

/// The publishing relays that parse (others are logged and skipped).
fn publish_relays(cfg: &MonitorConfig, allow_private: bool) -> Vec<RelayUrl> {
    cfg.publish
        .relays
        .iter()
        .filter_map(|r| {
            let parsed = if allow_private {
                RelayUrl::parse_allowing_local(r)
            } else {
                RelayUrl::parse(r)
            };
            parsed
                .map_err(|e| warn!(relay = %r, error = %e, "publishing relay skipped"))
                .ok()
        })
        .collect()
}

/// Whether a relay's new 30166 should go out, given the last one published.
fn should_publish(
    cfg: &crate::config::monitor::DiscoveryConfig,
    d: &Discovery,
    last: Option<&Value>,
    now: i64,
) -> bool {
    let Some(last) = last else {
        return true;
    };
    let last_at = timestamp_of(last);
    if cfg.min_interval_secs > 0 && last_at.is_some_and(|t| t > now - cfg.min_interval_secs) {
        return false;
    }
    if !cfg.only_on_change {
        return true;
    }
    let same = last.get("fingerprint").and_then(Value::as_str) == Some(d.fingerprint().as_str());
    let fresh = last_at.is_some_and(|t| t > now - cfg.max_age_secs);
    !(same && fresh)
}

/// Removes this monitor's checkpoints of relays that are gone.
async fn cleanup(store: &dyn Store, service: &str) -> Result<u64, StoreError> {
    let relays: HashSet<String> = store
        .relays()
        .await?
        .into_iter()
        .map(|r| r.url.as_str().to_owned())
        .collect();
    let mut removed = 0;
    for kind in [CHECKPOINT, PUBLISHED] {
        let stale: Vec<String> = store
            .state_get(service, kind, None)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !relays.contains(k) && !PERIODIC.iter().any(|(p, _)| p == k))
            .collect();
        if !stale.is_empty() {
            removed += store.state_delete(service, kind, &stale).await?;
        }
    }
    Ok(removed)
}

#[async_trait]
impl Service for Monitor {
    type Report = MonitorReport;

    fn name(&self) -> &'static str {
        "monitor"
    }

    fn schedule(&self) -> Schedule {
        self.cfg().schedule()
    }

    fn wakes_on_promotion(&self) -> bool {
        true
    }

    async fn run_cycle(&self, ctx: &Ctx) -> Result<MonitorReport, StoreError> {
        let (store, now) = (ctx.store.as_ref(), ctx.now());
        // Connections to publishing relays live for one cycle.
        let mut publisher = self.publisher();
        let periodic = match publisher.as_mut() {
            Some(p) => self.publish_periodic(store, p, now).await?,
            None => Vec::new(),
        };
        // Where this monitor stands, for the consensus' speed-of-light bounds.
        if let (true, Some(g)) = (self.identity.is_configured(), &self.cfg().publish.geohash) {
            store
                .state_upsert(&[StateEntry {
                    service: VANTAGE_SERVICE.into(),
                    kind: VANTAGE_TYPE.into(),
                    key: self.identity.keys().public_key().to_hex(),
                    value: json!({ "geohash": g, "timestamp": now }),
                }])
                .await?;
        }
        let due = self.due_relays(store, now).await?;
        let d = &self.cfg().publish.discovery;
        let service = self.identity.state_service();
        let published: HashMap<String, Value> = if d.only_on_change || d.min_interval_secs > 0 {
            store
                .state_get(&service, PUBLISHED, None)
                .await?
                .into_iter()
                .collect()
        } else {
            HashMap::new()
        };
        let tracker = ctx.progress.start("monitor", due.len() as u64, "relays");
        let chunk = Chunk {
            monitor: self,
            publisher: publisher.as_mut(),
            published,
            report: MonitorReport::default(),
        };
        let result = self.check_stream(ctx, &due, &tracker, chunk).await;
        tracker.finish();
        if let Some(p) = publisher {
            p.close().await;
        }
        let mut report = result?;
        report.periodic = periodic;
        cleanup(store, &service).await?;
        info!(
            checked = report.checked,
            reachable = report.reachable,
            rows = report.rows,
            published = report.published,
            publish_failed = report.publish_failed,
            unchanged = report.unchanged,
            periodic = report.periodic.len(),
            "monitor cycle done"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::monitor::DiscoveryConfig;

    #[test]
    fn only_on_change_skips_identical_fresh_events() {
        let d = Discovery {
            d: "wss://r.example.com".into(),
            rtt_open: Some(10),
            ..Default::default()
        };
        let cfg = DiscoveryConfig {
            only_on_change: true,
            max_age_secs: 3600,
            ..Default::default()
        };
        let last = json!({"timestamp": 1000, "fingerprint": d.fingerprint()});
        assert!(!should_publish(&cfg, &d, Some(&last), 2000));
        let jitter = Discovery {
            rtt_open: Some(99),
            ..d.clone()
        };
        assert!(
            !should_publish(&cfg, &jitter, Some(&last), 2000),
            "RTT jitter is not a change"
        );
        assert!(should_publish(&cfg, &d, Some(&last), 5000), "too old");
        let changed = Discovery {
            nips: vec!["1".into()],
            ..d.clone()
        };
        assert!(should_publish(&cfg, &changed, Some(&last), 2000));
        assert!(should_publish(&cfg, &d, None, 2000));
        let always = DiscoveryConfig::default();
        assert!(should_publish(&always, &d, Some(&last), 2000));
        let limited = DiscoveryConfig {
            min_interval_secs: 3600,
            ..Default::default()
        };
        assert!(
            !should_publish(&limited, &changed, Some(&last), 2000),
            "at most hourly"
        );
        assert!(should_publish(&limited, &changed, Some(&last), 4601));
    }
}
