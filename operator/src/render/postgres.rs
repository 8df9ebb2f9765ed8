//! The managed single-node PostgreSQL of a quick start: a StatefulSet with one volume, a Service,
//! and a Secret with a generated password (created once, never rewritten) whose `uri` key the
//! probe pods read. Production belongs on an operator built for databases (CloudNativePG).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ChildKind, Desired, Owner};

/// The database user and database name.
pub const USER: &str = "brotr";
/// Key of the password in the Secret.
pub const PASSWORD_KEY: &str = "password";
/// Key of the connection URL in the Secret (what the probe pods read).
pub const URI_KEY: &str = "uri";
/// The postgres user of the official images.
const POSTGRES_UID: i64 = 999;

/// On the StatefulSet: the size its volumeClaimTemplate was created with (that template is
/// immutable, so it keeps this size for good).
pub const CLAIM_STORAGE: &str = "brotr.dev/claim-storage";
/// On the StatefulSet: the size its claim was last grown to (`spec.database.managed.storage`).
pub const STORAGE: &str = "brotr.dev/storage";
/// On the StatefulSet: a size the API server refused to grow the claim to (not asked again).
pub const STORAGE_REFUSED: &str = "brotr.dev/storage-refused";

/// The claim of a managed database's only pod (`<template>-<StatefulSet>-<ordinal>`).
pub fn claim_name(name: &str) -> String {
    format!("data-{name}-0")
}

/// What the managed database is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed<'a> {
    /// `<bd>-postgres`: StatefulSet, Service and Secret.
    pub name: &'a str,
    pub image: &'a str,
    /// The size the claim has been grown to (`spec…storage` unless a growth was refused).
    pub storage: &'a Quantity,
    /// A size the API server refused to grow the claim to.
    pub storage_refused: Option<&'a Quantity>,
    /// The size of the existing StatefulSet's claim template (`storage` when there is none).
    pub claim_storage: &'a Quantity,
    pub storage_class: Option<&'a str>,
    pub resources: Option<&'a ResourceRequirements>,
    pub overrides: &'a crate::crd::common::PodOverrides,
    /// The server's `max_connections`, when the connection budget needs more than PostgreSQL's
    /// default (100): left out otherwise, so the server is not restarted for nothing.
    pub max_connections: Option<i32>,
}

/// The Secret, with a password the caller generated; applied only when absent.
///
/// It lives as long as the database's volume (which the StatefulSet retains when the
/// BrotrDeployment is deleted): no owner reference, so deleting the BrotrDeployment keeps it,
/// and a BrotrDeployment re-created under the same name adopts it, unchanged, and starts on the
/// old data with the password that data was made with.
pub fn secret(owner: &Owner, m: &Managed<'_>, password: &str) -> Desired {
    let mut d = login_secret(owner, m, (m.name, "database"), USER, password);
    if let Some(meta) = d.object.get_mut("metadata").and_then(|v| v.as_object_mut()) {
        meta.remove("ownerReferences");
    }
    d.retained = true;
    d
}

/// The login the api connects with on a managed database (a member of `brotr_reader`).
pub const READER_LOGIN: &str = "brotr_api";

/// The read-only login's Secret (`password`, and the `uri` the api pods read), with a
/// password the caller generated; applied only when absent. The migration Job creates the
/// login with this password.
pub fn reader_secret(owner: &Owner, m: &Managed<'_>, name: &str, password: &str) -> Desired {
    login_secret(owner, m, (name, "api"), READER_LOGIN, password)
}

/// A Secret `(name, component)` holding `user`'s `password` and its `uri` to the managed
/// database; created once, never rewritten.
fn login_secret(
    owner: &Owner,
    m: &Managed<'_>,
    (name, component): (&str, &str),
    user: &str,
    password: &str,
) -> Desired {
    let host = owner.service_host(m.name);
    let s = Secret {
        metadata: owner.meta(name, component),
        string_data: Some(BTreeMap::from([
            (PASSWORD_KEY.to_owned(), password.to_owned()),
            (
                URI_KEY.to_owned(),
                format!("postgres://{user}:{password}@{host}:5432/{USER}"),
            ),
        ])),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let mut d = Desired::new(ChildKind::Secret, &s);
    d.create_only = true;
    d
}

pub fn service(owner: &Owner, m: &Managed<'_>) -> Desired {
    postgres_port_service(owner, m.name, "database", "postgres")
}

/// A Service `name` on PostgreSQL's port 5432 to the named container port of `component`'s pods
/// (the database itself, or its pooler).
pub fn postgres_port_service(owner: &Owner, name: &str, component: &str, port: &str) -> Desired {
    let s = Service {
        metadata: owner.meta(name, component),
        spec: Some(ServiceSpec {
            selector: Some(owner.selector(component)),
            ports: Some(vec![ServicePort {
                name: Some("postgres".into()),
                port: 5432,
                target_port: Some(IntOrString::String(port.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::Service, &s)
}

pub fn stateful_set(owner: &Owner, m: &Managed<'_>) -> Desired {
    let secret_env = |name: &str, key: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: m.name.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let plain = |name: &str, v: &str| EnvVar {
        name: name.into(),
        value: Some(v.into()),
        ..Default::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    };
    let ready = Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "pg_isready".into(),
                "-U".into(),
                USER.into(),
                "-h".into(),
                "127.0.0.1".into(),
            ]),
        }),
        period_seconds: Some(5),
        failure_threshold: Some(6),
        ..Default::default()
    };
    let container = Container {
        name: "postgres".into(),
        image: Some(m.image.into()),
        // The image's entrypoint runs `postgres` with these arguments.
        args: m.max_connections.map(|n| {
            vec![
                "postgres".into(),
                "-c".into(),
                format!("max_connections={n}"),
            ]
        }),
        env: Some(vec![
            plain("POSTGRES_USER", USER),
            plain("POSTGRES_DB", USER),
            secret_env("POSTGRES_PASSWORD", PASSWORD_KEY),
            plain("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".into()),
            container_port: 5432,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(ready.clone()),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(30),
            ..ready
        }),
        volume_mounts: Some(vec![
            mount("data", "/var/lib/postgresql/data"),
            mount("run", "/var/run/postgresql"),
            mount("tmp", "/tmp"),
        ]),
        resources: m.resources.cloned(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let empty = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    let o = m.overrides;
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![empty("run"), empty("tmp")]),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(POSTGRES_UID),
            run_as_group: Some(POSTGRES_UID),
            fs_group: Some(POSTGRES_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        node_selector: o.node_selector.clone(),
        tolerations: o.tolerations.clone(),
        affinity: o.affinity.clone(),
        image_pull_secrets: o.image_pull_secrets.clone(),
        priority_class_name: o.priority_class_name.clone(),
        ..Default::default()
    };
    let mut metadata = owner.meta(m.name, "database");
    metadata.annotations.get_or_insert_default().extend([
        (CLAIM_STORAGE.to_owned(), m.claim_storage.0.clone()),
        (STORAGE.to_owned(), m.storage.0.clone()),
    ]);
    if let Some(r) = m.storage_refused {
        let a = metadata.annotations.get_or_insert_default();
        a.insert(STORAGE_REFUSED.to_owned(), r.0.clone());
    }
    let s = StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(m.name.into()),
            selector: owner.label_selector("database"),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(owner.labels("database")),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: m.storage_class.map(str::to_owned),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            m.claim_storage.clone(),
                        )])),
                        limits: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            // Deleting the pipeline keeps the data; scaling down too.
            persistent_volume_claim_retention_policy: Some(
                k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::StatefulSet, &s)
}
