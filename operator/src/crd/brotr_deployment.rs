//! `BrotrDeployment`: one whole Brotr pipeline (database, seeder, finder, validator, monitor,
//! synchronizer shards, maintenance) in one namespace.
//!
//! Every section is optional. An absent service section runs that service with the probe's
//! defaults; `enabled: false` turns it off. Absent `maintenance` runs the three maintenance
//! CronJobs on their default schedules.

use brotr_probe::config::{
    ApiConfig, ConsensusConfig, FinderConfig, LimitsConfig, MaintainConfig, MonitorConfig,
    NetworksConfig, SyncConfig, ValidatorConfig,
};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ComponentStatus, ConfigMapKeyRef, GeoIpSource, IdentitySpec, ImageSpec, PodOverrides,
    SecretKeyRef, TorSidecarSpec, WorkloadSpec, conditions_schema, cron_rule, interval_rule,
    name_rule, overlay_proxy_rule, relay_list_rule, resources_schema,
};
use super::settings::Settings;

/// Upper bound on synchronizer shards (each shard is one pod).
pub const MAX_SHARDS: i32 = 64;
/// Longest BrotrDeployment name: its longest child, the `<name>-migrate-<hash>` Job, must stay
/// within 63 characters with its pods' suffix, and StatefulSets/CronJobs within 52.
pub const MAX_NAME: usize = 40;
/// Most inline seed relays (the list lands in a ConfigMap; larger lists belong in one of
/// the user's own ConfigMaps, `seeder.configMapRef`).
pub const MAX_INLINE_RELAYS: u32 = 1000;

/// Desired state of a Brotr pipeline.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "brotr.dev",
    version = "v1alpha1",
    kind = "BrotrDeployment",
    plural = "brotrdeployments",
    shortname = "bd",
    category = "brotr",
    namespaced,
    status = "BrotrDeploymentStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Schema","type":"string","jsonPath":".spec.schema"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Shards","type":"integer","jsonPath":".status.shards"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = name_rule(MAX_NAME, "BrotrDeployment")
)]
#[serde(rename_all = "camelCase")]
pub struct BrotrDeploymentSpec {
    /// Database schema flavour. Immutable: switching needs a new BrotrDeployment.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("schema is immutable; create a new BrotrDeployment to change it")
        .reason(Reason::FieldValueForbidden))]
    pub schema: SchemaFlavor,
    /// Probe image (the operator's default when absent; see `status.image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// The pipeline's Nostr key: answers NIP-42 AUTH and signs the monitor's events. Without
    /// it, an ephemeral key answers AUTH and nothing is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,
    /// Where the data lives.
    pub database: DatabaseSpec,
    /// Networks the services reach relays on (the probe's `networks`). Tor enabled without a
    /// `proxyUrl` gets a Tor sidecar in every pod that talks to relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = overlay_proxy_rule())]
    pub networks: Option<Settings<NetworksConfig>>,
    /// The Tor sidecar (used when Tor is enabled without a `proxyUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tor: Option<TorSidecarSpec>,
    /// Limits on what is read from relays (the probe's `limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Settings<LimitsConfig>>,
    /// Initial relay list, loaded by a Job after the migration (and again when it changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeder: Option<SeederSpec>,
    /// Relay discovery from archived events and HTTP APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finder: Option<FinderSpec>,
    /// Candidate validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<ValidatorSpec>,
    /// NIP-11/NIP-66 monitoring of the known relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorServiceSpec>,
    /// Event archiving, sharded over relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronizer: Option<SynchronizerSpec>,
    /// Maintenance CronJobs (`brotr-probe maintain refresh|retention|cleanup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceSpec>,
    /// The archive's read side (`brotr-probe api`): a read-only Nostr relay and an HTTP API
    /// over what the pipeline stored. Off when absent; present, it runs unless `enabled: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSpec>,
    /// Prometheus Operator objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
    /// Pod settings for every pod of the pipeline (each service's `workload.podOverrides` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
    /// Stop changing the children (status is still reported).
    #[serde(default)]
    pub paused: bool,
    /// Scale every service to zero and suspend the CronJobs, keeping the data.
    #[serde(default)]
    pub stopped: bool,
}

/// Database schema flavour.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchemaFlavor {
    /// Whole events.
    Full,
    /// Event id, pubkey, created_at, kind and tag values only.
    Lite,
}

impl SchemaFlavor {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaFlavor::Full => "full",
            SchemaFlavor::Lite => "lite",
        }
    }
}

/// Database: an existing server, or a managed single-node PostgreSQL (exactly one; the choice
/// cannot be switched, which would quietly abandon the data).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.external) != has(self.managed)")
    .message("database: set exactly one of external or managed")
    .reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("has(self.managed) == has(oldSelf.managed)")
    .message("database: external and managed cannot be switched (the data would be left behind)")
    .reason(Reason::FieldValueForbidden))]
