//! The pure half of the controllers: every example validates into a plan whose probe config the
//! probe itself accepts, and the plans render the children the API promises.

use std::path::Path;

use brotr_operator::crd::brotr_deployment::JobState;
use brotr_operator::crd::{BrotrDeployment, RelayMonitor};
use brotr_operator::plan::brotr_deployment::{self, Observed};
use brotr_operator::plan::{Defaults, relay_monitor};
use brotr_operator::render::{ChildKind, Desired};
use brotr_probe::config::ProbeConfig;
use serde_json::{Value, json};

fn example<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let mut v: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["metadata"]["namespace"] = "nostr".into();
    v["metadata"]["uid"] = "uid-1".into();
    serde_json::from_value(v).unwrap()
}

fn bd(name: &str) -> BrotrDeployment {
    example(name)
}

fn bd_with(patch: Value) -> BrotrDeployment {
    let mut v = serde_json::to_value(bd("brotrdeployment-full.yaml")).unwrap();
    merge(&mut v["spec"], patch);
    serde_json::from_value(v).unwrap()
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn done() -> Observed {
    Observed {
        migration: JobState::Complete,
        database_ready: true,
        prometheus_operator: true,
        new_password: "pw".into(),
        ..Default::default()
    }
}

fn find<'a>(children: &'a [Desired], kind: ChildKind, name: &str) -> &'a Value {
    &children
        .iter()
        .find(|d| d.kind == kind && d.name == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name} in {:?}", names(children)))
        .object
}

fn names(children: &[Desired]) -> Vec<(ChildKind, String)> {
    let mut n: Vec<_> = children.iter().map(|d| (d.kind, d.name.clone())).collect();
    n.sort();
    n
}

fn pod(obj: &Value) -> &Value {
    let t = &obj["spec"]["template"]["spec"];
    if t.is_null() {
        &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    } else {
        t
    }
}

fn containers(obj: &Value, field: &str) -> Vec<String> {
    pod(obj)[field]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_valid_example_renders_a_config_the_probe_accepts() {
    let d = Defaults::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let pipeline: BrotrDeployment = bd("brotrdeployment-full.yaml");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let v: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let config = match v["kind"].as_str() {
            Some("BrotrDeployment") => {
                brotr_deployment::validate(&example(name), &d)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .config
            }
            Some("RelayMonitor") => {
                relay_monitor::validate(&example(name), Some(&pipeline), &d)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .config
            }
            other => panic!("{name}: kind {other:?}"),
        };
        ProbeConfig::from_yaml(name, &config.text).unwrap_or_else(|e| panic!("{e}"));
        seen += 1;
    }
    assert!(seen >= 5);
}

#[test]
fn the_full_pipeline_renders_every_child() {
    let p =
        brotr_deployment::validate(&bd("brotrdeployment-full.yaml"), &Defaults::default()).unwrap();
    let c = p.children(&done());
    let migrate = p.migration_job_name();
    let seed = p.seed_job_name(&done()).unwrap();
    let want: Vec<(ChildKind, String)> = {
        let mut w = vec![
            (ChildKind::ConfigMap, "bigbrotr-config".to_owned()),
            (ChildKind::ConfigMap, "bigbrotr-seeds".into()),
            (ChildKind::Job, migrate.clone()),
            (ChildKind::Job, seed.clone()),
            (ChildKind::Deployment, "bigbrotr-finder".into()),
            (ChildKind::Deployment, "bigbrotr-validator".into()),
            (ChildKind::Deployment, "bigbrotr-monitor".into()),
            (ChildKind::StatefulSet, "bigbrotr-sync".into()),
            (ChildKind::Service, "bigbrotr-metrics".into()),
            (ChildKind::CronJob, "bigbrotr-refresh".into()),
            (ChildKind::CronJob, "bigbrotr-retention".into()),
            (ChildKind::CronJob, "bigbrotr-cleanup".into()),
            (ChildKind::CronJob, "bigbrotr-consensus".into()),
            (ChildKind::ServiceMonitor, "bigbrotr-metrics".into()),
            (ChildKind::Deployment, "bigbrotr-api".into()),
            (ChildKind::Service, "bigbrotr-api".into()),
            (ChildKind::Ingress, "bigbrotr-api".into()),
            (ChildKind::PodDisruptionBudget, "bigbrotr-api".into()),
        ];
        w.sort();
        w
    };
    assert_eq!(names(&c), want);

    // Tor: a native sidecar where relays are contacted, not in the finder.
    for name in ["bigbrotr-validator", "bigbrotr-monitor"] {
        assert_eq!(
            containers(find(&c, ChildKind::Deployment, name), "initContainers"),
            ["tor"]
        );
    }
    assert_eq!(
        containers(
            find(&c, ChildKind::StatefulSet, "bigbrotr-sync"),
            "initContainers"
        ),
        ["tor"]
    );
    assert!(
        containers(
            find(&c, ChildKind::Deployment, "bigbrotr-finder"),
            "initContainers"
        )
        .is_empty()
    );
    let cfg = ProbeConfig::from_yaml("t", &p.config.text).unwrap();
    assert_eq!(
        cfg.networks.tor.proxy_url.as_deref(),
        Some("socks5h://127.0.0.1:9050")
    );
    assert_eq!(cfg.finder.interval_secs, 3600);
    assert_eq!(cfg.sync.interval_secs, 900);
    assert_eq!(cfg.validator.chunk_size, 50);
    assert_eq!(
        cfg.monitor.publish.key_file.as_deref(),
        Some("/etc/brotr/key/key")
    );
    assert!(
        cfg.monitor
            .geoip
            .city_db
            .unwrap()
            .starts_with("/var/lib/brotr/geoip/")
    );

    // Shards: a StatefulSet of 3, each pod its own shard.
    let sts = find(&c, ChildKind::StatefulSet, "bigbrotr-sync");
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let args = pod(sts)["containers"][0]["args"].as_array().unwrap();
    assert_eq!(
        args[..3],
        [json!("sync"), json!("--shard"), json!("$(POD_INDEX)/3")]
    );

    // The migration gates everything and fails at once on exit 2.
    let job = find(&c, ChildKind::Job, &migrate);
    assert_eq!(pod(job)["containers"][0]["args"][0], "migrate");
    assert_eq!(
        job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"],
        json!([2])
    );
    let gated = p.children(&Observed {
        migration: JobState::Running,
        ..done()
    });
    assert_eq!(names(&gated), vec![(ChildKind::Job, migrate)]);
    assert!(
        !p.desired(&Observed {
            migration: JobState::Running,
            ..done()
        })
        .1,
        "partial: nothing is swept"
    );
    assert!(p.desired(&done()).1);

    // Pod overrides and hardening everywhere.
    for d in &c {
        let spec = pod(&d.object);
        if spec.is_null() {
            continue;
        }
        assert_eq!(spec["nodeSelector"]["pool"], "nostr", "{}", d.name);
        assert_eq!(spec["automountServiceAccountToken"], false, "{}", d.name);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{}", d.name);
    }
    // The seeder reads its list from the seeds ConfigMap.
    let seed_job = find(&c, ChildKind::Job, &seed);
    let seed_args = pod(seed_job)["containers"][0]["args"].as_array().unwrap();
    assert!(seed_args.contains(&json!("/etc/brotr/relays/relays.txt")));
    assert_eq!(
        find(&c, ChildKind::ConfigMap, "bigbrotr-seeds")["data"]["relays.txt"],
        "wss://relay.damus.io\nwss://nos.lol\n"
    );
}

