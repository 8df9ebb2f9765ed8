//! The operator's custom resources, `brotr.dev/v1alpha1`: [`BrotrDeployment`] and
//! [`RelayMonitor`].
//!
//! Both are defined here in Rust; `brotr-operator crd` prints them and `crds/*.yaml` is
//! generated from that output (a test fails when the committed files are stale). Validation that
//! the apiserver must enforce is written as CEL rules (`#[x_kube(validation = …)]`): immutable
//! `schema`, exactly one database source, shard bounds, schedule XOR interval, duration formats and
//! bounds, `ws://`/`wss://` relay URLs, complete Secret references.
//!
//! Durations are strings (`"30m"`, `"8h"`, `"10s"`, retention `"90d"`): see [`common`] for the
//! rules and their bounds (intervals 1m–168h, timeouts 100ms–10m, retention 1d–9999d).
//!
//! Relation to the probe's configuration: these fields mirror, without reusing yet,
//! `brotr_probe::config` — the service sections (`finder`, `validator`, `monitor`,
//! `synchronizer`: interval, shards, filters, overrides, API sources), the network settings
//! (`clearnet`/`tor`/`i2p`/`loki` with `maxTasks`, `timeout`, `proxyUrl`), the monitor's checks,
//! publish and GeoIP settings, and the seeder's `toValidate`. A later step should make the CRD
//! embed (or convert into) those config types so there is one definition.

pub mod brotr_deployment;
pub mod common;
pub mod relay_monitor;

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
