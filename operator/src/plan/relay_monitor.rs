//! A RelayMonitor, validated: one monitor of a fleet, as a Deployment (interval) or a CronJob
//! (schedule), over a BrotrDeployment's relays or a static list.
//!
//! With a static list there is no database: the pod loads the list into an SQLite file in an
//! emptyDir (`migrate`, then `seed --to-validate false`, as init containers) and monitors that.
//! With a BrotrDeployment it uses that pipeline's database and schema, and its results are kept
//! under its own key beside the pipeline's.

use std::collections::BTreeMap;

use brotr_probe::config::{LimitsConfig, MonitorConfig, NetworksConfig};
use k8s_openapi::api::core::v1::ConfigMap;

use super::{Defaults, InvalidSpec, database_of, operator_keys, overrides, wants_tor_sidecar};
use crate::crd::brotr_deployment::{BrotrDeployment, SchemaFlavor};
use crate::crd::common::{ConfigMapKeyRef, GeoIpSource, PodOverrides, SecretKeyRef, WorkloadSpec};
use crate::crd::relay_monitor::{MonitorMode, RelayMonitor};
use crate::crd::settings::Section;
use crate::render::cron_job::{Schedule, cron_job};
use crate::render::pod::{
    DatabaseRef, Image, ProbePod, RELAYS_FILE, TorSidecar, probe_args, template_annotations,
};
use crate::render::probe_config::{ProbeConfigBuilder, RenderedConfig};
use crate::render::{ChildKind, Desired, Owner, deployment, interval_secs, spread};

/// How the monitor runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Interval,
    Schedule(String),
}

/// Which relays, and which database they live in.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// A BrotrDeployment's database.
    Pipeline {
        database: DatabaseRef,
        schema: SchemaFlavor,
    },
    /// Inline URLs (rendered into the monitor's ConfigMap).
    Inline(Vec<String>),
    /// The user's ConfigMap.
    ConfigMap(ConfigMapKeyRef),
}

/// A validated RelayMonitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub owner: Owner,
    pub image: Image,
    pub key: SecretKeyRef,
    pub mode: Mode,
    pub targets: Targets,
    pub config: RenderedConfig,
    pub tor: Option<TorSidecar>,
    pub geoip: Option<GeoIpSource>,
    pub workload: Option<WorkloadSpec>,
    pub overrides: PodOverrides,
    pub stopped: bool,
    /// Seconds a scheduled run waits before starting, so a fleet on one schedule does not
    /// start in the same second.
    pub start_delay: u64,
    /// Hash of the referenced ConfigMap's relay list (set by the controller once read): a
    /// monitor on an interval loads the list when its pod starts, so an edit rolls the pod.
    pub relays_hash: Option<String>,
}

impl Monitor {
    /// Takes the monitor's seat in the connection budget of the pipeline it targets
    /// (`position`: its place among that pipeline's monitors, in order of creation): its pod
    /// holds that one connection. Refused, with the reason, when the seats are taken. A monitor
    /// of a static list keeps no database and needs none; one behind the pipeline's pooler
    /// takes no seat (the pooler shares its server connections among any number of clients).
    pub fn seat(&mut self, pipeline: &BrotrDeployment, position: usize) -> Result<(), String> {
        let Targets::Pipeline {
            database:
                DatabaseRef::Postgres {
                    max_connections,
                    pooler,
                    ..
                },
            ..
        } = &mut self.targets
        else {
            return Ok(());
        };
        if pooler.is_some() {
            *max_connections = Some(super::budget::PER_MONITOR);
            return Ok(());
        };
        let budget = super::budget::Budget::of(&pipeline.spec.database).map_err(|e| {
            format!(
                "BrotrDeployment {}: {e}",
                pipeline.metadata.name.as_deref().unwrap_or_default()
            )
        })?;
        let name = format!(
            "{}/{}",
            pipeline.metadata.namespace.as_deref().unwrap_or_default(),
            pipeline.metadata.name.as_deref().unwrap_or_default()
        );
        *max_connections = Some(budget.seat(position, &name)?);
        Ok(())
    }
}

