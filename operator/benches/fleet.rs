//! Fleet benchmark: N RelayMonitors created at once against the real control plane, the
//! operator a process under its own least-privilege user. Prints:
//! - seconds from the first create until every monitor is Ready for its generation;
//! - the operator's peak RSS (VmHWM);
//! - reconcile p50/p99 (from its duration histogram);
//! - API requests per minute over an idle period, read from the API server's own counters
//!   (API Priority and Fairness, one FlowSchema for the operator's writes and one for the rest);
//! - writes after a restart (the API server's count and the operator's own).
//!
//! Run by `e2e/bench-fleet.sh` (it starts the control plane). Environment:
//! `BROTR_BENCH_MONITORS` (default 1000), `BROTR_BENCH_IDLE_SECS` (default 300),
//! `BROTR_BENCH_SCHEDULE` (the scheduled half's cron schedule, default `*/30 * * * *`; e.g.
//! `*/2 * * * *` to hold a scheduled round, and its 500 finished Jobs, in the idle window),
//! `BROTR_BENCH_OPERATOR_BIN` (the operator binary; the script passes the `dist` build).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use brotr_operator::crd::RelayMonitor;
use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use support::{Operator, admin, eventually, namespace, secret, setup};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `(writes, other requests)` the API server dispatched for the operator's user.
async fn apiserver_counts(c: &Client) -> (f64, f64) {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = c.request_text(req).await.unwrap_or_default();
    let sum = |schema: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("apiserver_flowcontrol_dispatched_requests_total")
                    && l.contains(&format!("flow_schema=\"{schema}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (sum("brotr-operator-writes"), sum("brotr-operator"))
}

/// A quantile from a Prometheus histogram's cumulative buckets (upper bound of the bucket).
fn quantile(metrics: &str, name: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for l in metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
    {
        let le = l
            .split("le=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("+Inf");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let n: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some(e) => e.1 += n,
            None => buckets.push((le, n)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|b| b.0)
        .unwrap_or(f64::NAN)
}

fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// The resident set now.
fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The resident set now, split into the heap and stacks (anonymous) and the mapped binary and
/// libraries (file).
fn rss_split(pid: u32) -> String {
    format!(
        "anonymous {:.1} MiB, file {:.1} MiB",
        status_mib(pid, "RssAnon:"),
        status_mib(pid, "RssFile:")
    )
}

fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn ready_count(api: &Api<RelayMonitor>) -> usize {
    let list = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .filter(|m| {
            m.status.as_ref().is_some_and(|s| {
                s.observed_generation == m.metadata.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count()
}

#[tokio::main]
async fn main() {
    let n = env_or("BROTR_BENCH_MONITORS", 1000) as usize;
    let idle = env_or("BROTR_BENCH_IDLE_SECS", 300);
    let schedule =
        std::env::var("BROTR_BENCH_SCHEDULE").unwrap_or_else(|_| "*/30 * * * *".to_owned());
    let c = admin().await;
    setup(&c).await;
    let ns = namespace(&c, &format!("bench-fleet-{}", std::process::id())).await;
    secret(&c, &ns, "fleet-key", "nsec", "00").await;
    let op = Operator::start(&[&ns], &[]);
    op.ready().await;
    let api: Api<RelayMonitor> = Api::namespaced(c.clone(), &ns);

    // N monitors at once: half on an interval (a Deployment and a pod each), half on a
    // schedule (a CronJob each), 32 creates in flight.
    let started = Instant::now();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let schedule = schedule.clone();
            async move {
                let mode = if i % 2 == 0 {
                    json!({"interval": "30m"})
                } else {
                    json!({"schedule": schedule})
                };
                let mut spec = json!({
                    "identity": {"keySecretRef": {"name": "fleet-key", "key": "nsec"}},
                    "targets": {"relays": [format!("wss://relay{i}.example.org")]},
                    "settings": {"publish": {"relays": ["wss://relay.example.org"]}},
                });
                spec.as_object_mut()
                    .unwrap()
                    .extend(mode.as_object().unwrap().clone());
                let rm: RelayMonitor = serde_json::from_value(json!({
                    "apiVersion": "brotr.dev/v1alpha1", "kind": "RelayMonitor",
                    "metadata": {"name": format!("m{i}")}, "spec": spec,
                }))
                .unwrap();
                api.create(&PostParams::default(), &rm)
                    .await
                    .expect("create");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let created = started.elapsed();
    eventually(&format!("{n} monitors Ready"), 900, || async {
        ready_count(&api).await == n
    })
    .await;
    let all_ready = started.elapsed();
    let metrics = op.metrics().await;
    let p50 = quantile(&metrics, "brotr_operator_reconcile_duration_seconds", 0.5);
    let p99 = quantile(&metrics, "brotr_operator_reconcile_duration_seconds", 0.99);
    let rss = peak_rss_mib(op.pid());
    let reconciles = op.metric("brotr_operator_reconciles_total").await;
    println!(
        "monitors: {n} ({} interval, {} schedule)",
        n.div_ceil(2),
        n / 2
    );
    println!("created in: {:.1} s", created.as_secs_f64());
    println!("all Ready after: {:.1} s", all_ready.as_secs_f64());
    println!("reconciles: {reconciles}; reconcile p50 <= {p50} s, p99 <= {p99} s");
    println!("operator peak RSS while converging: {rss:.1} MiB");

    // Idle: nothing changes; count what the API server sees from the operator.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (w0, r0) = apiserver_counts(&c).await;
    let own0 = op.writes().await;
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let (w1, r1) = apiserver_counts(&c).await;
    let own1 = op.writes().await;
    let mins = idle as f64 / 60.0;
    // Scheduled runs that fell in the window (each reports itself in its monitor's status).
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(c.clone(), &ns);
    let runs = jobs
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    println!(
        "idle {idle} s: API writes/min {:.2} (operator's own count {:.2}), other requests/min {:.2}; \
         scheduled runs finished meanwhile: {runs}",
        (w1 - w0) / mins,
        (own1 - own0) / mins,
        (r1 - r0) / mins
    );
    println!(
        "operator peak RSS after idle: {:.1} MiB; RSS now {:.1} MiB",
        peak_rss_mib(op.pid()),
        rss_mib(op.pid())
    );

    // Restart: a new process reconciles every monitor and must write nothing.
    let mut op = op;
    op.stop();
    let (w2, _) = apiserver_counts(&c).await;
    let restarted = Instant::now();
    let op = Operator::start(&[&ns], &[]);
    op.ready().await;
    eventually(
        "every monitor reconciled after the restart",
        600,
        || async { op.metric("brotr_operator_reconciles_total").await >= n as f64 },
    )
    .await;
    let settled = restarted.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (w3, _) = apiserver_counts(&c).await;
    println!(
        "restart: {n} reconciles in {:.1} s; API writes {:.0} (operator's own count {:.0}); peak RSS {:.1} MiB; RSS now {:.1} MiB ({})",
        settled.as_secs_f64(),
        (w3 - w2).abs(),
        op.writes().await.abs(),
        peak_rss_mib(op.pid()),
        rss_mib(op.pid()),
        rss_split(op.pid())
    );
    // Two watchdog rounds later (30 s each): what an idle operator holds.
    tokio::time::sleep(Duration::from_secs(70)).await;
    println!(
        "restart + 70 s idle: RSS {:.1} MiB ({}), peak {:.1} MiB",
        rss_mib(op.pid()),
        rss_split(op.pid()),
        peak_rss_mib(op.pid())
    );
    op.assert_never_forbidden().await;
}
