//! A BrotrDeployment, validated: what its pipeline is made of, and the children it renders.
//!
//! The migration Job gates everything: until the Job for the current image and schema has
//! completed, only the database and that Job are rendered, and the controller leaves the rest
//! as it is (pods of the previous version keep running during an upgrade).

use brotr_probe::config::{
    ApiConfig, ConsensusConfig, LimitsConfig, MaintainConfig, NetworksConfig,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{
    Defaults, InvalidSpec, budget, database_of, operator_keys, overrides, wants_tor_sidecar,
};
use crate::crd::brotr_deployment::{
    ApiIngressSpec, ApiServiceType, ApiStatus, BrotrDeployment, JobState, MaintenanceJob,
    MetricsSpec, SchemaFlavor, ServiceKnobs,
};
use crate::crd::common::{ConfigMapKeyRef, GeoIpSource, PodOverrides, SecretKeyRef, WorkloadSpec};
use crate::crd::settings::{Section, Settings};
use crate::render::cron_job::{Schedule, cron_job};
use crate::render::pod::{
    DatabaseRef, Image, ProbePod, RELAYS_FILE, TorSidecar, env_from_label, plain_env, probe_args,
    secret_env, template_annotations,
};
use crate::render::pooler;
use crate::render::postgres::{self, Managed};
use crate::render::probe_config::{ProbeConfigBuilder, RenderedConfig};
use crate::render::{
    Desired, Owner, config_map, deployment, ingress, interval_secs, job, monitoring, name_hash,
    pdb, service, spread, stateful_set,
};
use k8s_openapi::api::core::v1::ContainerPort;

/// The long-running services with a Deployment each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Finder,
    Validator,
    Monitor,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Finder => "finder",
            Service::Validator => "validator",
            Service::Monitor => "monitor",
        }
    }

    /// The probe subcommand.
    fn command(self) -> &'static str {
        match self {
            Service::Finder => "find",
            Service::Validator => "validate",
            Service::Monitor => "monitor",
        }
    }
}

/// Where the seed list comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SeedSource {
    Inline(Vec<String>),
    ConfigMap(ConfigMapKeyRef),
    /// The list bundled with the probe.
    Bundled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Seeder {
    pub source: SeedSource,
    pub to_validate: bool,
    pub workload: Option<WorkloadSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    /// `refresh`, `retention`, `cleanup` or `consensus` (the `maintain` step).
    pub step: &'static str,
    pub schedule: String,
    pub suspend: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManagedDb {
    pub image: String,
    pub storage: k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    pub storage_class: Option<String>,
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

/// The pooler the operator runs: the managed database's, or one in front of an external
/// server.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolerPlan {
    pub image: String,
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

/// The archive's read side, when wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiPlan {
    pub replicas: i32,
    pub service_type: ApiServiceType,
    pub port: i32,
    pub ingress: Option<ApiIngressSpec>,
    /// The read-only role's URL: the managed login's Secret, or the one the user names.
    pub database: SecretKeyRef,
    /// The login the migration Job creates (managed database only).
    pub managed_login: bool,
    pub workload: Option<WorkloadSpec>,
}

/// A validated BrotrDeployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub owner: Owner,
    pub image: Image,
    pub schema: SchemaFlavor,
    pub database: DatabaseRef,
    pub managed: Option<ManagedDb>,
    /// The PgBouncer the operator runs in front of the database, if any.
    pub pooler: Option<PoolerPlan>,
    pub key: Option<SecretKeyRef>,
    /// The consensus' signing key (`spec.maintenance.consensusKeySecretRef`).
    pub consensus_key: Option<SecretKeyRef>,
    pub config: RenderedConfig,
    pub tor: Option<TorSidecar>,
    pub geoip: Option<GeoIpSource>,
    pub seeder: Option<Seeder>,
    /// Enabled Deployment services, with their workload knobs.
    pub services: Vec<(Service, Option<WorkloadSpec>)>,
    /// Synchronizer shards (None: disabled).
    pub sync: Option<(i32, Option<WorkloadSpec>)>,
    pub maintenance: Vec<Maintenance>,
    pub maintenance_workload: Option<WorkloadSpec>,
    pub time_zone: Option<String>,
    pub metrics: MetricsSpec,
    pub overrides: PodOverrides,
    pub stopped: bool,
    pub api: Option<ApiPlan>,
    /// The connection budget's split over the pipeline's pods (their pool size is in
    /// `database`).
    pub connections: budget::Split,
}

