//! The documentation describes what exists:
//! - README.md and docs/metrics.md list every metric the probe registers, with its type and
//!   labels;
//! - docs/probe.md's CLI reference is the binary's own `--help`, and its configuration reference
//!   is generated from the JSON schema of `ProbeConfig` (keys, defaults, bounds, descriptions);
//! - every message docs/troubleshooting.md quotes is one the binary prints (the cases below run
//!   it), one the operator wrote on a live object (the Argo CD testdata), or text of the source;
//! - the SQL in docs/getting-started.md and docs/operations.md runs on freshly migrated
//!   PostgreSQL databases of both schemas (needs a server).
//!
//! The generated parts of docs/probe.md are rewritten by
//! `BROTR_UPDATE_DOCS=1 cargo test -p brotr-probe --test docs`.
#![cfg(all(feature = "runtime", feature = "schemars"))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use brotr_probe::config::ProbeConfig;
use brotr_probe::metrics::Metrics;
use prometheus::core::Collector;
use prometheus::proto::MetricType;
use serde_json::Value;

const UPDATE: &str = "BROTR_UPDATE_DOCS";
const REGENERATE: &str = "BROTR_UPDATE_DOCS=1 cargo test -p brotr-probe --test docs";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Metric names registered in a source file (string literals `brotr_…`).
fn metric_names_in(source: &str) -> BTreeSet<String> {
    source
        .split('"')
        .filter(|s| {
            s.starts_with("brotr_")
                && s.len() > "brotr_".len()
                && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_lists_every_metric() {
    let names = metric_names_in(&read("probe/src/metrics.rs"));
    let readme = read("README.md");
    assert!(names.len() >= 30, "found {names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(missing.is_empty(), "README does not list {missing:?}");
}

/// `| \`name\` | type | labels | meaning |` rows of a metrics table: name → (type, labels).
fn documented_metrics(doc: &str) -> BTreeMap<String, (String, Vec<String>)> {
    doc.lines()
        .filter(|l| l.starts_with("| `brotr_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let labels = cells[3]
                .split(',')
                .map(|s| s.trim().trim_matches('`').to_owned())
                .filter(|s| !s.is_empty() && s != "—")
                .collect();
            (name, (cells[2].to_owned(), labels))
        })
        .collect()
}

/// Name, type and label names of every collector, as the registry would report them.
fn described(collectors: &[&dyn Collector]) -> BTreeMap<String, (String, Vec<String>)> {
    collectors
        .iter()
        .map(|c| {
            let desc = c.desc()[0];
            let ty = match c.collect()[0].get_field_type() {
                MetricType::COUNTER => "counter",
                MetricType::GAUGE => "gauge",
                MetricType::HISTOGRAM => "histogram",
                other => panic!("{}: unexpected type {other:?}", desc.fq_name),
            };
            (
                desc.fq_name.clone(),
                (ty.to_owned(), desc.variable_labels.clone()),
            )
        })
        .collect()
}

#[test]
fn docs_metrics_lists_every_probe_metric_with_its_type_and_labels() {
    let m = Metrics::new();
    let (s, v, f, mo, sy, ma, db, api) = (
        &m.service,
        &m.validator,
        &m.finder,
        &m.monitor,
        &m.synchronizer,
        &m.maintain,
        &m.database,
        &m.api,
    );
    let collectors: [&dyn Collector; 39] = [
        &s.cycles,
        &s.cycle_seconds,
        &s.consecutive_failures,
        &s.last_success,
        &v.checked,
        &v.promoted,
        &v.rejected,
        &v.pruned,
        &v.rechecked,
        &v.dormant,
        &f.urls_found,
        &f.source_failures,
        &mo.relays_checked,
        &mo.relays_reachable,
        &mo.check_failures,
        &mo.events_published,
        &mo.publish_failures,
        &mo.rtt,
        &sy.events_stored,
        &sy.events_received,
        &sy.events_rejected,
        &sy.bytes_received,
        &sy.requests,
        &sy.windows,
        &sy.relays_behind,
        &sy.relay_lag_seconds,
        &sy.overflow_seconds,
        &sy.hints,
        &ma.step_seconds,
        &ma.rows_deleted,
        &db.pool_connections,
        &db.query_seconds,
        &api.requests,
        &api.messages,
        &api.query_seconds,
        &api.connections,
        &api.subscriptions,
        &api.refusals,
        &api.live_events,
    ];
    let real = described(&collectors);
    let in_source = metric_names_in(&read("probe/src/metrics.rs"));
    let listed: BTreeSet<String> = real.keys().cloned().collect();
    assert_eq!(
        listed, in_source,
        "this test's collector list must name every metric of probe/src/metrics.rs"
    );
    let doc = documented_metrics(&read("docs/metrics.md"));
    for (name, want) in &real {
        assert_eq!(
            doc.get(name),
            Some(want),
            "docs/metrics.md: {name} must be a row `| \\`{name}\\` | {} | {} | … |`",
            want.0,
            want.1.join(", ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// docs/probe.md: generated blocks between `<!-- generated: NAME -->` and `<!-- end: NAME -->`.

/// Replaces the block `name` of `doc` with `content`; panics when the markers are missing.
fn splice(doc: &str, name: &str, content: &str) -> String {
    let start = format!("<!-- generated: {name} -->\n");
    let end = format!("<!-- end: {name} -->");
    let a = doc
        .find(&start)
        .unwrap_or_else(|| panic!("missing marker {start:?}"))
        + start.len();
    let b = doc[a..]
        .find(&end)
        .unwrap_or_else(|| panic!("missing marker {end:?}"))
        + a;
    format!("{}{content}{}", &doc[..a], &doc[b..])
}

/// Compares `rel` with the version whose generated blocks are `blocks`; rewrites it when
/// `BROTR_UPDATE_DOCS=1`.
fn check_generated(rel: &str, blocks: &[(&str, String)]) {
    let doc = read(rel);
    let mut want = doc.clone();
    for (name, content) in blocks {
        want = splice(&want, name, content);
    }
    if want == doc {
        return;
    }
    if std::env::var(UPDATE).as_deref() == Ok("1") {
        std::fs::write(root().join(rel), &want).unwrap();
        eprintln!("rewrote {rel}");
        return;
    }
    let first = doc
        .lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(doc.lines().count().min(want.lines().count()));
    panic!(
        "{rel} is stale from line {}: regenerate with `{REGENERATE}`\n  committed: {:?}\n  generated: {:?}",
        first + 1,
        doc.lines().nth(first),
        want.lines().nth(first)
    );
}

/// `brotr-probe ARGS` with an empty environment (so no `[env: X=value]` leaks into the help).
fn probe(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_brotr-probe"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run brotr-probe")
}

fn help(args: &[&str]) -> String {
    let out = probe(args, &root(), &[]);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The CLI reference: the top-level help, then each command's help without the global options
/// (they are the same for every command).
fn cli_reference() -> String {
    let top = help(&["--help"]);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 9, "{top}");
    let global: BTreeSet<&str> = top
        .lines()
        .skip_while(|l| *l != "Options:")
        .filter(|l| l.starts_with("  ") && !l.contains("--help"))
        .collect();
    let mut out = format!("```text\n$ brotr-probe --help\n{top}```\n");
    for c in commands {
        let h = help(&[c, "--help"]);
        let own: String = h
            .lines()
            .filter(|l| !global.contains(l))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str(&format!(
            "\n### `brotr-probe {c}`\n\n```text\n$ brotr-probe {c} --help   # global options left out\n{own}```\n"
        ));
    }
    out
}

/// Names the JSON type of a schema node.
fn type_of(root: &Value, s: &Value) -> String {
    let s = resolve(root, s);
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let t = types.into_iter().find(|t| *t != "null").unwrap_or_default();
    match t {
        "array" => match type_of(root, &s["items"]) {
            i if i.starts_with("object") => format!("list of objects{}", &i["object".len()..]),
            i => format!("list of {i}s"),
        },
        "object" if s.get("properties").is_none() => "object (any keys)".into(),
        "integer" => "integer".into(),
        "number" => "number".into(),
        other => other.into(),
    }
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => &root["$defs"][r.rsplit('/').next().unwrap_or_default()],
        None => s,
    }
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn bounds(root: &Value, s: &Value) -> String {
    let s = resolve(root, s);
    let mut out = Vec::new();
    let pair = |lo: &str, hi: &str| match (s.get(lo), s.get(hi)) {
        (Some(a), Some(b)) => Some(format!("{}–{}", num(a), num(b))),
        (Some(a), None) => Some(format!("≥ {}", num(a))),
        (None, Some(b)) => Some(format!("≤ {}", num(b))),
        _ => None,
    };
    if let Some(r) = pair("minimum", "maximum") {
        out.push(r);
    }
    if let Some(r) = pair("minLength", "maxLength") {
        out.push(format!("length {r}"));
    }
    if let Some(r) = pair("minItems", "maxItems") {
        out.push(format!("{r} items"));
    }
    if let Some(p) = s["pattern"].as_str() {
        out.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    if let Some(items) = s.get("items") {
        let each = bounds(root, items);
        if !each.is_empty() {
            out.push(format!("each: {each}"));
        }
    }
    out.join("; ")
}

/// A default value as written in YAML (flow style), `—` for none.
fn default_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) => format!("`{s}`"),
        Some(v @ Value::Number(_)) => format!("`{}`", num(v)),
        Some(v) => format!("`{}`", v.to_string().replace('|', "\\|")),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// One table per configuration object, depth first. `dflt` is the object's default when
/// nothing above it is written; `own` its type's own defaults (what a written section starts
/// from).
fn config_section(out: &mut String, root: &Value, path: &str, schema: &Value, dflt: &Value) {
    let schema = resolve(root, schema);
    out.push_str(&format!("\n### `{path}`\n\n"));
    if let Some(d) = schema["description"].as_str() {
        out.push_str(&format!("{}\n\n", one_line(d)));
    }
    out.push_str("| key | type | default | bounds | description |\n|---|---|---|---|---|\n");
    let mut children = Vec::new();
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (key, field) in &props {
        let target = resolve(root, field);
        let object = target.get("properties").is_some();
        let list_of_objects = target["type"] == "array"
            && resolve(root, &target["items"]).get("properties").is_some();
        let here = dflt.get(key).or_else(|| field.get("default"));
        let own = field.get("default");
        let child = format!("{path}.{key}");
        let required = schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|k| k == key));
        let (ty, default) = if object {
            children.push((
                child.clone(),
                field.clone(),
                here.cloned().unwrap_or_default(),
            ));
            (
                format!("object, [below](#{})", anchor(&child)),
                "see below".to_owned(),
            )
        } else if list_of_objects {
            let items = child.clone() + "[]";
            children.push((items.clone(), target["items"].clone(), Value::Null));
            (
                format!("list of objects, [below](#{})", anchor(&items)),
                default_text(here),
            )
        } else if required {
            (type_of(root, field), "required".to_owned())
        } else {
            let mut d = default_text(here);
            if own.is_some() && here != own {
                d = format!("{d} ({} once `{path}` is written)", default_text(own));
            }
            (type_of(root, field), d)
        };
        let description = field["description"]
            .as_str()
            .or(target["description"].as_str().filter(|_| !object))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{key}` | {ty} | {default} | {} | {} |\n",
            bounds(root, field),
            one_line(description)
        ));
    }
    if path == "networks" {
        network_defaults(out);
    }
    for (child, s, d) in children {
        config_section(out, root, &child, &s, &d);
    }
}

/// Each network's settings when nothing is written (`NetworksConfig::get`).
fn network_defaults(out: &mut String) {
    out.push_str(
        "\nWhat each network uses for a key that is not written:\n\n\
         | network | `enabled` | `maxTasks` | `timeoutSecs` | `proxyUrl` |\n|---|---|---|---|---|\n",
    );
    let n = brotr_probe::config::NetworksConfig::default();
    for net in brotr_probe::model::Network::ALL {
        let s = n.get(net);
        out.push_str(&format!(
            "| `{net}` | `{}` | `{}` | `{}` | {} |\n",
            s.enabled,
            s.max_tasks,
            s.timeout_secs,
            match (s.proxy_url, net.is_overlay()) {
                (Some(p), _) => format!("`{p}`"),
                (None, true) => "none: required when enabled".into(),
                (None, false) => "not used".into(),
            }
        ));
    }
}

fn anchor(path: &str) -> String {
    path.chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The configuration reference, from the JSON schema the operator's CRDs embed too.
fn config_reference() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(ProbeConfig)).unwrap();
    let mut out = String::new();
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (section, s) in &props {
        config_section(
            &mut out,
            &schema,
            section,
            s,
            s.get("default").unwrap_or(&Value::Null),
        );
    }
    out
}

#[test]
fn docs_probe_md_is_the_binarys_help_and_the_config_schema() {
    check_generated(
        "docs/probe.md",
        &[("cli", cli_reference()), ("config", config_reference())],
    );
}

#[test]
fn every_config_key_and_bound_is_in_docs_probe_md() {
    // Independent of the generator: every leaf key path of the default config is a heading or
    // a row of the reference.
    let doc = read("docs/probe.md");
    let cfg = serde_json::to_value(ProbeConfig::default()).unwrap();
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        if let Value::Object(m) = v {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_object() {
                    leaves(&p, v, out);
                } else {
                    out.push((prefix.to_owned(), k.clone()));
                }
            }
        }
    }
    let mut keys = Vec::new();
    leaves("", &cfg, &mut keys);
    assert!(keys.len() > 80, "{keys:?}");
    for (section, key) in keys {
        let heading = format!("### `{section}`\n");
        let at = doc
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/probe.md has no section {heading:?}"));
        let body = &doc[at + heading.len()..];
        let body = &body[..body.find("\n### ").unwrap_or(body.len())];
        assert!(
            body.contains(&format!("| `{key}` |")),
            "docs/probe.md: {section}.{key} is not listed"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// docs/troubleshooting.md

/// A run of the binary whose `error:` line the troubleshooting guide quotes.
struct Case {
    name: &'static str,
    /// Files written into the (empty) working directory first.
    files: &'static [(&'static str, &'static str)],
    /// Commands run before (each must succeed), e.g. `migrate`.
    before: &'static [&'static [&'static str]],
    /// SQL run on `./brotr.db` after `before`.
    sql: &'static str,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    code: i32,
}

const CASES: &[Case] = &[
    Case {
        name: "a bound",
        files: &[("probe.yaml", "networks:\n  tor:\n    maxTasks: 500\n")],
        before: &[],
        sql: "",
        env: &[],
        args: &["--config", "probe.yaml", "validate", "--once"],
        code: 2,
    },
    Case {
        name: "an unknown key",
        files: &[("probe.yaml", "validator:\n  chunkSiz: 7\n")],
        before: &[],
        sql: "",
        env: &[],
        args: &["--config", "probe.yaml", "validate", "--once"],
        code: 2,
    },
    Case {
        name: "an overlay without a proxy",
        files: &[("probe.yaml", "networks:\n  i2p:\n    enabled: true\n")],
        before: &[],
        sql: "",
        env: &[],
        args: &["--config", "probe.yaml", "validate", "--once"],
        code: 2,
    },
    Case {
        name: "a filter with since",
        files: &[(
            "probe.yaml",
            "sync:\n  filters: [{kinds: [1], since: 1700000000}]\n",
        )],
        before: &[],
        sql: "",
        env: &[],
        args: &["--config", "probe.yaml", "sync", "--once"],
        code: 2,
    },
    Case {
        name: "a missing config file",
        files: &[],
        before: &[],
        sql: "",
        env: &[],
        args: &["--config", "probe.yaml", "migrate"],
        code: 2,
    },
    Case {
        name: "an empty database",
        files: &[],
        before: &[],
        sql: "",
        env: &[],
        args: &["validate", "--once"],
        code: 2,
    },
    Case {
        name: "a database behind",
        files: &[],
        before: &[&["migrate"]],
        sql: "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
        env: &[],
        args: &["validate", "--once"],
        code: 2,
    },
    Case {
        name: "a database ahead",
        files: &[],
        before: &[&["migrate"]],
        sql: "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
              VALUES (9999, 'add an index', 1, x'00', 0)",
        env: &[],
        args: &["validate", "--once"],
        code: 2,
    },
    Case {
        name: "a compatible migration ahead",
        files: &[],
        before: &[&["migrate"]],
        sql: "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
              VALUES (9999, 'compat add an index', 1, x'00', 0)",
        env: &[],
        args: &["maintain", "refresh"],
        code: 0,
    },
    Case {
        name: "the other schema",
        files: &[],
        before: &[&["--schema", "lite", "migrate"]],
        sql: "",
        env: &[],
        args: &["--schema", "full", "validate", "--once"],
        code: 2,
    },
    Case {
        name: "an unknown schema",
        files: &[],
        before: &[],
        sql: "",
        env: &[],
        args: &["--schema", "medium", "migrate"],
        code: 2,
    },
    Case {
        name: "a bad database URL",
        files: &[],
        before: &[],
        sql: "",
        env: &[("DATABASE_URL", "mysql://db.example.com/brotr")],
        args: &["migrate"],
        code: 2,
    },
    Case {
        name: "a private address",
        files: &[],
        before: &[],
        sql: "",
        env: &[],
        args: &["check", "ws://127.0.0.1:7777"],
        code: 2,
    },
    Case {
        name: "a single-label host",
        files: &[],
        before: &[],
        sql: "",
        env: &[],
        args: &["check", "wss://relay"],
        code: 2,
    },
    Case {
        name: "not a relay URL",
        files: &[],
        before: &[],
        sql: "",
        env: &[],
        args: &["check", "https://relay.example.com"],
        code: 2,
    },
    Case {
        name: "a bad key",
        files: &[],
        before: &[&["migrate"]],
        sql: "",
        env: &[("BROTR_MONITOR_KEY", "not-a-key")],
        args: &["monitor", "--once"],
        code: 2,
    },
    Case {
        name: "a missing key file",
        files: &[(
            "probe.yaml",
            "monitor:\n  publish:\n    keyFile: /etc/brotr/key/key\n",
        )],
        before: &[],
        sql: "",
        env: &[],
        args: &["--config", "probe.yaml", "monitor", "--once"],
        code: 2,
    },
    Case {
        name: "a missing seed file",
        files: &[],
        before: &[&["migrate"]],
        sql: "",
        env: &[],
        args: &["seed", "--file", "relays.txt"],
        code: 2,
    },
    Case {
        name: "a bad shard",
        files: &[],
        before: &[],
        sql: "",
        env: &[],
        args: &["sync", "--shard", "3/3"],
        code: 2,
    },
];

/// Runs a case in a fresh directory; returns its first `error:` line (empty when none).
fn run_case(c: &Case) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in c.files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    for args in c.before {
        let out = probe(args, dir.path(), &[]);
        assert!(out.status.success(), "{}: {args:?}: {out:?}", c.name);
    }
    if !c.sql.is_empty() {
        let url = format!("sqlite:{}", dir.path().join("brotr.db").display());
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(c.sql))
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            pool.close().await;
        });
    }
    let out = probe(c.args, dir.path(), c.env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(c.code),
        "{}: {:?} exited {:?}: {stderr}",
        c.name,
        c.args,
        out.status
    );
    stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default()
        .to_owned()
}

/// Lines of the doc's ```text blocks.
fn text_block_lines(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in doc.lines() {
        if l.starts_with("```") {
            inside = !inside && l == "```text";
            continue;
        }
        if inside && !l.trim().is_empty() {
            out.push(l.to_owned());
        }
    }
    out
}

/// Condition messages the operator wrote on live objects (captured by e2e/gitops-capture.sh).
fn captured_status_messages() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let base = root().join("deploy/argocd/brotr.dev");
    for kind in std::fs::read_dir(&base).unwrap() {
        let dir = kind.unwrap().path().join("testdata");
        for f in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            let obj: Value = serde_yaml_ng::from_str(&text).unwrap();
            for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
                if let Some(m) = c["message"].as_str().filter(|m| !m.is_empty()) {
                    out.insert(m.to_owned());
                }
            }
        }
    }
    assert!(out.len() >= 8, "{out:?}");
    out
}

/// The text of the sources that print messages, with Rust string continuations and format
/// escapes undone, so a message split over lines in the code reads as one.
fn source_corpus() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(t) = std::fs::read_to_string(&p) {
                out.push_str(&t);
                out.push('\n');
            }
        }
    }
    let mut raw = String::new();
    for d in [
        "probe/src",
        "operator/src",
        "charts/brotr-operator/templates",
    ] {
        walk(&root().join(d), &mut raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('\n')) => {
                chars.next();
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            ('\\', Some('"')) => {
                out.push('"');
                chars.next();
            }
            ('{', Some('{')) | ('}', Some('}')) => {
                out.push(c);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn troubleshooting_quotes_real_messages() {
    let doc = read("docs/troubleshooting.md");
    let lines = text_block_lines(&doc);
    let mut printed = BTreeSet::new();
    for c in CASES {
        let line = run_case(c);
        if c.code == 0 {
            assert!(line.is_empty(), "{}: {line}", c.name);
            continue;
        }
        assert!(!line.is_empty(), "{}: no error line", c.name);
        assert!(
            lines.contains(&line),
            "docs/troubleshooting.md does not quote what {} prints:\n{line}",
            c.name
        );
        printed.insert(line);
    }
    let captured = captured_status_messages();
    let corpus = source_corpus();
    for line in &lines {
        if printed.contains(line) || captured.contains(line) {
            continue;
        }
        // Otherwise a template: `…` stands for names and values; the rest is in the source
        // (but for the `error: ` every error line of the probe starts with).
        let template = line.strip_prefix("error: ").unwrap_or(line);
        for part in template.split('…').map(str::trim) {
            if part.chars().count() < 4 {
                continue;
            }
            // A message may be two format strings joined at "; " (`{what}; waiting for it`).
            let joined = part.match_indices("; ").any(|(i, _)| {
                let (a, b) = part.split_at(i);
                a.len() >= 4 && corpus.contains(a) && corpus.contains(b)
            });
            assert!(
                corpus.contains(part) || joined,
                "docs/troubleshooting.md quotes {line:?}, but {part:?} is not in the source \
                 (nor printed by a case here, nor captured on a live object)"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQL in the docs

/// ```sql blocks of a doc.
fn sql_blocks(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for l in doc.lines() {
        match (&mut cur, l) {
            (None, "```sql") => cur = Some(String::new()),
            (Some(b), "```") => {
                out.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[tokio::test]
#[ignore = "needs PostgreSQL: BROTR_TEST_PG_URL (e2e/run-tests.sh starts one)"]
async fn sql_in_the_docs_runs_on_migrated_databases() {
    let admin = std::env::var("BROTR_TEST_PG_URL")
        .unwrap_or_else(|_| panic!("BROTR_TEST_PG_URL is not set: run e2e/run-tests.sh"));
    let mut blocks = Vec::new();
    for rel in ["docs/getting-started.md", "docs/operations.md"] {
        for b in sql_blocks(&read(rel)) {
            blocks.push((rel, b));
        }
    }
    assert!(blocks.len() >= 4, "{blocks:?}");
    for schema in ["full", "lite"] {
        let name = format!("brotr_docs_{}", hex::encode(rand::random::<[u8; 6]>()));
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        let dir = tempfile::tempdir().unwrap();
        let out = probe(
            &["--database", &url, "--schema", schema, "migrate"],
            dir.path(),
            &[],
        );
        assert!(out.status.success(), "migrate: {out:?}");
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        for (rel, sql) in &blocks {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{rel} on a {schema} database: {e}\n{sql}"));
        }
        pool.close().await;
    }
}
