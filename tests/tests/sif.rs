//! Singularity (SIF) and squashfs images: imported by lpmx-unpack as one
//! layer, then run with lpmx-mkroot and lpmx-exec like any image; bad
//! images refused with a clear error and the store left as it was. The
//! tools run as an unprivileged user; the images are made as root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lpmx_tests::env::running_as_root;
use lpmx_tests::layers::layer_meta;
use lpmx_tests::sif::{
    FS_EXT3, FS_SQUASH, PART_DATA, PART_PRIMARY_SYSTEM, SifObject, debian_squashfs, debian_tree,
    mksquashfs, write_sif,
};
use lpmx_tests::{Env, Run, tree};

const SUITE: &str = "bookworm";

fn exec(env: &Env, name: &str, command: &[&str]) -> Run {
    let mut c = env.tool("lpmx-exec");
    c.arg(name);
    if !command.is_empty() {
        c.arg("--").args(command);
    }
    Run::from(c.output().expect("run lpmx-exec"))
}

fn canonical(path: &Path) -> String {
    fs::canonicalize(path).unwrap().display().to_string()
}

/// The image config blob a layers document names.
fn config_blob(env: &Env, document: &serde_json::Value) -> serde_json::Value {
    let digest = document["config_digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = fs::read(env.store().join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Every path under the store with its size (files) or link target, for
/// an exact before/after comparison.
fn store_listing(env: &Env) -> BTreeMap<String, String> {
    let mut listing = BTreeMap::new();
    for item in walkdir::WalkDir::new(env.store()).min_depth(1) {
        let item = item.unwrap();
        let meta = item.path().symlink_metadata().unwrap();
        let what = if meta.is_file() {
            format!("file {}", meta.len())
        } else {
            format!("{:?}", meta.file_type())
        };
        let rel = item.path().strip_prefix(env.store()).unwrap();
        listing.insert(rel.display().to_string(), what);
    }
    listing
}

#[test]
fn debian_sif_and_squashfs_run_with_the_image_environment_and_runscript() {
    if !running_as_root() {
        eprintln!("skipped: making the Debian squashfs image needs root");
        return;
    }
    let env = Env::new();
    let squashfs = debian_squashfs(SUITE);
    let sif = env.path().join("debian.sif");
    write_sif(
        &sif,
        &[
            SifObject::deffile("bootstrap: debootstrap\nOSVersion: bookworm\n"),
            SifObject::labels(r#"{"org.label-schema.schema-version":"1.0"}"#),
            SifObject::rootfs(&squashfs),
        ],
    );

    let unpacked = env.run("lpmx-unpack", ["--quiet".as_ref(), sif.as_os_str()]);
    let dirs = unpacked.layer_dirs();
    assert_eq!(dirs.len(), 1, "{unpacked:#?}");
    let document = unpacked.json();
    assert_eq!(document["reference"], format!("sif:{}", canonical(&sif)));
    assert_eq!(
        document["config"]["cmd"],
        serde_json::json!(["/.singularity.d/runscript"])
    );
    let env_vars: Vec<&str> = document["config"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        env_vars,
        [
            "PATH=/opt/sif/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "GREETING=hello from sif",
        ]
    );
    // The SIF's labels object becomes the config's Labels.
    assert_eq!(
        config_blob(&env, &document)["config"]["Labels"],
        serde_json::json!({"org.label-schema.schema-version": "1.0"})
    );
    // One layer: an uncompressed tar blob whose digest is the diff_id.
    let diff_id = document["layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hex = diff_id.strip_prefix("sha256:").unwrap();
    assert!(
        env.blob_names().contains(&hex.to_owned()),
        "layer blob stored"
    );
    assert!(dirs[0].ends_with(hex));

    // The layer holds exactly the tree the image was made from.
    let reference = tempfile::tempdir().unwrap();
    debian_tree(SUITE, reference.path());
    let meta = layer_meta(&dirs[0]);
    let mut expected = tree::snapshot(reference.path());
    let mut ours = tree::snapshot(&dirs[0].join("root"));
    // Device nodes are empty files on disk, recorded in the metadata.
    let devices: Vec<String> = expected
        .iter()
        .filter(|(_, entry)| **entry == tree::Entry::Other)
        .map(|(path, _)| path.clone())
        .collect();
    assert!(devices.contains(&"dev/null".to_owned()), "{devices:?}");
    for device in &devices {
        assert!(
            meta["entries"][device]["device"].is_object(),
            "device {device} recorded: {}",
            meta["entries"][device]
        );
        expected.remove(device);
        ours.remove(device);
    }
    let diff = tree::diff(&expected, &ours);
    assert!(
        diff.is_empty(),
        "layer differs from the image's tree: {diff:#?}"
    );
    assert_eq!(meta["entries"]["usr/bin/passwd"]["mode"], 0o4755);

    env.run_with_input("lpmx-mkroot", &["deb"], &unpacked.stdout)
        .success();
    let version = fs::read_to_string(reference.path().join("etc/debian_version")).unwrap();
    let run = exec(&env, "deb", &["cat", "/etc/debian_version"]);
    assert_eq!(run.success().stdout, version);
    let run = exec(
        &env,
        "deb",
        &["/bin/sh", "-c", "echo \"$GREETING\"; echo \"$PATH\""],
    );
    assert_eq!(
        run.success().stdout,
        "hello from sif\n/opt/sif/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    // No command: the runscript, with the image's environment.
    let run = exec(&env, "deb", &[]);
    assert_eq!(run.success().stdout, "runscript: hello from sif\n");

    // Importing again changes nothing; the same tree as a plain squashfs
    // image is the same layer (deduplicated by content).
    let blobs = env.blob_names();
    let again = env.run("lpmx-unpack", ["--quiet".as_ref(), sif.as_os_str()]);
    assert_eq!(again.layer_dirs(), dirs);
    assert_eq!(env.blob_names(), blobs);
    let plain = env.run("lpmx-unpack", ["--quiet".as_ref(), squashfs.as_os_str()]);
    assert_eq!(plain.layer_dirs(), dirs);
    assert_eq!(
        plain.json()["reference"],
        format!("squashfs:{}", canonical(&squashfs))
    );
    env.run_with_input("lpmx-mkroot", &["plain"], &plain.stdout)
        .success();
    let run = exec(&env, "plain", &["cat", "/etc/debian_version"]);
    assert_eq!(run.success().stdout, version);

    // A container of a SIF image moves to another user's store like any
    // other: the layer's tar blob and the config travel with it.
    exec(&env, "deb", &["/bin/sh", "-c", "echo moved > /tmp/note"]).success();
    let packed = env
        .tool("lpmx-pack")
        .arg("deb")
        .output()
        .expect("run lpmx-pack");
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let target = Env::other_user();
    target
        .run_with_input("lpmx-unpack", &["--quiet"], &packed.stdout)
        .success();
    let run = exec(
        &target,
        "deb",
        &[
            "/bin/sh",
            "-c",
            "cat /tmp/note; echo \"$GREETING\"; cat /etc/debian_version",
        ],
    );
    assert_eq!(
        run.success().stdout,
        format!("moved\nhello from sif\n{version}")
    );
}

/// 3 MiB that compress, but not to nothing: more than one part of
/// lpmx-unpack's squashfs reader (1 MiB).
fn large_data() -> Vec<u8> {
    (0..3u32 << 20)
        .map(|i| ((i % 251) ^ (i >> 12)) as u8)
        .collect()
}

/// A small tree with what a rootless unpack must record rather than make:
/// owners, a setuid bit, a device node; symlinks that point out of the
/// tree (kept as symlinks); hard links; a long name.
fn small_tree(dir: &Path) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("dev")).unwrap();
    fs::write(dir.join("etc/hello"), "hello\n").unwrap();
    fs::hard_link(dir.join("etc/hello"), dir.join("etc/hello-again")).unwrap();
    fs::write(dir.join("etc/big"), vec![7u8; 300_000]).unwrap();
    // Blocks of zeros, which mksquashfs stores as holes (no data), and a
    // file read in parts, twice linked.
    fs::write(dir.join("zeros"), vec![0u8; 3 * 131_072 + 100]).unwrap();
    fs::write(dir.join("large"), large_data()).unwrap();
    fs::hard_link(dir.join("large"), dir.join("large-again")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../etc/shadow", dir.join("etc/up")).unwrap();
    let long = "d".repeat(120);
    fs::create_dir_all(dir.join(&long)).unwrap();
    fs::write(dir.join(&long).join("f".repeat(120)), "long\n").unwrap();
    fs::write(dir.join("suid"), "#!/bin/sh\n").unwrap();
    fs::create_dir_all(dir.join(".singularity.d")).unwrap();
    fs::write(
        dir.join(".singularity.d/labels.json"),
        r#"{"maintainer": "lpmx", "version": 2, "nested": {"x": 1}}"#,
    )
    .unwrap();
    for command in [
        vec!["mknod", "dev/null", "c", "1", "3"],
        vec!["mkfifo", "fifo"],
        vec!["chown", "1000:1001", "etc/hello"],
        vec!["chmod", "4755", "suid"],
    ] {
        let status = Command::new(command[0])
            .args(&command[1..])
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "{command:?}");
    }
}

#[test]
fn squashfs_images_in_every_compression_keep_what_the_tree_holds() {
    if !running_as_root() {
        eprintln!("skipped: device nodes and owners in the test image need root");
        return;
    }
    let env = Env::new();
    let dir = env.path().join("tree");
    small_tree(&dir);
    let mut diff_ids = Vec::new();
    // What an import killed on the way would leave (no process has
    // that id): the next import removes it.
    let leftover = env.store().join(format!(
        "tmp/squashfs-layer.{}.4000000000.0.tmp",
        lpmx_core::store::host_tag()
    ));
    for comp in ["gzip", "xz", "zstd", "lz4"] {
        if comp == "xz" {
            assert!(!leftover.exists());
            env.make_user_dir(&leftover);
        }
        let image = env.path().join(format!("small-{comp}.sqfs"));
        mksquashfs(&dir, &image, &["-comp", comp]);
        let run = env.run("lpmx-unpack", ["--quiet".as_ref(), image.as_os_str()]);
        let dirs = run.layer_dirs();
        let document = run.json();
        assert_eq!(document["config"]["cmd"], serde_json::json!(["/bin/sh"]));
        assert_eq!(document["config"]["env"], serde_json::json!([]));
        // labels.json: its strings, numbers as written, nothing nested.
        assert_eq!(
            config_blob(&env, &document)["config"]["Labels"],
            serde_json::json!({"maintainer": "lpmx", "version": "2"})
        );
        let root = dirs[0].join("root");
        assert_eq!(
            fs::read_to_string(root.join("etc/hello")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/hello-again")).unwrap(),
            "hello\n"
        );
        // Hard links stay hard links.
        let (a, b) = (
            fs::metadata(root.join("etc/hello")).unwrap(),
            fs::metadata(root.join("etc/hello-again")).unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        assert_eq!(fs::read(root.join("etc/big")).unwrap(), vec![7u8; 300_000]);
        assert_eq!(
            fs::read(root.join("zeros")).unwrap(),
            vec![0u8; 3 * 131_072 + 100]
        );
        assert!(fs::read(root.join("large")).unwrap() == large_data());
        let (a, b) = (
            fs::metadata(root.join("large")).unwrap(),
            fs::metadata(root.join("large-again")).unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        assert_eq!(
            fs::read_link(root.join("abs")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(
            fs::read_link(root.join("etc/up")).unwrap(),
            PathBuf::from("../../../../etc/shadow")
        );
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
        assert_eq!(fs::read_to_string(root.join(&long)).unwrap(), "long\n");
        let meta = layer_meta(&dirs[0]);
        let entries = &meta["entries"];
        assert_eq!(entries["dev/null"]["device"]["major"], 1, "{entries}");
        assert_eq!(entries["dev/null"]["device"]["minor"], 3, "{entries}");
        assert_eq!(entries["etc/hello"]["uid"], 1000, "{entries}");
        assert_eq!(entries["etc/hello"]["gid"], 1001, "{entries}");
        assert_eq!(entries["suid"]["mode"], 0o4755, "{entries}");
        let fifo = fs::symlink_metadata(root.join("fifo")).unwrap();
        assert_eq!(fifo.mode() & libc::S_IFMT, libc::S_IFIFO);
        // The layer belongs to the user who ran the import, never root.
        assert_ne!(fs::metadata(root.join("etc/hello")).unwrap().uid(), 0);
        diff_ids.push(document["layers"][0]["diff_id"].clone());
    }
    assert!(!leftover.exists(), "leftover of a dead import removed");
    // The same tree is the same layer, whatever the compression.
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]), "{diff_ids:?}");
}

/// A squashfs image of `dir` with nothing compressed, so names can be
/// patched in place.
fn uncompressed_squashfs(dir: &Path, image: &Path) -> Vec<u8> {
    mksquashfs(dir, image, &["-noI", "-noD", "-noF", "-noX", "-all-root"]);
    fs::read(image).unwrap()
}

fn patch_name(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let places: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(places.len(), 1, "{from:?} is not unique in the image");
    bytes[places[0]..places[0] + from.len()].copy_from_slice(to);
}

/// The size a squashfs image's superblock says it has.
fn bytes_used(image: &[u8]) -> u64 {
    u64::from_le_bytes(image[40..48].try_into().unwrap())
}

#[test]
fn bad_images_are_refused_by_cause_and_leave_the_store_as_it_was() {
    if !running_as_root() {
        eprintln!("skipped: the test images are made as root");
        return;
    }
    let env = Env::new();
    let dir = env.path().join("tree");
    fs::create_dir_all(dir.join("Qz")).unwrap();
    fs::write(dir.join("Qz/passwd"), "owned\n").unwrap();
    fs::write(dir.join("aqb"), "x\n").unwrap();
    // A file whose length (0x12345) is a unique pattern in the image, to
    // patch; and one large enough for whole data blocks.
    fs::write(
        dir.join("tail"),
        &"0123456789\n".as_bytes().repeat(6779)[..0x12345],
    )
    .unwrap();
    let lines: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
    fs::write(dir.join("lines"), lines).unwrap();
    fs::create_dir_all(dir.join(".singularity.d/env")).unwrap();
    fs::write(
        dir.join(".singularity.d/env/90-environment.sh"),
        "export A=1\n",
    )
    .unwrap();
    let good = uncompressed_squashfs(&dir, &env.path().join("good.sqfs"));

    // A store with an image in it already.
    let good_sif = env.path().join("good.sif");
    write_sif(
        &good_sif,
        &[SifObject::partition(
            FS_SQUASH,
            PART_PRIMARY_SYSTEM,
            good.clone(),
        )],
    );
    let run = env.run("lpmx-unpack", ["--quiet".as_ref(), good_sif.as_os_str()]);
    assert_eq!(run.layer_dirs().len(), 1);
    assert_eq!(run.json()["config"]["env"], serde_json::json!(["A=1"]));
    let before = store_listing(&env);

    // --name belongs to pack streams: refused before the image is read.
    let named = env.path().join("named.sif");
    fs::copy(&good_sif, &named).unwrap();
    let run = env.run(
        "lpmx-unpack",
        [
            "--quiet".as_ref(),
            "--name".as_ref(),
            "x".as_ref(),
            named.as_os_str(),
        ],
    );
    run.failure(2)
        .stderr_has("--name names the container of a stream from lpmx-pack");
    assert_eq!(store_listing(&env), before, "--name changed the store");

    let sif_of = |data: Vec<u8>| {
        lpmx_tests::sif::sif_bytes(&[
            SifObject::deffile("bootstrap: scratch\n"),
            SifObject::partition(FS_SQUASH, PART_PRIMARY_SYSTEM, data),
        ])
    };
    let whole = sif_of(good.clone());
    let mut dotdot = good.clone();
    patch_name(&mut dotdot, b"Qz", b"..");
    let mut slash = good.clone();
    patch_name(&mut slash, b"aqb", b"a/b");
    // The file says it is longer than its data in the fragment block.
    let mut long_tail = good.clone();
    patch_name(
        &mut long_tail,
        &0x12345u32.to_le_bytes(),
        &0x1f345u32.to_le_bytes(),
    );
    // A byte of the compressed data flipped.
    let mut flipped = {
        let image = env.path().join("gzip.sqfs");
        mksquashfs(&dir, &image, &["-all-root"]);
        fs::read(&image).unwrap()
    };
    flipped[96 + 200] ^= 0x55;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.sif",
            whole[..whole.len() - 1000].to_vec(),
            "the SIF image is truncated: its root filesystem partition ends at byte",
        ),
        (
            "header.sif",
            whole[..100].to_vec(),
            "the SIF image is truncated: its global header ends at byte 128",
        ),
        (
            "norootfs.sif",
            lpmx_tests::sif::sif_bytes(&[
                SifObject::deffile("bootstrap: scratch\n"),
                SifObject::partition(FS_SQUASH, PART_DATA, good.clone()),
                SifObject::partition(FS_EXT3, PART_PRIMARY_SYSTEM, vec![0; 4096]),
            ]),
            "the SIF image has no root filesystem partition (a squashfs data partition of type \
             primary system); it holds: definition file, squashfs partition (data), ext3 \
             partition (primary system)",
        ),
        (
            "notsquashfs.sif",
            sif_of(vec![0x42; 8192]),
            "the squashfs image cannot be read: it does not start with the squashfs signature",
        ),
        (
            "dotdot.sif",
            sif_of(dotdot.clone()),
            "not a plain file name",
        ),
        ("dotdot.sqfs", dotdot, "not a plain file name"),
        ("slash.sqfs", slash, "not a plain file name"),
        (
            "long-tail.sqfs",
            long_tail,
            "the squashfs image cannot be read: /tail: its tail (127813 bytes at ",
        ),
        ("flipped.sqfs", flipped, "cannot be decompressed: "),
        (
            "truncated.sqfs",
            // mksquashfs pads images to 4 KiB: cut into what the image uses.
            good[..bytes_used(&good) as usize - 10].to_vec(),
            "the squashfs image cannot be read: it is truncated: it says it holds",
        ),
    ];
    for (name, bytes, message) in cases {
        let path = env.path().join(name);
        env.write_file(&path, &bytes);
        let run = env.run("lpmx-unpack", ["--quiet".as_ref(), path.as_os_str()]);
        run.failure(65)
            .stderr_has(&format!(
                "failed to import {}\n  caused by: ",
                path.display()
            ))
            .stderr_has(message);
        assert_eq!(store_listing(&env), before, "{name} changed the store");
    }
}

#[test]
fn an_image_file_imported_before_and_unchanged_is_not_read_again() {
    let env = Env::new();
    let dir = env.path().join("tree");
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/hello"), "hello\n").unwrap();
    fs::write(dir.join("big"), large_data()).unwrap();
    let image = env.path().join("app.sqfs");
    mksquashfs(&dir, &image, &[]);
    let unpack = || env.run("lpmx-unpack", [image.as_os_str()]);
    let first = unpack();
    first.success();
    let again = unpack();
    again.success().stderr_has("imported before and unchanged");
    assert_eq!(again.json(), first.json());

    // A changed file (even only touched) is read again; so is one whose
    // blobs left the store.
    let touched = Command::new("touch").arg(&image).status().unwrap();
    assert!(touched.success());
    let after_touch = unpack();
    assert!(
        !after_touch.success().stderr.contains("imported before"),
        "{after_touch:#?}"
    );
    assert_eq!(after_touch.json(), first.json());
    assert!(unpack().success().stderr.contains("imported before"));
    let config = first.json()["config_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    fs::remove_file(env.store().join("blobs/sha256").join(config)).unwrap();
    let without_blob = unpack();
    assert!(
        !without_blob.success().stderr.contains("imported before"),
        "{without_blob:#?}"
    );
    assert_eq!(without_blob.json(), first.json());
}
