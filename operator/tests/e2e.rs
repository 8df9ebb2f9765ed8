//! The operator against the real control plane (kube-apiserver, etcd, controller-manager,
//! scheduler, kwok) that `e2e/run-tests.sh` starts: run as a process under a token bound to
//! exactly the generated ClusterRole, each test in its own namespace with its own operator.
//! `#[ignore]`d by a plain `cargo test`; CI runs them, and a missing cluster fails them.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use brotr_operator::crd::{BrotrDeployment, RelayMonitor};
use brotr_operator::render::OWNER_UID;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::{
    Operator, admin, condition, create, dyn_api, eventually, example, full_pipeline, namespace,
    secret, setup, wait_condition, wait_ready,
};

const NEEDS: &str = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)";

/// Every child of `uid`: (kind/name → generation or resourceVersion, uid).
async fn children(c: &Client, ns: &str, uid: &str) -> BTreeMap<String, (String, String)> {
    let lp = ListParams::default().labels(&format!("{OWNER_UID}={uid}"));
    let mut out = BTreeMap::new();
    macro_rules! collect {
        ($t:ty, $kind:literal, $version:expr) => {
            for o in Api::<$t>::namespaced(c.clone(), ns)
                .list(&lp)
                .await
                .unwrap()
            {
                let v: fn(&$t) -> String = $version;
                out.insert(
                    format!("{}/{}", $kind, o.name_any()),
                    (v(&o), o.uid().unwrap_or_default()),
                );
            }
        };
    }
    // Workloads by generation (their status changes their resourceVersion), the rest by
    // resourceVersion.
    collect!(Deployment, "Deployment", |o| o
        .metadata
        .generation
        .unwrap_or_default()
        .to_string());
    collect!(StatefulSet, "StatefulSet", |o| o
        .metadata
        .generation
        .unwrap_or_default()
        .to_string());
    collect!(CronJob, "CronJob", |o| o
        .metadata
        .generation
        .unwrap_or_default()
        .to_string());
    collect!(Job, "Job", |o| o
        .metadata
        .generation
        .unwrap_or_default()
        .to_string());
    collect!(ConfigMap, "ConfigMap", |o| o
        .resource_version()
        .unwrap_or_default());
    collect!(Service, "Service", |o| o
        .resource_version()
        .unwrap_or_default());
    collect!(Ingress, "Ingress", |o| o
        .metadata
        .generation
        .unwrap_or_default()
        .to_string());
    collect!(PodDisruptionBudget, "PodDisruptionBudget", |o| o
        .metadata
        .generation
        .unwrap_or_default()
        .to_string());
    out
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn a_full_pipeline_with_tor_migrates_first_then_becomes_ready() {
    let _ = NEEDS;
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-full").await;
    let op = Operator::start(&[&ns], &[]);
    secret(&c, &ns, "pg-app", "uri", "postgres://brotr@db/brotr").await;
    secret(&c, &ns, "pg-api", "uri", "postgres://brotr_api@db/brotr").await;
    secret(&c, &ns, "brotr-key", "nsec", "00").await;
    let bd: BrotrDeployment = create(&c, &ns, full_pipeline("bigbrotr")).await;
    let uid = bd.uid().unwrap();
    wait_ready(&c, &ns, "BrotrDeployment", "bigbrotr", 90).await;

    let kids = children(&c, &ns, &uid).await;
    let names: Vec<&str> = kids.keys().map(String::as_str).collect();
    for want in [
        "ConfigMap/bigbrotr-config",
        "ConfigMap/bigbrotr-seeds",
        "CronJob/bigbrotr-cleanup",
        // With the api, a consensus round every half hour.
        "CronJob/bigbrotr-consensus",
        "CronJob/bigbrotr-refresh",
        "CronJob/bigbrotr-retention",
        "Deployment/bigbrotr-finder",
        "Deployment/bigbrotr-monitor",
        "Deployment/bigbrotr-validator",
        "Service/bigbrotr-metrics",
        "StatefulSet/bigbrotr-sync",
        // The archive's read side: 2 replicas behind a Service and an Ingress.
        "Deployment/bigbrotr-api",
        "Service/bigbrotr-api",
        "Ingress/bigbrotr-api",
        "PodDisruptionBudget/bigbrotr-api",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // The migration completed before any service existed.
    let jobs: Api<Job> = Api::namespaced(c.clone(), &ns);
    let migration = jobs
        .list(&ListParams::default().labels("app.kubernetes.io/component=migration"))
        .await
        .unwrap()
        .items
        .remove(0);
    let done = migration
        .status
        .unwrap()
        .completion_time
        .expect("completed")
        .0;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), &ns);
    for d in deployments.list(&ListParams::default()).await.unwrap() {
        let name = d.name_any();
        let created = d.metadata.creation_timestamp.unwrap().0;
        assert!(
            created >= done,
            "{name} created at {created}, before the migration completed at {done}"
        );
        // Tor as a native sidecar where relays are contacted.
        let pod = d.spec.unwrap().template.spec.unwrap();
        let init: Vec<_> = pod.init_containers.unwrap_or_default();
        if name.ends_with("-finder") || name.ends_with("-api") {
            assert!(init.is_empty(), "{name} talks to no relay");
        } else {
            assert_eq!(init[0].name, "tor");
            assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
        }
        assert_eq!(pod.automount_service_account_token, Some(false));
    }
    let sts: StatefulSet = Api::namespaced(c.clone(), &ns)
        .get("bigbrotr-sync")
        .await
        .unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(3));
    let bd: BrotrDeployment = Api::namespaced(c.clone(), &ns)
        .get("bigbrotr")
        .await
        .unwrap();
    let st = bd.status.unwrap();
    let api = st.api.clone().expect("status.api");
    assert_eq!(api.endpoint, format!("ws://bigbrotr-api.{ns}.svc"));
    assert_eq!(
        api.public_endpoint.as_deref(),
        Some("wss://archive.example.org")
    );
    assert_eq!(st.components.clone().unwrap().api.unwrap().ready, 2);
    assert_eq!(st.components.unwrap().synchronizer.unwrap().ready, 3);
    assert_eq!(
        st.image.as_deref(),
        Some("ghcr.io/example/brotr-probe:0.1.0")
    );
    op.assert_never_forbidden().await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn edits_change_exactly_the_children_they_concern() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-edit").await;
    let op = Operator::start(&[&ns], &[]);
    secret(&c, &ns, "pg-app", "uri", "postgres://brotr@db/brotr").await;
    secret(&c, &ns, "pg-api", "uri", "postgres://brotr_api@db/brotr").await;
    secret(&c, &ns, "brotr-key", "nsec", "00").await;
    let mut v = full_pipeline("edited");
    v["spec"]["synchronizer"]["shards"] = 1.into();
    let bd: BrotrDeployment = create(&c, &ns, v).await;
    let uid = bd.uid().unwrap();
    wait_ready(&c, &ns, "BrotrDeployment", "edited", 90).await;
    let before = children(&c, &ns, &uid).await;
    let writes_before = op.writes().await;

    let api: Api<BrotrDeployment> = Api::namespaced(c.clone(), &ns);
    api.patch(
        "edited",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "finder": {"enabled": false},
            "synchronizer": {"shards": 3},
            "validator": {"interval": "4h"},
        }})),
    )
    .await
    .unwrap();
    eventually("3 shards ready", 60, || async {
        api.get("edited")
            .await
            .ok()
            .and_then(|b| b.status)
            .and_then(|s| s.components)
            .and_then(|c| c.synchronizer)
            .is_some_and(|s| s.ready == 3)
            && api
                .get("edited")
                .await
                .is_ok_and(|b| b.status.is_some_and(|s| s.observed_generation == Some(2)))
    })
    .await;
    wait_ready(&c, &ns, "BrotrDeployment", "edited", 60).await;
    let after = children(&c, &ns, &uid).await;
    let changed: Vec<&String> = before
        .keys()
        .filter(|k| after.get(*k) != before.get(*k))
        .collect();
    assert_eq!(
        changed,
        [
            "ConfigMap/edited-config",
            "Deployment/edited-finder",
            "Deployment/edited-validator",
            "StatefulSet/edited-sync"
        ],
        "before {before:?}\nafter {after:?}"
    );
    assert!(
        !after.contains_key("Deployment/edited-finder"),
        "the finder is gone"
    );
    // Exactly those writes: the config, the validator and the shards applied, the finder
    // deleted; the rest are status patches (and an Event or two).
    let m = op.metrics().await;
    let count = |kind: &str, verb: &str| -> f64 {
        m.lines()
            .filter(|l| {
                l.starts_with("brotr_operator_writes_total")
                    && l.contains(&format!("kind=\"{kind}\""))
                    && l.contains(&format!("verb=\"{verb}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("Deployment", "delete"), 1.0);
    assert!(op.writes().await > writes_before);
    op.assert_never_forbidden().await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn a_spec_the_probe_rejects_is_stalled_and_the_others_keep_reconciling() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-stalled").await;
    let op = Operator::start(&[&ns], &[]);
    // Accepted by the API server (filters are free-form), refused by the probe: the
    // synchronizer sets `since` itself.
    let mut bad = example("brotrdeployment-quickstart.yaml");
    bad["metadata"]["name"] = "bad".into();
    bad["spec"]["database"] = json!({"external": {"urlSecretRef": {"name": "pg", "key": "uri"}}});
    bad["spec"]["synchronizer"] = json!({"settings": {"filters": [{"kinds": [1], "since": 5}]}});
    let _: BrotrDeployment = create(&c, &ns, bad).await;
    let mut good = bad_free("good");
    good["spec"]["database"] = json!({"external": {"urlSecretRef": {"name": "pg", "key": "uri"}}});
    secret(&c, &ns, "pg", "uri", "postgres://x").await;
    let _: BrotrDeployment = create(&c, &ns, good).await;
    wait_condition(
        &c,
        &ns,
        "BrotrDeployment",
        "bad",
        "Stalled",
        "True",
        "InvalidSpec",
    )
    .await;
    wait_ready(&c, &ns, "BrotrDeployment", "good", 90).await;
    let api: Api<BrotrDeployment> = Api::namespaced(c.clone(), &ns);
    let bad = api.get("bad").await.unwrap();
    let msg = bad
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .message;
    assert!(
        msg.starts_with("spec.synchronizer.settings.filters"),
        "{msg}"
    );
    // A Warning Event says so.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), &ns);
    eventually("a Warning Event InvalidSpec", 30, || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("InvalidSpec")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bad")
            })
    })
    .await;
    // Nothing was created for it.
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), &ns);
    let names: Vec<String> = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.name_any())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("good-")), "{names:?}");
    // The metrics count one stalled and one ready pipeline (what the Stalled alert reads).
    let series = |status: &str| {
        format!("brotr_operator_objects{{kind=\"BrotrDeployment\",status=\"{status}\"}}")
    };
    eventually(
        "brotr_operator_objects counts 1 stalled, 1 ready",
        30,
        || async {
            let m = op.metrics().await;
            m.contains(&format!("{} 1\n", series("stalled")))
                && m.contains(&format!("{} 1\n", series("ready")))
        },
    )
    .await;
    // Fixing it heals it.
    api.patch(
        "bad",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"synchronizer": {"settings": {"filters": [{"kinds": [1]}]}}}}),
        ),
    )
    .await
    .unwrap();
    wait_ready(&c, &ns, "BrotrDeployment", "bad", 90).await;
    eventually(
        "brotr_operator_objects counts 2 ready, 0 stalled",
        30,
        || async {
            let m = op.metrics().await;
            m.contains(&format!("{} 0\n", series("stalled")))
                && m.contains(&format!("{} 2\n", series("ready")))
        },
    )
    .await;
    op.assert_never_forbidden().await;
}