/// What the controller observed, that the children depend on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// State of the migration Job of the current image and schema.
    pub migration: JobState,
    /// Hash of the user's seed ConfigMap content (re-runs the seeder when it changes).
    pub seed_list_hash: Option<String>,
    /// The Prometheus Operator's CRDs are installed.
    pub prometheus_operator: bool,
    /// The managed database is ready (the migration waits for it).
    pub database_ready: bool,
    /// A password for the managed database's Secret, used only if it does not exist yet.
    pub new_password: String,
    /// A password for the api's read-only login on a managed database (its Secret, likewise).
    pub new_reader_password: String,
    /// The managed database's StatefulSet exists with a claim template of this size.
    pub claim_storage: Option<Quantity>,
    /// The size its claim has been grown to, when not the one asked for.
    pub storage_reached: Option<Quantity>,
    /// The size asked for, refused by the API server (the class does not allow expansion).
    pub storage_refused: Option<Quantity>,
}

fn enabled(e: Option<bool>) -> bool {
    e.unwrap_or(true)
}

fn values<T>(s: Option<&Settings<T>>) -> Option<&serde_json::Map<String, serde_json::Value>> {
    s.map(|s| &s.values)
}

/// Adds a service's section with its interval (`spec_field`: the service's key in the spec).
fn service_section<S: ServiceKnobs>(
    b: &mut ProbeConfigBuilder,
    spec_field: &str,
    spec: Option<&S>,
) -> Result<(), InvalidSpec> {
    b.section(
        S::Section::KEY,
        &format!("spec.{spec_field}.settings"),
        values(spec.and_then(|s| s.settings())),
    );
    if let Some(i) = spec.and_then(|s| s.interval()) {
        let secs = interval_secs(i).ok_or_else(|| {
            InvalidSpec(format!(
                "spec.{spec_field}.interval: {i:?} is not a duration"
            ))
        })?;
        b.set(S::Section::KEY, "intervalSecs", secs);
    }
    Ok(())
}

/// The service's workload, when it is enabled (an absent section runs it with defaults).
fn wanted<S: ServiceKnobs>(spec: Option<&S>) -> Option<Option<WorkloadSpec>> {
    spec.is_none_or(|s| s.enabled())
        .then(|| spec.and_then(|s| s.workload().cloned()))
}

