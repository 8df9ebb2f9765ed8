//! Against the real control plane (kube-apiserver + etcd + controller-manager + scheduler +
//! kwok) that `e2e/run-tests.sh` starts and points `KUBECONFIG` at. Without it the tests are
//! skipped, unless `BROTR_REQUIRE_K8S=1` (as in CI) makes that a failure.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::json;

async fn client() -> Option<Client> {
    if std::env::var("KUBECONFIG").is_err() {
        assert!(
            std::env::var("BROTR_REQUIRE_K8S").is_err(),
            "BROTR_REQUIRE_K8S is set but KUBECONFIG is not"
        );
        eprintln!("skipping: no KUBECONFIG (run e2e/run-tests.sh)");
        return None;
    }
    // kube and reqwest pull in different rustls providers; choose one before any TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Some(Client::try_default().await.expect("client from KUBECONFIG"))
}

async fn namespace(c: &Client, name: &str) -> String {
    let ns: Api<Namespace> = Api::all(c.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    ns.create(&PostParams::default(), &obj)
        .await
        .expect("create namespace");
    name.to_owned()
}

/// Polls `check` every 200 ms for up to 60 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_deployment_gets_running_pods_on_kwok_nodes() {
    let Some(c) = client().await else { return };
    let ns = namespace(&c, "rust-deploy").await;
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
            }
        }
    }))
    .unwrap();
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    eventually("2 running pods", || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        list.items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
            == 2
    })
    .await;
    eventually("deployment Available", || async {
        let d = deploys.get("web").await.unwrap();
        d.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    })
    .await;
}

#[tokio::test]
async fn jobs_complete_and_dependents_are_garbage_collected() {
    let Some(c) = client().await else { return };
    let ns = namespace(&c, "rust-job").await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), &ns);
    let j: Job = serde_json::from_value(json!({
        "metadata": {"name": "once"},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "once", "image": "registry.invalid/once:1"}]
        }}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &j)
        .await
        .expect("create job");
    eventually("job Complete", || async {
        let j = jobs.get("once").await.unwrap();
        j.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    })
    .await;

    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let dependent: ConfigMap = serde_json::from_value(json!({"metadata": {
        "name": "dependent",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap()}]
    }}))
    .unwrap();
    cms.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually("dependent collected", || async {
        cms.get_opt("dependent").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn the_crds_install_and_the_server_enforces_their_rules() {
    let Some(c) = client().await else { return };
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let pp = PatchParams::apply("brotr-e2e").force();
    for crd in [
        brotr_operator::crd::BrotrDeployment::crd(),
        brotr_operator::crd::RelayMonitor::crd(),
    ] {
        crds.patch(&crd.name_any(), &pp, &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
        let name = crd.name_any();
        eventually("CRD Established", || async {
            let got = crds.get(&name).await.unwrap();
            got.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
        .await;
    }
    let ns = namespace(&c, "rust-crd").await;
    let api: Api<brotr_operator::crd::BrotrDeployment> = Api::namespaced(c.clone(), &ns);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/brotrdeployment-full.yaml"
    ))
    .unwrap();
    let mut bd: brotr_operator::crd::BrotrDeployment = serde_yaml_ng::from_str(&text).unwrap();
    bd.metadata.namespace = Some(ns.clone());
    api.create(&PostParams::default(), &bd)
        .await
        .expect("a valid BrotrDeployment is accepted");
    let err = api
        .patch(
            &bd.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schema": "lite"}})),
        )
        .await
        .expect_err("the schema is immutable");
    assert!(err.to_string().contains("schema is immutable"), "{err}");
    let err = api
        .patch(
            &bd.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"synchronizer": {"shards": 0}}})),
        )
        .await
        .expect_err("shards must be ≥ 1");
    assert!(err.to_string().contains("shards"), "{err}");
}
