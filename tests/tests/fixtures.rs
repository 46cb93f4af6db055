//! The fixtures the unpack tests stand on, checked against each other: a
//! real Debian root filesystem from debootstrap, put in an OCI layout and
//! unpacked by umoci as the test user, is the tree GNU tar extracts from the
//! same tar.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use lpmx_core::Digest;
use lpmx_core::oci::Platform;
use lpmx_tests::Env;
use lpmx_tests::image::{Format, Image};
use lpmx_tests::oci_layout::write_oci_layout;
use lpmx_tests::rootfs::debian_rootfs_tar;
use lpmx_tests::tree::{self, Entry};
use lpmx_tests::umoci::umoci_unpack_rootless;

/// The member names (`./dev/null`) of the device nodes in a tar.
fn device_nodes(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    let mut names = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let entry = entry.expect("tar entry");
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::Char | tar::EntryType::Block
        ) {
            names.push(
                entry
                    .path()
                    .expect("tar path")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    names
}

#[test]
fn debootstrap_bookworm_tar_is_cached_and_umoci_unpacks_it() {
    let tar_path = debian_rootfs_tar("bookworm");
    let started = Instant::now();
    assert_eq!(debian_rootfs_tar("bookworm"), tar_path);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the second call rebuilt the tar"
    );
    let tar = fs::read(&tar_path).expect("read the rootfs tar");
    let devices = device_nodes(&tar);
    assert!(
        devices.iter().any(|name| name == "./dev/null"),
        "no ./dev/null in the tar: {devices:?}"
    );

    let env = Env::new();
    let image = Image::build(Format::Oci, &Platform::host().to_string(), vec![tar]);
    let layout = env.path().join("layout");
    write_oci_layout(&layout, &[("bookworm", &image)]);
    let rootfs = umoci_unpack_rootless(&env, &layout, "bookworm");
    let os_release = fs::read_to_string(rootfs.join("etc/os-release")).expect("os-release");
    assert!(
        os_release.contains("VERSION_CODENAME=bookworm"),
        "{os_release}"
    );

    // The reference: GNU tar's extraction, without the device nodes, which
    // rootless umoci cannot create (checked below) and only root can, so
    // this also runs as any user once the tar is cached.
    let reference = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new("tar");
    command
        .arg("-C")
        .arg(reference.path())
        .args(["--numeric-owner", "--anchored"]);
    for name in &devices {
        command.arg(format!("--exclude={name}"));
    }
    let status = command.arg("-xf").arg(&tar_path).status().expect("run tar");
    assert!(status.success(), "tar -xf failed: {status}");

    let expected = tree::snapshot(reference.path());
    let mut actual = tree::snapshot(&rootfs);
    // umoci --rootless writes an empty regular file where a device node was.
    let empty = Entry::File(Digest::of(b""));
    for name in &devices {
        let path = name.trim_start_matches("./");
        assert_eq!(actual.remove(path), Some(empty.clone()), "umoci's {path}");
    }
    assert!(expected.contains_key("etc/os-release"));
    let diff = tree::diff(&expected, &actual);
    assert!(diff.is_empty(), "GNU tar vs umoci: {diff:#?}");
}
