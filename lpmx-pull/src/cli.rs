//! The command line of `lpmx-pull`; also the source of its man page.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use lpmx_core::ImageRef;
use lpmx_core::cli::{Failure, open_store, run};
use lpmx_core::document::write_document;
use lpmx_core::oci::Platform;
use lpmx_core::progress::Progress;

use crate::registry::RetryPolicy;
use crate::{PullOptions, pull};

const AFTER_HELP: &str = "\
Examples:
  lpmx-pull debian:bookworm | lpmx-unpack | lpmx-mkroot dev
  lpmx-pull --platform linux/arm64 ghcr.io/org/tool:1.2 > tool.json
  lpmx-pull localhost:5000/team/env@sha256:<digest>

The store is $LPMX_HOME, else $XDG_DATA_HOME/lpmx, else ~/.local/share/lpmx;
blobs in the read-only stores of $LPMX_STORE_PATH are used, not fetched.
Credentials come from $REGISTRY_AUTH_FILE, then ~/.docker/config.json
(auths, credHelpers, credsStore). See lpmx(7) for the image document.";

/// Fetch an image from a Docker/OCI registry into the lpmx store.
///
/// Resolves REF to the manifest for one platform, downloads its config and
/// layers (verified by digest, resumed after interruption, in parallel) and
/// prints an image document (JSON) on stdout for lpmx-unpack. Blobs already
/// in the store are not downloaded again.
#[derive(Debug, Parser)]
#[command(name = "lpmx-pull", version = lpmx_core::cli::VERSION, after_help = AFTER_HELP)]
pub struct Cli {
    /// Image reference: debian, debian:bookworm, ghcr.io/org/img:tag,
    /// localhost:5000/a/b@sha256:...
    #[arg(value_name = "REF")]
    pub reference: String,

    /// Platform to take from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,

    /// Use plain HTTP for this registry. Loopback registries (localhost,
    /// 127.0.0.0/8, ::1) always use plain HTTP.
    #[arg(long)]
    pub plain_http: bool,

    /// Layers downloaded at once.
    #[arg(short, long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Retries of a failing request (connection errors, 429, 5xx), with
    /// exponential backoff.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

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
    run("lpmx-pull", || {
        let image: ImageRef = cli.reference.parse().map_err(Failure::usage)?;
        let store = open_store()?;
        let options = PullOptions {
            platform: cli.platform.clone(),
            plain_http: cli.plain_http,
            jobs: usize::from(cli.jobs),
            retry: RetryPolicy {
                retries: cli.retries,
                ..RetryPolicy::default()
            },
        };
        let progress = Progress::new("lpmx-pull", cli.quiet);
        let document = pull(&store, &image, &options, &progress)
            .map_err(|e| Failure::classified(e, format!("failed to pull {image}")))?;
        write_document(&document, std::io::stdout().lock())?;
        Ok(())
    })
}
