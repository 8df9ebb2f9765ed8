//! `BrotrDeployment`: one whole Brotr pipeline (database, seeder, finder, validator, monitor,
//! synchronizer shards, maintenance) in one namespace.

use brotr_probe::config::{ApiSource, ValidatorConfig};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ChecksSpec, ComponentStatus, ConfigMapRef, GeoIpSource, ImageSpec, NetworksSpec, PublishSpec,
    SecretKeyRef, conditions_schema, cron_rule, default_true, interval_rule, relay_list_rule,
    relay_url_rule, retention_rule,
};

/// Upper bound on synchronizer shards (each shard is one pod).
pub const MAX_SHARDS: i32 = 64;

/// Desired state of a Brotr pipeline.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "brotr.dev",
    version = "v1alpha1",
    kind = "BrotrDeployment",
    plural = "brotrdeployments",
    shortname = "bd",
    namespaced,
    status = "BrotrDeploymentStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Schema","type":"string","jsonPath":".spec.schema"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Shards","type":"integer","jsonPath":".spec.synchronizer.shards"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BrotrDeploymentSpec {
    /// Database schema flavour. Immutable: switching needs a new BrotrDeployment.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("schema is immutable; create a new BrotrDeployment to change it")
        .reason(Reason::FieldValueForbidden))]
    pub schema: SchemaFlavor,
    /// Probe image used by every service.
    pub image: ImageSpec,
    /// Where the data lives.
    pub database: DatabaseSpec,
    /// Networks the services may reach relays on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<NetworksSpec>,
    /// Initial relay list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeder: Option<SeederSpec>,
    /// Relay discovery.
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
    /// Retention and periodic database jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceSpec>,
    /// Prometheus integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
    /// Stop reconciling (workloads are left as they are).
    #[serde(default)]
    pub paused: bool,
}

/// Database schema flavour.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchemaFlavor {
    /// Everything, including event content.
    Full,
    /// Relay metadata and event references only.
    Lite,
}

/// Database: an existing server, or a managed single-node PostgreSQL (exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.external) != has(self.managed)")
    .message("database: set exactly one of external or managed")
    .reason(Reason::FieldValueInvalid))]
pub struct DatabaseSpec {
    /// An existing PostgreSQL server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatabase>,
    /// A single-node PostgreSQL StatefulSet run by the operator (quick starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedDatabase>,
    /// PgBouncer in front of the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer: Option<PgBouncerSpec>,
}

/// An existing PostgreSQL server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDatabase {
    /// Secret key holding the `postgres://` URL (never copied into a ConfigMap).
    pub url_secret_ref: SecretKeyRef,
}

/// A managed single-node PostgreSQL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDatabase {
    /// Volume size, e.g. `50Gi`.
    pub storage: Quantity,
    /// StorageClass of the volume (cluster default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// PostgreSQL image (operator default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resources of the PostgreSQL container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// PgBouncer connection pooler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgBouncerSpec {
    /// Run PgBouncer and point the services at it.
    #[serde(default)]
    pub enabled: bool,
    /// PgBouncer image (operator default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Server connections per database/user pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("pgbouncer poolSize must be between 1 and 1000"))]
    pub pool_size: Option<i32>,
    /// Resources of the PgBouncer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Seeder: where the first relay URLs come from (at most one source).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.relays) && has(self.configMapRef))")
    .message("seeder: set at most one of relays or configMapRef")
    .reason(Reason::FieldValueForbidden))]
pub struct SeederSpec {
    /// Run the seeder job.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Inline relay URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10000), inner(length(max = 512)))]
    #[x_kube(validation = relay_list_rule())]
    pub relays: Option<Vec<String>>,
    /// ConfigMap key holding one relay URL per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapRef>,
    /// Insert seeds as candidates to validate (true) or directly as relays (false).
    #[serde(default = "default_true")]
    pub to_validate: bool,
}

/// A periodic service: on/off, period, pod resources.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Run this service.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Period between cycles, e.g. `8h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = interval_rule())]
    pub interval: Option<String>,
    /// Resources of the service container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Validator: promotes candidates that answer like Nostr relays.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorSpec {
    /// Run this service.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Period between cycles, e.g. `8h`; when set it replaces `settings.intervalSecs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = interval_rule())]
    pub interval: Option<String>,
    /// Resources of the service container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The probe's validator settings, passed through to its config file unchanged
    /// (`brotr_probe::config::ValidatorConfig`: chunkSize, retryAfterSecs, maxFailures, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ValidatorConfig>,
}

