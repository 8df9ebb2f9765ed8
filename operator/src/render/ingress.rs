//! The api's Ingress: one host, with TLS when a Secret is named, routing what the public reads:
//! `/` (the relay's WebSocket upgrade and NIP-11), `/v1/…` (the HTTP API) and `/openapi.json`.
//! Not `/metrics`, `/healthz` or `/readyz`: those stay inside the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::{ChildKind, Desired, Owner};

/// What the Ingress routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route<'a> {
    pub host: &'a str,
    pub tls_secret: Option<&'a str>,
    pub class_name: Option<&'a str>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// The Service and its port.
    pub service: &'a str,
    pub port: i32,
}

pub fn api(owner: &Owner, name: &str, r: &Route<'_>) -> Desired {
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: r.service.to_owned(),
            port: Some(ServiceBackendPort {
                number: Some(r.port),
                name: None,
            }),
        }),
        resource: None,
    };
    let mut metadata = owner.meta(name, "api");
    metadata.annotations = r.annotations.cloned();
    let i = Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: r.class_name.map(str::to_owned),
            tls: r.tls_secret.map(|s| {
                vec![IngressTLS {
                    hosts: Some(vec![r.host.to_owned()]),
                    secret_name: Some(s.to_owned()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(r.host.to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: [
                        ("/", "Exact"),
                        ("/v1", "Prefix"),
                        ("/openapi.json", "Exact"),
                    ]
                    .into_iter()
                    .map(|(path, kind)| HTTPIngressPath {
                        path: Some(path.into()),
                        path_type: kind.into(),
                        backend: backend.clone(),
                    })
                    .collect(),
                }),
            }]),
            default_backend: None,
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::Ingress, &i)
}