#[test]
fn the_quick_start_runs_its_own_database_and_the_defaults() {
    let p =
        brotr_deployment::validate(&bd("brotrdeployment-quickstart.yaml"), &Defaults::default())
            .unwrap();
    let gated = p.children(&Observed {
        new_password: "s3cret".into(),
        ..Default::default()
    });
    // The migration waits for the database.
    assert!(
        !gated.iter().any(|d| d.kind == ChildKind::Job),
        "{:?}",
        names(&gated)
    );
    let migrating = p.children(&Observed {
        database_ready: true,
        ..Default::default()
    });
    assert!(migrating.iter().any(|d| d.name == p.migration_job_name()));
    // A database that restarts after the migration does not gate the pipeline again.
    let (c, whole) = p.desired(&Observed {
        migration: JobState::Complete,
        database_ready: false,
        ..Default::default()
    });
    assert!(whole && c.iter().any(|d| d.name == "quickstart-finder"));
    let kinds: Vec<_> = names(&gated);
    assert!(kinds.contains(&(ChildKind::StatefulSet, "quickstart-postgres".into())));
    assert!(kinds.contains(&(ChildKind::Service, "quickstart-postgres".into())));
    let secret = gated.iter().find(|d| d.kind == ChildKind::Secret).unwrap();
    assert!(
        secret.create_only,
        "the password is generated once, never rewritten"
    );
    assert_eq!(
        secret.object["stringData"]["uri"],
        "postgres://brotr:s3cret@quickstart-postgres.nostr.svc:5432/brotr"
    );
    // It goes with the volume, which outlives the BrotrDeployment: no owner reference, and a
    // BrotrDeployment re-created under the same name adopts it.
    assert!(secret.retained);
    assert!(
        secret.object["metadata"].get("ownerReferences").is_none(),
        "{}",
        secret.object["metadata"]
    );
    assert_eq!(
        secret.object["metadata"]["labels"]["app.kubernetes.io/instance"],
        "quickstart"
    );
    let sts = find(&gated, ChildKind::StatefulSet, "quickstart-postgres");
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    let c = p.children(&done());
    // Every service, the bundled seed list, the maintenance jobs; no Prometheus objects unless
    // asked for.
    for name in [
        "quickstart-finder",
        "quickstart-validator",
        "quickstart-monitor",
    ] {
        find(&c, ChildKind::Deployment, name);
    }
    assert_eq!(
        find(&c, ChildKind::StatefulSet, "quickstart-sync")["spec"]["replicas"],
        1
    );
    assert!(!c.iter().any(|d| d.kind == ChildKind::ServiceMonitor));
    let seed = p.seed_job_name(&done()).unwrap();
    let args = pod(find(&c, ChildKind::Job, &seed))["containers"][0]["args"].clone();
    assert!(
        !args.as_array().unwrap().contains(&json!("--file")),
        "bundled list: {args}"
    );
    let env =
        pod(find(&c, ChildKind::Deployment, "quickstart-monitor"))["containers"][0]["env"].clone();
    assert!(env.to_string().contains("quickstart-postgres"), "{env}");
    // No GeoIP source: the geo and net checks are off rather than failing every cycle.
    let cfg = ProbeConfig::from_yaml("t", &p.config.text).unwrap();
    assert!(!cfg.monitor.checks.geo.enabled && !cfg.monitor.checks.net.enabled);
}

