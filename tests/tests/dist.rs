//! The binary distribution: `scripts/dist` (what `make dist` runs) builds
//! one tarball; unpacked into a Debian bullseye root (glibc 2.31, older
//! than the build host's) its tools run the whole pipeline there, under
//! chroot as an unprivileged user, so nothing of the build host's
//! libraries is used, and the container (bookworm) is newer than that
//! host. Slow (a release build with zig, minutes): one test.

use std::fs;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lpmx_core::oci::Platform;
use lpmx_tests::Run;
use lpmx_tests::elf;
use lpmx_tests::env::{TEST_GID, TEST_UID, running_as_root};
use lpmx_tests::image::{Format, Image};
use lpmx_tests::registry::{LocalRegistry, Target};
use lpmx_tests::rootfs::{debian_rootfs_tar, remove_unless_mounted};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The tools every distribution holds.
const TOOLS: [&str; 6] = [
    "lpmx-pull",
    "lpmx-unpack",
    "lpmx-mkroot",
    "lpmx-exec",
    "lpmx-env",
    "lpmx-pack",
];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// Runs `script` with `sh -e` as the test user, chrooted into `root`, in
/// a mount and pid namespace of its own with a fresh `/proc` (lpmx-exec
/// finds libunion through `/proc/self/exe`): the mount goes away with the
/// namespace, whatever happens, and the host never sees it.
fn in_chroot(root: &Path, script: &str) -> Run {
    let output = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--kill-child"])
        .arg(format!("--mount-proc={}", root.join("proc").display()))
        .arg("chroot")
        .arg(format!("--userspec={TEST_UID}:{TEST_GID}"))
        .arg(root)
        .args(["/bin/sh", "-ec", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare and chroot (util-linux, coreutils)");
    Run::from(output)
}

fn untar(archive: &Path, into: &Path, flags: &str) {
    let status = Command::new("tar")
        .arg("-C")
        .arg(into)
        .arg(flags)
        .arg(archive)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar {flags} {}", archive.display());
}

/// Builds the tarball with scripts/dist; returns its path.
fn build_tarball() -> PathBuf {
    let output = Command::new(workspace().join("scripts/dist"))
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/dist");
    assert!(output.status.success(), "scripts/dist failed");
    let tarball = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert_eq!(
        tarball.file_name().and_then(|n| n.to_str()),
        Some(format!("lpmx-{VERSION}-x86_64-linux.tar.gz").as_str())
    );
    let size = fs::metadata(&tarball).expect("the tarball").len();
    eprintln!("{}: {} KiB", tarball.display(), size / 1024);
    tarball
}

/// The layout, and how each binary is linked: no GLIBC_x.y above 2.17.
fn check_contents(prefix: &Path) {
    let mut tools: Vec<String> = TOOLS.iter().map(|t| t.to_string()).collect();
    let mut shipped: Vec<String> = fs::read_dir(prefix.join("bin"))
        .expect("bin/")
        .map(|e| {
            e.expect("bin entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    shipped.sort();
    tools.sort();
    assert_eq!(shipped, tools, "bin/ holds every tool and nothing else");
    for page in [
        "share/man/man1/lpmx-exec.1",
        "share/man/man7/lpmx.7",
        "INSTALL",
    ] {
        assert!(prefix.join(page).is_file(), "{page} is in the tarball");
    }
    for tool in &tools {
        for completion in [
            format!("share/bash-completion/completions/{tool}"),
            format!("share/zsh/site-functions/_{tool}"),
            format!("share/fish/vendor_completions.d/{tool}.fish"),
        ] {
            assert!(
                prefix.join(&completion).is_file(),
                "{completion} is in the tarball"
            );
        }
        let path = prefix.join("bin").join(tool);
        elf::assert_glibc_2_17_at_most(&path);
        let linked = elf::describe(&path);
        eprintln!("{tool}: {linked}");
        assert!(
            linked.contains("dynamically linked")
                && linked.contains("interpreter /lib64/ld-linux-x86-64.so.2"),
            "{tool} is linked against glibc through the standard loader: {linked}"
        );
    }
    let libunion = prefix.join("lib/lpmx/libunion.so");
    elf::assert_glibc_2_17_at_most(&libunion);
    eprintln!("libunion.so: {}", elf::describe(&libunion));
}

#[test]
fn dist_tarball_runs_the_pipeline_in_a_bullseye_chroot() {
    if !running_as_root() {
        eprintln!("skipped: chroot(2) needs root (CI runs the tests as root)");
        return;
    }
    let tarball = build_tarball();

    // A Debian bullseye root (glibc 2.31) with the tarball unpacked in /opt.
    let scratch = tempfile::Builder::new()
        .prefix("lpmx-dist-")
        .tempdir()
        .expect("scratch dir");
    let root = scratch.path().join("root");
    fs::create_dir(&root).expect("create the root");
    untar(&debian_rootfs_tar("bullseye"), &root, "-xpf");
    untar(&tarball, &root.join("opt"), "-xzf");
    let prefix = format!("/opt/lpmx-{VERSION}");
    check_contents(&root.join(prefix.trim_start_matches('/')));
    let home = root.join("home/lpmx");
    fs::create_dir_all(&home).expect("create the home");
    chown(&home, Some(TEST_UID), Some(TEST_GID)).expect("chown the home");

    // A registry on the loopback, which the chroot shares, serving bookworm.
    let bookworm = fs::read(debian_rootfs_tar("bookworm")).expect("bookworm rootfs tar");
    let image = Image::build(
        Format::Docker,
        &Platform::host().to_string(),
        vec![bookworm],
    );
    let registry = LocalRegistry::start();
    registry.push_image("debian", "bookworm", &image);
    drop(image);
    let reference = format!("{}/debian:bookworm", registry.host());

    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let script = format!(
        r#"
        export PATH={prefix}/bin:/usr/bin:/bin HOME=/home/lpmx LPMX_HOME=/home/lpmx/store
        cd
        echo "host: $(cat /etc/debian_version) uid $(id -u)"
        lpmx-exec --version
        lpmx-pull --quiet {reference} > image.json
        lpmx-unpack < image.json > layers.json
        lpmx-mkroot c < layers.json > stack.json
        lpmx-env c set LPMX_DIST=from-lpmx-env
        lpmx-exec c -- sh -c 'echo "container: $(cat /etc/debian_version) $LPMX_DIST"'
        "#
    );
    let run = in_chroot(&root, &script);
    run.success();
    eprintln!("{}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("host: 11.") && lines[0].ends_with(&format!("uid {TEST_UID}")),
        "runs in bullseye as the test user: {run:#?}"
    );
    let expected_version = format!("lpmx-exec {VERSION} (commit ");
    assert!(lines[1].starts_with(&expected_version), "{run:#?}");
    if let Some(commit) = commit {
        assert!(lines[1].contains(&commit), "built from {commit}: {run:#?}");
    }
    assert!(
        lines[2].starts_with("container: 12.") && lines[2].ends_with(" from-lpmx-env"),
        "the bookworm container runs, with its environment file: {run:#?}"
    );
    remove_unless_mounted(&scratch.keep());
}
