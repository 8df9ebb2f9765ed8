//! One-shot Jobs: the schema migration and the seeder.
//!
//! Exit code 2 is the probe's "bad usage or configuration, never worth a retry": a pod failure
//! policy fails the Job at once instead of retrying, and the controller reports it as Stalled.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{ChildKind, Desired, Owner};

/// Retries of a Job whose pod failed for another reason (database not up yet, a node lost).
pub const BACKOFF_LIMIT: i32 = 6;

/// A Job running `pod` once, failed at once on exit code 2.
pub fn one_shot(
    owner: &Owner,
    name: &str,
    component: &str,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
) -> Desired {
    Desired::new(
        ChildKind::Job,
        &job(owner, name, component, pod, annotations),
    )
}

/// The Job object (also the template of CronJobs).
pub fn job(
    owner: &Owner,
    name: &str,
    component: &str,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
) -> Job {
    Job {
        metadata: owner.meta(name, component),
        spec: Some(spec(owner, component, pod, annotations, BACKOFF_LIMIT)),
        ..Default::default()
    }
}

/// A Job spec failing at once on exit code 2, retrying other failures `backoff_limit` times.
pub fn spec(
    owner: &Owner,
    component: &str,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
    backoff_limit: i32,
) -> JobSpec {
    JobSpec {
        backoff_limit: Some(backoff_limit),
        pod_failure_policy: Some(PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some("probe".into()),
                    operator: "In".into(),
                    values: vec![2],
                }),
                on_pod_conditions: None,
            }],
        }),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(owner.labels(component)),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                ..pod
            }),
        },
        ..Default::default()
    }
}
