//! `brotr-operator`: `run` the controllers, or print the generated `crd` and `rbac` YAML and
//! `docs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use brotr_operator::controller::run::{self, Options};
use brotr_operator::plan::Defaults;
use brotr_operator::telemetry::{self, Metrics, Readiness};
use brotr_operator::{GENERATED_HEADER, crd, docs, rbac};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Kubernetes operator for Brotr")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print both CRDs as multi-document YAML, or write one file per CRD with --out-dir.
    Crd {
        /// Write `brotr.dev_<plural>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print the least-privilege RBAC the operator needs (ClusterRole, or Role with
    /// --namespaced), or write both into --out-dir.
    Rbac {
        #[arg(long)]
        namespaced: bool,
        /// Print the rule list the Helm chart embeds (without the Lease rule).
        #[arg(long)]
        chart_rules: bool,
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print generated documentation (Markdown) to stdout.
    Docs {
        #[command(subcommand)]
        page: DocsPage,
    },
    /// Run the controllers.
    Run(Box<RunArgs>),
}

#[derive(Subcommand)]
enum DocsPage {
    /// docs/crd-reference.md: every field of both CRDs, with bounds and CEL rules.
    CrdReference,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (repeat for several); all namespaces when absent.
    #[arg(
        long = "namespace",
        env = "BROTR_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, env = "BROTR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader over a Lease in --lease-namespace (for two or more replicas).
    #[arg(long, env = "BROTR_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the leader Lease (the operator's own, usually).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's name (Events and the Lease).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Probe image repository used when a resource names none.
    #[arg(long, env = "BROTR_PROBE_IMAGE")]
    probe_image: Option<String>,
    /// Probe image tag used when a resource names none (default: the operator's version).
    #[arg(long, env = "BROTR_PROBE_TAG")]
    probe_tag: Option<String>,
    /// Tor client image of the sidecar.
    #[arg(long, env = "BROTR_TOR_IMAGE")]
    tor_image: Option<String>,
    /// PostgreSQL image of managed databases.
    #[arg(long, env = "BROTR_POSTGRES_IMAGE")]
    postgres_image: Option<String>,
    /// PgBouncer image of managed databases' poolers (runs `/bin/sh` and `pgbouncer`).
    #[arg(long, env = "BROTR_PGBOUNCER_IMAGE")]
    pgbouncer_image: Option<String>,
    /// Seconds between checks of the caches against the API server (a watch that fell behind
    /// restarts the controllers).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    watchdog_secs: u64,
    /// Reconciles at once per kind.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Log format.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
    /// Log level or tracing filter.
    #[arg(long, env = "BROTR_LOG_LEVEL", default_value = "info,kube=warn")]
    log_level: String,
}

fn write_files(
    dir: &PathBuf,
    header: &str,
    files: Vec<(&'static str, String)>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, yaml) in files {
        let path = dir.join(name);
        std::fs::write(&path, format!("{header}{yaml}"))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir: None } => print!("{}", crd::crds_yaml()?),
        Command::Crd { out_dir: Some(dir) } => {
            write_files(&dir, GENERATED_HEADER, crd::crd_files()?)?
        }
        Command::Rbac {
            out_dir: Some(dir), ..
        } => write_files(&dir, rbac::HEADER, rbac::files()?)?,
        Command::Rbac {
            chart_rules: true, ..
        } => print!("{}", rbac::chart_rules_yaml()?),
        Command::Rbac { namespaced, .. } => print!("{}", rbac::yaml(namespaced)?),
        Command::Docs {
            page: DocsPage::CrdReference,
        } => print!("{}", docs::crd_reference_markdown()),
        Command::Run(args) => {
            brotr_operator::telemetry::limit_malloc_arenas();
            let rt = tokio::runtime::Runtime::new()?;
            if let Err(e) = rt.block_on(operate(*args)) {
                eprintln!("brotr-operator: {e:#}");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

async fn operate(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.log_format == "json", &args.log_level);
    // kube and other crates may pull in different rustls providers; pick one before any TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let mut defaults = Defaults::default();
    if let Some(v) = args.probe_image {
        defaults.probe_repository = v;
    }
    if let Some(v) = args.probe_tag {
        defaults.probe_tag = v;
    }
    if let Some(v) = args.tor_image {
        defaults.tor_image = v;
    }
    if let Some(v) = args.postgres_image {
        defaults.postgres_image = v;
    }
    if let Some(v) = args.pgbouncer_image {
        defaults.pgbouncer_image = v;
    }
    let identity = args
        .identity
        .unwrap_or_else(|| format!("brotr-operator-{}", std::process::id()));
    let metrics = Metrics::new();
    let ready = Readiness::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = {
        let rx = stop_rx.clone();
        async move {
            let mut rx = rx;
            let _ = rx.wait_for(|s| *s).await;
        }
        .shared()
    };
    let server = tokio::spawn(telemetry::serve(
        args.metrics_addr,
        metrics.clone(),
        ready.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let mut leadership = None;
    if args.leader_election {
        tracing::info!(%identity, namespace = %args.lease_namespace, "waiting to lead");
        let lead = run::lead(client.clone(), &args.lease_namespace, &identity);
        tokio::select! {
            rx = lead => leadership = Some(rx.map_err(anyhow::Error::msg)?),
            _ = shutdown.clone() => return Ok(()),
        }
        tracing::info!(%identity, "leading");
    }
    metrics.leader.set(1);
    let opts = Options {
        namespaces: args.namespaces,
        defaults,
        concurrency: args.concurrency,
        identity,
        watchdog_every: Duration::from_secs(args.watchdog_secs),
    };
    let lost = async move {
        match leadership {
            Some(mut rx) => {
                let _ = rx.wait_for(|l| !*l).await;
            }
            None => futures_util::future::pending::<()>().await,
        }
    };
    let mut lost = std::pin::pin!(lost);
    let mut client = client;
    loop {
        let controllers = run::run(
            client.clone(),
            opts.clone(),
            metrics.clone(),
            ready.clone(),
            shutdown.clone(),
        );
        tokio::select! {
            r = controllers => match r.map_err(anyhow::Error::msg)? {
                run::Exit::Shutdown => break,
                run::Exit::StaleCache(why) => {
                    // A new client: its connections are new too. Restarted controllers list
                    // everything again and write nothing that is already right.
                    tracing::error!(%why, "a watch fell behind the API server; restarting the controllers");
                    metrics.watch_restarts.inc();
                    client = kube::Client::try_default()
                        .await
                        .context("no Kubernetes client configuration")?;
                }
            },
            _ = &mut lost => {
                metrics.leader.set(0);
                anyhow::bail!("lost the leader lease; exiting so this replica restarts as a follower");
            }
        }
    }
    let _ = server.await;
    Ok(())
}

use futures_util::FutureExt as _;

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
