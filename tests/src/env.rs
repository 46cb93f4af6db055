//! Running the tools as a user would: an unprivileged one, in a scratch home.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// The ids the tools run as when the tests run as root (CI does): nobody.
pub const TEST_UID: u32 = 65534;
pub const TEST_GID: u32 = 65534;
/// A second user, for moving containers between users (lpmx-pack).
pub const OTHER_UID: u32 = 65533;
pub const OTHER_GID: u32 = 65533;

/// Whether this test process is root, so tools must be dropped to [`TEST_UID`].
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Where the built tools are: the cargo target directory of this test.
/// They are copied to a directory every user can read, because the target
/// directory may sit under root's private home.
pub fn tool_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/debug/deps/<test> -> target/debug
        let target = exe
            .parent()
            .and_then(Path::parent)
            .expect("target directory")
            .to_owned();
        // One directory per target directory, reused by later runs; each
        // tool is replaced by a rename so concurrent test processes never
        // see half a binary.
        let key = lpmx_core::Digest::of(target.as_os_str().as_encoded_bytes());
        let public = std::env::temp_dir().join(format!("lpmx-test-tools-{}", key.short()));
        fs::create_dir_all(&public).expect("create tool dir");
        fs::set_permissions(&public, fs::Permissions::from_mode(0o755)).expect("chmod tool dir");
        for entry in fs::read_dir(&target).expect("read target dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(OsStr::to_str).unwrap_or("");
            let tool = name.starts_with("lpmx-") && !name.contains('.');
            if (tool || name == "libunion.so") && path.is_file() {
                let temp = public.join(format!(".{name}.{}", std::process::id()));
                fs::copy(&path, &temp).expect("copy tool");
                fs::rename(&temp, public.join(name)).expect("install tool");
            }
        }
        assert!(
            public.join("lpmx-pull").is_file(),
            "lpmx-pull is not built in {}: run `cargo build --workspace` before the tests \
             (scripts/test does)",
            target.display()
        );
        public
    })
}

