//! One monitor cycle over a store (spec §7.1): publish the periodic events that are due, then
//! check the relays that are due (never checked, or checked `recheckSecs` ago; oldest first;
//! dormant relays skipped): relays stream through the checks (each network's `maxTasks` at
//! once) and every `chunkSize` results are stored, published as 30166 and checkpointed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::probe::Prober;
use super::publish::Publisher;
use super::report::RelayReport;
use super::tags::{
    Announcement, Discovery, DiscoveryOptions, build_10166, build_30166, build_profile,
    build_relay_list, discovery_from_report,
};
use crate::model::{LifecyclePolicy, Network};
use crate::services::validator::active_relays;
use crate::store::{CheckRow, NewRelay, StateEntry, Store, StoreError};

/// `service_state` service name of the monitor.
pub const SERVICE: &str = "monitor";
/// State type of the per-relay and per-publication checkpoints (`{"timestamp": unix}`).
pub const CHECKPOINT: &str = "checkpoint";
/// State type of the last 30166 published per relay (`{"timestamp", "fingerprint"}`).
pub const PUBLISHED: &str = "published";
/// Checkpoint keys of the periodic publications.
pub const PERIODIC_KEYS: [&str; 3] = ["announcement", "profile", "relay_list"];

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// Per check name: (succeeded, failed).
    pub checks: std::collections::BTreeMap<&'static str, (u64, u64)>,
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
    /// Periodic events (10166, 0, 10002) published.
    pub periodic: u64,
}

fn timestamp_of(v: &Value) -> Option<i64> {
    v.get("timestamp").and_then(Value::as_i64)
}

