//! The write side of libunion: changes land in the container's writable
//! layer, the image's layers never change, run as an unprivileged user.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use lpmx_core::oci::Platform;
use lpmx_tests::env::{TEST_GID, TEST_UID, running_as_root};
use lpmx_tests::image::{Format, Image, RawEntry, raw_tar};
use lpmx_tests::registry::{LocalRegistry, Target};
use lpmx_tests::rootfs::debian_rootfs_tar;
use lpmx_tests::{Env, Run};

/// The starting files of tests/scripts/file-ops.sh.
const OPS_FILES: &[(&str, &str)] = &[
    ("a.txt", "alpha\n"),
    ("b.txt", "beta\n"),
    ("sub/c.txt", "gamma\n"),
    ("gone/x.txt", "x\n"),
    ("gone/deep/y.txt", "y\n"),
];
const OPS_DIRS: &[&str] = &["sub", "gone", "gone/deep", "emptydir"];

/// Every byte value, several times over: copy-up must keep them all.
fn all_bytes() -> Vec<u8> {
    (0..4096).map(|i| (i % 256) as u8).collect()
}

fn test_layer() -> Vec<u8> {
    let mut entries = vec![RawEntry::dir("srv/"), RawEntry::dir("srv/ops/")];
    for dir in OPS_DIRS {
        entries.push(RawEntry::dir(&format!("srv/ops/{dir}/")));
    }
    for (name, text) in OPS_FILES {
        entries.push(RawEntry::file(&format!("srv/ops/{name}"), text.as_bytes()).mode(0o644));
    }
    entries.push(RawEntry::file("srv/bytes.bin", &all_bytes()).mode(0o644));
    raw_tar(&entries)
}

struct Container {
    env: Env,
    layer_dirs: Vec<PathBuf>,
    _registry: LocalRegistry,
}

impl Container {
    /// Containers `names` of one bookworm image (plus the test layer).
    fn new(names: &[&str]) -> Container {
        let tar = fs::read(debian_rootfs_tar("bookworm")).expect("rootfs tar");
        let image = Image::build(
            Format::Oci,
            &Platform::host().to_string(),
            vec![tar, test_layer()],
        );
        let registry = LocalRegistry::start();
        registry.push_image("debian", "bookworm", &image);
        let env = Env::new();
        let unpacked = env.pull_and_unpack(&format!("{}/debian:bookworm", registry.host()));
        for name in names {
            env.run_with_input("lpmx-mkroot", &[name], &unpacked.stdout)
                .success();
        }
        Container {
            layer_dirs: unpacked.layer_dirs(),
            env,
            _registry: registry,
        }
    }

    fn exec(&self, name: &str, command: &[&str]) -> Run {
        let mut c = self.env.tool("lpmx-exec");
        c.arg(name).arg("--").args(command);
        Run::from(c.output().expect("run lpmx-exec"))
    }

    fn sh(&self, name: &str, script: &str) -> Run {
        self.exec(name, &["/bin/sh", "-c", script])
    }
}

/// Every file of the image's layers: kind, mode, size and contents.
fn layers_checksum(dirs: &[PathBuf]) -> BTreeMap<String, String> {
    let mut sums = BTreeMap::new();
    for dir in dirs {
        for item in walkdir::WalkDir::new(dir).follow_links(false) {
            let item = item.unwrap();
            let meta = item.path().symlink_metadata().unwrap();
            let contents = if meta.is_file() {
                lpmx_core::Digest::of(&fs::read(item.path()).unwrap()).to_string()
            } else if meta.file_type().is_symlink() {
                fs::read_link(item.path()).unwrap().display().to_string()
            } else {
                String::new()
            };
            sums.insert(
                item.path().display().to_string(),
                format!(
                    "{:o} {} {} {contents}",
                    meta.mode(),
                    meta.len(),
                    meta.mtime()
                ),
            );
        }
    }
    sums
}

fn script_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/file-ops.sh")
}

