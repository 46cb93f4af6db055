//! Real Debian root filesystems, made with `debootstrap` once and cached as
//! tars, for tests that unpack a whole distribution.
//!
//! The first call for a suite runs `debootstrap --variant=minbase` against
//! the default Debian mirror (about 1-2 minutes and ~200 MB of tar per
//! suite) and needs root; later calls, from any user, reuse the cached tar.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::env::running_as_root;

/// The suites the tests use; debootstrap knows each of them.
pub const SUITES: [&str; 3] = ["bullseye", "bookworm", "trixie"];

/// The Debian suite this machine runs, when it is one the tests know:
/// programs built here then run in its containers too.
pub fn host_suite() -> Option<&'static str> {
    let release = fs::read_to_string("/etc/os-release").ok()?;
    let codename = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))?
        .trim_matches('"')
        .to_owned();
    SUITES.into_iter().find(|s| *s == codename)
}

/// Where built root filesystems are kept between runs: `$LPMX_TEST_CACHE`,
/// else `/var/cache/lpmx-tests` for root, else
/// `$XDG_CACHE_HOME/lpmx-tests` (default `~/.cache/lpmx-tests`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LPMX_TEST_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if running_as_root() {
        return PathBuf::from("/var/cache/lpmx-tests");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .expect("neither XDG_CACHE_HOME nor HOME is set");
    cache.join("lpmx-tests")
}

/// The path of an uncompressed tar of a minimal Debian `suite` root
/// filesystem: entries `./`, `./etc/passwd`, ..., numeric owners, device
/// nodes in `./dev` included (unpackers must record them).
///
/// Built with `debootstrap --variant=minbase` on first use (1-2 minutes,
/// root only), then cached in [`cache_dir`]. Safe to call from concurrent
/// tests and processes: one builds while the others wait on a lock file,
/// and the tar appears by rename, whole.
pub fn debian_rootfs_tar(suite: &str) -> PathBuf {
    debian_rootfs_tar_with(suite, &[])
}

/// As [`debian_rootfs_tar`], with the Debian `packages` installed too
/// (`debootstrap --include`), cached under a name that lists them: for
/// tests that run real programs (python3, git) inside a container.
pub fn debian_rootfs_tar_with(suite: &str, packages: &[&str]) -> PathBuf {
    assert!(
        SUITES.contains(&suite),
        "unknown Debian suite {suite:?}: expected one of {SUITES:?}"
    );
    let cache = cache_dir();
    let flavour = if packages.is_empty() {
        "minbase".to_owned()
    } else {
        format!("minbase+{}", packages.join("+"))
    };
    let tar = cache.join(format!("debian-{suite}-{flavour}.tar"));
    // The rename makes an existing tar a complete one: no lock needed.
    if tar.is_file() {
        return tar;
    }
    assert!(
        running_as_root(),
        "{} is not built yet and debootstrap needs root: run these tests once as root \
         (CI does) with LPMX_TEST_CACHE={} to build it there",
        tar.display(),
        cache.display()
    );
    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("create {}: {e}", cache.display()));
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).expect("chmod cache dir");

    let lock_path = cache.join(format!(".debian-{suite}-{flavour}.lock"));
    let lock =
        File::create(&lock_path).unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    // flock: held per open file, so it serialises threads as well as processes.
    lock.lock().expect("lock the rootfs cache");
    if !tar.is_file() {
        build(suite, packages, &cache, &tar);
    }
    tar
}