pub struct DatabaseSpec {
    /// An existing PostgreSQL server, e.g. CloudNativePG's `<cluster>-app` Secret (key `uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatabase>,
    /// A single-node PostgreSQL StatefulSet run by the operator (quick starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedDatabase>,
    /// The connection budget: server connections the pipeline's pods and the RelayMonitors
    /// that target it may hold together (default 80). `monitorConnections` of them are
    /// reserved for the monitors; the rest is split evenly over every pipeline pod that
    /// connects (services, shards, api replicas and the one a rollout adds, Jobs), at most 8
    /// each. A managed server is started with room for it. A budget its pods cannot fit in
    /// stalls the pipeline with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 100000))]
    pub max_connections: Option<i32>,
    /// Connections of the budget reserved for RelayMonitors that target this pipeline, one
    /// each, taken in order of creation (default 20; 0: none may target it). A monitor past
    /// them is Stalled until one is freed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub monitor_connections: Option<i32>,
}

/// An existing PostgreSQL server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.poolerUrlSecretRef) && has(self.pooler))")
    .message("database.external: set at most one of poolerUrlSecretRef (a pooler you run) and \
              pooler (one the operator runs)")
    .reason(Reason::FieldValueForbidden))]
pub struct ExternalDatabase {
    /// Secret key holding the `postgres://` URL (passed to the pods from the Secret, never
    /// copied).
    pub url_secret_ref: SecretKeyRef,
    /// Secret key holding the CA certificate the server's certificate is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the `postgres://` URL of a connection pooler you run in front of
    /// this server in transaction mode (PgBouncer's `pool_mode = transaction`, e.g. a
    /// CloudNativePG `Pooler`'s Service). The services, shards, maintenance and the
    /// RelayMonitors that target this pipeline connect through it (`--db-pooler transaction`);
    /// the migration Job and the api connect to `urlSecretRef` (the migrations' lock and the
    /// api's LISTEN need a session of their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler_url_secret_ref: Option<SecretKeyRef>,
    /// A PgBouncer the operator runs in front of this server (transaction mode, a Deployment
    /// and a Service `<name>-pooler`), as for a managed database; off unless this is set.
    /// At its start it reads the server, user and password from `urlSecretRef` (and checks
    /// the server's certificate against `caSecretRef` as the URL's sslmode says); the pods
    /// then connect to it with the same URL (`--db-via`). The migration Job and the api
    /// connect to the server itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerSpec>,
}

/// A managed single-node PostgreSQL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.storageClassName) == has(oldSelf.storageClassName) \
     && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
).message("storageClassName is immutable (a volume cannot move to another class)")
.reason(Reason::FieldValueForbidden))]
pub struct ManagedDatabase {
    /// Volume size, e.g. `50Gi`; it can grow, never shrink.
    #[schemars(schema_with = "quantity_schema")]
    pub storage: Quantity,
    /// StorageClass of the volume (the cluster's default when absent). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// PostgreSQL image (the operator's pinned default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Resources of the PostgreSQL container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// The connection pooler in front of it (PgBouncer, transaction mode; on by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerSpec>,
}

/// A PgBouncer the operator runs in front of the database: a Deployment and a Service
/// `<name>-pooler`. Its server connections are the connection budget less what the pods that
/// connect directly (the migration Job, the api) may hold; every other pod, and any number of
/// RelayMonitors, share them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerSpec {
    /// Run the pooler (default true: on for a managed database unless turned off, and for an
    /// external one once this section is there). Without it every pod connects to the server
    /// and the RelayMonitors are limited to `spec.database.monitorConnections` seats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// PgBouncer image (the operator's `--pgbouncer-image` when absent). It runs
    /// `/bin/sh` and `pgbouncer` from the image's PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Resources of the PgBouncer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
}

fn quantity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A Kubernetes quantity, e.g. 10Gi.",
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [{
            "rule": "quantity(string(self)).compareTo(quantity(string(oldSelf))) >= 0",
            "message": "managed database storage can grow, never shrink",
            "reason": "FieldValueForbidden",
        }],
    })
}

/// Seeder: where the first relay URLs come from (at most one source).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.relays) && has(self.configMapRef))")
    .message("seeder: set at most one of relays or configMapRef")
    .reason(Reason::FieldValueForbidden))]
pub struct SeederSpec {
    /// Run the seeder Job (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Inline relay URLs (at most 1,000; use `configMapRef` for more). Without a source the
    /// probe's bundled list is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_INLINE_RELAYS), inner(length(max = 512)))]
    #[x_kube(validation = relay_list_rule())]
    pub relays: Option<Vec<String>>,
    /// A ConfigMap key holding one relay URL per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// Insert seeds as candidates to validate (true, default) or directly as relays (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_validate: Option<bool>,
    /// Pod knobs of the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSpec>,
}

