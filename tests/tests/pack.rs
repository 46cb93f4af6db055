//! lpmx-pack: containers moved between users and stores as one checked
//! stream, and exported as images that skopeo and umoci read.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lpmx_tests::containers::debian_container;
use lpmx_tests::layers::layer_meta;
use lpmx_tests::tree::{self, Tree};
use lpmx_tests::umoci::umoci_unpack_rootless;
use lpmx_tests::{Env, Run};

/// Changes of every kind, made under fake root: new files (binary, sparse,
/// owned by others, setuid), a symlink, a hard link, a device node, a fifo,
/// a copied-up file, a deleted file and a directory made again.
const CHANGES: &str = "set -e
mkdir -p /opt/t/sub /opt/t/ro
echo hello > /opt/t/a
printf '\\000\\001\\377\\n' > /opt/t/bin
ln -s a /opt/t/link
ln /opt/t/a /opt/t/hard
truncate -s 3M /opt/t/sparse
echo tail >> /opt/t/sparse
chmod 0751 /opt/t/sub
chmod 4755 /opt/t/bin
chown 1234:5678 /opt/t/a
chown 0:42 /opt/t/sub
mknod /opt/t/null c 1 3
mkfifo /opt/t/fifo
echo inside > /opt/t/ro/f
chmod 0555 /opt/t/ro
echo changed >> /etc/issue
rm /etc/motd
rm -r /usr/share/doc/bash
mkdir /usr/share/doc/bash
echo new > /usr/share/doc/bash/new
";

/// What a container shows of the changed paths: kinds, modes, owners,
/// sizes, link counts, device numbers, times, link targets and contents.
const LISTING: &str = "for d in /opt/t /etc /usr/share/doc/bash; do find $d -xdev; done | sort |
xargs -d '\\n' stat -c '%n|%F|%a|%u:%g|%s|%h|%t:%T|%Y|%N'
md5sum /opt/t/a /opt/t/bin /opt/t/sparse /etc/issue
ls /etc/motd 2>&1 || true
env | grep ^LPMXTEST= || true";

fn sh(env: &Env, name: &str, script: &str) -> Run {
    let run = env.run("lpmx-exec", ["--root", name, "--", "/bin/sh", "-c", script]);
    run.success();
    run
}

fn c_string(text: impl AsRef<[u8]>) -> std::ffi::CString {
    std::ffi::CString::new(text.as_ref()).expect("no NUL")
}

/// Sets an extended attribute; false where the file system has none.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (path, name) = (c_string(path.as_os_str().as_bytes()), c_string(name));
    // SAFETY: NUL-terminated strings and a value of the length given.
    let done = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    done == 0
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let (path, name) = (c_string(path.as_os_str().as_bytes()), c_string(name));
    let mut value = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of the length given.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    (n >= 0).then(|| value[..n as usize].to_vec())
}

