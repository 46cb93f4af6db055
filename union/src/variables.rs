//! The environment variables that carry a container from `lpmx-exec` to
//! libunion, the trap's loader and every exec after, each named once here
//! (`lpmx-exec` sets them, libunion reads them and sets them again on
//! every exec, dropping the caller's copies).
//!
//! Without [`UPPER`] and [`INDEX`] libunion changes nothing.

use core::ffi::CStr;

/// One variable, in the three spellings its users need.
pub struct Variable {
    /// `LPMX_UPPER`.
    pub name: &'static str,
    /// The name with its NUL, for `getenv`.
    pub c_name: &'static CStr,
    /// `LPMX_UPPER=`: how an environment entry setting it starts.
    pub assignment: &'static [u8],
}

impl Variable {
    /// Whether environment entry `entry` (`NAME=value`) sets this variable.
    pub fn is_set_by(&self, entry: &[u8]) -> bool {
        entry.starts_with(self.assignment)
    }
}

/// What every variable of lpmx's own starts with.
pub const PREFIX: &str = "LPMX_";

macro_rules! variables {
    ($($(#[$doc:meta])* $id:ident = $name:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $id: Variable = Variable {
                name: $name,
                c_name: match CStr::from_bytes_with_nul(concat!($name, "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("a variable's name holds no NUL"),
                },
                assignment: concat!($name, "=").as_bytes(),
            };
        )*
    };
}

variables! {
    /// libunion itself, as the loader preloads it: put back on every exec.
    PRELOAD = "LD_PRELOAD";
    /// The container's writable layer.
    UPPER = "LPMX_UPPER";
    /// The index of the image's layers (their roots, top first).
    INDEX = "LPMX_INDEX";
    /// Host paths seen inside, `HOST=CONTAINER` pairs joined by `:`.
    BINDS = "LPMX_BINDS";
    /// The image's library directories (container paths), which the
    /// loader's `--library-path` names in every layer.
    LIBDIRS = "LPMX_LIBDIRS";
    /// The image's library directory (`lpmx_core::libraries`).
    LIBS = "LPMX_LIBS";
    /// The container's, with the writable layer's libraries, used while its
    /// stamp holds.
    CONTAINER_LIBS = "LPMX_CONTAINER_LIBS";
    /// libunion's file, put back into `LD_PRELOAD` on every exec.
    LIB = "LPMX_LIB";
    /// The container's host programs (`CONTAINER=HOST` lines).
    HOST_PROGRAMS = "LPMX_HOST_PROGRAMS";
    /// The lpmx tools' directory: run there as host programs.
    TOOLS = "LPMX_TOOLS";
    /// Host libraries first in the library path: the GPU driver's, and
    /// library files bound into library directories.
    HOST_LIBS = "LPMX_HOST_LIBS";
    /// More host programs for this run (`:`-separated).
    HOST_EXEC = "LPMX_HOST_EXEC";
    /// `1` for fake root.
    ROOT = "LPMX_ROOT";
    /// Fake root's ids: `ruid,euid,suid,rgid,egid,sgid[,fsuid,fsgid,groups]`.
    IDS = "LPMX_IDS";
    /// The container's environment file, applied at every exec.
    ENV_FILE = "LPMX_ENV_FILE";
    /// The variables it set at the last exec (`:`-joined).
    ENV_KEYS = "LPMX_ENV_KEYS";
    /// The stores, `:`-separated (the trap leaves their paths as they are).
    STORE = "LPMX_STORE";
    /// The loader every exec starts under the trap.
    LOADER = "LPMX_LOADER";
    /// `1` under the system-call trap (`0` from lpmx-exec: not wanted).
    TRAP = "LPMX_TRAP";
    /// `0`: the trap rewrites no call site.
    TRAP_REWRITE = "LPMX_TRAP_REWRITE";
    /// (One exec only.) The program's container path.
    EXE = "LPMX_EXE";
    /// (One exec only.) The working directory it was started in, used where
    /// the kernel's is the writable layer's empty directory (the way to a
    /// deeper bind, which many share).
    CWD = "LPMX_CWD";
    /// (One exec only.) The `argv[0]` the program was given.
    ARGV0 = "LPMX_ARGV0";
    /// (lpmx-loader's, dropped before the program starts.) How the loader
    /// starts [`LOADER_FILE`]: `run`, `interp` or `static`
    /// (`lpmx_trap::exec::RUN`, `RUN_INTERP`, `RUN_STATIC`). In the environment, not in `argv`, so
    /// that the process's command line (`/proc/PID/cmdline`, `ps`) is the
    /// program's own.
    LOADER_MODE = "LPMX_LOADER_MODE";
    /// (lpmx-loader's.) The file it starts.
    LOADER_FILE = "LPMX_LOADER_FILE";
    /// (lpmx-loader's.) `LPMX_LOADER_ARG0`, `LPMX_LOADER_ARG1`, ... (up to
    /// [`LOADER_ARGS`]): the arguments that stand for `argv[0]` when the
    /// file runs: the image's `ld.so`, its options and the program's host
    /// path ([`loader_arg`]).
    LOADER_ARG = "LPMX_LOADER_ARG";
}

/// How many `LPMX_LOADER_ARG<n>` there can be.
pub const LOADER_ARGS: usize = 8;

/// The length of `LPMX_LOADER_ARG<n>=`.
pub const LOADER_ARG_ASSIGNMENT: usize = LOADER_ARG.name.len() + 2;

/// `LPMX_LOADER_ARG<n>=`, how an entry setting argument `n` starts.
pub fn loader_arg_assignment(n: u8) -> [u8; LOADER_ARG_ASSIGNMENT] {
    let mut out = [0; LOADER_ARG_ASSIGNMENT];
    out[..LOADER_ARG.name.len()].copy_from_slice(LOADER_ARG.name.as_bytes());
    out[LOADER_ARG.name.len()] = b'0' + n;
    out[LOADER_ARG.name.len() + 1] = b'=';
    out
}

/// `(n, value)` of environment entry `LPMX_LOADER_ARG<n>=value`.
pub fn loader_arg(entry: &[u8]) -> Option<(usize, &[u8])> {
    let rest = entry.strip_prefix(LOADER_ARG.name.as_bytes())?;
    let digit = *rest.first()?;
    let value = rest.strip_prefix(&[digit, b'='])?;
    let n = usize::from(digit.checked_sub(b'0')?);
    (n < LOADER_ARGS).then_some((n, value))
}

/// Whether environment entry `entry` is one of the loader's own, which
/// the program it starts never sees.
pub fn is_loader_entry(entry: &[u8]) -> bool {
    LOADER_MODE.is_set_by(entry) || LOADER_FILE.is_set_by(entry) || loader_arg(entry).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_spelling_names_the_same_variable() {
        assert_eq!(CWD.name, "LPMX_CWD");
        assert_eq!(CWD.c_name.to_bytes(), b"LPMX_CWD");
        assert_eq!(CWD.assignment, b"LPMX_CWD=");
        assert!(CWD.is_set_by(b"LPMX_CWD=/srv"));
        assert!(!CWD.is_set_by(b"LPMX_CWDX=/srv"));
        assert!(UPPER.name.starts_with(PREFIX));
    }

    #[test]
    fn the_loaders_arguments_are_numbered_entries() {
        assert_eq!(
            loader_arg(b"LPMX_LOADER_ARG0=/lib/ld.so"),
            Some((0, &b"/lib/ld.so"[..]))
        );
        assert_eq!(loader_arg(b"LPMX_LOADER_ARG7="), Some((7, &b""[..])));
        assert_eq!(loader_arg(&loader_arg_assignment(3)), Some((3, &b""[..])));
        assert_eq!(loader_arg(b"LPMX_LOADER_ARG8=x"), None);
        assert_eq!(loader_arg(b"LPMX_LOADER_ARG=x"), None);
        assert_eq!(loader_arg(b"LPMX_LOADER_ARG10=x"), None);
        assert!(is_loader_entry(b"LPMX_LOADER_MODE=interp"));
        assert!(is_loader_entry(b"LPMX_LOADER_FILE=/x"));
        assert!(is_loader_entry(b"LPMX_LOADER_ARG3=--library-path"));
        // The loader's own path is every exec's, kept.
        assert!(!is_loader_entry(b"LPMX_LOADER=/opt/lpmx/lpmx-loader"));
    }
}
