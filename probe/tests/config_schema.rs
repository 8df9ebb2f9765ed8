//! One definition of every setting: the JSON schema (what the CRDs embed) and the probe's own
//! check must agree on every bound. For every numeric, length and item-count bound found in the
//! generated schema, values just inside and just outside it go through both, and the verdicts
//! must be equal.

use std::collections::BTreeMap;

use brotr_probe::config::ProbeConfig;
use serde_json::{Map, Value, json};

/// A bound found in the schema, at a path of object keys (arrays are walked through their first
/// element).
#[derive(Debug, Clone)]
struct Bound {
    path: Vec<String>,
    kind: BoundKind,
}

#[derive(Debug, Clone)]
enum BoundKind {
    Integer {
        min: Option<i128>,
        max: Option<i128>,
    },
    Number {
        min: Option<f64>,
        max: Option<f64>,
    },
    Length {
        min: Option<usize>,
        max: Option<usize>,
    },
    Items {
        min: Option<usize>,
        max: Option<usize>,
    },
}

/// Valid elements for arrays of objects (the schema says what they must hold; this says what
/// a sensible one looks like). A new bounded array of objects fails the test until listed here.
fn base_items() -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        (
            "finder.sources",
            json!({"url": "https://api.example.org/relays", "select": "[*]"}),
        ),
        ("sync.overrides", json!({"url": "wss://relay.example.com"})),
        ("sync.filters", json!({})),
        ("monitor.publish.relays", json!("wss://relay.example.com")),
        ("consensus.publish.relays", json!("wss://relay.example.com")),
        ("api.hiddenKinds", json!(4)),
        ("api.trustedProxies", json!("10.0.0.0/8")),
    ])
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            resolve(root, &root["$defs"][name])
        }
        None => schema,
    }
}

fn types(schema: &Value) -> Vec<String> {
    match schema.get("type") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn collect(root: &Value, schema: &Value, path: &mut Vec<String>, out: &mut Vec<Bound>) {
    let schema = resolve(root, schema);
    // `Option<T>` may come as anyOf [T, null].
    if let Some(Value::Array(alts)) = schema.get("anyOf").or_else(|| schema.get("oneOf")) {
        for alt in alts {
            collect(root, alt, path, out);
        }
    }
    let t = types(schema);
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    let len = |k: &str| schema.get(k).and_then(Value::as_u64).map(|v| v as usize);
    if t.iter().any(|t| t == "integer") && (num("minimum").is_some() || num("maximum").is_some()) {
        out.push(Bound {
            path: path.clone(),
            kind: BoundKind::Integer {
                min: num("minimum").map(|v| v as i128),
                max: num("maximum").map(|v| v as i128),
            },
        });
    } else if t.iter().any(|t| t == "number")
        && (num("minimum").is_some() || num("maximum").is_some())
    {
        out.push(Bound {
            path: path.clone(),
            kind: BoundKind::Number {
                min: num("minimum"),
                max: num("maximum"),
            },
        });
    }
    if t.iter().any(|t| t == "string") && (len("minLength").is_some() || len("maxLength").is_some())
    {
        out.push(Bound {
            path: path.clone(),
            kind: BoundKind::Length {
                min: len("minLength"),
                max: len("maxLength"),
            },
        });
    }
    if t.iter().any(|t| t == "array") {
        if len("minItems").is_some() || len("maxItems").is_some() {
            out.push(Bound {
                path: path.clone(),
                kind: BoundKind::Items {
                    min: len("minItems"),
                    max: len("maxItems"),
                },
            });
        }
        if let Some(items) = schema.get("items") {
            path.push("0".into());
            collect(root, items, path, out);
            path.pop();
        }
    }
    if let Some(Value::Object(props)) = schema.get("properties") {
        for (k, v) in props {
            path.push(k.clone());
            collect(root, v, path, out);
            path.pop();
        }
    }
}

/// The defaults as JSON, with one sensible element in every array that has a base item, so
/// bounds inside array elements can be reached.
fn base_document() -> Value {
    let mut doc = serde_json::to_value(ProbeConfig::default()).unwrap();
    for (path, item) in base_items() {
        let parts: Vec<&str> = path.split('.').collect();
        let slot = parts.iter().fold(&mut doc, |v, k| &mut v[*k]);
        *slot = json!([item]);
    }
    doc
}

/// The value currently at `path` (or null), and a mutable slot for it.
fn slot<'a>(doc: &'a mut Value, path: &[String]) -> &'a mut Value {
    let mut v = doc;
    for k in path {
        v = match k.parse::<usize>() {
            Ok(i) if v.is_array() => &mut v[i],
            _ => {
                if v.is_null() {
                    *v = Value::Object(Map::new());
                }
                &mut v[k.as_str()]
            }
        };
    }
    v
}

