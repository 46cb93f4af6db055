//! lpmx-exec and libunion: real Debian bullseye, bookworm and trixie images
//! (and bookworm split into ten layers) taken through pull, unpack, mkroot
//! and exec, run as an unprivileged user.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lpmx_core::container::StackDocument;
use lpmx_core::document::parse_document;
use lpmx_core::oci::Platform;
use lpmx_core::view::View;
use lpmx_tests::env::running_as_root;
use lpmx_tests::image::{Format, Image, RawEntry, raw_tar};
use lpmx_tests::layers::merged_view;
use lpmx_tests::registry::{LocalRegistry, Target};
use lpmx_tests::rootfs::{debian_rootfs_tar, split_rootfs};
use lpmx_tests::{Env, Run};

/// A file only the host has: a container must never show it.
const HOST_MARKER: &str = "/etc/lpmx-host-only-marker";

/// A shared library the image's `ld.so.conf.d` makes findable by name.
fn hello_library() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hello.c");
    fs::write(&source, "int lpmx_hello(void) { return 42; }\n").unwrap();
    let library = dir.path().join("libhello.so.1");
    let built = Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libhello.so.1", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("run gcc");
    assert!(built.success(), "gcc -shared");
    fs::read(library).unwrap()
}

/// A top layer exercising the view: a whiteout'd directory, an opaque
/// directory, an absolute symlink, `#!` scripts, and a library in a
/// directory only `ld.so.conf.d` names.
fn test_layer() -> Vec<u8> {
    let library = hello_library();
    raw_tar(&[
        RawEntry::dir("usr/"),
        RawEntry::dir("usr/share/"),
        RawEntry::dir("usr/share/doc/"),
        RawEntry::file("usr/share/doc/.wh.bash", b""),
        RawEntry::dir("etc/"),
        RawEntry::dir("etc/apt/"),
        RawEntry::dir("etc/apt/apt.conf.d/"),
        RawEntry::file("etc/apt/apt.conf.d/.wh..wh..opq", b""),
        RawEntry::file("etc/apt/apt.conf.d/only-this", b"// the only one\n"),
        RawEntry::dir("opt/"),
        RawEntry::symlink("opt/abs-link", "/etc/debian_version"),
        RawEntry::dir("usr/local/"),
        RawEntry::dir("usr/local/bin/"),
        RawEntry::file(
            "usr/local/bin/hello.sh",
            b"#!/bin/sh\necho hello \"$1\" from $0\n",
        )
        .mode(0o755),
        RawEntry::file(
            "usr/local/bin/hello.pl",
            b"#!/usr/bin/env perl\nprint \"perl script $ARGV[0]\\n\";\n",
        )
        .mode(0o755),
        RawEntry::dir("opt/lpmx-lib/"),
        RawEntry::file("opt/lpmx-lib/libhello.so.1", &library).mode(0o755),
        RawEntry::dir("etc/ld.so.conf.d/"),
        RawEntry::file(
            "etc/ld.so.conf.d/zz-lpmx-test.conf",
            b"# a test\n/opt/lpmx-lib\n",
        ),
    ])
}

/// A container of Debian `suite` (its tree in `layers` layers, plus the
/// test layer) in a fresh store.
struct Container {
    env: Env,
    name: String,
    layer_dirs: Vec<PathBuf>,
    _registry: LocalRegistry,
}

impl Container {
    fn new(suite: &str, layers: usize) -> Container {
        let tar = fs::read(debian_rootfs_tar(suite)).expect("rootfs tar");
        let mut tars = if layers == 1 {
            vec![tar]
        } else {
            split_rootfs(&tar, layers)
        };
        tars.push(test_layer());
        let image = Image::build(Format::Oci, &Platform::host().to_string(), tars);
        let registry = LocalRegistry::start();
        registry.push_image("debian", suite, &image);
        let env = Env::new();
        let unpacked = env.pull_and_unpack(&format!("{}/debian:{suite}", registry.host()));
        let layer_dirs = unpacked.layer_dirs();
        let name = format!("{suite}-{layers}");
        env.run_with_input("lpmx-mkroot", &[&name], &unpacked.stdout)
            .success();
        Container {
            env,
            name,
            layer_dirs,
            _registry: registry,
        }
    }

    /// `lpmx-exec [options] NAME -- command...`
    fn exec_command(&self, options: &[&str], command: &[&str]) -> Command {
        let mut c = self.env.tool("lpmx-exec");
        c.args(options).arg(&self.name).arg("--").args(command);
        c
    }