/// `lpmx-pack ARGS`'s stream, as bytes.
fn pack(env: &Env, args: &[&str]) -> Vec<u8> {
    let output = env
        .tool("lpmx-pack")
        .args(args)
        .output()
        .expect("run lpmx-pack");
    assert!(
        output.status.success(),
        "lpmx-pack {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Everything under a store but its lock files: path, kind and size.
fn store_state(env: &Env) -> BTreeMap<String, (bool, u64)> {
    let root = env.store();
    walkdir::WalkDir::new(&root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.expect("walk store"))
        .filter(|e| !e.path().starts_with(root.join("locks")))
        .map(|e| {
            let meta = e.path().symlink_metadata().expect("lstat");
            let size = if meta.is_dir() { 0 } else { meta.size() };
            (
                e.path().strip_prefix(&root).unwrap().display().to_string(),
                (meta.is_dir(), size),
            )
        })
        .collect()
}

#[test]
fn a_packed_container_is_the_same_for_another_user_and_store() {
    let source = Env::new();
    let _registry = debian_container(&source, "bookworm", "dev", &[]);
    sh(
        &source,
        "dev",
        &format!(
            "{CHANGES}apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello"
        ),
    );
    source
        .run(
            "lpmx-env",
            ["dev", "set", "LPMXTEST=moved with the container"],
        )
        .success();
    source
        .run(
            "lpmx-env",
            ["dev", "host", "add", "/usr/bin/id:/usr/local/bin/host-id"],
        )
        .success();
    // An extended attribute, as a program in the container sets it (on
    // the writable layer's file; shell tools for it are not in minbase).
    let with_xattr = source.store().join("containers/dev/upper/opt/t/a");
    let xattrs_supported = set_xattr(&with_xattr, "user.lpmx", b"kept");
    let before = sh(&source, "dev", LISTING).stdout.clone();
    assert!(
        before.contains("/opt/t/null|character special file|644|0:0|0|1|1:3|"),
        "{before}"
    );
    assert!(
        before.contains("/opt/t/a|regular file|644|1234:5678|6|2|"),
        "{before}"
    );
    assert!(
        before.contains("No such file"),
        "/etc/motd is deleted: {before}"
    );

    let stream = pack(&source, &["dev"]);
    let target = Env::other_user();
    let unpacked = target.run_with_input("lpmx-unpack", &["--name", "moved"], &stream);
    unpacked.success();
    assert!(
        unpacked.stdout.contains("\"kind\": \"lpmx.stack\""),
        "{unpacked:#?}"
    );
    assert!(
        !unpacked.stdout.contains(&*source.store().to_string_lossy()),
        "nothing of the source's paths survives: {}",
        unpacked.stdout
    );
    let after = sh(&target, "moved", LISTING).stdout.clone();
    assert_eq!(before, after, "the container differs after the move");

    let hello = target.run("lpmx-exec", ["moved", "--", "hello"]);
    hello.success();
    assert_eq!(hello.stdout, "Hello, world!\n");
    let dpkg = sh(&target, "moved", "dpkg -l hello | tail -n 1 | cut -c1-2");
    assert_eq!(dpkg.stdout, "ii\n");
    let hosts = target.run("lpmx-env", ["moved", "host", "list"]);
    hosts.success();
    assert!(
        hosts.stdout.contains("/usr/local/bin/host-id"),
        "{hosts:#?}"
    );
    // The upper layers hold the same files, byte for byte.
    let upper = |env: &Env, name: &str| {
        tree::snapshot(&env.store().join("containers").join(name).join("upper"))
    };
    let differences = tree::diff(&upper(&source, "dev"), &upper(&target, "moved"));
    assert!(differences.is_empty(), "{differences:#?}");
    if xattrs_supported {
        let moved = target.store().join("containers/moved/upper/opt/t/a");
        assert_eq!(
            get_xattr(&moved, "user.lpmx").as_deref(),
            Some(&b"kept"[..])
        );
    }
    // Holes stay holes.
    let sparse = target.store().join("containers/moved/upper/opt/t/sparse");
    let blocks = fs::metadata(&sparse).expect("sparse file").blocks();
    assert!(blocks < 1024, "3 MiB of zeros took {blocks} blocks");

    // A second copy of the same stream under a taken name is refused.
    let again = target.run_with_input("lpmx-unpack", &["--name", "moved"], &stream);
    again.failure(73);
    assert!(again.stderr.contains("exists already"), "{again:#?}");
}

#[test]
fn corrupt_or_truncated_streams_leave_the_store_as_it_was() {
    let source = Env::new();
    let _registry = debian_container(&source, "bookworm", "dev", &[]);
    sh(&source, "dev", "echo data > /root/file && rm /etc/motd");
    let stream = pack(&source, &["dev"]);
    let target = Env::other_user();
    target.run("lpmx-mkroot", ["--list"]).success();
    let state = store_state(&target);
    let len = stream.len();
    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [
        4,
        10,
        11,
        300,
        len / 3,
        len / 2,
        len - 2000,
        len - 33,
        len - 1,
    ] {
        bad.push((format!("cut at {cut}"), stream[..cut].to_vec()));
    }
    for at in [12, 200, len / 4, len / 2, len - 3000, len - 20] {
        let mut flipped = stream.clone();
        flipped[at] ^= 0x10;
        bad.push((format!("byte {at} flipped"), flipped));
    }
    for (what, input) in bad {
        let run = target.run_with_input("lpmx-unpack", &[], &input);
        assert!(
            matches!(run.code, Some(65) | Some(2)),
            "{what}: expected a data error: {run:#?}"
        );
        assert!(
            [
                "cut short",
                "corrupt",
                "does not match",
                "not a valid",
                "document",
                "digest",
                "refused",
            ]
            .iter()
            .any(|word| run.stderr.contains(word)),
            "{what}: the error names the cause: {}",
            run.stderr
        );
        assert_eq!(store_state(&target), state, "{what}: the store changed");
    }
    // The intact stream still works there.
    target
        .run_with_input("lpmx-unpack", &["--quiet"], &stream)
        .success();
    let run = target.run("lpmx-exec", ["dev", "--", "cat", "/root/file"]);
    assert_eq!(run.stdout, "data\n", "{run:#?}");
}

#[test]
fn streams_without_layers_need_the_image_on_the_target() {
    let source = Env::new();
    let registry = debian_container(&source, "bookworm", "dev", &[]);
    sh(&source, "dev", "echo data > /root/file");
    let full = pack(&source, &["dev"]);
    let stream = pack(&source, &["--layers=none", "dev"]);
    assert!(
        stream.len() * 10 < full.len(),
        "without layers: {} bytes, with: {}",
        stream.len(),
        full.len()
    );
    let target = Env::other_user();
    target.run("lpmx-mkroot", ["--list"]).success();
    let state = store_state(&target);
    let run = target.run_with_input("lpmx-unpack", &[], &stream);
    run.failure(66);
    assert!(run.stderr.contains("--layers=all"), "{run:#?}");
    assert_eq!(store_state(&target), state, "the store changed");

    // Once the target has the image, the small stream is enough.
    target
        .pull_and_unpack(&format!("{}/debian:bookworm", registry.host()))
        .success();
    target
        .run_with_input("lpmx-unpack", &["--quiet", "--name", "light"], &stream)
        .success();
    let run = target.run("lpmx-exec", ["light", "--", "cat", "/root/file"]);
    assert_eq!(run.stdout, "data\n", "{run:#?}");
}

/// The container's view, as layers: the image's, then its writable layer
/// with its whiteouts.
fn container_view(env: &Env, name: &str) -> Tree {
    let dir = env.store().join("containers").join(name);
    let stack: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("stack.json")).expect("stack")).expect("json");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let mut layers: Vec<tree::Layer> = stack["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let path = PathBuf::from(l["path"].as_str().unwrap());
            let meta = layer_meta(&path);
            (
                path.join("root"),
                strings(&meta["whiteouts"]),
                strings(&meta["opaque"]),
            )
        })
        .collect();
    let whiteouts = fs::read_to_string(dir.join("upper.whiteouts")).unwrap_or_default();
    let lines = |prefix: &str| -> Vec<String> {
        whiteouts
            .lines()
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_owned))
            .collect()
    };
    layers.push((dir.join("upper"), lines("W "), lines("O ")));
    tree::merge_layers(&layers)
}

