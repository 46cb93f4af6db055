//! CPython's own regression tests for its file, process and import modules
//! (Debian's `libpython3.11-testsuite`), run inside a container by the
//! unprivileged test user: a public suite, written against a plain file
//! system, that must pass there as it does on one. The container's `/tmp`
//! is its own (`--no-bind /tmp`), so every file the tests make goes
//! through the writable layer.

use lpmx_tests::containers::debian_container_with;
use lpmx_tests::{Env, Run};

/// The modules run. test_sqlite3 is left out: the minimal image has no
/// `_sqlite3`, natively too. test_logging is left out: it waits on network
/// services for minutes, natively too. test_venv is left out: the image has
/// no `ensurepip` (python3-venv), natively too. test_largefile serves a
/// file over a socket bound to `localhost`, which the image alone cannot
/// resolve (it has no `/etc/hosts`).
const MODULES: &[&str] = &[
    "test_os",
    "test_shutil",
    "test_pathlib",
    "test_tempfile",
    "test_glob",
    "test_stat",
    "test_posix",
    "test_fileio",
    "test_tarfile",
    "test_zipfile",
    "test_filecmp",
    "test_genericpath",
    "test_posixpath",
    "test_compileall",
    "test_py_compile",
    "test_mmap",
    "test_fcntl",
    "test_dbm",
    "test_fnmatch",
    "test_zipimport",
    "test_importlib",
    "test_subprocess",
    "test_mailbox",
    "test_shelve",
    "test_fileinput",
    "test_runpy",
    "test_cmd_line_script",
    "test_pkgutil",
    "test_largefile",
    "test_file",
    "test_site",
    "test_linecache",
];

fn run_suite(env: &Env, options: &[&str]) -> Run {
    let mut command = env.tool("lpmx-exec");
    command
        .args(options)
        .args(["--no-bind", "/tmp", "--workdir", "/tmp"])
        .args(["--env", "HOME=/tmp", "--env", "LANG=C.UTF-8"])
        .args(["py", "--", "python3", "-m", "test", "-j2"])
        .args(MODULES);
    Run::from(command.output().expect("run lpmx-exec"))
}

#[test]
fn cpythons_file_system_tests_pass_inside_as_a_user_and_as_fake_root() {
    let env = Env::new();
    let _registry = debian_container_with(
        &env,
        "bookworm",
        &["python3", "libpython3.11-testsuite"],
        "py",
        &[],
    );
    let all_ok = format!("All {} tests OK.", MODULES.len());
    for options in [&[][..], &["--root"][..]] {
        let run = run_suite(&env, options);
        assert!(
            run.code == Some(0) && run.stdout.contains(&all_ok),
            "python3 -m test {options:?}:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}
