//! Wiring: the watches, both controllers per scope (all namespaces, or each listed one), leader
//! election, and shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::{Children, Context, Scope, brotr_deployment, prune_meta, reconcile, relay_monitor};
use crate::crd::{BrotrDeployment, RelayMonitor};
use crate::plan::Defaults;
use crate::render::{INSTANCE, MANAGED_BY, MANAGER, OWNER_KIND};
use crate::telemetry::{Metrics, Readiness};

/// How the controllers run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    pub defaults: Defaults,
    /// Reconciles at once per kind and scope.
    pub concurrency: u16,
    /// Name of this replica (Events, leases).
    pub identity: String,
    /// How often the caches are compared with what the API server lists (see `watchdog`).
    pub watchdog_every: Duration,
}

/// How the controllers stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `shutdown` resolved.
    Shutdown,
    /// A watch fell behind the API server (the message says which objects): the caller
    /// starts the controllers again on a new client.
    StaleCache(String),
}

/// Fails fast with a clear message when the CRDs are missing or the operator may not list them.
pub async fn check_crds(client: &Client, scope: &Scope) -> Result<(), String> {
    let lp = ListParams::default().limit(1);
    scope
        .api::<BrotrDeployment>(client)
        .list_metadata(&lp)
        .await
        .map_err(|e| format!("cannot list BrotrDeployments ({e}); are the CRDs installed (`brotr-operator crd | kubectl apply -f -`) and is the operator allowed to list them?"))?;
    scope
        .api::<RelayMonitor>(client)
        .list_metadata(&lp)
        .await
        .map_err(|e| format!("cannot list RelayMonitors ({e}); are the CRDs installed?"))?;
    Ok(())
}

/// Whether the Prometheus Operator's CRDs are served (ServiceMonitor/PrometheusRule are
/// rendered only then).
pub async fn prometheus_operator(client: &Client) -> bool {
    match client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "servicemonitors"),
        Err(_) => false,
    }
}

/// Runs both controllers over every scope until `shutdown` resolves, or until the watchdog
/// finds a cache that fell behind.
pub async fn run(
    client: Client,
    opts: Options,
    metrics: Metrics,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) -> Result<Exit, String> {
    let scopes: Vec<Scope> = if opts.namespaces.is_empty() {
        vec![Scope::All]
    } else {
        opts.namespaces
            .iter()
            .cloned()
            .map(Scope::Namespace)
            .collect()
    };
    for s in &scopes {
        check_crds(&client, s).await?;
    }
    let prom = prometheus_operator(&client).await;
    tracing::info!(
        ?scopes,
        prometheus_operator = prom,
        "starting the controllers"
    );
    let mut tasks = Vec::new();
    let mut caches = Vec::new();
    for scope in scopes {
        // Each controller reads the other's cache: a monitor targets a pipeline, and the
        // pipeline's connection budget seats its monitors.
        let rm_controller = main_controller::<RelayMonitor>(&client, &scope);
        let rm_store = rm_controller.store();
        let (seats_tx, seats_rx) = tokio::sync::mpsc::unbounded_channel();
        let (bd, bd_store) = brotr_deployments(
            &client,
            &scope,
            &opts,
            &metrics,
            prom,
            (rm_store.clone(), seats_rx),
            shutdown.clone(),
        );
        tasks.push(bd.boxed());
        let rm = relay_monitors(
            rm_controller,
            &client,
            &scope,
            &opts,
            &metrics,
            (bd_store.clone(), seats_tx),
            shutdown.clone(),
        );
        tasks.push(rm.boxed());
        caches.push((scope, bd_store, rm_store));
    }
    ready.set(true);
    let exit = tokio::select! {
        _ = futures_util::future::join_all(tasks) => Exit::Shutdown,
        stale = watchdog(client.clone(), caches, opts.watchdog_every) => Exit::StaleCache(stale),
    };
    ready.set(false);
    Ok(exit)
}

type RmStore = kube::runtime::reflector::Store<DeserializeGuard<RelayMonitor>>;

/// What the controllers' cache lacks of what the API server lists: objects it does not hold,
/// or holds at an older generation (a spec change its watch never delivered). `cached` maps uid
/// to generation.
fn behind(kind: &str, cached: &HashMap<String, i64>, listed: Vec<ObjectMeta>) -> Vec<String> {
    listed
        .into_iter()
        .filter_map(|m| {
            let uid = m.uid?;
            let generation = m.generation.unwrap_or(0);
            let why = match cached.get(&uid) {
                None => "not in the cache".to_owned(),
                Some(&g) if g < generation => format!("generation {generation}, cached {g}"),
                Some(_) => return None,
            };
            Some(format!(
                "{kind} {}/{} ({uid}): {why}",
                m.namespace.unwrap_or_default(),
                m.name.unwrap_or_default(),
            ))
        })
        .collect()
}

/// Objects per page of the watchdog's metadata lists (a page of 500 fleet objects, managed
/// fields and all, raised the idle peak by 5 MiB; 200: a fleet of 1,000 in 5 requests).
const WATCHDOG_PAGE: u32 = 200;

