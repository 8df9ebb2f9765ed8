//! Deployments: one per long-running service (finder, validator, monitor) and the interval-mode
//! RelayMonitor. One replica, `Recreate`: two copies of a service would do the same work twice.
//! The api is the exception: any number of replicas serve the same archive, rolled one by one.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ChildKind, Desired, Owner};

/// How a Deployment replaces its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// The old pod goes first: two copies of a service would do the same work twice.
    Recreate,
    /// Interchangeable pods (the api): no pod down before its replacement is Ready.
    Rolling,
}

impl Rollout {
    fn strategy(self) -> DeploymentStrategy {
        match self {
            Rollout::Recreate => DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            },
            Rollout::Rolling => DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            },
        }
    }
}

/// A long-running service's Deployment (`Recreate`).
pub fn service(
    owner: &Owner,
    name: &str,
    component: &str,
    replicas: i32,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
) -> Desired {
    deployment(
        owner,
        name,
        component,
        replicas,
        Rollout::Recreate,
        pod,
        annotations,
    )
}

/// A Deployment of `replicas` pods replaced as `rollout` says.
pub fn deployment(
    owner: &Owner,
    name: &str,
    component: &str,
    replicas: i32,
    rollout: Rollout,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
) -> Desired {
    let d = Deployment {
        metadata: owner.meta(name, component),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: owner.label_selector(component),
            strategy: Some(rollout.strategy()),
            revision_history_limit: Some(3),
            template: owner.pod_template(component, pod, annotations),
            ..Default::default()
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::Deployment, &d)
}