/// A string of length `n` that keeps the current value's prefix (so patterns such as
/// `^https?://` still hold where they can).
fn string_of(current: &Value, n: usize) -> Value {
    let base = current.as_str().unwrap_or("a");
    let mut s: String = base.chars().take(n).collect();
    while s.chars().count() < n {
        s.push('a');
    }
    Value::String(s)
}

fn cases(b: &Bound, current: &Value) -> Vec<Value> {
    match &b.kind {
        BoundKind::Integer { min, max } => {
            let mut v = Vec::new();
            let fits = |x: i128| x >= i128::from(i64::MIN) && x <= i128::from(u64::MAX);
            for m in min.iter().chain(max.iter()) {
                for x in [*m - 1, *m, *m + 1] {
                    if fits(x) {
                        v.push(if x < 0 {
                            json!(x as i64)
                        } else {
                            json!(x as u64)
                        });
                    }
                }
            }
            v
        }
        BoundKind::Number { min, max } => {
            let mut v = Vec::new();
            for m in min.iter().chain(max.iter()) {
                v.extend([json!(m.next_down()), json!(*m), json!(m.next_up())]);
            }
            v
        }
        BoundKind::Length { min, max } => {
            let mut v = Vec::new();
            for m in min.iter().chain(max.iter()) {
                for n in [m.saturating_sub(1), *m, m + 1] {
                    v.push(string_of(current, n));
                }
            }
            v
        }
        BoundKind::Items { min, max } => {
            let item = current
                .as_array()
                .and_then(|a| a.first())
                .cloned()
                .unwrap_or(Value::Null);
            let mut v = Vec::new();
            for m in min.iter().chain(max.iter()) {
                for n in [m.saturating_sub(1), *m, m + 1] {
                    v.push(Value::Array(vec![item.clone(); n]));
                }
            }
            v
        }
    }
}

fn runtime_accepts(doc: &Value) -> Result<(), String> {
    let cfg: ProbeConfig = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    cfg.check()
}

#[test]
fn schema_and_runtime_check_agree_on_every_bound() {
    let schema = serde_json::to_value(schemars::schema_for!(ProbeConfig)).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let base = base_document();
    assert!(validator.is_valid(&base), "the base document is valid");
    runtime_accepts(&base).expect("the base document passes the runtime check");

    let mut bounds = Vec::new();
    collect(&schema, &schema, &mut Vec::new(), &mut bounds);
    assert!(bounds.len() > 60, "found only {} bounds", bounds.len());

    let items = base_items();
    let mut disagreements = Vec::new();
    let mut checked = 0;
    for b in &bounds {
        // Bounds inside array elements are reachable only where a base item exists.
        if let Some(i) = b.path.iter().position(|k| k == "0") {
            let array = b.path[..i].join(".");
            assert!(
                items.contains_key(array.as_str()),
                "add a base item for {array} to base_items()"
            );
        }
        let mut doc = base.clone();
        let current = slot(&mut doc, &b.path).clone();
        for value in cases(b, &current) {
            let mut doc = base.clone();
            *slot(&mut doc, &b.path) = value.clone();
            let by_schema = validator.is_valid(&doc);
            let by_runtime = runtime_accepts(&doc);
            checked += 1;
            if by_schema != by_runtime.is_ok() {
                disagreements.push(format!(
                    "{} = {}: schema says {}, runtime says {:?}",
                    b.path.join("."),
                    shorten(&value),
                    if by_schema { "valid" } else { "invalid" },
                    by_runtime
                ));
            }
        }
    }
    assert!(checked > 200, "only {checked} values checked");
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

fn shorten(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}… ({} chars)", &s[..40], s.len())
    } else {
        s
    }
}

#[test]
fn the_schema_rejects_what_the_runtime_rejects_for_a_known_case() {
    // The former disagreement: the schema allowed sync.limit 10..=5000, the check 1..=5000.
    let schema = serde_json::to_value(schemars::schema_for!(ProbeConfig)).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (limit, ok) in [(0, false), (1, true), (5000, true), (5001, false)] {
        let doc = json!({"sync": {"limit": limit}});
        assert_eq!(validator.is_valid(&doc), ok, "schema, limit {limit}");
        assert_eq!(runtime_accepts(&doc).is_ok(), ok, "runtime, limit {limit}");
    }
}
