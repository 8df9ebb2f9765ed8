//! The pipeline's connection pooler: PgBouncer in transaction mode, a Deployment and a Service
//! `<bd>-pooler` on port 5432, its `pgbouncer.ini` in a ConfigMap. It logs in to the server with
//! SCRAM as the database user, whose password it reads from a Secret at start (written to its
//! `auth_file` on an emptyDir: the ConfigMap holds no secret). In front of the managed database
//! it knows the server and the user; in front of an external one it knows only the URL Secret,
//! and an init container (`brotr-probe pooler-config`, the probe image) writes the
//! `[databases]` entry, the server TLS settings and the auth file from it, which the config
//! `%include`s. Its server connections are the part of the connection budget the pods that
//! bypass it leave; any number of clients share them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{CA_FILE, Image, RUN_AS, hardened, runtime_default, secret_env, secret_volume};
use super::{ChildKind, Desired, Owner, content_hash};

/// The port PgBouncer listens on (PostgreSQL's: clients need not know it is a pooler).
pub const PORT: i32 = 5432;
/// Clients the pooler accepts at most (monitors, services, shards, Jobs together).
pub const MAX_CLIENTS: i32 = 5000;
/// The component label of the pooler's objects.
const COMPONENT: &str = "pooler";
const CONFIG_DIR: &str = "/etc/pgbouncer";
const RUN_DIR: &str = "/run/pgbouncer";
/// Where the server's CA is mounted: the probe pods' path, so `PGSSLROOTCERT` is the same.
const DB_CA_DIR: &str = "/etc/brotr/db-ca";

/// The server behind the pooler.
#[derive(Debug, Clone, PartialEq)]
pub enum Server<'a> {
    /// The managed database: its Service host, the database and user every client logs in
    /// as, and the Secret and key of the user's password.
    Managed {
        host: String,
        database: &'a str,
        user: &'a str,
        password_secret: &'a str,
        password_key: &'a str,
    },
    /// An external server, known only by its URL Secret (and the CA its certificate is
    /// checked against): read at start by `brotr-probe pooler-config` from `probe_image`.
    External {
        url: &'a crate::crd::common::SecretKeyRef,
        ca: Option<&'a crate::crd::common::SecretKeyRef>,
        probe_image: &'a Image,
    },
}

/// What the pooler is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooler<'a> {
    /// `<bd>-pooler`: Deployment, Service and ConfigMap.
    pub name: &'a str,
    pub image: &'a str,
    pub server: Server<'a>,
    /// Server connections it holds at most.
    pub server_connections: i32,
    pub resources: Option<&'a ResourceRequirements>,
    pub overrides: &'a crate::crd::common::PodOverrides,
}

/// `pgbouncer.ini`.
pub fn config(p: &Pooler<'_>) -> String {
    let n = p.server_connections.max(1);
    // The managed server is known here; an external one's entry is written at start.
    let (databases, include) = match &p.server {
        Server::Managed { host, database, .. } => (
            format!("[databases]\n{database} = host={host} port=5432 dbname={database}\n\n"),
            String::new(),
        ),
        Server::External { .. } => (
            String::new(),
            format!(
                "; The server, its TLS and the [databases] entry, written at start from the \
                 URL Secret by brotr-probe pooler-config.\n%include {RUN_DIR}/server.ini\n"
            ),
        ),
    };
    format!(
        "; Rendered by brotr-operator; edits are overwritten.\n\
         {databases}\
         [pgbouncer]\n\
         listen_addr = 0.0.0.0\n\
         listen_port = {PORT}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {RUN_DIR}/userlist.txt\n\
         pool_mode = transaction\n\
         default_pool_size = {n}\n\
         max_db_connections = {n}\n\
         min_pool_size = 0\n\
         reserve_pool_size = 0\n\
         max_client_conn = {MAX_CLIENTS}\n\
         ; sqlx sends extra_float_digits; the probe sends no options, but a client might.\n\
         ignore_startup_parameters = extra_float_digits,options\n\
         server_reset_query =\n\
         server_idle_timeout = 300\n\
         query_wait_timeout = 60\n\
         log_connections = 0\n\
         log_disconnections = 0\n\
         stats_period = 300\n\
         {include}",
    )
}

