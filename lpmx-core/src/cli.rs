//! What every tool's `main` does: run, report an error well, pick the exit code.
//!
//! Exit codes (documented in lpmx(7)) follow sysexits(3) where one fits, so
//! scripts can tell a typo from a broken network from a corrupt blob.

use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;

/// What every tool's `--version` prints after its name: the package
/// version and the commit it was built from, e.g.
/// `0.1.0 (commit 638cd33, 2026-11-30)` (see `build.rs`). The man pages
/// carry the plain [`PACKAGE_VERSION`], so they do not change with
/// every commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LPMX_COMMIT"),
    ", ",
    env!("LPMX_COMMIT_DATE"),
    ")"
);

/// The version of the lpmx packages, without the commit.
pub const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The exit codes every lpmx tool uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Anything not covered below.
    Failure = 1,
    /// Wrong arguments (clap uses 2 as well).
    Usage = 2,
    /// Bad input data: a corrupt blob, a malformed manifest or document.
    DataErr = 65,
    /// Something named does not exist (an image, a tag, a platform).
    NoInput = 66,
    /// A service is unreachable or keeps failing (network, registry 5xx).
    Unavailable = 69,
    /// Something to create exists already (a container name taken).
    CantCreate = 73,
    /// Reading or writing local files failed (the store, a disk full).
    IoErr = 74,
    /// Credentials missing or refused.
    NoPerm = 77,
}

/// Library errors say which exit code they deserve.
pub trait Classify {
    fn exit(&self) -> Exit;
}

/// An error on its way out of `main`, with its exit code decided.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl Failure {
    /// `error` with its own exit code and a "failed to ..." context.
    pub fn classified<E>(error: E, context: impl Display + Send + Sync + 'static) -> Failure
    where
        E: Classify + std::error::Error + Send + Sync + 'static,
    {
        Failure {
            exit: error.exit(),
            error: anyhow::Error::new(error).context(context),
        }
    }

    pub fn usage(message: impl Display + Send + Sync + 'static) -> Failure {
        Failure {
            exit: Exit::Usage,
            error: anyhow::anyhow!("{message}"),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            exit: Exit::Failure,
            error: error.into(),
        }
    }
}

/// Opens the store every tool works on (`$LPMX_HOME`, else the XDG default).
pub fn open_store() -> Result<crate::Store, Failure> {
    crate::Store::open_default().map_err(|e| Failure::classified(e, "failed to open the store"))
}

/// Runs a tool's body and turns its result into the process exit code.
/// A closed stdout (`lpmx-pull x | head -c1`) is not an error.
pub fn run(tool: &str, body: impl FnOnce() -> Result<(), Failure>) -> ExitCode {
    let Err(failure) = body() else {
        return ExitCode::SUCCESS;
    };
    let broken_pipe = failure.error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let mut stderr = io::stderr().lock();
    let mut causes = failure.error.chain();
    if let Some(top) = causes.next() {
        let _ = writeln!(stderr, "{tool}: error: {top}");
    }
    for cause in causes {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
    ExitCode::from(failure.exit as u8)
}
