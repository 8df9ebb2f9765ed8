//! Reference documentation generated from the operator's types: `docs/crd-reference.md` is
//! [`crd_reference_markdown`] (`brotr-operator docs crd-reference`), written from the same
//! OpenAPI schemas as `crds/`, so every field, bound, enum, pattern and CEL rule it lists is
//! the one the API server enforces. `operator/tests/docs.rs` fails when the committed file
//! differs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kube::CustomResourceExt;
use serde_json::{Map, Value};

use crate::crd::{BrotrDeployment, RelayMonitor};

/// The command that regenerates `docs/crd-reference.md`.
pub const CRD_REFERENCE_COMMAND: &str =
    "cargo run -p brotr-operator -- docs crd-reference > docs/crd-reference.md";

/// `docs/crd-reference.md`: every field of both custom resources, one table per object.
pub fn crd_reference_markdown() -> String {
    let crds = [
        serde_json::to_value(BrotrDeployment::crd()).unwrap_or_default(),
        serde_json::to_value(RelayMonitor::crd()).unwrap_or_default(),
    ];
    let mut out = String::new();
    let _ = write!(
        out,
        "# CRD reference\n\n\
         <!-- Generated from the operator's Rust types by `{CRD_REFERENCE_COMMAND}`;\n     \
         do not edit by hand (operator/tests/docs.rs fails when this file is stale). -->\n\n\
         The two custom resources of `brotr-operator`, field by field, as the API server checks \
         them: the tables are written from the same OpenAPI schemas as the CRDs in `crds/`. \
         `settings:` blocks are sections of the probe's own configuration (see \
         [probe.md](probe.md#configuration)) with the probe's bounds; the keys the operator sets \
         itself (intervals, failure limits, the shard, key and GeoIP paths) are not accepted \
         there, and no default is stored in the object (an absent key takes the probe's \
         default). `kubectl explain bd.spec` and `kubectl explain rmon.spec` print the same \
         descriptions from a live cluster.\n\n\
         Columns: **required** fields must be present when their parent is; **constraints** are \
         OpenAPI bounds (numbers inclusive, `length` in characters); **validation rules** are CEL \
         expressions with the message `kubectl apply` prints when one fails.\n\n"
    );
    for crd in &crds {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
        let _ = writeln!(out, "- [{kind}](#{})", anchor(kind));
    }
    out.push('\n');
    for crd in &crds {
        kind_section(&mut out, crd);
    }
    out
}

fn kind_section(out: &mut String, crd: &Value) {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default();
    let group = spec["group"].as_str().unwrap_or_default();
    let version = &spec["versions"][0];
    let _ = writeln!(out, "## {kind}\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(
        out,
        "| apiVersion | `{group}/{}` |",
        version["name"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "| scope | {} |",
        spec["scope"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "| plural | `{}` |",
        names["plural"].as_str().unwrap_or_default()
    );
    let _ = writeln!(out, "| short names | {} |", code_list(&names["shortNames"]));
    let _ = writeln!(out, "| categories | {} |", code_list(&names["categories"]));
    let columns: Vec<String> = version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} (`{}`)",
                c["name"].as_str().unwrap_or_default(),
                cell(c["jsonPath"].as_str().unwrap_or_default())
            )
        })
        .collect();
    let _ = writeln!(out, "| `kubectl get` columns | {} |", columns.join(", "));
    let subresources: Vec<&String> = version["subresources"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "| subresources | {} |\n",
        subresources
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let root = &version["schema"]["openAPIV3Schema"];
    let before = out.len();
    rules(out, root, None, "the object");
    if out.len() > before {
        out.push('\n');
    }
    let mut seen = BTreeMap::new();
    let props = root["properties"].as_object().cloned().unwrap_or_default();
    for (name, schema) in &props {
        object_section(
            out,
            kind,
            name,
            schema_required(root, name),
            schema,
            &mut seen,
        );
    }
}

fn schema_required(parent: &Value, name: &str) -> bool {
    parent["required"]
        .as_array()
        .is_some_and(|r| r.iter().any(|v| v == name))
}

