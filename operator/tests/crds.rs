//! CRD generation, freshness of `crds/`, and the examples checked against the CEL rules
//! client-side (kube's `cel` feature, kube-cel). The same examples are applied to a real
//! apiserver by `e2e/crd-validation.sh`.

use std::path::{Path, PathBuf};

use brotr_operator::GENERATED_HEADER;
use brotr_operator::crd::{self, BrotrDeployment, RelayMonitor};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const REGENERATE: &str = "regenerate with: cargo run -p brotr-operator -- crd --out-dir crds";

#[test]
fn crd_generation_does_not_panic_and_has_the_api_surface() {
    let bd = BrotrDeployment::crd();
    let rm = RelayMonitor::crd();
    for (crd, plural, short, columns) in [
        (
            &bd,
            "brotrdeployments",
            "bd",
            vec!["Schema", "Ready", "Reason", "Shards", "Age"],
        ),
        (
            &rm,
            "relaymonitors",
            "rmon",
            vec!["Mode", "Ready", "Reason", "Last Run", "Age"],
        ),
    ] {
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(&*format!("{plural}.brotr.dev"))
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        assert!(
            v.subresources.as_ref().unwrap().status.is_some(),
            "{plural}: status subresource"
        );
        let names: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, columns);
    }
    // Both render to YAML, as one stream of two documents.
    let yaml = crd::crds_yaml().unwrap();
    assert_eq!(
        yaml.matches("\n---\n").count() + usize::from(yaml.starts_with("---\n")),
        2
    );
}

#[test]
fn committed_crds_are_fresh() {
    let dir = repo_root().join("crds");
    let mut expected = Vec::new();
    for (name, yaml) in crd::crd_files().unwrap() {
        let path = dir.join(name);
        let want = format!("{GENERATED_HEADER}{yaml}");
        let have = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", path.display()));
        assert!(
            have == want,
            "{} is stale (differs from `brotr-operator crd`); {REGENERATE}",
            path.display()
        );
        expected.push(name.to_string());
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(present, expected, "unexpected files in crds/; {REGENERATE}");
}

#[test]
fn committed_crds_parse_as_crds() {
    for (name, _) in crd::crd_files().unwrap() {
        let text = std::fs::read_to_string(repo_root().join("crds").join(name)).unwrap();
        let crd: CustomResourceDefinition = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(crd.spec.group, "brotr.dev");
    }
}

/// The openAPIV3Schema of the CRD for `kind`, as JSON.
fn schema_for(kind: &str) -> Value {
    let crd = match kind {
        "BrotrDeployment" => BrotrDeployment::crd(),
        "RelayMonitor" => RelayMonitor::crd(),
        other => panic!("unknown kind {other}"),
    };
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref(),
    )
    .unwrap()
}

fn load(path: &Path) -> (String, Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let value: Value = serde_yaml_ng::from_str(&text).unwrap();
    (text, value)
}

