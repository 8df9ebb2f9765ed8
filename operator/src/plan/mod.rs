//! Validated plans: a custom resource checked and resolved (images, defaults, the probe's config
//! file) into what its children are made of. Pure: the controllers fetch what a plan needs
//! (referenced objects, the state of the migration Job) and apply what it renders.

pub mod brotr_deployment;
pub mod budget;
pub mod relay_monitor;

use crate::crd::common::{ImageSpec, PodOverrides, TorSidecarSpec, WorkloadSpec};
use crate::render::pod::{Image, TorSidecar};

/// The operator's defaults for what a custom resource leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Probe image repository.
    pub probe_repository: String,
    /// Probe image tag (the operator's own version).
    pub probe_tag: String,
    /// Tor client image of the sidecar.
    pub tor_image: String,
    /// PostgreSQL image of the managed database.
    pub postgres_image: String,
    /// PgBouncer image of the managed database's pooler.
    pub pgbouncer_image: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            probe_repository: "ghcr.io/brotr-dev/brotr-probe".into(),
            probe_tag: env!("CARGO_PKG_VERSION").into(),
            tor_image: "docker.io/fphammerle/tor-proxy:latest".into(),
            postgres_image: "docker.io/library/postgres:17".into(),
            // CloudNativePG's PgBouncer image, at the version the tests run (Debian's 1.18.0).
            pgbouncer_image: "ghcr.io/cloudnative-pg/pgbouncer:1.18.0".into(),
        }
    }
}

impl Defaults {
    /// The image a spec asks for, with the operator's defaults filled in.
    pub fn probe_image(&self, spec: Option<&ImageSpec>) -> Image {
        let spec = spec.cloned().unwrap_or_default();
        let repo = spec
            .repository
            .unwrap_or_else(|| self.probe_repository.clone());
        let reference = match (&spec.digest, &spec.tag) {
            (Some(d), _) => format!("{repo}@{d}"),
            (None, Some(t)) => format!("{repo}:{t}"),
            (None, None) => format!("{repo}:{}", self.probe_tag),
        };
        Image {
            reference,
            pull_policy: spec.pull_policy.map(|p| p.as_str().to_owned()),
        }
    }

    /// The Tor sidecar, when `networks.tor` is enabled without a proxy.
    pub fn tor_sidecar(&self, spec: Option<&TorSidecarSpec>) -> TorSidecar {
        TorSidecar {
            image: spec
                .and_then(|s| s.image.clone())
                .unwrap_or_else(|| self.tor_image.clone()),
            resources: spec.and_then(|s| s.resources.clone()),
        }
    }
}

/// A spec the probe would refuse, or that cannot be rendered: it needs an edit, not a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// Pod overrides of a workload: the resource's, then the workload's own on top.
pub fn overrides(top: Option<&PodOverrides>, workload: Option<&WorkloadSpec>) -> PodOverrides {
    top.cloned()
        .unwrap_or_default()
        .merged(workload.and_then(|w| w.pod_overrides.as_ref()))
}