/// Resolves when an object the API server lists has been missing from the controllers' cache,
/// or cached at an older generation, at two checks in a row. Seen after an API server restart:
/// a watch that came back delivering nothing, so new objects and spec changes were never
/// reconciled. One metadata list per kind and scope per check (in pages); no writes.
async fn watchdog(
    client: Client,
    caches: Vec<(Scope, BdStore, RmStore)>,
    every: Duration,
) -> String {
    fn generations<K: kube::Resource>(objs: Vec<Arc<DeserializeGuard<K>>>) -> HashMap<String, i64> {
        objs.iter()
            .filter_map(|o| {
                let m = kube::Resource::meta(o.as_ref());
                Some((m.uid.clone()?, m.generation.unwrap_or(0)))
            })
            .collect()
    }
    async fn stale<K>(client: &Client, scope: &Scope, cached: HashMap<String, i64>) -> Vec<String>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        // In pages (a fleet's metadata, managed fields and all, is megabytes in one answer),
        // keeping only what is compared. An error here is the API server not answering:
        // nothing to compare.
        let api = scope.api::<K>(client);
        let mut metas = Vec::new();
        let mut lp = ListParams::default().limit(WATCHDOG_PAGE);
        loop {
            let Ok(page) = api.list_metadata(&lp).await else {
                return vec![];
            };
            metas.extend(page.items.into_iter().map(|o| {
                let m = o.metadata;
                kube::api::ObjectMeta {
                    name: m.name,
                    namespace: m.namespace,
                    uid: m.uid,
                    generation: m.generation,
                    ..Default::default()
                }
            }));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => break,
            }
        }
        behind(&K::kind(&()), &cached, metas)
    }
    let mut before: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(every).await;
        let mut now = HashSet::new();
        for (scope, bds, rms) in &caches {
            now.extend(stale::<BrotrDeployment>(&client, scope, generations(bds.state())).await);
            now.extend(stale::<RelayMonitor>(&client, scope, generations(rms.state())).await);
        }
        let mut stale: Vec<&String> = now.intersection(&before).collect();
        if !stale.is_empty() {
            stale.sort();
            let names: Vec<&str> = stale.iter().map(|s| s.as_str()).collect();
            return format!(
                "behind the API server for {} s: {}",
                every.as_secs(),
                names.join(", ")
            );
        }
        before = now;
        crate::telemetry::release_free_memory();
    }
}

fn reporter(opts: &Options) -> Reporter {
    Reporter {
        controller: MANAGER.into(),
        instance: Some(opts.identity.clone()),
    }
}

fn config(opts: &Options) -> controller::Config {
    controller::Config::default()
        .concurrency(opts.concurrency)
        .debounce(Duration::from_millis(500))
}

/// A controller of `K` over a watch whose objects are cached without their managed fields
/// (wrapped, so one object that does not parse is reported instead of breaking the watch).
fn main_controller<K>(client: &Client, scope: &Scope) -> Controller<DeserializeGuard<K>>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(
        scope.api::<DeserializeGuard<K>>(client),
        watcher::Config::default()
            .any_semantic()
            .page_size(super::PAGE),
    )
    .default_backoff()
    .modify(prune_meta);
    Controller::for_stream(
        reflector::reflector(writer, stream).applied_objects(),
        reader,
    )
}

type BdStore = kube::runtime::reflector::Store<DeserializeGuard<BrotrDeployment>>;

fn brotr_deployments<S>(
    client: &Client,
    scope: &Scope,
    opts: &Options,
    metrics: &Metrics,
    prom: bool,
    (monitors, seats_changed): (RmStore, tokio::sync::mpsc::UnboundedReceiver<()>),
    shutdown: S,
) -> (impl std::future::Future<Output = ()> + use<S>, BdStore)
where
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let (children, streams) = Children::watch(client, scope, "BrotrDeployment");
    let c = main_controller::<BrotrDeployment>(client, scope);
    let store = c.store();
    metrics.add_census(reconcile::census(store.clone()));
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            opts.defaults.clone(),
            metrics.clone(),
            children,
            prom,
            None,
            reporter(opts),
        )
        .with_monitors(monitors, None),
    );
    // A monitor took or left a seat of a connection budget: the statuses say how many are
    // taken (few BrotrDeployments; each reconcile writes only what changed).
    let seats = futures_util::stream::unfold(seats_changed, |mut rx| async move {
        rx.recv().await.map(|()| ((), rx))
    });
    let fut = c
        .reconcile_all_on(seats)
        .owns_stream(streams.config_maps)
        .owns_stream(streams.services)
        .owns_stream(streams.jobs)
        .owns_stream(streams.deployments)
        .owns_stream(streams.stateful_sets)
        .owns_stream(streams.cron_jobs)
        .with_config(config(opts))
        .graceful_shutdown_on(shutdown)
        .run(
            brotr_deployment::reconcile,
            brotr_deployment::error_policy,
            ctx,
        )
        .for_each(|_| futures_util::future::ready(()));
    (fut, store)
}

