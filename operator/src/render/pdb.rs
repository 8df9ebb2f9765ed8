//! PodDisruptionBudgets: a drain keeps at least one api pod serving when there are several.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ChildKind, Desired, Owner};

/// At most one of the component's pods evicted at a time.
pub fn one_at_a_time(owner: &Owner, name: &str, component: &str) -> Desired {
    let p = PodDisruptionBudget {
        metadata: owner.meta(name, component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(owner.label_selector(component)),
            ..Default::default()
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::PodDisruptionBudget, &p)
}
