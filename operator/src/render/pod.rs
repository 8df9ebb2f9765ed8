//! The pod every probe workload runs in: one hardened `brotr-probe` container, its config, key,
//! database credentials, GeoIP databases, and a native Tor sidecar when Tor has no proxy.
//!
//! Hardened by default: non-root, read-only root filesystem, every capability dropped, the
//! RuntimeDefault seccomp profile, no service-account token, no service links.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ImageVolumeSource, KeyToPath, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::common::{GeoIpSource, PodOverrides, SecretKeyRef};

/// Where the probe's config file is mounted.
pub const CONFIG_FILE: &str = "/etc/brotr/config/probe.yaml";
/// Where the Nostr key is mounted.
pub const KEY_FILE: &str = "/etc/brotr/key/key";
/// Where the GeoIP databases are mounted.
pub const GEOIP_DIR: &str = "/var/lib/brotr/geoip";
/// Where the database CA certificate is mounted.
pub const CA_FILE: &str = "/etc/brotr/db-ca/ca.crt";
/// Where a relay list (seeds, monitor targets) is mounted.
pub const RELAYS_FILE: &str = "/etc/brotr/relays/relays.txt";
/// The embedded SQLite database of a monitor without a BrotrDeployment.
pub const SQLITE_FILE: &str = "/var/lib/brotr/data/brotr.db";
/// The probe's metrics/health port.
pub const METRICS_PORT: i32 = 9090;
/// The SOCKS port of the Tor sidecar.
pub const TOR_PORT: i32 = 9050;
/// The proxy URL the probe uses with the sidecar (names resolved by Tor).
pub const TOR_PROXY_URL: &str = "socks5h://127.0.0.1:9050";
/// User and group every container runs as (no root anywhere).
pub const RUN_AS: i64 = 65532;

/// A container image, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub reference: String,
    pub pull_policy: Option<String>,
}

/// The database a pod talks to.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseRef {
    /// PostgreSQL: the URL from a Secret (never copied), an optional CA.
    Postgres {
        url: SecretKeyRef,
        ca: Option<SecretKeyRef>,
        /// The pod's share of the connection budget (`BROTR_DB_MAX_CONNECTIONS`).
        max_connections: Option<i32>,
        /// The pooler the pod connects through instead of `url`, in transaction mode.
        pooler: Option<Box<PoolerRef>>,
    },
    /// An SQLite file in an emptyDir (a monitor of a static list).
    Sqlite,
}

/// A connection pooler in transaction mode between the pods and the server.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolerRef {
    /// One the user runs: its URL from a Secret.
    Url(SecretKeyRef),
    /// The operator's PgBouncer in front of an external server, at `HOST:PORT`: the server's
    /// URL Secret, pointed there by the probe (`--db-via`).
    Via(String),
    /// The managed database's PgBouncer: the URL `postgres://<user>:<password>@<host>:5432/<db>`,
    /// composed in the pod from the password's Secret (alphanumeric: nothing to escape).
    Managed {
        host: String,
        user: String,
        database: String,
        password: SecretKeyRef,
    },
}

/// The env var the managed pooler's password is read into, for `DATABASE_URL` to use.
pub const POOLER_PASSWORD_ENV: &str = "BROTR_DATABASE_PASSWORD";

impl DatabaseRef {
    /// The same database, reached directly (the migration Job, the api).
    pub fn direct(&self) -> DatabaseRef {
        match self {
            DatabaseRef::Postgres {
                url,
                ca,
                max_connections,
                ..
            } => DatabaseRef::Postgres {
                url: url.clone(),
                ca: ca.clone(),
                max_connections: *max_connections,
                pooler: None,
            },
            DatabaseRef::Sqlite => DatabaseRef::Sqlite,
        }
    }
}

/// The Tor sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct TorSidecar {
    pub image: String,
    pub resources: Option<ResourceRequirements>,
}

