//! Pure renderers: a validated plan in, the Kubernetes objects it wants out. No I/O here; the
//! controllers apply what these return. One file per child kind.
//!
//! Every child carries a controller owner reference, the `app.kubernetes.io/*` labels, the
//! `brotr.dev/owner-kind`/`owner-uid` labels the sweep selects on, and a hash of its own
//! rendered content (`brotr.dev/spec-hash`), so a child whose hash matches is not written again.

pub mod config_map;
pub mod cron_job;
pub mod deployment;
pub mod ingress;
pub mod job;
pub mod monitoring;
pub mod pdb;
pub mod pod;
pub mod pooler;
pub mod postgres;
pub mod probe_config;
pub mod service;
pub mod stateful_set;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Field manager of every write the operator makes.
pub const MANAGER: &str = "brotr-operator";
/// Annotation holding the hash of a child's rendered content.
pub const SPEC_HASH: &str = "brotr.dev/spec-hash";
/// Label naming the kind of the custom resource that owns a child.
pub const OWNER_KIND: &str = "brotr.dev/owner-kind";
/// Label holding the uid of the custom resource that owns a child.
pub const OWNER_UID: &str = "brotr.dev/owner-uid";
/// Label on every child: the operator's watches select on it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the child's part of the pipeline.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Label naming the custom resource a child belongs to.
pub const INSTANCE: &str = "app.kubernetes.io/instance";

/// The custom resource that owns the children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl Owner {
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "brotr.dev/v1alpha1".into(),
            kind: self.kind.into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Labels every child of this owner carries; `component` says which part it is.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut l = self.selector(component);
        l.insert(MANAGED_BY.into(), MANAGER.into());
        l.insert(OWNER_UID.into(), self.uid.clone());
        l.insert("app.kubernetes.io/part-of".into(), "brotr".into());
        l
    }

    /// Labels of a long-running pod: its workload's, plus the one the metrics Service selects.
    pub fn pod_labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut l = self.labels(component);
        l.insert(service::METRICS_LABEL.into(), "true".into());
        l
    }

    /// The subset of [`Owner::labels`] that selects a workload's pods: stable for the owner's
    /// lifetime (selectors are immutable).
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "brotr".into()),
            (INSTANCE.into(), self.name.clone()),
            (COMPONENT.into(), component.into()),
            (OWNER_KIND.into(), self.kind.into()),
        ])
    }

    /// The selector of a workload's pods (see [`Owner::selector`]).
    pub fn label_selector(&self, component: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector(component)),
            match_expressions: None,
        }
    }

    /// The pod template of a long-running workload: its pod labels, `annotations`, `pod`.
    pub fn pod_template(
        &self,
        component: &str,
        pod: PodSpec,
        annotations: BTreeMap<String, String>,
    ) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(self.pod_labels(component)),
                annotations: Some(annotations),
                ..Default::default()
            }),
            spec: Some(pod),
        }
    }

    /// Metadata of a child: name, namespace, labels, owner reference.
    /// The in-cluster host name of this owner's Service `name` (`<name>.<namespace>.svc`).
    pub fn service_host(&self, name: &str) -> String {
        format!("{name}.{}.svc", self.namespace)
    }

    pub fn meta(&self, name: impl Into<String>, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner_reference()]),
            ..ObjectMeta::default()
        }
    }
}

/// The kinds of child the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    ConfigMap,
    Secret,
    Service,
    Job,
    Deployment,
    StatefulSet,
    CronJob,
    ServiceMonitor,
    Ingress,
    PodDisruptionBudget,
}

impl ChildKind {
    /// `(group, version, kind, plural)`.
    pub fn gvk(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            ChildKind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            ChildKind::Secret => ("", "v1", "Secret", "secrets"),
            ChildKind::Service => ("", "v1", "Service", "services"),
            ChildKind::Job => ("batch", "v1", "Job", "jobs"),
            ChildKind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            ChildKind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            ChildKind::CronJob => ("batch", "v1", "CronJob", "cronjobs"),
            ChildKind::ServiceMonitor => (
                "monitoring.coreos.com",
                "v1",
                "ServiceMonitor",
                "servicemonitors",
            ),
            ChildKind::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses"),
            ChildKind::PodDisruptionBudget => (
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
            ),
        }
    }

    pub fn api_version(self) -> String {
        match self.gvk() {
            ("", v, _, _) => v.to_owned(),
            (g, v, _, _) => format!("{g}/{v}"),
        }
    }
}

