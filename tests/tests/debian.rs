//! lpmx-unpack on real Debian images (debootstrap'd bullseye, bookworm,
//! trixie), compared with `umoci unpack --rootless` of the same images, and
//! on archives written by skopeo. Run as an unprivileged user.

use std::fs;
use std::path::Path;
use std::process::Command;

use lpmx_core::oci::Platform;
use lpmx_tests::image::{Format, Image, RawEntry, raw_tar};
use lpmx_tests::layers::{layer_meta, merged_view};
use lpmx_tests::oci_layout::write_oci_layout;
use lpmx_tests::registry::{LocalRegistry, Target};
use lpmx_tests::rootfs::debian_rootfs_tar;
use lpmx_tests::tree::{self, Tree};
use lpmx_tests::umoci::umoci_unpack_rootless;
use lpmx_tests::{Env, Run};

fn host_platform() -> String {
    Platform::host().to_string()
}

fn debian_image(suite: &str, upper: Option<Vec<u8>>) -> Image {
    let tar = fs::read(debian_rootfs_tar(suite)).expect("rootfs tar");
    let mut layers = vec![tar];
    layers.extend(upper);
    Image::build(Format::Oci, &host_platform(), layers)
}

#[track_caller]
fn assert_same_tree(ours: &Tree, reference: &Tree, what: &str) {
    let differences = tree::diff(ours, reference);
    assert!(
        differences.is_empty(),
        "{what}: lpmx and umoci differ: {differences:#?}"
    );
}

#[test]
fn debian_images_unpack_like_umoci_and_keep_owners_and_modes() {
    for suite in ["bullseye", "bookworm", "trixie"] {
        let env = Env::new();
        let image = debian_image(suite, None);
        let layout = env.path().join("layout");
        write_oci_layout(&layout, &[(suite, &image)]);

        let run = env.run("lpmx-unpack", [layout.to_str().unwrap(), "--image", suite]);
        let dirs = run.layer_dirs();
        assert_eq!(dirs.len(), 1);
        let root = dirs[0].join("root");
        let os_release = fs::read_to_string(root.join("etc/os-release")).expect("os-release");
        assert!(os_release.contains(suite), "{suite}: {os_release}");

        let umoci = umoci_unpack_rootless(&env, &layout, suite);
        assert_same_tree(&tree::snapshot(&root), &tree::snapshot(&umoci), suite);

        let entries = &layer_meta(&dirs[0])["entries"];
        assert_eq!(
            entries["usr/bin/passwd"]["mode"], 0o4755,
            "{suite}: setuid passwd"
        );
        assert_eq!(entries["etc/shadow"]["gid"], 42, "{suite}: shadow group");
        assert_eq!(entries["tmp"]["mode"], 0o1777, "{suite}: sticky /tmp");
        assert_eq!(
            entries["root"]["mode"],
            serde_json::Value::Null,
            "{suite}: 0700 needs no record"
        );
        assert_eq!(
            entries["dev/null"]["device"],
            serde_json::json!({"kind": "char", "major": 1, "minor": 3}),
            "{suite}: /dev/null"
        );
    }
}

#[test]
fn whiteouts_and_opaque_dirs_over_bookworm_look_like_umoci() {
    let upper = raw_tar(&[
        RawEntry::dir("usr/"),
        RawEntry::dir("usr/share/"),
        RawEntry::file("usr/share/.wh.doc", b""),
        RawEntry::dir("etc/"),
        RawEntry::dir("etc/apt/"),
        RawEntry::file("etc/apt/.wh..wh..opq", b""),
        RawEntry::file(
            "etc/apt/sources.list",
            b"deb file:/srv/mirror bookworm main\n",
        ),
        RawEntry::file("etc/.wh.hostname", b""),
        RawEntry::dir("opt/"),
        RawEntry::file("opt/added.txt", b"added in layer two\n"),
    ]);
    let image = debian_image("bookworm", Some(upper));
    let env = Env::new();
    let layout = env.path().join("layout");
    write_oci_layout(&layout, &[("two", &image)]);
    let dirs = env
        .run("lpmx-unpack", [layout.to_str().unwrap()])
        .layer_dirs();
    assert_eq!(dirs.len(), 2);
    let ours = merged_view(&dirs);
    assert!(!ours.contains_key("usr/share/doc"));
    assert!(!ours.contains_key("etc/hostname"));
    assert!(!ours.contains_key("etc/apt/trusted.gpg.d"));
    assert!(ours.contains_key("etc/apt/sources.list"));
    let umoci = umoci_unpack_rootless(&env, &layout, "two");
    assert_same_tree(&ours, &tree::snapshot(&umoci), "bookworm + whiteouts");
}

