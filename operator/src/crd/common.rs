//! Parts shared by both custom resources: references, the image, the identity, workload knobs
//! (resources, pod overrides), the Tor sidecar, GeoIP sources, status pieces, and the CEL rules
//! that keep them sane.
//!
//! Durations the operator owns are strings (`"30m"`, `"8h"`) because that is what users write in
//! YAML; each carries a CEL rule checking the format with `matches` and the bounds with CEL's
//! `duration()`. Settings that belong to the probe are the probe's own config sections
//! ([`super::settings`]), with the probe's units and bounds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use kube::core::{Rule, cel::Reason};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// Smallest interval a periodic service may run at.
pub const INTERVAL_MIN: &str = "1m";
/// Largest interval: one week (the probe's `intervalSecs` bound).
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

/// Rule on `networks`: I2P and Lokinet are reached through an existing proxy only (Tor alone has
/// a sidecar), so enabling them without `proxyUrl` is refused at apply time.
pub fn overlay_proxy_rule() -> Rule {
    Rule::new(
        "(!has(self.i2p) || !has(self.i2p.enabled) || !self.i2p.enabled || has(self.i2p.proxyUrl)) \
         && (!has(self.loki) || !has(self.loki.enabled) || !self.loki.enabled || has(self.loki.proxyUrl))",
    )
    .message("an enabled i2p or loki network needs proxyUrl (only Tor has a sidecar)")
    .reason(Reason::FieldValueRequired)
}

/// Root rule on `metadata.name`: a DNS-1035 label of at most `max` characters, so that every
/// child name (`<name>-<suffix>`, StatefulSets and CronJobs at most 52 characters, Services
/// DNS-1035) is valid.
pub fn name_rule(max: usize, kind: &str) -> Rule {
    Rule::new(format!(
        "size(self.metadata.name) <= {max} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    ))
    .message(kube::core::cel::Message::Message(format!(
        "a {kind} name must be at most {max} characters of lowercase letters, digits and '-', \
         starting with a letter (its children are named after it)"
    )))
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

/// Reference to one key of a ConfigMap in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.name) > 0 && size(self.key) > 0")
    .message("configMapRef needs a non-empty name and key")
    .reason(Reason::FieldValueRequired))]
pub struct ConfigMapKeyRef {
    /// ConfigMap name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key holding one relay URL per line (`#` comments allowed).
    #[schemars(length(max = 253))]
    pub key: String,
}

/// The probe image. Every part is optional: the operator's own probe image and version fill
/// what is left out, and `status.image` reports what runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Registry and repository, e.g. `ghcr.io/example/brotr-probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub repository: Option<String>,
    /// Tag; the operator's version when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: Option<String>,
    /// Digest (`sha256:…`); pins the image, and wins over the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: Option<String>,
    /// Image pull policy (Kubernetes' default when absent).
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

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Who the probe is on Nostr: the key that answers NIP-42 AUTH and signs published monitor
/// events. Mounted as a file, never put in an environment variable or a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// Secret key holding the secret key (hex or `nsec`).
    pub key_secret_ref: SecretKeyRef,
}

/// Operator-side knobs of one workload: its container's resources and its pod's scheduling.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Resources of the probe container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// Pod settings; merged over the resource's top-level `podOverrides` (these win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
}

/// Pod settings a cluster needs that the operator cannot guess.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations (Kubernetes `Toleration` objects; checked by the API server when the pods are
    /// written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_list_schema")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity (a Kubernetes `Affinity` object; checked by the API server when the pods are
    /// written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_schema")]
    pub affinity: Option<Affinity>,
    /// Secrets to pull the images with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_secrets_schema")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// ServiceAccount the pods run as (its token is never mounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Annotations added to the pods (e.g. for a service mesh or a log shipper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl PodOverrides {
    /// `self` with every field `over` sets replaced by `over`'s.
    pub fn merged(&self, over: Option<&PodOverrides>) -> PodOverrides {
        let Some(o) = over else {
            return self.clone();
        };
        PodOverrides {
            node_selector: o
                .node_selector
                .clone()
                .or_else(|| self.node_selector.clone()),
            tolerations: o.tolerations.clone().or_else(|| self.tolerations.clone()),
            affinity: o.affinity.clone().or_else(|| self.affinity.clone()),
            image_pull_secrets: o
                .image_pull_secrets
                .clone()
                .or_else(|| self.image_pull_secrets.clone()),
            service_account_name: o
                .service_account_name
                .clone()
                .or_else(|| self.service_account_name.clone()),
            priority_class_name: o
                .priority_class_name
                .clone()
                .or_else(|| self.priority_class_name.clone()),
            annotations: o.annotations.clone().or_else(|| self.annotations.clone()),
        }
    }
}

/// The Tor client added as a native sidecar to every probe pod when `networks.tor` is enabled
/// without a `proxyUrl` (the probe then uses `socks5h://127.0.0.1:9050`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TorSidecarSpec {
    /// Image of a Tor client listening for SOCKS5 on port 9050 (the operator's pinned default
    /// when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Resources of the sidecar container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
}

/// Where the monitor reads its GeoLite2 City and ASN databases: a PersistentVolumeClaim or an
/// OCI image mounted as a volume (exactly one). Never a ConfigMap (the City database is tens of
/// megabytes; a ConfigMap holds 1 MiB) nor a hostPath.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pvc) != has(self.image)")
    .message("geoip: set exactly one of pvc or image")
    .reason(Reason::FieldValueInvalid))]
pub struct GeoIpSource {
    /// A PersistentVolumeClaim holding the `.mmdb` files, mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcSource>,
    /// An OCI image holding the `.mmdb` files, mounted read-only as an image volume (Kubernetes
    /// 1.33+, `ImageVolume` feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageVolumeSource>,
    /// City database file inside the source (default `GeoLite2-City.mmdb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[^/]+(/[^/]+)*$"))]
    pub city_file: Option<String>,
    /// ASN database file inside the source (default `GeoLite2-ASN.mmdb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[^/]+(/[^/]+)*$"))]
    pub asn_file: Option<String>,
}

/// A PersistentVolumeClaim in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSource {
    /// Claim name.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
}

/// An OCI image used as a read-only volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageVolumeSource {
    /// Image reference, e.g. `registry.example.org/geolite2:2026-11`.
    #[schemars(length(min = 1, max = 512))]
    pub reference: String,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

/// Readiness of one workload the operator manages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Ready pods (or shards).
    pub ready: i32,
    /// Pods (or shards) wanted.
    pub desired: i32,
    /// Why it is not ready, when it is not.
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

/// Schema of an object whose fields are not described (nor pruned) by this CRD: the API server
/// checks it when the operator writes it into a pod.
pub fn open_object_schema(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of such objects.
pub fn open_list_schema(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

/// `imagePullSecrets`: a list of `{name}`.
pub fn pull_secrets_schema(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 16,
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 253}},
        },
    })
}

/// `resources` without Kubernetes' long descriptions repeated for every workload (they would
/// make the CRD several times larger): requests and limits as quantities.
pub fn resources_schema(_: &mut SchemaGenerator) -> Schema {
    let quantities = serde_json::json!({
        "type": "object",
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": true,
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        },
    });
    schemars::json_schema!({
        "type": "object",
        "description": "Kubernetes resource requests and limits, e.g. {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 256Mi}}.",
        "properties": {"requests": quantities, "limits": quantities},
    })
}
