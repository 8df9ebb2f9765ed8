//! The shape every reconcile shares: wait for the caches, skip objects that do not parse or
//! are being deleted, converge (the kind's own part), turn errors no retry fixes into a Stalled
//! verdict, write the status when it changed and an Event when Ready or Stalled flips, and
//! count it all.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, Outcome, write_status};
use crate::status::{self, State, Verdict};

/// A custom resource with kstatus conditions in its status.
pub trait Kstatus:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    type Status: Serialize + Default + Clone + Send;
    fn status(&self) -> Option<&Self::Status>;
    fn conditions(s: &Self::Status) -> &[Condition];
    /// The status with new conditions, describing `generation`.
    fn with_conditions(s: Self::Status, c: Vec<Condition>, generation: Option<i64>)
    -> Self::Status;
}

/// The kind's own part: validate, apply, observe. Returns the verdict, and the status fields
/// when it got that far (None keeps the last ones).
pub type Converge<K> =
    for<'a> fn(
        &'a K,
        &'a Context,
    ) -> BoxFuture<'a, Result<(Outcome, Option<<K as Kstatus>::Status>), Error>>;

fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default()
    )
}

pub async fn run<K: Kstatus>(
    obj: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    converge: Converge<K>,
) -> Result<Action, Error> {
    ctx.children.ready().await;
    let started = Instant::now();
    let m = &ctx.metrics;
    m.reconciles.with_label_values(&[K::KIND]).inc();
    let observe = || {
        m.duration
            .with_label_values(&[K::KIND])
            .observe(started.elapsed().as_secs_f64())
    };
    let obj = match &obj.0 {
        Ok(o) => o,
        Err(invalid) => {
            tracing::warn!(kind = K::KIND, name = ?invalid.metadata.name, error = %invalid.error, "an object does not parse");
            m.failures
                .with_label_values(&[K::KIND, "InvalidObject"])
                .inc();
            return Ok(Action::await_change());
        }
    };
    if obj.meta().deletion_timestamp.is_some() {
        // Children carry owner references: garbage collection removes them.
        return Ok(Action::await_change());
    }
    let (outcome, fields) = match converge(obj, &ctx).await {
        Ok(o) => o,
        Err(e) if e.is_permanent() => (Outcome::stalled_by(&e), None),
        Err(e) => {
            observe();
            return Err(e);
        }
    };
    report(obj, &ctx, &outcome, fields).await?;
    ctx.succeeded(&key(obj));
    observe();
    Ok(outcome.action())
}

/// The state of every cached `K` for `brotr_operator_objects`: stalled when Stalled is True,
/// ready when Ready is True, reconciling otherwise (no status yet included); an object that
/// does not parse is stalled, since nothing happens to it until it is fixed.
pub fn census<K: Kstatus>(
    store: kube::runtime::reflector::Store<DeserializeGuard<K>>,
) -> crate::telemetry::Census {
    Box::new(move || {
        let (mut ready, mut reconciling, mut stalled) = (0, 0, 0);
        for obj in store.state() {
            let Ok(obj) = &obj.0 else {
                stalled += 1;
                continue;
            };
            let cs = obj.status().map(K::conditions).unwrap_or_default();
            let is = |t: &str| status::condition(cs, t).is_some_and(|c| c.status == "True");
            if is("Stalled") {
                stalled += 1;
            } else if is("Ready") {
                ready += 1;
            } else {
                reconciling += 1;
            }
        }
        (
            K::KIND,
            vec![
                ("ready", ready),
                ("reconciling", reconciling),
                ("stalled", stalled),
            ],
        )
    })
}

/// Retries with a growing delay per object; permanent errors never reach here (they are
/// verdicts).
pub fn error_policy<K: Kstatus>(
    obj: Arc<DeserializeGuard<K>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .failures
        .with_label_values(&[K::KIND, err.reason()])
        .inc();
    let key = key(obj.as_ref());
    let delay = ctx.backoff(&key);
    tracing::warn!(%key, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Writes the status when it changed, and an Event when Ready or Stalled flips.
async fn report<K: Kstatus>(
    obj: &K,
    ctx: &Context,
    outcome: &Outcome,
    fields: Option<K::Status>,
) -> Result<(), Error> {
    let old = obj.status().cloned().unwrap_or_default();
    let generation = obj.meta().generation;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = status::conditions(
        K::conditions(&old),
        &outcome.verdict,
        generation.unwrap_or_default(),
        &now,
    );
    let new = K::with_conditions(
        fields.unwrap_or_else(|| old.clone()),
        conditions,
        generation,
    );
    let written = write_status(
        ctx,
        obj,
        &serde_json::to_value(&old).unwrap_or_default(),
        &serde_json::to_value(&new).unwrap_or_default(),
    )
    .await?;
    if written {
        transition_event(
            ctx,
            obj,
            K::conditions(&old),
            K::conditions(&new),
            &outcome.verdict,
        )
        .await;
    }
    if outcome.verdict.state == State::Stalled {
        ctx.metrics
            .failures
            .with_label_values(&[K::KIND, &outcome.verdict.reason])
            .inc();
    }
    Ok(())
}

/// An Event when Ready or Stalled changes status or reason.
async fn transition_event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    old: &[Condition],
    new: &[Condition],
    verdict: &Verdict,
) {
    let key = |cs: &[Condition], t: &str| {
        status::condition(cs, t).map(|c| (c.status.clone(), c.reason.clone()))
    };
    if key(old, "Ready") == key(new, "Ready") && key(old, "Stalled") == key(new, "Stalled") {
        return;
    }
    let type_ = match verdict.state {
        State::Stalled | State::Degraded => EventType::Warning,
        _ => EventType::Normal,
    };
    ctx.event(obj, type_, &verdict.reason, &verdict.message)
        .await;
}

macro_rules! kstatus {
    ($kind:ident, $status:ident) => {
        impl Kstatus for crate::crd::$kind {
            const KIND: &'static str = stringify!($kind);
            type Status = crate::crd::$status;
            fn status(&self) -> Option<&Self::Status> {
                self.status.as_ref()
            }
            fn conditions(s: &Self::Status) -> &[Condition] {
                &s.conditions
            }
            fn with_conditions(
                s: Self::Status,
                c: Vec<Condition>,
                generation: Option<i64>,
            ) -> Self::Status {
                Self::Status {
                    conditions: c,
                    observed_generation: generation,
                    ..s
                }
            }
        }
    };
}

kstatus!(BrotrDeployment, BrotrDeploymentStatus);
kstatus!(RelayMonitor, RelayMonitorStatus);
