//! `RelayMonitor`: one NIP-66 monitor of a fleet (one vantage point, one key).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ChecksSpec, GeoIpSource, ImageSpec, NetworksSpec, PublishSpec, SecretKeyRef, conditions_schema,
    cron_rule, interval_rule, relay_list_rule,
};

/// Desired state of one NIP-66 monitor.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "brotr.dev",
    version = "v1alpha1",
    kind = "RelayMonitor",
    plural = "relaymonitors",
    shortname = "rmon",
    namespaced,
    status = "RelayMonitorStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".status.mode"}"#,
    printcolumn = r#"{"name":"Targets","type":"integer","jsonPath":".status.targets"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastRunTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.schedule) != has(self.interval)")
    .message("set exactly one of schedule (a CronJob) or interval (a long-running Deployment)")
    .reason(Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct RelayMonitorSpec {
    /// Probe image.
    pub image: ImageSpec,
    /// Secret key holding the monitor's `nsec`.
    pub key_secret_ref: SecretKeyRef,
    /// Cron schedule: each run is a Job of a CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = cron_rule())]
    pub schedule: Option<String>,
    /// Period of a long-running monitor Deployment, e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = interval_rule())]
    pub interval: Option<String>,
    /// Which relays to check.
    pub targets: TargetsSpec,
    /// Checks and their timeouts (all default checks when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecksSpec>,
    /// Networks the monitor may reach relays on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<NetworksSpec>,
    /// Where and as whom results are published.
    pub publish: PublishSpec,
    /// GeoIP databases for the geo/net checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip: Option<GeoIpSource>,
    /// Resources of the monitor container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// Stop reconciling.
    #[serde(default)]
    pub paused: bool,
}

/// Relays to monitor: exactly one source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.brotrDeploymentRef) != has(self.relays)")
    .message("targets: set exactly one of brotrDeploymentRef or relays")
    .reason(Reason::FieldValueInvalid))]
pub struct TargetsSpec {
    /// The relays known to a BrotrDeployment's database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brotr_deployment_ref: Option<BrotrDeploymentRef>,
    /// A static list of relay URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10000), inner(length(max = 512)))]
    #[x_kube(validation = relay_list_rule())]
    pub relays: Option<Vec<String>>,
}

/// Reference to a BrotrDeployment, possibly in another namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.name) > 0").message("brotrDeploymentRef needs a non-empty name"))]
pub struct BrotrDeploymentRef {
    /// Name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Namespace (the RelayMonitor's own when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// How the monitor runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MonitorMode {
    /// A CronJob (`spec.schedule`).
    Schedule,
    /// A long-running Deployment (`spec.interval`).
    Interval,
}

/// Observed state of a RelayMonitor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelayMonitorStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Schedule or Interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MonitorMode>,
    /// Number of relays checked in the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<i64>,
    /// When the last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<Time>,
    /// When the last run finished successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// Readiness of the monitor workload (`1/1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
}
