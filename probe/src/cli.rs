//! Command-line interface (clap). `main.rs` maps [`CliError`] to exit codes.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use tracing::info;

use crate::config::{ConfigError, ProbeConfig, Shard};
use crate::metrics::Metrics;
use crate::model::RelayUrl;
use crate::model::Schema;
use crate::monitor::publish::Publisher;
use crate::monitor::service as monitor_service;
use crate::monitor::{Prober, keys, render};
use crate::net::Dialer;
use crate::net::HttpClient;
use crate::net::dial::tls_config;
use crate::runtime::{LoopConfig, Shutdown, TooManyFailures, run_loop, unix_now};
use crate::seed::DEFAULT_SEED_LIST;
use crate::services::seeder::{self, SeedOptions};
use crate::services::synchronizer::{self, SyncContext};
use crate::services::{finder, validator};
use crate::store::{self, DatabaseUrl, Store, StoreError};

/// Brotr probe: maps, checks and archives Nostr relays.
#[derive(Debug, Parser)]
#[command(name = "brotr-probe", version, about)]
pub struct Cli {
    /// Database: postgres://… or an SQLite file path (default ./brotr.db).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "./brotr.db",
        hide_env_values = true
    )]
    pub database: String,
    /// Storage schema: `full` keeps whole events, `lite` only id, pubkey, created_at, kind and
    /// tag values. Fixed when the database is created; default: the database's, else full.
    #[arg(long, global = true, env = "BROTR_SCHEMA", value_parser = parse_schema)]
    pub schema: Option<Schema>,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or tracing filter (e.g. `debug`, `info,sqlx=warn`).
    #[arg(long, global = true, env = "BROTR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Configuration file (YAML or JSON, see `brotr_probe::config::ProbeConfig`).
    #[arg(long, global = true, env = "BROTR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. `0.0.0.0:8000`) at `/metrics`.
    #[arg(long, global = true, env = "BROTR_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Allow loopback/private relay addresses (tests and private networks only; disables the
    /// SSRF guard).
    #[arg(long, global = true)]
    pub allow_private: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database schema.
    Migrate,
    /// Load relay URLs from a seed list (one per line; `#` comments).
    Seed(SeedArgs),
    /// Validate candidates: promote the ones that answer like Nostr relays.
    Validate(OnceArgs),
    /// Find relay URLs in external APIs (config `finder.sources`) and add them as candidates.
    Find(OnceArgs),
    /// Check one relay with every monitor check (no database) and print a report; exit code 0
    /// when the relay is reachable, 1 otherwise.
    Check(CheckArgs),
    /// Monitor relays: NIP-11 and NIP-66 checks, stored and published as kind 30166 events.
    Monitor(OnceArgs),
    /// Archive the events of every active relay (config `sync`), resuming from per-relay cursors.
    Sync(SyncArgs),
    /// Run the pipeline in one process: migrate if needed, seed, then every service until
    /// SIGTERM (`--once`: one cycle of each, then exit).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct OnceArgs {
    /// Run one cycle and exit (exit code 1 if it failed).
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The relay URL (`wss://…`, `ws://…`).
    pub relay: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub once: OnceArgs,
    /// Sync only the relays whose URL hash is `i` mod `n` (one replica of `n`); overrides
    /// `sync.shard`.
    #[arg(long, value_name = "i/n")]
    pub shard: Option<Shard>,
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// Seed list file; default: the list bundled with the binary.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Add as candidates for the validator (true) or directly as relays (false).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub to_validate: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub seed: SeedArgs,
    #[command(flatten)]
    pub once: OnceArgs,
    /// Shard of the synchronizer (see `sync --shard`).
    #[arg(long, value_name = "i/n")]
    pub shard: Option<Shard>,
}

fn parse_schema(s: &str) -> Result<Schema, String> {
    s.parse::<Schema>().map_err(|e| e.to_string())
}