/// Checks a BrotrDeployment and resolves it into a [`Pipeline`].
pub fn validate(bd: &BrotrDeployment, defaults: &Defaults) -> Result<Pipeline, InvalidSpec> {
    let spec = &bd.spec;
    let owner = Owner {
        kind: "BrotrDeployment",
        name: bd.metadata.name.clone().unwrap_or_default(),
        namespace: bd.metadata.namespace.clone().unwrap_or_default(),
        uid: bd.metadata.uid.clone().unwrap_or_default(),
    };
    let tor = wants_tor_sidecar(values(spec.networks.as_ref()))
        .then(|| defaults.tor_sidecar(spec.tor.as_ref()));
    let key = spec.identity.as_ref().map(|i| i.key_secret_ref.clone());
    let monitor = spec.monitor.as_ref();
    let geoip = monitor.and_then(|m| m.geoip.clone());

    let mut b = ProbeConfigBuilder::default();
    b.section(
        <NetworksConfig as Section>::KEY,
        "spec.networks",
        values(spec.networks.as_ref()),
    );
    b.section(
        <LimitsConfig as Section>::KEY,
        "spec.limits",
        values(spec.limits.as_ref()),
    );
    service_section(&mut b, "finder", spec.finder.as_ref())?;
    service_section(&mut b, "validator", spec.validator.as_ref())?;
    service_section(&mut b, "monitor", monitor)?;
    service_section(&mut b, "synchronizer", spec.synchronizer.as_ref())?;
    let mt = spec.maintenance.clone().unwrap_or_default();
    b.section(
        <MaintainConfig as Section>::KEY,
        "spec.maintenance.settings",
        values(mt.settings.as_ref()),
    );
    b.section(
        <ConsensusConfig as Section>::KEY,
        "spec.maintenance.consensusSettings",
        values(mt.consensus_settings.as_ref()),
    );
    let api_spec = spec.api.as_ref().filter(|a| enabled(a.enabled));
    b.section(
        <ApiConfig as Section>::KEY,
        "spec.api.settings",
        values(api_spec.and_then(|a| a.settings.as_ref())),
    );
    operator_keys(&mut b, key.is_some(), tor.is_some(), geoip.as_ref());
    if mt.consensus_key_secret_ref.is_some() {
        // Mounted where a monitor's key would be: the consensus round's pods carry no other.
        b.set(
            <ConsensusConfig as Section>::KEY,
            "publish.keyFile",
            crate::render::pod::KEY_FILE,
        );
    }
    let config = b.build().map_err(InvalidSpec)?;

    let mut database = database_of(bd);
    let budget = budget::Budget::of(&spec.database)?;
    let managed = spec.database.managed.as_ref().map(|m| ManagedDb {
        image: m
            .image
            .clone()
            .unwrap_or_else(|| defaults.postgres_image.clone()),
        storage: m.storage.clone(),
        storage_class: m.storage_class_name.clone(),
        resources: m.resources.clone(),
    });
    let pooler = crate::plan::rendered_pooler(bd).map(|p| PoolerPlan {
        image: p.image.unwrap_or_else(|| defaults.pgbouncer_image.clone()),
        resources: p.resources,
    });

    let seeder = spec
        .seeder
        .clone()
        .filter(|s| enabled(s.enabled))
        .map(|s| Seeder {
            source: match (s.relays, s.config_map_ref) {
                (Some(r), _) => SeedSource::Inline(r),
                (None, Some(c)) => SeedSource::ConfigMap(c),
                (None, None) => SeedSource::Bundled,
            },
            to_validate: s.to_validate.unwrap_or(true),
            workload: s.workload,
        })
        .or_else(|| {
            spec.seeder.is_none().then_some(Seeder {
                source: SeedSource::Bundled,
                to_validate: true,
                workload: None,
            })
        });

    let services: Vec<(Service, Option<WorkloadSpec>)> = [
        (Service::Finder, wanted(spec.finder.as_ref())),
        (Service::Validator, wanted(spec.validator.as_ref())),
        (Service::Monitor, wanted(monitor)),
    ]
    .into_iter()
    .filter_map(|(s, w)| Some((s, w?)))
    .collect();
    let sy = spec.synchronizer.as_ref();
    let sync = wanted(sy).map(|w| (sy.and_then(|s| s.shards).unwrap_or(1), w));

    let minute = spread(&format!("{}/{}", owner.namespace, owner.name), 60);
    let job = |j: Option<&MaintenanceJob>, step: &'static str, default: String| {
        j.is_none_or(|j| enabled(j.enabled)).then(|| Maintenance {
            step,
            schedule: j.and_then(|j| j.schedule.clone()).unwrap_or(default),
            suspend: j.and_then(|j| j.suspend).unwrap_or(false),
        })
    };
    let maintenance: Vec<Maintenance> = [
        job(mt.refresh.as_ref(), "refresh", format!("{minute} * * * *")),
        job(
            mt.retention.as_ref(),
            "retention",
            format!("{minute} 4 * * *"),
        ),
        job(
            mt.cleanup.as_ref(),
            "cleanup",
            format!("{} 5 * * *", (minute + 30) % 60),
        ),
        // Verdicts are read through the api: without it, a round has no reader.
        (api_spec.is_some() || mt.consensus.is_some())
            .then(|| {
                let m = (minute + 15) % 60;
                job(
                    mt.consensus.as_ref(),
                    "consensus",
                    format!("{},{} * * * *", m.min((m + 30) % 60), m.max((m + 30) % 60)),
                )
            })
            .flatten(),
    ]
    .into_iter()
    .flatten()
    .collect();

    let name = bd.metadata.name.as_deref().unwrap_or_default();
    let api = match api_spec {
        None => None,
        Some(a) => {
            let (database, managed_login) = match (&a.database_url_secret_ref, &managed) {
                (Some(r), _) => (r.clone(), false),
                (None, Some(_)) => (
                    SecretKeyRef {
                        name: format!("{name}-api-db"),
                        key: postgres::URI_KEY.into(),
                    },
                    true,
                ),
                (None, None) => {
                    return Err(InvalidSpec(
                        "spec.api.databaseUrlSecretRef is required with an external database: \
                         the URL of a read-only login that is a member of brotr_reader \
                         (docs/operations.md, \"The archive's read side\")"
                            .into(),
                    ));
                }
            };
            let svc = a.service.clone().unwrap_or_default();
            Some(ApiPlan {
                replicas: a.replicas.unwrap_or(1),
                service_type: svc.type_.unwrap_or_default(),
                port: svc.port.unwrap_or(80),
                ingress: a.ingress.clone(),
                database,
                managed_login,
                workload: a.workload.clone(),
            })
        }
    };

    // Every pipeline pod that connects: a Deployment per service (`Recreate`: one at a time),
    // the shards, the api's replicas and the one its rolling update adds, the migration and
    // seed Jobs, a Job per maintenance CronJob (`Forbid`: one at a time).
    let pods = services.len() as i32
        + sync.as_ref().map_or(0, |(shards, _)| *shards)
        + api.as_ref().map_or(0, |a| a.replicas + 1)
        + 1
        + i32::from(seeder.is_some())
        + maintenance.len() as i32;
    let connections = budget.split(pods)?;
    if let DatabaseRef::Postgres {
        max_connections, ..
    } = &mut database
    {
        *max_connections = Some(connections.per_pod);
    }

    Ok(Pipeline {
        image: defaults.probe_image(spec.image.as_ref()),
        schema: spec.schema,
        database,
        managed,
        pooler,
        key,
        consensus_key: mt.consensus_key_secret_ref.clone(),
        config,
        tor,
        geoip,
        seeder,
        services,
        sync,
        maintenance,
        maintenance_workload: mt.workload.clone(),
        time_zone: mt.time_zone.clone(),
        metrics: spec.metrics.clone().unwrap_or_default(),
        overrides: spec.pod_overrides.clone().unwrap_or_default(),
        stopped: spec.stopped,
        api,
        owner,
        connections,
    })
}

