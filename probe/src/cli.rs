//! Command-line interface (clap): parses the command, builds the services from the one
//! configuration, and runs them through the one loop. `main.rs` maps [`CliError`] to exit codes.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use tracing::info;

use crate::config::{ConfigError, ProbeConfig, Shard};
use crate::identity::{Identity, KeyError};
use crate::model::{RelayUrl, Schema};
use crate::monitor::{Prober, SetupError, render};
use crate::progress::Progress;
use crate::runtime::{Health, ServiceError, Shutdown, run_service};
use crate::seed::DEFAULT_SEED_LIST;
use crate::services::finder::{Finder, SourceError};
use crate::services::maintainer::{Maintainer, Step};
use crate::services::monitor::Monitor;
use crate::services::seeder::Seeder;
use crate::services::synchronizer::{FilterError, Synchronizer};
use crate::services::validator::Validator;
use crate::services::{Ctx, Service};
use crate::store::{self, DatabaseUrl, StoreError};
use crate::telemetry::Telemetry;

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
    /// Serve `/metrics`, `/healthz` and `/readyz` on this address (e.g. `0.0.0.0:8000`).
    #[arg(long, global = true, env = "BROTR_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Allow loopback/private relay addresses (tests and private networks only; disables the
    /// SSRF guard).
    #[arg(long, global = true)]
    pub allow_private: bool,
    /// Wait this many seconds before starting (after the config is checked), so a fleet of
    /// scheduled monitors on one schedule does not start in the same second.
    #[arg(long, global = true, env = "BROTR_START_DELAY", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub start_delay: u64,
    /// PostgreSQL connections this process holds at most (its share of the server's
    /// connection budget; the operator sets it per pod). Ignored for SQLite.
    #[arg(long, global = true, env = "BROTR_DB_MAX_CONNECTIONS", value_name = "N",
          default_value_t = store::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub db_max_connections: u32,
    /// What sits between this process and PostgreSQL: `none` (the server itself) or
    /// `transaction` (a pooler such as PgBouncer in transaction mode: no named prepared
    /// statements, every statement in a transaction, no LISTEN; `migrate` and the api need the
    /// server itself). Ignored for SQLite.
    #[arg(long, global = true, env = "BROTR_DB_POOLER", value_enum,
          default_value_t = store::Pooler::None)]
    pub db_pooler: store::Pooler,
    /// Reach the database through a pooler at `HOST:PORT` (e.g. the PgBouncer the operator
    /// renders in front of an external server): the URL's user, password and database at that
    /// address, without TLS on that hop. Ignored by `migrate` and `pooler-config`, which need
    /// the server itself.
    #[arg(long, global = true, env = "BROTR_DB_VIA", value_name = "HOST:PORT")]
    pub db_via: Option<String>,
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
    /// Create or upgrade the database schema (the only command that changes it).
    Migrate(MigrateArgs),
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
    /// Database maintenance: refresh the statistics views, apply the retention policy, or
    /// delete orphaned rows (one step per run; safe while the services run).
    Maintain(MaintainArgs),
    /// Run the pipeline in one process: migrate, seed, then every service until SIGTERM
    /// (`--once`: one cycle of each, then exit).
    Run(RunArgs),
    /// Serve the archive read-only until SIGTERM: a Nostr relay (NIP-01, 11, 45, 77) on `/`,
    /// an HTTP API under `/v1` (OpenAPI at `/openapi.json`), `/healthz`, `/readyz`, `/metrics`.
    Api(ApiArgs),
    /// Write what a PgBouncer needs to front the database URL's server: `server.ini` (its
    /// `[databases]` entry and server TLS settings, to `%include`) and `userlist.txt` (the URL's
    /// user and password), both readable by the owner only. Used by the pooler the operator
    /// renders in front of an external database.
    PoolerConfig(PoolerConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct PoolerConfigArgs {
    /// Directory to write the two files into (it must exist).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Also create (or update) this PostgreSQL login as a member of `brotr_reader`, the
    /// read-only role the api connects with; its password is read from BROTR_READER_PASSWORD.
    #[arg(long, env = "BROTR_READER_LOGIN", value_name = "ROLE")]
    pub reader_login: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Listen address (default: config `api.listen`, 0.0.0.0:8080).
    #[arg(long, env = "BROTR_API_LISTEN")]
    pub listen: Option<String>,
    /// Directory of the web page's built assets (app.js, app.css: `npm ci && node build.mjs`
    /// in web/). Default: /usr/share/brotr/web when it holds them (the image), else none, and
    /// the page is served without its map.
    #[arg(long, env = "BROTR_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct OnceArgs {
    /// Run one cycle and exit (exit code 1 if it failed, or if every relay or source failed).
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
pub struct MaintainArgs {
    /// The step to run.
    #[arg(value_enum)]
    pub step: Step,
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
    Service(#[from] ServiceError),
    #[error("bad finder config: {0}")]
    Finder(#[from] SourceError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("bad relay URL {url:?}: {reason}")]
    BadRelay { url: String, reason: String },
    #[error("{0} is not reachable")]
    Unreachable(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    MonitorSetup(#[from] SetupError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Api(#[from] crate::services::api::ApiError),
    #[error(
        "--web-dir {0}: no app.js there; build the page's assets with `npm ci && node build.mjs` \
         in web/ and point --web-dir at web/dist"
    )]
    WebDir(String),
    #[error("consensus.publish: {0}")]
    ConsensusPublish(String),
    #[error("pooler-config: cannot write {path}: {source}")]
    PoolerConfig {
        path: String,
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

impl Cli {
    /// The database as given (`--database`), for what needs the server itself.
    fn server_url(&self) -> Result<DatabaseUrl, StoreError> {
        self.database.parse()
    }

    /// The database as this process reaches it: through `--db-via` when given.
    fn database_url(&self) -> Result<DatabaseUrl, StoreError> {
        let url = self.server_url()?;
        match &self.db_via {
            Some(addr) => url.via(addr),
            None => Ok(url),
        }
    }

    /// The PostgreSQL connections this process may hold, and through what.
    fn pool_config(&self) -> store::PoolConfig {
        store::PoolConfig {
            max_connections: self.db_max_connections,
            pooler: self.db_pooler,
        }
    }
}

impl CliError {
    /// 2 for bad usage or configuration (never worth a retry), 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Store(e) => {
                if e.is_config_error() {
                    2
                } else {
                    1
                }
            }
            CliError::Service(_) | CliError::Unreachable(_) => 1,
            CliError::Api(e) => match e {
                crate::services::api::ApiError::BadListen { .. }
                | crate::services::api::ApiError::Bind { .. } => 2,
                crate::services::api::ApiError::Store(s) if s.is_config_error() => 2,
                _ => 1,
            },
            CliError::Config(_)
            | CliError::ConfigFile { .. }
            | CliError::Finder(_)
            | CliError::Filter(_)
            | CliError::BadRelay { .. }
            | CliError::Key(_)
            | CliError::MonitorSetup(_)
            | CliError::Metrics { .. }
            | CliError::SeedFile { .. }
            | CliError::PoolerConfig { .. }
            | CliError::WebDir(_)
            | CliError::ConsensusPublish(_) => 2,
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
    Ok(cfg)
}

/// The services of the pipeline, built once from the configuration (every setting checked
/// here: a bad one exits with code 2 before anything runs).
struct Pipeline {
    finder: Finder,
    validator: Validator,
    monitor: Monitor,
    synchronizer: Synchronizer,
}

/// Where `maintain consensus` publishes (`consensus.publish`): `None` when it is off. On
/// without a key or a relay is a configuration error naming the setting.
fn consensus_publishing(
    cfg: &ProbeConfig,
) -> Result<Option<crate::services::consensus::Publishing>, CliError> {
    let p = &cfg.consensus.publish;
    if !p.enabled {
        return Ok(None);
    }
    let keys = crate::identity::load_key(p.key_file.as_deref(), &p.key_env)?.ok_or_else(|| {
        CliError::ConsensusPublish(format!(
            "needs a key: set keyFile or the environment variable {}",
            p.key_env
        ))
    })?;
    if p.relays.is_empty() {
        return Err(CliError::ConsensusPublish(
            "needs at least one relay".into(),
        ));
    }
    let parse = if cfg.limits.allow_private {
        RelayUrl::parse_allowing_local
    } else {
        RelayUrl::parse
    };
    let relays = p
        .relays
        .iter()
        .map(|r| parse(r).map_err(|e| CliError::ConsensusPublish(format!("relay {r:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(crate::services::consensus::Publishing {
        dialer: crate::net::Dialer::new(
            cfg.networks.clone(),
            cfg.limits.clone(),
            crate::net::tls_config(&[]),
        ),
        keys,
        relays,
        timeout: std::time::Duration::from_secs_f64(p.timeout_secs),
    }))
}

fn validator(cfg: &ProbeConfig) -> Validator {
    Validator::new(
        cfg.validator.clone(),
        cfg.networks.clone(),
        cfg.limits.clone(),
    )
}

fn finder(cfg: &ProbeConfig) -> Result<Finder, CliError> {
    Ok(Finder::new(cfg.finder.clone(), cfg.limits.allow_private)?)
}

fn monitor(cfg: &ProbeConfig, identity: &Identity) -> Result<Monitor, CliError> {
    Ok(Monitor::new(
        cfg.monitor.clone(),
        cfg.networks.clone(),
        cfg.limits.clone(),
        identity.clone(),
        cfg.validator.lifecycle(),
    )?)
}

fn synchronizer(
    cfg: &ProbeConfig,
    identity: &Identity,
    shard: Option<Shard>,
) -> Result<Synchronizer, CliError> {
    Ok(Synchronizer::new(
        cfg.sync.clone(),
        cfg.networks.clone(),
        cfg.limits.clone(),
        identity.clone(),
        cfg.validator.lifecycle(),
        shard,
    )?)
}

impl Pipeline {
    fn new(cfg: &ProbeConfig, shard: Option<Shard>) -> Result<Self, CliError> {
        let identity = Identity::load(&cfg.monitor.publish)?;
        Ok(Pipeline {
            finder: finder(cfg)?,
            validator: validator(cfg),
            monitor: monitor(cfg, &identity)?,
            synchronizer: synchronizer(cfg, &identity, shard)?,
        })
    }

    /// One cycle of each, finder first so what it finds is validated in the same run. Every
    /// service runs; the first failure is reported.
    async fn once(&self, ctx: &Ctx, health: &Health) -> Result<(), CliError> {
        let sd = Shutdown::on_signals();
        let results = [
            run_service(&self.finder, ctx, true, sd.clone(), health).await,
            run_service(&self.validator, ctx, true, sd.clone(), health).await,
            run_service(&self.monitor, ctx, true, sd.clone(), health).await,
            run_service(&self.synchronizer, ctx, true, sd, health).await,
        ];
        results.into_iter().collect::<Result<(), _>>()?;
        Ok(())
    }

    /// Every service until SIGTERM.
    async fn forever(&self, ctx: &Ctx, health: &Health) -> Result<(), CliError> {
        let sd = Shutdown::on_signals();
        tokio::try_join!(
            run_service(&self.finder, ctx, false, sd.clone(), health),
            run_service(&self.validator, ctx, false, sd.clone(), health),
            run_service(&self.monitor, ctx, false, sd.clone(), health),
            run_service(&self.synchronizer, ctx, false, sd, health),
        )?;
        Ok(())
    }
}

/// The seeder for `args`: the file it names, or the bundled list.
fn seeder(args: &SeedArgs, allow_local: bool) -> Result<Seeder, CliError> {
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
    Ok(Seeder {
        source,
        text,
        to_validate: args.to_validate,
        allow_local,
    })
}

/// Binds the metrics port now (a taken port is a clear start-up error), then serves `/metrics`,
/// `/healthz` and `/readyz` there in the background.
async fn serve_telemetry(addr: std::net::SocketAddr, telemetry: Telemetry) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Metrics { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = telemetry.serve(listener).await {
            tracing::error!(%addr, error = %e, "metrics endpoint stopped");
        }
    });
    info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(())
}

/// What a long-running command needs besides its services: the metrics port, and promotions
/// from other processes waking this one's services.
async fn start_background(cli: &Cli, ctx: &Ctx, health: &Health) -> Result<(), CliError> {
    if let Some(addr) = cli.metrics_addr {
        let telemetry = Telemetry {
            metrics: ctx.metrics.clone(),
            health: health.clone(),
            store: ctx.store.clone(),
        };
        serve_telemetry(addr, telemetry).await?;
    }
    if let Some(mut rx) = ctx.store.listen_promotions().await? {
        let wake = ctx.wake.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                wake.relays_promoted();
            }
        });
    }
    Ok(())
}

async fn open_store(cli: &Cli, migrate: bool) -> Result<Arc<dyn store::Archive>, CliError> {
    let (url, mode) = if migrate {
        (cli.server_url()?, store::OpenMode::Migrate)
    } else {
        (cli.database_url()?, store::OpenMode::Check)
    };
    let store = store::open_sized_archive(&url, cli.schema, mode, cli.pool_config()).await?;
    info!(database = %url.redacted(), schema = %store.schema(), "database ready");
    Ok(store)
}

/// Runs one service command (`validate`, `find`, `monitor`, `sync`).
async fn serve<S: Service>(
    cli: &Cli,
    svc: S,
    ctx: &Ctx,
    once: bool,
    health: &Health,
) -> Result<(), CliError> {
    if !once {
        start_background(cli, ctx, health).await?;
    }
    run_service(&svc, ctx, once, Shutdown::on_signals(), health).await?;
    Ok(())
}

/// What a command runs, built before the database is opened: a bad setting exits with code 2
/// before anything is touched.
enum Job {
    Seed(Seeder),
    Maintain(Box<Maintainer>),
    Validate(Validator, bool),
    Find(Finder, bool),
    Monitor(Box<Monitor>, bool),
    Sync(Box<Synchronizer>, bool),
    Run(Box<Pipeline>, Seeder, bool),
}

impl Job {
    fn build(cli: &Cli, cfg: &ProbeConfig) -> Result<Option<Job>, CliError> {
        let identity = || Identity::load(&cfg.monitor.publish);
        Ok(Some(match &cli.command {
            Command::Migrate(_)
            | Command::Check(_)
            | Command::Api(_)
            | Command::PoolerConfig(_) => return Ok(None),
            Command::Seed(a) => Job::Seed(seeder(a, cfg.limits.allow_private)?),
            Command::Maintain(a) => Job::Maintain(Box::new(Maintainer {
                cfg: cfg.maintain.clone(),
                consensus: cfg.consensus.clone(),
                publishing: match a.step {
                    Step::Consensus => consensus_publishing(cfg)?,
                    _ => None,
                },
                step: a.step,
            })),
            Command::Validate(o) => Job::Validate(validator(cfg), o.once),
            Command::Find(o) => Job::Find(finder(cfg)?, o.once),
            Command::Monitor(o) => Job::Monitor(Box::new(monitor(cfg, &identity()?)?), o.once),
            Command::Sync(a) => Job::Sync(
                Box::new(synchronizer(cfg, &identity()?, a.shard)?),
                a.once.once,
            ),
            Command::Run(a) => Job::Run(
                Box::new(Pipeline::new(cfg, a.shard)?),
                seeder(&a.seed, cfg.limits.allow_private)?,
                a.once.once,
            ),
        }))
    }
}

/// Runs the parsed command; `progress` shows live progress lines (or nothing).
pub async fn run(cli: Cli, progress: Progress) -> Result<(), CliError> {
    let cfg = load_config(&cli)?;
    let job = match &cli.command {
        // No database: a one-relay diagnostic.
        Command::Check(args) => return check_one(&cfg, args).await,
        Command::PoolerConfig(args) => return pooler_config(&cli, args),
        Command::Migrate(args) => {
            open_store(&cli, true).await?;
            if let Some(login) = &args.reader_login {
                // From the environment only: an argument would show in the process list.
                let password = std::env::var("BROTR_READER_PASSWORD").unwrap_or_default();
                let url = cli.server_url()?;
                store::ensure_reader_login(&url, login, &password).await?;
                info!(login = %login, "read-only login ready (member of brotr_reader)");
            }
            return Ok(());
        }
        Command::Api(args) => return api(&cli, cfg, args).await,
        _ => Job::build(&cli, &cfg)?,
    };
    let Some(job) = job else { return Ok(()) };
    if cli.start_delay > 0 {
        tokio::time::sleep(std::time::Duration::from_secs(cli.start_delay)).await;
    }
    // Only `migrate` changes the schema; `run` is the laptop mode and migrates first (not
    // through a pooler, which cannot hold the migrations' lock: there the schema must exist).
    let store = open_store(
        &cli,
        matches!(job, Job::Run(..)) && cli.db_pooler == store::Pooler::None,
    )
    .await?;
    let ctx = Ctx::over(store).with_progress(progress);
    let health = Health::default();
    let sd = Shutdown::on_signals();
    match job {
        Job::Seed(svc) => Ok(run_service(&svc, &ctx, true, sd, &health).await?),
        Job::Maintain(svc) => Ok(run_service(svc.as_ref(), &ctx, true, sd, &health).await?),
        Job::Validate(svc, once) => serve(&cli, svc, &ctx, once, &health).await,
        Job::Find(svc, once) => serve(&cli, svc, &ctx, once, &health).await,
        Job::Monitor(svc, once) => serve(&cli, *svc, &ctx, once, &health).await,
        Job::Sync(svc, once) => serve(&cli, *svc, &ctx, once, &health).await,
        Job::Run(pipeline, seeder, once) => {
            run_service(&seeder, &ctx, true, sd, &health).await?;
            let result = if once {
                pipeline.once(&ctx, &health).await
            } else {
                start_background(&cli, &ctx, &health).await?;
                pipeline.forever(&ctx, &health).await
            };
            let c = ctx.store.counts().await?;
            info!(
                relays = c.relays,
                candidates = c.candidates,
                events = c.events,
                "run finished"
            );
            result
        }
    }
}

/// `pooler-config`: PgBouncer's files for the server of `--database`.
fn pooler_config(cli: &Cli, args: &PoolerConfigArgs) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let url = cli.server_url()?;
    let ca = std::env::var("PGSSLROOTCERT")
        .ok()
        .filter(|s| !s.is_empty());
    let files = store::PgBouncerFiles::for_server(&url, ca.as_deref())?;
    for (name, text) in [
        ("server.ini", &files.server_ini),
        ("userlist.txt", &files.userlist),
    ] {
        let path = args.out.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| CliError::PoolerConfig {
                path: path.display().to_string(),
                source,
            })?;
    }
    info!(database = %url.redacted(), out = %args.out.display(), "pooler config written");
    Ok(())
}

