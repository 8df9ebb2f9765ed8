//! The BrotrDeployment controller.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use super::apply::{self, Applied};
use super::{Context, Error, Outcome, readiness};
use crate::crd::brotr_deployment::{
    BrotrDeployment, BrotrDeploymentStatus, ComponentsStatus, ConnectionsStatus, JobState,
    JobStatus,
};
use crate::plan::brotr_deployment::{Observed, Pipeline, SeedSource, Service, validate};
use crate::plan::budget;
use crate::render::pod::DatabaseRef;
use crate::render::{ChildKind, content_hash, postgres};
use crate::status::{State, Verdict};

/// One reconcile of a BrotrDeployment.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<BrotrDeployment>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::reconcile::run(obj, ctx, |bd, ctx| Box::pin(converge(bd, ctx))).await
}

pub fn error_policy(
    obj: Arc<DeserializeGuard<BrotrDeployment>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    super::reconcile::error_policy(obj, err, ctx)
}

/// Validates, applies and observes; returns the verdict and the status fields it has.
async fn converge(
    bd: &BrotrDeployment,
    ctx: &Context,
) -> Result<(Outcome, Option<BrotrDeploymentStatus>), Error> {
    let plan = match validate(bd, &ctx.defaults) {
        Ok(p) => p,
        Err(e) => return Ok((Outcome::invalid(&e), None)),
    };
    let ns = plan.owner.namespace.clone();
    let mut obs = Observed {
        prometheus_operator: ctx.prometheus_operator,
        new_password: new_password(),
        new_reader_password: new_password(),
        ..Default::default()
    };
    if let Some(missing) = missing_reference(&plan, ctx, &mut obs).await? {
        return Ok((Outcome::waiting(missing), None));
    }
    let database = ctx
        .children
        .stateful_sets
        .get(&ObjectRef::new(&plan.postgres_name()).within(&ns));
    obs.database_ready = database.as_ref().is_some_and(|s| {
        let c = readiness::stateful_set(s);
        c.ready >= 1 && c.message.is_none()
    });
    if let (Some(s), Some(m)) = (&database, &plan.managed) {
        let a = s.annotations();
        let asked = &m.storage;
        obs.claim_storage = a.get(postgres::CLAIM_STORAGE).cloned().map(Quantity);
        let reached = a.get(postgres::STORAGE).or(a.get(postgres::CLAIM_STORAGE));
        let refused = a.get(postgres::STORAGE_REFUSED).filter(|r| **r == asked.0);
        if let Some(reached) = reached.filter(|r| **r != asked.0) {
            obs.storage_reached = Some(Quantity(reached.clone()));
            if refused.is_some() {
                obs.storage_refused = Some(asked.clone());
            } else if !bd.spec.paused {
                match grow_claim(ctx, &plan, reached).await? {
                    None => obs.storage_reached = None,
                    Some(why) => {
                        obs.storage_refused = Some(asked.clone());
                        ctx.event(bd, EventType::Warning, STORAGE_NOT_EXPANDED, &why)
                            .await;
                    }
                }
            }
        }
    }
    let migration_name = plan.migration_job_name();
    let migration = job_state(ctx, &ns, &migration_name);
    obs.migration = migration.0;
    if migration.0 == JobState::Failed && !migration.1 && !bd.spec.paused {
        // Not a refusal (database not reachable, node lost): run it again.
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        jobs.delete(&migration_name, &DeleteParams::background())
            .await
            .map_err(|e| Error::kube(format!("delete Job {migration_name}"), e))?;
        ctx.metrics
            .writes
            .with_label_values(&["Job", "delete"])
            .inc();
    }

    let (desired, whole) = plan.desired(&obs);
    if !bd.spec.paused {
        for d in &desired {
            let existing = ctx.children.existing(d.kind, &ns, &d.name);
            if apply::apply(&ctx.client, &ctx.metrics, &ns, &plan.owner.uid, d, existing).await?
                == Applied::Written
            {
                tracing::info!(kind = ?d.kind, %ns, name = %d.name, "applied");
            }
        }
        if whole {
            sweep(ctx, &plan, &desired).await?;
        }
    }

    let status = observe(ctx, bd, &plan, &obs, migration);
    let mut verdict = verdict(bd, &plan, &status, migration);
    if let (Some(refused), Some(reached), State::Ready) =
        (&obs.storage_refused, &obs.storage_reached, &verdict.state)
    {
        verdict = Verdict::new(
            State::Degraded,
            STORAGE_NOT_EXPANDED,
            format!(
                "the database volume stays at {}: growing its claim to {} was refused (its storage class must allow volume expansion)",
                reached.0, refused.0
            ),
        );
    }
    let requeue = match verdict.state {
        State::InProgress => Some(Duration::from_secs(30)),
        State::Stalled => None,
        _ => Some(Duration::from_secs(30 * 60)),
    };
    Ok((Outcome { verdict, requeue }, Some(status)))
}

