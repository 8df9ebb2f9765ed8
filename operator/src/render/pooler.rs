//! The managed database's connection pooler: PgBouncer in transaction mode, a Deployment and a
//! Service `<bd>-pooler` on port 5432, its `pgbouncer.ini` in a ConfigMap. It logs in to the
//! server with SCRAM as the database user, whose password it reads from the database's Secret at
//! start (written to its `auth_file` on an emptyDir: the ConfigMap holds no secret). Its server
//! connections are the part of the connection budget the pods that bypass it leave; any number
//! of clients share them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, PodSecurityContext, PodSpec, Probe, ResourceRequirements, SecretKeySelector,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{RUN_AS, hardened, runtime_default};
use super::{ChildKind, Desired, Owner, content_hash};

/// The port PgBouncer listens on (PostgreSQL's: clients need not know it is a pooler).
pub const PORT: i32 = 5432;
/// Clients the pooler accepts at most (monitors, services, shards, Jobs together).
pub const MAX_CLIENTS: i32 = 5000;
/// The component label of the pooler's objects.
const COMPONENT: &str = "pooler";
const CONFIG_DIR: &str = "/etc/pgbouncer";
const RUN_DIR: &str = "/run/pgbouncer";

/// What the pooler is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooler<'a> {
    /// `<bd>-pooler`: Deployment, Service and ConfigMap.
    pub name: &'a str,
    pub image: &'a str,
    /// The server: the managed database's Service host.
    pub server_host: String,
    /// The database and the user every client logs in as.
    pub database: &'a str,
    pub user: &'a str,
    /// The Secret and key of the user's password.
    pub password_secret: &'a str,
    pub password_key: &'a str,
    /// Server connections it holds at most.
    pub server_connections: i32,
    pub resources: Option<&'a ResourceRequirements>,
    pub overrides: &'a crate::crd::common::PodOverrides,
}

/// `pgbouncer.ini`.
pub fn config(p: &Pooler<'_>) -> String {
    let n = p.server_connections.max(1);
    format!(
        "; Rendered by brotr-operator; edits are overwritten.\n\
         [databases]\n\
         {db} = host={host} port=5432 dbname={db}\n\
         \n\
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
         stats_period = 300\n",
        db = p.database,
        host = p.server_host,
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

/// The pod's command: the auth file from the environment (umask 077: readable by the pooler
/// only), then PgBouncer in the foreground.
pub fn command() -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "umask 077 && printf '\"%s\" \"%s\"\\n' \"$PGBOUNCER_USER\" \"$PGBOUNCER_PASSWORD\" \
             > {RUN_DIR}/userlist.txt && exec pgbouncer {CONFIG_DIR}/pgbouncer.ini"
        ),
    ]
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
    let container = Container {
        name: "pgbouncer".into(),
        image: Some(p.image.into()),
        command: Some(command()),
        env: Some(vec![
            EnvVar {
                name: "PGBOUNCER_USER".into(),
                value: Some(p.user.into()),
                ..Default::default()
            },
            EnvVar {
                name: "PGBOUNCER_PASSWORD".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: p.password_secret.into(),
                        key: p.password_key.into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
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
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "run".into(),
                mount_path: RUN_DIR.into(),
                ..Default::default()
            },
        ]),
        security_context: Some(hardened()),
        ..Default::default()
    };
    let o = p.overrides;
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![
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
        ]),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
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
            server_host: "p-postgres.ns.svc".into(),
            database: "brotr",
            user: "brotr",
            password_secret: "p-postgres",
            password_key: "password",
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
}
