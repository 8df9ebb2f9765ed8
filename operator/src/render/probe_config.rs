//! The probe's config file, rendered from the custom resource: each `settings:` block as the user
//! wrote it, plus the keys the operator owns (interval, key file, GeoIP paths, Tor proxy), then
//! checked by the probe's own `ProbeConfig::from_yaml` — the same code that reads it in the pod.
//! A file the probe would refuse is never written; the error names the custom resource's field.

use std::collections::BTreeMap;

use brotr_probe::config::ProbeConfig;
use serde_json::{Map, Value};

/// The rendered file and its sections (for per-service hashes).
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedConfig {
    /// The YAML file (`probe.yaml`).
    pub text: String,
    sections: BTreeMap<&'static str, Value>,
}

impl RenderedConfig {
    /// Hash of the sections a service reads: a pod restarts only when what it reads changed.
    pub fn hash_of(&self, keys: &[&str]) -> String {
        let picked: BTreeMap<&&str, &Value> = self
            .sections
            .iter()
            .filter(|(k, _)| keys.contains(k))
            .collect();
        super::content_hash(&picked)
    }
}

/// Collects sections, then renders and checks them.
#[derive(Debug, Default)]
pub struct ProbeConfigBuilder {
    /// key → (the custom resource's path of that section, values).
    sections: BTreeMap<&'static str, (String, Map<String, Value>)>,
}

impl ProbeConfigBuilder {
    /// Adds section `key` (e.g. `validator`), written at `spec_path` in the custom resource
    /// (e.g. `spec.validator.settings`), starting from the user's values.
    pub fn section(
        &mut self,
        key: &'static str,
        spec_path: &str,
        values: Option<&Map<String, Value>>,
    ) -> &mut Self {
        self.sections.insert(
            key,
            (spec_path.to_owned(), values.cloned().unwrap_or_default()),
        );
        self
    }

    /// Sets an operator-owned key at a dotted path inside section `key` (created if absent).
    pub fn set(&mut self, key: &'static str, path: &str, value: impl Into<Value>) -> &mut Self {
        let (_, map) = self
            .sections
            .entry(key)
            .or_insert_with(|| (format!("spec.{key}"), Map::new()));
        let mut node = map;
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        for p in parts {
            let entry = node.entry(p).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = match entry {
                Value::Object(m) => m,
                _ => return self,
            };
        }
        node.insert(last.to_owned(), value.into());
        self
    }

    /// Whether section `key` has a value at a dotted path.
    pub fn get(&self, key: &str, path: &str) -> Option<&Value> {
        let (_, map) = self.sections.get(key)?;
        let mut parts = path.split('.');
        let mut v = map.get(parts.next()?)?;
        for p in parts {
            v = v.get(p)?;
        }
        Some(v)
    }

    /// The file, checked by the probe. The error says which field of the custom resource is
    /// wrong and why, in the probe's words.
    pub fn build(self) -> Result<RenderedConfig, String> {
        let mut root = Map::new();
        let mut paths = Vec::new();
        let mut sections = BTreeMap::new();
        for (key, (spec_path, values)) in self.sections {
            paths.push((key, spec_path));
            sections.insert(key, Value::Object(values.clone()));
            if !values.is_empty() {
                root.insert(key.to_owned(), Value::Object(values));
            }
        }
        let text = serde_yaml_ng::to_string(&Value::Object(root)).map_err(|e| e.to_string())?;
        let text = if text.trim() == "{}" {
            "# every setting at the probe's default\n{}\n".to_owned()
        } else {
            text
        };
        ProbeConfig::from_yaml("probe.yaml", &text).map_err(|e| spec_paths(&e.reason, &paths))?;
        Ok(RenderedConfig { text, sections })
    }
}

/// `validator.chunkSize: lower than 1` → `spec.validator.settings.chunkSize: lower than 1`.
fn spec_paths(reason: &str, paths: &[(&str, String)]) -> String {
    reason
        .split("; ")
        .map(|item| {
            for (key, spec_path) in paths {
                if let Some(rest) = item.strip_prefix(&format!("{key}.")) {
                    return format!("{spec_path}.{rest}");
                }
                if let Some(rest) = item.strip_prefix(&format!("{key}:")) {
                    return format!("{spec_path}:{rest}");
                }
            }
            item.to_owned()
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn user_values_and_operator_keys_render_into_one_checked_file() {
        let mut b = ProbeConfigBuilder::default();
        b.section(
            "validator",
            "spec.validator.settings",
            Some(&map(json!({"chunkSize": 7}))),
        )
        .set("validator", "intervalSecs", 3600)
        .set("monitor", "publish.keyFile", "/etc/brotr/key/key");
        let cfg = b.build().unwrap();
        let parsed = ProbeConfig::from_yaml("t", &cfg.text).unwrap();
        assert_eq!(parsed.validator.chunk_size, 7);
        assert_eq!(parsed.validator.interval_secs, 3600);
        assert_eq!(
            parsed.monitor.publish.key_file.as_deref(),
            Some("/etc/brotr/key/key")
        );
        // Only what was said is written: the probe's defaults stay the probe's.
        assert!(!cfg.text.contains("maxFailures"), "{}", cfg.text);
    }

    #[test]
    fn a_value_the_probe_refuses_names_the_custom_resource_field() {
        let mut b = ProbeConfigBuilder::default();
        b.section(
            "sync",
            "spec.synchronizer.settings",
            Some(&map(json!({"filters": [{"kinds": [1], "since": 5}]}))),
        );
        let err = b.build().unwrap_err();
        assert!(
            err.starts_with("spec.synchronizer.settings.filters"),
            "{err}"
        );
        assert!(err.contains("since"), "{err}");

        let mut b = ProbeConfigBuilder::default();
        b.section(
            "networks",
            "spec.networks",
            Some(&map(json!({"i2p": {"enabled": true}}))),
        );
        let err = b.build().unwrap_err();
        assert!(
            err.starts_with("spec.networks.i2p: proxyUrl is required"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_spec_renders_the_probe_defaults() {
        let cfg = ProbeConfigBuilder::default().build().unwrap();
        assert_eq!(
            ProbeConfig::from_yaml("t", &cfg.text).unwrap(),
            ProbeConfig::default()
        );
    }

    #[test]
    fn per_service_hashes_change_only_with_what_the_service_reads() {
        let render = |finder: u64| {
            let mut b = ProbeConfigBuilder::default();
            b.set("finder", "intervalSecs", finder)
                .set("validator", "intervalSecs", 60);
            b.build().unwrap()
        };
        let (a, b) = (render(60), render(120));
        assert_eq!(
            a.hash_of(&["validator", "networks"]),
            b.hash_of(&["validator", "networks"])
        );
        assert_ne!(
            a.hash_of(&["finder", "networks"]),
            b.hash_of(&["finder", "networks"])
        );
    }
}
