//! The RelayMonitor controller.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::apply;
use super::{Context, Error, Outcome, readiness};
use crate::crd::brotr_deployment::{BrotrDeployment, JobState};
use crate::crd::relay_monitor::{MonitorMode, RelayMonitor, RelayMonitorStatus};
use crate::plan::relay_monitor::{Monitor, validate};
use crate::render::{ChildKind, OWNER_UID, content_hash};
use crate::status::{State, Verdict};

/// The reason of a monitor waiting for a seat of its pipeline's connection budget.
pub const NO_SEAT: &str = "NoConnectionSeat";

/// One reconcile of a RelayMonitor.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<RelayMonitor>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::reconcile::run(obj, ctx, |rm, ctx| Box::pin(converge(rm, ctx))).await
}

pub fn error_policy(
    obj: Arc<DeserializeGuard<RelayMonitor>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    super::reconcile::error_policy(obj, err, ctx)
}

/// The BrotrDeployment a monitor targets: `Ok(None)` when it names none, `Err` (what to wait
/// for) when it is not there or not migrated yet.
fn pipeline(rm: &RelayMonitor, ctx: &Context) -> Result<Option<BrotrDeployment>, String> {
    let Some(r) = &rm.spec.targets.brotr_deployment_ref else {
        return Ok(None);
    };
    let ns = rm.namespace().unwrap_or_default();
    let found = ctx
        .pipelines
        .as_ref()
        .and_then(|s| s.get(&ObjectRef::new(&r.name).within(&ns)));
    let Some(found) = found else {
        return Err(format!("BrotrDeployment {ns}/{} not found", r.name));
    };
    let Ok(bd) = &found.0 else {
        return Err(format!("BrotrDeployment {ns}/{} does not parse", r.name));
    };
    let migrated = bd
        .status
        .as_ref()
        .and_then(|s| s.components.as_ref())
        .and_then(|c| c.migration.as_ref())
        .is_some_and(|m| m.state == JobState::Complete);
    if !migrated {
        return Err(format!(
            "BrotrDeployment {ns}/{} has not migrated its database yet",
            r.name
        ));
    }
    Ok(Some(bd.clone()))
}

async fn converge(
    rm: &RelayMonitor,
    ctx: &Context,
) -> Result<(Outcome, Option<RelayMonitorStatus>), Error> {
    let bd = match pipeline(rm, ctx) {
        Ok(bd) => bd,
        Err(what) => return Ok((Outcome::waiting(what), None)),
    };
    let mut plan = match validate(rm, bd.as_ref(), &ctx.defaults) {
        Ok(p) => p,
        Err(e) => return Ok((Outcome::invalid(&e), None)),
    };
    let ns = plan.owner.namespace.clone();
    if let Some(bd) = &bd {
        // Its seat in the pipeline's connection budget, in order of creation.
        let name = rm.name_any();
        let order = ctx.monitors_of(&ns, &bd.name_any());
        let position = order.iter().position(|n| *n == name).unwrap_or(order.len());
        let new = rm.status.as_ref().is_none_or(|s| s.conditions.is_empty());
        let waited = rm
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == NO_SEAT));
        let seated = plan.seat(bd, position);
        if (new || waited == seated.is_ok())
            && let Some(tx) = &ctx.seats_changed
        {
            // A monitor came, or took or lost a seat: the pipeline's status counts them.
            let _ = tx.send(());
        }
        if let Err(why) = seated {
            // A seat frees when a monitor before it goes (no event tells this one): look
            // again shortly.
            return Ok((
                Outcome {
                    verdict: Verdict::new(State::Stalled, NO_SEAT, why),
                    requeue: Some(Duration::from_secs(30)),
                },
                None,
            ));
        }
    }
    if let Err(missing) = ctx
        .reference::<Secret>(&ns, &plan.key.name, &plan.key.key)
        .await?
    {
        return Ok((Outcome::waiting(missing), None));
    }
    if let Some(c) = plan.referenced_config_map() {
        match ctx.reference::<ConfigMap>(&ns, &c.name, &c.key).await? {
            Err(missing) => return Ok((Outcome::waiting(missing), None)),
            Ok(text) => plan.relays_hash = Some(content_hash(&text)),
        }
    }
    let desired = plan.children();
    if !rm.spec.paused {
        for d in &desired {
            let existing = ctx.children.existing(d.kind, &ns, &d.name);
            apply::apply(&ctx.client, &ctx.metrics, &ns, &plan.owner.uid, d, existing).await?;
        }
        let keep: HashSet<(ChildKind, String)> =
            desired.iter().map(|d| (d.kind, d.name.clone())).collect();
        for kind in [
            ChildKind::ConfigMap,
            ChildKind::Deployment,
            ChildKind::CronJob,
        ] {
            let present = ctx.children.present(kind, &ns);
            apply::sweep(
                &ctx.client,
                &ctx.metrics,
                &ns,
                kind,
                &plan.owner.uid,
                present,
                &keep,
            )
            .await?;
        }
    }
    let (fields, verdict) = observe(ctx, rm, &plan);
    let requeue = match verdict.state {
        State::InProgress => Some(Duration::from_secs(30)),
        State::Stalled => None,
        _ => Some(Duration::from_secs(30 * 60)),
    };
    Ok((Outcome { verdict, requeue }, Some(fields)))
}

