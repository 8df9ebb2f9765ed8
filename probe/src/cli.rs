//! Command-line interface (clap). `main.rs` maps [`CliError`] to exit codes.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use tracing::info;

use crate::model::Schema;
use crate::seed::DEFAULT_SEED_LIST;
use crate::services::seeder::{self, SeedOptions};
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
    /// Run the pipeline: migrate if needed, then seed from the bundled list (services follow).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// Seed list file; default: the list bundled with the binary.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Add as candidates for the validator (true) or directly as relays (false).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub to_validate: bool,
    /// Accept loopback and private addresses (tests and private networks only).
    #[arg(long)]
    pub allow_local: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub seed: SeedArgs,
}

fn parse_schema(s: &str) -> Result<Schema, String> {
    s.parse::<Schema>().map_err(|e| e.to_string())
}

/// A failure at the binary's edge, with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
            CliError::SeedFile { .. } => 2,
            CliError::Store(_) => 1,
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn open(cli: &Cli) -> Result<std::sync::Arc<dyn Store>, CliError> {
    let url: DatabaseUrl = cli.database.parse()?;
    let store = store::open(&url, cli.schema).await?;
    info!(database = %url.redacted(), schema = %store.schema(), "database ready");
    Ok(store)
}

async fn seed(store: &dyn Store, args: &SeedArgs) -> Result<(), CliError> {
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
        allow_local: args.allow_local,
        now: now(),
    };
    seeder::seed(store, &source, &text, opts).await?;
    Ok(())
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let store = open(&cli).await?;
    match &cli.command {
        Command::Migrate => Ok(()),
        Command::Seed(args) => seed(store.as_ref(), args).await,
        Command::Run(args) => {
            seed(store.as_ref(), &args.seed).await?;
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