/// `skopeo copy` from `source` to `destination`, as root (a peer making the
/// archive, not the tool under test); the result made readable by all.
fn skopeo_copy(source: &str, destination: &str, made: &Path) {
    let output = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            source,
            destination,
        ])
        .output()
        .expect("skopeo must be installed");
    assert!(
        output.status.success(),
        "skopeo copy {source} {destination}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(made)
        .status()
        .expect("chmod");
    assert!(status.success());
}

#[test]
fn archives_written_by_skopeo_unpack_as_pulled_images_do() {
    let upper = raw_tar(&[
        RawEntry::dir("etc/"),
        RawEntry::file("etc/.wh.motd", b""),
        RawEntry::file("etc/added", b"from skopeo\n"),
    ]);
    let image = debian_image("bookworm", Some(upper));
    let registry = LocalRegistry::start();
    registry.push_image("debian", "bookworm", &image);
    let reference = format!("{}/debian:bookworm", registry.host());

    // The reference: pull | unpack.
    let pulled_env = Env::new();
    let pulled_dirs = pulled_env.pull_and_unpack(&reference).layer_dirs();
    let expected = merged_view(&pulled_dirs);

    let archives = Env::new();
    let cases = [
        (
            "docker-archive",
            format!("docker-archive:{}", archives.path().join("d.tar").display()),
            archives.path().join("d.tar"),
        ),
        (
            "oci",
            format!("oci:{}:bookworm", archives.path().join("oci").display()),
            archives.path().join("oci"),
        ),
        (
            "oci-archive",
            format!(
                "oci-archive:{}:bookworm",
                archives.path().join("o.tar").display()
            ),
            archives.path().join("o.tar"),
        ),
    ];
    for (what, destination, path) in cases {
        skopeo_copy(&format!("docker://{reference}"), &destination, &path);
        let env = Env::new();
        let run = env.run("lpmx-unpack", [path.to_str().unwrap()]);
        let dirs = run.layer_dirs();
        let diff_ids: Vec<_> = dirs
            .iter()
            .map(|d| d.file_name().unwrap().to_owned())
            .collect();
        let expected_ids: Vec<_> = pulled_dirs
            .iter()
            .map(|d| d.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(diff_ids, expected_ids, "{what}: other layers");
        let differences = tree::diff(&merged_view(&dirs), &expected);
        assert!(differences.is_empty(), "{what}: {differences:#?}");
        assert_eq!(run.json()["config"]["cmd"][0], "/bin/sh", "{what}: config");
        // The blobs are in the store as if pulled.
        for layer in &image.diff_ids {
            assert!(
                env.store()
                    .join("layers")
                    .join(layer.hex())
                    .join("meta.json")
                    .is_file()
            );
        }
    }
}

#[test]
fn a_killed_unpack_leaves_nothing_that_looks_complete() {
    let image = debian_image("bookworm", None);
    let env = Env::new();
    let layout = env.path().join("layout");
    write_oci_layout(&layout, &[("b", &image)]);
    let layer = env.store().join("layers").join(image.diff_ids[0].hex());
    let mut child = env.spawn("lpmx-unpack", [layout.to_str().unwrap()]);
    // Wait until the unpack is under way in tmp/, then kill it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let busy = fs::read_dir(env.store().join("tmp"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("layer-"))
            })
            .unwrap_or(false);
        if busy {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the unpack never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(
        !layer.exists(),
        "a killed unpack left a layer that looks complete"
    );

    // Two unpacks at once now: both succeed, on one layer, and the leftovers go.
    let first = env.spawn("lpmx-unpack", [layout.to_str().unwrap()]);
    let second = env.spawn("lpmx-unpack", [layout.to_str().unwrap()]);
    for child in [first, second] {
        let dirs = Run::from(child.wait_with_output().unwrap()).layer_dirs();
        assert_eq!(dirs, std::slice::from_ref(&layer));
    }
    let tmp = env.store_temps();
    assert!(tmp.is_empty(), "leftovers: {tmp:?}");
    assert!(layer.join("root/etc/os-release").is_file());
}

