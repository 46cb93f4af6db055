//! The command line of `lpmx-pack`; also the source of its man page.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, CommandFactory, Parser, ValueEnum};

use lpmx_core::cli::{Failure, open_store, run};

use crate::{Export, Layers, export, pack};

const AFTER_HELP: &str = "\
Examples:
  lpmx-pack dev | ssh host lpmx-unpack          move container dev to host
  lpmx-pack dev | ssh host lpmx-unpack --name dev2
  lpmx-pack --layers=none dev > dev.lpmx         host has the image already
  lpmx-pack dev --oci ./dev-oci --tag dev:1.0    then: skopeo copy oci:./dev-oci:1.0 ...
  lpmx-pack dev --docker-archive dev.tar         then: docker load < dev.tar

The stream holds the container's stack, image config, environment file,
host programs and writable layer with the owners, modes, device nodes and
whiteouts recorded in it, plus the image's blobs, each checked by digest
and the whole stream by a final digest: lpmx-unpack refuses a corrupt or
truncated one and leaves its store as it was. Binds (--bind) name host
paths and are not carried. Pack a container no program is using.";

/// Pack a container into one stream, or export it as an image.
///
/// Writes container NAME as one stream on stdout, which lpmx-unpack reads
/// on another host (or as another user) to make the same container there.
/// With --oci or --docker-archive, commits the container's writable layer
/// as a new layer on top of its image's and exports that image instead.
#[derive(Debug, Parser)]
#[command(name = "lpmx-pack", version = lpmx_core::cli::VERSION, after_help = AFTER_HELP)]
#[command(group(ArgGroup::new("export").args(["oci", "docker_archive"])))]
pub struct Cli {
    /// The container.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Which image layers the stream carries: all (the target needs
    /// nothing) or none (the target has the image already).
    #[arg(long, value_enum, default_value_t = LayersArg::All, value_name = "WHICH")]
    pub layers: LayersArg,

    /// Export as an OCI image layout in DIR (made, or added to).
    #[arg(long, value_name = "DIR")]
    pub oci: Option<PathBuf>,

    /// Export as a docker save archive FILE (docker load, podman load).
    #[arg(long, value_name = "FILE")]
    pub docker_archive: Option<PathBuf>,

    /// The exported image's name, NAME[:TAG] (default lpmx/CONTAINER:latest);
    /// an OCI layout names it by TAG.
    #[arg(long, value_name = "NAME[:TAG]", requires = "export")]
    pub tag: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayersArg {
    All,
    None,
}

/// The clap definition, for the man page generator.
pub fn command() -> clap::Command {
    Cli::command()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    run("lpmx-pack", || {
        let store = open_store()?;
        let name = &cli.name;
        let target = match (&cli.oci, &cli.docker_archive) {
            (Some(dir), _) => Some(Export::Oci(dir.clone())),
            (_, Some(file)) => Some(Export::DockerArchive(file.clone())),
            _ => None,
        };
        if let Some(target) = target {
            let tag = cli
                .tag
                .clone()
                .unwrap_or_else(|| format!("lpmx/{name}:latest"));
            return export(&store, name, &target, &tag)
                .map_err(|e| Failure::classified(e, format!("failed to export container {name}")));
        }
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            return Err(Failure::usage(
                "the stream is binary: pipe it (lpmx-pack NAME | ssh HOST lpmx-unpack) or redirect it to a file",
            ));
        }
        let layers = match cli.layers {
            LayersArg::All => Layers::All,
            LayersArg::None => Layers::None,
        };
        lpmx_core::pack::widen_pipe(1);
        pack(&store, name, layers, stdout.lock())
            .map_err(|e| Failure::classified(e, format!("failed to pack container {name}")))
    })
}