/// Whether a networks section enables Tor without naming a proxy (the sidecar's case).
pub fn wants_tor_sidecar(networks: Option<&serde_json::Map<String, serde_json::Value>>) -> bool {
    let tor = networks.and_then(|n| n.get("tor"));
    let enabled = tor
        .and_then(|t| t.get("enabled"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    enabled && tor.and_then(|t| t.get("proxyUrl")).is_none()
}

/// The keys of the probe config the operator owns for a pod that may have a key, a Tor
/// sidecar and GeoIP databases mounted.
pub fn operator_keys(
    b: &mut crate::render::probe_config::ProbeConfigBuilder,
    key: bool,
    tor: bool,
    geoip: Option<&crate::crd::common::GeoIpSource>,
) {
    use crate::render::pod::{KEY_FILE, TOR_PROXY_URL, geoip_paths};
    if key {
        b.set("monitor", "publish.keyFile", KEY_FILE);
    }
    if tor {
        b.set("networks", "tor.proxyUrl", TOR_PROXY_URL);
    }
    if let Some(g) = geoip {
        let (city, asn) = geoip_paths(g);
        b.set("monitor", "geoip.cityDb", city)
            .set("monitor", "geoip.asnDb", asn);
    } else {
        // No GeoIP source: the geo and net checks have nothing to read; say so rather than
        // let every cycle warn about missing files.
        b.set("monitor", "checks.geo.enabled", false)
            .set("monitor", "checks.net.enabled", false);
    }
}

/// Whether a BrotrDeployment's managed database gets its pooler (the default).
pub fn managed_pooler(bd: &crate::crd::BrotrDeployment) -> bool {
    bd.spec.database.external.is_none()
        && bd
            .spec
            .database
            .managed
            .as_ref()
            .is_some_and(|m| m.pooler.as_ref().is_none_or(|p| p.enabled.unwrap_or(true)))
}

/// The pooler the operator runs for a BrotrDeployment, if any: the managed database's (on
/// unless turned off), or one in front of an external server (only when asked for).
pub fn rendered_pooler(
    bd: &crate::crd::BrotrDeployment,
) -> Option<crate::crd::brotr_deployment::PoolerSpec> {
    let db = &bd.spec.database;
    match &db.external {
        Some(e) => e.pooler.clone().filter(|p| p.enabled.unwrap_or(true)),
        None => managed_pooler(bd).then(|| {
            db.managed
                .as_ref()
                .and_then(|m| m.pooler.clone())
                .unwrap_or_default()
        }),
    }
}

/// The name of a BrotrDeployment's pooler (Deployment, Service, ConfigMap).
pub fn pooler_name(bd: &crate::crd::BrotrDeployment) -> String {
    format!("{}-pooler", bd.metadata.name.as_deref().unwrap_or_default())
}

/// The in-cluster host of a BrotrDeployment's pooler Service.
fn pooler_host(bd: &crate::crd::BrotrDeployment) -> String {
    format!(
        "{}.{}.svc",
        pooler_name(bd),
        bd.metadata.namespace.as_deref().unwrap_or_default()
    )
}

/// The database a BrotrDeployment's pods use: its external URL Secret, or its managed
/// database's generated one; through its pooler when it has one (the migration Job and the api
/// take [`crate::render::pod::DatabaseRef::direct`]).
pub fn database_of(bd: &crate::crd::BrotrDeployment) -> crate::render::pod::DatabaseRef {
    use crate::crd::common::SecretKeyRef;
    use crate::render::pod::{DatabaseRef, PoolerRef};
    let name = bd.metadata.name.as_deref().unwrap_or_default();
    match &bd.spec.database.external {
        Some(e) => DatabaseRef::Postgres {
            url: e.url_secret_ref.clone(),
            ca: e.ca_secret_ref.clone(),
            max_connections: None,
            pooler: match (&e.pooler_url_secret_ref, rendered_pooler(bd)) {
                (Some(u), _) => Some(Box::new(PoolerRef::Url(u.clone()))),
                (None, Some(_)) => Some(Box::new(PoolerRef::Via(format!(
                    "{}:{}",
                    pooler_host(bd),
                    crate::render::pooler::PORT
                )))),
                (None, None) => None,
            },
        },
        None => DatabaseRef::Postgres {
            url: SecretKeyRef {
                name: format!("{name}-postgres"),
                key: crate::render::postgres::URI_KEY.into(),
            },
            ca: None,
            max_connections: None,
            pooler: managed_pooler(bd).then(|| {
                Box::new(PoolerRef::Managed {
                    host: pooler_host(bd),
                    user: crate::render::postgres::USER.into(),
                    database: crate::render::postgres::USER.into(),
                    password: SecretKeyRef {
                        name: format!("{name}-postgres"),
                        key: crate::render::postgres::PASSWORD_KEY.into(),
                    },
                })
            }),
        },
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::common::PullPolicy;

    #[test]
    fn images_default_to_the_operators_and_a_digest_pins() {
        let d = Defaults::default();
        let img = d.probe_image(None);
        assert_eq!(
            img.reference,
            format!(
                "ghcr.io/brotr-dev/brotr-probe:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        let spec = ImageSpec {
            repository: Some("r.example/p".into()),
            tag: Some("1.2".into()),
            digest: None,
            pull_policy: Some(PullPolicy::Always),
        };
        let img = d.probe_image(Some(&spec));
        assert_eq!(img.reference, "r.example/p:1.2");
        assert_eq!(img.pull_policy.as_deref(), Some("Always"));
        let pinned = ImageSpec {
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            ..spec
        };
        assert!(
            d.probe_image(Some(&pinned))
                .reference
                .starts_with("r.example/p@sha256:")
        );
    }

    #[test]
    fn the_sidecar_is_wanted_only_for_tor_without_a_proxy() {
        let n = |v: serde_json::Value| v.as_object().cloned();
        assert!(wants_tor_sidecar(
            n(serde_json::json!({"tor": {"enabled": true}})).as_ref()
        ));
        assert!(!wants_tor_sidecar(
            n(serde_json::json!({"tor": {"enabled": true, "proxyUrl": "socks5://t:9050"}}))
                .as_ref()
        ));
        assert!(!wants_tor_sidecar(
            n(serde_json::json!({"tor": {"maxTasks": 3}})).as_ref()
        ));
        assert!(!wants_tor_sidecar(None));
    }
}
