//! The documentation describes what exists:
//! - docs/crd-reference.md is generated from the CRD types (`brotr-operator docs crd-reference`)
//!   and must be committed as generated;
//! - docs/metrics.md lists every operator metric with its type and labels, and every alert of the
//!   chart's rule file with its severity;
//! - every alert's `runbook_url` points at a section of docs/operations.md that exists;
//! - every relative link between the docs (and from README.md into them) resolves, anchors
//!   included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use brotr_operator::docs::{
    CRD_REFERENCE_COMMAND, anchor, crd_field_paths, crd_reference_markdown,
};
use brotr_operator::telemetry::Metrics;
use prometheus::core::Collector;
use prometheus::proto::MetricType;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn crd_reference_is_generated_from_the_types() {
    let want = crd_reference_markdown();
    let have = read("docs/crd-reference.md");
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(have.lines().count().min(want.lines().count()));
        panic!(
            "docs/crd-reference.md is stale from line {}; regenerate it with\n  {CRD_REFERENCE_COMMAND}\n  committed: {:?}\n  generated: {:?}",
            line + 1,
            have.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

#[test]
fn crd_reference_has_a_row_for_every_field() {
    // Independent of the generator's layout: every field name of both CRDs is a table row.
    let doc = crd_reference_markdown();
    let paths = crd_field_paths();
    assert!(paths.len() > 150, "{}", paths.len());
    for (kind, path) in paths {
        let field = path
            .rsplit('.')
            .next()
            .unwrap_or(&path)
            .trim_end_matches("[]");
        if path == "spec" || path == "status" {
            assert!(
                doc.contains(&format!("### {kind} `{path}`")),
                "{kind} {path}"
            );
            continue;
        }
        assert!(
            doc.contains(&format!("| `{field}` |")),
            "{kind} {path}: no row for `{field}`"
        );
    }
    // The rules the API server enforces are all there, with their messages.
    for file in [
        "crds/brotr.dev_brotrdeployments.yaml",
        "crds/brotr.dev_relaymonitors.yaml",
    ] {
        for line in read(file).lines() {
            if let Some(m) = line.trim().strip_prefix("- message: ") {
                let m = m.trim_matches('\'').replace("''", "'");
                assert!(doc.contains(&m), "{file}: rule message {m:?} missing");
            }
        }
    }
}

fn documented_metrics(doc: &str) -> BTreeMap<String, (String, Vec<String>)> {
    doc.lines()
        .filter(|l| l.starts_with("| `brotr_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let labels = cells[3]
                .split(',')
                .map(|s| s.trim().trim_matches('`').to_owned())
                .filter(|s| !s.is_empty() && s != "—")
                .collect();
            (
                cells[1].trim_matches('`').to_owned(),
                (cells[2].to_owned(), labels),
            )
        })
        .collect()
}

#[test]
fn docs_metrics_lists_every_operator_metric_with_its_type_and_labels() {
    let m = Metrics::new();
    let collectors: [&dyn Collector; 7] = [
        &m.reconciles,
        &m.failures,
        &m.duration,
        &m.writes,
        &m.leader,
        &m.objects,
        &m.watch_restarts,
    ];
    let source = read("operator/src/telemetry.rs");
    let in_source: BTreeSet<&str> = source
        .split('"')
        .filter(|s| {
            s.starts_with("brotr_") && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .collect();
    let doc = documented_metrics(&read("docs/metrics.md"));
    let mut listed = BTreeSet::new();
    for c in collectors {
        let desc = c.desc()[0];
        let ty = match c.collect()[0].get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            other => panic!("{}: {other:?}", desc.fq_name),
        };
        let want = (ty.to_owned(), desc.variable_labels.clone());
        assert_eq!(
            doc.get(&desc.fq_name),
            Some(&want),
            "docs/metrics.md: {} must be a row `| \\`{}\\` | {} | {} | … |`",
            desc.fq_name,
            desc.fq_name,
            want.0,
            want.1.join(", ")
        );
        listed.insert(desc.fq_name.clone());
    }
    let in_source: BTreeSet<String> = in_source.into_iter().map(str::to_owned).collect();
    assert_eq!(
        listed, in_source,
        "this test's collector list must name every metric of operator/src/telemetry.rs"
    );
}

/// Anchors of a Markdown file's headings, as GitHub makes them (outside code fences, duplicates
/// numbered).
fn heading_anchors(doc: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for l in doc.lines() {
        if l.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !l.starts_with('#') {
            continue;
        }
        let text = l.trim_start_matches('#').trim();
        let base = anchor(text);
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

#[test]
fn every_alert_has_a_runbook_in_operations_md_and_a_row_in_metrics_md() {
    let rules: Value =
        serde_yaml_ng::from_str(&read("charts/brotr-operator/files/prometheus-rules.yaml"))
            .unwrap();
    let ops = read("docs/operations.md");
    let anchors = heading_anchors(&ops);
    let metrics = read("docs/metrics.md");
    let mut alerts = 0;
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            let want = format!(
                "https://github.com/brotr-dev/brotr/blob/main/docs/operations.md#{}",
                name.to_lowercase()
            );
            assert_eq!(
                rule["annotations"]["runbook_url"].as_str(),
                Some(want.as_str()),
                "{name}"
            );
            assert!(
                ops.contains(&format!("\n## {name}\n")) && anchors.contains(&name.to_lowercase()),
                "docs/operations.md has no section `## {name}`"
            );
            let severity = rule["labels"]["severity"].as_str().unwrap();
            let row = format!(
                "| [{name}](operations.md#{}) | {severity} |",
                name.to_lowercase()
            );
            assert!(
                metrics.contains(&row),
                "docs/metrics.md has no row starting {row:?}"
            );
        }
    }
    assert!(alerts >= 14, "{alerts} alerts");
    // And no runbook for an alert that no longer exists.
    let documented = metrics
        .lines()
        .filter(|l| l.starts_with("| [Brotr"))
        .count();
    assert_eq!(
        documented, alerts,
        "docs/metrics.md lists {documented} alerts"
    );
}

/// `](target)` links of a Markdown text, outside code fences and code spans.
fn links(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for l in doc.lines() {
        if l.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans, which may hold `](` literally.
        let mut text = String::new();
        for (i, part) in l.split('`').enumerate() {
            if i % 2 == 0 {
                text.push_str(part);
            }
        }
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(j) = rest.find(')') {
                out.push(rest[..j].to_owned());
                rest = &rest[j..];
            }
        }
    }
    out
}

#[test]
fn links_between_the_docs_resolve() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root().join("README.md"));
    assert!(files.len() >= 8, "{files:?}");
    let mut checked = 0;
    for file in &files {
        let doc = std::fs::read_to_string(file).unwrap();
        for link in links(&doc) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (path, frag) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            assert!(
                target.exists(),
                "{}: link {link:?}: {} does not exist",
                file.display(),
                target.display()
            );
            if !frag.is_empty() {
                let text = std::fs::read_to_string(&target).unwrap();
                assert!(
                    heading_anchors(&text).contains(frag),
                    "{}: link {link:?}: no heading with anchor #{frag}",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} links");
}
