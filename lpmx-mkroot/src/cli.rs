//! The command line of `lpmx-mkroot`; also the source of its man page.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, CommandFactory, Parser};

use lpmx_core::cli::{Failure, open_store, run};
use lpmx_core::container::{Bind, HostPrograms};
use lpmx_core::document::{LayersDocument, read_document, write_document};

use crate::{create, list, remove};

const AFTER_HELP: &str = "\
Examples:
  lpmx-pull debian:bookworm | lpmx-unpack | lpmx-mkroot dev
  lpmx-mkroot --bind /scratch:/scratch dev2 < layers.json
  lpmx-mkroot --list
  lpmx-mkroot --remove dev dev2

A container is $LPMX_HOME/containers/NAME: stack.json (the lpmx.stack
document, see lpmx(7)), upper/ (its writable layer), env (its
environment file) and index (the index of its layers). Removing a container never touches the shared layers.";

/// Create, list and remove lpmx containers.
///
/// With NAME, reads the layers document printed by lpmx-unpack on stdin and
/// creates container NAME: a stack file naming the image's layers (shared,
/// never copied), an index of them, an empty writable layer and an
/// environment file, then
/// prints the stack document (JSON). Creating a container takes the same
/// short time whatever the image's size.
#[derive(Debug, Parser)]
#[command(name = "lpmx-mkroot", version = lpmx_core::cli::VERSION, after_help = AFTER_HELP)]
#[command(group(ArgGroup::new("action").args(["list", "remove"])))]
pub struct Cli {
    /// The container to create (or, with --remove, the ones to remove).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// A host directory seen inside the container, HOST:CONTAINER or a
    /// single path for the same place; repeatable.
    #[arg(long, value_name = "HOST:CONTAINER")]
    pub bind: Vec<String>,

    /// A host program run as such when the container execs its path
    /// (sbatch, qsub, ssh...): HOST or HOST:CONTAINER; repeatable. Later:
    /// lpmx-env NAME host add.
    #[arg(long, value_name = "HOST[:CONTAINER]")]
    pub host_program: Vec<String>,

    /// List the containers: name, image and layer count.
    #[arg(short, long)]
    pub list: bool,

    /// With --list: print an lpmx.containers document (JSON).
    #[arg(long, requires = "list")]
    pub json: bool,

    /// Remove the containers NAME...; their layers stay in the store.
    #[arg(long)]
    pub remove: bool,
}

/// The clap definition, for the man page generator.
pub fn command() -> clap::Command {
    Cli::command()
}

fn parse_bind(spec: &str) -> Result<Bind, Failure> {
    let (host, container) = spec.split_once(':').unwrap_or((spec, spec));
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(Failure::usage(format!(
            "invalid --bind {spec:?}: expected absolute paths, HOST:CONTAINER or PATH"
        )));
    }
    Ok(Bind {
        host: PathBuf::from(host),
        container: PathBuf::from(container),
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    run("lpmx-mkroot", || {
        let store = open_store()?;
        if cli.list {
            let stacks = list(&store)
                .map_err(|e| Failure::classified(e, "failed to list the containers"))?;
            let mut out = std::io::stdout().lock();
            if cli.json {
                let document = serde_json::json!({
                    "kind": "lpmx.containers",
                    "version": 1,
                    "containers": stacks,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
            } else {
                for stack in &stacks {
                    writeln!(
                        out,
                        "{}\t{}\t{} layers",
                        stack.name,
                        stack.reference,
                        stack.layers.len()
                    )?;
                }
            }
            return Ok(());
        }
        if cli.remove {
            if cli.names.is_empty() {
                return Err(Failure::usage("--remove needs the names of containers"));
            }
            for name in &cli.names {
                remove(&store, name).map_err(|e| {
                    Failure::classified(e, format!("failed to remove container {name}"))
                })?;
            }
            return Ok(());
        }
        let [name] = cli.names.as_slice() else {
            return Err(Failure::usage(
                "give one NAME to create a container (or --list, or --remove NAME...)",
            ));
        };
        let binds = cli
            .bind
            .iter()
            .map(|b| parse_bind(b))
            .collect::<Result<Vec<_>, _>>()?;
        let mut host_programs = HostPrograms::default();
        for spec in &cli.host_program {
            host_programs
                .add(spec)
                .map_err(|e| Failure::usage(e.to_string()))?;
        }
        let layers = read_document::<LayersDocument>(std::io::stdin().lock())
            .map_err(|e| Failure::classified(e, "failed to read the layers document"))?;
        let stack = create(&store, name, &layers, binds, &host_programs)
            .map_err(|e| Failure::classified(e, format!("failed to create container {name}")))?;
        write_document(&stack, std::io::stdout().lock())?;
        Ok(())
    })
}