/// A quick start named `name` (database to be set by the caller).
fn bad_free(name: &str) -> Value {
    let mut v = example("brotrdeployment-quickstart.yaml");
    v["metadata"]["name"] = name.into();
    v
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn a_missing_secret_is_waited_for_and_a_refusing_migration_stalls() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-refs").await;
    let op = Operator::start(&[&ns], &[]);
    // README's example, applied before its Secret exists.
    let _: BrotrDeployment = create(&c, &ns, example("brotrdeployment-minimal.yaml")).await;
    wait_condition(
        &c,
        &ns,
        "BrotrDeployment",
        "minimal",
        "Reconciling",
        "True",
        "WaitingForReference",
    )
    .await;
    let api = dyn_api(&c, &ns, "BrotrDeployment");
    assert_eq!(
        condition(&api, "minimal", "Stalled").await.unwrap().0,
        "False"
    );
    secret(
        &c,
        &ns,
        "pg-app",
        "uri",
        "postgres://brotr:secret@db:5432/brotr",
    )
    .await;
    wait_ready(&c, &ns, "BrotrDeployment", "minimal", 90).await;
    let bd: BrotrDeployment = Api::namespaced(c.clone(), &ns)
        .get("minimal")
        .await
        .unwrap();
    assert_eq!(bd.status.unwrap().shards, Some(1));

    // A migration that exits with code 2 (kwok plays it from the pod annotation) stalls.
    let mut v = bad_free("refuses");
    v["spec"]["database"] = json!({"external": {"urlSecretRef": {"name": "pg-app", "key": "uri"}}});
    v["spec"]["podOverrides"] = json!({"annotations": {"brotr.dev/kwok-exit-code": "2"}});
    let _: BrotrDeployment = create(&c, &ns, v).await;
    wait_condition(
        &c,
        &ns,
        "BrotrDeployment",
        "refuses",
        "Stalled",
        "True",
        "MigrationFailed",
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), &ns);
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .iter()
            .all(|d| !d.name_any().starts_with("refuses-"))
    );
    op.assert_never_forbidden().await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn deleting_a_pipeline_removes_every_child_and_stopped_scales_to_zero() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-delete").await;
    let op = Operator::start(&[&ns], &[]);
    secret(&c, &ns, "pg-app", "uri", "postgres://x").await;
    secret(&c, &ns, "pg-api", "uri", "postgres://y").await;
    secret(&c, &ns, "brotr-key", "nsec", "00").await;
    let bd: BrotrDeployment = create(&c, &ns, full_pipeline("gone")).await;
    let uid = bd.uid().unwrap();
    wait_ready(&c, &ns, "BrotrDeployment", "gone", 90).await;

    let api: Api<BrotrDeployment> = Api::namespaced(c.clone(), &ns);
    api.patch(
        "gone",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"stopped": true}})),
    )
    .await
    .unwrap();
    wait_condition(
        &c,
        &ns,
        "BrotrDeployment",
        "gone",
        "Ready",
        "True",
        "Stopped",
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), &ns);
    for d in deployments.list(&ListParams::default()).await.unwrap() {
        assert_eq!(
            d.spec.unwrap().replicas,
            Some(0),
            "{}",
            d.metadata.name.unwrap()
        );
    }
    let crons: Api<CronJob> = Api::namespaced(c.clone(), &ns);
    assert!(
        crons
            .list(&ListParams::default())
            .await
            .unwrap()
            .iter()
            .all(|c| c.spec.as_ref().unwrap().suspend == Some(true))
    );

    // Paused: an edit changes nothing.
    api.patch(
        "gone",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true, "synchronizer": {"shards": 5}}})),
    )
    .await
    .unwrap();
    wait_condition(
        &c,
        &ns,
        "BrotrDeployment",
        "gone",
        "Reconciling",
        "False",
        "Paused",
    )
    .await;
    let sts: StatefulSet = Api::namespaced(c.clone(), &ns)
        .get("gone-sync")
        .await
        .unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(0));

    api.delete("gone", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("every child garbage-collected", 60, || async {
        children(&c, &ns, &uid).await.is_empty()
    })
    .await;
    op.assert_never_forbidden().await;
}

