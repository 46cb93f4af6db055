//! The command line of `lpmx-exec`; also the source of its man page.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use lpmx_core::cli::{Failure, open_store, run};

use crate::launch::{self, LaunchError, Request};

const AFTER_HELP: &str = "\
Examples:
  lpmx-exec dev                         the image's entrypoint/cmd
  lpmx-exec dev -- bash -l              an interactive shell
  lpmx-exec --workdir /src dev -- make  in /src of the container
  lpmx-exec --bind /scratch/me:/data dev -- ls /data

Seen inside by default, as in other HPC container tools: the host's /dev,
/proc, /sys, /tmp and your home directory. Turn one off with
--no-bind /proc (or --no-bind home), all of them with --no-bind all.

The environment is the image's (its config's Env), then the job
launcher's variables from the host (Slurm's SLURM_*, PMI_*, PMIX_*,
Open MPI's OMPI_*, UCX_*, FI_*, MPICH_*, I_MPI_*, OMP_*,
CUDA_VISIBLE_DEVICES and the like; docs/cluster.md lists them) and
those --pass-env names, then the container's environment file, then
--env; PATH, HOME and TERM get defaults when none of these sets them,
USER and LOGNAME are yours. Directories the launcher's variables name
for its sockets (PMIX_SERVER_TMPDIR, PMIX_SYSTEM_TMPDIR, TMPDIR) are
seen inside at the same path.

The working directory is --workdir, else the current one when a bind
shows it inside, else the image's WorkingDir, else /.

With --ephemeral, lpmx-exec waits for the program, removes its private
writable layer and exits as the program did.

Exit status: the program's own (lpmx-exec replaces itself with it);
127 when the program is not found in the container, 126 when it cannot
run there (a static binary, which no preload library can keep inside the
container, is refused); otherwise the lpmx exit codes of lpmx(7).";

/// Run a program inside an lpmx container.
///
/// Runs CMD (or the image's entrypoint and cmd) in container NAME as you,
/// without any privilege: started by the image's own dynamic loader, so
/// it uses the image's C library, with libunion preloaded to show it the
/// container's layers.
#[derive(Debug, Parser)]
#[command(name = "lpmx-exec", version = lpmx_core::cli::VERSION, after_help = AFTER_HELP)]
pub struct Cli {
    /// The container (see lpmx-mkroot --list).
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The program and its arguments (after --).
    #[arg(value_name = "CMD", last = true)]
    pub command: Vec<String>,

    /// The working directory, a path in the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// A host directory seen inside, HOST:CONTAINER or PATH; repeatable.
    #[arg(long, value_name = "HOST:CONTAINER")]
    pub bind: Vec<String>,

    /// Do not show a default bind: /dev, /proc, /sys, /tmp, home,
    /// /etc/hosts, /etc/resolv.conf, or all.
    #[arg(long, value_name = "PATH", value_parser = no_bind_values())]
    pub no_bind: Vec<String>,

    /// Set an environment variable for this run; repeatable.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Fake root, for package managers: the program sees itself as root;
    /// owners it sets and device nodes it makes are recorded in the
    /// container, not done, and later runs see them.
    #[arg(long)]
    pub root: bool,

    /// Make the host's NVIDIA GPU usable: its driver libraries first in the
    /// library path, its tools (nvidia-smi) run from the host; honours
    /// NVIDIA_VISIBLE_DEVICES.
    #[arg(long)]
    pub gpu: bool,

    /// Leave the container as it is: this run's writes go to a private
    /// writable layer in $TMPDIR (else /tmp), removed when it ends. Many
    /// runs at once (the tasks of a job) share the container this way
    /// without seeing each other's writes.
    #[arg(long)]
    pub ephemeral: bool,

    /// Pass host variable NAME in (NAME* for every name it begins);
    /// repeatable.
    #[arg(long, value_name = "NAME")]
    pub pass_env: Vec<String>,

    /// Keep the job launcher's variables (SLURM_*, PMIX_*, OMPI_*, ...)
    /// of the host out of the container.
    #[arg(long)]
    pub no_launcher_env: bool,

    /// Run without the system-call trap: the preload library alone keeps
    /// programs inside (files glibc opens for itself, such as NSS's
    /// /etc/passwd, are then the host's, and static programs, which only
    /// the trap keeps inside, are refused).
    #[arg(long)]
    pub no_trap: bool,
}

/// The clap definition, for the man page generator.
pub fn command() -> clap::Command {
    Cli::command()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut shell_status = None;
    let code = run("lpmx-exec", || {
        let store = open_store()?;
        let (store, mut stack) = lpmx_mkroot::open_container(&store, &cli.name).map_err(|e| {
            Failure::classified(e, format!("failed to open container {}", cli.name))
        })?;
        // Stores made by an older lpmx have an index of an older format
        // (or none): build the current one, once.
        if !lpmx_core::index::is_complete(&stack.index) {
            stack.index = lpmx_core::index::ensure(&store, &stack.layers).map_err(|e| {
                Failure::from(anyhow::Error::new(e).context("failed to index the image's layers"))
            })?;
        }
        let request = Request {
            command: cli.command,
            workdir: cli.workdir,
            binds: cli.bind,
            no_binds: cli.no_bind,
            env: cli.env,
            root: cli.root,
            gpu: cli.gpu,
            no_trap: cli.no_trap,
            pass_env: cli.pass_env,
            no_launcher_env: cli.no_launcher_env,
            ephemeral: cli.ephemeral,
        };
        let Err(error) = launch::exec(&store, &stack, &request);
        shell_status = error.shell_status();
        Err(fail(error, &cli.name))
    });
    match shell_status {
        Some(status) => ExitCode::from(status),
        None => code,
    }
}

fn fail(error: LaunchError, name: &str) -> Failure {
    Failure::classified(error, format!("failed to run in container {name}"))
}

/// `--no-bind`'s values: each default bind, or all of them.
fn no_bind_values() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(launch::DEFAULT_BINDS.iter().copied().chain(["all"]))
}
