//! The command line of `lpmx-unpack`; also the source of its man page.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use lpmx_core::cli::{Failure, open_store, run};
use lpmx_core::document::{ImageDocument, read_document, write_document};
use lpmx_core::oci::Platform;
use lpmx_core::progress::Progress;

use lpmx_core::document::FileIdentity;

use crate::recall::{recall, remember};
use crate::restore::{is_pack_stream, restore};
use crate::source::{Selection, import_archive};
use crate::unpack_image;

const AFTER_HELP: &str = "\
Examples:
  lpmx-pull debian:bookworm | lpmx-unpack | lpmx-mkroot dev
  lpmx-pack dev | ssh host lpmx-unpack               (a container, see lpmx-pack)
  lpmx-unpack debian.tar > debian-layers.json       (docker save / podman save)
  lpmx-unpack ./oci-layout --image app:1.0          (OCI image layout)
  lpmx-unpack app.oci.tar                           (OCI layout in a tar)
  lpmx-unpack lolcow.sif | lpmx-mkroot cow          (Singularity/Apptainer SIF)
  lpmx-unpack rootfs.sqfs                           (a squashfs image)

Layers land in $LPMX_HOME/layers/<diff-id>/root with their metadata
(original owners and modes, device nodes, whiteouts) in meta.json.
Layers already in a read-only store of $LPMX_STORE_PATH are used there.
See lpmx(7) for the documents.";

/// Unpack image layers into the lpmx store.
///
/// Reads the image document printed by lpmx-pull on stdin, or imports the
/// image archive, OCI layout, SIF or squashfs image SOURCE (its blobs go
/// into the store as if pulled), then unpacks each layer once into the
/// store, verified against the image config's diff_ids, and prints a layers
/// document (JSON) on stdout for lpmx-mkroot. Layers already unpacked are
/// not unpacked again.
///
/// Given a stream written by lpmx-pack (on stdin or as SOURCE), makes the
/// container it holds instead, in this store, and prints its stack
/// document. The stream is checked whole before anything is kept.
#[derive(Debug, Parser)]
#[command(name = "lpmx-unpack", version = lpmx_core::cli::VERSION, after_help = AFTER_HELP)]
pub struct Cli {
    /// A docker-archive (docker save, podman save), an OCI image layout
    /// directory, an OCI layout in a tar file, a Singularity/Apptainer SIF
    /// image or a squashfs image (told apart by their first bytes). A SIF
    /// or squashfs image becomes one layer (an uncompressed tar blob) with
    /// the image's /.singularity.d/env/*.sh exports as Env and its
    /// runscript (else /bin/sh) as Cmd; its reference is sif:PATH or
    /// squashfs:PATH, PATH absolute. Without SOURCE, an image document is
    /// read on stdin.
    #[arg(value_name = "SOURCE")]
    pub source: Option<PathBuf>,

    /// The image to take from a SOURCE holding several: a repo tag
    /// (docker-archive) or a ref name (OCI layout).
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,

    /// Platform to take from a multi-platform OCI layout (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,

    /// The container's name, for a stream from lpmx-pack (default: its
    /// name on the source).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Layers unpacked at once (default: the number of CPUs).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,

    /// No progress output on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The clap definition, for the man page generator.
pub fn command() -> clap::Command {
    Cli::command()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    run("lpmx-unpack", || {
        let store = open_store()?;
        let progress = Progress::new("lpmx-unpack", cli.quiet);
        let jobs = cli.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(2, usize::from),
            usize::from,
        );
        let restore = |input: &mut dyn Read, what: &str| -> Result<(), Failure> {
            let stack = restore(&store, input, cli.name.as_deref(), jobs, &progress)
                .map_err(|e| Failure::classified(e, format!("failed to unpack {what}")))?;
            write_document(&stack, std::io::stdout().lock())?;
            Ok(())
        };
        // Checked before any work: an image's containers are named later.
        let no_name = || -> Result<(), Failure> {
            if cli.name.is_some() {
                return Err(Failure::usage(
                    "--name names the container of a stream from lpmx-pack; an image's containers are named by lpmx-mkroot",
                ));
            }
            Ok(())
        };
        let image = match &cli.source {
            Some(path) => {
                if path.is_file() {
                    let mut file = BufReader::new(
                        File::open(path)
                            .with_context(|| format!("failed to open {}", path.display()))?,
                    );
                    if is_pack_stream(file.fill_buf()?) {
                        return restore(&mut file, &path.display().to_string());
                    }
                }
                no_name()?;
                let selection = Selection {
                    name: cli.image.clone(),
                    platform: cli.platform.clone().unwrap_or_else(Platform::host),
                };
                let identity = path
                    .is_file()
                    .then(|| std::fs::metadata(path).ok())
                    .flatten()
                    .map(|m| FileIdentity::of(&m));
                match identity.and_then(|_| recall(&store, path, &selection)) {
                    Some(image) => {
                        progress.message(format!(
                            "{}: imported before and unchanged: not read again",
                            path.display()
                        ));
                        image
                    }
                    None => {
                        let image = import_archive(&store, path, &selection).map_err(|e| {
                            Failure::classified(e, format!("failed to import {}", path.display()))
                        })?;
                        if let Some(identity) = identity {
                            remember(&store, path, &selection, identity, &image);
                        }
                        image
                    }
                }
            }
            None => {
                lpmx_core::pack::widen_pipe(0);
                let mut stdin = std::io::stdin().lock();
                let mut head = Vec::new();
                (&mut stdin)
                    .take(lpmx_core::pack::MAGIC.len() as u64)
                    .read_to_end(&mut head)
                    .context("failed to read stdin")?;
                let mut input = head.as_slice().chain(stdin);
                if is_pack_stream(&head) {
                    return restore(&mut input, "the pack stream");
                }
                no_name()?;
                read_document::<ImageDocument>(input)
                    .map_err(|e| Failure::classified(e, "failed to read the image document"))?
            }
        };
        let layers = unpack_image(&store, &image, jobs, &progress)
            .map_err(|e| Failure::classified(e, format!("failed to unpack {}", image.reference)))?;
        write_document(&layers, std::io::stdout().lock())?;
        Ok(())
    })
}
