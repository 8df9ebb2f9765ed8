//! The full and lite migrations are kept as separate files (sqlx runs one folder per schema), so
//! they could drift apart unnoticed. They must differ only where the schemas differ: the event
//! table's columns (lite keeps `tagvalues` instead of `sig`, `tags`, `content`), the tag index,
//! the event insert function, the schema's name, SQLite's lite event table being WITHOUT ROWID
//! (its rows are small) — and comments.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

/// The statements of a migration file, one trimmed line each, comments and blank lines dropped.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split("--").next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Lines of `a` and of `b` that are not in their longest common subsequence.
fn differing(a: &[String], b: &[String]) -> Vec<String> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if a[i] == b[j] {
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(format!("full: {}", a[i]));
            i += 1;
        } else {
            out.push(format!("lite: {}", b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| format!("full: {l}")));
    out.extend(b[j..].iter().map(|l| format!("lite: {l}")));
    out
}

/// Words a line may mention to differ between full and lite.
const ALLOWED: [&str; 11] = [
    "'full'",
    "'lite'",
    "sig",
    "tags",
    "content",
    "tagvalues",
    "COMPRESSION",
    "toast_tuple_target",
    "event_insert",
    ");",
    ") WITHOUT ROWID;",
];

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn full_and_lite_migrations_differ_only_where_the_schemas_do() {
    for backend in ["postgres", "sqlite"] {
        let (full, lite) = (
            root().join(backend).join("full"),
            root().join(backend).join("lite"),
        );
        let names = files(&full);
        assert_eq!(
            names,
            files(&lite),
            "{backend}: the same migrations in both"
        );
        assert!(names.len() >= 3, "{backend}: {names:?}");
        for name in names {
            let diff = differing(&lines(&full.join(&name)), &lines(&lite.join(&name)));
            let unexpected: Vec<&String> = diff
                .iter()
                .filter(|l| !ALLOWED.iter().any(|w| l.contains(w)))
                .collect();
            assert!(
                unexpected.is_empty(),
                "{backend}/{name}: full and lite differ beyond the event columns:\n{}",
                unexpected
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[test]
fn the_drift_check_notices_a_drift() {
    let a: Vec<String> = ["CREATE TABLE relay (", "id INTEGER", ");"]
        .map(str::to_owned)
        .to_vec();
    let b: Vec<String> = ["CREATE TABLE relay (", "id BIGINT", ");"]
        .map(str::to_owned)
        .to_vec();
    assert_eq!(
        differing(&a, &b),
        vec!["full: id INTEGER", "lite: id BIGINT"]
    );
    assert!(differing(&a, &a).is_empty());
}
