//! Types shared by both custom resources: references, images, networks, service knobs and the
//! CEL rules that keep them sane.
//!
//! Durations are strings (`"30m"`, `"8h"`, `"10s"`) because that is what users write in YAML and
//! what `kubectl get -o yaml` should show back. Each duration field carries a CEL rule that checks
//! the format with `matches` and the bounds with CEL's `duration()` (which understands `ms`, `s`,
//! `m`, `h`), so a typo or an absurd value is rejected at apply time with a readable message.
//! Retention periods are whole days (`"90d"`), bounded by the regex alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use kube::core::{Rule, cel::Reason};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// Smallest and largest interval a periodic service may run at.
pub const INTERVAL_MIN: &str = "1m";
/// Largest interval: one week.
pub const INTERVAL_MAX: &str = "168h";

/// CEL rule for a service interval: a single-unit duration between 1 minute and 7 days.
pub fn interval_rule() -> Rule {
    Rule::new(format!(
        "self.matches('^[0-9]{{1,6}}(s|m|h)$') && duration(self) >= duration('{INTERVAL_MIN}') \
         && duration(self) <= duration('{INTERVAL_MAX}')"
    ))
    .message("interval must be a duration like 30m or 8h, between 1m and 168h")
    .reason(Reason::FieldValueInvalid)
}

/// CEL rule for a network/check timeout: a single-unit duration between 100ms and 10 minutes.
pub fn timeout_rule() -> Rule {
    Rule::new(
        "self.matches('^[0-9]{1,6}(ms|s|m)$') && duration(self) >= duration('100ms') \
         && duration(self) <= duration('10m')",
    )
    .message("timeout must be a duration like 500ms, 10s or 1m, between 100ms and 10m")
    .reason(Reason::FieldValueInvalid)
}

/// CEL rule for a retention period: whole days, 1 to 9999.
pub fn retention_rule() -> Rule {
    Rule::new("self.matches('^[1-9][0-9]{0,3}d$')")
        .message("retention must be a number of days like 90d (1d to 9999d)")
        .reason(Reason::FieldValueInvalid)
}

/// CEL rule for a cron schedule: five whitespace-separated fields, or a `@hourly`-style macro.
pub fn cron_rule() -> Rule {
    Rule::new(
        "self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+)$')",
    )
    .message("schedule must be a 5-field cron expression like \"*/30 * * * *\" or a macro like @hourly")
    .reason(Reason::FieldValueInvalid)
}

/// CEL rule for a list of relay URLs.
pub fn relay_list_rule() -> Rule {
    Rule::new("self.all(u, u.startsWith('ws://') || u.startsWith('wss://'))")
        .message("relay URLs must start with ws:// or wss://")
        .reason(Reason::FieldValueInvalid)
}

/// CEL rule for a single relay URL.
pub fn relay_url_rule() -> Rule {
    Rule::new("self.startsWith('ws://') || self.startsWith('wss://')")
        .message("relay URLs must start with ws:// or wss://")
        .reason(Reason::FieldValueInvalid)
}

/// CEL rule for a SOCKS proxy URL.
pub fn proxy_url_rule() -> Rule {
    Rule::new("self.startsWith('socks5://') || self.startsWith('socks5h://')")
        .message("proxyUrl must start with socks5:// or socks5h://")
        .reason(Reason::FieldValueInvalid)
}

/// Reference to one key of a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.name) > 0 && size(self.key) > 0")
    .message("secret reference needs a non-empty name and key")
    .reason(Reason::FieldValueRequired))]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(max = 253))]
    pub key: String,
}

/// Reference to a ConfigMap (and optionally one of its keys) in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.name) > 0")
    .message("configMapRef needs a non-empty name")
    .reason(Reason::FieldValueRequired))]
pub struct ConfigMapRef {
    /// ConfigMap name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key inside the ConfigMap (the consumer's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub key: Option<String>,
}

/// Container image of the probe (or of a sidecar).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Registry and repository, e.g. `ghcr.io/example/brotr-probe`.
    #[schemars(length(min = 1, max = 512))]
    pub repository: String,
    /// Tag; the operator's own version when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub tag: Option<String>,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

/// Kubernetes image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not present on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

pub(crate) fn default_true() -> bool {
    true
}

/// Clearnet (direct) connections.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClearnetSpec {
    /// Whether relays on this network are contacted.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Concurrent connections to relays of this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10000").message("maxTasks must be between 1 and 10000"))]
    pub max_tasks: Option<i32>,
    /// Connect/IO timeout, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = timeout_rule())]
    pub timeout: Option<String>,
}

/// Tor: reached through a SOCKS proxy, by default a Tor sidecar in each probe pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.sidecar) && has(self.proxyUrl))")
    .message("tor: set at most one of sidecar or proxyUrl")
    .reason(Reason::FieldValueForbidden))]