/// A long-running service: on/off, period, pod knobs, and the probe's settings of it. (A
/// macro, not a generic struct: the schema derive takes no type parameters.)
macro_rules! service_spec {
    ($(#[$doc:meta])* $name:ident, $settings:ty) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// Run this service (default true).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub enabled: Option<bool>,
            /// Period between cycles, e.g. `8h` (the probe's default when absent).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 16))]
            #[x_kube(validation = interval_rule())]
            pub interval: Option<String>,
            /// Resources and pod overrides of the service's pod.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub workload: Option<WorkloadSpec>,
            /// The probe's settings of this service.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub settings: Option<Settings<$settings>>,
        }
    };
}

service_spec!(
    /// The finder: relay discovery from archived events and HTTP APIs.
    FinderSpec,
    FinderConfig
);
service_spec!(
    /// The validator: promotes candidates that answer like Nostr relays.
    ValidatorSpec,
    ValidatorConfig
);

/// What every service section has: on/off, period, pod knobs, the probe's settings.
pub trait ServiceKnobs {
    type Section: super::settings::Section;
    fn enabled(&self) -> bool;
    fn interval(&self) -> Option<&str>;
    fn workload(&self) -> Option<&WorkloadSpec>;
    fn settings(&self) -> Option<&Settings<Self::Section>>;
}

macro_rules! knobs {
    ($t:ty, $section:ty) => {
        impl ServiceKnobs for $t {
            type Section = $section;
            fn enabled(&self) -> bool {
                self.enabled.unwrap_or(true)
            }
            fn interval(&self) -> Option<&str> {
                self.interval.as_deref()
            }
            fn workload(&self) -> Option<&WorkloadSpec> {
                self.workload.as_ref()
            }
            fn settings(&self) -> Option<&Settings<$section>> {
                self.settings.as_ref()
            }
        }
    };
}

knobs!(FinderSpec, FinderConfig);
knobs!(ValidatorSpec, ValidatorConfig);
knobs!(MonitorServiceSpec, MonitorConfig);
knobs!(SynchronizerSpec, SyncConfig);

/// The monitor of a BrotrDeployment (NIP-11 + NIP-66 checks of every known relay).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorServiceSpec {
    /// Run this service (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Period between cycles, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = interval_rule())]
    pub interval: Option<String>,
    /// Resources and pod overrides of the monitor's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSpec>,
    /// The probe's monitor settings: checks and publishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings<MonitorConfig>>,
    /// GeoLite2 databases for the geo and net checks (skipped when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip: Option<GeoIpSource>,
}

/// The synchronizer: a StatefulSet of `shards` pods, pod `i` archiving the relays whose URL hash
/// is `i` mod `shards`. Changing `shards` reassigns most relays; that is harmless (inserts are
/// idempotent and cursors are per relay), the next cycles just resume elsewhere.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronizerSpec {
    /// Run this service (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Period between cycles, e.g. `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = interval_rule())]
    pub interval: Option<String>,
    /// Number of shards (pods), 1 to 64 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_SHARDS))]
    pub shards: Option<i32>,
    /// Resources and pod overrides of each shard's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSpec>,
    /// The probe's synchronizer settings: filters, since, per-relay overrides, paging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings<SyncConfig>>,
}

/// Most api replicas.
pub const MAX_API_REPLICAS: i32 = 50;

/// The archive's read side: a Deployment of `brotr-probe api` behind a Service, an optional
/// Ingress, and a PodDisruptionBudget when it has more than one replica. It connects with a
/// read-only database role: on a managed database the operator creates one (login
/// `brotr_api`, password in the Secret `<name>-api-db`); on an external one, `databaseUrlSecretRef`
/// names the URL of a role the administrator made a member of `brotr_reader`
/// (docs/operations.md, "The archive's read side").
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Run the api (default true when the section is present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Pods behind the Service (default 1; any number serve the same archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_API_REPLICAS))]
    pub replicas: Option<i32>,
    /// The Service in front of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ApiServiceSpec>,
    /// An Ingress for the relay and the HTTP API (none when absent). Behind it every client
    /// arrives from the ingress controller: set `settings.trustedProxies` to the controller's pod
    /// addresses (e.g. the cluster's pod CIDR) so the per-address limits apply per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<ApiIngressSpec>,
    /// A read-only role's `postgres://` URL (required with an external database; a managed
    /// database gets its own read-only login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url_secret_ref: Option<SecretKeyRef>,
    /// Resources and pod overrides of the api's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSpec>,
    /// The probe's `api` settings: the NIP-11 name and description, and the limits (per-IP
    /// connections and rate, subscriptions, filters, `limit`, message size, query timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings<ApiConfig>>,
}

