//! The controllers: fetch → validate (pure) → render (pure) → apply → status, for both kinds.
//!
//! Watches: the custom resources, and every child kind selected by label
//! (`app.kubernetes.io/managed-by=brotr-operator` and the owner kind), so the caches hold only
//! the operator's own objects; ConfigMaps and Services metadata-only. Jobs made by a
//! RelayMonitor's CronJob carry its labels and are mapped back to it. Secrets are never
//! watched: references are read when needed, and a missing one is waited for.

pub mod apply;
pub mod brotr_deployment;
pub mod readiness;
pub mod reconcile;
pub mod relay_monitor;
pub mod run;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::crd::{BrotrDeployment, RelayMonitor};
use crate::plan::{Defaults, InvalidSpec};
use crate::render::{ChildKind, MANAGED_BY, MANAGER, OWNER_KIND};
use crate::status::{State, Verdict};
use crate::telemetry::Metrics;

/// A failure of one reconcile. Verdicts (invalid spec, a missing reference) are not errors:
/// they are written to the status. These are what the API did to us.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the API server refused {kind} {name}: {message}")]
    Rejected {
        kind: String,
        name: String,
        message: String,
    },
    #[error("{0}")]
    NameConflict(String),
    #[error("rendering: {0}")]
    Render(String),
}

impl Error {
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Error {
        Error::Kube {
            what: what.into(),
            source,
        }
    }

    /// An apply error: a 4xx other than conflicts and throttling means the object itself is
    /// wrong (a toleration the API server refuses): retrying will not help.
    pub fn apply(kind: &str, name: &str, e: kube::Error) -> Error {
        match &e {
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => Error::Rejected {
                kind: kind.into(),
                name: name.into(),
                message: s.message.clone(),
            },
            _ => Error::kube(format!("apply {kind} {name}"), e),
        }
    }

    /// PascalCase reason for metrics and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(s) if s.code == 403 => "Forbidden",
                kube::Error::Api(s) if s.code == 409 => "Conflict",
                _ => "ApiError",
            },
            Error::Rejected { .. } => "ChildRejected",
            Error::NameConflict(_) => "NameConflict",
            Error::Render(_) => "RenderFailed",
        }
    }

    /// Errors no retry fixes: reported as Stalled, waited on until the spec changes.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::Rejected { .. } | Error::NameConflict(_) | Error::Render(_)
        )
    }
}

/// What the caches know of a child: its content hash and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub hash: Option<String>,
    pub owner_uid: Option<String>,
    /// Its labels (who made it, for whom): a retained child is adopted by them.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Caches of one owner kind's children.
#[derive(Clone)]
pub struct Children {
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub jobs: Store<Job>,
    pub deployments: Store<Deployment>,
    pub stateful_sets: Store<StatefulSet>,
    pub cron_jobs: Store<CronJob>,
}

/// Child watch streams, to hand to a controller (they fill the caches as they are polled).
pub struct ChildStreams {
    pub config_maps: std::pin::Pin<
        Box<dyn Stream<Item = Result<PartialObjectMeta<ConfigMap>, watcher::Error>> + Send>,
    >,
    pub services: std::pin::Pin<
        Box<dyn Stream<Item = Result<PartialObjectMeta<Service>, watcher::Error>> + Send>,
    >,
    pub jobs: std::pin::Pin<Box<dyn Stream<Item = Result<Job, watcher::Error>> + Send>>,
    pub deployments:
        std::pin::Pin<Box<dyn Stream<Item = Result<Deployment, watcher::Error>> + Send>>,
    pub stateful_sets:
        std::pin::Pin<Box<dyn Stream<Item = Result<StatefulSet, watcher::Error>> + Send>>,
    pub cron_jobs: std::pin::Pin<Box<dyn Stream<Item = Result<CronJob, watcher::Error>> + Send>>,
}

/// Where the controllers look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Namespace(String),
}

