//! lpmx-unpack: layers into the store, rootless and safe, from pulled
//! images and from offline archives, run as an unprivileged user.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lpmx_core::oci::Platform;
use lpmx_tests::Env;
use lpmx_tests::faulty::FaultyRegistry;
use lpmx_tests::image::{Format, Image, RawEntry, raw_tar, small_image, tar_of};
use lpmx_tests::layers::layer_meta;
use lpmx_tests::registry::Target;
use tar::EntryType;

fn host_platform() -> String {
    Platform::host().to_string()
}

/// An in-process registry holding `image` as `r:t`; returns the reference.
fn serve(registry: &FaultyRegistry, image: &Image) -> String {
    registry.push_image("r", "t", image);
    format!("{}/r:t", registry.host())
}

#[track_caller]
fn assert_store_has_no_partial_layers(env: &Env) {
    let tmp: Vec<_> = fs::read_dir(env.store().join("tmp"))
        .expect("tmp")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(tmp.is_empty(), "leftovers in tmp: {tmp:?}");
}

#[test]
fn layers_unpack_once_with_whiteouts_and_opaque_dirs_recorded() {
    let lower = tar_of(&[
        ("gone/a.txt", b"a"),
        ("replaced/old1", b"1"),
        ("replaced/old2", b"2"),
        ("keep/x", b"x"),
    ]);
    let upper = raw_tar(&[
        RawEntry::file(".wh.gone", b""),
        RawEntry::dir("replaced/"),
        RawEntry::file("replaced/.wh..wh..opq", b""),
        RawEntry::file("replaced/new", b"new"),
        RawEntry::file("keep/.wh.nothing-here", b""),
        RawEntry::file("added/file", b"added"),
    ]);
    let image = Image::build(Format::Oci, &host_platform(), vec![lower, upper]);
    let registry = FaultyRegistry::start();
    let reference = serve(&registry, &image);
    let env = Env::new();
    let run = env.pull_and_unpack(&reference);
    let dirs = run.layer_dirs();
    assert_eq!(dirs.len(), 2);
    for (dir, diff_id) in dirs.iter().zip(&image.diff_ids) {
        assert!(dir.ends_with(diff_id.hex()), "{dir:?}");
        assert!(dir.starts_with(env.store().join("layers")));
    }
    let upper_root = dirs[1].join("root");
    assert_eq!(fs::read(upper_root.join("replaced/new")).unwrap(), b"new");
    assert_eq!(fs::read(upper_root.join("added/file")).unwrap(), b"added");
    for hidden in [".wh.gone", "replaced/.wh..wh..opq", "keep/.wh.nothing-here"] {
        assert!(!upper_root.join(hidden).exists(), "{hidden} left as a file");
    }
    let upper_meta = layer_meta(&dirs[1]);
    assert_eq!(upper_meta["kind"], "lpmx.layer-meta");
    assert_eq!(upper_meta["diff_id"], image.diff_ids[1].to_string());
    assert_eq!(
        upper_meta["whiteouts"],
        serde_json::json!(["gone", "keep/nothing-here"])
    );
    assert_eq!(upper_meta["opaque"], serde_json::json!(["replaced"]));
    assert_eq!(
        fs::read(dirs[0].join("root/replaced/old1")).unwrap(),
        b"1",
        "lower layer intact"
    );
    assert_store_has_no_partial_layers(&env);

    // Again, and a second image sharing the lower layer: nothing unpacked twice.
    let again = env.pull_and_unpack(&reference);
    assert_eq!(again.layer_dirs(), dirs);
    assert_eq!(
        again.stderr.matches("already unpacked").count(),
        2,
        "{again:#?}"
    );
}