pub struct TorSpec {
    /// Whether `.onion` relays are contacted.
    #[serde(default)]
    pub enabled: bool,
    /// Concurrent connections to relays of this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10000").message("maxTasks must be between 1 and 10000"))]
    pub max_tasks: Option<i32>,
    /// Connect/IO timeout, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = timeout_rule())]
    pub timeout: Option<String>,
    /// Tor sidecar added to each probe pod (the default when `proxyUrl` is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarSpec>,
    /// An existing Tor SOCKS proxy instead of a sidecar, e.g. `socks5h://tor.nostr.svc:9050`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = proxy_url_rule())]
    pub proxy_url: Option<String>,
}

/// A sidecar container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Full image reference, e.g. `docker.io/dperson/torproxy:latest`.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Resources of the sidecar container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// I2P or Lokinet: reached through an existing SOCKS proxy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || has(self.proxyUrl)")
    .message("an enabled i2p/loki network needs proxyUrl")
    .reason(Reason::FieldValueRequired))]
pub struct ProxyNetworkSpec {
    /// Whether relays on this network are contacted.
    #[serde(default)]
    pub enabled: bool,
    /// Concurrent connections to relays of this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10000").message("maxTasks must be between 1 and 10000"))]
    pub max_tasks: Option<i32>,
    /// Connect/IO timeout, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = timeout_rule())]
    pub timeout: Option<String>,
    /// SOCKS proxy URL, e.g. `socks5h://i2p.nostr.svc:4447`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = proxy_url_rule())]
    pub proxy_url: Option<String>,
}

/// Networks the probe may use. A network left out is disabled (clearnet: enabled).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworksSpec {
    /// Plain `ws://`/`wss://` relays on the internet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clearnet: Option<ClearnetSpec>,
    /// Tor `.onion` relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tor: Option<TorSpec>,
    /// I2P `.i2p` relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i2p: Option<ProxyNetworkSpec>,
    /// Lokinet `.loki` relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<ProxyNetworkSpec>,
}

/// Where the monitor reads its GeoIP (MaxMind City/ASN) databases: exactly one source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.configMapRef), has(self.pvc), has(self.volume)].filter(x, x).size() == 1"
).message("geoip: set exactly one of configMapRef, pvc or volume"))]
pub struct GeoIpSource {
    /// A ConfigMap (binaryData) holding the `.mmdb` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapRef>,
    /// A PersistentVolumeClaim holding the `.mmdb` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcRef>,
    /// Any other volume source, written as a pod volume (`name` plus one source). Its schema is
    /// left open here to keep the CRD small; the apiserver validates it when the operator puts
    /// it into a pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_schema")]
    pub volume: Option<k8s_openapi::api::core::v1::Volume>,
    /// City database file name inside the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub city_file: Option<String>,
    /// ASN database file name inside the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub asn_file: Option<String>,
}

/// Reference to a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.claimName) > 0").message("pvc needs a non-empty claimName"))]
pub struct PvcRef {
    /// Claim name.
    #[schemars(length(max = 253))]
    pub claim_name: String,
}

/// NIP-66 publishing: where and as whom monitor results are published.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishSpec {
    /// Relays that receive the kind 10166/30166 events.
    #[serde(default)]
    #[schemars(length(max = 100), inner(length(max = 512)))]
    #[x_kube(validation = relay_list_rule())]
    pub relays: Vec<String>,
    /// Geohash of the vantage point (NIP-66 `g` tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 12))]
    #[x_kube(validation = Rule::new("self.matches('^[0123456789bcdefghjkmnpqrstuvwxyz]{1,12}$')")
        .message("geohash must be 1-12 base32 geohash characters"))]
    pub geohash: Option<String>,
    /// Extra labels on the published events (NIP-32 `l` tags: label -> namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Kind 0 profile of the monitor key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileSpec>,
}

/// Kind 0 metadata of a monitor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSpec {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// Picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Website URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
}

/// Per-check switches and timeouts of a NIP-66 monitor run. A check left out is not run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChecksSpec {
    /// NIP-11 relay information document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nip11: Option<TimeoutCheck>,
    /// Round-trip times of open, read and write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<RttCheck>,
    /// TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<TimeoutCheck>,
    /// DNS resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<TimeoutCheck>,
    /// Geolocation (needs `geoip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<TimeoutCheck>,
    /// Network / ASN (needs `geoip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<TimeoutCheck>,
    /// HTTP headers of the relay's web endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<TimeoutCheck>,
}

/// A check with an optional timeout (`{}` runs it with the default).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutCheck {
    /// Timeout, e.g. `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = timeout_rule())]
    pub timeout: Option<String>,
}

/// RTT check timeouts per phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RttCheck {
    /// Connection open timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = timeout_rule())]
    pub open: Option<String>,
    /// Read (REQ → EOSE) timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = timeout_rule())]
    pub read: Option<String>,
    /// Write (EVENT → OK) timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = timeout_rule())]
    pub write: Option<String>,
}

/// Readiness of one workload the operator manages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// `ready/desired` replicas (or shards), e.g. `3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Short reason when not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Schema of `status.conditions`: a list map keyed by `type`, so server-side apply merges per
/// condition type.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<Condition> as JsonSchema>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// Schema of an object whose fields are not described (nor pruned) by this CRD.
pub fn open_object_schema(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