impl Scope {
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::All => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// Page size of the initial lists: a smaller page bounds the memory a list takes at once (at a
/// restart every watch lists at the same time, so each page's body and its decoded objects are
/// alive together).
const PAGE: u32 = 25;

/// A label-selected watch of `K` feeding a cache; `prune` drops what the controllers never read
/// (managed fields, pod templates) before it is cached: most of a workload's bytes.
fn full<K>(
    client: &Client,
    scope: &Scope,
    selector: &str,
    prune: fn(&mut K),
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>,
)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let cfg = watcher::Config::default().labels(selector).page_size(PAGE);
    let stream = watcher(scope.api::<K>(client), cfg)
        .default_backoff()
        .modify(prune);
    let stream = reflector::reflector(writer, stream).touched_objects();
    (reader, stream)
}

/// Drops managed fields: the largest part of most objects' metadata, never read here.
pub fn prune_meta<K: ResourceExt>(o: &mut K) {
    o.managed_fields_mut().clear();
}

fn prune_deployment(d: &mut Deployment) {
    prune_meta(d);
    if let Some(s) = d.spec.as_mut() {
        s.template = Default::default();
    }
}

fn prune_stateful_set(d: &mut StatefulSet) {
    prune_meta(d);
    if let Some(s) = d.spec.as_mut() {
        s.template = Default::default();
        s.volume_claim_templates = None;
    }
}

fn prune_job(j: &mut Job) {
    prune_meta(j);
    if let Some(s) = j.spec.as_mut() {
        s.template = Default::default();
        s.pod_failure_policy = None;
    }
}

fn prune_cron_job(j: &mut CronJob) {
    prune_meta(j);
    if let Some(s) = j.spec.as_mut() {
        s.job_template = Default::default();
    }
}

impl Children {
    /// Caches and their streams for the children of `owner_kind`.
    pub fn watch(client: &Client, scope: &Scope, owner_kind: &str) -> (Children, ChildStreams) {
        let sel = format!("{MANAGED_BY}={MANAGER},{OWNER_KIND}={owner_kind}");
        // ConfigMaps and Services: only their metadata is ever read.
        let (config_maps, cm) =
            full::<PartialObjectMeta<ConfigMap>>(client, scope, &sel, prune_meta);
        let (services, svc) = full::<PartialObjectMeta<Service>>(client, scope, &sel, prune_meta);
        let (jobs, job) = full::<Job>(client, scope, &sel, prune_job);
        let (deployments, dep) = full::<Deployment>(client, scope, &sel, prune_deployment);
        let (stateful_sets, sts) = full::<StatefulSet>(client, scope, &sel, prune_stateful_set);
        let (cron_jobs, cj) = full::<CronJob>(client, scope, &sel, prune_cron_job);
        (
            Children {
                config_maps,
                services,
                jobs,
                deployments,
                stateful_sets,
                cron_jobs,
            },
            ChildStreams {
                config_maps: cm.boxed(),
                services: svc.boxed(),
                jobs: job.boxed(),
                deployments: dep.boxed(),
                stateful_sets: sts.boxed(),
                cron_jobs: cj.boxed(),
            },
        )
    }

    /// Waits until every cache has listed once: before that, a child missing from a cache
    /// may exist, and applying it would be a needless write.
    pub async fn ready(&self) {
        let _ = tokio::join!(
            self.config_maps.wait_until_ready(),
            self.services.wait_until_ready(),
            self.jobs.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.stateful_sets.wait_until_ready(),
            self.cron_jobs.wait_until_ready(),
        );
    }