/// `n` RelayMonitors of static lists, alternately on an interval and a schedule.
async fn fleet(c: &Client, ns: &str, n: usize) {
    secret(c, ns, "fleet-key", "nsec", "00").await;
    for i in 0..n {
        let mode = if i % 2 == 0 {
            json!({"interval": "30m"})
        } else {
            json!({"schedule": "*/30 * * * *"})
        };
        let mut spec = json!({
            "identity": {"keySecretRef": {"name": "fleet-key", "key": "nsec"}},
            "targets": {"relays": [format!("wss://relay{i}.example.org")]},
            "settings": {"publish": {"relays": ["wss://relay.example.org"], "geohash": "u0yjj"}},
        });
        merge(&mut spec, mode);
        let _: RelayMonitor = create(
            c,
            ns,
            json!({"apiVersion": "brotr.dev/v1alpha1", "kind": "RelayMonitor", "metadata": {"name": format!("m{i}")}, "spec": spec}),
        )
        .await;
    }
}

fn merge(a: &mut Value, b: Value) {
    if let (Value::Object(a), Value::Object(b)) = (a, b) {
        a.extend(b);
    }
}

async fn all_ready(c: &Client, ns: &str, n: usize) -> bool {
    let api: Api<RelayMonitor> = Api::namespaced(c.clone(), ns);
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items.len() == n
        && list.iter().all(|m| {
            m.status.as_ref().is_some_and(|s| {
                s.observed_generation == m.metadata.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn fifty_monitors_become_ready_and_a_restart_writes_nothing() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-fleet").await;
    let mut op = Operator::start(&[&ns], &[]);
    fleet(&c, &ns, 50).await;
    eventually("50 RelayMonitors Ready", 120, || all_ready(&c, &ns, 50)).await;
    op.assert_never_forbidden().await;
    let api: Api<RelayMonitor> = Api::namespaced(c.clone(), &ns);
    let versions = |l: kube::api::ObjectList<RelayMonitor>| -> BTreeMap<String, String> {
        l.iter()
            .map(|m| (m.name_any(), m.resource_version().unwrap_or_default()))
            .collect()
    };
    // Settled: the fleet's children stop changing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = versions(api.list(&ListParams::default()).await.unwrap());
    let kids_before = children_of_all(&c, &ns).await;
    assert_eq!(
        op.stop().map(|s| s.success()),
        Some(true),
        "SIGTERM ends the operator cleanly:\n{}",
        op.log()
    );

    let op = Operator::start(&[&ns], &[]);
    op.ready().await;
    eventually(
        "every monitor reconciled once after the restart",
        60,
        || async { op.metric("brotr_operator_reconciles_total").await >= 50.0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        op.writes().await,
        0.0,
        "a restart must not write:\n{}",
        op.metrics().await
    );
    assert_eq!(
        versions(api.list(&ListParams::default()).await.unwrap()),
        before
    );
    assert_eq!(children_of_all(&c, &ns).await, kids_before);
    op.assert_never_forbidden().await;
}

async fn children_of_all(c: &Client, ns: &str) -> BTreeMap<String, String> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=brotr-operator");
    let mut out = BTreeMap::new();
    for o in Api::<ConfigMap>::namespaced(c.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
    {
        out.insert(
            format!("cm/{}", o.name_any()),
            o.resource_version().unwrap_or_default(),
        );
    }
    for o in Api::<CronJob>::namespaced(c.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
    {
        out.insert(
            format!("cj/{}", o.name_any()),
            o.metadata.generation.unwrap_or_default().to_string(),
        );
    }
    for o in Api::<Deployment>::namespaced(c.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
    {
        out.insert(
            format!("dep/{}", o.name_any()),
            o.metadata.generation.unwrap_or_default().to_string(),
        );
    }
    out
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn a_second_replica_takes_over_when_the_leader_dies() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-leader").await;
    let args = ["--leader-election", "--lease-namespace", ns.as_str()];
    let mut a = Operator::start(&[&ns], &args);
    let mut b = Operator::start(&[&ns], &args);
    a.ready().await;
    b.ready().await;
    eventually("one leader", 60, || async {
        a.metric("brotr_operator_leader").await + b.metric("brotr_operator_leader").await == 1.0
    })
    .await;
    let (leader, follower) = if a.metric("brotr_operator_leader").await == 1.0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    secret(&c, &ns, "pg", "uri", "postgres://x").await;
    let mut v = bad_free("first");
    v["spec"]["database"] = json!({"external": {"urlSecretRef": {"name": "pg", "key": "uri"}}});
    let _: BrotrDeployment = create(&c, &ns, v.clone()).await;
    wait_ready(&c, &ns, "BrotrDeployment", "first", 90).await;

    leader.kill();
    let killed = Instant::now();
    v["metadata"]["name"] = "second".into();
    let _: BrotrDeployment = create(&c, &ns, v).await;
    wait_ready(&c, &ns, "BrotrDeployment", "second", 30).await;
    let took = killed.elapsed();
    assert_eq!(follower.metric("brotr_operator_leader").await, 1.0);
    eprintln!(
        "takeover: the follower made the second pipeline Ready {:.1} s after the leader was killed",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(30));
    follower.assert_never_forbidden().await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn a_scheduled_monitor_reports_its_runs_and_a_failed_one() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-runs").await;
    let op = Operator::start(&[&ns], &[]);
    secret(&c, &ns, "static-key", "nsec", "00").await;
    let mut v = example("relaymonitor-interval.yaml");
    let spec = v["spec"].as_object_mut().unwrap();
    spec.remove("interval");
    spec.insert("schedule".into(), "0 0 1 1 *".into());
    let _: RelayMonitor = create(&c, &ns, v).await;
    wait_ready(&c, &ns, "RelayMonitor", "static-list", 60).await;
    let api: Api<RelayMonitor> = Api::namespaced(c.clone(), &ns);
    assert!(
        api.get("static-list")
            .await
            .unwrap()
            .status
            .unwrap()
            .last_schedule_time
            .is_none()
    );

    // A run, made from the CronJob's template as `kubectl create job --from=cronjob/…` does.
    let run = |name: &'static str, fail: bool| {
        let c = c.clone();
        let ns = ns.clone();
        async move {
            let cj: CronJob = Api::namespaced(c.clone(), &ns)
                .get("static-list-rmon")
                .await
                .unwrap();
            let t = cj.spec.unwrap().job_template;
            let mut job = json!({
                "metadata": {"name": name, "labels": t.metadata.unwrap().labels},
                "spec": t.spec,
            });
            if fail {
                job["spec"]["template"]["metadata"]["annotations"] =
                    json!({"brotr.dev/kwok-exit-code": "1"});
            }
            let _: Job = create(&c, &ns, job).await;
        }
    };
    run("run-1", false).await;
    eventually("the run reported", 60, || async {
        api.get("static-list")
            .await
            .unwrap()
            .status
            .unwrap()
            .last_schedule_time
            .is_some()
    })
    .await;
    wait_condition(
        &c,
        &ns,
        "RelayMonitor",
        "static-list",
        "Ready",
        "True",
        "Scheduled",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    run("run-2", true).await;
    wait_condition(
        &c,
        &ns,
        "RelayMonitor",
        "static-list",
        "Ready",
        "False",
        "LastRunFailed",
    )
    .await;
    let api2 = dyn_api(&c, &ns, "RelayMonitor");
    // Not stalled, not reconciling: in place, but its last run failed.
    assert_eq!(
        condition(&api2, "static-list", "Stalled").await.unwrap().0,
        "False"
    );
    assert_eq!(
        condition(&api2, "static-list", "Reconciling")
            .await
            .unwrap()
            .0,
        "False"
    );
    op.assert_never_forbidden().await;
}

/// A cluster-scoped object from JSON (StorageClass, PersistentVolume), replaced if present.
async fn cluster_object(c: &Client, kind: &str, plural: &str, group_version: &str, v: Value) {
    let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
    let ar = kube::api::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: group_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(c.clone(), &ar);
    let name = v["metadata"]["name"].as_str().unwrap().to_owned();
    let _ = api.delete(&name, &DeleteParams::default()).await;
    let obj: kube::api::DynamicObject = serde_json::from_value(v).unwrap();
    eventually(&format!("{kind} {name} created"), 30, || async {
        api.create(&PostParams::default(), &obj).await.is_ok()
    })
    .await;
}

/// A volume for the managed database's claim, bound to it ahead of time (the test cluster has
/// no provisioner).
async fn volume_for(c: &Client, ns: &str, claim: &str, class: &str, size: &str) {
    cluster_object(
        c,
        "PersistentVolume",
        "persistentvolumes",
        "v1",
        json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("{ns}-{claim}")},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": class,
                "hostPath": {"path": format!("/tmp/{ns}-{claim}")},
                "claimRef": {"namespace": ns, "name": claim},
            },
        }),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn a_managed_database_grows_its_claim_in_place() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-grow").await;
    let op = Operator::start(&[&ns], &[]);
    for (class, expand) in [("brotr-expandable", true), ("brotr-fixed", false)] {
        cluster_object(
            &c,
            "StorageClass",
            "storageclasses",
            "storage.k8s.io/v1",
            json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": class},
                "provisioner": "brotr.dev/none",
                "allowVolumeExpansion": expand,
                "volumeBindingMode": "Immediate",
            }),
        )
        .await;
    }
    let managed = |name: &str, class: &str| {
        let mut bd = example("brotrdeployment-quickstart.yaml");
        bd["metadata"]["name"] = name.into();
        bd["spec"]["database"] = json!({"managed": {"storage": "1Gi", "storageClassName": class}});
        bd
    };
    volume_for(&c, &ns, "data-grow-postgres-0", "brotr-expandable", "1Gi").await;
    volume_for(&c, &ns, "data-fixed-postgres-0", "brotr-fixed", "1Gi").await;
    let _: BrotrDeployment = create(&c, &ns, managed("grow", "brotr-expandable")).await;
    let _: BrotrDeployment = create(&c, &ns, managed("fixed", "brotr-fixed")).await;
    wait_ready(&c, &ns, "BrotrDeployment", "grow", 120).await;
    wait_ready(&c, &ns, "BrotrDeployment", "fixed", 120).await;

    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(c.clone(), &ns);
    let requested = |name: &'static str| {
        let claims = claims.clone();
        async move {
            let pvc = claims.get(name).await.unwrap();
            pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"]
                .0
                .clone()
        }
    };
    assert_eq!(requested("data-grow-postgres-0").await, "1Gi");
    let bds: Api<BrotrDeployment> = Api::namespaced(c.clone(), &ns);
    let grow = json!({"spec": {"database": {"managed": {"storage": "2Gi"}}}});
    for name in ["grow", "fixed"] {
        bds.patch(name, &PatchParams::default(), &Patch::Merge(&grow))
            .await
            .unwrap();
    }
    // The claim grows; the StatefulSet keeps its (immutable) template and records the size.
    eventually("the claim grown to 2Gi", 60, || async {
        requested("data-grow-postgres-0").await == "2Gi"
    })
    .await;
    wait_condition(
        &c,
        &ns,
        "BrotrDeployment",
        "grow",
        "Ready",
        "True",
        "AllComponentsReady",
    )
    .await;
    let sts: StatefulSet = Api::namespaced(c.clone(), &ns)
        .get("grow-postgres")
        .await
        .unwrap();
    assert_eq!(sts.annotations()["brotr.dev/storage"], "2Gi");
    assert_eq!(sts.annotations()["brotr.dev/claim-storage"], "1Gi");
    let template = &sts.spec.unwrap().volume_claim_templates.unwrap()[0];
    let size = &template
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"];
    assert_eq!(size.0, "1Gi");
    // A class that cannot expand: the pipeline keeps running on the volume it has, Degraded
    // with the reason, a Warning Event, and the claim left as it was.
    wait_condition(
        &c,
        &ns,
        "BrotrDeployment",
        "fixed",
        "Ready",
        "False",
        "StorageNotExpanded",
    )
    .await;
    let fixed = bds.get("fixed").await.unwrap();
    let ready = fixed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(ready.message.contains("stays at 1Gi"), "{}", ready.message);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), &ns);
    let refusal = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("StorageNotExpanded"))
        .expect("a Warning Event StorageNotExpanded");
    let note = refusal.note.unwrap_or_default();
    assert!(
        note.contains("PersistentVolumeClaim data-fixed-postgres-0"),
        "{note}"
    );
    assert_eq!(requested("data-fixed-postgres-0").await, "1Gi");
    let sts: StatefulSet = Api::namespaced(c.clone(), &ns)
        .get("fixed-postgres")
        .await
        .unwrap();
    assert_eq!(sts.annotations()["brotr.dev/storage-refused"], "2Gi");
    // Writes settle: nothing more once the growth is done.
    let writes = op.metric("brotr_operator_writes_total").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(op.metric("brotr_operator_writes_total").await, writes);
    op.assert_never_forbidden().await;
}