/// Everything a probe pod needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePod<'a> {
    pub image: &'a Image,
    /// `brotr-probe` arguments (the subcommand first).
    pub args: Vec<String>,
    pub database: &'a DatabaseRef,
    /// `full` or `lite`.
    pub schema: &'a str,
    /// ConfigMap holding `probe.yaml`, if the command reads it.
    pub config_map: Option<&'a str>,
    /// The Nostr key.
    pub key: Option<&'a SecretKeyRef>,
    pub geoip: Option<&'a GeoIpSource>,
    pub tor: Option<&'a TorSidecar>,
    /// A ConfigMap key mounted as [`RELAYS_FILE`].
    pub relays: Option<(&'a str, &'a str)>,
    /// Commands run before the main one, in order (each a `brotr-probe` argument list).
    pub init: Vec<(String, Vec<String>)>,
    /// Serve metrics and health on [`METRICS_PORT`] with liveness/readiness probes
    /// (long-running services).
    pub serve: bool,
    pub resources: Option<&'a ResourceRequirements>,
    pub overrides: &'a PodOverrides,
    pub restart_policy: &'a str,
    /// Extra environment (e.g. the shard index).
    pub env: Vec<EnvVar>,
}

impl ProbePod<'_> {
    pub fn spec(&self) -> PodSpec {
        let mut volumes = vec![empty_dir("tmp")];
        let mut mounts = vec![mount("tmp", "/tmp", false)];
        if let Some(cm) = self.config_map {
            volumes.push(Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: cm.into(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(mount("config", "/etc/brotr/config", true));
        }
        if let Some(key) = self.key {
            volumes.push(secret_volume("key", key, "key"));
            mounts.push(mount("key", "/etc/brotr/key", true));
        }
        if let DatabaseRef::Postgres { ca: Some(ca), .. } = self.database {
            volumes.push(secret_volume("db-ca", ca, "ca.crt"));
            mounts.push(mount("db-ca", "/etc/brotr/db-ca", true));
        }
        if *self.database == DatabaseRef::Sqlite {
            volumes.push(empty_dir("data"));
            mounts.push(mount("data", "/var/lib/brotr/data", false));
        }
        if let Some(g) = self.geoip {
            volumes.push(geoip_volume(g));
            mounts.push(mount("geoip", GEOIP_DIR, true));
        }
        if let Some((cm, key)) = self.relays {
            volumes.push(Volume {
                name: "relays".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: cm.into(),
                    items: Some(vec![KeyToPath {
                        key: key.into(),
                        path: "relays.txt".into(),
                        mode: None,
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(mount("relays", "/etc/brotr/relays", true));
        }

        let env = self.env_vars();
        let probe = |name: &str, args: &[String]| Container {
            name: name.into(),
            image: Some(self.image.reference.clone()),
            image_pull_policy: self.image.pull_policy.clone(),
            args: Some(args.to_vec()),
            env: Some(env.clone()),
            volume_mounts: Some(mounts.clone()),
            resources: self.resources.cloned(),
            security_context: Some(hardened()),
            ..Default::default()
        };

        let mut init: Vec<Container> = Vec::new();
        if let Some(tor) = self.tor {
            volumes.push(empty_dir("tor-data"));
            init.push(tor_sidecar(tor));
        }
        init.extend(self.init.iter().map(|(name, args)| probe(name, args)));

        let mut main = probe("probe", &self.args);
        if self.serve {
            main.ports = Some(vec![ContainerPort {
                name: Some("metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]);
            main.liveness_probe = Some(http_probe("/healthz", 10, 6));
            main.readiness_probe = Some(http_probe("/readyz", 5, 3));
        }

        let o = self.overrides;
        PodSpec {
            containers: vec![main],
            init_containers: (!init.is_empty()).then_some(init),
            volumes: Some(volumes),
            restart_policy: Some(self.restart_policy.into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(30),
            node_selector: o.node_selector.clone(),
            tolerations: o.tolerations.clone(),
            affinity: o.affinity.clone(),
            image_pull_secrets: o.image_pull_secrets.clone(),
            service_account_name: o.service_account_name.clone(),
            priority_class_name: o.priority_class_name.clone(),
            ..Default::default()
        }
    }

    fn env_vars(&self) -> Vec<EnvVar> {
        let mut env = vec![value("BROTR_SCHEMA", self.schema)];
        match self.database {
            DatabaseRef::Postgres {
                url,
                ca,
                max_connections,
                pooler,
            } => {
                match pooler.as_deref() {
                    None => env.push(secret_env("DATABASE_URL", url)),
                    Some(PoolerRef::Url(p)) => env.push(secret_env("DATABASE_URL", p)),
                    Some(PoolerRef::Via(addr)) => {
                        env.push(secret_env("DATABASE_URL", url));
                        env.push(value("BROTR_DB_VIA", addr));
                    }
                    Some(PoolerRef::Managed {
                        host,
                        user,
                        database,
                        password,
                    }) => {
                        // Kubernetes expands $(VAR) of an earlier variable.
                        env.push(secret_env(POOLER_PASSWORD_ENV, password));
                        env.push(value(
                            "DATABASE_URL",
                            &format!(
                                "postgres://{user}:$({POOLER_PASSWORD_ENV})@{host}:5432/{database}"
                            ),
                        ));
                    }
                }
                if pooler.is_some() {
                    env.push(value("BROTR_DB_POOLER", "transaction"));
                }
                if ca.is_some() {
                    env.push(value("PGSSLROOTCERT", CA_FILE));
                }
                if let Some(n) = max_connections {
                    env.push(value("BROTR_DB_MAX_CONNECTIONS", &n.to_string()));
                }
            }
            DatabaseRef::Sqlite => env.push(value("DATABASE_URL", SQLITE_FILE)),
        }
        env.extend(self.env.iter().cloned());
        env
    }
}

/// The standard arguments of every probe command: JSON logs, the config file, metrics.
pub fn probe_args(command: &[&str], config: bool, serve: bool) -> Vec<String> {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    args.extend(["--log-format".into(), "json".into()]);
    if config {
        args.extend(["--config".into(), CONFIG_FILE.into()]);
    }
    if serve {
        args.extend(["--metrics-addr".into(), format!("0.0.0.0:{METRICS_PORT}")]);
    }
    args
}

/// An environment variable from the pod's own label (`apps.kubernetes.io/pod-index` for the
/// synchronizer's shard).
pub fn env_from_label(name: &str, label: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.labels['{label}']"),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn value(name: &str, v: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(v.into()),
        ..Default::default()
    }
}

/// An environment variable with a plain value.
pub fn plain_env(name: &str, v: &str) -> EnvVar {
    value(name, v)
}

/// An environment variable from a Secret's key (required: the pod waits for it).
pub fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

pub(crate) fn secret_volume(name: &str, r: &SecretKeyRef, path: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(r.name.clone()),
            items: Some(vec![KeyToPath {
                key: r.key.clone(),
                path: path.into(),
                mode: None,
            }]),
            // Readable by the pod's group only.
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

fn geoip_volume(g: &GeoIpSource) -> Volume {
    let mut v = Volume {
        name: "geoip".into(),
        ..Default::default()
    };
    if let Some(pvc) = &g.pvc {
        v.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: pvc.claim_name.clone(),
            read_only: Some(true),
        });
    } else if let Some(image) = &g.image {
        v.image = Some(ImageVolumeSource {
            reference: Some(image.reference.clone()),
            pull_policy: image.pull_policy.map(|p| p.as_str().to_owned()),
        });
    }
    v
}

/// The probe's GeoIP paths for a source (`monitor.geoip.cityDb`/`asnDb`).
pub fn geoip_paths(g: &GeoIpSource) -> (String, String) {
    (
        format!(
            "{GEOIP_DIR}/{}",
            g.city_file.as_deref().unwrap_or("GeoLite2-City.mmdb")
        ),
        format!(
            "{GEOIP_DIR}/{}",
            g.asn_file.as_deref().unwrap_or("GeoLite2-ASN.mmdb")
        ),
    )
}

pub(crate) fn hardened() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

pub(crate) fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

/// A native sidecar (an init container that keeps running): it starts before the probe, the
/// probe starts once its SOCKS port answers, and Job pods still complete when the probe exits.
fn tor_sidecar(tor: &TorSidecar) -> Container {
    Container {
        name: "tor".into(),
        image: Some(tor.image.clone()),
        restart_policy: Some("Always".into()),
        ports: Some(vec![ContainerPort {
            name: Some("socks".into()),
            container_port: TOR_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        startup_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(TOR_PORT),
                host: None,
            }),
            period_seconds: Some(2),
            failure_threshold: Some(90),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("tmp", "/tmp", false),
            mount("tor-data", "/var/lib/tor", false),
        ]),
        resources: tor.resources.clone(),
        security_context: Some(hardened()),
        ..Default::default()
    }
}

/// Pod-template annotations: the user's, and the hash of what the pod reads (if it reads the
/// config), so a change of it restarts the pod.
pub fn template_annotations(
    overrides: &PodOverrides,
    config_hash: Option<&str>,
) -> BTreeMap<String, String> {
    let mut a = overrides.annotations.clone().unwrap_or_default();
    if let Some(h) = config_hash {
        a.insert("brotr.dev/config-hash".into(), h.into());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::common::PvcSource;

    fn pod<'a>(image: &'a Image, db: &'a DatabaseRef, overrides: &'a PodOverrides) -> ProbePod<'a> {
        ProbePod {
            image,
            args: probe_args(&["validate"], true, true),
            database: db,
            schema: "full",
            config_map: Some("bb-config"),
            key: None,
            geoip: None,
            tor: None,
            relays: None,
            init: vec![],
            serve: true,
            resources: None,
            overrides,
            restart_policy: "Always",
            env: vec![],
        }
    }

    fn image() -> Image {
        Image {
            reference: "r/probe:1".into(),
            pull_policy: None,
        }
    }

    #[test]
    fn every_container_is_hardened_and_no_token_is_mounted() {
        let (img, o) = (image(), PodOverrides::default());
        let db = DatabaseRef::Postgres {
            url: SecretKeyRef {
                name: "pg".into(),
                key: "uri".into(),
            },
            ca: None,
            max_connections: None,
            pooler: None,
        };
        let tor = TorSidecar {
            image: "tor:1".into(),
            resources: None,
        };
        let mut p = pod(&img, &db, &o);
        p.tor = Some(&tor);
        let spec = p.spec();
        assert_eq!(spec.automount_service_account_token, Some(false));
        let psc = spec.security_context.as_ref().unwrap();
        assert_eq!(
            (psc.run_as_non_root, psc.run_as_user),
            (Some(true), Some(RUN_AS))
        );
        let all: Vec<&Container> = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .collect();
        assert_eq!(all.len(), 2);
        for c in all {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop,
                Some(vec!["ALL".into()])
            );
            assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        }
    }

    #[test]
    fn behind_the_managed_pooler_the_url_is_composed_from_the_password_secret() {
        let (img, o) = (image(), PodOverrides::default());
        let db = DatabaseRef::Postgres {
            url: SecretKeyRef {
                name: "p-postgres".into(),
                key: "uri".into(),
            },
            ca: None,
            max_connections: Some(1),
            pooler: Some(Box::new(PoolerRef::Managed {
                host: "p-pooler.ns.svc".into(),
                user: "brotr".into(),
                database: "brotr".into(),
                password: SecretKeyRef {
                    name: "p-postgres".into(),
                    key: "password".into(),
                },
            })),
        };
        let env = pod(&img, &db, &o).spec().containers[0].env.clone().unwrap();
        let at = |name: &str| env.iter().position(|e| e.name == name).unwrap();
        let pw = &env[at(POOLER_PASSWORD_ENV)];
        assert_eq!(
            pw.value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .key,
            "password"
        );
        // Declared before the URL that expands it.
        assert!(at(POOLER_PASSWORD_ENV) < at("DATABASE_URL"));
        assert_eq!(
            env[at("DATABASE_URL")].value.as_deref(),
            Some("postgres://brotr:$(BROTR_DATABASE_PASSWORD)@p-pooler.ns.svc:5432/brotr")
        );
        assert_eq!(
            env[at("BROTR_DB_POOLER")].value.as_deref(),
            Some("transaction")
        );
        // The same database straight to the server: the Secret's URL, no pooler flag.
        let direct = db.direct();
        let env = pod(&img, &direct, &o).spec().containers[0]
            .env
            .clone()
            .unwrap();
        assert!(
            env.iter()
                .all(|e| e.name != "BROTR_DB_POOLER" && e.name != POOLER_PASSWORD_ENV)
        );
        let url = env.iter().find(|e| e.name == "DATABASE_URL").unwrap();
        assert_eq!(
            url.value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "p-postgres"
        );
    }

    #[test]
    fn the_database_url_comes_from_the_secret_and_is_never_a_value() {
        let (img, o) = (image(), PodOverrides::default());
        let db = DatabaseRef::Postgres {
            url: SecretKeyRef {
                name: "pg".into(),
                key: "uri".into(),
            },
            ca: Some(SecretKeyRef {
                name: "pg-ca".into(),
                key: "ca.crt".into(),
            }),
            max_connections: Some(3),
            pooler: None,
        };
        let spec = pod(&img, &db, &o).spec();
        let env = spec.containers[0].env.clone().unwrap();
        let url = env.iter().find(|e| e.name == "DATABASE_URL").unwrap();
        assert!(url.value.is_none());
        let sel = url
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("pg", "uri"));
        assert!(
            env.iter()
                .any(|e| e.name == "PGSSLROOTCERT" && e.value.as_deref() == Some(CA_FILE))
        );
        assert!(spec.volumes.unwrap().iter().any(|v| v.name == "db-ca"));
        // The pod's share of the connection budget.
        assert!(
            env.iter()
                .any(|e| e.name == "BROTR_DB_MAX_CONNECTIONS" && e.value.as_deref() == Some("3"))
        );
    }

    #[test]
    fn the_tor_sidecar_is_native_and_gates_the_probe_on_its_port() {
        let (img, o) = (image(), PodOverrides::default());
        let tor = TorSidecar {
            image: "tor:1".into(),
            resources: None,
        };
        let mut p = pod(&img, &DatabaseRef::Sqlite, &o);
        p.tor = Some(&tor);
        p.init = vec![("migrate".into(), vec!["migrate".into()])];
        let spec = p.spec();
        let init = spec.init_containers.unwrap();
        assert_eq!(init[0].name, "tor", "the sidecar starts first");
        assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
        let port = &init[0]
            .startup_probe
            .as_ref()
            .unwrap()
            .tcp_socket
            .as_ref()
            .unwrap()
            .port;
        assert_eq!(*port, IntOrString::Int(TOR_PORT));
        assert_eq!(init[1].name, "migrate");
        assert_eq!(init[1].restart_policy, None);
    }

    #[test]
    fn key_geoip_and_overrides_reach_the_pod() {
        let img = image();
        let o = PodOverrides {
            node_selector: Some(BTreeMap::from([("pool".into(), "nostr".into())])),
            service_account_name: Some("sa".into()),
            ..Default::default()
        };
        let key = SecretKeyRef {
            name: "k".into(),
            key: "nsec".into(),
        };
        let g = GeoIpSource {
            pvc: Some(PvcSource {
                claim_name: "geo".into(),
            }),
            image: None,
            city_file: None,
            asn_file: Some("asn.mmdb".into()),
        };
        let mut p = pod(&img, &DatabaseRef::Sqlite, &o);
        p.key = Some(&key);
        p.geoip = Some(&g);
        let spec = p.spec();
        assert_eq!(spec.node_selector.unwrap()["pool"], "nostr");
        assert_eq!(spec.service_account_name.as_deref(), Some("sa"));
        let vols = spec.volumes.unwrap();
        let k = vols.iter().find(|v| v.name == "key").unwrap();
        let items = k.secret.as_ref().unwrap().items.clone().unwrap();
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("nsec", "key")
        );
        let geo = vols.iter().find(|v| v.name == "geoip").unwrap();
        assert_eq!(
            geo.persistent_volume_claim.as_ref().unwrap().read_only,
            Some(true)
        );
        assert_eq!(
            geoip_paths(&g),
            (
                format!("{GEOIP_DIR}/GeoLite2-City.mmdb"),
                format!("{GEOIP_DIR}/asn.mmdb")
            )
        );
        let env = spec.containers[0].env.clone().unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "DATABASE_URL" && e.value.as_deref() == Some(SQLITE_FILE))
        );
    }
}