    /// What the caches know of child `name` of `kind` in `ns` (None: not cached; the kinds
    /// nobody caches are always None).
    pub fn existing(&self, kind: ChildKind, ns: &str, name: &str) -> Option<Existing> {
        fn get<K: Resource<DynamicType = ()> + Clone>(
            s: &Store<K>,
            ns: &str,
            name: &str,
        ) -> Option<Existing> {
            s.get(&ObjectRef::new(name).within(ns))
                .map(|o| Existing::of(o.as_ref()))
        }
        match kind {
            ChildKind::ConfigMap => get(&self.config_maps, ns, name),
            ChildKind::Service => get(&self.services, ns, name),
            ChildKind::Job => get(&self.jobs, ns, name),
            ChildKind::Deployment => get(&self.deployments, ns, name),
            ChildKind::StatefulSet => get(&self.stateful_sets, ns, name),
            ChildKind::CronJob => get(&self.cron_jobs, ns, name),
            ChildKind::Secret
            | ChildKind::ServiceMonitor
            | ChildKind::Ingress
            | ChildKind::PodDisruptionBudget => None,
        }
    }

    /// `(name, owner uid)` of every cached child of `kind` in `ns`.
    pub fn present(&self, kind: ChildKind, ns: &str) -> Vec<(String, Option<String>)> {
        fn list<K: Resource<DynamicType = ()> + Clone + ResourceExt>(
            s: &Store<K>,
            ns: &str,
        ) -> Vec<(String, Option<String>)> {
            s.state()
                .iter()
                .filter(|o| o.namespace().as_deref() == Some(ns))
                .map(|o| {
                    (
                        o.name_any(),
                        o.labels().get(crate::render::OWNER_UID).cloned(),
                    )
                })
                .collect()
        }
        match kind {
            ChildKind::ConfigMap => list(&self.config_maps, ns),
            ChildKind::Service => list(&self.services, ns),
            ChildKind::Job => list(&self.jobs, ns),
            ChildKind::Deployment => list(&self.deployments, ns),
            ChildKind::StatefulSet => list(&self.stateful_sets, ns),
            ChildKind::CronJob => list(&self.cron_jobs, ns),
            ChildKind::Secret
            | ChildKind::ServiceMonitor
            | ChildKind::Ingress
            | ChildKind::PodDisruptionBudget => vec![],
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub defaults: Defaults,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub children: Children,
    /// The Prometheus Operator's CRDs are installed.
    pub prometheus_operator: bool,
    /// The BrotrDeployments (for the RelayMonitors that target one).
    pub pipelines: Option<Store<DeserializeGuard<BrotrDeployment>>>,
    /// The RelayMonitors: the seats of a pipeline's connection budget go to those that target
    /// it, in order of creation.
    pub monitors: Option<Store<DeserializeGuard<RelayMonitor>>>,
    /// Asks the BrotrDeployment controller to look again (a monitor took or left a seat of
    /// its connection budget, which its status reports).
    pub seats_changed: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    /// Failed attempts in a row per object, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        defaults: Defaults,
        metrics: Metrics,
        children: Children,
        prometheus_operator: bool,
        pipelines: Option<Store<DeserializeGuard<BrotrDeployment>>>,
        reporter: Reporter,
    ) -> Context {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            metrics,
            children,
            prometheus_operator,
            pipelines,
            monitors: None,
            seats_changed: None,
            failures: Mutex::default(),
        }
    }

    /// With the RelayMonitors' cache, and where to say that a seat changed.
    pub fn with_monitors(
        mut self,
        monitors: Store<DeserializeGuard<RelayMonitor>>,
        seats_changed: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    ) -> Context {
        self.monitors = Some(monitors);
        self.seats_changed = seats_changed;
        self
    }

    /// The names of the RelayMonitors of namespace `ns` that target the BrotrDeployment
    /// `name`, in order of creation (then by name): the order they take the seats of its
    /// connection budget in.
    pub fn monitors_of(&self, ns: &str, name: &str) -> Vec<String> {
        let Some(store) = &self.monitors else {
            return Vec::new();
        };
        let mut out: Vec<(Option<k8s_openapi::jiff::Timestamp>, String)> = store
            .state()
            .iter()
            .filter_map(|m| m.0.as_ref().ok())
            .filter(|m| {
                m.metadata.namespace.as_deref() == Some(ns)
                    && m.spec
                        .targets
                        .brotr_deployment_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
            })
            .map(|m| {
                (
                    m.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    m.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, n)| n).collect()
    }

    /// Resets the backoff of `key` after a reconcile that did not fail.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// The delay before retrying `key` after its `n`th failure in a row: 5 s doubling to 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key.to_owned()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        retry_delay(n)
    }

