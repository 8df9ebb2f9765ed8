//! Helpers for the tests and benchmarks against the real control plane that
//! `e2e/run-tests.sh` starts (`e2e/control-plane.sh`): the admin client, the operator's own
//! identity bound to exactly the generated RBAC, and the operator run as a process.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use brotr_operator::crd::{BrotrDeployment, RelayMonitor};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// The user the operator runs as in these tests (`e2e/control-plane.sh` writes its kubeconfig).
pub const OPERATOR_USER: &str = "brotr-operator";

/// An admin client (system:masters), for the test's own setup and checks.
pub async fn admin() -> Client {
    assert!(
        std::env::var("KUBECONFIG").is_ok(),
        "KUBECONFIG is not set: run e2e/run-tests.sh (it starts a control plane)"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_default().await.expect("client from KUBECONFIG")
}

static SETUP: OnceCell<()> = OnceCell::const_new();

/// Installs the CRDs and binds the generated ClusterRole to the operator's user, once.
pub async fn setup(c: &Client) {
    SETUP
        .get_or_init(|| async {
            let pp = PatchParams::apply("brotr-e2e").force();
            let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
            for crd in [
                brotr_operator::crd::BrotrDeployment::crd(),
                brotr_operator::crd::RelayMonitor::crd(),
            ] {
                crds.patch(&crd.name_any(), &pp, &Patch::Apply(&crd))
                    .await
                    .expect("apply CRD");
                let name = crd.name_any();
                eventually("CRD Established", 60, || async {
                    crds.get(&name)
                        .await
                        .ok()
                        .and_then(|c| c.status)
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
                .await;
            }
            let mut role = brotr_operator::rbac::cluster_role();
            role.metadata.managed_fields = None;
            let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(c.clone());
            let mut v = serde_json::to_value(&role).unwrap();
            v["apiVersion"] = "rbac.authorization.k8s.io/v1".into();
            v["kind"] = "ClusterRole".into();
            roles
                .patch(brotr_operator::rbac::NAME, &pp, &Patch::Apply(&v))
                .await
                .expect("apply the ClusterRole");
            let binding = ClusterRoleBinding {
                metadata: kube::api::ObjectMeta {
                    name: Some("brotr-operator-e2e".into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: brotr_operator::rbac::NAME.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "User".into(),
                    name: OPERATOR_USER.into(),
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    namespace: None,
                }]),
            };
            let mut v = serde_json::to_value(&binding).unwrap();
            v["apiVersion"] = "rbac.authorization.k8s.io/v1".into();
            v["kind"] = "ClusterRoleBinding".into();
            let bindings: Api<ClusterRoleBinding> = Api::all(c.clone());
            bindings
                .patch("brotr-operator-e2e", &pp, &Patch::Apply(&v))
                .await
                .expect("bind the ClusterRole");
        })
        .await;
}

/// A fresh namespace.
pub async fn namespace(c: &Client, name: &str) -> String {
    let ns: Api<Namespace> = Api::all(c.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    ns.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    name.to_owned()
}

/// A Secret with one key.
pub async fn secret(c: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let api: Api<Secret> = Api::namespaced(c.clone(), ns);
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {key: value},
    }))
    .unwrap();
    api.create(&PostParams::default(), &s)
        .await
        .expect("create Secret");
}