fn observe(ctx: &Context, rm: &RelayMonitor, plan: &Monitor) -> (RelayMonitorStatus, Verdict) {
    let ns = &plan.owner.namespace;
    let name = plan.name();
    let mut fields = RelayMonitorStatus {
        observed_generation: rm.metadata.generation,
        image: Some(plan.image.reference.clone()),
        mode: Some(plan.status_mode()),
        ..Default::default()
    };
    let (state, reason, message) = match plan.status_mode() {
        MonitorMode::Interval => match ctx
            .children
            .deployments
            .get(&ObjectRef::new(&name).within(ns))
        {
            None => (
                State::InProgress,
                "Creating",
                format!("creating Deployment {name}"),
            ),
            Some(d) => {
                let c = readiness::deployment(&d);
                if c.ready < c.desired || c.message.is_some() {
                    (
                        State::InProgress,
                        "Progressing",
                        format!("Deployment {name}: {}", c.message.unwrap_or_default()),
                    )
                } else if plan.stopped {
                    (State::Ready, "Stopped", "scaled to zero".to_owned())
                } else {
                    (
                        State::Ready,
                        "Running",
                        format!("Deployment {name} is ready"),
                    )
                }
            }
        },
        MonitorMode::Schedule => match ctx
            .children
            .cron_jobs
            .get(&ObjectRef::new(&name).within(ns))
        {
            None => (
                State::InProgress,
                "Creating",
                format!("creating CronJob {name}"),
            ),
            Some(cj) => {
                // Reported once a run has finished: one status write per run, not one when it
                // starts and another when it ends.
                let last = last_run(ctx, ns, &plan.owner.uid);
                fields.last_schedule_time = last.as_ref().and_then(|l| l.2.clone());
                fields.last_successful_time =
                    cj.status.clone().unwrap_or_default().last_successful_time;
                match last.map(|l| (l.0, l.1)) {
                    _ if plan.stopped => (
                        State::Ready,
                        "Stopped",
                        "the CronJob is suspended".to_owned(),
                    ),
                    Some((job, JobState::Failed)) => (
                        State::Degraded,
                        "LastRunFailed",
                        format!("the last run, Job {job}, failed: see `kubectl logs job/{job}`"),
                    ),
                    _ => (
                        State::Ready,
                        "Scheduled",
                        format!(
                            "CronJob {name} runs on {:?}",
                            cj.spec
                                .as_ref()
                                .map(|s| s.schedule.clone())
                                .unwrap_or_default()
                        ),
                    ),
                }
            }
        },
    };
    let verdict = if rm.spec.paused {
        Verdict::new(
            State::Paused {
                ready: state == State::Ready,
            },
            "Paused",
            "paused: children are left as they are",
        )
    } else {
        Verdict::new(state, reason, message)
    };
    (fields, verdict)
}

/// The newest finished Job the monitor's CronJob made: its name, how it ended, and when it was
/// scheduled.
fn last_run(ctx: &Context, ns: &str, uid: &str) -> Option<(String, JobState, Option<Time>)> {
    ctx.children
        .jobs
        .state()
        .into_iter()
        .filter(|j| {
            j.namespace().as_deref() == Some(ns)
                && j.labels().get(OWNER_UID).map(String::as_str) == Some(uid)
                && matches!(readiness::job(j).0, JobState::Complete | JobState::Failed)
        })
        .max_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0))
        .map(|j| {
            let scheduled = j
                .annotations()
                .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
                .and_then(|t| t.parse().ok())
                .map(Time)
                .or_else(|| j.metadata.creation_timestamp.clone());
            (j.name_any(), readiness::job(&j).0, scheduled)
        })
}
