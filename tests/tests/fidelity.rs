//! Fidelity: real programs' own file operations inside a container behave
//! as on a plain file system. Each test runs the same programs (Python's
//! standard library, coreutils, tar, git, a C program of process calls) in
//! a directory of the container and natively in a plain directory, as the
//! same unprivileged user, and compares what they print.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lpmx_tests::containers::{debian_container, debian_container_with};
use lpmx_tests::registry::LocalRegistry;
use lpmx_tests::{Env, Run};

/// The image the programs come from: bookworm with Python and git.
const PACKAGES: &[&str] = &["python3", "git"];

struct Container {
    env: Env,
    _registry: LocalRegistry,
}

impl Container {
    fn with_programs() -> Container {
        let env = Env::new();
        let registry = debian_container_with(&env, "bookworm", PACKAGES, "c", &[]);
        Container {
            env,
            _registry: registry,
        }
    }

    fn sh(&self, root: bool, script: &str) -> Run {
        let mut c = self.env.tool("lpmx-exec");
        if root {
            c.arg("--root");
        }
        c.args(["c", "--", "/bin/sh", "-c", script]);
        Run::from(c.output().expect("run lpmx-exec"))
    }

    /// `file` from tests/, copied where the container sees it too (its
    /// env's directory is under the /tmp bind).
    fn script(&self, file: &str) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let target = self.env.path().join(source.file_name().expect("name"));
        self.env
            .write_file(&target, fs::read(&source).expect("read test script"));
        let mut perms = fs::metadata(&target).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(&target, perms).expect("chmod");
        target
    }

    /// An empty directory of the test user's, outside the container.
    fn plain_dir(&self, name: &str) -> PathBuf {
        let dir = self.env.path().join("plain").join(name);
        self.env.make_user_dir(&dir);
        dir
    }

    /// Runs `program args... DIR` natively on a plain directory and in the
    /// container on `inside` (made first), and checks both print the same.
    fn compare(&self, program: &[&str], inside: &str, what: &str) -> Run {
        let plain = self.plain_dir(inside.trim_start_matches('/').replace('/', "-").as_str());
        let mut native = self.env.command_as_user(program[0]);
        native.args(&program[1..]).arg(&plain).current_dir(&plain);
        let native = Run::from(native.output().expect("run natively"));
        native.success();
        let command = format!(
            "mkdir -p {inside} && cd {inside} && {} {inside}",
            program.join(" ")
        );
        let contained = self.sh(false, &command);
        contained.success();
        assert_eq!(
            contained.stdout, native.stdout,
            "{what}: the container's transcript differs from a plain directory's \
             (left: container, right: plain)\ncontainer stderr: {}",
            contained.stderr
        );
        contained
    }
}

#[test]
fn python_standard_library_works_as_on_a_plain_directory() {
    let c = Container::with_programs();
    let script = c.script("scripts/stdlib-ops.py");
    let script = script.to_str().unwrap();
    // The host's Python (Debian's), natively; the image's inside.
    let run = c.compare(&["/usr/bin/python3", script], "/srv/py", "python");
    assert!(run.stdout.contains("rmtree rounds: False"), "{run:#?}");
    // Again where the directory is the image's own (copied up on write).
    let run = c.sh(
        false,
        &format!("cd /usr/share && mkdir -p py && python3 {script} /usr/share/py | tail -1"),
    );
    run.success();
    assert!(run.stdout.starts_with("final listing: "), "{run:#?}");
}

#[test]
fn coreutils_tar_and_git_work_as_on_a_plain_directory() {
    let c = Container::with_programs();
    let script = c.script("scripts/tools-ops.sh");
    let run = c.compare(
        &["/bin/sh", script.to_str().unwrap()],
        "/srv/tools",
        "tools",
    );
    assert!(run.stdout.contains("commits: 2"), "{run:#?}");
}

#[test]
fn process_and_descriptor_calls_work_as_on_a_plain_directory() {
    let c = Container::with_programs();
    let binary = c.env.path().join("fidelity");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/fidelity.c");
    let built = Command::new("gcc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run gcc");
    assert!(built.success(), "gcc {}", source.display());
    // Both run in a directory of the same name: the program prints it.
    let plain = c.plain_dir("work");
    let mut native = c.env.command_as_user(&binary);
    native.current_dir(&plain);
    let native = Run::from(native.output().expect("run natively"));
    native.success();
    let contained = c.sh(
        false,
        &format!("mkdir -p /srv/work && cd /srv/work && {}", binary.display()),
    );
    contained.success();
    assert_eq!(contained.stdout, native.stdout, "{contained:#?}");
    assert!(native.stdout.contains("spawned_in=sub"), "{native:#?}");
}

#[test]
fn symlinks_below_a_bind_resolve_inside_the_container() {
    let env = Env::new();
    let _registry = debian_container(&env, "bookworm", "c", &[]);
    // The env's directory is under /tmp, which the container shows by
    // default; /opt/only-inside exists in the container alone.
    let dir = env.path().join("links");
    env.make_user_dir(&dir);
    let d = dir.display();
    let run = env.run(
        "lpmx-exec",
        [
            "c",
            "--",
            "/bin/sh",
            "-c",
            &format!(
                "mkdir -p /opt/only-inside && echo inside > /opt/only-inside/f && \
                 ln -s /opt/only-inside/f {d}/absolute && ln -s /opt/only-inside {d}/dir && \
                 ln -s ../../../../../../../../opt/only-inside/f {d}/relative && \
                 cat {d}/absolute {d}/dir/f {d}/relative && readlink -f {d}/dir/f && \
                 test -e {d}/absolute && echo exists"
            ),
        ],
    );
    run.success();
    assert_eq!(
        run.stdout, "inside\ninside\ninside\n/opt/only-inside/f\nexists\n",
        "{run:#?}"
    );
    assert!(
        !Path::new("/opt/only-inside").exists(),
        "the host's /opt was reached"
    );
}

#[test]
fn apt_get_installs_many_packages_with_the_default_binds() {
    // Five or more packages: apt hands dpkg a directory of symlinks in
    // /tmp (a bind), pointing at /var/cache/apt/archives in the container.
    let env = Env::new();
    let _registry = debian_container(&env, "bookworm", "c", &[]);
    let run = env.run(
        "lpmx-exec",
        [
            "--root",
            "c",
            "--",
            "/bin/sh",
            "-c",
            "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q -o Dpkg::Use-Pty=0 bc dc ed less nano lsof >/dev/null && \
             dpkg -l bc dc ed less nano lsof | grep -c '^ii'",
        ],
    );
    run.success();
    assert_eq!(run.stdout, "6\n", "{run:#?}");
}