/// Polls `check` every 200 ms for up to `secs` seconds.
pub async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// The operator, run as a process under its own least-privilege identity.
pub struct Operator {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Operator {
    /// Starts `brotr-operator run --namespace <each> <extra…>`.
    pub fn start(namespaces: &[&str], extra: &[&str]) -> Operator {
        let kubeconfig = std::env::var("BROTR_K8S_OPERATOR_KUBECONFIG").expect(
            "BROTR_K8S_OPERATOR_KUBECONFIG is not set: run e2e/run-tests.sh (the control plane writes it)",
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!("brotr-operator-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        // BROTR_BENCH_OPERATOR_BIN runs another build of the same operator (the fleet
        // benchmark measures the `dist` binary the images ship).
        let bin = std::env::var_os("BROTR_BENCH_OPERATOR_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_brotr-operator").into());
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--log-format", "text", "--log-level", "info,kube=warn"])
            .env("KUBECONFIG", kubeconfig)
            .env_remove("POD_NAME")
            // Logs go to stdout (as in a container); errors of the process to stderr.
            .stdout(out.try_clone().expect("log file"))
            .stderr(out);
        for ns in namespaces {
            cmd.args(["--namespace", ns]);
        }
        cmd.args(extra);
        let child = cmd.spawn().expect("start brotr-operator");
        Operator {
            child: Some(child),
            port,
            log,
        }
    }

    /// The sum of every series of `name` in `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `/metrics`, or empty while it does not answer.
    pub async fn metrics(&self) -> String {
        let addr = format!("127.0.0.1:{}", self.port);
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            return String::new();
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let req = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return String::new();
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body).await;
        body.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    /// Writes the operator made (children, statuses, Events).
    pub async fn writes(&self) -> f64 {
        self.metric("brotr_operator_writes_total").await
    }

    /// Waits until `/metrics` answers.
    pub async fn ready(&self) {
        eventually("the operator's metrics endpoint", 30, || async {
            !self.metrics().await.is_empty()
        })
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// The process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process (SIGKILL: no lease release, no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Fails if the operator was refused anything: it must work with exactly its RBAC.
    pub async fn assert_never_forbidden(&self) {
        let forbidden = self.metrics().await.lines().any(|l| {
            l.starts_with("brotr_operator_reconcile_failures_total") && l.contains("Forbidden")
        });
        // RBAC's refusals read `… is forbidden: User "…" cannot <verb> resource "…"`; other
        // 403s (an admission plugin refusing a claim's growth) are the operator's business.
        let log = self.log();
        let refused = log
            .lines()
            .any(|l| l.contains("forbidden") && l.contains(" cannot "));
        assert!(
            !forbidden && !refused,
            "the operator was refused something its RBAC should allow:\n{log}"
        );
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

// Resources of the tests: examples, creation, conditions.

pub fn example(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/");
    serde_yaml_ng::from_str(&std::fs::read_to_string(format!("{path}{name}")).unwrap()).unwrap()
}

/// The full example without what a fake node cannot give (a node label, a GeoIP volume).
pub fn full_pipeline(name: &str) -> Value {
    let mut v = example("brotrdeployment-full.yaml");
    v["metadata"]["name"] = name.into();
    let spec = v["spec"].as_object_mut().unwrap();
    spec.remove("podOverrides");
    spec["monitor"].as_object_mut().unwrap().remove("geoip");
    v
}

pub async fn create<K>(c: &Client, ns: &str, v: Value) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).unwrap();
    Api::<K>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .expect("create")
}

/// The `type` condition of a BrotrDeployment or RelayMonitor, with the generations.
pub async fn condition(
    api: &Api<Value2>,
    name: &str,
    type_: &str,
) -> Option<(String, String, i64, i64)> {
    let o = api.get(name).await.ok()?;
    let generation = o.metadata.generation.unwrap_or_default();
    let c = o.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
        c["observedGeneration"].as_i64()?,
        generation,
    ))
}

pub type Value2 = kube::api::DynamicObject;

pub fn dyn_api(c: &Client, ns: &str, kind: &str) -> Api<Value2> {
    let ar = match kind {
        "BrotrDeployment" => kube::api::ApiResource::erase::<BrotrDeployment>(&()),
        _ => kube::api::ApiResource::erase::<RelayMonitor>(&()),
    };
    Api::namespaced_with(c.clone(), ns, &ar)
}

/// Waits for `Ready=True` describing the current generation.
pub async fn wait_ready(c: &Client, ns: &str, kind: &str, name: &str, secs: u64) {
    let api = dyn_api(c, ns, kind);
    eventually(&format!("{kind} {ns}/{name} Ready"), secs, || async {
        matches!(condition(&api, name, "Ready").await,
            Some((s, _, observed, generation)) if s == "True" && observed == generation)
    })
    .await;
}

/// Waits for a condition status and reason on the current generation.
pub async fn wait_condition(
    c: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) {
    let api = dyn_api(c, ns, kind);
    eventually(&format!("{kind} {name} {type_}={status}/{reason}"), 60, || async {
        matches!(condition(&api, name, type_).await,
            Some((s, r, observed, generation)) if s == status && r == reason && observed == generation)
    })
    .await;
}