fn header(text: &str, key: &str) -> Option<String> {
    let prefix = format!("# {key}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
}

fn cel(object: &Value, old: Option<&Value>) -> Result<(), String> {
    let kind = object["kind"].as_str().unwrap();
    kube::core::cel::Validator::new()
        .validate(&schema_for(kind), object, old)
        .map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_examples_deserialize_and_pass_cel() {
    let files = yaml_files(&repo_root().join("examples"));
    assert!(files.len() >= 4, "examples/ should hold valid CRs");
    for path in files {
        let (_, value) = load(&path);
        match value["kind"].as_str() {
            Some("BrotrDeployment") => {
                serde_json::from_value::<BrotrDeployment>(value.clone())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            Some("RelayMonitor") => {
                serde_json::from_value::<RelayMonitor>(value.clone())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
        if let Err(e) = cel(&value, None) {
            panic!("{}: rejected client-side: {e}", path.display());
        }
    }
}

#[test]
fn invalid_examples_are_rejected_by_cel_with_their_message() {
    let root = repo_root();
    let files = yaml_files(&root.join("examples/invalid"));
    assert!(
        files.len() >= 10,
        "examples/invalid/ should hold rejected CRs"
    );
    let mut checked = 0;
    for path in files {
        let (text, value) = load(&path);
        let expect = header(&text, "expect")
            .unwrap_or_else(|| panic!("{}: missing `# expect:` line", path.display()));
        if header(&text, "server-only").is_some() {
            continue;
        }
        let base = header(&text, "base").map(|b| load(&root.join(b)).1);
        if let Some(base) = &base {
            assert_eq!(
                cel(base, None),
                Ok(()),
                "{}: base must be valid",
                path.display()
            );
            // A transition rule only: the new object alone is a valid creation.
            assert_eq!(
                cel(&value, None),
                Ok(()),
                "{}: valid on create",
                path.display()
            );
        }
        match cel(&value, base.as_ref()) {
            Ok(()) => panic!(
                "{}: accepted client-side, expected {expect:?}",
                path.display()
            ),
            Err(e) => assert!(
                e.contains(&expect),
                "{}: rejected with {e:?}, expected {expect:?}",
                path.display()
            ),
        }
        checked += 1;
    }
    assert!(checked >= 10);
}

fn bd_with(patch: impl FnOnce(&mut Value)) -> Value {
    let mut v = serde_json::json!({
        "apiVersion": "brotr.dev/v1alpha1",
        "kind": "BrotrDeployment",
        "metadata": {"name": "t"},
        "spec": {
            "schema": "full",
            "database": {"external": {"urlSecretRef": {"name": "db", "key": "url"}}}
        }
    });
    patch(&mut v["spec"]);
    v
}

#[test]
fn interval_bounds_are_inclusive() {
    for (interval, ok) in [
        ("1m", true),
        ("60s", true),
        ("168h", true),
        ("59s", false),
        ("169h", false),
        ("1d", false),
        ("1h30m", false),
        ("", false),
    ] {
        let v = bd_with(|s| s["finder"] = serde_json::json!({"interval": interval}));
        assert_eq!(cel(&v, None).is_ok(), ok, "interval {interval:?}");
    }
}

#[test]
fn the_crds_carry_the_probes_bounds_and_no_defaults() {
    let bd = schema_for("BrotrDeployment");
    let spec = &bd["properties"]["spec"]["properties"];
    let shards = &spec["synchronizer"]["properties"]["shards"];
    assert_eq!(
        (shards["minimum"].as_f64(), shards["maximum"].as_f64()),
        (Some(1.0), Some(64.0))
    );
    // The probe's own bounds, read from its config types.
    let max_tasks = &spec["networks"]["properties"]["clearnet"]["properties"]["maxTasks"];
    assert_eq!(max_tasks["maximum"].as_f64(), Some(200.0));
    let limit = &spec["synchronizer"]["properties"]["settings"]["properties"]["limit"];
    assert_eq!(
        (limit["minimum"].as_f64(), limit["maximum"].as_f64()),
        (Some(1.0), Some(5000.0))
    );
    // No probe default is frozen into stored objects: only the operator's own switches have
    // one.
    fn defaults(v: &Value, key: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if m.contains_key("default") {
                    out.push(key.to_owned());
                }
                for (k, v) in m {
                    defaults(v, k, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| defaults(v, key, out)),
            _ => {}
        }
    }
    for kind in ["BrotrDeployment", "RelayMonitor"] {
        let mut found = Vec::new();
        defaults(&schema_for(kind)["properties"]["spec"], "spec", &mut found);
        found.retain(|k| {
            !["paused", "stopped", "serviceMonitor", "prometheusRule"].contains(&k.as_str())
        });
        assert!(found.is_empty(), "{kind}: defaults on {found:?}");
    }
}

#[test]
fn the_crds_stay_small_enough_for_client_side_apply() {
    // kubectl's client-side apply keeps the whole object in an annotation of at most 256 KiB.
    for (name, yaml) in crd::crd_files().unwrap() {
        assert!(yaml.len() < 200 * 1024, "{name}: {} bytes", yaml.len());
    }
}

#[test]
fn schema_may_stay_the_same_on_update() {
    let old = bd_with(|_| {});
    let new = bd_with(|s| s["paused"] = true.into());
    assert_eq!(cel(&new, Some(&old)), Ok(()));
    let lite = bd_with(|s| s["schema"] = "lite".into());
    assert!(
        cel(&lite, Some(&old))
            .unwrap_err()
            .contains("schema is immutable")
    );
}

#[test]
fn committed_rbac_is_fresh() {
    let dir = repo_root().join("deploy/rbac");
    for (name, yaml) in brotr_operator::rbac::files().unwrap() {
        let path = dir.join(name);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == format!("{}{yaml}", brotr_operator::rbac::HEADER),
            "{} is stale; regenerate with: cargo run -p brotr-operator -- rbac --out-dir deploy/rbac",
            path.display()
        );
    }
}

#[test]
fn the_charts_crds_and_rules_are_fresh() {
    // Helm reads only files inside the chart: it carries copies, kept identical here.
    let root = repo_root();
    for (name, _) in crd::crd_files().unwrap() {
        let want = std::fs::read_to_string(root.join("crds").join(name)).unwrap();
        let have = std::fs::read_to_string(root.join("charts/brotr-operator/crds").join(name))
            .unwrap_or_default();
        assert!(
            have == want,
            "charts/brotr-operator/crds/{name} differs from crds/{name}; run e2e/regenerate.sh"
        );
    }
    let have =
        std::fs::read_to_string(root.join(brotr_operator::rbac::CHART_RULES)).unwrap_or_default();
    assert!(
        have == brotr_operator::rbac::chart_rules_yaml().unwrap(),
        "{} is stale; run e2e/regenerate.sh",
        brotr_operator::rbac::CHART_RULES
    );
}