/// Finder: discovers relay URLs from events and HTTP APIs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinderSpec {
    /// Run this service.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Period between cycles, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = interval_rule())]
    pub interval: Option<String>,
    /// Resources of the service container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// HTTP APIs that list relays (the probe's own `finder.sources` type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub apis: Vec<ApiSource>,
}

/// Monitor service of a BrotrDeployment (NIP-11 + NIP-66 checks of every known relay).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.publish) || has(self.keySecretRef)")
    .message("monitor: publish needs keySecretRef")
    .reason(Reason::FieldValueRequired))]
pub struct MonitorServiceSpec {
    /// Run this service.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Period between cycles, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = interval_rule())]
    pub interval: Option<String>,
    /// Resources of the service container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Secret key holding the monitor's `nsec` (needed to publish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretKeyRef>,
    /// Checks and their timeouts (all default checks when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecksSpec>,
    /// Publish NIP-66 events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishSpec>,
    /// GeoIP databases for the geo/net checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip: Option<GeoIpSource>,
}

/// Synchronizer: archives events, relays split over `shards` pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronizerSpec {
    /// Run this service.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Period between cycles, e.g. `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = interval_rule())]
    pub interval: Option<String>,
    /// Resources of each shard's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Number of shards (pods); relays are assigned by hash.
    #[serde(default = "default_shards")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 64")
        .message("synchronizer shards must be between 1 and 64")
        .reason(Reason::FieldValueInvalid))]
    pub shards: i32,
    /// Do not fetch events older than this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Default filters for every relay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub filters: Vec<EventFilter>,
    /// Per-relay filter overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub overrides: Vec<RelayOverride>,
}

fn default_shards() -> i32 {
    1
}

/// A Nostr REQ filter (subset of NIP-01).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventFilter {
    /// Event kinds (0–65535; an OpenAPI bound, not CEL, to stay within the CEL cost budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(range(min = 0, max = 65535)))]
    pub kinds: Option<Vec<i32>>,
    /// Author public keys, 64 lowercase hex characters (an OpenAPI pattern, not CEL: a regex per
    /// item of nested lists would exceed the apiserver's CEL cost budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(pattern(r"^[0-9a-f]{64}$")))]
    pub authors: Option<Vec<String>>,
}

/// Filters for one relay instead of the defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelayOverride {
    /// Relay URL.
    #[schemars(length(max = 512))]
    #[x_kube(validation = relay_url_rule())]
    pub relay: String,
    /// Filters used for this relay.
    #[schemars(length(max = 10))]
    pub filters: Vec<EventFilter>,
}

/// Retention and periodic database jobs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// How long history is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    /// Cron schedule of the orphan cleanup job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = cron_rule())]
    pub cleanup_schedule: Option<String>,
    /// Cron schedule of the materialized-view refresh job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = cron_rule())]
    pub refresh_schedule: Option<String>,
}

/// Retention periods (whole days).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Relay metadata history, e.g. `90d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = retention_rule())]
    pub metadata_history: Option<String>,
    /// Monitor results (NIP-66 checks), e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = retention_rule())]
    pub checks: Option<String>,
}

/// Prometheus Operator objects to create.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Create a ServiceMonitor.
    #[serde(default)]
    pub service_monitor: bool,
    /// Create a PrometheusRule with the default alerts.
    #[serde(default)]
    pub prometheus_rule: bool,
}

/// Observed state of a Brotr pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrotrDeploymentStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Schema the database was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaFlavor>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Per-component readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<ComponentsStatus>,
}

/// Readiness of each managed component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentsStatus {
    /// Schema migration job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// Managed database / PgBouncer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<ComponentStatus>,
    /// Seeder job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeder: Option<ComponentStatus>,
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
}

/// State of the schema migration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// Where the migration is.
    pub state: MigrationState,
    /// Last applied migration version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Migration job state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MigrationState {
    /// Not started yet.
    #[default]
    Pending,
    /// Job running.
    Running,
    /// Applied.
    Complete,
    /// Job failed.
    Failed,
}
