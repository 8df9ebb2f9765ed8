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

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, mimalloc.h, the same in its
/// v2 and v3; libmimalloc-sys has no constant for it). The test below checks it by its default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The api hands memory a burst freed back to the kernel at once. mimalloc (v3) purges freed
/// pages 1 s after the free, but only when the thread that freed them allocates again; the
/// api's worker threads go quiet after a burst of large answers, so their resident set stayed
/// at the burst's (78-98 MiB after the archive benchmark's 100-client runs, against 37-46 MiB
/// purging at once; latency within the run-to-run noise; BENCHMARKS.md).
fn purge_freed_memory_at_once() {
    // SAFETY: sets one integer option of the allocator; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

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
    if matches!(cli.command, cli::Command::Api(_)) {
        purge_freed_memory_at_once();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc v3's default purge delay is 1000 ms; no other option defaults to it.
        // SAFETY: reads one integer option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            delay, 1000,
            "option {MI_OPTION_PURGE_DELAY} is not purge_delay"
        );
        purge_freed_memory_at_once();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            0
        );
    }
}