/// A scratch home and store owned by the test user.
pub struct Env {
    dir: tempfile::TempDir,
    uid: u32,
    gid: u32,
    /// The umask the tools start with, when not the caller's.
    umask: Option<u32>,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env::for_user(TEST_UID, TEST_GID)
    }

    /// An env whose tools run as [`OTHER_UID`], with its own home and
    /// store: another user, or another host.
    pub fn other_user() -> Env {
        Env::for_user(OTHER_UID, OTHER_GID)
    }

    fn for_user(uid: u32, gid: u32) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("lpmx-test-")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let env = Env {
            dir,
            uid,
            gid,
            umask: None,
        };
        for sub in ["home", "store"] {
            env.make_user_dir(&env.dir.path().join(sub));
        }
        // Private, as lpmx makes a new store (shared stores are opened to
        // others by their owner).
        fs::set_permissions(env.store(), fs::Permissions::from_mode(0o700)).expect("chmod");
        env
    }

    /// This env, its tools started with `umask` (a strict one, 077, is
    /// common on shared machines).
    pub fn with_umask(mut self, umask: u32) -> Env {
        self.umask = Some(umask);
        self
    }

    /// Creates `path` owned by the user the tools run as.
    pub fn make_user_dir(&self, path: &Path) {
        fs::create_dir_all(path).expect("create dir");
        if running_as_root() {
            chown(path, Some(self.uid), Some(self.gid)).expect("chown to test user");
        }
    }

    /// Writes a file the test user can read.
    pub fn write_file(&self, path: &Path, contents: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
        fs::write(path, contents).expect("write file");
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// Builds the C program `tests/c/NAME.c` with the host's gcc (`-O2
    /// -Wall` and `flags`) into this env's directory, where containers see
    /// it (below the /tmp bind); its path, NAME-static for a static build,
    /// so that both builds of one program can be kept.
    pub fn c_program(&self, name: &str, flags: &[&str]) -> PathBuf {
        let binary = if flags.contains(&"-static") {
            self.path().join(format!("{name}-static"))
        } else {
            self.path().join(name)
        };
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("c/{name}.c"));
        let built = Command::new("gcc")
            .args(["-O2", "-Wall"])
            .args(flags)
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .status()
            .expect("run gcc");
        assert!(built.success(), "gcc {}", source.display());
        binary
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A command running `tool` as the unprivileged test user, with this
    /// env's home and store and nothing of the caller's credentials.
    pub fn tool(&self, tool: &str) -> Command {
        self.command_as_user(tool_dir().join(tool))
    }

    /// A command running `program` (a path, or a name looked up on the
    /// usual `PATH`) as the unprivileged test user, with this env's home and
    /// store and nothing of the caller's credentials: for peers such as
    /// `umoci` that must run under the same conditions as the tools.
    pub fn command_as_user(&self, program: impl AsRef<OsStr>) -> Command {
        // [setpriv ... --] [sh -c 'umask M && exec "$0" "$@"'] program
        let mut words: Vec<std::ffi::OsString> = Vec::new();
        if running_as_root() {
            words.extend(
                [
                    "setpriv".to_owned(),
                    format!("--reuid={}", self.uid),
                    format!("--regid={}", self.gid),
                    "--clear-groups".to_owned(),
                    "--".to_owned(),
                ]
                .map(Into::into),
            );
        }
        if let Some(umask) = self.umask {
            words.extend(
                [
                    "/bin/sh".to_owned(),
                    "-c".to_owned(),
                    format!("umask {umask:03o} && exec \"$0\" \"$@\""),
                ]
                .map(Into::into),
            );
        }
        words.push(program.as_ref().to_owned());
        let mut command = Command::new(&words[0]);
        command.args(&words[1..]);
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.home())
            .env("LPMX_HOME", self.store())
            .current_dir(self.path())
            .stdin(Stdio::null());
        // Signals as a terminal leaves them: a suite started in the
        // background of a non-interactive shell inherits SIGINT and SIGQUIT
        // ignored (POSIX), and the tests of Ctrl-C would see it so.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGQUIT, libc::SIG_DFL);
                Ok(())
            })
        };
        command
    }

    /// Runs `tool` with `args` to completion.
    pub fn run<I, S>(&self, tool: &str, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::from(self.tool(tool).args(args).output().expect("run tool"))
    }

    /// Runs `tool` with `args` and `input` on stdin, to completion.
    pub fn run_with_input(&self, tool: &str, args: &[&str], input: impl AsRef<[u8]>) -> Run {
        Run::feeding(self.tool(tool).args(args), input)
    }

    /// `lpmx-pull REF | lpmx-unpack`, the pull required to succeed.
    pub fn pull_and_unpack(&self, reference: &str) -> Run {
        let pulled = self.run("lpmx-pull", ["--quiet", reference]);
        pulled.success();
        self.run_with_input("lpmx-unpack", &[], &pulled.stdout)
    }

    /// Starts `tool` with `args` in the background.
    pub fn spawn<I, S>(&self, tool: &str, args: I) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.tool(tool)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tool")
    }

    /// What is left in the store's `tmp/` (nothing, once every tool is done).
    pub fn store_temps(&self) -> Vec<std::ffi::OsString> {
        fs::read_dir(self.store().join("tmp"))
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    }

    /// Every file under the store's `blobs/`, for before/after comparisons.
    pub fn blob_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.store().join("blobs/sha256"))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// A finished run: status and output, with assertions that print both
/// streams when they fail.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `command` to completion with `input` on its stdin.
    pub fn feeding(command: &mut Command, input: impl AsRef<[u8]>) -> Run {
        use std::io::Write;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tool");
        // A tool that refuses its input early may close stdin: not an error here.
        let _ = child.stdin.take().expect("stdin").write_all(input.as_ref());
        Run::from(child.wait_with_output().expect("wait for tool"))
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn success(&self) -> &Run {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    #[track_caller]
    pub fn failure(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "expected exit {code}: {self:#?}");
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }

    /// The layer directories of a successful `lpmx-unpack`, bottom first.
    #[track_caller]
    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        self.success();
        let document = self.json();
        assert_eq!(document["kind"], "lpmx.layers", "{self:#?}");
        document["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|layer| PathBuf::from(layer["path"].as_str().expect("layer path")))
            .collect()
    }

    /// Stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}