/// Relays due for a check at `now`, oldest checkpoint first (never-checked first of all, then by
/// discovery time), at most `limit`.
pub async fn due_relays(
    store: &dyn Store,
    networks: &[Network],
    policy: &LifecyclePolicy,
    recheck_secs: i64,
    now: i64,
    limit: Option<u64>,
) -> Result<Vec<NewRelay>, StoreError> {
    let checkpoints: HashMap<String, i64> = store
        .state_get(SERVICE, CHECKPOINT, None)
        .await?
        .into_iter()
        .filter_map(|(k, v)| timestamp_of(&v).map(|t| (k, t)))
        .collect();
    let mut due: Vec<(Option<i64>, NewRelay)> = active_relays(store, policy)
        .await?
        .into_iter()
        .filter(|r| networks.contains(&r.url.network()))
        .map(|r| (checkpoints.get(r.url.as_str()).copied(), r))
        .filter(|(ts, _)| ts.is_none_or(|t| t <= now - recheck_secs))
        .collect();
    due.sort_by_key(|(ts, r)| (ts.unwrap_or(i64::MIN), r.discovered_at));
    let mut relays: Vec<NewRelay> = due.into_iter().map(|(_, r)| r).collect();
    if let Some(max) = limit {
        relays.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
    Ok(relays)
}

/// Publishes the 10166, 0 and 10002 events whose interval has passed; a checkpoint is written
/// only when at least one relay accepted.
async fn publish_periodic(
    store: &dyn Store,
    prober: &Prober,
    publisher: &mut Publisher,
    now: i64,
) -> Result<u64, StoreError> {
    let p = &prober.cfg.publish;
    let pubkey = publisher.keys().public_key();
    let created = now.max(0) as u64;
    let networks = prober.networks.enabled();
    let candidates = [
        (
            "announcement",
            p.announcement.enabled,
            p.announcement.interval_secs,
            build_10166(
                &Announcement::from_config(&prober.cfg, &networks),
                pubkey,
                created,
            ),
        ),
        (
            "profile",
            p.profile.enabled,
            p.profile.interval_secs,
            build_profile(&p.profile, pubkey, created),
        ),
        (
            "relay_list",
            p.relay_list.enabled,
            p.relay_list.interval_secs,
            build_relay_list(&publisher.relay_urls(), pubkey, created),
        ),
    ];
    let mut keys = Vec::new();
    let mut events = Vec::new();
    for (key, enabled, interval, unsigned) in candidates {
        if !enabled {
            continue;
        }
        let last = store
            .state_get(SERVICE, CHECKPOINT, Some(key))
            .await?
            .first()
            .and_then(|(_, v)| timestamp_of(v));
        if last.is_some_and(|t| t > now - interval) {
            continue;
        }
        match unsigned.sign_with_keys(publisher.keys()) {
            Ok(ev) => {
                keys.push(key);
                events.push(ev);
            }
            Err(e) => warn!(event = key, error = %e, "cannot sign"),
        }
    }
    if events.is_empty() {
        return Ok(0);
    }
    let accepted = publisher.publish(&events).await;
    let mut entries = Vec::new();
    for (key, n) in keys.iter().zip(&accepted) {
        if *n > 0 {
            entries.push(StateEntry {
                service: SERVICE.into(),
                kind: CHECKPOINT.into(),
                key: (*key).into(),
                value: json!({ "timestamp": now }),
            });
        } else {
            warn!(event = key, "no publishing relay accepted the event");
        }
    }
    store.state_upsert(&entries).await?;
    Ok(entries.len() as u64)
}

/// Checks `relays` concurrently, each network at most its `maxTasks` at once.
pub async fn check_all(prober: &Prober, relays: &[NewRelay], now: i64) -> Vec<RelayReport> {
    let semaphores: HashMap<Network, Arc<Semaphore>> = Network::ALL
        .into_iter()
        .map(|n| {
            (
                n,
                Arc::new(Semaphore::new(prober.networks.get(n).max_tasks.max(1))),
            )
        })
        .collect();
    join_all(relays.iter().map(|r| {
        let sem = semaphores.get(&r.url.network()).cloned();
        async move {
            let _permit = match &sem {
                Some(s) => s.acquire().await.ok(),
                None => None,
            };
            prober.check_relay(&r.url, now).await
        }
    }))
    .await
}

fn network_semaphores(prober: &Prober) -> HashMap<Network, Arc<Semaphore>> {
    Network::ALL
        .into_iter()
        .map(|n| {
            (
                n,
                Arc::new(Semaphore::new(prober.networks.get(n).max_tasks.max(1))),
            )
        })
        .collect()
}

/// Stores a batch of reports, publishes their 30166 events and writes their checkpoints.
#[allow(clippy::too_many_arguments)]
async fn flush(
    store: &dyn Store,
    cfg: &crate::config::MonitorConfig,
    publisher: Option<&mut Publisher>,
    published: &HashMap<String, Value>,
    opts: DiscoveryOptions,
    batch: Vec<(&NewRelay, RelayReport)>,
    now: i64,
    report: &mut CycleReport,
) -> Result<(), StoreError> {
    let mut events = Vec::new();
    let mut event_relays = Vec::new();
    for (relay, r) in &batch {
        report.checked += 1;
        if r.reachable() {
            report.reachable += 1;
        }
        for (name, ok) in r.outcomes() {
            let e = report.checks.entry(name).or_default();
            if ok {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let rows: Vec<CheckRow> = match r.to_stored() {
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
        };
        report.rows += store.insert_checks(relay, now, &rows).await?;
        if let Some(p) = publisher.as_deref()
            && cfg.publish.discovery.enabled
        {
            let d = discovery_from_report(r, opts);
            if !should_publish(
                &cfg.publish.discovery,
                &d,
                published.get(r.relay.as_str()),
                now,
            ) {
                report.unchanged += 1;
                continue;
            }
            match build_30166(&d, p.keys().public_key(), now.max(0) as u64).sign_with_keys(p.keys())
            {
                Ok(ev) => {
                    events.push(ev);
                    event_relays.push((relay.url.as_str().to_owned(), d.fingerprint()));
                }
                Err(e) => warn!(relay = %relay.url, error = %e, "cannot sign 30166"),
            }
        }
    }
    let mut entries: Vec<StateEntry> = batch
        .iter()
        .map(|(r, _)| StateEntry {
            service: SERVICE.into(),
            kind: CHECKPOINT.into(),
            key: r.url.as_str().into(),
            value: json!({ "timestamp": now }),
        })
        .collect();
    if let Some(p) = publisher
        && !events.is_empty()
    {
        let accepted = p.publish(&events).await;
        for ((url, fp), n) in event_relays.into_iter().zip(accepted) {
            if n > 0 {
                report.published += 1;
                entries.push(StateEntry {
                    service: SERVICE.into(),
                    kind: PUBLISHED.into(),
                    key: url,
                    value: json!({ "timestamp": now, "fingerprint": fp }),
                });
            } else {
                report.publish_failed += 1;
            }
        }
    }
    store.state_upsert(&entries).await.map(|_| ())
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

/// One monitor cycle at `now`.
pub async fn run_cycle(
    store: &dyn Store,
    prober: &Prober,
    mut publisher: Option<&mut Publisher>,
    policy: &LifecyclePolicy,
    now: i64,
) -> Result<CycleReport, StoreError> {
    let cfg = prober.cfg.clone();
    let mut report = CycleReport::default();
    if let Some(p) = publisher.as_deref_mut() {
        report.periodic = publish_periodic(store, prober, p, now).await?;
    }
    let networks = prober.networks.enabled();
    let due = due_relays(
        store,
        &networks,
        policy,
        cfg.recheck_secs,
        now,
        cfg.max_relays,
    )
    .await?;
    let d = &cfg.publish.discovery;
    let published: HashMap<String, Value> = if d.only_on_change || d.min_interval_secs > 0 {
        store
            .state_get(SERVICE, PUBLISHED, None)
            .await?
            .into_iter()
            .collect()
    } else {
        HashMap::new()
    };
    let opts = DiscoveryOptions {
        extra_tags: cfg.publish.discovery.extra_tags,
    };
    // Relays stream through the checks without a barrier per chunk (a chunk would wait for its
    // slowest relay); results are stored and published every `chunk_size` completions.
    let semaphores = network_semaphores(prober);
    let in_flight: usize = networks
        .iter()
        .map(|n| prober.networks.get(*n).max_tasks.max(1))
        .sum::<usize>()
        .max(1)
        * 2;
    let mut results = futures_util::stream::iter(due.iter())
        .map(|relay| {
            let sem = semaphores.get(&relay.url.network()).cloned();
            let (prober, url) = (prober.clone(), relay.url.clone());
            // A task per relay: checks keep running (and their timings stay true) while a
            // finished batch is being stored or published.
            let task = tokio::spawn(async move {
                let _permit = match &sem {
                    Some(s) => s.acquire().await.ok(),
                    None => None,
                };
                prober.check_relay(&url, now).await
            });
            async move {
                let report = match task.await {
                    Ok(r) => r,
                    Err(e) => {
                        let mut r = RelayReport::new(&relay.url, now);
                        r.skipped
                            .push(("all".into(), format!("check task failed: {e}")));
                        r
                    }
                };
                (relay, report)
            }
        })
        .buffer_unordered(in_flight);
    let chunk_size = cfg.chunk_size.max(1) as usize;
    let mut batch: Vec<(&NewRelay, RelayReport)> = Vec::with_capacity(chunk_size);
    loop {
        let next = results.next().await;
        let done = next.is_none();
        if let Some(item) = next {
            batch.push(item);
        }
        if batch.len() >= chunk_size || (done && !batch.is_empty()) {
            flush(
                store,
                &cfg,
                publisher.as_deref_mut(),
                &published,
                opts,
                std::mem::take(&mut batch),
                now,
                &mut report,
            )
            .await?;
        }
        if done {
            break;
        }
    }
    cleanup(store).await?;
    info!(
        checked = report.checked,
        reachable = report.reachable,
        rows = report.rows,
        published = report.published,
        publish_failed = report.publish_failed,
        unchanged = report.unchanged,
        periodic = report.periodic,
        "monitor cycle done"
    );
    Ok(report)
}

/// Removes checkpoints of relays that are gone (spec §7.1 step 5).
async fn cleanup(store: &dyn Store) -> Result<u64, StoreError> {
    let relays: HashSet<String> = store
        .relays()
        .await?
        .into_iter()
        .map(|r| r.url.as_str().to_owned())
        .collect();
    let mut removed = 0;
    for kind in [CHECKPOINT, PUBLISHED] {
        let stale: Vec<String> = store
            .state_get(SERVICE, kind, None)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !relays.contains(k) && !PERIODIC_KEYS.contains(&k.as_str()))
            .collect();
        if !stale.is_empty() {
            removed += store.state_delete(SERVICE, kind, &stale).await?;
        }
    }
    Ok(removed)
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