/// A failure at the binary's edge, with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read config file {path}: {source}")]
    ConfigFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Service(#[from] TooManyFailures),
    #[error("bad finder config: {0}")]
    Finder(#[from] finder::SourceError),
    #[error("{0}")]
    Setup(String),
    #[error("bad relay URL {url:?}: {reason}")]
    BadRelay { url: String, reason: String },
    #[error("{0} is not reachable")]
    Unreachable(String),
    #[error(transparent)]
    Key(#[from] crate::monitor::keys::KeyError),
    #[error(transparent)]
    MonitorSetup(#[from] crate::monitor::SetupError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read seed file {path}: {source}")]
    SeedFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// 2 for bad usage or configuration, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Store(e) if e.is_config_error() => 2,
            CliError::SeedFile { .. } | CliError::Config(_) | CliError::ConfigFile { .. } => 2,
            CliError::Metrics { .. } | CliError::Finder(_) => 2,
            CliError::Setup(_) | CliError::Unreachable(_) => 1,
            CliError::BadRelay { .. } | CliError::Key(_) | CliError::MonitorSetup(_) => 2,
            CliError::Store(_) | CliError::Service(_) => 1,
        }
    }
}

/// The configuration file merged with command-line overrides.
fn load_config(cli: &Cli) -> Result<ProbeConfig, CliError> {
    let mut cfg = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::ConfigFile {
                path: path.display().to_string(),
                source,
            })?;
            ProbeConfig::from_yaml(&path.display().to_string(), &text)?
        }
        None => ProbeConfig::default(),
    };
    if cli.allow_private {
        cfg.limits.allow_private = true;
    }
    finder::check_expressions(&cfg.finder)?;
    Ok(cfg)
}

async fn open(cli: &Cli) -> Result<Arc<dyn Store>, CliError> {
    let url: DatabaseUrl = cli.database.parse()?;
    let store = store::open(&url, cli.schema).await?;
    info!(database = %url.redacted(), schema = %store.schema(), "database ready");
    Ok(store)
}

async fn seed(store: &dyn Store, args: &SeedArgs, allow_local: bool) -> Result<(), CliError> {
    let (source, text) = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::SeedFile {
                path: path.display().to_string(),
                source,
            })?;
            (path.display().to_string(), text)
        }
        None => (
            "<bundled seed list>".to_owned(),
            DEFAULT_SEED_LIST.to_owned(),
        ),
    };
    let opts = SeedOptions {
        to_validate: args.to_validate,
        allow_local,
        now: unix_now(),
    };
    seeder::seed(store, &source, &text, opts).await?;
    Ok(())
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let cfg = load_config(&cli)?;
    if let Command::Check(args) = &cli.command {
        // No database: a one-relay diagnostic.
        return check_one(&cfg, args).await;
    }
    let store = open(&cli).await?;
    let metrics = Metrics::new();
    let long_running = match &cli.command {
        Command::Validate(o)
        | Command::Find(o)
        | Command::Monitor(o)
        | Command::Sync(SyncArgs { once: o, .. })
        | Command::Run(RunArgs { once: o, .. }) => !o.once,
        _ => false,
    };
    if let (Some(addr), true) = (cli.metrics_addr, long_running) {
        // Bind now so a taken port is a clear startup error, then serve in the background.
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| CliError::Metrics { addr, source })?;
        drop(listener);
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = m.serve(addr).await {
                tracing::error!(%addr, error = %e, "metrics endpoint stopped");
            }
        });
        info!(%addr, "serving metrics at /metrics");
    }
    let allow_local = cfg.limits.allow_private;
    match &cli.command {
        Command::Migrate => Ok(()),
        Command::Seed(args) => seed(store.as_ref(), args, allow_local).await,
        Command::Validate(o) => validate_loop(store, &cfg, &metrics, o.once).await,
        Command::Find(o) => find_loop(store, &cfg, &metrics, o.once).await,
        Command::Monitor(o) => monitor_loop(store, &cfg, &metrics, o.once).await,
        Command::Check(_) => Ok(()),
        Command::Sync(a) => sync_loop(store, &cfg, &metrics, a.once.once, a.shard).await,
        Command::Run(args) => {
            seed(store.as_ref(), &args.seed, allow_local).await?;
            if args.once.once {
                // Finder first, so what it finds is validated in the same run.
                find_loop(store.clone(), &cfg, &metrics, true).await?;
                validate_loop(store.clone(), &cfg, &metrics, true).await?;
                monitor_loop(store.clone(), &cfg, &metrics, true).await?;
                sync_loop(store.clone(), &cfg, &metrics, true, args.shard).await?;
            } else {
                tokio::try_join!(
                    find_loop(store.clone(), &cfg, &metrics, false),
                    validate_loop(store.clone(), &cfg, &metrics, false),
                    monitor_loop(store.clone(), &cfg, &metrics, false),
                    sync_loop(store.clone(), &cfg, &metrics, false, args.shard),
                )?;
            }
            let c = store.counts().await?;
            info!(
                relays = c.relays,
                candidates = c.candidates,
                events = c.events,
                "run finished"
            );
            Ok(())
        }
    }
}