#[test]
fn file_operations_match_a_plain_directory_and_leave_the_image_alone() {
    let c = Container::new(&["ops"]);
    let before = layers_checksum(&c.layer_dirs);

    // The same files in a plain directory, run natively as the same user.
    let native = c.env.path().join("native");
    c.env.make_user_dir(&native);
    for dir in OPS_DIRS {
        c.env.make_user_dir(&native.join(dir));
    }
    for (name, text) in OPS_FILES {
        let path = native.join(name);
        c.env.write_file(&path, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        if running_as_root() {
            std::os::unix::fs::chown(&path, Some(TEST_UID), Some(TEST_GID)).unwrap();
        }
        let stamp = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(stamp)
            .unwrap();
    }
    // The script where the container sees it too (through the /tmp bind).
    let script = c.env.path().join("file-ops.sh");
    c.env
        .write_file(&script, fs::read(script_source()).unwrap());
    let mut expected = c.env.command_as_user("/bin/sh");
    expected.arg(&script).arg(&native);
    let expected = Run::from(expected.output().unwrap());
    expected.success();

    // Inside: the script reaches the container through a bind (/tmp).
    let inside = c.exec("ops", &["/bin/sh", script.to_str().unwrap(), "/srv/ops"]);
    inside.success();
    assert_eq!(
        inside.stdout, expected.stdout,
        "container vs plain directory: {inside:#?}"
    );
    assert!(inside.stdout.contains("./gone/new.txt"), "{inside:#?}");

    // Copy-up keeps every byte of a binary file.
    let run = c.sh("ops", "printf 'tail' >> /srv/bytes.bin; head -c 4096 /srv/bytes.bin | od -An -tx1 | tr -d ' \\n' | md5sum");
    run.success();
    let mut expected_hex = String::new();
    for b in all_bytes() {
        expected_hex.push_str(&format!("{b:02x}"));
    }
    let md5 = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' {expected_hex} | md5sum"))
        .output()
        .unwrap();
    assert_eq!(
        run.stdout,
        String::from_utf8_lossy(&md5.stdout),
        "copy-up changed the bytes"
    );

    // The changes persist for later programs, and the view agrees with View.
    let run = c.sh(
        "ops",
        "cat /srv/ops/a.txt; ls /srv/ops; test -e /srv/ops/gone/x.txt || echo x-gone",
    );
    run.success();
    assert_eq!(
        run.stdout,
        "alpha\nmore\na.txt\nb.txt\nd2\nemptydir\ngone\nhard.txt\nmoved\nrenamed.txt\nsoft.txt\nx-gone\n"
    );

    assert_eq!(
        layers_checksum(&c.layer_dirs),
        before,
        "a layer of the image changed"
    );
}

#[test]
fn containers_of_one_image_do_not_see_each_others_changes() {
    let c = Container::new(&["one", "two"]);
    let before = layers_checksum(&c.layer_dirs);
    let one = c.env.spawn("lpmx-exec", ["one", "--", "/bin/sh", "-c", "for i in $(seq 50); do echo one$i >> /srv/ops/a.txt; rm -f /srv/ops/b.txt; done; mkdir /srv/only-one"]);
    let two = c.env.spawn(
        "lpmx-exec",
        [
            "two",
            "--",
            "/bin/sh",
            "-c",
            "for i in $(seq 50); do echo two$i >> /srv/ops/a.txt; done; rm -r /srv/ops/sub",
        ],
    );
    assert!(one.wait_with_output().unwrap().status.success());
    assert!(two.wait_with_output().unwrap().status.success());
    let run = c.sh(
        "one",
        "grep -c one /srv/ops/a.txt; grep -c two /srv/ops/a.txt; ls /srv/ops; ls -d /srv/only-one",
    );
    assert_eq!(
        run.stdout, "50\n0\na.txt\nemptydir\ngone\nsub\n/srv/only-one\n",
        "{run:#?}"
    );
    let run = c.sh(
        "two",
        "grep -c two /srv/ops/a.txt; ls /srv/ops; test -e /srv/only-one || echo no-one",
    );
    assert_eq!(
        run.stdout, "50\na.txt\nb.txt\nemptydir\ngone\nno-one\n",
        "{run:#?}"
    );
    assert_eq!(
        layers_checksum(&c.layer_dirs),
        before,
        "a layer of the image changed"
    );
}

#[test]
fn copy_up_keeps_holes_and_gigabytes_of_zeros() {
    const ZEROS: u64 = 2 << 30;
    let head: Vec<u8> = b"HEAD".repeat(1024);
    let tail: Vec<u8> = b"TAIL".repeat(1024);
    let rootfs = fs::read(debian_rootfs_tar("bookworm")).expect("rootfs tar");
    let layers = vec![
        (
            lpmx_tests::image::gzip(&rootfs),
            lpmx_core::Digest::of(&rootfs),
        ),
        lpmx_tests::image::zeros_layer("srv/big.bin", &head, ZEROS, &tail),
    ];
    let image = Image::from_gzip_layers(Format::Oci, &Platform::host().to_string(), layers);
    let registry = LocalRegistry::start();
    registry.push_image("debian", "big", &image);
    let env = Env::new();
    let unpacked = env.pull_and_unpack(&format!("{}/debian:big", registry.host()));
    env.run_with_input("lpmx-mkroot", &["c"], &unpacked.stdout)
        .success();
    let allocated = |path: &Path| fs::metadata(path).unwrap().blocks() * 512;
    let lower = unpacked.layer_dirs()[1].join("root/srv/big.bin");
    assert!(
        allocated(&lower) < 64 << 20,
        "lpmx-unpack wrote the zeros out"
    );

    let mut exec = env.tool("lpmx-exec");
    exec.args(["c", "--", "/bin/sh", "-c"]).arg(format!(
        "printf x >> /srv/big.bin && stat -c %s /srv/big.bin && head -c 4096 /srv/big.bin | md5sum && \
         tail -c +4097 /srv/big.bin | head -c {ZEROS} | cmp -n {ZEROS} - /dev/zero && echo zeros && \
         tail -c 4097 /srv/big.bin | md5sum"
    ));
    let run = Run::from(exec.output().unwrap());
    run.success();
    let md5 = |bytes: &[u8]| {
        let mut c = Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut c.stdin.take().unwrap(), bytes).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    let mut last = tail.clone();
    last.push(b'x');
    let expected = format!(
        "{}\n{}zeros\n{}",
        head.len() as u64 + ZEROS + tail.len() as u64 + 1,
        md5(&head),
        md5(&last)
    );
    assert_eq!(run.stdout, expected, "{run:#?}");
    let copy = env.store().join("containers/c/upper/srv/big.bin");
    assert!(allocated(&copy) < 64 << 20, "copy-up filled the holes");
    assert!(allocated(&lower) < 64 << 20);
}

#[test]
fn descriptors_opened_before_a_copy_up_keep_reading_the_image_file() {
    let c = Container::new(&["c"]);
    let before = layers_checksum(&c.layer_dirs);
    // Read-only descriptors stay on the image's file, as on overlayfs:
    // consistent, unchanged data; new opens see the writable layer's copy.
    let run = c.sh(
        "c",
        "exec 3< /srv/ops/a.txt 4< /srv/ops/b.txt; \
         echo more >> /srv/ops/a.txt; rm /srv/ops/b.txt; \
         echo fd: $(cat <&3) $(cat <&4); echo path: $(cat /srv/ops/a.txt); \
         ls /srv/ops; test -e /srv/ops/b.txt || echo b gone",
    );
    assert_eq!(
        run.stdout, "fd: alpha beta\npath: alpha more\na.txt\nemptydir\ngone\nsub\nb gone\n",
        "{run:#?}"
    );
    assert_eq!(layers_checksum(&c.layer_dirs), before, "a layer changed");
}