    /// Reads a Secret or ConfigMap key the spec references: `Ok(None)` when it is not there
    /// (yet), with what is missing.
    pub async fn reference<K>(
        &self,
        ns: &str,
        name: &str,
        key: &str,
    ) -> Result<Result<Option<String>, String>, Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + serde::Serialize,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let kind = K::kind(&());
        let Some(obj) = api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("read {kind} {name}"), e))?
        else {
            return Ok(Err(format!("{kind} {ns}/{name} not found")));
        };
        let v = serde_json::to_value(&obj).unwrap_or_default();
        let data = v["data"].get(key).or_else(|| v["binaryData"].get(key));
        Ok(match data {
            Some(d) => Ok(d.as_str().map(str::to_owned)),
            None => Err(format!("{kind} {ns}/{name} has no key {key:?}")),
        })
    }

    /// Publishes an Event about `obj` (best effort: an Event that cannot be written is logged).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.metrics
            .writes
            .with_label_values(&["Event", "create"])
            .inc();
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish an Event");
        }
    }
}

/// 5 s, doubling per failure, at most 5 minutes.
pub fn retry_delay(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// Writes `status` to the status subresource of `obj` when it differs from the current one.
pub async fn write_status<K>(
    ctx: &Context,
    obj: &K,
    current: &serde_json::Value,
    status: &serde_json::Value,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if current == status {
        return Ok(false);
    }
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let kind = K::kind(&());
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": merge_patch(current, status) })),
    )
    .await
    .map_err(|e| Error::kube(format!("write the status of {kind} {name}"), e))?;
    ctx.metrics
        .writes
        .with_label_values(&[&format!("{kind}/status"), "patch"])
        .inc();
    Ok(true)
}

/// A JSON merge patch turning `old` into `new`: keys `new` lacks are set to null (a merge
/// patch keeps what it does not mention), lists are replaced whole.
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in n {
                match o.get(k) {
                    Some(ov) if ov == v => {}
                    Some(ov) => {
                        out.insert(k.clone(), merge_patch(ov, v));
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        (_, n) => n.clone(),
    }
}

/// What a reconcile decided: the verdict for the status, and when to look again.
pub struct Outcome {
    pub verdict: Verdict,
    pub requeue: Option<Duration>,
}

impl Outcome {
    pub fn action(&self) -> Action {
        match self.requeue {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        }
    }

    /// The verdict for an invalid spec: Stalled until the spec changes.
    pub fn invalid(e: &InvalidSpec) -> Outcome {
        Outcome {
            verdict: Verdict::new(State::Stalled, "InvalidSpec", e.0.clone()),
            requeue: None,
        }
    }

    /// Waiting for a referenced object (External Secrets may create it seconds later).
    pub fn waiting(what: String) -> Outcome {
        Outcome {
            verdict: Verdict::new(
                State::InProgress,
                "WaitingForReference",
                format!("{what}; waiting for it"),
            ),
            requeue: Some(Duration::from_secs(15)),
        }
    }

    /// An error no retry fixes.
    pub fn stalled_by(e: &Error) -> Outcome {
        Outcome {
            verdict: Verdict::new(State::Stalled, e.reason(), e.to_string()),
            requeue: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patches_remove_what_is_gone_and_keep_what_is_equal() {
        let old = json!({"a": 1, "b": {"x": 1, "y": "stale"}, "c": [1, 2], "d": true});
        let new = json!({"a": 1, "b": {"x": 2}, "c": [3]});
        let p = merge_patch(&old, &new);
        assert_eq!(p, json!({"b": {"x": 2, "y": null}, "c": [3], "d": null}));
        assert_eq!(merge_patch(&new, &new), json!({}));
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        let d: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(d, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