const STORAGE_NOT_EXPANDED: &str = "StorageNotExpanded";

/// Grows the managed database's claim from `grown_to` to `spec.database.managed.storage`. The
/// claim template of a StatefulSet is immutable, so the claim itself is patched; the
/// StatefulSet's annotations record the size reached (or refused) when it is applied next, so
/// this writes once per growth. Returns the API server's reason when it refuses (a storage
/// class without expansion): the pipeline keeps running on the volume it has, Degraded.
async fn grow_claim(
    ctx: &Context,
    plan: &Pipeline,
    grown_to: &str,
) -> Result<Option<String>, Error> {
    let Some(m) = &plan.managed else {
        return Ok(None);
    };
    let name = postgres::claim_name(&plan.postgres_name());
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &plan.owner.namespace);
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": m.storage}}}});
    match claims
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        // Invalid, or refused by the resize admission (a class without expansion): asking
        // again will not help. Not RBAC's 403, nor a claim not created yet (404): retried.
        Err(kube::Error::Api(s))
            if s.code == 422 || (s.code == 403 && !s.message.contains("cannot patch")) =>
        {
            tracing::warn!(claim = %name, to = %m.storage.0, reason = %s.message, "growing the claim was refused");
            return Ok(Some(format!(
                "PersistentVolumeClaim {name} was not grown from {grown_to} to {}: {}",
                m.storage.0, s.message
            )));
        }
        Err(e) => return Err(Error::kube(format!("grow PersistentVolumeClaim {name}"), e)),
    }
    ctx.metrics
        .writes
        .with_label_values(&["PersistentVolumeClaim", "patch"])
        .inc();
    tracing::info!(claim = %name, from = %grown_to, to = %m.storage.0, "grew the managed database's claim");
    Ok(None)
}

/// The first referenced object that is not there, if any. Also reads the seed ConfigMap's
/// content hash (its edits re-run the seeder).
async fn missing_reference(
    plan: &Pipeline,
    ctx: &Context,
    obs: &mut Observed,
) -> Result<Option<String>, Error> {
    let ns = &plan.owner.namespace;
    let mut secrets = Vec::new();
    if plan.managed.is_none()
        && let DatabaseRef::Postgres {
            url, ca, pooler, ..
        } = &plan.database
    {
        secrets.push(url.clone());
        secrets.extend(ca.clone());
        if let Some(crate::render::pod::PoolerRef::Url(p)) = pooler.as_deref() {
            secrets.push(p.clone());
        }
    }
    secrets.extend(plan.key.clone());
    secrets.extend(plan.consensus_key.clone());
    // The api's read-only URL, when the user names it (a managed login's Secret is ours).
    secrets.extend(
        plan.api
            .as_ref()
            .filter(|a| !a.managed_login)
            .map(|a| a.database.clone()),
    );
    for s in secrets {
        if let Err(missing) = ctx.reference::<Secret>(ns, &s.name, &s.key).await? {
            return Ok(Some(missing));
        }
    }
    if let Some(SeedSource::ConfigMap(c)) = plan.seeder.as_ref().map(|s| &s.source) {
        match ctx.reference::<ConfigMap>(ns, &c.name, &c.key).await? {
            Err(missing) => return Ok(Some(missing)),
            Ok(text) => obs.seed_list_hash = Some(content_hash(&text)),
        }
    }
    Ok(None)
}