async fn find_loop(
    store: Arc<dyn Store>,
    cfg: &ProbeConfig,
    metrics: &Metrics,
    once: bool,
) -> Result<(), CliError> {
    let f = cfg.finder.clone();
    let http = HttpClient::new(
        tls_config(&[]),
        cfg.limits.allow_private,
        std::time::Duration::from_secs_f64(f.timeout_secs),
    )
    .map_err(|e| CliError::Setup(e.to_string()))?;
    let allow_local = cfg.limits.allow_private;
    let loop_cfg = LoopConfig {
        interval_secs: f.interval_secs,
        max_consecutive_failures: f.max_consecutive_failures,
    };
    run_loop(
        "finder",
        &loop_cfg,
        once,
        metrics,
        Shutdown::on_signals(),
        || {
            let (store, http, f, m) = (store.clone(), http.clone(), f.clone(), metrics.clone());
            async move {
                let r =
                    finder::run_cycle(store.as_ref(), &http, &f, allow_local, unix_now()).await?;
                m.items
                    .with_label_values(&["finder", "candidates"])
                    .inc_by(r.candidates);
                m.items
                    .with_label_values(&["finder", "rejected"])
                    .inc_by(r.rejected);
                m.items
                    .with_label_values(&["finder", "source_failed"])
                    .inc_by(r.sources_failed);
                Ok::<(), StoreError>(())
            }
        },
    )
    .await?;
    Ok(())
}

async fn validate_loop(
    store: Arc<dyn Store>,
    cfg: &ProbeConfig,
    metrics: &Metrics,
    once: bool,
) -> Result<(), CliError> {
    let dialer = Dialer::new(cfg.networks.clone(), cfg.limits.clone(), tls_config(&[]));
    let v = cfg.validator.clone();
    let loop_cfg = LoopConfig {
        interval_secs: v.interval_secs,
        max_consecutive_failures: v.max_consecutive_failures,
    };
    run_loop(
        "validator",
        &loop_cfg,
        once,
        metrics,
        Shutdown::on_signals(),
        || {
            let (store, dialer, v, m) = (store.clone(), dialer.clone(), v.clone(), metrics.clone());
            async move {
                let r = validator::run_cycle(store.as_ref(), &dialer, &v, unix_now()).await?;
                m.items
                    .with_label_values(&["validator", "promoted"])
                    .inc_by(r.promoted);
                m.items
                    .with_label_values(&["validator", "failed"])
                    .inc_by(r.failed);
                m.items
                    .with_label_values(&["validator", "pruned"])
                    .inc_by(r.pruned);
                Ok::<(), StoreError>(())
            }
        },
    )
    .await?;
    Ok(())
}

/// The key the synchronizer answers NIP-42 AUTH with: the probe's one identity, the monitor's
/// configured key (`monitor.publish.keyFile` / `keyEnv`), or a fresh ephemeral key when none is
/// set. Never logged.
fn probe_keys(cfg: &ProbeConfig) -> Result<nostr::Keys, CliError> {
    Ok(keys::load(&cfg.monitor.publish)?.unwrap_or_else(nostr::Keys::generate))
}

async fn sync_loop(
    store: Arc<dyn Store>,
    cfg: &ProbeConfig,
    metrics: &Metrics,
    once: bool,
    shard: Option<Shard>,
) -> Result<(), CliError> {
    let shard = match (shard, &cfg.sync.shard) {
        (Some(s), _) => s,
        // Checked when the config was loaded.
        (None, Some(s)) => s.parse().map_err(CliError::Setup)?,
        (None, None) => Shard::ALL,
    };
    let ctx = SyncContext {
        dialer: Dialer::new(cfg.networks.clone(), cfg.limits.clone(), tls_config(&[])),
        keys: probe_keys(cfg)?,
        cfg: cfg.sync.clone(),
        shard,
        lifecycle: cfg.validator.lifecycle(),
        allow_local: cfg.limits.allow_private,
    };
    let loop_cfg = LoopConfig {
        interval_secs: cfg.sync.interval_secs,
        max_consecutive_failures: cfg.sync.max_consecutive_failures,
    };
    run_loop(
        "synchronizer",
        &loop_cfg,
        once,
        metrics,
        Shutdown::on_signals(),
        || {
            let (store, ctx, m) = (store.clone(), ctx.clone(), metrics.clone());
            async move {
                let r = synchronizer::run_cycle(store, &ctx, unix_now()).await?;
                let count = |what: &str, n: u64| {
                    m.items.with_label_values(&["synchronizer", what]).inc_by(n)
                };
                count("events_new", r.events_new);
                count("events_received", r.wire.events_received);
                count("events_rejected", r.rejected.total());
                count("requests", r.wire.requests);
                count("bytes_in", r.wire.bytes_in);
                count("relays_failed", r.relays_failed);
                count("overflow_seconds", r.overflows);
                count("candidates", r.candidates);
                Ok::<(), StoreError>(())
            }
        },
    )
    .await?;
    Ok(())
}

