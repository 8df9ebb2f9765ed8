//! The operator's custom resources, `brotr.dev/v1alpha1`: [`BrotrDeployment`] and
//! [`RelayMonitor`].
//!
//! Both are defined here in Rust; `brotr-operator crd` prints them and `crds/*.yaml` is
//! generated from that output (a test fails when the committed files are stale). What the API
//! server must enforce is written as OpenAPI bounds and CEL rules (`#[x_kube(validation = …)]`):
//! immutable `schema`, exactly one database source (never switched), shard bounds, schedule XOR
//! interval, one target source, name lengths that keep every child name valid.
//!
//! Settings that belong to the probe are the probe's own config sections, embedded with their
//! bounds ([`settings`]): one definition, so a value the API server accepts is a value the probe
//! accepts. Durations the operator owns (`interval`) are strings like `30m`.

pub mod brotr_deployment;
pub mod common;
pub mod relay_monitor;
pub mod settings;

pub use brotr_deployment::{BrotrDeployment, BrotrDeploymentSpec, BrotrDeploymentStatus};
pub use relay_monitor::{RelayMonitor, RelayMonitorSpec, RelayMonitorStatus};

use kube::CustomResourceExt;

/// Both CRDs as one multi-document YAML stream (what `brotr-operator crd` prints).
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    Ok(format!(
        "{}{}",
        crd_yaml_brotr_deployment()?,
        crd_yaml_relay_monitor()?
    ))
}

/// The BrotrDeployment CRD as one YAML document (with a leading `---`).
pub fn crd_yaml_brotr_deployment() -> Result<String, serde_yaml_ng::Error> {
    Ok(format!(
        "---\n{}",
        serde_yaml_ng::to_string(&BrotrDeployment::crd())?
    ))
}

/// The RelayMonitor CRD as one YAML document (with a leading `---`).
pub fn crd_yaml_relay_monitor() -> Result<String, serde_yaml_ng::Error> {
    Ok(format!(
        "---\n{}",
        serde_yaml_ng::to_string(&RelayMonitor::crd())?
    ))
}

/// File names under `crds/`, paired with their content generators.
pub fn crd_files() -> Result<Vec<(&'static str, String)>, serde_yaml_ng::Error> {
    Ok(vec![
        (
            "brotr.dev_brotrdeployments.yaml",
            crd_yaml_brotr_deployment()?,
        ),
        ("brotr.dev_relaymonitors.yaml", crd_yaml_relay_monitor()?),
    ])
}
