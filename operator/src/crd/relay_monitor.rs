//! `RelayMonitor`: one NIP-66 monitor of a fleet (one vantage point, one key).

use brotr_probe::config::{LimitsConfig, MonitorConfig, NetworksConfig};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ConfigMapKeyRef, GeoIpSource, IdentitySpec, ImageSpec, TorSidecarSpec, WorkloadSpec,
    conditions_schema, cron_rule, interval_rule, name_rule, overlay_proxy_rule, relay_list_rule,
};
use super::settings::Settings;

/// Longest RelayMonitor name: children are `<name>-rmon`, and a CronJob name has at most 52
/// characters.
pub const MAX_NAME: usize = 47;
/// Most inline target relays (they land in a ConfigMap; a larger list belongs in one of the
/// user's own ConfigMaps, `targets.configMapRef`).
pub const MAX_INLINE_RELAYS: u32 = 1000;

/// Desired state of one NIP-66 monitor.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "brotr.dev",
    version = "v1alpha1",
    kind = "RelayMonitor",
    plural = "relaymonitors",
    shortname = "rmon",
    category = "brotr",
    namespaced,
    status = "RelayMonitorStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".status.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = name_rule(MAX_NAME, "RelayMonitor")
)]
#[x_kube(validation = Rule::new("has(self.schedule) != has(self.interval)")
    .message("set exactly one of schedule (a CronJob) or interval (a long-running Deployment)")
    .reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new(
    "has(self.targets.brotrDeploymentRef) || (has(self.settings) && has(self.settings.publish) \
     && has(self.settings.publish.relays) && size(self.settings.publish.relays) > 0)"
).message("a monitor of a static relay list keeps no database: settings.publish.relays must name at least one relay to publish to")
.reason(Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct RelayMonitorSpec {
    /// Probe image (the operator's default when absent; see `status.image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// This vantage point's own key: signs its NIP-66 events, keys its results in a shared
    /// database. Mounted as a file.
    pub identity: IdentitySpec,
    /// Cron schedule: each run is a Job of a CronJob (`monitor --once`).
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
    /// The probe's monitor settings: checks and publishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings<MonitorConfig>>,
    /// Networks the monitor reaches relays on (the probe's `networks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = overlay_proxy_rule())]
    pub networks: Option<Settings<NetworksConfig>>,
    /// The Tor sidecar (used when Tor is enabled without a `proxyUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tor: Option<TorSidecarSpec>,
    /// Limits on what is read from relays (the probe's `limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Settings<LimitsConfig>>,
    /// GeoLite2 databases for the geo and net checks (skipped when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip: Option<GeoIpSource>,
    /// Resources and pod overrides of the monitor's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSpec>,
    /// Stop changing the children (status is still reported).
    #[serde(default)]
    pub paused: bool,
    /// Scale to zero (interval) or suspend the CronJob (schedule).
    #[serde(default)]
    pub stopped: bool,
}

/// Relays to monitor: exactly one source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.brotrDeploymentRef), has(self.configMapRef), has(self.relays)].filter(x, x).size() == 1"
).message("targets: set exactly one of brotrDeploymentRef, configMapRef or relays")
.reason(Reason::FieldValueInvalid))]
pub struct TargetsSpec {
    /// The relays of a BrotrDeployment in the same namespace: the monitor uses its database and
    /// stores its results there under its own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brotr_deployment_ref: Option<BrotrDeploymentRef>,
    /// A ConfigMap key holding one relay URL per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// A static list of relay URLs (at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_INLINE_RELAYS), inner(length(max = 512)))]
    #[x_kube(validation = relay_list_rule())]
    pub relays: Option<Vec<String>>,
}

/// A BrotrDeployment in the RelayMonitor's namespace (a pod cannot use another namespace's
/// database Secret).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrotrDeploymentRef {
    /// Name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
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
    /// The probe image the monitor runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Schedule or Interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MonitorMode>,
    /// Schedule mode: when the CronJob last started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Schedule mode: when a run last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
}