#[test]
fn edits_change_exactly_the_children_they_concern() {
    let d = Defaults::default();
    let before = brotr_deployment::validate(&bd("brotrdeployment-full.yaml"), &d)
        .unwrap()
        .children(&done());
    let after = brotr_deployment::validate(
        &bd_with(json!({"finder": {"enabled": false}, "synchronizer": {"shards": 4}, "validator": {"interval": "4h"}})),
        &d,
    )
    .unwrap()
    .children(&done());
    let hashes = |c: &[Desired]| -> std::collections::BTreeMap<(ChildKind, String), String> {
        c.iter()
            .map(|d| ((d.kind, d.name.clone()), d.hash().to_owned()))
            .collect()
    };
    let (b, a) = (hashes(&before), hashes(&after));
    let changed: Vec<_> = b
        .iter()
        .filter(|(k, h)| a.get(*k) != Some(*h))
        .map(|(k, _)| k.1.clone())
        .collect();
    // The finder goes; the shards and the validator's interval change their workloads and the
    // config file; nothing else is rewritten.
    assert_eq!(
        changed,
        [
            "bigbrotr-config",
            "bigbrotr-finder",
            "bigbrotr-validator",
            "bigbrotr-sync"
        ],
        "{changed:?}"
    );
    assert!(!a.contains_key(&(ChildKind::Deployment, "bigbrotr-finder".into())));
}

#[test]
fn stopped_scales_to_zero_and_suspends_the_jobs() {
    let p = brotr_deployment::validate(&bd_with(json!({"stopped": true})), &Defaults::default())
        .unwrap();
    let c = p.children(&done());
    for d in &c {
        match d.kind {
            ChildKind::Deployment | ChildKind::StatefulSet => {
                assert_eq!(d.object["spec"]["replicas"], 0, "{}", d.name)
            }
            ChildKind::CronJob => assert_eq!(d.object["spec"]["suspend"], true, "{}", d.name),
            _ => {}
        }
    }
    assert!(p.seed_job_name(&done()).is_some());
    assert!(
        !c.iter().any(|d| d.name.contains("-seed-")),
        "no seeding while stopped"
    );
}

#[test]
fn a_setting_the_probe_refuses_is_an_invalid_spec_naming_the_field() {
    let bad =
        bd_with(json!({"synchronizer": {"settings": {"filters": [{"kinds": [1], "until": 5}]}}}));
    let err = brotr_deployment::validate(&bad, &Defaults::default()).unwrap_err();
    assert!(
        err.0.starts_with("spec.synchronizer.settings.filters"),
        "{err}"
    );
    let bad = bd_with(json!({"networks": {"loki": {"enabled": true}}}));
    let err = brotr_deployment::validate(&bad, &Defaults::default()).unwrap_err();
    assert!(err.0.contains("spec.networks.loki"), "{err}");
}

#[test]
fn child_names_stay_valid_at_the_longest_resource_names() {
    let d = Defaults::default();
    let mut b = bd("brotrdeployment-full.yaml");
    b.metadata.name = Some("a".repeat(40));
    let p = brotr_deployment::validate(&b, &d).unwrap();
    for c in p.children(&done()) {
        let max = match c.kind {
            ChildKind::StatefulSet | ChildKind::CronJob => 52,
            ChildKind::Job => 57, // its pods add "-xxxxx"
            _ => 63,
        };
        assert!(
            c.name.len() <= max,
            "{:?} {} ({} chars)",
            c.kind,
            c.name,
            c.name.len()
        );
    }
    let mut m: RelayMonitor = example("relaymonitor-scheduled.yaml");
    m.metadata.name = Some("m".repeat(47));
    let plan = relay_monitor::validate(&m, Some(&bd("brotrdeployment-full.yaml")), &d).unwrap();
    for c in plan.children() {
        assert!(c.name.len() <= 52, "{}", c.name);
    }
}