#[test]
fn modes_owners_devices_and_xattrs_are_kept_in_the_metadata() {
    let layer = raw_tar(&[
        RawEntry::dir("bin/"),
        RawEntry::file("bin/su", b"#!/bin/true\n").mode(0o4755),
        RawEntry::file("secret", b"s").mode(0o000).owner(1000, 1001),
        RawEntry::file("etc-shadow", b"x").mode(0o640).owner(0, 42),
        RawEntry::dir("ro/").mode(0o555),
        RawEntry::file("ro/inside", b"i").mode(0o444),
        RawEntry::dir("tmp/").mode(0o1777),
        RawEntry::device("dev-null", EntryType::Char, 1, 3),
        RawEntry::device("dev-sda", EntryType::Block, 8, 0),
        RawEntry::fifo("pipe"),
        RawEntry::file("ping", b"ping")
            .xattr("security.capability", b"\x01\x00\x00\x02")
            .xattr("user.note", b"hello"),
        RawEntry::file("data", b"shared"),
        RawEntry::hardlink("data-link", "data"),
        RawEntry::symlink("abs-link", "/etc/passwd"),
        RawEntry::symlink("rel-link", "../../outside"),
        // A directory named twice takes the later entry's attributes.
        RawEntry::dir("twice/").mode(0o700).owner(1000, 1000),
        RawEntry::dir("again/").owner(7, 7),
        RawEntry::dir("twice/"),
        RawEntry::dir("again/").owner(8, 9),
    ]);
    let image = Image::build(Format::Docker, &host_platform(), vec![layer]);
    let registry = FaultyRegistry::start();
    let env = Env::new();
    let dirs = env.pull_and_unpack(&serve(&registry, &image)).layer_dirs();
    let root = dirs[0].join("root");
    let entries = &layer_meta(&dirs[0])["entries"];
    let mode = |p: &str| {
        fs::symlink_metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };

    // On disk: the owner can always read and replace; no special bits.
    assert_eq!(mode("bin/su"), 0o755);
    assert_eq!(entries["bin/su"]["mode"], 0o4755);
    assert_eq!(mode("secret"), 0o600);
    assert_eq!(entries["secret"]["mode"], 0);
    assert_eq!(entries["secret"]["uid"], 1000);
    assert_eq!(entries["secret"]["gid"], 1001);
    assert_eq!(entries["etc-shadow"]["gid"], 42);
    assert!(
        entries["etc-shadow"].get("mode").is_none(),
        "0640 needs no record"
    );
    assert_eq!(mode("ro"), 0o755);
    assert_eq!(entries["ro"]["mode"], 0o555);
    assert_eq!(entries["ro/inside"]["mode"], 0o444);
    assert_eq!(mode("tmp"), 0o777);
    assert_eq!(entries["tmp"]["mode"], 0o1777);
    assert_eq!(
        entries["dev-null"]["device"],
        serde_json::json!({"kind": "char", "major": 1, "minor": 3})
    );
    assert_eq!(
        entries["dev-sda"]["device"],
        serde_json::json!({"kind": "block", "major": 8, "minor": 0})
    );
    assert!(fs::metadata(root.join("dev-null")).unwrap().is_file());
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(root.join("pipe")).unwrap().file_type()
    ));
    assert!(entries.get("twice").is_none(), "{entries}");
    assert_eq!(mode("twice"), 0o755);
    assert_eq!(entries["again"], serde_json::json!({"uid": 8, "gid": 9}));
    // A capability cannot be set by a user: recorded. user.* may be set.
    assert_eq!(entries["ping"]["xattrs"]["security.capability"], "AQAAAg==");
    // Hardlinks stay hardlinks; symlinks stay as they are.
    let data = fs::metadata(root.join("data")).unwrap();
    assert_eq!(
        data.ino(),
        fs::metadata(root.join("data-link")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(root.join("abs-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(root.join("rel-link")).unwrap(),
        Path::new("../../outside")
    );
    // Files are the unprivileged user's: nothing was chowned to others.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(
            fs::metadata(root.join("secret")).unwrap().uid(),
            lpmx_tests::env::TEST_UID
        );
    }
    // The whole layer can be removed by its owner.
    assert!(fs::metadata(root.join("ro")).unwrap().permissions().mode() & 0o700 == 0o700);
}

/// A directory outside the store that malicious layers aim at, writable by
/// the test user so that an escape would succeed if the tool allowed it.
struct Victim {
    dir: PathBuf,
}

impl Victim {
    fn new(env: &Env) -> Victim {
        let dir = env.path().join("outside");
        env.make_user_dir(&dir);
        env.write_file(&dir.join("victim"), "precious\n");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(dir.join("victim"), Some(lpmx_tests::env::TEST_UID), None)
                .unwrap();
        }
        Victim { dir }
    }

    #[track_caller]
    fn assert_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["victim"], "something was created outside the layer");
        let victim = self.dir.join("victim");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(
            fs::metadata(&victim).unwrap().nlink(),
            1,
            "hardlinked from inside a layer"
        );
    }
}

#[test]
fn malicious_layers_are_refused_and_leave_nothing_behind() {
    let env = Env::new();
    let victim = Victim::new(&env);
    let outside = victim.dir.to_str().unwrap().to_owned();
    let dotdots = "../".repeat(12);
    let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
        (
            "absolute name",
            vec![RawEntry::file(&format!("{outside}/victim"), b"pwned")],
            "absolute",
        ),
        (
            "dot-dot",
            vec![RawEntry::file(
                &format!("{dotdots}{}/victim", &outside[1..]),
                b"pwned",
            )],
            "`..`",
        ),
        (
            "write through a symlinked parent",
            vec![
                RawEntry::symlink("a", &outside),
                RawEntry::file("a/victim", b"pwned"),
            ],
            "which is a symlink",
        ),
        (
            "new file through a symlinked parent",
            vec![
                RawEntry::symlink("a", &outside),
                RawEntry::file("a/new", b"pwned"),
            ],
            "which is a symlink",
        ),
        (
            "directory replaced by a symlink",
            vec![
                RawEntry::dir("d/"),
                RawEntry::symlink("d", &outside),
                RawEntry::file("d/victim", b"pwned"),
            ],
            "which is a symlink",
        ),
        (
            "hardlink out with dot-dot",
            vec![RawEntry::hardlink(
                "h",
                &format!("{dotdots}{}/victim", &outside[1..]),
            )],
            "`..`",
        ),
        (
            "hardlink to an absolute name",
            vec![RawEntry::hardlink("h", &format!("{outside}/victim"))],
            "absolute",
        ),
        (
            "hardlink through a symlink",
            vec![
                RawEntry::symlink("a", &outside),
                RawEntry::hardlink("h", "a/victim"),
            ],
            "not a file of this layer",
        ),
        (
            "mkdir through a symlink",
            vec![RawEntry::symlink("a", &outside), RawEntry::dir("a/sub/")],
            "which is a symlink",
        ),
    ];
    let registry = FaultyRegistry::start();
    for (i, (what, entries, why)) in cases.into_iter().enumerate() {
        // A harmless first entry, so a partial layer would exist if kept.
        let mut all = vec![RawEntry::file("harmless", b"ok")];
        all.extend(entries);
        let image = Image::build(Format::Oci, &host_platform(), vec![raw_tar(&all)]);
        registry.push_image("evil", &format!("t{i}"), &image);
        let reference = format!("{}/evil:t{i}", registry.host());
        let run = env.pull_and_unpack(&reference);
        assert_eq!(run.code, Some(65), "{what}: {run:#?}");
        assert!(run.stderr.contains("refused layer"), "{what}: {run:#?}");
        assert!(
            run.stderr.contains(why),
            "{what}: expected {why:?} in {run:#?}"
        );
        victim.assert_untouched();
        assert!(
            !env.store()
                .join("layers")
                .join(image.diff_ids[0].hex())
                .exists(),
            "{what}: a refused layer was kept"
        );
        assert_store_has_no_partial_layers(&env);
    }
}

