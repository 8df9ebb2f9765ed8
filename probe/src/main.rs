//! `brotr-probe` binary: parses the CLI, sets up logging (and progress lines on a terminal),
//! runs, maps errors to exit codes (0 ok, 1 runtime failure, 2 bad usage or configuration).

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use brotr_probe::cli::{self, Cli, LogFormat};
use brotr_probe::progress::Progress;

// mimalloc, not the system allocator: the long-lived services (the api above all) allocate in
// bursts across tokio's worker threads; glibc keeps what a burst freed in per-thread arenas
// (the api stayed at 170 MiB after a load of 500-event answers), mimalloc returns it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat, level: &str, progress: &Progress) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("bad --log-level {level:?}: {e}"))?;
    // Colours only on a terminal: logs piped to files or collectors stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress.writer())
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    // Progress lines for a person at a terminal; plain structured logs otherwise.
    let progress = if std::io::stderr().is_terminal() && cli.log_format == LogFormat::Text {
        Progress::terminal()
    } else {
        Progress::hidden()
    };
    if let Err(msg) = init_logging(cli.log_format, &cli.log_level, &progress) {
        eprintln!("error: {msg}");
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(cli::run(cli, progress)) {
        eprintln!("error: {err}");
        std::process::exit(err.exit_code());
    }
}