#[test]
fn programs_and_their_loader_resolve_inside_the_image() {
    use lpmx_core::layer::LayerDir;
    use lpmx_core::view::View;
    use lpmx_exec::elf::{Program, inspect};

    let image = debian_image("bookworm", None);
    let env = Env::new();
    let layout = env.path().join("layout");
    write_oci_layout(&layout, &[("b", &image)]);
    let dirs = env
        .run("lpmx-unpack", [layout.to_str().unwrap()])
        .layer_dirs();
    let root = dirs[0].join("root");
    let view = View::of_layers(&dirs.iter().map(LayerDir::new).collect::<Vec<_>>()).unwrap();

    // /bin is a symlink to usr/bin in a merged-/usr Debian.
    let bash = view.resolve("/bin/bash", true).unwrap();
    assert_eq!(bash.path, "/usr/bin/bash");
    assert!(bash.host.starts_with(&root));
    let Program::Dynamic { interpreter } = inspect(&bash.host).unwrap() else {
        panic!("bash is not dynamically linked");
    };
    // The loader path goes through the image's own /lib64 symlink and an
    // absolute link inside it: both must land in the image, not the host.
    let loader = view.resolve(&interpreter, true).unwrap();
    assert!(loader.host.starts_with(&root), "{loader:?}");
    assert!(loader.path.starts_with("/usr/lib/"), "{loader:?}");
    // A script's interpreter line.
    let Program::Script { line } =
        inspect(&view.resolve("/usr/bin/ldd", true).unwrap().host).unwrap()
    else {
        panic!("ldd is a script");
    };
    assert_eq!(line, "/bin/bash");
}

#[test]
fn the_stack_index_matches_the_merged_view_of_debian_layers() {
    use lpmx_core::index::{Index, Kind};

    let upper = raw_tar(&[
        RawEntry::dir("usr/"),
        RawEntry::dir("usr/share/"),
        RawEntry::file("usr/share/.wh.doc", b""),
        RawEntry::dir("etc/"),
        RawEntry::dir("etc/apt/"),
        RawEntry::file("etc/apt/.wh..wh..opq", b""),
        RawEntry::file(
            "etc/apt/sources.list",
            b"deb file:/srv/mirror bookworm main\n",
        ),
    ]);
    let image = debian_image("bookworm", Some(upper));
    let env = Env::new();
    let layout = env.path().join("layout");
    write_oci_layout(&layout, &[("i", &image)]);
    let layers = env.run("lpmx-unpack", [layout.to_str().unwrap()]);
    let dirs = layers.layer_dirs();
    let stack = env.run_with_input("lpmx-mkroot", &["c"], &layers.stdout);
    let index_path = stack.json()["index"].as_str().unwrap().to_owned();
    assert!(index_path.starts_with(env.store().join("indexes").to_str().unwrap()));
    let bytes = fs::read(index_path).unwrap();
    let index = Index::parse(bytes).unwrap();

    let merged = merged_view(&dirs);
    let indexed: Vec<String> = index
        .paths()
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let expected: Vec<&String> = merged.keys().collect();
    assert_eq!(indexed.len(), expected.len());
    assert!(indexed.iter().zip(&expected).all(|(a, b)| a == *b));
    let sources = index.lookup(b"etc/apt/sources.list").unwrap();
    assert_eq!(index.layer_root(sources.layer), dirs[1].join("root"));
    let passwd = index.lookup(b"usr/bin/passwd").unwrap();
    assert_eq!((passwd.kind, passwd.mode), (Kind::File, 0o104755));
    assert_eq!(index.lookup(b"etc/shadow").unwrap().gid, 42);
    assert_eq!(index.lookup(b"dev/null").unwrap().kind, Kind::Char);
    assert!(index.lookup(b"usr/share/doc").is_none());
    assert!(index.lookup(b"etc/apt/trusted.gpg.d").is_none());
}