/// How the api is exposed inside (and outside) the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiServiceSpec {
    /// `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<ApiServiceType>,
    /// The Service's port (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Kubernetes Service types the api may use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ApiServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ApiServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiServiceType::ClusterIP => "ClusterIP",
            ApiServiceType::NodePort => "NodePort",
            ApiServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// An Ingress rule for one host, optionally with TLS.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiIngressSpec {
    /// The host name, e.g. `archive.example.org`.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("ingress.host must be a DNS name like archive.example.org")
        .reason(Reason::FieldValueInvalid))]
    pub host: String,
    /// A Secret of type kubernetes.io/tls for the host (plain HTTP when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,
    /// The IngressClass (the cluster's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,
    /// Annotations for the ingress controller (e.g. WebSocket timeouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// Maintenance CronJobs and the probe's `maintain` settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// Refresh the statistics views (default hourly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<MaintenanceJob>,
    /// Delete metadata history past `settings.metadataRetentionSecs` (default daily).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<MaintenanceJob>,
    /// Delete orphaned events and metadata (default daily).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<MaintenanceJob>,
    /// One consensus round across monitors (`maintain consensus`: verdicts from this
    /// pipeline's monitors and third-party NIP-66 monitors, whose track records it updates).
    /// Default: every 30 minutes when the api is deployed (it serves the verdicts), off
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus: Option<MaintenanceJob>,
    /// The probe's `consensus` settings (how old a result may be to vote, the track records'
    /// window), read by the consensus round and the api alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus_settings: Option<Settings<ConsensusConfig>>,
    /// The Secret key holding the consensus' own signing key (hex or nsec), for
    /// `consensusSettings.publish`: mounted into the consensus round's pods only. Never a
    /// monitor's key (its 30166s would replace the monitor's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus_key_secret_ref: Option<SecretKeyRef>,
    /// Time zone of the schedules (IANA name, e.g. `Europe/Berlin`; the controller-manager's
    /// when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// The probe's `maintain` settings (retention, batch size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings<MaintainConfig>>,
    /// Resources and pod overrides of the maintenance pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSpec>,
}

/// One maintenance CronJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceJob {
    /// Run this job (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Cron schedule (a default spread over the hour by the object's name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = cron_rule())]
    pub schedule: Option<String>,
    /// Suspend the CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Prometheus Operator objects to create (only where their CRDs are installed). Alerts are not
/// per pipeline: the Helm chart's PrometheusRule covers every pipeline and the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Create a ServiceMonitor for the pipeline's metrics Service.
    #[serde(default)]
    pub service_monitor: bool,
}

/// Observed state of a Brotr pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrotrDeploymentStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The probe image the pipeline runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Schema of the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaFlavor>,
    /// Synchronizer shards wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<i32>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Per-component readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<ComponentsStatus>,
    /// Where the api answers: its Service's in-cluster URL, and the Ingress's when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiStatus>,
    /// The connection budget and its use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionsStatus>,
}

/// How the database's connection budget is split (`spec.database.maxConnections`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionsStatus {
    /// Connections the pipeline and its monitors may hold together.
    pub budget: i32,
    /// Pipeline pods that connect, counting a rollout's extra pod and the Jobs.
    pub pipeline_pods: i32,
    /// Connections each pipeline pod may hold (its pool size).
    pub per_pod: i32,
    /// Connections reserved for RelayMonitors (one each).
    pub monitor_seats: i32,
    /// RelayMonitors that target this pipeline.
    pub monitors: i32,
    /// The most held at once: pipeline pods × per pod, plus the monitors seated.
    pub at_most: i32,
}

/// Where the archive's read side answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    /// The relay's URL inside the cluster, e.g. `ws://bd-api.ns.svc:80` (HTTP on the same
    /// address).
    pub endpoint: String,
    /// The public relay URL through the Ingress (`wss://` with TLS), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_endpoint: Option<String>,
}

/// Readiness of each managed component (absent: not wanted).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentsStatus {
    /// The schema migration Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<JobStatus>,
    /// The managed database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<ComponentStatus>,
    /// The seeder Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeder: Option<JobStatus>,
    /// Finder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finder: Option<ComponentStatus>,
    /// Validator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<ComponentStatus>,
    /// Monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<ComponentStatus>,
    /// Synchronizer shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronizer: Option<ComponentStatus>,
    /// The api's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ComponentStatus>,
}

/// Where a one-shot Job is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// Pending, Running, Complete or Failed.
    pub state: JobState,
    /// The Job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// State of a one-shot Job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum JobState {
    /// Not started (or waiting for what it needs).
    #[default]
    Pending,
    /// Running.
    Running,
    /// Done.
    Complete,
    /// Failed.
    Failed,
}