/// Runs debootstrap into a scratch directory beside the cache and tars it.
/// Called with the suite's lock held.
fn build(suite: &str, packages: &[&str], cache: &Path, tar: &Path) {
    let started = Instant::now();
    eprintln!(
        "building a Debian {suite} root filesystem with debootstrap{} (1-2 minutes, once)",
        if packages.is_empty() {
            String::new()
        } else {
            format!(" and {}", packages.join(", "))
        }
    );
    let scratch = tempfile::Builder::new()
        .prefix(&format!(".debian-{suite}-build-"))
        .tempdir_in(cache)
        .expect("debootstrap scratch dir");
    let root = scratch.path().join("root");
    let mut debootstrap = Command::new("debootstrap");
    debootstrap.arg("--variant=minbase");
    if !packages.is_empty() {
        debootstrap.arg(format!("--include={}", packages.join(",")));
    }
    let output = debootstrap
        .arg(suite)
        .arg(&root)
        // debootstrap runs chroot, mknod and friends from the sbin dirs.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .expect("run debootstrap (is the debootstrap package installed?)");
    if !output.status.success() {
        // debootstrap logs the real cause here, not on stderr.
        let log = fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
        let text = format!(
            "{}{}{log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        remove_scratch(scratch);
        panic!(
            "debootstrap --variant=minbase {suite} failed ({}):\n{}",
            output.status,
            tail(&text, 4000)
        );
    }

    // Sorted names make the tar's order stable; xattrs are left out since
    // minbase sets none and --xattrs switches GNU tar to pax headers
    // carrying every file's atime.
    let temp = tar.with_extension(format!("tar.{}", std::process::id()));
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "--sort=name", "-cf"])
        .arg(&temp)
        .arg(".")
        .status()
        .expect("run tar");
    remove_scratch(scratch);
    if !status.success() {
        let _ = fs::remove_file(&temp);
        panic!("tar of the {suite} root filesystem failed ({status})");
    }
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o644)).expect("chmod rootfs tar");
    fs::rename(&temp, tar).expect("install rootfs tar");
    eprintln!("built {} in {:.0?}", tar.display(), started.elapsed());
}

/// Removes a debootstrap scratch dir, unless something is still mounted
/// inside it (debootstrap mounts /proc in the target and a killed run may
/// leave it).
fn remove_scratch(scratch: tempfile::TempDir) {
    remove_unless_mounted(&scratch.keep());
}

/// Removes the directory `path` and everything below it, unless something
/// is mounted under it: removing through a mount would delete host files.
pub fn remove_unless_mounted(path: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", path.display());
    let mounted = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| mount_point.starts_with(&prefix));
    if mounted {
        eprintln!(
            "warning: leaving {} in place: something is still mounted under it",
            path.display()
        );
    } else if let Err(e) = fs::remove_dir_all(path) {
        eprintln!("warning: could not remove {}: {e}", path.display());
    }
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Splits a root filesystem tar into `count` layer tars, for tests and
/// benchmarks of deep stacks: every directory is in every layer (so every
/// directory merges all of them), each other entry in one layer chosen by
/// its path, a hard link in its target's layer.
pub fn split_rootfs(tar_bytes: &[u8], count: usize) -> Vec<Vec<u8>> {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::io::Read;
    assert!(count > 0, "at least one layer");
    let mut builders: Vec<tar::Builder<Vec<u8>>> =
        (0..count).map(|_| tar::Builder::new(Vec::new())).collect();
    let mut layer_of: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().expect("read rootfs tar") {
        let mut entry = entry.expect("rootfs tar entry");
        let path = entry.path_bytes().into_owned();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read rootfs entry");
        let path_str = String::from_utf8_lossy(&path).into_owned();
        let targets: Vec<usize> = if kind.is_dir() {
            (0..count).collect()
        } else if kind.is_hard_link() {
            let target = link.clone().expect("hard link target");
            let normal = |p: &[u8]| p.strip_prefix(b"./").unwrap_or(p).to_vec();
            vec![*layer_of.get(&normal(&target)).unwrap_or(&0)]
        } else {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            path.hash(&mut hasher);
            vec![(hasher.finish() % count as u64) as usize]
        };
        let key = path.strip_prefix(b"./").unwrap_or(&path).to_vec();
        layer_of.insert(key, targets[0]);
        for &layer in &targets {
            let builder = &mut builders[layer];
            let mut header = header.clone();
            if let Some(link) = &link {
                let link = String::from_utf8_lossy(link).into_owned();
                builder
                    .append_link(&mut header, &path_str, &link)
                    .expect("append link");
            } else {
                builder
                    .append_data(&mut header, &path_str, data.as_slice())
                    .expect("append entry");
            }
        }
        header.set_size(0);
    }
    builders
        .into_iter()
        .map(|b| b.into_inner().expect("finish layer tar"))
        .collect()
}