    fn exec(&self, options: &[&str], command: &[&str]) -> Run {
        Run::from(
            self.exec_command(options, command)
                .output()
                .expect("run lpmx-exec"),
        )
    }

    fn sh(&self, script: &str) -> Run {
        self.exec(&[], &["/bin/sh", "-c", script])
    }

    fn stack(&self) -> StackDocument {
        let path = self
            .env
            .store()
            .join(format!("containers/{}/stack.json", self.name));
        parse_document(&fs::read_to_string(path).unwrap()).unwrap()
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// Every check of issue 4 on one image.
fn check_distribution(suite: &str, layers: usize, glibc: &str) {
    if running_as_root() {
        fs::write(HOST_MARKER, "host only\n").unwrap();
    }
    let c = Container::new(suite, layers);
    let what = format!("{suite} in {layers} layer(s)");

    let run = c.exec(&[], &["cat", "/etc/os-release"]);
    run.success();
    assert!(
        run.stdout.contains(&format!("VERSION_CODENAME={suite}")),
        "{what}: {run:#?}"
    );
    let run = c.exec(&[], &["ldd", "--version"]);
    run.success();
    assert!(
        lines(&run.stdout)[0].ends_with(glibc),
        "{what}: the image's glibc {glibc}: {run:#?}"
    );

    let run = c.exec(
        &[],
        &[
            "bash",
            "-c",
            "echo b a c | tr ' ' '\\n' | sort -r | head -1; echo $((6 * 7))",
        ],
    );
    run.success();
    assert_eq!(lines(&run.stdout), ["c", "42"], "{what}");

    // Listing the whole tree: ls -lR and find complete without an error
    // and see what the layers merge to.
    let run = c.exec(&["--no-bind", "all"], &["ls", "-lR", "/usr"]);
    run.success();
    assert_eq!(run.stderr, "", "{what}: ls -lR /usr");
    let run = c.exec(&["--no-bind", "all"], &["find", "/", "-mindepth", "1"]);
    run.success();
    assert_eq!(run.stderr, "", "{what}: find /");
    let seen: BTreeSet<String> = run.stdout.lines().map(|l| l[1..].to_owned()).collect();
    let expected: BTreeSet<String> = merged_view(&c.layer_dirs).into_keys().collect();
    let missing: Vec<_> = expected.difference(&seen).take(10).collect();
    let extra: Vec<_> = seen.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: find / differs from the merged layers: missing {missing:?}, extra {extra:?}"
    );

    // Interpreters and scripts.
    let run = c.exec(&[], &["perl", "-e", "print qq(perl $^V ok\\n)"]);
    run.success();
    assert!(run.stdout.ends_with("ok\n"), "{what}: {run:#?}");
    let run = c.exec(&[], &["hello.sh", "world"]);
    run.success();
    assert_eq!(
        run.stdout, "hello world from /usr/local/bin/hello.sh\n",
        "{what}"
    );
    let run = c.exec(&[], &["/usr/local/bin/hello.pl", "x"]);
    run.success();
    assert_eq!(run.stdout, "perl script x\n", "{what}");

    let run = c.exec(&[], &["readlink", "/proc/self/exe"]);
    run.success();
    assert_eq!(run.stdout, "/usr/bin/readlink\n", "{what}");

    // Paths resolve as lpmx_core::view says, symlinks inside the container.
    let image_version = c.sh("cat /etc/debian_version");
    image_version.success();
    let run = c.sh("cat /opt/abs-link");
    run.success();
    assert_eq!(run.stdout, image_version.stdout, "{what}: absolute link");
    let view = View::of_stack(&c.stack()).unwrap();
    let probes = [
        "/opt/abs-link",
        "/bin/sh",
        "/lib64/ld-linux-x86-64.so.2",
        "/usr/bin/../lib/os-release",
        "/bin/../lib/./os-release",
        "/etc/alternatives/awk",
        "/usr/local/bin/hello.sh",
    ];
    let mut args = vec!["readlink", "-f"];
    args.extend(probes);
    let run = c.exec(&[], &args);
    run.success();
    let answers: Vec<String> = probes
        .iter()
        .map(|p| view.resolve(p, true).unwrap().path)
        .collect();
    assert_eq!(
        lines(&run.stdout),
        answers,
        "{what}: libunion and View agree"
    );

    if running_as_root() {
        let run = c.sh(&format!("cat {HOST_MARKER}"));
        assert_ne!(run.code, Some(0), "{what}: the host's file shows: {run:#?}");
    }

    // Whiteout and opaque directory.
    let run = c.sh("ls /usr/share/doc | grep -c -x bash; ls /etc/apt/apt.conf.d; test -e /usr/share/doc/bash || echo gone; ls -d /usr/share/doc/dpkg");
    assert_eq!(
        lines(&run.stdout),
        ["0", "only-this", "gone", "/usr/share/doc/dpkg"],
        "{what}: {run:#?}"
    );

    // A cleared environment stays inside.
    let run = c.exec(
        &[],
        &[
            "env",
            "-i",
            "sh",
            "-c",
            "cat /etc/debian_version; ls /usr/share/doc/bash 2>&1 >/dev/null | wc -l",
        ],
    );
    run.success();
    assert_eq!(
        lines(&run.stdout),
        [image_version.stdout.trim(), "1"],
        "{what}: env -i"
    );

    // A static binary runs inside, kept there by the system-call trap;
    // without the trap it is refused, not run against the host's files.
    // ldconfig (static in Debian) only keeps a cache the container never
    // reads, so package scripts calling it succeed.
    let program = static_binary(&c.env);
    let program = program.to_str().unwrap();
    let run = c.exec(&[], &[program]);
    assert_eq!(run.code, Some(3), "{what}: a static program: {run:#?}");
    let run = c.exec(&["--no-trap"], &[program]);
    run.failure(126).stderr_has("statically linked");
    c.exec(&[], &["/sbin/ldconfig"]).success();

    if suite != "bullseye" {
        // The same program dynamic, static and static-pie: the preload
        // and the trap with libunion linked in give the same answers.
        for link in [
            &[][..],
            &["-static", "-DNO_DLOPEN"],
            &["-static-pie", "-DNO_DLOPEN"],
        ] {
            entry_points(&c, &format!("{what} {link:?}"), link);
        }
    }
}

/// A statically linked program, built with the host's gcc where the
/// container sees it (under /tmp).
fn static_binary(env: &Env) -> PathBuf {
    let dir = env.path();
    let source = dir.join("static.c");
    // It opens a file of the test layer: 3 inside, 4 on the host.
    fs::write(
        &source,
        "#include <stdio.h>\nint main(void) { return fopen(\"/usr/local/bin/hello.sh\", \"r\") ? 3 : 4; }\n",
    )
    .unwrap();
    let binary = dir.join("static-program");
    let built = Command::new("gcc")
        .args(["-static", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run gcc");
    assert!(built.success(), "gcc -static");
    binary
}

/// The C program of tests/c calls each entry point inside the container.
fn entry_points(c: &Container, what: &str, link: &[&str]) {
    let binary = c.env.path().join(format!(
        "entrypoints{}",
        link.first().copied().unwrap_or("")
    ));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/entrypoints.c");
    let built = Command::new("gcc")
        .args(["-O2", "-D_FORTIFY_SOURCE=2"])
        .args(link)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("run gcc");
    assert!(built.success(), "gcc {}", source.display());
    let run = c.exec(&[], &[binary.to_str().unwrap()]);
    run.success();
    let version = c.sh("cat /etc/debian_version").stdout.trim().to_owned();
    let expected = [
        ("fopen", version.as_str()),
        ("open", &version),
        ("openat", &version),
        ("stat", "1"),
        ("lstat_link", "1"),
        ("fstatat", "1"),
        ("statx", "1"),
        ("access", "1"),
        ("faccessat", "1"),
        ("access_whiteout", "0"),
        ("readlink", "/etc/debian_version"),
        ("self_exe", binary.to_str().unwrap()),
        ("realpath", "/etc/debian_version"),
        ("canonicalize", "/usr/lib/os-release"),
        ("chdir", "0"),
        ("getcwd", "/usr/share"),
        ("relative", &version),
        ("opendir_opaque", "only-this"),
        ("fdopendir", "only-this"),
        ("scandir_bash", "0"),
        ("scandir_dpkg", "1"),
        ("glob", "/etc/apt/apt.conf.d/only-this"),
        ("nftw", "2"),
        ("fts", "1"),
        ("dlopen", "1"),
        ("dlopen_by_name", "42"),
        ("execl", "3"),
        ("execle_empty_env", "0"),
        ("execvp", "4"),
        ("posix_spawnp", "5"),
        ("system", "6"),
        ("popen", &version),
    ];
    let seen: Vec<(String, String)> = run
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let xattr = seen
        .iter()
        .find(|(k, _)| k == "xattr")
        .map(|(_, v)| v.as_str());
    assert!(
        matches!(xattr, Some("v1") | Some("unsupported")),
        "{what}: setxattr on a copied-up file: {xattr:?}"
    );
    for (key, value) in expected {
        if key.starts_with("dlopen") && link.contains(&"-DNO_DLOPEN") {
            continue;
        }
        let got = seen.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(got, Some(value), "{what}: {key}: {run:#?}");
    }
}

#[test]
fn bullseye_runs_on_its_own_glibc() {
    check_distribution("bullseye", 1, "2.31");
}

#[test]
fn bookworm_runs_on_its_own_glibc() {
    check_distribution("bookworm", 1, "2.36");
}

#[test]
fn trixie_runs_on_its_own_glibc() {
    check_distribution("trixie", 1, "2.41");
}

#[test]
fn bookworm_in_ten_layers_looks_the_same() {
    check_distribution("bookworm", 10, "2.36");
}

#[test]
fn status_signals_stdin_environment_and_binds_pass_through() {
    let c = Container::new("bookworm", 1);
    c.sh("exit 7").failure(7);
    let status = c
        .exec_command(&[], &["/bin/sh", "-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(15), "killed by SIGTERM");

    // Ctrl-C reaches the program itself: lpmx-exec became it.
    let mut child = c
        .exec_command(&[], &["sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Once the program runs (its name is the program's: lpmx-loader names
    // it so), not while lpmx starts it on a loaded machine.
    let comm = format!("/proc/{}/comm", child.id());
    for _ in 0..200 {
        if fs::read_to_string(&comm).is_ok_and(|c| c == "sleep\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(2), "SIGINT: {status:?}");

    let mut child = c
        .exec_command(&[], &["tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "THROUGH STDIN\n");

    // SIGPIPE as outside: a writer to a closed pipe ends quietly (Rust
    // ignores it in lpmx-exec; the program must not inherit that).
    let run = c.sh("yes | head -1; trap - PIPE; grep SigIgn /proc/self/status");
    run.success();
    assert_eq!(lines(&run.stdout)[0], "y", "{run:#?}");
    assert!(run.stderr.is_empty(), "{run:#?}");
    let ignored =
        u64::from_str_radix(lines(&run.stdout)[1].split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {run:#?}"
    );

    // Long argument lists (find -exec ... +, xargs) and environments.
    let run = c.sh("set -- $(seq 5000); for i in $(seq 600); do export V$i=$i; done; /bin/echo \"$@\" | wc -w; env | grep -c '^V'");
    run.success();
    assert_eq!(lines(&run.stdout), ["5000", "600"], "{run:#?}");

    // The terminal: script(1) gives lpmx-exec one, and the program has it.
    let tool = c.exec_command(&[], &["sh", "-c", "test -t 0 && test -t 1 && tty"]);
    let mut words: Vec<String> = vec![tool.get_program().to_string_lossy().into_owned()];
    words.extend(
        tool.get_args()
            .map(|a| format!("'{}'", a.to_string_lossy())),
    );
    let output = Command::new("script")
        .args(["-qec", &words.join(" "), "/dev/null"])
        .env("LPMX_HOME", c.env.store())
        .env("HOME", c.env.home())
        .output()
        .expect("script(1) from util-linux");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("/dev/pts/"), "no terminal inside: {text:?}");

    // A store whose path has a ':' cannot go into the ':'-separated
    // LPMX_STORE: a clear error, not a trap that misjudges host paths.
    let odd_store = c.env.path().join("odd:store");
    std::os::unix::fs::symlink(c.env.store(), &odd_store).unwrap();
    let output = c
        .exec_command(&[], &["true"])
        .env("LPMX_HOME", &odd_store)
        .output()
        .unwrap();
    let refused = Run::from(output);
    refused.failure(2).stderr_has("contains ':'");

    // Environment: the container's env file, --env, defaults.
    let env_file = c.env.store().join(format!("containers/{}/env", c.name));
    fs::write(&env_file, "# set by lpmx-env\nFROM_FILE=file value\n").unwrap();
    let run = c.exec(
        &["--env", "FROM_FLAG=flag"],
        &["sh", "-c", "echo $FROM_FILE/$FROM_FLAG/$HOME; echo $PATH"],
    );
    run.success();
    let home = c.env.home();
    assert_eq!(
        lines(&run.stdout),
        [
            format!("file value/flag/{}", home.display()).as_str(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );

    // The home directory, --bind and --workdir.
    c.env.write_file(&home.join("notes.txt"), "in my home\n");
    let data = c.env.path().join("data");
    c.env.make_user_dir(&data);
    c.env.write_file(&data.join("input.csv"), "1,2\n");
    let bind = format!("{}:/mnt/data", data.display());
    let run = c.exec(
        &["--bind", &bind, "--workdir", "/mnt/data"],
        &["sh", "-c", "pwd; cat input.csv; cat ~/notes.txt"],
    );
    run.success();
    assert_eq!(lines(&run.stdout), ["/mnt/data", "1,2", "in my home"]);
    // (The test's home lies under /tmp, a default bind too.)
    let run = c.exec(
        &["--no-bind", "home", "--no-bind", "/tmp"],
        &["sh", "-c", "cat ~/notes.txt"],
    );
    assert_ne!(run.code, Some(0), "--no-bind home hides it: {run:#?}");
    let run = c.exec(&["--workdir", "/etc"], &["pwd"]);
    assert_eq!(run.stdout, "/etc\n");
    // A bind where the container has no directory: the directories that
    // lead to it are there, holding only the way on, as mount points are,
    // and listed where they are, with the inode stat gives; a program
    // started in one knows where it is (on the host, all are one empty
    // directory); a file made beside it lands in the writable layer.
    let deep = format!("{}:/scratch/me/data", data.display());
    let run = c.exec(
        &["--bind", &deep],
        &[
            "sh",
            "-c",
            "cat /scratch/me/data/input.csv; cd /scratch/me && ls && /bin/pwd; stat -c '%F' /scratch; \
             test -e /scratch/other || echo only-the-way; ls / | grep -x scratch; \
             touch /scratch/made; ls /scratch | tr '\\n' ' '; echo; \
             test \"$(ls -i /scratch/me)\" = \"$(stat -c '%i data' /scratch/me/data)\" && echo same-inode; \
             cat /scratch/me/data/input.csv",
        ],
    );
    run.success();
    assert_eq!(
        lines(&run.stdout),
        [
            "1,2",
            "data",
            "/scratch/me",
            "directory",
            "only-the-way",
            "scratch",
            "made me ",
            "same-inode",
            "1,2"
        ],
        "{run:#?}"
    );
    // The host's name resolution: images carry no /etc/hosts (Docker makes
    // one at run time), so the host's is seen, listed in /etc, and
    // localhost resolves; likewise /etc/resolv.conf, the file itself where
    // the host's is a link. --no-bind shows the image's own.
    let run = c.exec(
        &[],
        &[
            "sh",
            "-c",
            "ls /etc | grep -x hosts; getent hosts localhost > /dev/null && echo resolves; \
             stat -L -c %i /etc/resolv.conf; cat /etc/hosts",
        ],
    );
    run.success();
    let out = lines(&run.stdout);
    assert_eq!(out[..2], ["hosts", "resolves"], "{run:#?}");
    if let Ok(resolv) = fs::metadata("/etc/resolv.conf") {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(out[2], resolv.ino().to_string(), "{run:#?}");
    }
    let hosts = fs::read_to_string("/etc/hosts").unwrap();
    assert_eq!(out[3..], lines(&hosts)[..], "{run:#?}");
    let run = c.exec(
        &["--no-bind", "/etc/hosts"],
        &["sh", "-c", "test -e /etc/hosts || echo the-images-own"],
    );
    assert_eq!(run.stdout, "the-images-own\n", "{run:#?}");
    // A bind's host path is the file it names, as a mount's source is.
    let link = c.env.path().join("notes-link");
    std::os::unix::fs::symlink(home.join("notes.txt"), &link).unwrap();
    let bind = format!("{}:/mnt/notes", link.display());
    let run = c.exec(&["--bind", &bind], &["stat", "-c", "%F", "/mnt/notes"]);
    assert_eq!(run.stdout, "regular file\n", "{run:#?}");
    let upper = c.env.store().join(format!("containers/{}/upper", c.name));
    assert!(upper.join("scratch/made").is_file());
    assert!(
        !upper.join("scratch/me").exists(),
        "the way to a bind is not made"
    );

    // Errors name their cause.
    c.exec(&[], &["/no/such/program"])
        .failure(127)
        .stderr_has("No such file");
    c.exec(&["--workdir", "/no/such/dir"], &["true"])
        .failure(66)
        .stderr_has("/no/such/dir");
    c.env
        .run("lpmx-exec", ["nosuch", "--", "true"])
        .failure(66)
        .stderr_has("nosuch");
    c.exec(&["--bind", "relative:/x"], &["true"])
        .failure(2)
        .stderr_has("--bind");
}

#[test]
fn libunion_needs_nothing_newer_than_glibc_2_17() {
    let library = lpmx_tests::env::tool_dir().join("libunion.so");
    let text = lpmx_tests::elf::assert_glibc_2_17_at_most(&library);
    assert!(
        text.contains("lpmx_exec"),
        "lpmx-exec's entry point is exported"
    );
}