/// `api`: the archive, read-only, until SIGTERM.
async fn api(cli: &Cli, cfg: ProbeConfig, args: &ApiArgs) -> Result<(), CliError> {
    use crate::services::api;
    let addr = api::listen_addr(&cfg.api, args.listen.as_deref())?;
    let url = cli.database_url()?;
    let archive = store::open_archive_with(
        &url,
        cli.schema,
        Some(std::time::Duration::from_millis(
            cfg.api.statement_timeout_ms,
        )),
        cli.pool_config(),
    )
    .await?;
    info!(database = %url.redacted(), schema = %archive.schema(), "archive opened");
    let metrics = crate::metrics::Metrics::new();
    // The api serves /metrics, /healthz and /readyz on its own port; `--metrics-addr` adds the
    // port every other service has (where the operator's probes and scrapes look).
    if let Some(maddr) = cli.metrics_addr {
        let telemetry = Telemetry {
            metrics: metrics.clone(),
            health: Health::default(),
            store: archive.clone(),
        };
        serve_telemetry(maddr, telemetry).await?;
    }
    if let Some(dir) = &args.web_dir
        && !dir.join("app.js").is_file()
    {
        return Err(CliError::WebDir(dir.display().to_string()));
    }
    let installed = PathBuf::from(crate::serve::page::INSTALLED_WEB_DIR);
    let web_dir = args
        .web_dir
        .clone()
        .or_else(|| installed.join("app.js").is_file().then_some(installed));
    info!(web_dir = ?web_dir, "the web page's assets");
    let site = crate::serve::Site {
        consensus: cfg.consensus.clone(),
        web_dir,
    };
    api::run(
        archive,
        cfg.api,
        site,
        metrics,
        addr,
        Shutdown::on_signals(),
    )
    .await?;
    Ok(())
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
    let identity = Identity::load(&cfg.monitor.publish)?;
    let prober = Prober::new(
        cfg.monitor.clone(),
        cfg.networks.clone(),
        cfg.limits.clone(),
        identity.keys().clone(),
        &[],
    )?;
    let report = prober.check_relay(&url, crate::runtime::unix_now()).await;
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
