//! The README describes what exists: every metric the probe registers is listed there.

use std::path::Path;

#[test]
fn the_readme_lists_every_metric() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/metrics.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let names: Vec<&str> = source
        .split('"')
        .filter(|s| {
            s.starts_with("brotr_")
                && s.len() > "brotr_".len()
                && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .collect();
    assert!(names.len() >= 30, "found {names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(missing.is_empty(), "README does not list {missing:?}");
}