/// Checks a RelayMonitor and resolves it; `pipeline` is its BrotrDeployment when it names one
/// (the controller waits for it otherwise).
pub fn validate(
    rm: &RelayMonitor,
    pipeline: Option<&BrotrDeployment>,
    defaults: &Defaults,
) -> Result<Monitor, InvalidSpec> {
    let spec = &rm.spec;
    let owner = Owner {
        kind: "RelayMonitor",
        name: rm.metadata.name.clone().unwrap_or_default(),
        namespace: rm.metadata.namespace.clone().unwrap_or_default(),
        uid: rm.metadata.uid.clone().unwrap_or_default(),
    };
    let mode = match (&spec.schedule, &spec.interval) {
        (Some(s), None) => Mode::Schedule(s.clone()),
        (None, Some(_)) => Mode::Interval,
        _ => {
            return Err(InvalidSpec(
                "spec: set exactly one of schedule or interval".into(),
            ));
        }
    };
    let t = &spec.targets;
    let targets = match (&t.brotr_deployment_ref, &t.config_map_ref, &t.relays) {
        (Some(r), None, None) => {
            let bd = pipeline.ok_or_else(|| {
                InvalidSpec(format!(
                    "spec.targets.brotrDeploymentRef: {} not found",
                    r.name
                ))
            })?;
            Targets::Pipeline {
                database: database_of(bd),
                schema: bd.spec.schema,
            }
        }
        (None, Some(c), None) => Targets::ConfigMap(c.clone()),
        (None, None, Some(r)) => Targets::Inline(r.clone()),
        _ => {
            return Err(InvalidSpec(
                "spec.targets: set exactly one of brotrDeploymentRef, configMapRef or relays"
                    .into(),
            ));
        }
    };
    let networks = spec.networks.as_ref().map(|s| &s.values);
    let tor = wants_tor_sidecar(networks).then(|| defaults.tor_sidecar(spec.tor.as_ref()));

    let mut b = ProbeConfigBuilder::default();
    b.section(<NetworksConfig as Section>::KEY, "spec.networks", networks)
        .section(
            <LimitsConfig as Section>::KEY,
            "spec.limits",
            spec.limits.as_ref().map(|s| &s.values),
        )
        .section(
            <MonitorConfig as Section>::KEY,
            "spec.settings",
            spec.settings.as_ref().map(|s| &s.values),
        );
    operator_keys(&mut b, true, tor.is_some(), spec.geoip.as_ref());
    if let Some(i) = &spec.interval {
        let secs = interval_secs(i)
            .ok_or_else(|| InvalidSpec(format!("spec.interval: {i:?} is not a duration")))?;
        b.set("monitor", "intervalSecs", secs);
    }
    if !matches!(targets, Targets::Pipeline { .. }) {
        let publishes = b
            .get("monitor", "publish.relays")
            .and_then(|v| v.as_array())
            .is_some_and(|a| !a.is_empty());
        if !publishes {
            return Err(InvalidSpec(
                "spec.settings.publish.relays: a monitor of a static list keeps no database; \
                 name at least one relay to publish to"
                    .into(),
            ));
        }
    }
    let config = b.build().map_err(InvalidSpec)?;

    Ok(Monitor {
        image: defaults.probe_image(spec.image.as_ref()),
        key: spec.identity.key_secret_ref.clone(),
        start_delay: spread(&format!("{}/{}", owner.namespace, owner.name), 60),
        relays_hash: None,
        mode,
        targets,
        config,
        tor,
        geoip: spec.geoip.clone(),
        overrides: overrides(None, spec.workload.as_ref()),
        workload: spec.workload.clone(),
        stopped: spec.stopped,
        owner,
    })
}