#[test]
fn a_scheduled_monitor_of_a_pipeline_uses_its_database_under_its_own_key() {
    let d = Defaults::default();
    let pipeline = bd("brotrdeployment-full.yaml");
    let m: RelayMonitor = example("relaymonitor-scheduled.yaml");
    let plan = relay_monitor::validate(&m, Some(&pipeline), &d).unwrap();
    let c = plan.children();
    assert_eq!(
        names(&c),
        vec![
            (ChildKind::ConfigMap, "eu-west-rmon".to_owned()),
            (ChildKind::CronJob, "eu-west-rmon".to_owned()),
        ]
    );
    let cron = find(&c, ChildKind::CronJob, "eu-west-rmon");
    assert_eq!(cron["spec"]["schedule"], "*/30 * * * *");
    let probe = &pod(cron)["containers"][0];
    let args: Vec<&str> = probe["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "monitor");
    assert!(args.contains(&"--once"));
    let delay = args[args.iter().position(|a| *a == "--start-delay").unwrap() + 1];
    assert!(delay.parse::<u64>().unwrap() < 60);
    assert!(
        probe["env"].to_string().contains("pg-app"),
        "the pipeline's database"
    );
    assert_eq!(containers(cron, "initContainers"), ["tor"]);
    let volumes = pod(cron)["volumes"].to_string();
    assert!(
        volumes.contains("eu-west-key") && volumes.contains("geolite2"),
        "{volumes}"
    );
    // A missing BrotrDeployment is not a plan.
    assert!(relay_monitor::validate(&m, None, &d).is_err());
}

#[test]
fn a_monitor_of_a_static_list_loads_it_into_its_own_sqlite_file() {
    let d = Defaults::default();
    let m: RelayMonitor = example("relaymonitor-interval.yaml");
    let plan = relay_monitor::validate(&m, None, &d).unwrap();
    let c = plan.children();
    let cm = find(&c, ChildKind::ConfigMap, "static-list-rmon");
    assert_eq!(
        cm["data"]["relays.txt"],
        "wss://relay.damus.io\nwss://nos.lol\n"
    );
    let dep = find(&c, ChildKind::Deployment, "static-list-rmon");
    assert_eq!(containers(dep, "initContainers"), ["migrate", "seed"]);
    let seed = pod(dep)["initContainers"][1]["args"].as_array().unwrap();
    assert_eq!(
        seed[..5].to_vec(),
        [
            "seed",
            "--file",
            "/etc/brotr/relays/relays.txt",
            "--to-validate",
            "false"
        ]
        .map(Value::from)
    );
    assert!(
        pod(dep)["containers"][0]["env"]
            .to_string()
            .contains("/var/lib/brotr/data/brotr.db")
    );
    let cfg = ProbeConfig::from_yaml("t", &plan.config.text).unwrap();
    assert_eq!(cfg.monitor.interval_secs, 1800);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
}

#[test]
fn an_interval_monitor_rolls_when_its_configmap_list_changes() {
    let d = Defaults::default();
    let mut m: RelayMonitor = example("relaymonitor-configmap.yaml");
    m.spec.schedule = None;
    m.spec.interval = Some("1h".into());
    let mut plan = relay_monitor::validate(&m, None, &d).unwrap();
    let annotations = |plan: &relay_monitor::Monitor| {
        let c = plan.children();
        let dep = find(&c, ChildKind::Deployment, "from-configmap-rmon");
        dep["spec"]["template"]["metadata"]["annotations"].clone()
    };
    plan.relays_hash = Some("aaaa".into());
    let before = annotations(&plan);
    assert_eq!(before["brotr.dev/relays-hash"], "aaaa");
    plan.relays_hash = Some("bbbb".into());
    let after = annotations(&plan);
    assert_ne!(before, after, "an edited list must change the pod template");
    assert_eq!(
        before["brotr.dev/config-hash"],
        after["brotr.dev/config-hash"]
    );
}

fn env_of(obj: &Value, var: &str) -> Value {
    pod(obj)["containers"][0]["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == var).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn the_api_on_a_managed_database_reads_through_its_own_read_only_login() {
    let mut quick: BrotrDeployment = bd("brotrdeployment-quickstart.yaml");
    let without = brotr_deployment::validate(&quick, &Defaults::default()).unwrap();
    quick.spec.api = Some(serde_json::from_value(json!({})).unwrap());
    let p = brotr_deployment::validate(&quick, &Defaults::default()).unwrap();
    let obs = Observed {
        new_reader_password: "r3ad".into(),
        ..done()
    };
    let c = p.children(&obs);
    // The login's Secret: generated once, never rewritten; the api's URL names the login.
    let secret = c
        .iter()
        .find(|d| d.kind == ChildKind::Secret && d.name == "quickstart-api-db")
        .expect("the read-only login's Secret");
    assert!(secret.create_only);
    // Owned: the migration Job sets the login's password from it, so a new one is fine.
    assert!(!secret.retained);
    assert!(secret.object["metadata"]["ownerReferences"].is_array());
    assert_eq!(
        secret.object["stringData"]["uri"],
        "postgres://brotr_api:r3ad@quickstart-postgres.nostr.svc:5432/brotr"
    );
    // The migration Job creates the login: a new Job when the api is first wanted.
    assert_ne!(p.migration_job_name(), without.migration_job_name());
    let job = find(&c, ChildKind::Job, &p.migration_job_name());
    assert_eq!(env_of(job, "BROTR_READER_LOGIN")["value"], "brotr_api");
    assert_eq!(
        env_of(job, "BROTR_READER_PASSWORD")["valueFrom"]["secretKeyRef"],
        json!({"name": "quickstart-api-db", "key": "password", "optional": false})
    );
    // Without the api, the migration Job knows nothing of a login.
    let plain = without.children(&done());
    let job = find(&plain, ChildKind::Job, &without.migration_job_name());
    assert!(env_of(job, "BROTR_READER_LOGIN").is_null());
    assert!(!plain.iter().any(|d| d.name.starts_with("quickstart-api")));

    // The pods: `brotr-probe api`, the read-only URL, readiness on /readyz, both ports.
    let d = find(&c, ChildKind::Deployment, "quickstart-api");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    let main = &pod(d)["containers"][0];
    assert_eq!(main["args"][0], "api");
    assert_eq!(
        env_of(d, "DATABASE_URL")["valueFrom"]["secretKeyRef"],
        json!({"name": "quickstart-api-db", "key": "uri", "optional": false})
    );
    assert_eq!(main["readinessProbe"]["httpGet"]["path"], "/readyz");
    let ports: Vec<_> = main["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("metrics", 9090), ("api", 8080)]);
    // No Nostr key, no Tor: it talks to no relay.
    assert!(!pod(d).to_string().contains("/etc/brotr/key"));
    assert!(containers(d, "initContainers").is_empty());
    let svc = find(&c, ChildKind::Service, "quickstart-api");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "api");
    assert_eq!(
        svc["spec"]["selector"]["app.kubernetes.io/component"],
        "api"
    );
    // One replica: no Ingress asked for, no PodDisruptionBudget.
    assert!(
        !c.iter()
            .any(|d| matches!(d.kind, ChildKind::Ingress | ChildKind::PodDisruptionBudget))
    );
    // It listens where the Service points.
    assert_eq!(
        (&main["args"][1], &main["args"][2]),
        (&json!("--listen"), &json!("0.0.0.0:8080"))
    );
    let st = p.api_status().unwrap();
    assert_eq!(st.endpoint, "ws://quickstart-api.nostr.svc");
    assert_eq!(st.public_endpoint, None);
}

#[test]
fn the_api_behind_an_ingress_with_replicas_gets_a_disruption_budget() {
    let p =
        brotr_deployment::validate(&bd("brotrdeployment-full.yaml"), &Defaults::default()).unwrap();
    let c = p.children(&done());
    let d = find(&c, ChildKind::Deployment, "bigbrotr-api");
    assert_eq!(d["spec"]["replicas"], 2);
    // The user's read-only URL, and the pipeline's database CA if it has one.
    assert_eq!(
        env_of(d, "DATABASE_URL")["valueFrom"]["secretKeyRef"]["name"],
        "pg-api"
    );
    assert_eq!(
        pod(d)["containers"][0]["resources"]["limits"]["memory"],
        "256Mi"
    );
    // On an external database the operator creates no login.
    assert!(!c.iter().any(|d| d.name == "bigbrotr-api-db"));
    let job = find(&c, ChildKind::Job, &p.migration_job_name());
    assert!(env_of(job, "BROTR_READER_LOGIN").is_null());
    let ing = find(&c, ChildKind::Ingress, "bigbrotr-api");
    assert_eq!(ing["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(ing["spec"]["ingressClassName"], "nginx");
    assert_eq!(ing["spec"]["rules"][0]["host"], "archive.example.org");
    // The public routes only: not /metrics, /healthz, /readyz.
    let paths = ing["spec"]["rules"][0]["http"]["paths"].as_array().unwrap();
    let routes: Vec<_> = paths
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["pathType"].as_str().unwrap(),
                p["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(routes, ["Exact /", "Prefix /v1", "Exact /openapi.json"]);
    for p in paths {
        assert_eq!(
            p["backend"]["service"],
            json!({"name": "bigbrotr-api", "port": {"number": 80}})
        );
    }
    assert_eq!(
        ing["spec"]["tls"][0],
        json!({"hosts": ["archive.example.org"], "secretName": "archive-tls"})
    );
    let pdb = find(&c, ChildKind::PodDisruptionBudget, "bigbrotr-api");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "api"
    );
    let cfg = ProbeConfig::from_yaml("t", &p.config.text).unwrap();
    assert_eq!(
        (
            cfg.api.name.as_str(),
            cfg.api.max_limit,
            cfg.api.requests_per_second
        ),
        ("Example archive", 500, 20)
    );
    let st = p.api_status().unwrap();
    assert_eq!(
        st.public_endpoint.as_deref(),
        Some("wss://archive.example.org")
    );

    // Another port and type; stopped scales it to zero.
    let p = brotr_deployment::validate(
        &bd_with(json!({"api": {"service": {"type": "NodePort", "port": 8443}}, "stopped": true})),
        &Defaults::default(),
    )
    .unwrap();
    let c = p.children(&done());
    let svc = find(&c, ChildKind::Service, "bigbrotr-api");
    assert_eq!(
        (&svc["spec"]["type"], &svc["spec"]["ports"][0]["port"]),
        (&json!("NodePort"), &json!(8443))
    );
    assert_eq!(
        find(&c, ChildKind::Deployment, "bigbrotr-api")["spec"]["replicas"],
        0
    );
    assert_eq!(
        p.api_status().unwrap().endpoint,
        "ws://bigbrotr-api.nostr.svc:8443"
    );

    // enabled: false renders nothing of it.
    let p = brotr_deployment::validate(
        &bd_with(json!({"api": {"enabled": false}})),
        &Defaults::default(),
    )
    .unwrap();
    let c = p.children(&done());
    assert!(
        !c.iter().any(|d| d.name.starts_with("bigbrotr-api")),
        "{:?}",
        names(&c)
    );
    assert_eq!(p.api_status(), None);
}

#[test]
fn an_api_that_cannot_be_given_a_read_only_login_is_an_invalid_spec() {
    // External database, no read-only URL: the operator will not hand the api the pipeline's
    // read-write credentials.
    let mut v = serde_json::to_value(bd("brotrdeployment-full.yaml")).unwrap();
    v["spec"]["api"]
        .as_object_mut()
        .unwrap()
        .remove("databaseUrlSecretRef");
    let err = brotr_deployment::validate(&serde_json::from_value(v).unwrap(), &Defaults::default())
        .unwrap_err();
    assert!(err.0.contains("spec.api.databaseUrlSecretRef"), "{}", err.0);
    assert!(err.0.contains("brotr_reader"), "{}", err.0);
    // A setting the probe refuses names its field.
    let err = brotr_deployment::validate(
        &bd_with(json!({"api": {"settings": {"maxLimit": 0}}})),
        &Defaults::default(),
    )
    .unwrap_err();
    assert!(err.0.contains("spec.api.settings"), "{}", err.0);
}

/// Every connecting pod's `BROTR_DB_MAX_CONNECTIONS`, by child (kind, name).
fn pool_sizes(children: &[Desired]) -> Vec<(ChildKind, String, i32)> {
    children
        .iter()
        .filter_map(|d| {
            let v = env_of(&d.object, "BROTR_DB_MAX_CONNECTIONS");
            let n = v["value"].as_str()?.parse().ok()?;
            Some((d.kind, d.name.clone(), n))
        })
        .collect()
}

#[test]
fn the_connection_budget_gives_every_pipeline_pod_its_share() {
    let d = Defaults::default();
    // The full example: finder, validator, monitor, shards, the api with its replicas and the
    // one its rollout adds, migration and seed Jobs, four maintenance CronJobs (with the api,
    // the consensus round is one).
    let plan = brotr_deployment::validate(&bd("brotrdeployment-full.yaml"), &d).unwrap();
    let split = plan.connections;
    let shards = plan.sync.as_ref().unwrap().0;
    let api = plan.api.as_ref().unwrap().replicas;
    assert_eq!(split.pipeline_pods, 3 + shards + api + 1 + 2 + 4);
    assert_eq!(split.budget.total, 80);
    let even = ((80 - 20) / split.pipeline_pods).min(8);
    assert!(
        split.per_pod <= even && split.per_pod * 2 > even && split.per_pod.count_ones() == 1,
        "{split:?}: the largest power of two within the even share"
    );
    let c = plan.children(&done());
    let sizes = pool_sizes(&c);
    // Every probe pod: 3 services, the shards' StatefulSet, the api, 4 CronJobs (the Jobs are
    // rendered once their turn comes).
    assert!(sizes.len() >= 9, "{sizes:?}");
    assert!(
        sizes.iter().all(|(_, _, n)| *n == split.per_pod),
        "{sizes:?}"
    );
    assert!(split.at_most(20) <= 80);

    // A small budget spreads thinner; the status figure stays within it.
    let small = brotr_deployment::validate(
        &bd_with(json!({"database": {"maxConnections": 40, "monitorConnections": 10}})),
        &d,
    )
    .unwrap()
    .connections;
    assert_eq!(small.pipeline_pods, 15);
    assert_eq!(small.per_pod, 2, "30 over 15 pods");
    assert!(small.at_most(1000) <= 40);
}

#[test]
fn a_budget_the_pods_cannot_fit_in_is_an_invalid_spec_naming_it() {
    let d = Defaults::default();
    let e = brotr_deployment::validate(
        &bd_with(json!({"database": {"maxConnections": 25}, "synchronizer": {"shards": 16}})),
        &d,
    )
    .unwrap_err()
    .0;
    assert!(e.contains("spec.database.maxConnections: 25"), "{e}");
    assert!(e.contains("leave 5 for the pipeline's"), "{e}");
    let e = brotr_deployment::validate(
        &bd_with(json!({"database": {"maxConnections": 10, "monitorConnections": 10}})),
        &d,
    )
    .unwrap_err()
    .0;
    assert!(e.contains("spec.database.monitorConnections: 10"), "{e}");
}

#[test]
fn a_managed_server_is_started_with_room_for_a_budget_past_its_default() {
    let d = Defaults::default();
    let server = |budget: Option<i32>| {
        let mut v = serde_json::to_value(bd("brotrdeployment-quickstart.yaml")).unwrap();
        if let Some(b) = budget {
            v["spec"]["database"]["maxConnections"] = b.into();
        }
        let plan = brotr_deployment::validate(&serde_json::from_value(v).unwrap(), &d).unwrap();
        let c = plan.children(&done());
        let sts = c
            .iter()
            .find(|x| x.kind == ChildKind::StatefulSet && x.name.ends_with("-postgres"))
            .unwrap()
            .object
            .clone();
        pod(&sts)["containers"][0]["args"].clone()
    };
    // The default budget (80) fits PostgreSQL's default: the server is left as it is.
    assert_eq!(server(None), Value::Null);
    assert_eq!(
        server(Some(300)),
        json!(["postgres", "-c", "max_connections=310"])
    );
}

#[test]
fn monitors_of_a_pipeline_take_its_seats_in_order_then_wait() {
    let d = Defaults::default();
    let pipeline = bd_with(json!({"database": {"monitorConnections": 2}}));
    let m: RelayMonitor = example("relaymonitor-scheduled.yaml");
    for position in 0..2 {
        let mut plan = relay_monitor::validate(&m, Some(&pipeline), &d).unwrap();
        plan.seat(&pipeline, position).unwrap();
        let sizes = pool_sizes(&plan.children());
        assert_eq!(sizes.len(), 1, "{sizes:?}");
        assert_eq!(sizes[0].2, 1, "one connection per monitor");
    }
    let mut plan = relay_monitor::validate(&m, Some(&pipeline), &d).unwrap();
    let e = plan.seat(&pipeline, 2).unwrap_err();
    assert!(e.contains("reserves 2 database connections"), "{e}");
    assert!(e.contains("monitorConnections"), "{e}");
    // A monitor of a static list keeps no database: no seat to take.
    let mut own: RelayMonitor = example("relaymonitor-configmap.yaml");
    own.metadata.name = Some("own".into());
    let mut plan = relay_monitor::validate(&own, None, &d).unwrap();
    plan.seat(&pipeline, 99).unwrap();
    assert!(pool_sizes(&plan.children()).is_empty());
}

#[test]
fn a_managed_database_gets_a_pgbouncer_that_all_but_the_migration_and_the_api_go_through() {
    let mut quick: BrotrDeployment = bd("brotrdeployment-quickstart.yaml");
    quick.spec.api = Some(serde_json::from_value(json!({})).unwrap());
    let p = brotr_deployment::validate(&quick, &Defaults::default()).unwrap();
    // Rendered with the database, before the migration: the pods that wait for it need it.
    let gated = p.children(&Observed {
        new_password: "pw".into(),
        ..Default::default()
    });
    let n = names(&gated);
    for kind in [
        ChildKind::Deployment,
        ChildKind::Service,
        ChildKind::ConfigMap,
    ] {
        assert!(n.contains(&(kind, "quickstart-pooler".into())), "{n:?}");
    }
    let c = p.children(&Observed {
        new_reader_password: "r".into(),
        ..done()
    });
    let ini = find(&c, ChildKind::ConfigMap, "quickstart-pooler")["data"]["pgbouncer.ini"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ini.contains("brotr = host=quickstart-postgres.nostr.svc port=5432 dbname=brotr"));
    assert!(ini.contains("pool_mode = transaction"));
    // The budget (80) less what connects directly at each pod's share: the migration Job, the
    // api's replica and the one its rollout adds.
    let pool = 80 - 3 * p.connections.per_pod;
    assert_eq!(p.pooler_server_connections(), pool);
    assert!(
        ini.contains(&format!("max_db_connections = {pool}")),
        "{ini}"
    );
    let pooler = find(&c, ChildKind::Deployment, "quickstart-pooler");
    assert_eq!(
        pod(pooler)["containers"][0]["image"],
        Defaults::default().pgbouncer_image
    );
    // Services, shards, the seed Job and maintenance go through it, in transaction mode.
    let seed = p.seed_job_name(&done()).unwrap();
    for (kind, name) in [
        (ChildKind::Deployment, "quickstart-monitor".to_owned()),
        (ChildKind::StatefulSet, "quickstart-sync".to_owned()),
        (ChildKind::Job, seed),
        (ChildKind::CronJob, "quickstart-refresh".to_owned()),
    ] {
        let obj = find(&c, kind, &name);
        assert_eq!(
            env_of(obj, "BROTR_DB_POOLER")["value"],
            "transaction",
            "{name}"
        );
        let url = env_of(obj, "DATABASE_URL")["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            url.contains("@quickstart-pooler.nostr.svc:5432/"),
            "{name}: {url}"
        );
    }
    // The migrations' lock and the api's LISTEN need the server itself.
    for (kind, name) in [
        (ChildKind::Job, p.migration_job_name()),
        (ChildKind::Deployment, "quickstart-api".to_owned()),
    ] {
        let obj = find(&c, kind, &name);
        assert!(env_of(obj, "BROTR_DB_POOLER").is_null(), "{name}");
        assert!(
            env_of(obj, "DATABASE_URL")["valueFrom"]["secretKeyRef"].is_object(),
            "{name}"
        );
    }
    // Turned off: no pooler, every pod straight to the server.
    let mut off = quick.clone();
    off.spec.database.managed.as_mut().unwrap().pooler =
        Some(serde_json::from_value(json!({"enabled": false})).unwrap());
    let p = brotr_deployment::validate(&off, &Defaults::default()).unwrap();
    let c = p.children(&done());
    assert!(!c.iter().any(|d| d.name == "quickstart-pooler"));
    assert!(
        env_of(
            find(&c, ChildKind::Deployment, "quickstart-monitor"),
            "BROTR_DB_POOLER"
        )
        .is_null()
    );
}

#[test]
fn monitors_of_a_pooled_pipeline_take_no_seat_and_connect_through_the_pooler() {
    let d = Defaults::default();
    let quick: BrotrDeployment = bd("brotrdeployment-quickstart.yaml");
    let mut m: RelayMonitor = example("relaymonitor-scheduled.yaml");
    m.spec.targets.brotr_deployment_ref.as_mut().unwrap().name = "quickstart".into();
    let mut plan = relay_monitor::validate(&m, Some(&quick), &d).unwrap();
    // Far past the 20 seats: the pooler shares its server connections.
    plan.seat(&quick, 500).unwrap();
    let c = plan.children();
    let cron = find(&c, ChildKind::CronJob, "eu-west-rmon");
    assert_eq!(env_of(cron, "BROTR_DB_POOLER")["value"], "transaction");
    assert_eq!(env_of(cron, "BROTR_DB_MAX_CONNECTIONS")["value"], "1");
    // Without the pooler the seats still bound them.
    let mut off = quick.clone();
    off.spec.database.managed.as_mut().unwrap().pooler =
        Some(serde_json::from_value(json!({"enabled": false})).unwrap());
    let mut plan = relay_monitor::validate(&m, Some(&off), &d).unwrap();
    let err = plan.seat(&off, 500).unwrap_err();
    assert!(err.contains("monitorConnections"), "{err}");
}

#[test]
fn an_external_database_can_ask_for_a_pgbouncer_that_reads_the_server_from_its_url_secret() {
    let d = Defaults::default();
    let ext = bd_with(json!({"database": {"external": {
        "urlSecretRef": {"name": "pg-app", "key": "uri"},
        "caSecretRef": {"name": "pg-ca", "key": "ca.crt"},
        "pooler": {}
    }}}));
    let p = brotr_deployment::validate(&ext, &d).unwrap();
    let c = p.children(&done());
    let ini = find(&c, ChildKind::ConfigMap, "bigbrotr-pooler")["data"]["pgbouncer.ini"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ini.contains("%include /run/pgbouncer/server.ini"), "{ini}");
    // The probe's test runs a real PgBouncer on this very file (with its paths and port moved
    // into a temporary directory) in front of a real server.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/pgbouncer-external.ini");
    if std::env::var_os("BROTR_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &ini).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&golden).unwrap_or_default(),
        ini,
        "{} is stale: run this test with BROTR_UPDATE_GOLDEN=1",
        golden.display()
    );
    let pool = p.pooler_server_connections();
    assert!(
        ini.contains(&format!("max_db_connections = {pool}")),
        "{ini}"
    );
    let pooler = pod(find(&c, ChildKind::Deployment, "bigbrotr-pooler"));
    assert_eq!(pooler["containers"][0]["image"], d.pgbouncer_image);
    let init = &pooler["initContainers"][0];
    assert_eq!(init["image"], p.image.reference.as_str(), "the probe image");
    assert!(init["args"].to_string().contains("pooler-config"));
    assert_eq!(
        init["env"][0]["valueFrom"]["secretKeyRef"],
        json!({"name": "pg-app", "key": "uri", "optional": false})
    );
    // The pipeline's pods: the same URL Secret, pointed at the pooler.
    for (kind, name) in [
        (ChildKind::Deployment, "bigbrotr-monitor"),
        (ChildKind::StatefulSet, "bigbrotr-sync"),
        (ChildKind::CronJob, "bigbrotr-refresh"),
    ] {
        let obj = find(&c, kind, name);
        assert_eq!(
            env_of(obj, "BROTR_DB_POOLER")["value"],
            "transaction",
            "{name}"
        );
        assert_eq!(
            env_of(obj, "BROTR_DB_VIA")["value"],
            "bigbrotr-pooler.nostr.svc:5432",
            "{name}"
        );
        assert_eq!(
            env_of(obj, "DATABASE_URL")["valueFrom"]["secretKeyRef"]["name"],
            "pg-app",
            "{name}"
        );
    }
    // The migrations and the api: the server itself.
    for (kind, name) in [
        (ChildKind::Job, p.migration_job_name()),
        (ChildKind::Deployment, "bigbrotr-api".to_owned()),
    ] {
        let obj = find(&c, kind, &name);
        assert!(env_of(obj, "BROTR_DB_VIA").is_null(), "{name}");
        assert!(env_of(obj, "BROTR_DB_POOLER").is_null(), "{name}");
    }
    // A monitor of this pipeline goes through it too, and takes no seat.
    let mut m: RelayMonitor = example("relaymonitor-scheduled.yaml");
    m.spec.targets.brotr_deployment_ref.as_mut().unwrap().name = "bigbrotr".into();
    let mut plan = relay_monitor::validate(&m, Some(&ext), &d).unwrap();
    plan.seat(&ext, 500).unwrap();
    let children = plan.children();
    let cron = find(&children, ChildKind::CronJob, "eu-west-rmon");
    assert_eq!(
        env_of(cron, "BROTR_DB_VIA")["value"],
        "bigbrotr-pooler.nostr.svc:5432"
    );
    // Without the section (or turned off): no pooler, straight to the server.
    for off in [json!(null), json!({"enabled": false})] {
        let mut e = ext.clone();
        e.spec.database.external.as_mut().unwrap().pooler = serde_json::from_value(off).unwrap();
        let p = brotr_deployment::validate(&e, &d).unwrap();
        let c = p.children(&done());
        assert!(!c.iter().any(|d| d.name == "bigbrotr-pooler"));
        assert!(
            env_of(
                find(&c, ChildKind::Deployment, "bigbrotr-monitor"),
                "BROTR_DB_VIA"
            )
            .is_null()
        );
    }
}

#[test]
fn the_consensus_round_runs_with_the_api_and_publishes_with_its_own_key() {
    let d = Defaults::default();
    // With the api: a consensus CronJob, every 30 minutes, carrying no key by default.
    let p = brotr_deployment::validate(&bd("brotrdeployment-full.yaml"), &d).unwrap();
    let c = p.children(&done());
    let cron = find(&c, ChildKind::CronJob, "bigbrotr-consensus");
    let schedule = cron["spec"]["schedule"].as_str().unwrap().to_owned();
    assert!(
        schedule.ends_with(" * * * *") && schedule.contains(','),
        "{schedule}"
    );
    let spec = pod(cron);
    assert_eq!(
        spec["containers"][0]["args"].as_array().unwrap()[..2],
        [json!("maintain"), json!("consensus")],
        "{spec}"
    );
    assert!(!spec["volumes"].to_string().contains("\"key\""), "{spec}");
    // Without the api, none (nothing would read the verdicts), unless asked for.
    let no_api = bd_with(json!({"api": {"enabled": false}}));
    let c = brotr_deployment::validate(&no_api, &d)
        .unwrap()
        .children(&done());
    assert!(
        !c.iter()
            .any(|x| x.kind == ChildKind::CronJob && x.name == "bigbrotr-consensus")
    );
    let asked = bd_with(json!({"api": {"enabled": false}, "maintenance": {"consensus": {}}}));
    let c = brotr_deployment::validate(&asked, &d)
        .unwrap()
        .children(&done());
    find(&c, ChildKind::CronJob, "bigbrotr-consensus");

    // Publishing: the consensus key is mounted into the consensus round's pods only, where the
    // config file says.
    let publishing = bd_with(json!({"maintenance": {
        "consensusKeySecretRef": {"name": "consensus-key", "key": "nsec"},
        "consensusSettings": {"publish": {"enabled": true, "relays": ["wss://relay.example.com"]}},
    }}));
    let p = brotr_deployment::validate(&publishing, &d).unwrap();
    let cfg = ProbeConfig::from_yaml("t", &p.config.text).unwrap();
    assert!(cfg.consensus.publish.enabled);
    assert_eq!(
        cfg.consensus.publish.key_file.as_deref(),
        Some("/etc/brotr/key/key")
    );
    let c = p.children(&done());
    let vols = |name: &str| pod(find(&c, ChildKind::CronJob, name))["volumes"].to_string();
    assert!(
        vols("bigbrotr-consensus").contains("consensus-key"),
        "{}",
        vols("bigbrotr-consensus")
    );
    for other in ["bigbrotr-refresh", "bigbrotr-retention", "bigbrotr-cleanup"] {
        assert!(
            !vols(other).contains("consensus-key"),
            "{other}: {}",
            vols(other)
        );
    }
    for dep in ["bigbrotr-monitor", "bigbrotr-api"] {
        let spec = pod(find(&c, ChildKind::Deployment, dep));
        assert!(
            !spec["volumes"].to_string().contains("consensus-key"),
            "{dep}"
        );
    }
}
