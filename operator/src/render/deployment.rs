//! Deployments: one per long-running service (finder, validator, monitor) and the interval-mode
//! RelayMonitor. One replica, `Recreate`: two copies of a service would do the same work twice.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::PodSpec;

use super::{ChildKind, Desired, Owner};

pub fn service(
    owner: &Owner,
    name: &str,
    component: &str,
    replicas: i32,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
) -> Desired {
    let d = Deployment {
        metadata: owner.meta(name, component),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: owner.label_selector(component),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            revision_history_limit: Some(3),
            template: owner.pod_template(component, pod, annotations),
            ..Default::default()
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::Deployment, &d)
}