pub fn config_map(owner: &Owner, p: &Pooler<'_>) -> Desired {
    let cm = ConfigMap {
        metadata: owner.meta(p.name, COMPONENT),
        data: Some(BTreeMap::from([("pgbouncer.ini".to_owned(), config(p))])),
        ..Default::default()
    };
    Desired::new(ChildKind::ConfigMap, &cm)
}

pub fn service(owner: &Owner, p: &Pooler<'_>) -> Desired {
    super::postgres::postgres_port_service(owner, p.name, COMPONENT, "pgbouncer")
}

/// The pod's command. In front of the managed database: the auth file from the environment
/// (umask 077: readable by the pooler only), then PgBouncer in the foreground. In front of an
/// external one the init container wrote it: PgBouncer only.
pub fn command(server: &Server<'_>) -> Vec<String> {
    match server {
        Server::Managed { .. } => vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "umask 077 && printf '\"%s\" \"%s\"\\n' \"$PGBOUNCER_USER\" \"$PGBOUNCER_PASSWORD\" \
                 > {RUN_DIR}/userlist.txt && exec pgbouncer {CONFIG_DIR}/pgbouncer.ini"
            ),
        ],
        Server::External { .. } => vec!["pgbouncer".into(), format!("{CONFIG_DIR}/pgbouncer.ini")],
    }
}