/// The monitor's prober: the configured key (or a throwaway one for AUTH when none is set).
fn prober(cfg: &ProbeConfig) -> Result<(Prober, bool), CliError> {
    let configured = keys::load(&cfg.monitor.publish)?;
    let has_key = configured.is_some();
    let keys = configured.unwrap_or_else(nostr::Keys::generate);
    let p = Prober::new(
        cfg.monitor.clone(),
        cfg.networks.clone(),
        cfg.limits.clone(),
        keys,
        &[],
    )?;
    Ok((p, has_key))
}

async fn check_one(cfg: &ProbeConfig, args: &CheckArgs) -> Result<(), CliError> {
    let parse = if cfg.limits.allow_private {
        RelayUrl::parse_allowing_local
    } else {
        RelayUrl::parse
    };
    let url = parse(&args.relay).map_err(|e| CliError::BadRelay {
        url: args.relay.clone(),
        reason: e.to_string(),
    })?;
    let (prober, _) = prober(cfg)?;
    let report = prober.check_relay(&url, unix_now()).await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render::render_text(&report));
    }
    if report.reachable() {
        Ok(())
    } else {
        Err(CliError::Unreachable(url.as_str().to_owned()))
    }
}

/// The publishing relays that parse (others are logged and skipped).
fn publish_relays(cfg: &ProbeConfig) -> Vec<RelayUrl> {
    cfg.monitor
        .publish
        .relays
        .iter()
        .filter_map(|r| {
            let parsed = if cfg.limits.allow_private {
                RelayUrl::parse_allowing_local(r)
            } else {
                RelayUrl::parse(r)
            };
            parsed
                .map_err(|e| tracing::warn!(relay = %r, error = %e, "publishing relay skipped"))
                .ok()
        })
        .collect()
}

async fn monitor_loop(
    store: Arc<dyn Store>,
    cfg: &ProbeConfig,
    metrics: &Metrics,
    once: bool,
) -> Result<(), CliError> {
    let (prober, has_key) = prober(cfg)?;
    if !has_key {
        tracing::warn!(
            env = %cfg.monitor.publish.key_env,
            "no monitor key configured: checks are stored but nothing is published"
        );
    }
    let publish_timeout = std::time::Duration::from_secs_f64(cfg.monitor.publish.timeout_secs);
    let relays = publish_relays(cfg);
    let policy = cfg.validator.lifecycle();
    let loop_cfg = LoopConfig {
        interval_secs: cfg.monitor.interval_secs,
        max_consecutive_failures: cfg.monitor.max_consecutive_failures,
    };
    run_loop(
        "monitor",
        &loop_cfg,
        once,
        metrics,
        Shutdown::on_signals(),
        || {
            let (store, prober, m, relays) = (
                store.clone(),
                prober.clone(),
                metrics.clone(),
                relays.clone(),
            );
            async move {
                // Connections to publishing relays live for one cycle.
                let mut publisher = (has_key && !relays.is_empty()).then(|| {
                    Publisher::new(
                        prober.dialer.clone(),
                        prober.keys.clone(),
                        relays,
                        publish_timeout,
                    )
                });
                let r = monitor_service::run_cycle(
                    store.as_ref(),
                    &prober,
                    publisher.as_mut(),
                    &policy,
                    unix_now(),
                )
                .await;
                if let Some(p) = publisher {
                    p.close().await;
                }
                let r = r?;
                for (outcome, n) in [
                    ("checked", r.checked),
                    ("reachable", r.reachable),
                    ("published", r.published),
                    ("publish_failed", r.publish_failed),
                ] {
                    m.items.with_label_values(&["monitor", outcome]).inc_by(n);
                }
                // Outcome labels stay bounded: 8 checks × ok/failed.
                for (check, (ok, failed)) in &r.checks {
                    m.items
                        .with_label_values(&["monitor", &format!("{check}_ok")])
                        .inc_by(*ok);
                    m.items
                        .with_label_values(&["monitor", &format!("{check}_failed")])
                        .inc_by(*failed);
                }
                Ok::<(), StoreError>(())
            }
        },
    )
    .await?;
    Ok(())
}