/// One object: a heading, its description, a table of its fields, its CEL rules, then the
/// sections of its object-valued fields (depth first).
fn object_section(
    out: &mut String,
    kind: &str,
    path: &str,
    required: bool,
    schema: &Value,
    seen: &mut BTreeMap<String, String>,
) {
    let heading = heading(kind, path);
    seen.insert(shape(schema), path.to_owned());
    let _ = writeln!(out, "### {heading}\n");
    if let Some(d) = schema["description"].as_str() {
        let _ = writeln!(out, "{}\n", one_line(d));
    }
    if required {
        let _ = writeln!(out, "Required.\n");
    }
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "| field | type | required | constraints | description |\n|---|---|---|---|---|"
    );
    // Children that get their own section, in field order, after this table.
    let mut children: Vec<(String, bool, Value)> = Vec::new();
    for (name, field) in &props {
        let child_path = format!("{path}.{name}");
        let (ty, has_section) = match object_of(field) {
            Some((suffix, obj)) => {
                let child_path = format!("{child_path}{suffix}");
                let link = match seen.get(&shape(obj)) {
                    Some(first) if first != &child_path => {
                        format!(
                            "same as [`{first}`](#{})",
                            anchor(&heading_text(kind, first))
                        )
                    }
                    _ => {
                        children.push((
                            child_path.clone(),
                            suffix.is_empty() && schema_required(schema, name),
                            obj.clone(),
                        ));
                        // Reserve the shape now, so a sibling with the same shape links here.
                        seen.insert(shape(obj), child_path.clone());
                        format!(
                            "[`{child_path}`](#{})",
                            anchor(&heading_text(kind, &child_path))
                        )
                    }
                };
                let ty = if suffix.is_empty() {
                    format!("object, {link}")
                } else {
                    format!("array of objects, {link}")
                };
                (ty, true)
            }
            None => (type_of(field), false),
        };
        let mut constraints = constraints(field);
        if has_section && !suffix_is_array(field) {
            // The object's own bounds are stated in its section.
            constraints.retain(|c| !c.starts_with("validation"));
        }
        let _ = writeln!(
            out,
            "| `{name}` | {ty} | {} | {} | {} |",
            if schema_required(schema, name) {
                "yes"
            } else {
                ""
            },
            constraints.join("; "),
            cell(&one_line(field["description"].as_str().unwrap_or_default()))
        );
    }
    out.push('\n');
    // Rules on this object, then on fields that have no section of their own.
    let before = out.len();
    rules(out, schema, None, "this object");
    for (name, field) in &props {
        if object_of(field).is_none() {
            rules(out, field, Some(name), "");
            if let Some(items) = field.get("items") {
                rules(out, items, Some(&format!("{name}[]")), "");
            }
        } else if suffix_is_array(field) {
            rules(out, field, Some(name), "");
        }
    }
    if out.len() > before {
        out.push('\n');
    }
    for (child_path, required, obj) in children {
        object_section(out, kind, &child_path, required, &obj, seen);
    }
}

fn suffix_is_array(field: &Value) -> bool {
    field["type"] == "array"
}

/// The object a field holds, with the path suffix of its section (`""` for an object field,
/// `"[]"` for an array of objects); `None` for scalars, maps and free-form objects.
fn object_of(field: &Value) -> Option<(&'static str, &Value)> {
    if field.get("properties").is_some() {
        return Some(("", field));
    }
    if field["type"] == "array" && field["items"].get("properties").is_some() {
        return Some(("[]", &field["items"]));
    }
    None
}

/// What makes two object schemas the same table: everything but their own description.
fn shape(schema: &Value) -> String {
    let mut s = schema.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("description");
        m.remove("nullable");
    }
    s.to_string()
}

fn heading_text(kind: &str, path: &str) -> String {
    format!("{kind} {path}")
}

fn heading(kind: &str, path: &str) -> String {
    format!("{kind} `{path}`")
}