/// The entries of the OCI layout's top layer: path, type, uid:gid, mode.
fn top_layer_entries(layout: &Path) -> BTreeMap<String, String> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let top = fs::File::open(blob(layers.last().unwrap()["digest"].as_str().unwrap())).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(top));
    let mut entries = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header();
        let kind = format!("{:?}", header.entry_type());
        let line = format!(
            "{kind} {}:{} {:o} {:?}:{:?}",
            header.uid().unwrap(),
            header.gid().unwrap(),
            header.mode().unwrap(),
            header.device_major().ok().flatten(),
            header.device_minor().ok().flatten(),
        );
        let path = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.insert(path, line);
    }
    entries
}

#[test]
fn exports_are_images_that_skopeo_umoci_and_lpmx_read() {
    let env = Env::new();
    let _registry = debian_container(&env, "bookworm", "dev", &[]);
    sh(&env, "dev", CHANGES);
    env.run("lpmx-env", ["dev", "set", "LPMXTEST=exported"])
        .success();
    let layout = env.home().join("dev-oci");
    env.run(
        "lpmx-pack",
        ["dev", "--oci", layout.to_str().unwrap(), "--tag", "dev:1.0"],
    )
    .success();

    // The new layer holds what fake root recorded, and OCI whiteouts.
    let entries = top_layer_entries(&layout);
    assert_eq!(entries["opt/t/a"], "Regular 1234:5678 644 None:None");
    assert_eq!(entries["opt/t/null"], "Char 0:0 644 Some(1):Some(3)");
    assert_eq!(entries["opt/t/hard"].split(' ').next(), Some("Link"));
    assert_eq!(entries["opt/t/bin"], "Regular 0:0 4755 None:None");
    assert!(entries.contains_key("etc/.wh.motd"), "{entries:#?}");
    assert!(
        entries.contains_key("usr/share/doc/bash/.wh..wh..opq"),
        "{entries:#?}"
    );

    let inspect = Run::from(
        env.command_as_user("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:1.0", layout.display()))
            .output()
            .expect("run skopeo"),
    );
    inspect.success();
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        2,
        "{inspect:#?}"
    );
    assert!(
        inspected["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("LPMXTEST=exported")),
        "{inspect:#?}"
    );

    // umoci unpacks it to what the container shows.
    let rootfs = umoci_unpack_rootless(&env, &layout, "1.0");
    let differences = tree::diff(&tree::snapshot(&rootfs), &container_view(&env, "dev"));
    assert!(
        differences.is_empty(),
        "umoci and the container differ: {differences:#?}"
    );

    // A docker save archive, which skopeo reads and copies.
    let archive = env.home().join("dev.tar");
    env.run(
        "lpmx-pack",
        ["dev", "--docker-archive", archive.to_str().unwrap()],
    )
    .success();
    let skopeo = |args: &[String]| {
        let run = Run::from(
            env.command_as_user("skopeo")
                .args(args)
                .output()
                .expect("run skopeo"),
        );
        run.success();
        run
    };
    let inspected = skopeo(&[
        "inspect".into(),
        format!("docker-archive:{}", archive.display()),
    ]);
    let inspected: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        2,
        "{inspected:#}"
    );
    // skopeo copies both exports, reading every blob.
    let copied = env.home().join("copied");
    env.make_user_dir(&copied);
    skopeo(&[
        "copy".into(),
        format!("docker-archive:{}", archive.display()),
        format!("oci:{}:from-archive", copied.join("layout").display()),
    ]);
    skopeo(&[
        "copy".into(),
        format!("oci:{}:1.0", layout.display()),
        format!("oci:{}:from-oci", copied.join("layout").display()),
    ]);

    // And lpmx itself takes both back as images.
    for (source, name) in [(layout.join(""), "from-oci"), (archive, "from-archive")] {
        let unpacked = env.run("lpmx-unpack", ["--quiet", source.to_str().unwrap()]);
        unpacked.success();
        env.run_with_input("lpmx-mkroot", &[name], &unpacked.stdout)
            .success();
        let run = env.run(
            "lpmx-exec",
            [
                "--root",
                name,
                "--",
                "/bin/sh",
                "-c",
                "cat /opt/t/a /usr/share/doc/bash/new; ls /usr/share/doc/bash; \
                 test ! -e /etc/motd && stat -c '%u:%g %t:%T' /opt/t/a /opt/t/null; echo $LPMXTEST",
            ],
        );
        assert_eq!(
            run.stdout, "hello\nnew\nnew\n1234:5678 0:0\n0:0 1:3\nexported\n",
            "{name}: {run:#?}"
        );
    }
}

#[test]
fn a_killed_unpack_leaves_nothing_the_next_one_keeps() {
    use std::io::Write;
    use std::process::Stdio;
    let source = Env::new();
    let _registry = debian_container(&source, "bookworm", "dev", &[]);
    let stream = pack(&source, &["dev"]);
    let target = Env::other_user();
    target.run("lpmx-mkroot", ["--list"]).success();
    let state = store_state(&target);
    let mut child = target
        .tool("lpmx-unpack")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lpmx-unpack");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&stream[..stream.len() / 2])
        .expect("write half");
    stdin.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    drop(stdin);
    let leftovers: Vec<_> = fs::read_dir(target.store().join("tmp"))
        .expect("tmp")
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!leftovers.is_empty(), "a stage was being written");
    assert!(
        !target.store().join("containers/dev").exists(),
        "no container from half a stream"
    );
    // The next unpack removes the dead one's stage, and works.
    target
        .run_with_input(
            "lpmx-unpack",
            &["--quiet", "--name", "other"],
            &stream[..100],
        )
        .failure(65);
    assert_eq!(store_state(&target), state, "the dead stage is gone");
    target
        .run_with_input("lpmx-unpack", &["--quiet"], &stream)
        .success();
}
