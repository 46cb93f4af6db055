//! pjdfstest, the POSIX file-system conformance suite, from
//! `../shared/third_party/` (never part of the project): built once and
//! cached, then its test scripts run natively and inside containers, each
//! assertion's result collected.
//!
//! The scripts print TAP (`1..N`, `ok K`, `not ok K - tried ...`, `not ok K
//! # TODO ...` for a known deviation, which is no failure). An assertion is
//! named `DIR/NN.t:K`; one that never printed (the script stopped) fails.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::env::running_as_root;
use crate::rootfs::cache_dir;

/// The suite's directories the project runs (those the POSIX calls a
/// container's file system must get right).
pub const DIRS: [&str; 13] = [
    "chmod",
    "chown",
    "link",
    "mkdir",
    "mkfifo",
    "mknod",
    "open",
    "rename",
    "rmdir",
    "symlink",
    "truncate",
    "unlink",
    "utimensat",
];

/// Where the public test suites are: `$LPMX_THIRD_PARTY`, else
/// `../shared/third_party` beside the checkout.
pub fn third_party() -> PathBuf {
    if let Some(dir) = std::env::var_os("LPMX_THIRD_PARTY").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/third_party")
}

/// The built suite: a directory holding the `pjdfstest` program and its
/// `tests/`, readable by every user. Built with autotools from the
/// tarball on first use (as root: into the shared test cache).
pub fn build() -> PathBuf {
    let dir = third_party();
    let tarball = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e} (set LPMX_THIRD_PARTY)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pjdfstest-") && n.ends_with(".tar.gz"))
        })
        .unwrap_or_else(|| panic!("no pjdfstest-*.tar.gz in {}", dir.display()));
    let stem = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.gz"))
        .expect("tarball name")
        .to_owned();
    let cache = cache_dir();
    let built = cache.join(&stem);
    if built.join("pjdfstest").is_file() {
        return built;
    }
    fs::create_dir_all(&cache).expect("create the test cache");
    let _ = fs::set_permissions(&cache, fs::Permissions::from_mode(0o755));
    let lock = fs::File::create(cache.join(format!(".{stem}.lock"))).expect("lock file");
    lock.lock().expect("lock the pjdfstest build");
    if built.join("pjdfstest").is_file() {
        return built;
    }
    let scratch = tempfile::Builder::new()
        .prefix(&format!(".{stem}-build-"))
        .tempdir_in(&cache)
        .expect("build dir");
    let run = |program: &str, args: &[&str], dir: &Path| {
        let output = Command::new(program)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e} (scripts/install-deps installs it)"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed in {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        "tar",
        &[
            "-xzf",
            tarball.to_str().expect("path"),
            "-C",
            scratch.path().to_str().expect("path"),
        ],
        scratch.path(),
    );
    let source = scratch.path().join("pjdfstest");
    run("autoreconf", &["-ifs"], &source);
    run("./configure", &[], &source);
    run("make", &["pjdfstest"], &source);
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&source)
        .status()
        .expect("chmod");
    fs::rename(&source, &built).expect("install the built suite");
    built
}

/// One test script's results: every assertion K from its plan, passed or
/// not (a missing one did not pass), and the lines that failed.
#[derive(Debug, Default)]
pub struct Results {
    /// `DIR/NN.t:K` -> the line (`not ok K - tried ...`), for failures.
    pub failed: BTreeMap<String, String>,
    pub assertions: usize,
}

impl Results {
    fn add(&mut self, script: &str, tap: &str) {
        let mut planned = 0usize;
        let mut seen = std::collections::BTreeSet::new();
        for line in tap.lines() {
            if let Some(plan) = line.strip_prefix("1..") {
                planned = plan.trim().parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("not ok ") {
                let number: usize = rest
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                seen.insert(number);
                if !line.contains("# TODO") {
                    self.failed
                        .insert(format!("{script}:{number}"), line.to_owned());
                }
            } else if let Some(n) = line
                .strip_prefix("ok ")
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
            {
                seen.insert(n);
            }
        }
        if planned == 0 {
            self.failed
                .insert(format!("{script}:plan"), format!("no plan in: {tap}"));
        }
        for k in 1..=planned {
            if !seen.contains(&k) {
                self.failed
                    .insert(format!("{script}:{k}"), format!("assertion {k} never ran"));
            }
        }
        self.assertions += planned;
    }
}

/// The test scripts of `DIRS` in the built suite, as `DIR/NN.t` names.
pub fn scripts(suite: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for dir in DIRS {
        let mut here: Vec<String> = fs::read_dir(suite.join("tests").join(dir))
            .expect("read a test directory")
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".t"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        here.sort();
        names.extend(here);
    }
    names
}

/// Runs every script with `command(script path)` on `jobs` threads (the
/// scripts sleep a lot, so more threads than cores), collecting results.
pub fn run_all(suite: &Path, jobs: usize, command: impl Fn(&Path) -> Command + Sync) -> Results {
    let scripts = scripts(suite);
    let next = Mutex::new(0usize);
    let outputs = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut next = next.lock().expect("lock");
                        let i = *next;
                        *next += 1;
                        i
                    };
                    let Some(script) = scripts.get(i) else {
                        return;
                    };
                    let path = suite.join("tests").join(script);
                    let output = command(&path).output().expect("run a pjdfstest script");
                    let tap = String::from_utf8_lossy(&output.stdout).into_owned();
                    outputs.lock().expect("lock").push((script.clone(), tap));
                }
            });
        }
    });
    let mut results = Results::default();
    for (script, tap) in outputs.into_inner().expect("outputs") {
        results.add(&script, &tap);
    }
    results
}

/// The suite run natively, as root, in a scratch directory under `under`
/// (the file system the containers' stores are on): the reference.
/// None when not root (the suite switches users itself).
pub fn native(suite: &Path, under: &Path) -> Option<Results> {
    if !running_as_root() {
        return None;
    }
    let work = tempfile::Builder::new()
        .prefix("pjdfstest-native-")
        .tempdir_in(under)
        .expect("scratch dir");
    let results = run_all(suite, 8, |script| {
        let mut c = Command::new("/bin/sh");
        c.arg(script).current_dir(work.path());
        c
    });
    Some(results)
}

/// The checked-in list of assertions allowed to fail under lpmx, each with
/// its reason: `DIR/NN.t:K  reason` lines, `#` comments.
pub fn allowed(list: &str) -> BTreeMap<String, String> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name.to_owned(), reason.trim().to_owned())
        })
        .collect()
}