fn job_state(ctx: &Context, ns: &str, name: &str) -> (JobState, bool) {
    ctx.children
        .jobs
        .get(&ObjectRef::new(name).within(ns))
        .map(|j| readiness::job(&j))
        .unwrap_or((JobState::Pending, false))
}

async fn sweep(
    ctx: &Context,
    plan: &Pipeline,
    desired: &[crate::render::Desired],
) -> Result<(), Error> {
    let keep: HashSet<(ChildKind, String)> =
        desired.iter().map(|d| (d.kind, d.name.clone())).collect();
    let ns = &plan.owner.namespace;
    let mut kinds = vec![
        ChildKind::ConfigMap,
        ChildKind::Service,
        ChildKind::Job,
        ChildKind::Deployment,
        ChildKind::StatefulSet,
        ChildKind::CronJob,
    ];
    if ctx.prometheus_operator {
        kinds.push(ChildKind::ServiceMonitor);
    }
    kinds.extend([ChildKind::Ingress, ChildKind::PodDisruptionBudget]);
    for kind in kinds {
        let present = match kind {
            // Nobody caches these: list them.
            ChildKind::ServiceMonitor | ChildKind::Ingress | ChildKind::PodDisruptionBudget => {
                apply::list_owned(&ctx.client, kind, ns, &plan.owner.uid).await?
            }
            _ => ctx.children.present(kind, ns),
        };
        let uid = &plan.owner.uid;
        apply::sweep(&ctx.client, &ctx.metrics, ns, kind, uid, present, &keep).await?;
    }
    Ok(())
}

/// The status fields read from the children.
fn observe(
    ctx: &Context,
    bd: &BrotrDeployment,
    plan: &Pipeline,
    obs: &Observed,
    migration: (JobState, bool),
) -> BrotrDeploymentStatus {
    let ns = &plan.owner.namespace;
    let c = &ctx.children;
    let get_dep = |name: String| {
        c.deployments
            .get(&ObjectRef::new(&name).within(ns))
            .map(|d| readiness::deployment(&d))
            .unwrap_or_default()
    };
    let get_sts = |name: String| {
        c.stateful_sets
            .get(&ObjectRef::new(&name).within(ns))
            .map(|s| readiness::stateful_set(&s))
            .unwrap_or_default()
    };
    let job_status = |name: String| {
        let j = c.jobs.get(&ObjectRef::new(&name).within(ns));
        JobStatus {
            state: j.as_ref().map(|j| readiness::job(j).0).unwrap_or_default(),
            completion_time: j
                .and_then(|j| j.status.clone())
                .and_then(|s| s.completion_time),
            job: Some(name),
        }
    };
    let mut comp = ComponentsStatus {
        migration: Some(JobStatus {
            state: migration.0,
            ..job_status(plan.migration_job_name())
        }),
        database: plan.managed.as_ref().map(|_| get_sts(plan.postgres_name())),
        seeder: plan
            .seed_job_name(obs)
            .map(job_status)
            .filter(|_| !plan.stopped),
        ..Default::default()
    };
    if obs.migration == JobState::Complete {
        for (s, _) in &plan.services {
            let status = Some(get_dep(plan.service_name(*s)));
            match s {
                Service::Finder => comp.finder = status,
                Service::Validator => comp.validator = status,
                Service::Monitor => comp.monitor = status,
            }
        }
        comp.synchronizer = plan.sync.as_ref().map(|_| get_sts(plan.sync_name()));
        comp.api = plan.api.as_ref().map(|_| get_dep(plan.api_name()));
    }
    BrotrDeploymentStatus {
        observed_generation: bd.metadata.generation,
        image: Some(plan.image.reference.clone()),
        schema: Some(plan.schema),
        shards: plan.sync.as_ref().map(|s| s.0),
        conditions: vec![],
        components: Some(comp),
        api: plan.api_status(),
        connections: Some(connections_status(
            &plan.connections,
            ctx.monitors_of(ns, &plan.owner.name).len(),
        )),
    }
}

