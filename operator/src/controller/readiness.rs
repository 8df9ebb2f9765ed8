//! Readiness of children, read from their status (pure).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;

use crate::crd::brotr_deployment::JobState;
use crate::crd::common::ComponentStatus;

/// Ready replicas of the current revision, of those wanted.
pub fn deployment(d: &Deployment) -> ComponentStatus {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let current = st.observed_generation >= d.metadata.generation;
    let ready = if current {
        st.ready_replicas
            .unwrap_or(0)
            .min(st.updated_replicas.unwrap_or(0))
    } else {
        0
    };
    component(ready, desired, current)
}

/// Ready pods of the current revision, of those wanted.
pub fn stateful_set(s: &StatefulSet) -> ComponentStatus {
    let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    let current = st.observed_generation >= s.metadata.generation
        && (st.update_revision.is_none() || st.current_revision == st.update_revision);
    let ready = if current {
        st.ready_replicas.unwrap_or(0)
    } else {
        st.ready_replicas
            .unwrap_or(0)
            .min(st.updated_replicas.unwrap_or(0))
    };
    component(ready, desired, current)
}

fn component(ready: i32, desired: i32, current: bool) -> ComponentStatus {
    ComponentStatus {
        ready,
        desired,
        message: if !current {
            Some("rolling out".into())
        } else if ready < desired {
            Some(format!("{ready} of {desired} ready"))
        } else {
            None
        },
    }
}

/// Where a Job is, and for a failed one, whether it refused (exit code 2, matched by the pod
/// failure policy: a bad config or schema, no retry helps).
pub fn job(j: &Job) -> (JobState, bool) {
    let st = j.status.clone().unwrap_or_default();
    let cond = |t: &str| {
        st.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if cond("Complete").is_some() {
        return (JobState::Complete, false);
    }
    if let Some(c) = cond("Failed") {
        return (
            JobState::Failed,
            c.reason.as_deref() == Some("PodFailurePolicy"),
        );
    }
    if st.active.unwrap_or(0) > 0 {
        return (JobState::Running, false);
    }
    (JobState::Pending, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_deployment_is_ready_when_the_current_revision_is() {
        let ready = dep(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1}}),
        );
        assert_eq!(
            deployment(&ready),
            ComponentStatus {
                ready: 1,
                desired: 1,
                message: None
            }
        );
        let stale = dep(
            json!({"metadata": {"generation": 3}, "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1}}),
        );
        assert_eq!(deployment(&stale).ready, 0);
        let old_pod = dep(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 0}}),
        );
        assert_eq!(deployment(&old_pod).ready, 0);
        let stopped = dep(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 0, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2}}),
        );
        assert_eq!(
            deployment(&stopped),
            ComponentStatus {
                ready: 0,
                desired: 0,
                message: None
            }
        );
    }

    #[test]
    fn jobs_report_where_they_are_and_whether_they_refused() {
        let j = |status: serde_json::Value| -> Job {
            serde_json::from_value(json!({"status": status})).unwrap()
        };
        assert_eq!(job(&j(json!({}))), (JobState::Pending, false));
        assert_eq!(job(&j(json!({"active": 1}))), (JobState::Running, false));
        assert_eq!(
            job(&j(
                json!({"conditions": [{"type": "Complete", "status": "True"}]})
            )),
            (JobState::Complete, false)
        );
        assert_eq!(
            job(&j(
                json!({"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]})
            )),
            (JobState::Failed, true)
        );
        assert_eq!(
            job(&j(
                json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
            )),
            (JobState::Failed, false)
        );
    }
}
