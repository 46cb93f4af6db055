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

// --- What glibc opens for itself, and programs' own system calls ----------

fn exec(env: &Env, options: &[&str], script: &str) -> Run {
    let mut c = env.tool("lpmx-exec");
    c.args(options).args(["c", "--", "/bin/sh", "-c", script]);
    Run::from(c.output().expect("run lpmx-exec"))
}

#[test]
fn glibc_reads_the_containers_user_database_time_zone_and_gconv_modules() {
    let env = Env::new();
    let _registry = debian_container(&env, "bookworm", "c", &[]);
    // As root inside: users and groups by the image's own tools (they lock
    // /etc/.pwd.lock with lckpwdf), a time zone, a gconv module removed.
    let run = exec(
        &env,
        &["--root"],
        "usermod -c lpmx-inside daemon && groupadd lpmxteam && useradd -m -G lpmxteam alice && \
         ln -sf /usr/share/zoneinfo/Asia/Tokyo /etc/localtime && \
         rm /usr/lib/x86_64-linux-gnu/gconv/ISO8859-15.so && stat -c %U:%G /home/alice",
    );
    run.success();
    // Fake root sees the owner useradd gave; without --root, files are the
    // invoking user's, as on the host.
    assert_eq!(run.stdout, "alice:alice\n", "{run:#?}");
    let trap = env.c_program("trap", &[]);
    let run = exec(
        &env,
        &[],
        &format!(
            "getent passwd daemon | cut -d: -f5; id -nG alice; getent group lpmxteam | cut -d: -f1,4; \
             date +%Z; {}",
            trap.display()
        ),
    );
    run.success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        &lines[..4],
        ["lpmx-inside", "alice lpmxteam", "lpmxteam:alice", "JST"],
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("iconv_open_latin9=Invalid argument"),
        "gconv loaded a module the container does not have: {run:#?}"
    );
    // The preload alone (--no-trap): glibc's own opens are the host's.
    let run = exec(&env, &["--no-trap"], "getent passwd daemon | cut -d: -f5");
    run.success();
    assert_ne!(run.stdout.trim(), "lpmx-inside", "{run:#?}");
}

#[test]
fn programs_making_system_calls_themselves_see_the_container_and_keep_the_trap() {
    let env = Env::new();
    let _registry = debian_container(&env, "trixie", "c", &[]);
    // A host file the container must not see (/var/tmp is not a bind).
    let marker = tempfile::Builder::new()
        .prefix("lpmx-host-only-")
        .tempfile_in("/var/tmp")
        .expect("marker");
    let marker = marker.path().to_str().unwrap().to_owned();
    let trap = env.c_program("trap", &[]);
    let inside = exec(&env, &[], "cat /etc/debian_version").stdout;
    let command = format!(
        "cd /usr/share && {} /etc/debian_version {marker}",
        trap.display()
    );
    let run = exec(&env, &[], &command);
    run.success();
    let version = inside.trim();
    assert!(
        run.stdout.contains(&format!("syscall_openat={version}\n"))
            && run.stdout.contains(&format!("syscall_open={version}\n"))
            && run.stdout.contains("syscall_stat=ok\n")
            && run.stdout.contains("syscall_getcwd=/usr/share\n")
            && run
                .stdout
                .contains("syscall_host_marker=No such file or directory\n"),
        "a program's own system calls left the container (it ignored and blocked SIGSYS first): {run:#?}"
    );
    // On a 16 KiB alternate signal stack, and from a handler running on
    // it: the trap moves to a stack of its own.
    assert!(
        run.stdout
            .contains(&format!("small_altstack_openat={version}\n"))
            && run
                .stdout
                .contains(&format!("signal_handler_openat={version}\n")),
        "{run:#?}"
    );
    let host = fs::read_to_string("/etc/debian_version").unwrap_or_default();
    let run = exec(&env, &["--no-trap"], &command);
    run.success();
    assert!(
        run.stdout
            .contains(&format!("syscall_openat={}\n", host.trim())),
        "without the trap such calls are the host's: {run:#?}"
    );
}

