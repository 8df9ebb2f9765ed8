//! `brotr-operator` binary. Subcommands (`run`, `crd`) are added with the operator issues.

fn main() {
    eprintln!(
        "brotr-operator {}: not built yet; the operator arrives with its own issue",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