/// A StorageClass `class` with no provisioner, and a 1Gi volume of it bound ahead of time to the
/// claim of BrotrDeployment `bd`'s managed database.
async fn storage_for(c: &Client, ns: &str, bd: &str, class: &str) {
    cluster_object(
        c,
        "StorageClass",
        "storageclasses",
        "storage.k8s.io/v1",
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": class},
            "provisioner": "brotr.dev/none",
            "volumeBindingMode": "Immediate",
        }),
    )
    .await;
    volume_for(c, ns, &format!("data-{bd}-postgres-0"), class, "1Gi").await;
}

/// Deleting a pipeline keeps its managed database's volume and password Secret; the pipeline
/// re-created under the same name adopts both, unchanged, so its database starts on the old
/// data with the password that data was made with.
#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn a_recreated_pipeline_adopts_its_kept_database_volume_and_password() {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-recreate").await;
    let op = Operator::start(&[&ns], &[]);
    storage_for(&c, &ns, "again", "brotr-keep").await;
    let bd = || {
        let mut bd = example("brotrdeployment-quickstart.yaml");
        bd["metadata"]["name"] = "again".into();
        bd["spec"]["database"] =
            json!({"managed": {"storage": "1Gi", "storageClassName": "brotr-keep"}});
        bd
    };
    let first: BrotrDeployment = create(&c, &ns, bd()).await;
    let first_uid = first.uid().unwrap();
    wait_ready(&c, &ns, "BrotrDeployment", "again", 120).await;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), &ns);
    let before = secrets.get("again-postgres").await.unwrap();
    assert!(
        before
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "the password Secret goes with the volume, not with the BrotrDeployment"
    );
    let claim = claims.get("data-again-postgres-0").await.unwrap().uid();

    let bds: Api<BrotrDeployment> = Api::namespaced(c.clone(), &ns);
    bds.delete("again", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the pipeline and its children gone", 60, || async {
        children(&c, &ns, &first_uid).await.is_empty()
            && bds.get_opt("again").await.unwrap().is_none()
    })
    .await;
    let kept = secrets.get("again-postgres").await.unwrap();
    assert_eq!(kept.data, before.data, "the password is kept");
    assert_eq!(
        claims.get("data-again-postgres-0").await.unwrap().uid(),
        claim
    );

    let second: BrotrDeployment = create(&c, &ns, bd()).await;
    assert_ne!(second.uid().unwrap(), first_uid);
    wait_ready(&c, &ns, "BrotrDeployment", "again", 120).await;
    let after = secrets.get("again-postgres").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, kept.metadata.resource_version,
        "adopted as it was, not rewritten"
    );
    assert_eq!(
        claims.get("data-again-postgres-0").await.unwrap().uid(),
        claim
    );
    let sts: StatefulSet = Api::namespaced(c.clone(), &ns)
        .get("again-postgres")
        .await
        .unwrap();
    assert!(
        serde_json::to_string(&sts.spec)
            .unwrap()
            .contains("\"again-postgres\""),
        "the database reads its password from the kept Secret"
    );
    op.assert_never_forbidden().await;
}

