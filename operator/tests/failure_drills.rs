//! Failure drills of the operator on the real control plane: the API server gone for 30 s, and
//! the operator killed in the middle of creating a pipeline. A test binary of its own: cargo
//! runs test binaries one after another, in name order, so the outage cannot hit the other
//! end-to-end tests (which run in parallel within theirs, and before this one: `e2e` sorts
//! first, and the restarted control plane's own controllers may take a while to catch up);
//! within this one the drills take turns.
//! `#[ignore]`d by a plain `cargo test`; CI runs them, and a missing cluster fails them.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brotr_operator::crd::BrotrDeployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{
    Operator, admin, create, eventually, example, full_pipeline, namespace, secret, setup,
    wait_ready,
};

static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The control plane's directory (where `e2e/control-plane.sh` keeps its pids and logs).
fn control_plane_dir() -> PathBuf {
    let kc = std::env::var("KUBECONFIG").expect("KUBECONFIG (e2e/run-tests.sh starts a cluster)");
    PathBuf::from(kc).parent().unwrap().to_owned()
}

/// The running kube-apiserver: its pid, command line and environment.
struct ApiServer {
    pid: u32,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ApiServer {
    fn find() -> ApiServer {
        let pids = std::fs::read_to_string(control_plane_dir().join("pids")).unwrap();
        let pid = pids
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "kube-apiserver")
            })
            .expect("a running kube-apiserver in the control plane's pids");
        let split = |f: &str| -> Vec<String> {
            std::fs::read(format!("/proc/{pid}/{f}"))
                .unwrap()
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        };
        let env = split("environ")
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect();
        ApiServer {
            pid,
            args: split("cmdline"),
            env,
        }
    }

    /// SIGKILL (a crash: its graceful shutdown drains requests for a minute), and wait until
    /// it is gone.
    fn stop(&self) {
        Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Gone, or a zombie nobody reaps (its parent, the script that started it, has exited).
        let alive = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| !rest.starts_with('Z'))
            })
        };
        while alive(self.pid) {
            assert!(Instant::now() < deadline, "kube-apiserver survived SIGKILL");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The same command again (its log appended, its pid recorded for `control-plane.sh stop`,
    /// which ends it after this test process is gone: not waited for here).
    #[allow(clippy::zombie_processes)]
    fn start(&self) {
        let dir = control_plane_dir();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("kube-apiserver.log"))
            .unwrap();
        let child = Command::new(&self.args[0])
            .args(&self.args[1..])
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("pids"))
            .unwrap();
        writeln!(pids, "{}", child.id()).unwrap();
    }
}

/// Whether the BrotrDeployment's status describes its current generation within `secs`.
async fn observed_within(c: &Client, ns: &str, name: &str, secs: u64) -> bool {
    let api = support::dyn_api(c, ns, "BrotrDeployment");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if matches!(support::condition(&api, name, "Ready").await,
            Some((_, _, observed, generation)) if observed == generation)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

async fn api_answers(c: &Client) -> bool {
    c.apiserver_version().await.is_ok()
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn the_operator_rides_out_an_api_server_outage() {
    let _turn = TURNS.lock().await;
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "drill-outage").await;
    // The watchdog compares the caches with the API server every 10 s here (30 s by default).
    let mut op = Operator::start(&[&ns], &["--watchdog-secs", "10"]);
    secret(&c, &ns, "pg-app", "uri", "postgres://brotr@db/brotr").await;
    let mut before = example("brotrdeployment-minimal.yaml");
    before["metadata"]["name"] = "before".into();
    let _: BrotrDeployment = create(&c, &ns, before).await;
    wait_ready(&c, &ns, "BrotrDeployment", "before", 90).await;

    // 30 s without an API server: the operator keeps running (no crash, no exit) and keeps
    // answering its health endpoint.
    let api = ApiServer::find();
    api.stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(30) {
        assert!(
            op.running(),
            "the operator exited during the outage:\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!op.metrics().await.is_empty(), "/metrics stopped answering");
    api.start();
    eventually("the API server back", 60, || api_answers(&c)).await;

    // Back: the operator picks up what happened meanwhile without a restart — an edit of the
    // old pipeline and a new one.
    let bds: Api<BrotrDeployment> = Api::namespaced(c.clone(), &ns);
    bds.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"validator": {"interval": "2h"}}})),
    )
    .await
    .unwrap();
    let mut after = example("brotrdeployment-minimal.yaml");
    after["metadata"]["name"] = "after".into();
    let _: BrotrDeployment = create(&c, &ns, after).await;
    // What the operator controls: both specs observed (the edit applied, the new pipeline's
    // children made). Ready also needs the controller-manager and kwok to come back.
    for name in ["after", "before"] {
        if !observed_within(&c, &ns, name, 120).await {
            panic!(
                "{name}: generation not observed after the outage; the operator's log:\n{}",
                op.log()
            );
        }
    }
    let migration = Api::<Job>::namespaced(c.clone(), &ns)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=after"))
        .await
        .unwrap();
    assert!(
        !migration.items.is_empty(),
        "the new pipeline's migration Job was not created"
    );
    assert!(op.running(), "the operator exited:\n{}", op.log());
    assert!(!op.log().contains("panicked"), "{}", op.log());
    // How it got there: kube's watches can come back from an API server restart delivering
    // nothing; the watchdog then restarts the controllers (counted).
    eprintln!(
        "controllers restarted by the watchdog: {}",
        op.metric("brotr_operator_watch_restarts_total").await
    );
    op.assert_never_forbidden().await;
}

