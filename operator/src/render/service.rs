//! Services: the metrics Service, headless, selecting every probe pod of the owner, so
//! Prometheus scrapes each pod (each shard) on its own; and the api's, in front of its pods.

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

/// The container port the api listens on (the probe's `api.listen`, set by the operator).
pub const API_PORT: i32 = 8080;

/// The api's Service: `port` (named `http`: the relay's WebSocket and the HTTP API share it) to
/// the pods' `api` port.
pub fn api(owner: &Owner, name: &str, type_: &str, port: i32) -> Desired {
    let s = Service {
        metadata: owner.meta(name, "api"),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(owner.selector("api")),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                target_port: Some(IntOrString::String("api".into())),
                protocol: Some("TCP".into()),
                app_protocol: Some("http".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::Service, &s)
}
