//! `--ephemeral`: a run whose writes go to a private writable layer of its
//! own, on node-local storage, removed when it ends.
//!
//! The container's writable layer becomes, for this run, one more read-only
//! layer on top of the image's: a private index (`lpmx_core::index::freeze`)
//! lists it with the image's, so libunion copies up from it as from any
//! image layer, and nothing the run does reaches it. Thousands of tasks can
//! so share one container with no contention, as Apptainer's
//! `--writable-tmpfs` does, without namespaces. The private directory is
//! `$TMPDIR/lpmx-ephemeral.HOST.PID.NAME` (TMPDIR defaults to `/tmp`); a
//! small parent process waits for the program, passes on the signals it
//! gets, removes the directory and exits as the program did. A directory
//! its run left behind (the parent killed with SIGKILL) is removed by the
//! next ephemeral run on the same host.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use lpmx_core::container::{StackDocument, UPPER_DIR};
use lpmx_core::index::{self, Index};
use lpmx_core::libraries::{farm_path, refresh_container_farm};
use lpmx_core::variables;

const PREFIX: &str = "lpmx-ephemeral.";

#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error("cannot make the private writable layer in {path}: {source}")]
    Private {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the container's layers for a private writable layer: {0}")]
    Index(#[from] index::IndexError),
    #[error("cannot read the image's index {path}: {why}")]
    BadIndex { path: PathBuf, why: String },
    #[error("cannot bring the container's library directory up to date: {0}")]
    Libraries(#[source] io::Error),
    #[error("cannot start the program: {0}")]
    Fork(#[source] io::Error),
}

/// The private writable layer of one run.
#[derive(Debug)]
pub struct Private {
    /// The directory holding it, its index and its side files.
    pub dir: PathBuf,
    /// The writable layer itself.
    pub upper: PathBuf,
    /// The index of the image's layers under the container's writable layer.
    pub index: PathBuf,
    /// The library directory of the container as it is (the writable
    /// layer's libraries, then the image's).
    pub libs: PathBuf,
}

/// Where private layers go: `$TMPDIR`, else `/tmp`.
pub fn base_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Makes the private writable layer of a run of `stack`'s container in
/// `base`, after removing those of runs on this host that are gone.
pub fn prepare(stack: &StackDocument, base: &Path) -> Result<Private, EphemeralError> {
    let host = lpmx_core::store::host_tag();
    remove_abandoned(base, host);
    let dir = base.join(format!(
        "{PREFIX}{host}.{}.{}",
        std::process::id(),
        stack.name
    ));
    let private = |source| EphemeralError::Private {
        path: dir.clone(),
        source,
    };
    if dir.exists() {
        // A run of the same pid before a reboot, or a pid reused.
        remove_tree(&dir).map_err(private)?;
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(private)?;
    let made = (|| {
        let upper = dir.join(UPPER_DIR);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&upper)
            .map_err(private)?;
        let bytes = fs::read(&stack.index).map_err(|source| EphemeralError::Private {
            path: stack.index.clone(),
            source,
        })?;
        let image = Index::parse(bytes).map_err(|why| EphemeralError::BadIndex {
            path: stack.index.clone(),
            why,
        })?;
        let frozen = index::freeze(&image, &stack.upper)?;
        let index = dir.join("index");
        fs::write(&index, frozen).map_err(private)?;
        let libs = match refresh_container_farm(stack).map_err(EphemeralError::Libraries)? {
            Some(farm) => farm,
            None => farm_path(&stack.index),
        };
        Ok(Private {
            dir: dir.clone(),
            upper,
            index,
            libs,
        })
    })();
    if made.is_err() {
        let _ = remove_tree(&dir);
    }
    made
}

/// Removes the private layers in `base` of this host's runs whose process
/// is gone.
fn remove_abandoned(base: &Path, host: &str) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    let ours = format!("{PREFIX}{host}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&ours)) else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && entry.metadata().is_ok_and(|m| m.is_dir()) {
            let _ = remove_tree(&entry.path());
        }
    }
}

/// Removes `dir` and all below it, whatever modes the run left on its
/// directories.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    if fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return Ok(());
    }
    open_up(dir);
    fs::remove_dir_all(dir)
}

/// Lets the owner read, write and search `dir` and every directory below.
fn open_up(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&entry.path());
        }
    }
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on(signal: libc::c_int) {
    let child = CHILD.load(Ordering::Relaxed);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, signal) };
    }
}

/// Forks: the child returns and runs the program; this process waits for
/// it, removes `private` and exits as the program did.
pub fn supervise(private: &Private) -> Result<(), EphemeralError> {
    // SAFETY: lpmx-exec is single-threaded here; the child only goes on
    // to exec.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(EphemeralError::Fork(io::Error::last_os_error()));
    }
    if pid == 0 {
        return Ok(());
    }
    CHILD.store(pid, Ordering::Relaxed);
    // A terminal's Ctrl-C and Ctrl-\ reach the program too: this process
    // waits for it to end. Signals sent to this process alone go on to it.
    // SAFETY: installing handlers; pass_on only calls kill.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        for signal in [
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
        ] {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = pass_on as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let got = unsafe { libc::waitpid(pid, &mut status, 0) };
        if got == pid {
            break;
        }
        if got < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            status = 1 << 8;
            break;
        }
    }
    if let Err(e) = remove_tree(&private.dir) {
        eprintln!(
            "lpmx-exec: warning: cannot remove the private writable layer {}: {e}",
            private.dir.display()
        );
    }
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // Ended by the same signal, as a shell reports it; without a core
        // dump of this process.
        // SAFETY: resetting this process's own dispositions and limits.
        unsafe {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(libc::WEXITSTATUS(status));
}

/// The private layer's paths as libunion's configuration.
pub fn config(private: &Private) -> [(&'static str, OsString); 4] {
    [
        (
            variables::UPPER.name,
            private.upper.clone().into_os_string(),
        ),
        (
            variables::INDEX.name,
            private.index.clone().into_os_string(),
        ),
        (variables::LIBS.name, private.libs.clone().into_os_string()),
        (variables::CONTAINER_LIBS.name, OsString::new()),
    ]
}