/// The status of the connection budget with `monitors` RelayMonitors targeting the pipeline.
fn connections_status(split: &budget::Split, monitors: usize) -> ConnectionsStatus {
    let monitors = i32::try_from(monitors).unwrap_or(i32::MAX);
    ConnectionsStatus {
        budget: split.budget.total,
        pipeline_pods: split.pipeline_pods,
        per_pod: split.per_pod,
        monitor_seats: split.budget.monitor_seats,
        monitors,
        at_most: split.at_most(monitors),
    }
}

fn verdict(
    bd: &BrotrDeployment,
    plan: &Pipeline,
    st: &BrotrDeploymentStatus,
    migration: (JobState, bool),
) -> Verdict {
    let comp = st.components.clone().unwrap_or_default();
    let job = plan.migration_job_name();
    let (state, reason, message) = match migration {
        (JobState::Failed, true) => (
            State::Stalled,
            "MigrationFailed",
            format!("the migration Job {job} refused (exit code 2): see `kubectl logs job/{job}`"),
        ),
        (JobState::Failed, false) => (
            State::InProgress,
            "MigrationRetrying",
            format!("the migration Job {job} failed; running it again"),
        ),
        (JobState::Complete, _) => {
            let mut waiting = Vec::new();
            let mut check = |name: &str, c: &Option<crate::crd::common::ComponentStatus>| {
                if let Some(c) = c
                    && c.ready < c.desired
                {
                    waiting.push(format!("{name} {}/{}", c.ready, c.desired));
                }
            };
            check("database", &comp.database);
            check("finder", &comp.finder);
            check("validator", &comp.validator);
            check("monitor", &comp.monitor);
            check("synchronizer", &comp.synchronizer);
            check("api", &comp.api);
            let seeding = comp.seeder.as_ref().map(|s| s.state);
            if seeding == Some(JobState::Failed) {
                let seed = comp
                    .seeder
                    .as_ref()
                    .and_then(|s| s.job.clone())
                    .unwrap_or_default();
                (
                    State::Stalled,
                    "SeederFailed",
                    format!("the seeder Job {seed} failed: see `kubectl logs job/{seed}`"),
                )
            } else if !waiting.is_empty() {
                (
                    State::InProgress,
                    "Progressing",
                    format!("waiting for {}", waiting.join(", ")),
                )
            } else if matches!(seeding, Some(JobState::Pending | JobState::Running)) {
                (
                    State::InProgress,
                    "Seeding",
                    "loading the seed list".to_owned(),
                )
            } else if plan.stopped {
                (
                    State::Ready,
                    "Stopped",
                    "every service is scaled to zero".to_owned(),
                )
            } else {
                (
                    State::Ready,
                    "AllComponentsReady",
                    "every component is ready".to_owned(),
                )
            }
        }
        _ => (
            State::InProgress,
            "Migrating",
            format!("waiting for the migration Job {job}"),
        ),
    };
    if bd.spec.paused {
        let ready = state == State::Ready;
        return Verdict::new(
            State::Paused { ready },
            "Paused",
            "paused: children are left as they are",
        );
    }
    Verdict::new(state, reason, message)
}

/// A password for a new managed database: 32 random alphanumerics.
fn new_password() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}