/// GitHub's heading anchor: lowercase, punctuation other than `-` and `_` dropped, spaces to
/// hyphens.
pub fn anchor(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The CEL rules of `schema` as a list: `field` names the field they sit on (`None`: the
/// object whose section this is, called `what`).
fn rules(out: &mut String, schema: &Value, field: Option<&str>, what: &str) {
    let Some(list) = schema["x-kubernetes-validations"].as_array() else {
        return;
    };
    for r in list {
        let on = match field {
            Some(f) => format!("`{f}`"),
            None => what.to_owned(),
        };
        let _ = writeln!(
            out,
            "- Validation rule on {on}: {}  \n  message: {}{}",
            code(r["rule"].as_str().unwrap_or_default()),
            code(r["message"].as_str().unwrap_or_default()),
            r["reason"]
                .as_str()
                .map(|x| format!(" (reason `{x}`)"))
                .unwrap_or_default()
        );
    }
}

fn type_of(schema: &Value) -> String {
    if schema["x-kubernetes-int-or-string"] == true {
        return "integer-or-string".into();
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    match ty {
        "array" => format!("array of {}", plural(&type_of(&schema["items"]))),
        "object" => {
            if let Some(ap) = schema.get("additionalProperties") {
                format!("map of {} values", type_of(ap))
            } else if schema["x-kubernetes-preserve-unknown-fields"] == true {
                "object (any fields)".into()
            } else {
                "object".into()
            }
        }
        "" if schema["x-kubernetes-preserve-unknown-fields"] == true => "any".into(),
        _ => match schema["format"].as_str() {
            Some(f) => format!("{ty} ({f})"),
            None => ty.to_owned(),
        },
    }
}

/// `strings`, `integers (int32)`; a compound type gets `items`.
fn plural(ty: &str) -> String {
    match ty.split_once(' ') {
        _ if ty.contains('-') => format!("{ty} items"),
        Some((head, rest)) => format!("{} {rest}", plural(head)),
        None if ty.ends_with('s') || ty.is_empty() => ty.to_owned(),
        None => format!("{ty}s"),
    }
}

/// `s` as one code span, fenced with more backticks than it contains.
fn code(s: &str) -> String {
    let longest = s
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or_default();
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

fn constraints(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        out.push(format!(
            "one of {}",
            values
                .iter()
                .map(|v| format!(
                    "`{}`",
                    v.as_str().map(str::to_owned).unwrap_or(v.to_string())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(r) = range(schema, "minimum", "maximum") {
        out.push(r);
    }
    if let Some(r) = range(schema, "minLength", "maxLength") {
        out.push(format!("length {r}"));
    }
    if let Some(r) = range(schema, "minItems", "maxItems") {
        out.push(format!("{r} items"));
    }
    if let Some(p) = schema["pattern"].as_str() {
        out.push(format!("pattern `{}`", cell(p)));
    }
    if let Some(d) = schema.get("default") {
        out.push(format!("default `{d}`"));
    }
    if schema["x-kubernetes-list-type"] == "map" {
        out.push(format!(
            "list map keyed by {}",
            code_list(&schema["x-kubernetes-list-map-keys"])
        ));
    }
    if schema["x-kubernetes-validations"].is_array() {
        out.push("validation rule below".into());
    }
    if schema["type"] == "array" && object_of(schema).is_none() {
        let each = constraints(&schema["items"]);
        if !each.is_empty() {
            out.push(format!("each: {}", each.join(", ")));
        }
    }
    if let Some(ap) = schema.get("additionalProperties") {
        let each = constraints(ap);
        if !each.is_empty() {
            out.push(format!("each value: {}", each.join(", ")));
        }
    }
    out
}

/// `1–64`, `≥ 1`, `≤ 253` from a pair of bound keywords.
fn range(schema: &Value, min: &str, max: &str) -> Option<String> {
    match (schema.get(min), schema.get(max)) {
        (Some(a), Some(b)) => Some(format!("{}–{}", num(a), num(b))),
        (Some(a), None) => Some(format!("≥ {}", num(a))),
        (None, Some(b)) => Some(format!("≤ {}", num(b))),
        (None, None) => None,
    }
}

/// A number as written in a bound: whole floats without `.0`.
fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn code_list(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Text made safe for one table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// A description on one line (doc comments wrap).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every field path of both CRDs' `spec` and `status` (`spec.database.external.urlSecretRef`,
/// arrays as `[]`), for tests that check the reference covers the schema.
pub fn crd_field_paths() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for crd in [
        serde_json::to_value(BrotrDeployment::crd()).unwrap_or_default(),
        serde_json::to_value(RelayMonitor::crd()).unwrap_or_default(),
    ] {
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(&kind, "", root, &mut out);
    }
    out
}

fn walk(kind: &str, path: &str, schema: &Value, out: &mut Vec<(String, String)>) {
    let empty = Map::new();
    for (name, field) in schema["properties"].as_object().unwrap_or(&empty) {
        let p = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        out.push((kind.to_owned(), p.clone()));
        match object_of(field) {
            Some(("[]", items)) => walk(kind, &format!("{p}[]"), items, out),
            Some((_, obj)) => walk(kind, &p, obj, out),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_github() {
        assert_eq!(
            anchor("BrotrDeployment spec.database.external"),
            "brotrdeployment-specdatabaseexternal"
        );
        assert_eq!(anchor("BrotrProbeDown"), "brotrprobedown");
        assert_eq!(anchor("a[] b_c"), "a-b_c");
        assert_eq!(code("x"), "`x`");
        assert_eq!(code("a `b` c"), "``a `b` c``");
    }

    #[test]
    fn types_and_bounds_read_like_the_schema() {
        let s =
            serde_json::json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 64});
        assert_eq!(type_of(&s), "integer (int32)");
        assert_eq!(constraints(&s), vec!["1–64"]);
        let s = serde_json::json!({"type": "array", "items": {"type": "string", "maxLength": 512}, "maxItems": 1000});
        assert_eq!(type_of(&s), "array of strings");
        assert_eq!(constraints(&s), vec!["≤ 1000 items", "each: length ≤ 512"]);
        let s = serde_json::json!({"type": "number", "minimum": 0.1, "maximum": 120.0});
        assert_eq!(constraints(&s), vec!["0.1–120"]);
    }
}
