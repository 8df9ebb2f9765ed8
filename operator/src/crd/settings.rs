//! The probe's own config sections, embedded in the CRDs as the user wrote them.
//!
//! A `settings:` block *is* a section of `brotr_probe::config` (one definition): its schema is
//! the probe type's schema, with the probe's bounds (garde attributes read by schemars), so the
//! API server rejects at apply time what the probe would reject at start. Three things differ:
//! - keys the operator owns (the loop interval, the shard, the key file, GeoIP paths) are removed
//!   from the schema, so `kubectl apply` refuses them as unknown fields instead of the operator
//!   overriding them silently;
//! - `default:` values are removed: the API server would otherwise write today's probe defaults
//!   into every stored object, freezing them across probe upgrades;
//! - free-form maps (NIP-01 filters) are kept as written (`x-kubernetes-preserve-unknown-fields`).
//!
//! The value is kept as written (a JSON object) and rendered unchanged into the probe's config
//! file; the operator checks the whole rendered file with the probe's own `check()`.

use std::borrow::Cow;
use std::marker::PhantomData;

use brotr_probe::config::{
    ApiConfig, ConsensusConfig, FinderConfig, LimitsConfig, MaintainConfig, MonitorConfig,
    NetworksConfig, SyncConfig, ValidatorConfig,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A probe config section embedded in a CRD.
pub trait Section: JsonSchema {
    /// Its key in the probe's config file.
    const KEY: &'static str;
    /// Dotted paths of the keys the operator sets itself.
    const OPERATOR_OWNED: &'static [&'static str] = &[];
}

const LOOP: [&str; 2] = ["intervalSecs", "maxConsecutiveFailures"];

impl Section for ValidatorConfig {
    const KEY: &'static str = "validator";
    const OPERATOR_OWNED: &'static [&'static str] = &LOOP;
}
impl Section for FinderConfig {
    const KEY: &'static str = "finder";
    const OPERATOR_OWNED: &'static [&'static str] = &LOOP;
}
impl Section for MonitorConfig {
    const KEY: &'static str = "monitor";
    const OPERATOR_OWNED: &'static [&'static str] = &[
        "intervalSecs",
        "maxConsecutiveFailures",
        "publish.keyFile",
        "publish.keyEnv",
        "geoip.cityDb",
        "geoip.asnDb",
    ];
}
impl Section for SyncConfig {
    const KEY: &'static str = "sync";
    const OPERATOR_OWNED: &'static [&'static str] =
        &["intervalSecs", "maxConsecutiveFailures", "shard"];
}
impl Section for MaintainConfig {
    const KEY: &'static str = "maintain";
}
impl Section for ConsensusConfig {
    const KEY: &'static str = "consensus";
    /// The key is `spec.maintenance.consensusKeySecretRef`, mounted by the operator.
    const OPERATOR_OWNED: &'static [&'static str] = &["publish.keyFile", "publish.keyEnv"];
}
impl Section for NetworksConfig {
    const KEY: &'static str = "networks";
}
impl Section for LimitsConfig {
    const KEY: &'static str = "limits";
}
impl Section for ApiConfig {
    const KEY: &'static str = "api";
    /// The pods listen where the Service points (`--listen`).
    const OPERATOR_OWNED: &'static [&'static str] = &["listen"];
}

/// A probe config section `T`, as written in the custom resource.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Settings<T> {
    pub values: Map<String, Value>,
    #[serde(skip)]
    section: PhantomData<T>,
}

impl<T> Settings<T> {
    pub fn new(values: Map<String, Value>) -> Self {
        Settings {
            values,
            section: PhantomData,
        }
    }

    /// The value at a dotted path (`publish.relays`), if written.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut v = self.values.get(parts.next()?)?;
        for p in parts {
            v = v.get(p)?;
        }
        Some(v)
    }
}