/// A RelayMonitor of the pipeline `bd`, scheduled, under the key `seat-key`.
fn pipeline_monitor(name: &str, bd: &str) -> Value {
    json!({
        "apiVersion": "brotr.dev/v1alpha1", "kind": "RelayMonitor",
        "metadata": {"name": name},
        "spec": {
            "identity": {"keySecretRef": {"name": "seat-key", "key": "nsec"}},
            "schedule": "*/30 * * * *",
            "targets": {"brotrDeploymentRef": {"name": bd}},
            "settings": {"publish": {"relays": ["wss://relay.example.org"], "geohash": "u0yjj"}},
        },
    })
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn monitors_take_the_seats_of_a_pipelines_connection_budget_in_order() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-seats").await;
    let op = Operator::start(&[&ns], &[]);
    secret(&c, &ns, "pg-app", "uri", "postgres://brotr@db/brotr").await;
    secret(&c, &ns, "pg-api", "uri", "postgres://brotr_api@db/brotr").await;
    secret(&c, &ns, "brotr-key", "nsec", "00").await;
    secret(&c, &ns, "seat-key", "nsec", "00").await;
    let mut v = full_pipeline("seats");
    v["spec"]["database"]["maxConnections"] = 60.into();
    v["spec"]["database"]["monitorConnections"] = 2.into();
    let _: BrotrDeployment = create(&c, &ns, v).await;
    wait_ready(&c, &ns, "BrotrDeployment", "seats", 90).await;

    // Three monitors for two seats: the first two (in order of creation) take them.
    for m in ["m0", "m1", "m2"] {
        let _: RelayMonitor = create(&c, &ns, pipeline_monitor(m, "seats")).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    wait_ready(&c, &ns, "RelayMonitor", "m0", 60).await;
    wait_ready(&c, &ns, "RelayMonitor", "m1", 60).await;
    wait_condition(
        &c,
        &ns,
        "RelayMonitor",
        "m2",
        "Stalled",
        "True",
        "NoConnectionSeat",
    )
    .await;
    let rms: Api<RelayMonitor> = Api::namespaced(c.clone(), &ns);
    let m2 = rms.get("m2").await.unwrap();
    let conditions = m2.status.unwrap().conditions;
    let why = &conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .message;
    assert!(
        why.contains("reserves 2 database connections") && why.contains("monitorConnections"),
        "{why}"
    );
    let crons: Api<CronJob> = Api::namespaced(c.clone(), &ns);
    assert!(
        crons.get_opt("m2-rmon").await.unwrap().is_none(),
        "no pod without a seat"
    );
    let env = serde_json::to_value(crons.get("m0-rmon").await.unwrap()).unwrap()["spec"]
        ["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        .clone();
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "BROTR_DB_MAX_CONNECTIONS" && e["value"] == "1"),
        "{env}"
    );

    // The pipeline's status: its pods' share, and the monitors counted.
    let bds: Api<BrotrDeployment> = Api::namespaced(c.clone(), &ns);
    eventually("the pipeline counts its 3 monitors", 60, || async {
        bds.get("seats")
            .await
            .ok()
            .and_then(|b| b.status?.connections)
            .is_some_and(|s| s.monitors == 3)
    })
    .await;
    let s = bds
        .get("seats")
        .await
        .unwrap()
        .status
        .unwrap()
        .connections
        .unwrap();
    assert_eq!((s.budget, s.monitor_seats), (60, 2));
    assert!(s.per_pod >= 1 && s.at_most <= 60, "{s:?}");

    // A seat freed is taken by the next monitor.
    rms.delete("m0", &DeleteParams::default()).await.unwrap();
    wait_ready(&c, &ns, "RelayMonitor", "m2", 90).await;
    op.assert_never_forbidden().await;
}