fn relay_monitors<S>(
    c: Controller<DeserializeGuard<RelayMonitor>>,
    client: &Client,
    scope: &Scope,
    opts: &Options,
    metrics: &Metrics,
    (pipelines, seats_changed): (BdStore, tokio::sync::mpsc::UnboundedSender<()>),
    shutdown: S,
) -> impl std::future::Future<Output = ()> + use<S>
where
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let (children, streams) = Children::watch(client, scope, "RelayMonitor");
    let monitors = c.store();
    metrics.add_census(reconcile::census(monitors.clone()));
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            opts.defaults.clone(),
            metrics.clone(),
            children,
            false,
            Some(pipelines),
            reporter(opts),
        )
        .with_monitors(monitors.clone(), Some(seats_changed)),
    );
    // A change of a BrotrDeployment (its migration completing) concerns the monitors that
    // target it.
    let bd_changes = watcher(
        scope.api::<DeserializeGuard<BrotrDeployment>>(client),
        watcher::Config::default().page_size(super::PAGE),
    )
    .default_backoff()
    .applied_objects();
    c.owns_stream(streams.config_maps)
        .owns_stream(streams.deployments)
        .owns_stream(streams.cron_jobs)
        // Jobs belong to the CronJob, not to the monitor: map them back by their labels.
        .watches_stream(streams.jobs, |job: Job| monitor_of(&job))
        .watches_stream(bd_changes, move |bd: DeserializeGuard<BrotrDeployment>| {
            let ns = bd.metadata_namespace();
            let name = bd.metadata_name();
            monitors
                .state()
                .into_iter()
                .filter(|m| {
                    m.0.as_ref().is_ok_and(|m| {
                        m.namespace() == ns
                            && m.spec
                                .targets
                                .brotr_deployment_ref
                                .as_ref()
                                .map(|r| Some(&r.name))
                                == Some(name.as_ref())
                    })
                })
                .map(|m| ObjectRef::from_obj(m.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(config(opts))
        .graceful_shutdown_on(shutdown)
        .run(relay_monitor::reconcile, relay_monitor::error_policy, ctx)
        .for_each(|_| futures_util::future::ready(()))
}

/// The RelayMonitor a Job of its CronJob belongs to.
fn monitor_of(job: &Job) -> Option<ObjectRef<DeserializeGuard<RelayMonitor>>> {
    let l = job.labels();
    if l.get(OWNER_KIND).map(String::as_str) != Some("RelayMonitor")
        || l.get(MANAGED_BY).map(String::as_str) != Some(MANAGER)
    {
        return None;
    }
    let name = l.get(INSTANCE)?;
    Some(ObjectRef::new(name).within(&job.namespace()?))
}

trait GuardMeta {
    fn metadata_namespace(&self) -> Option<String>;
    fn metadata_name(&self) -> Option<String>;
}

impl<K: kube::Resource> GuardMeta for DeserializeGuard<K> {
    fn metadata_namespace(&self) -> Option<String> {
        kube::Resource::meta(self).namespace.clone()
    }
    fn metadata_name(&self) -> Option<String> {
        kube::Resource::meta(self).name.clone()
    }
}

/// Leader election over a Lease: resolves when this replica leads; the returned receiver
/// turns false if it stops leading (the process then exits, and Kubernetes restarts it as a
/// follower).
pub async fn lead(
    client: Client,
    namespace: &str,
    identity: &str,
) -> Result<tokio::sync::watch::Receiver<bool>, String> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, "brotr-operator")
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|e| format!("lease: {e}"))?;
    let (mut rx, _task) = manager.watch().await;
    while !*rx.borrow_and_update() {
        rx.changed().await.map_err(|e| format!("lease: {e}"))?;
    }
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: &str, generation: i64) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("rm-{uid}")),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            generation: Some(generation),
            ..Default::default()
        }
    }

    #[test]
    fn the_cache_is_behind_for_objects_it_lacks_or_holds_at_an_older_generation() {
        let cached = HashMap::from([
            ("a".to_owned(), 1),
            ("b".to_owned(), 3),
            ("c".to_owned(), 2),
        ]);
        let listed = vec![meta("a", 2), meta("b", 3), meta("c", 1), meta("d", 1)];
        assert_eq!(
            behind("RelayMonitor", &cached, listed),
            [
                "RelayMonitor ns/rm-a (a): generation 2, cached 1",
                "RelayMonitor ns/rm-d (d): not in the cache",
            ]
        );
    }

    #[test]
    fn a_cache_that_holds_everything_listed_is_not_behind() {
        let cached = HashMap::from([("a".to_owned(), 5)]);
        assert!(behind("BrotrDeployment", &cached, vec![meta("a", 5)]).is_empty());
        assert!(behind("BrotrDeployment", &cached, vec![]).is_empty());
        // Without a uid nothing can be compared.
        let no_uid = ObjectMeta {
            uid: None,
            ..meta("x", 1)
        };
        assert!(behind("BrotrDeployment", &cached, vec![no_uid]).is_empty());
    }
}
