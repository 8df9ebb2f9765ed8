//! Applying rendered children: server-side apply with one field manager, forced, and only when
//! the child's content hash differs from the one it carries; deleting the children a spec no
//! longer wants (the sweep, by owner uid label). The only writes to children are here.

use std::collections::HashSet;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};

use super::{Error, Existing};
use crate::render::{
    COMPONENT, ChildKind, Desired, INSTANCE, MANAGED_BY, MANAGER, OWNER_KIND, OWNER_UID, SPEC_HASH,
};
use crate::telemetry::Metrics;

/// The dynamic API of a child kind in `namespace`.
pub fn api(client: &Client, kind: ChildKind, namespace: &str) -> Api<DynamicObject> {
    let (g, v, k, plural) = kind.gvk();
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural);
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// What happened to one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Written,
}

/// Writes `d` unless the cluster already has it with the same hash. `existing` is what the
/// watch caches know of the child (None: not seen, so read it first to be sure it is not
/// somebody else's object with the same name).
pub async fn apply(
    client: &Client,
    metrics: &Metrics,
    namespace: &str,
    owner_uid: &str,
    d: &Desired,
    existing: Option<Existing>,
) -> Result<Applied, Error> {
    let api = api(client, d.kind, namespace);
    let existing = match existing {
        Some(e) => Some(e),
        None => api
            .get_opt(&d.name)
            .await
            .map_err(|e| Error::kube(format!("read {:?} {}", d.kind, d.name), e))?
            .map(|o| Existing::of(&o)),
    };
    if let Some(e) = &existing {
        if e.owner_uid.as_deref() != Some(owner_uid) {
            if adopts(d, e) {
                tracing::debug!(kind = ?d.kind, name = %d.name, "kept from a deleted owner of the same name: adopted, unchanged");
                return Ok(Applied::Unchanged);
            }
            return Err(Error::NameConflict(format!(
                "{:?} {namespace}/{} exists and is not managed by this resource",
                d.kind, d.name
            )));
        }
        if d.create_only || e.hash.as_deref() == Some(d.hash()) {
            return Ok(Applied::Unchanged);
        }
    }
    let (_, _, kind, _) = d.kind.gvk();
    if d.create_only {
        let obj: DynamicObject = serde_json::from_value(d.object.clone())
            .map_err(|e| Error::Render(format!("{kind} {}: {e}", d.name)))?;
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            // Created by a concurrent reconcile of another replica: fine, it is never rewritten.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Applied::Unchanged),
            Err(e) => return Err(Error::apply(kind, &d.name, e)),
        }
        metrics.writes.with_label_values(&[kind, "create"]).inc();
        return Ok(Applied::Written);
    }
    api.patch(
        &d.name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&d.object),
    )
    .await
    .map_err(|e| Error::apply(kind, &d.name, e))?;
    metrics.writes.with_label_values(&[kind, "apply"]).inc();
    Ok(Applied::Written)
}

/// Deletes the children of `owner_uid` of `kind` that are not in `keep`. `present` is what the
/// caches hold: `(name, owner uid)` of every child of that kind in the namespace.
pub async fn sweep(
    client: &Client,
    metrics: &Metrics,
    namespace: &str,
    kind: ChildKind,
    owner_uid: &str,
    present: Vec<(String, Option<String>)>,
    keep: &HashSet<(ChildKind, String)>,
) -> Result<usize, Error> {
    let api = api(client, kind, namespace);
    let (_, _, kind_name, _) = kind.gvk();
    let mut deleted = 0;
    for (name, uid) in present {
        if uid.as_deref() != Some(owner_uid) || keep.contains(&(kind, name.clone())) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(Error::kube(format!("delete {kind_name} {name}"), e)),
        }
        metrics
            .writes
            .with_label_values(&[kind_name, "delete"])
            .inc();
        tracing::info!(kind = kind_name, %namespace, %name, "deleted a child the spec no longer wants");
        deleted += 1;
    }
    Ok(deleted)
}

/// Children of kinds nobody caches (Prometheus Operator objects): listed by owner label.
pub async fn list_owned(
    client: &Client,
    kind: ChildKind,
    namespace: &str,
    owner_uid: &str,
) -> Result<Vec<(String, Option<String>)>, Error> {
    let lp = kube::api::ListParams::default().labels(&format!("{OWNER_UID}={owner_uid}"));
    let list = api(client, kind, namespace)
        .list_metadata(&lp)
        .await
        .map_err(|e| Error::kube(format!("list {kind:?}"), e))?;
    Ok(list
        .items
        .iter()
        .map(|o| (o.name_any(), o.labels().get(OWNER_UID).cloned()))
        .collect())
}

impl Existing {
    pub fn of<K: ResourceExt>(o: &K) -> Existing {
        Existing {
            hash: o.annotations().get(SPEC_HASH).cloned(),
            owner_uid: o.labels().get(OWNER_UID).cloned(),
            labels: o.labels().clone(),
        }
    }
}

/// A retained child (see [`Desired::retained`]) that this operator made for an owner of the same
/// kind, name and component: kept, as it is, by the owner re-created under that name. Anything
/// else under the name is somebody else's and stays a conflict.
pub fn adopts(d: &Desired, e: &Existing) -> bool {
    if !d.retained {
        return false;
    }
    let want = &d.object["metadata"]["labels"];
    [MANAGED_BY, INSTANCE, OWNER_KIND, COMPONENT]
        .iter()
        .all(|k| {
            want[*k]
                .as_str()
                .is_some_and(|v| e.labels.get(*k).map(String::as_str) == Some(v))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Owner;
    use k8s_openapi::api::core::v1::Secret;
    use std::collections::BTreeMap;

    fn owner(kind: &'static str, name: &str, uid: &str) -> Owner {
        Owner {
            kind,
            name: name.into(),
            namespace: "ns".into(),
            uid: uid.into(),
        }
    }

    fn secret(owner: &Owner, retained: bool) -> Desired {
        let s = Secret {
            metadata: owner.meta("bd-postgres", "database"),
            ..Default::default()
        };
        let mut d = Desired::new(ChildKind::Secret, &s);
        d.retained = retained;
        d
    }

    fn existing(labels: BTreeMap<String, String>) -> Existing {
        Existing {
            hash: None,
            owner_uid: labels.get(OWNER_UID).cloned(),
            labels,
        }
    }

    #[test]
    fn a_retained_child_is_adopted_by_its_owner_recreated_under_the_same_name() {
        let old = owner("BrotrDeployment", "bd", "uid-old");
        let new = owner("BrotrDeployment", "bd", "uid-new");
        let kept = existing(old.labels("database"));
        assert!(adopts(&secret(&new, true), &kept));
        // Not retained: a conflict as before.
        assert!(!adopts(&secret(&new, false), &kept));
        // Another name, another kind of owner, another component, or not ours: not adopted.
        for other in [
            owner("BrotrDeployment", "other", "uid-new"),
            owner("RelayMonitor", "bd", "uid-new"),
        ] {
            assert!(!adopts(&secret(&other, true), &kept), "{other:?}");
        }
        assert!(!adopts(&secret(&new, true), &existing(old.labels("api"))));
        let mut foreign = old.labels("database");
        foreign.remove(MANAGED_BY);
        assert!(!adopts(&secret(&new, true), &existing(foreign)));
        assert!(!adopts(&secret(&new, true), &existing(BTreeMap::new())));
    }
}