/// Every child of the pipelines in `ns` by kind and component: kind/name → owner.
async fn children(c: &Client, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    macro_rules! list {
        ($t:ty, $kind:literal) => {
            for o in Api::<$t>::namespaced(c.clone(), ns)
                .list(&ListParams::default().labels("app.kubernetes.io/managed-by=brotr-operator"))
                .await
                .unwrap()
            {
                let owner = o
                    .owner_references()
                    .first()
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                out.insert(format!("{}/{}", $kind, o.name_any()), owner);
            }
        };
    }
    list!(k8s_openapi::api::core::v1::ConfigMap, "ConfigMap");
    list!(k8s_openapi::api::core::v1::Service, "Service");
    list!(Job, "Job");
    list!(k8s_openapi::api::batch::v1::CronJob, "CronJob");
    list!(k8s_openapi::api::apps::v1::Deployment, "Deployment");
    list!(k8s_openapi::api::apps::v1::StatefulSet, "StatefulSet");
    out
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn an_operator_killed_mid_reconcile_converges_without_duplicates() {
    let _turn = TURNS.lock().await;
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "drill-kill").await;
    secret(&c, &ns, "pg-app", "uri", "postgres://brotr@db/brotr").await;
    secret(&c, &ns, "pg-api", "uri", "postgres://brotr_api@db/brotr").await;
    secret(&c, &ns, "brotr-key", "nsec", "00").await;
    let mut op = Operator::start(&[&ns], &[]);
    let _: BrotrDeployment = create(&c, &ns, full_pipeline("bigbrotr")).await;
    // Killed (SIGKILL) as soon as it has written something, before the pipeline is complete.
    eventually("the operator's first child", 30, || async {
        !children(&c, &ns).await.is_empty()
    })
    .await;
    op.kill();
    let partial = children(&c, &ns).await;

    let op2 = Operator::start(&[&ns], &[]);
    wait_ready(&c, &ns, "BrotrDeployment", "bigbrotr", 120).await;
    let all = children(&c, &ns).await;
    assert!(
        all.len() > partial.len(),
        "killed too late to be a drill: {partial:?}"
    );
    // Every child belongs to the pipeline, one of each: a single migration Job (for the
    // current image and schema), no leftovers of the interrupted pass.
    assert!(all.values().all(|o| o == "bigbrotr"), "{all:?}");
    let jobs: Vec<_> = all
        .keys()
        .filter(|k| k.starts_with("Job/bigbrotr-migrate-"))
        .collect();
    assert_eq!(jobs.len(), 1, "{all:?}");
    // Converged: nothing more to write.
    let writes = op2.writes().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        op2.writes().await,
        writes,
        "the restarted operator kept writing"
    );
    op2.assert_never_forbidden().await;
}