#[test]
fn corrupt_and_unsupported_layers_fail_clearly() {
    let registry = FaultyRegistry::start();
    let env = Env::new();

    // The config's diff_id does not match what the layer unpacks to.
    let mut image = small_image(Format::Oci, &host_platform(), 1);
    let wrong = Image::build(
        Format::Oci,
        &host_platform(),
        vec![tar_of(&[("other", b"x")])],
    );
    let mut config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
    config["rootfs"]["diff_ids"][0] = wrong.diff_ids[0].to_string().into();
    image = rebuild_with_config(image, config);
    let run = env.pull_and_unpack(&serve(&registry, &image));
    run.failure(65).stderr_has("but the image config says");
    assert!(
        !env.store()
            .join("layers")
            .join(wrong.diff_ids[0].hex())
            .exists()
    );
    assert_store_has_no_partial_layers(&env);

    // A bzip2 layer: not something lpmx unpacks.
    let mut image = small_image(Format::Oci, &host_platform(), 1);
    image.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar+bzip2".to_owned();
    let image = rebuild_manifest(image);
    registry.push_image("r", "bz", &image);
    let run = env.pull_and_unpack(&format!("{}/r:bz", registry.host()));
    run.failure(65).stderr_has("tar+bzip2");

    // Not an image document at all.
    let run = env.run_with_input("lpmx-unpack", &[], "");
    run.failure(65).stderr_has("no input");
    let run = env.run_with_input("lpmx-unpack", &[], r#"{"kind":"lpmx.layers","version":1}"#);
    run.failure(65)
        .stderr_has("expected an lpmx.image document");
    env.run("lpmx-unpack", [env.path().join("missing.tar")])
        .failure(65)
        .stderr_has("cannot read it");
}

fn rebuild_with_config(mut image: Image, config: serde_json::Value) -> Image {
    image.config = lpmx_tests::image::Blob::new(
        &image.config.media_type,
        serde_json::to_vec(&config).unwrap(),
    );
    rebuild_manifest(image)
}

/// Recomputes the manifest after a test changed a blob or media type.
fn rebuild_manifest(mut image: Image) -> Image {
    let descriptor = |b: &lpmx_tests::image::Blob| serde_json::json!({"mediaType": b.media_type, "digest": b.digest.to_string(), "size": b.bytes.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": image.manifest.media_type,
        "config": descriptor(&image.config),
        "layers": image.layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    image.manifest = lpmx_tests::image::Blob::new(
        &image.manifest.media_type,
        serde_json::to_vec(&manifest).unwrap(),
    );
    image
}

#[test]
fn zstd_and_uncompressed_layers_unpack() {
    let tar = tar_of(&[("z/file", b"zstd!")]);
    let plain = tar_of(&[("p/file", b"plain!")]);
    let mut image = Image::build(
        Format::Oci,
        &host_platform(),
        vec![tar.clone(), plain.clone()],
    );
    image.layers[0] = lpmx_tests::image::Blob::new(
        lpmx_core::oci::media::OCI_LAYER_ZSTD,
        zstd::encode_all(&tar[..], 3).unwrap(),
    );
    image.layers[1] = lpmx_tests::image::Blob::new(lpmx_core::oci::media::OCI_LAYER, plain);
    let image = rebuild_manifest(image);
    let registry = FaultyRegistry::start();
    let env = Env::new();
    let dirs = env.pull_and_unpack(&serve(&registry, &image)).layer_dirs();
    assert_eq!(fs::read(dirs[0].join("root/z/file")).unwrap(), b"zstd!");
    assert_eq!(fs::read(dirs[1].join("root/p/file")).unwrap(), b"plain!");
}