#[test]
fn go_programs_see_the_container_through_their_own_system_calls() {
    let env = Env::new();
    let _registry = debian_container(&env, "trixie", "c", &[]);
    let marker = tempfile::Builder::new()
        .prefix("lpmx-host-only-")
        .tempfile_in("/var/tmp")
        .expect("marker");
    let marker = marker.path().to_str().unwrap().to_owned();
    // Built with cgo (dynamically linked, so lpmx runs it on the image's
    // loader) and without (static: the loader starts it, libunion linked
    // in); its file operations are the Go runtime's own system calls.
    for cgo in ["1", "0"] {
        go_fileops(&env, cgo, &marker);
    }
}

fn go_fileops(env: &Env, cgo: &str, marker: &str) {
    let program = env.path().join(format!("fileops-cgo{cgo}"));
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&program)
        .arg(".")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("go/fileops"))
        .env("CGO_ENABLED", cgo)
        .env("GOCACHE", env.path().join("go-cache"))
        .env("GOPATH", env.path().join("go-path"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .status()
        .expect("run go (golang-go)");
    assert!(built.success(), "go build tests/go/fileops");
    let inside = exec(env, &[], "cat /etc/debian_version").stdout;
    let version = inside.trim();
    let command = format!("{} /etc/debian_version {marker}", program.display());
    let run = exec(env, &[], &command);
    run.success();
    let user = exec(env, &[], "id -un").stdout;
    let expected = format!(
        "read={version}\ngetwd=/usr/share\nwalk=true\nmkdirtemp_write_removeall=ok\n\
         exec={version}\nuser={}\nhost_marker=stat {marker}: no such file or directory\n\
         parallel_failures=0\n",
        user.trim()
    );
    assert_eq!(run.stdout, expected, "CGO_ENABLED={cgo}: {run:#?}");
    let run = exec(env, &["--no-trap"], &command);
    if cgo == "0" {
        // Static: only the trap keeps it inside, so it is refused.
        run.failure(126).stderr_has("statically linked");
        return;
    }
    // The preload alone does not see them.
    let host = fs::read_to_string("/etc/debian_version").unwrap_or_default();
    assert!(
        run.stdout.starts_with(&format!("read={}\n", host.trim())),
        "without the trap a Go program reads the host's files: {run:#?}"
    );
}

#[test]
fn the_invoking_user_has_a_name_inside() {
    // A user the image does not know (and the host may not either).
    let env = Env::other_user();
    let _registry = debian_container(&env, "bookworm", "c", &[]);
    let mut c = env.tool("lpmx-exec");
    c.env("USER", "lpmxtester").args([
        "c",
        "--",
        "/bin/sh",
        "-c",
        "whoami; id -un; id -gn; grep -c '^lpmxtester:' /etc/passwd; ls -ld . | cut -d' ' -f3",
    ]);
    c.current_dir(env.home());
    let run = Run::from(c.output().expect("run lpmx-exec"));
    run.success();
    let name = match lpmx_tests::env::running_as_root() {
        // The host's own entry for the uid, when it has one.
        true => host_name(lpmx_tests::env::OTHER_UID).unwrap_or_else(|| "lpmxtester".to_owned()),
        false => current_user_name(),
    };
    assert_eq!(
        run.stdout,
        format!("{name}\n{name}\n{}\n1\n{name}\n", group_name_or(&name)),
        "{run:#?}"
    );
    // Under --root the program is root, and nothing is added.
    let run = exec(
        &env,
        &["--root"],
        "whoami; grep -c lpmxtester /etc/passwd || true",
    );
    assert_eq!(run.stdout, "root\n0\n", "{run:#?}");
}

fn host_name(uid: u32) -> Option<String> {
    fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find(|l| l.split(':').nth(2) == Some(&uid.to_string()))
        .map(|l| l.split(':').next().unwrap_or("").to_owned())
}

fn current_user_name() -> String {
    std::env::var("USER").unwrap_or_default()
}

/// The group the view gives the user: the host's name of their group, or
/// their own name.
fn group_name_or(name: &str) -> String {
    let gid = if lpmx_tests::env::running_as_root() {
        lpmx_tests::env::OTHER_GID
    } else {
        // SAFETY: getgid has no preconditions.
        unsafe { libc::getgid() }
    };
    fs::read_to_string("/etc/group")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.split(':').nth(2) == Some(&gid.to_string()))
                .map(|l| l.split(':').next().unwrap_or("").to_owned())
        })
        .unwrap_or_else(|| name.to_owned())
}

// --- Libraries installed into the container ------------------------------