/// A managed database's pipeline runs PgBouncer, and its monitors, one client each of it, are
/// not bounded by `monitorConnections`: three monitors for one seat all become Ready.
#[tokio::test]
#[ignore = "needs a Kubernetes API server: KUBECONFIG (e2e/run-tests.sh starts one)"]
async fn a_managed_pipeline_pools_its_connections_and_seats_no_longer_bound_its_monitors() {
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, "e2e-pooler").await;
    let op = Operator::start(&[&ns], &[]);
    storage_for(&c, &ns, "pooled", "brotr-pooled").await;
    secret(&c, &ns, "seat-key", "nsec", "00").await;
    let mut bd = example("brotrdeployment-quickstart.yaml");
    bd["metadata"]["name"] = "pooled".into();
    bd["spec"]["database"] = json!({
        "managed": {"storage": "1Gi", "storageClassName": "brotr-pooled"},
        "monitorConnections": 1,
    });
    let _: BrotrDeployment = create(&c, &ns, bd).await;
    wait_ready(&c, &ns, "BrotrDeployment", "pooled", 120).await;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), &ns);
    let pooler = deployments.get("pooled-pooler").await.unwrap();
    let pod = serde_json::to_value(&pooler.spec).unwrap()["template"]["spec"].clone();
    assert_eq!(
        pod["containers"][0]["image"],
        brotr_operator::plan::Defaults::default().pgbouncer_image
    );
    let services: Api<Service> = Api::namespaced(c.clone(), &ns);
    services.get("pooled-pooler").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    let ini = cms.get("pooled-pooler").await.unwrap().data.unwrap()["pgbouncer.ini"].clone();
    assert!(ini.contains("pool_mode = transaction"), "{ini}");

    for m in ["p0", "p1", "p2"] {
        let _: RelayMonitor = create(&c, &ns, pipeline_monitor(m, "pooled")).await;
    }
    for m in ["p0", "p1", "p2"] {
        wait_ready(&c, &ns, "RelayMonitor", m, 60).await;
    }
    let crons: Api<CronJob> = Api::namespaced(c.clone(), &ns);
    let env = serde_json::to_value(crons.get("p2-rmon").await.unwrap()).unwrap()["spec"]
        ["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        .clone();
    let var = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(var("BROTR_DB_POOLER")["value"], "transaction", "{env}");
    assert!(
        var("DATABASE_URL")["value"]
            .as_str()
            .unwrap_or_default()
            .contains("@pooled-pooler."),
        "{env}"
    );
    op.assert_never_forbidden().await;
}
