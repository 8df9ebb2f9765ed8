//! Against the real control plane (kube-apiserver + etcd + controller-manager + scheduler +
//! kwok) that `e2e/run-tests.sh` starts and points `KUBECONFIG` at. `#[ignore]`d by a plain
//! `cargo test`; CI runs them with `--include-ignored`, where a missing cluster fails them.
//! (Kubernetes' own behaviour — Deployments get Pods, Jobs complete, garbage collection — is
//! checked by `e2e/k8s-smoke.sh`, not here.)

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::json;

async fn client() -> Client {
    assert!(
        std::env::var("KUBECONFIG").is_ok(),
        "KUBECONFIG is not set: run e2e/run-tests.sh (it starts a control plane)"
    );
    // kube and reqwest pull in different rustls providers; choose one before any TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_default().await.expect("client from KUBECONFIG")
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
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn the_crds_install_and_the_server_enforces_their_rules() {
    let c = client().await;
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