impl Pipeline {
    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.owner.name)
    }

    /// `<bd>-migrate-<hash>`: a new Job for each image and schema, and when the api's
    /// read-only login is first wanted (the Job creates it).
    /// `<bd>-pooler`.
    pub fn pooler_name(&self) -> String {
        self.name("pooler")
    }

    /// The server connections the managed pooler may hold: the budget less what the pods that
    /// connect directly may hold (the migration Job; the api's replicas and the one a rollout
    /// adds). The monitors' seats are not held back: a RelayMonitor of a pooled pipeline is one
    /// more client of the pooler.
    pub fn pooler_server_connections(&self) -> i32 {
        let direct = 1 + self.api.as_ref().map_or(0, |a| a.replicas + 1);
        (self.connections.budget.total - direct * self.connections.per_pod).max(1)
    }

    /// The pooler's ConfigMap, Service and Deployment, in front of the managed database or
    /// the external server.
    fn pooler_children(&self, p: &PoolerPlan) -> Vec<Desired> {
        let pooler_name = self.pooler_name();
        let postgres_name = self.postgres_name();
        let server = match (&self.managed, &self.database) {
            (Some(_), _) => pooler::Server::Managed {
                host: self.owner.service_host(&postgres_name),
                database: postgres::USER,
                user: postgres::USER,
                password_secret: &postgres_name,
                password_key: postgres::PASSWORD_KEY,
            },
            (None, DatabaseRef::Postgres { url, ca, .. }) => pooler::Server::External {
                url,
                ca: ca.as_ref(),
                probe_image: &self.image,
            },
            // No server to front (the plan never asks for it).
            (None, DatabaseRef::Sqlite) => return Vec::new(),
        };
        let pooler = pooler::Pooler {
            name: &pooler_name,
            image: &p.image,
            server,
            server_connections: self.pooler_server_connections(),
            resources: p.resources.as_ref(),
            overrides: &self.overrides,
        };
        vec![
            pooler::config_map(&self.owner, &pooler),
            pooler::service(&self.owner, &pooler),
            pooler::deployment(&self.owner, &pooler),
        ]
    }

    pub fn migration_job_name(&self) -> String {
        let hash = if self.reader_login().is_some() {
            name_hash(&(
                &self.image.reference,
                self.schema.as_str(),
                postgres::READER_LOGIN,
            ))
        } else {
            name_hash(&(&self.image.reference, self.schema.as_str()))
        };
        self.name(&format!("migrate-{hash}"))
    }

    /// The Secret of the read-only login the migration Job creates, if it creates one.
    fn reader_login(&self) -> Option<&SecretKeyRef> {
        self.api
            .as_ref()
            .filter(|a| a.managed_login)
            .map(|a| &a.database)
    }

    pub fn api_name(&self) -> String {
        self.name("api")
    }

    /// Where the api answers: its Service in the cluster, and the Ingress's host.
    pub fn api_status(&self) -> Option<ApiStatus> {
        let a = self.api.as_ref()?;
        let port = if a.port == 80 {
            String::new()
        } else {
            format!(":{}", a.port)
        };
        Some(ApiStatus {
            endpoint: format!(
                "ws://{}.{}.svc{port}",
                self.api_name(),
                self.owner.namespace
            ),
            public_endpoint: a.ingress.as_ref().map(|i| {
                let scheme = if i.tls_secret_name.is_some() {
                    "wss"
                } else {
                    "ws"
                };
                format!("{scheme}://{}", i.host)
            }),
        })
    }

    pub fn seed_job_name(&self, obs: &Observed) -> Option<String> {
        let s = self.seeder.as_ref()?;
        let list = match &s.source {
            SeedSource::Inline(r) => Some(r.join("\n")),
            SeedSource::ConfigMap(_) => obs.seed_list_hash.clone(),
            SeedSource::Bundled => None,
        };
        Some(self.name(&format!(
            "seed-{}",
            name_hash(&(list, s.to_validate, &self.image.reference))
        )))
    }

    pub fn service_name(&self, s: Service) -> String {
        self.name(s.name())
    }

    pub fn sync_name(&self) -> String {
        self.name("sync")
    }

    pub fn metrics_name(&self) -> String {
        self.name("metrics")
    }

    pub fn config_name(&self) -> String {
        self.name("config")
    }

    pub fn postgres_name(&self) -> String {
        self.name("postgres")
    }

    fn pod(
        &self,
        args: Vec<String>,
        relays: bool,
        workload: Option<&WorkloadSpec>,
    ) -> ProbePodParts {
        ProbePodParts {
            args,
            relays,
            resources: workload.and_then(|w| w.resources.clone()),
            overrides: overrides(Some(&self.overrides), workload),
        }
    }

    fn pod_spec(&self, p: &ProbePodParts, extra: PodExtra) -> k8s_openapi::api::core::v1::PodSpec {
        let seeds_cm = self.seeds_config_map();
        let config_name = self.config_name();
        let direct = self.database.direct();
        ProbePod {
            image: &self.image,
            args: p.args.clone(),
            database: if extra.direct {
                &direct
            } else {
                &self.database
            },
            schema: self.schema.as_str(),
            config_map: extra.config.then_some(config_name.as_str()),
            key: if extra.consensus_key {
                self.consensus_key.as_ref()
            } else {
                extra.key.then_some(self.key.as_ref()).flatten()
            },
            geoip: extra.geoip.then_some(self.geoip.as_ref()).flatten(),
            tor: extra.tor.then_some(self.tor.as_ref()).flatten(),
            relays: if p.relays {
                seeds_cm.as_ref().map(|(n, k)| (n.as_str(), k.as_str()))
            } else {
                None
            },
            init: vec![],
            serve: extra.serve,
            resources: p.resources.as_ref(),
            overrides: &p.overrides,
            restart_policy: if extra.serve { "Always" } else { "Never" },
            env: extra.env,
        }
        .spec()
    }

    /// The ConfigMap and key the seeder reads, if it reads one.
    fn seeds_config_map(&self) -> Option<(String, String)> {
        match &self.seeder.as_ref()?.source {
            SeedSource::Inline(_) => Some((self.name("seeds"), "relays.txt".into())),
            SeedSource::ConfigMap(c) => Some((c.name.clone(), c.key.clone())),
            SeedSource::Bundled => None,
        }
    }

    /// Every child the pipeline wants, given what was observed.
    pub fn children(&self, obs: &Observed) -> Vec<Desired> {
        self.desired(obs).0
    }

    /// The children the pipeline wants, and whether that is the whole set. While the
    /// migration (or the database it waits for) gates the rest, the set is partial: the
    /// children it leaves out are kept as they are, never swept.
    pub fn desired(&self, obs: &Observed) -> (Vec<Desired>, bool) {
        let mut out = Vec::new();
        if let Some(m) = &self.managed {
            let name = self.postgres_name();
            let managed = Managed {
                name: &name,
                image: &m.image,
                storage: obs.storage_reached.as_ref().unwrap_or(&m.storage),
                storage_refused: obs.storage_refused.as_ref(),
                claim_storage: obs.claim_storage.as_ref().unwrap_or(&m.storage),
                storage_class: m.storage_class.as_deref(),
                resources: m.resources.as_ref(),
                overrides: &self.overrides,
                max_connections: Some(self.connections.budget.server_max_connections())
                    .filter(|n| *n > budget::POSTGRES_DEFAULT_MAX_CONNECTIONS),
            };
            out.push(postgres::secret(&self.owner, &managed, &obs.new_password));
            if let Some(login) = self.reader_login() {
                out.push(postgres::reader_secret(
                    &self.owner,
                    &managed,
                    &login.name,
                    &obs.new_reader_password,
                ));
            }
            out.push(postgres::service(&self.owner, &managed));
            out.push(postgres::stateful_set(&self.owner, &managed));
        }
        if let Some(p) = &self.pooler {
            out.extend(self.pooler_children(p));
        }
        if self.managed.is_some() && !obs.database_ready && obs.migration != JobState::Complete {
            return (out, false);
        }
        let migrate = self.pod(probe_args(&["migrate"], false, false), false, None);
        let env = self
            .reader_login()
            .map(|s| {
                vec![
                    plain_env("BROTR_READER_LOGIN", postgres::READER_LOGIN),
                    secret_env(
                        "BROTR_READER_PASSWORD",
                        &SecretKeyRef {
                            name: s.name.clone(),
                            key: postgres::PASSWORD_KEY.into(),
                        },
                    ),
                ]
            })
            .unwrap_or_default();
        out.push(job::one_shot(
            &self.owner,
            &self.migration_job_name(),
            "migration",
            self.pod_spec(
                &migrate,
                PodExtra {
                    env,
                    direct: true,
                    ..Default::default()
                },
            ),
            template_annotations(&migrate.overrides, None),
        ));
        if obs.migration != JobState::Complete {
            return (out, false);
        }
        out.push(config_map::probe_config(
            &self.owner,
            &self.config_name(),
            &self.config.text,
        ));
        out.extend(self.seeder_children(obs));
        out.extend(self.service_children());
        out.push(service::metrics(&self.owner, &self.metrics_name()));
        out.extend(self.maintenance_children());
        out.extend(self.api_children());
        if obs.prometheus_operator && self.metrics.service_monitor {
            out.push(monitoring::service_monitor(
                &self.owner,
                &self.metrics_name(),
            ));
        }
        (out, true)
    }

    fn seeder_children(&self, obs: &Observed) -> Vec<Desired> {
        let (Some(s), Some(job_name)) = (&self.seeder, self.seed_job_name(obs)) else {
            return vec![];
        };
        if self.stopped {
            return vec![];
        }
        let mut out = Vec::new();
        if let SeedSource::Inline(relays) = &s.source {
            out.push(config_map::relay_list(
                &self.owner,
                &self.name("seeds"),
                "seeds",
                relays,
            ));
        }
        let mut cmd = vec!["seed".to_owned()];
        if s.source != SeedSource::Bundled {
            cmd.extend(["--file".into(), RELAYS_FILE.into()]);
        }
        cmd.extend(["--to-validate".into(), s.to_validate.to_string()]);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let parts = self.pod(probe_args(&cmd, true, false), true, s.workload.as_ref());
        let spec = self.pod_spec(
            &parts,
            PodExtra {
                config: true,
                ..Default::default()
            },
        );
        let annotations = template_annotations(&parts.overrides, None);
        out.push(job::one_shot(
            &self.owner,
            &job_name,
            "seeder",
            spec,
            annotations,
        ));
        out
    }

    fn service_children(&self) -> Vec<Desired> {
        let replicas = if self.stopped { 0 } else { 1 };
        let mut out = Vec::new();
        for (service, workload) in &self.services {
            let talks_to_relays = *service != Service::Finder;
            let parts = self.pod(
                probe_args(&[service.command()], true, true),
                false,
                workload.as_ref(),
            );
            let spec = self.pod_spec(
                &parts,
                PodExtra {
                    direct: false,
                    config: true,
                    serve: true,
                    key: talks_to_relays,
                    consensus_key: false,
                    tor: talks_to_relays,
                    geoip: *service == Service::Monitor,
                    env: vec![],
                },
            );
            let hash = self
                .config
                .hash_of(&["networks", "limits", service_section_key(*service)]);
            out.push(deployment::service(
                &self.owner,
                &self.service_name(*service),
                service.name(),
                replicas,
                spec,
                template_annotations(&parts.overrides, Some(&hash)),
            ));
        }
        if let Some((shards, workload)) = &self.sync {
            let shard = format!("$(POD_INDEX)/{shards}");
            let parts = self.pod(
                probe_args(&["sync", "--shard", &shard], true, true),
                false,
                workload.as_ref(),
            );
            let spec = self.pod_spec(
                &parts,
                PodExtra {
                    direct: false,
                    config: true,
                    serve: true,
                    key: true,
                    consensus_key: false,
                    tor: true,
                    geoip: false,
                    env: vec![env_from_label("POD_INDEX", "apps.kubernetes.io/pod-index")],
                },
            );
            let hash = self
                .config
                .hash_of(&["networks", "limits", "sync", "monitor"]);
            out.push(stateful_set::shards(
                &self.owner,
                &self.sync_name(),
                "synchronizer",
                if self.stopped { 0 } else { *shards },
                &self.metrics_name(),
                spec,
                template_annotations(&parts.overrides, Some(&hash)),
            ));
        }
        out
    }

    /// The api: its Deployment (pods on the read-only login), Service, Ingress and
    /// PodDisruptionBudget.
    fn api_children(&self) -> Vec<Desired> {
        let Some(a) = &self.api else {
            return vec![];
        };
        let name = self.api_name();
        // The listen address as an argument (over the config's `api.listen`, which the operator
        // owns): where the Service points, and visible in the pod spec.
        let listen = format!("0.0.0.0:{}", service::API_PORT);
        let parts = self.pod(
            probe_args(&["api", "--listen", &listen], true, true),
            false,
            a.workload.as_ref(),
        );
        // Straight to the server: the live tail LISTENs, which a transaction pooler cannot carry.
        let database = match &self.database {
            DatabaseRef::Postgres {
                ca,
                max_connections,
                ..
            } => DatabaseRef::Postgres {
                url: a.database.clone(),
                ca: ca.clone(),
                max_connections: *max_connections,
                pooler: None,
            },
            DatabaseRef::Sqlite => DatabaseRef::Sqlite,
        };
        let config_name = self.config_name();
        let mut spec = ProbePod {
            image: &self.image,
            args: parts.args.clone(),
            database: &database,
            schema: self.schema.as_str(),
            config_map: Some(config_name.as_str()),
            key: None,
            geoip: None,
            tor: None,
            relays: None,
            init: vec![],
            serve: true,
            resources: parts.resources.as_ref(),
            overrides: &parts.overrides,
            restart_policy: "Always",
            env: vec![],
        }
        .spec();
        if let Some(c) = spec.containers.first_mut() {
            c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
                name: Some("api".into()),
                container_port: service::API_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            });
        }
        let hash = self.config.hash_of(&["api"]);
        let replicas = if self.stopped { 0 } else { a.replicas };
        let mut out = vec![
            deployment::deployment(
                &self.owner,
                &name,
                "api",
                replicas,
                deployment::Rollout::Rolling,
                spec,
                template_annotations(&parts.overrides, Some(&hash)),
            ),
            service::api(&self.owner, &name, a.service_type.as_str(), a.port),
        ];
        if let Some(i) = &a.ingress {
            out.push(ingress::api(
                &self.owner,
                &name,
                &ingress::Route {
                    host: &i.host,
                    tls_secret: i.tls_secret_name.as_deref(),
                    class_name: i.class_name.as_deref(),
                    annotations: i.annotations.as_ref(),
                    service: &name,
                    port: a.port,
                },
            ));
        }
        if a.replicas > 1 {
            out.push(pdb::one_at_a_time(&self.owner, &name, "api"));
        }
        out
    }

    fn maintenance_children(&self) -> Vec<Desired> {
        self.maintenance
            .iter()
            .map(|m| {
                let parts = self.pod(
                    probe_args(&["maintain", m.step], true, false),
                    false,
                    self.maintenance_workload.as_ref(),
                );
                let spec = self.pod_spec(
                    &parts,
                    PodExtra {
                        config: true,
                        consensus_key: m.step == "consensus",
                        ..Default::default()
                    },
                );
                cron_job(
                    &self.owner,
                    &self.name(m.step),
                    m.step,
                    &Schedule {
                        cron: &m.schedule,
                        time_zone: self.time_zone.as_deref(),
                        suspend: m.suspend || self.stopped,
                    },
                    spec,
                    template_annotations(&parts.overrides, None),
                )
            })
            .collect()
    }
}

fn service_section_key(s: Service) -> &'static str {
    match s {
        Service::Finder => "finder",
        Service::Validator => "validator",
        Service::Monitor => "monitor",
    }
}

/// The varying parts of a probe pod.
struct ProbePodParts {
    args: Vec<String>,
    relays: bool,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    overrides: PodOverrides,
}

/// What a pod mounts besides the database.
#[derive(Default)]
struct PodExtra {
    /// Straight to the server, past any pooler (the migrations' lock is a session's).
    direct: bool,
    config: bool,
    serve: bool,
    key: bool,
    /// Mount the consensus key (where `key` would go) instead of the monitor's.
    consensus_key: bool,
    tor: bool,
    geoip: bool,
    env: Vec<k8s_openapi::api::core::v1::EnvVar>,
}
