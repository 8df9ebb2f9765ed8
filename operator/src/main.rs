//! `brotr-operator` binary: `crd` prints (or writes) the CustomResourceDefinitions.

use std::path::PathBuf;

use anyhow::Context;
use brotr_operator::{GENERATED_HEADER, crd};
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
    /// Run the controllers (not built yet).
    Run,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir: None } => {
            print!("{}", crd::crds_yaml()?);
        }
        Command::Crd { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, yaml) in crd::crd_files()? {
                let path = dir.join(name);
                std::fs::write(&path, format!("{GENERATED_HEADER}{yaml}"))
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Run => {
            eprintln!(
                "brotr-operator {}: `run` has no controllers yet; only `crd` is available",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
    Ok(())
}