/// One object the spec wants, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub kind: ChildKind,
    pub name: String,
    /// The whole object (apiVersion, kind, metadata with the spec hash, spec).
    pub object: Value,
    /// Written once and never updated (the managed database's generated password).
    pub create_only: bool,
    /// Has no owner reference and outlives its owner, like the database volume it goes with; an
    /// owner of the same kind and name adopts it (the managed database's password).
    pub retained: bool,
}

impl Desired {
    /// Wraps a typed object: sets apiVersion/kind and the hash of everything else.
    pub fn new(kind: ChildKind, object: &impl Serialize) -> Desired {
        let mut object = serde_json::to_value(object).unwrap_or(Value::Null);
        let (_, _, k, _) = kind.gvk();
        object["apiVersion"] = kind.api_version().into();
        object["kind"] = k.into();
        let hash = content_hash(&object);
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(SPEC_HASH.into(), hash.into());
            }
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Desired {
            kind,
            name,
            object,
            create_only: false,
            retained: false,
        }
    }

    /// The hash this object was rendered with.
    pub fn hash(&self) -> &str {
        self.object["metadata"]["annotations"][SPEC_HASH]
            .as_str()
            .unwrap_or_default()
    }
}

/// First 16 hex digits of the SHA-256 of a value's canonical JSON (serde_json sorts map keys).
pub fn content_hash(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

/// A short hash for names (`<bd>-migrate-<8 hex>`).
pub fn name_hash(value: &impl Serialize) -> String {
    content_hash(value)[..8].to_owned()
}

/// FNV-1a of a string: a stable spread (start offsets, default schedules) that does not change
/// between operator versions.
pub fn spread(key: &str, modulo: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % modulo.max(1)
}

/// Parses an operator interval (`90s`, `30m`, `8h`; bounds enforced by the CRD) into seconds.
pub fn interval_secs(s: &str) -> Option<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            kind: "BrotrDeployment",
            name: "bb".into(),
            namespace: "ns".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn children_carry_the_owner_and_the_sweep_labels() {
        let m = owner().meta("bb-config", "config");
        let l = m.labels.unwrap();
        assert_eq!(l[OWNER_UID], "u-1");
        assert_eq!(l[OWNER_KIND], "BrotrDeployment");
        assert_eq!(l[MANAGED_BY], MANAGER);
        assert_eq!(l[INSTANCE], "bb");
        assert_eq!(l[COMPONENT], "config");
        let r = &m.owner_references.unwrap()[0];
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(
            (r.kind.as_str(), r.uid.as_str()),
            ("BrotrDeployment", "u-1")
        );
        // The selector has no uid: it must stay valid if labels are re-rendered.
        assert!(!owner().selector("x").contains_key(OWNER_UID));
    }

    #[test]
    fn the_hash_covers_the_content_and_is_stable() {
        let cm = |v: &str| serde_json::json!({"metadata": {"name": "a"}, "data": {"k": v}});
        let a = Desired::new(ChildKind::ConfigMap, &cm("1"));
        let b = Desired::new(ChildKind::ConfigMap, &cm("1"));
        let c = Desired::new(ChildKind::ConfigMap, &cm("2"));
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.hash().len(), 16);
        assert_eq!(a.object["apiVersion"], "v1");
        assert_eq!(a.object["kind"], "ConfigMap");
        assert_eq!(a.name, "a");
        let job = Desired::new(ChildKind::CronJob, &cm("1"));
        assert_eq!(job.object["apiVersion"], "batch/v1");
        assert_ne!(job.hash(), a.hash(), "the kind is part of the content");
    }

    #[test]
    fn intervals_parse_in_every_unit_and_nothing_else() {
        assert_eq!(interval_secs("90s"), Some(90));
        assert_eq!(interval_secs("30m"), Some(1800));
        assert_eq!(interval_secs("168h"), Some(604_800));
        for bad in ["", "h", "1d", "1h30m", "-1m", "1.5h", "m5"] {
            assert_eq!(interval_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn spread_is_stable_and_bounded() {
        assert_eq!(spread("ns/a", 60), spread("ns/a", 60));
        assert!((0..200).all(|i| spread(&format!("ns/m{i}"), 60) < 60));
        let distinct: std::collections::HashSet<_> =
            (0..200).map(|i| spread(&format!("ns/m{i}"), 60)).collect();
        assert!(
            distinct.len() > 40,
            "spreads over the minute: {}",
            distinct.len()
        );
    }
}