// By hand: derives would require `T: Clone` etc. of the probe types for no reason.
impl<T> Clone for Settings<T> {
    fn clone(&self) -> Self {
        Settings::new(self.values.clone())
    }
}
impl<T> Default for Settings<T> {
    fn default() -> Self {
        Settings::new(Map::new())
    }
}
impl<T> PartialEq for Settings<T> {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}
impl<T> std::fmt::Debug for Settings<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.values.fmt(f)
    }
}

impl<T: Section> JsonSchema for Settings<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("{}Settings", T::schema_name()).into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = T::json_schema(generator);
        for path in T::OPERATOR_OWNED {
            remove_property(&mut schema, path);
        }
        let mut value = schema.to_value();
        clean(&mut value);
        Schema::try_from(value).unwrap_or_else(|_| Schema::from(true))
    }
}

/// Removes the property at a dotted path (and from its object's `required`).
fn remove_property(schema: &mut Schema, path: &str) {
    let mut value = schema.clone().to_value();
    let mut node = &mut value;
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    for p in parts {
        match node.pointer_mut(&format!("/properties/{p}")) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(props) = node.get_mut("properties").and_then(Value::as_object_mut) {
        props.remove(last);
    }
    if let Some(req) = node.get_mut("required").and_then(Value::as_array_mut) {
        req.retain(|k| k != last);
    }
    if let Ok(s) = Schema::try_from(value) {
        *schema = s;
    }
}

/// Drops `default`s everywhere and keeps free-form maps as written.
fn clean(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("default");
            let free_form = map.get("additionalProperties") == Some(&Value::Bool(true))
                && !map.contains_key("properties");
            if free_form {
                map.remove("additionalProperties");
                map.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
            }
            for v in map.values_mut() {
                clean(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(clean),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema<T: Section>() -> Value {
        let mut g = schemars::generate::SchemaSettings::openapi3()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        Settings::<T>::json_schema(&mut g).to_value()
    }

    fn has_key(v: &Value, key: &str) -> bool {
        match v {
            Value::Object(m) => m.contains_key(key) || m.values().any(|v| has_key(v, key)),
            Value::Array(a) => a.iter().any(|v| has_key(v, key)),
            _ => false,
        }
    }

    #[test]
    fn operator_owned_keys_and_defaults_are_gone_and_the_bounds_stay() {
        let s = schema::<MonitorConfig>();
        let props = &s["properties"];
        assert!(props.get("intervalSecs").is_none());
        assert!(props.get("maxConsecutiveFailures").is_none());
        assert!(props["publish"]["properties"].get("keyFile").is_none());
        assert!(props["publish"]["properties"].get("keyEnv").is_none());
        assert!(props["publish"]["properties"].get("relays").is_some());
        assert!(props["geoip"]["properties"].get("cityDb").is_none());
        assert!(
            props["geoip"]["properties"]
                .get("geohashPrecision")
                .is_some()
        );
        assert_eq!(props["chunkSize"]["minimum"], 1);
        assert_eq!(props["chunkSize"]["maximum"], 10_000);
        assert!(!has_key(&s, "default"), "no default anywhere: {s}");

        let s = schema::<SyncConfig>();
        assert!(s["properties"].get("shard").is_none());
        assert_eq!(s["properties"]["limit"]["maximum"], 5000);
        let filter = &s["properties"]["filters"]["items"];
        assert_eq!(
            filter["x-kubernetes-preserve-unknown-fields"], true,
            "{filter}"
        );
    }

    #[test]
    fn values_round_trip_as_written() {
        let yaml = "checks: {nip11: {timeoutSecs: 5}}\npublish: {relays: [wss://a.example]}\n";
        let s: Settings<MonitorConfig> = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(
            s.get("publish.relays"),
            Some(&serde_json::json!(["wss://a.example"]))
        );
        assert_eq!(s.get("publish.geohash"), None);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"checks": {"nip11": {"timeoutSecs": 5}}, "publish": {"relays": ["wss://a.example"]}})
        );
    }
}