/// Builds `libgreet.so.1` saying `word` into `dir`.
fn greet_library(dir: &Path, word: &str) -> PathBuf {
    let source = dir.join(format!("greet-{word}.c"));
    fs::write(
        &source,
        format!("#include <stdio.h>\nvoid greet(void) {{ puts(\"{word}\"); }}\n"),
    )
    .expect("write the library's source");
    let library = dir.join(format!("{word}/libgreet.so.1"));
    fs::create_dir_all(library.parent().unwrap()).expect("library directory");
    let built = Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libgreet.so.1", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("run gcc");
    assert!(built.success(), "gcc {}", source.display());
    library
}

#[test]
fn libraries_installed_into_the_container_are_found_and_deleted_ones_are_not() {
    let env = Env::new();
    let _registry = debian_container(&env, "bookworm", "c", &[]);
    let dir = env.path().join("greet");
    fs::create_dir_all(&dir).expect("make the build directory");
    let v1 = greet_library(&dir, "first");
    let v2 = greet_library(&dir, "second");
    let program = dir.join("greet");
    let main = dir.join("main.c");
    fs::write(
        &main,
        "void greet(void);\nint main(void) { greet(); return 0; }\n",
    )
    .expect("write the program's source");
    let built = Command::new("gcc")
        .arg("-o")
        .arg(&program)
        .arg(&main)
        .arg(&v1)
        .status()
        .expect("run gcc");
    assert!(built.success(), "gcc {}", main.display());
    for path in [
        &dir,
        &dir.join("first"),
        &dir.join("second"),
        &v1,
        &v2,
        &program,
    ] {
        let mut perms = fs::metadata(path).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(path, perms).expect("chmod");
    }
    let (program, v1, v2) = (program.display(), v1.display(), v2.display());
    let libs = "/usr/lib/x86_64-linux-gnu";
    let farm = env.store().join("containers/c/upper.libs");
    let first_dir = dir.join("first");
    let first_dir = first_dir.display();
    // Libraries in binds are found, as a mount's would be: a directory over
    // a library directory, a file into one.
    let bound = |bind: String| {
        let run = exec(&env, &["--bind", &bind], &format!("{program}"));
        run.success();
        run.stdout
    };
    assert_eq!(bound(format!("{first_dir}:/usr/local/lib")), "first\n");
    assert_eq!(bound(format!("{v2}:{libs}/libgreet.so.1")), "second\n");

    // Installed during a run: that run's next programs find it.
    let run = exec(&env, &["--root"], &format!("cp {v1} {libs}/ && {program}"));
    run.success();
    assert_eq!(run.stdout, "first\n", "{run:#?}");
    // The next run starts with the container's library directory.
    let run = exec(&env, &[], &format!("{program}"));
    run.success();
    assert_eq!(run.stdout, "first\n", "{run:#?}");
    assert!(
        farm.join("libgreet.so.1").exists(),
        "the container's library directory has it"
    );
    assert!(farm.join("libc.so.6").exists(), "and the image's libraries");
    assert!(
        farm.join("libz.so.1").exists(),
        "libz among them, until deleted"
    );
    // Replaced during a run, then in the next.
    let run = exec(&env, &["--root"], &format!("cp {v2} {libs}/ && {program}"));
    run.success();
    assert_eq!(run.stdout, "second\n", "{run:#?}");
    let run = exec(&env, &[], &format!("{program}"));
    run.success();
    assert_eq!(run.stdout, "second\n", "{run:#?}");
    // Deleted, it is gone, and so is an image library the container deletes.
    let run = exec(
        &env,
        &["--root"],
        &format!("rm {libs}/libgreet.so.1 {libs}/libz.so.1 && {program}; echo status $?"),
    );
    assert!(run.stdout.ends_with("status 127\n"), "{run:#?}");
    let run = exec(&env, &[], &format!("{program}; echo status $?"));
    assert_eq!(run.stdout, "status 127\n", "{run:#?}");
    assert!(run.stderr.contains("libgreet.so.1"), "{run:#?}");
    assert!(
        !farm.join("libz.so.1").exists(),
        "a deleted image library stays out"
    );
    assert!(farm.join("libc.so.6").exists());
    // With the container's library directory in use, binds come first too.
    assert_eq!(bound(format!("{first_dir}:/usr/local/lib")), "first\n");
    assert_eq!(bound(format!("{v2}:{libs}/libgreet.so.1")), "second\n");
}