impl Monitor {
    /// `<rm>-rmon`: the ConfigMap and the Deployment or CronJob.
    pub fn name(&self) -> String {
        format!("{}-rmon", self.owner.name)
    }

    pub fn status_mode(&self) -> MonitorMode {
        match self.mode {
            Mode::Interval => MonitorMode::Interval,
            Mode::Schedule(_) => MonitorMode::Schedule,
        }
    }

    /// The user's ConfigMap this monitor reads, if any (the controller checks it exists).
    pub fn referenced_config_map(&self) -> Option<&ConfigMapKeyRef> {
        match &self.targets {
            Targets::ConfigMap(c) => Some(c),
            _ => None,
        }
    }

    /// The ConfigMap, and the Deployment or CronJob.
    pub fn children(&self) -> Vec<Desired> {
        let name = self.name();
        let mut files = BTreeMap::from([("probe.yaml".to_owned(), self.config.text.clone())]);
        if let Targets::Inline(relays) = &self.targets {
            files.insert("relays.txt".into(), format!("{}\n", relays.join("\n")));
        }
        let cm = ConfigMap {
            metadata: self.owner.meta(&name, "monitor"),
            data: Some(files),
            ..Default::default()
        };
        let config_hash = self.config.hash_of(&["networks", "limits", "monitor"]);
        let mut out = vec![Desired::new(ChildKind::ConfigMap, &cm)];

        let (database, schema) = match &self.targets {
            Targets::Pipeline { database, schema } => (database.clone(), *schema),
            _ => (DatabaseRef::Sqlite, SchemaFlavor::Lite),
        };
        let relays: Option<(String, String)> = match &self.targets {
            Targets::Inline(_) => Some((name.clone(), "relays.txt".into())),
            Targets::ConfigMap(c) => Some((c.name.clone(), c.key.clone())),
            Targets::Pipeline { .. } => None,
        };
        let init = if relays.is_some() {
            vec![
                ("migrate".to_owned(), probe_args(&["migrate"], false, false)),
                (
                    "seed".to_owned(),
                    probe_args(
                        &["seed", "--file", RELAYS_FILE, "--to-validate", "false"],
                        false,
                        false,
                    ),
                ),
            ]
        } else {
            vec![]
        };
        let scheduled = matches!(self.mode, Mode::Schedule(_));
        let mut args = probe_args(&["monitor"], true, !scheduled);
        if scheduled {
            args.extend([
                "--once".into(),
                "--start-delay".into(),
                self.start_delay.to_string(),
            ]);
        }
        let spec = ProbePod {
            image: &self.image,
            args,
            database: &database,
            schema: schema.as_str(),
            config_map: Some(&name),
            key: Some(&self.key),
            geoip: self.geoip.as_ref(),
            tor: self.tor.as_ref(),
            relays: relays.as_ref().map(|(n, k)| (n.as_str(), k.as_str())),
            init,
            serve: !scheduled,
            resources: self.workload.as_ref().and_then(|w| w.resources.as_ref()),
            overrides: &self.overrides,
            restart_policy: if scheduled { "Never" } else { "Always" },
            env: vec![],
        }
        .spec();
        match &self.mode {
            Mode::Interval => {
                let mut annotations = template_annotations(&self.overrides, Some(&config_hash));
                if let (Targets::ConfigMap(_), Some(h)) = (&self.targets, &self.relays_hash) {
                    annotations.insert("brotr.dev/relays-hash".into(), h.clone());
                }
                out.push(deployment::service(
                    &self.owner,
                    &name,
                    "monitor",
                    if self.stopped { 0 } else { 1 },
                    spec,
                    annotations,
                ))
            }
            Mode::Schedule(cron) => out.push(cron_job(
                &self.owner,
                &name,
                "monitor",
                &Schedule {
                    cron,
                    time_zone: None,
                    suspend: self.stopped,
                },
                spec,
                template_annotations(&self.overrides, None),
            )),
        }
        out
    }
}