pub fn deployment(owner: &Owner, p: &Pooler<'_>) -> Desired {
    let tcp = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("pgbouncer".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    let q = |s: &str| Quantity(s.into());
    let resources = p.resources.cloned().unwrap_or(ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), q("10m")),
            ("memory".into(), q("16Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), q("64Mi"))])),
        ..Default::default()
    });
    let run_mount = VolumeMount {
        name: "run".into(),
        mount_path: RUN_DIR.into(),
        ..Default::default()
    };
    let ca_mount = VolumeMount {
        name: "db-ca".into(),
        mount_path: DB_CA_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut env = Vec::new();
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        run_mount.clone(),
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: p.name.into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "run".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(q("1Mi")),
            }),
            ..Default::default()
        },
    ];
    let mut init = None;
    match &p.server {
        Server::Managed {
            user,
            password_secret,
            password_key,
            ..
        } => {
            env.push(EnvVar {
                name: "PGBOUNCER_USER".into(),
                value: Some((*user).into()),
                ..Default::default()
            });
            env.push(secret_env(
                "PGBOUNCER_PASSWORD",
                &crate::crd::common::SecretKeyRef {
                    name: (*password_secret).into(),
                    key: (*password_key).into(),
                },
            ));
        }
        Server::External {
            url,
            ca,
            probe_image,
        } => {
            let mut init_env = vec![secret_env("DATABASE_URL", url)];
            let mut init_mounts = vec![run_mount];
            if let Some(ca) = ca {
                volumes.push(secret_volume("db-ca", ca, "ca.crt"));
                init_env.push(EnvVar {
                    name: "PGSSLROOTCERT".into(),
                    value: Some(CA_FILE.into()),
                    ..Default::default()
                });
                init_mounts.push(ca_mount.clone());
                mounts.push(ca_mount);
            }
            init = Some(Container {
                name: "pooler-config".into(),
                image: Some(probe_image.reference.clone()),
                image_pull_policy: probe_image.pull_policy.clone(),
                args: Some(vec![
                    "--log-format".into(),
                    "json".into(),
                    "pooler-config".into(),
                    "--out".into(),
                    RUN_DIR.into(),
                ]),
                env: Some(init_env),
                volume_mounts: Some(init_mounts),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".into(), q("10m")),
                        ("memory".into(), q("16Mi")),
                    ])),
                    limits: Some(BTreeMap::from([("memory".into(), q("64Mi"))])),
                    ..Default::default()
                }),
                security_context: Some(hardened()),
                ..Default::default()
            });
        }
    }
    let container = Container {
        name: "pgbouncer".into(),
        image: Some(p.image.into()),
        command: Some(command(&p.server)),
        env: Some(env).filter(|e| !e.is_empty()),
        ports: Some(vec![ContainerPort {
            name: Some("pgbouncer".into()),
            container_port: PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(tcp.clone()),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(10),
            ..tcp
        }),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        security_context: Some(hardened()),
        ..Default::default()
    };
    let o = p.overrides;
    let pod = PodSpec {
        containers: vec![container],
        init_containers: init.map(|c| vec![c]),
        volumes: Some(volumes),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            // The CA's Secret volume is readable by the group.
            fs_group: Some(RUN_AS),
            run_as_non_root: Some(true),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        node_selector: o.node_selector.clone(),
        tolerations: o.tolerations.clone(),
        affinity: o.affinity.clone(),
        image_pull_secrets: o.image_pull_secrets.clone(),
        priority_class_name: o.priority_class_name.clone(),
        ..Default::default()
    };
    // A new config rolls the pod (PgBouncer reads its file at start).
    let mut annotations = o.annotations.clone().unwrap_or_default();
    annotations.insert("brotr.dev/config-hash".into(), content_hash(&config(p)));
    super::deployment::deployment(
        owner,
        p.name,
        COMPONENT,
        1,
        super::deployment::Rollout::Rolling,
        pod,
        annotations,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            kind: "BrotrDeployment",
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
        }
    }

    fn pooler(overrides: &crate::crd::common::PodOverrides) -> Pooler<'_> {
        Pooler {
            name: "p-pooler",
            image: "ghcr.io/cloudnative-pg/pgbouncer:1.18.0",
            server: Server::Managed {
                host: "p-postgres.ns.svc".into(),
                database: "brotr",
                user: "brotr",
                password_secret: "p-postgres",
                password_key: "password",
            },
            server_connections: 56,
            resources: None,
            overrides,
        }
    }

    #[test]
    fn the_config_pools_in_transaction_mode_within_the_budget() {
        let o = Default::default();
        let ini = config(&pooler(&o));
        for line in [
            "brotr = host=p-postgres.ns.svc port=5432 dbname=brotr",
            "pool_mode = transaction",
            "default_pool_size = 56",
            "max_db_connections = 56",
            "reserve_pool_size = 0",
            "auth_type = scram-sha-256",
            "ignore_startup_parameters = extra_float_digits,options",
            "listen_port = 5432",
        ] {
            assert!(ini.lines().any(|l| l == line), "{line:?} in\n{ini}");
        }
        assert!(!ini.contains("password"), "no secret in the ConfigMap");
    }

    #[test]
    fn the_pod_reads_its_password_from_the_secret_and_runs_hardened() {
        let o = Default::default();
        let d = deployment(&owner(), &pooler(&o));
        let v = &d.object;
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "ghcr.io/cloudnative-pg/pgbouncer:1.18.0");
        let env = c["env"].as_array().unwrap();
        let pw = env
            .iter()
            .find(|e| e["name"] == "PGBOUNCER_PASSWORD")
            .unwrap();
        assert!(pw.get("value").is_none());
        assert_eq!(pw["valueFrom"]["secretKeyRef"]["name"], "p-postgres");
        assert_eq!(pw["valueFrom"]["secretKeyRef"]["key"], "password");
        let cmd = c["command"][2].as_str().unwrap();
        assert!(
            cmd.contains("exec pgbouncer /etc/pgbouncer/pgbouncer.ini"),
            "{cmd}"
        );
        assert!(!cmd.contains("brotr:"), "no password in the command");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(
            v["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
        assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], "pgbouncer");
        // Another budget, another config: the pod rolls.
        let mut q = pooler(&o);
        q.server_connections = 24;
        let d2 = deployment(&owner(), &q);
        let hash = |d: &Desired| {
            d.object["spec"]["template"]["metadata"]["annotations"]["brotr.dev/config-hash"].clone()
        };
        assert_ne!(hash(&d), hash(&d2));
    }

    #[test]
    fn the_service_points_at_the_pooler_on_postgres_port() {
        let o = Default::default();
        let s = service(&owner(), &pooler(&o));
        assert_eq!(s.object["spec"]["ports"][0]["port"], 5432);
        assert_eq!(
            s.object["spec"]["selector"]["app.kubernetes.io/component"],
            "pooler"
        );
    }

    #[test]
    fn in_front_of_an_external_server_an_init_container_writes_the_server_from_its_secret() {
        use crate::crd::common::SecretKeyRef;
        let o = Default::default();
        let url = SecretKeyRef {
            name: "db".into(),
            key: "url".into(),
        };
        let ca = SecretKeyRef {
            name: "db-ca".into(),
            key: "ca.crt".into(),
        };
        let probe = Image {
            reference: "ghcr.io/brotr-dev/brotr-probe:1".into(),
            pull_policy: None,
        };
        let p = Pooler {
            server: Server::External {
                url: &url,
                ca: Some(&ca),
                probe_image: &probe,
            },
            ..pooler(&o)
        };
        let ini = config(&p);
        assert!(
            !ini.lines().any(|l| l == "[databases]"),
            "written at start:\n{ini}"
        );
        assert!(
            ini.trim_end()
                .ends_with("%include /run/pgbouncer/server.ini"),
            "the include closes the [pgbouncer] section (its server_tls_* lines):\n{ini}"
        );
        for line in [
            "pool_mode = transaction",
            "auth_file = /run/pgbouncer/userlist.txt",
        ] {
            assert!(ini.lines().any(|l| l == line), "{line:?} in\n{ini}");
        }
        let d = deployment(&owner(), &p);
        let spec = &d.object["spec"]["template"]["spec"];
        let init = &spec["initContainers"][0];
        assert_eq!(init["image"], "ghcr.io/brotr-dev/brotr-probe:1");
        assert_eq!(
            init["args"],
            serde_json::json!([
                "--log-format",
                "json",
                "pooler-config",
                "--out",
                "/run/pgbouncer"
            ])
        );
        let env = init["env"].as_array().unwrap();
        let db = env.iter().find(|e| e["name"] == "DATABASE_URL").unwrap();
        assert!(db.get("value").is_none(), "from the Secret only");
        assert_eq!(db["valueFrom"]["secretKeyRef"]["name"], "db");
        assert!(
            env.iter()
                .any(|e| e["name"] == "PGSSLROOTCERT" && e["value"] == CA_FILE)
        );
        assert_eq!(init["securityContext"]["readOnlyRootFilesystem"], true);
        let c = &spec["containers"][0];
        assert_eq!(
            c["command"],
            serde_json::json!(["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"])
        );
        assert!(c.get("env").is_none(), "no password in the pooler's env");
        let mounts = |c: &serde_json::Value| -> Vec<String> {
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["mountPath"].as_str().unwrap().to_owned())
                .collect()
        };
        for want in ["/run/pgbouncer", "/etc/brotr/db-ca"] {
            assert!(mounts(init).contains(&want.to_owned()), "{want}");
            assert!(mounts(c).contains(&want.to_owned()), "{want}");
        }
        let vols = spec["volumes"].as_array().unwrap();
        assert!(vols.iter().any(|v| v["secret"]["secretName"] == "db-ca"));
        assert_eq!(spec["securityContext"]["fsGroup"], RUN_AS);
    }
}
