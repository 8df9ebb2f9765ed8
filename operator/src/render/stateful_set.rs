//! The synchronizer's StatefulSet: `shards` pods started in parallel, pod `i` running
//! `sync --shard i/shards` (the index from the `apps.kubernetes.io/pod-index` label). No volumes:
//! the cursors are in the database.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::PodSpec;

use super::{ChildKind, Desired, Owner};

pub fn shards(
    owner: &Owner,
    name: &str,
    component: &str,
    replicas: i32,
    service_name: &str,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
) -> Desired {
    let s = StatefulSet {
        metadata: owner.meta(name, component),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(service_name.into()),
            pod_management_policy: Some("Parallel".into()),
            selector: owner.label_selector(component),
            revision_history_limit: Some(3),
            template: owner.pod_template(component, pod, annotations),
            ..Default::default()
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::StatefulSet, &s)
}
