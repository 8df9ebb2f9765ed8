//! The metrics Service: headless, selecting every probe pod of the owner, so Prometheus scrapes
//! each pod (each shard) on its own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::METRICS_PORT;
use super::{ChildKind, Desired, INSTANCE, OWNER_KIND, Owner};

/// Label on every pod whose metrics the Service selects.
pub const METRICS_LABEL: &str = "brotr.dev/metrics";

pub fn metrics(owner: &Owner, name: &str) -> Desired {
    let s = Service {
        metadata: owner.meta(name, "metrics"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(BTreeMap::from([
                (INSTANCE.to_owned(), owner.name.clone()),
                (OWNER_KIND.to_owned(), owner.kind.to_owned()),
                (METRICS_LABEL.to_owned(), "true".to_owned()),
            ])),
            ports: Some(vec![ServicePort {
                name: Some("metrics".into()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::String("metrics".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::Service, &s)
}
