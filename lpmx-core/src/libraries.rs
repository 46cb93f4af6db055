//! An image's shared libraries gathered in one directory of symlinks, per
//! stack of layers (`indexes/<hex>.libs/`, next to the stack's index).
//!
//! Programs in a container are started by the image's loader with
//! `--inhibit-cache` (the host's `ld.so.cache` must stay out), so the loader
//! searches its library path for every library, and since glibc 2.33 tries
//! three `glibc-hwcaps` subdirectories of each directory too. Listing each
//! library directory of every layer would make each program start cost
//! more with every layer. This directory answers every lookup at once:
//! one entry per library name, in the loader's order of precedence (the
//! image's `ld.so.conf`, then the usual directories), pointing to the file
//! in the layer that holds it. Symlinks keep the layers' files shared.
//!
//! The loader also tries subdirectories of each directory of its path for
//! CPU-specific builds (`glibc-hwcaps/x86-64-v3`, and before glibc 2.37
//! `tls`, `x86_64`, `haswell`...), an open and a stat each, in every
//! process. Here each of those names is a symlink to the directory itself
//! (`PROBED`), so the first one tried finds the library.
//!
//! A library found this way sees `$ORIGIN` as this directory; libraries
//! of system directories do not use `$ORIGIN`, and a program's own
//! `LD_LIBRARY_PATH` directories are searched first, in every layer.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::container::StackDocument;
use crate::index::{Index, Kind};
use crate::view::View;

/// Library directories of Debian-, Red Hat- and Alpine-style images, after
/// those the image's `ld.so.conf` names.
pub const LIBRARY_DIRS: &[&str] = &[
    "/usr/local/lib/x86_64-linux-gnu",
    "/usr/local/lib",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// The subdirectories the loader tries (glibc-hwcaps levels, and the legacy
/// platform and hwcap names), each a symlink to `.` in the directory.
pub const PROBED: &[&str] = &[
    "glibc-hwcaps",
    "x86-64-v4",
    "x86-64-v3",
    "x86-64-v2",
    "tls",
    "x86_64",
    "haswell",
    "xeon_phi",
    "avx512_1",
];

/// Adds the `PROBED` symlinks to library directory `dir`, those it lacks
/// (a directory built before they were).
pub fn add_probed(dir: &Path) -> io::Result<()> {
    for name in PROBED {
        match std::os::unix::fs::symlink(".", dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Whether library directory `dir` has the `PROBED` symlinks.
pub fn has_probed(dir: &Path) -> bool {
    dir.join(PROBED[0]).symlink_metadata().is_ok()
}

/// The library directory of the stack whose index is at `index_path`.
pub fn farm_path(index_path: &Path) -> PathBuf {
    crate::container::beside(index_path, ".libs")
}

/// The names of `dir`'s entries (relative index key, `usr/lib`).
fn children(index: &Index, dir: &str) -> impl Iterator<Item = String> {
    index
        .children(dir.as_bytes())
        .into_iter()
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// The directories the image's `/etc/ld.so.conf` names (with its
/// `include` lines), in order.
fn configured_dirs(index: &Index, view: &View) -> Vec<String> {
    let mut dirs = Vec::new();
    read_conf(index, view, "/etc/ld.so.conf", &mut dirs, 0);
    dirs
}

fn read_conf(index: &Index, view: &View, path: &str, dirs: &mut Vec<String>, depth: usize) {
    let Ok(file) = view.resolve(path, true) else {
        return;
    };
    let Ok(text) = fs::read_to_string(&file.host) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include") {
            if depth > 4 {
                continue;
            }
            for included in glob(index, view, pattern.trim()) {
                read_conf(index, view, &included, dirs, depth + 1);
            }
        } else if line.starts_with('/') {
            dirs.push(line.to_owned());
        }
    }
}

/// `dir/*.conf`-style patterns (a `*` in the last component only).
fn glob(index: &Index, view: &View, pattern: &str) -> Vec<String> {
    let Some((dir, name)) = pattern.rsplit_once('/') else {
        return Vec::new();
    };
    let Ok(resolved) = view.resolve(dir, true) else {
        return Vec::new();
    };
    let (before, after) = name.split_once('*').unwrap_or((name, ""));
    let key = resolved.path.trim_start_matches('/').to_owned();
    let mut found: Vec<String> = children(index, &key)
        .filter(|n| {
            n.starts_with(before) && n.ends_with(after) && n.len() >= before.len() + after.len()
        })
        .filter(|n| name.contains('*') || n == name)
        .map(|n| format!("{}/{n}", resolved.path))
        .collect();
    found.sort();
    found
}

/// Builds the library directory of `index` (with `view`, the same layers)
/// at `out`, which must not exist.
pub fn build(index: &Index, view: &View, out: &Path) -> io::Result<()> {
    fs::create_dir_all(out)?;
    fill(index, view, out, &mut BTreeSet::new())?;
    add_probed(out)
}

/// Links into `out` the image's libraries `index` lists, each as `view`
/// resolves it, but for the `names` already there.
fn fill(index: &Index, view: &View, out: &Path, names: &mut BTreeSet<String>) -> io::Result<()> {
    let mut seen_dirs = BTreeSet::new();
    let mut dirs = configured_dirs(index, view);
    dirs.extend(LIBRARY_DIRS.iter().map(|d| (*d).to_owned()));
    for dir in dirs {
        let Ok(resolved) = view.resolve(&dir, true) else {
            continue;
        };
        if !seen_dirs.insert(resolved.path.clone()) {
            continue;
        }
        let key = resolved.path.trim_start_matches('/').to_owned();
        for name in children(index, &key) {
            if !name.contains(".so") || names.contains(&name) {
                continue;
            }
            let full = format!("{}/{name}", resolved.path);
            let Some(entry) = index.lookup(full.trim_start_matches('/').as_bytes()) else {
                continue;
            };
            if !matches!(entry.kind, Kind::File | Kind::Symlink) {
                continue;
            }
            let Ok(target) = view.resolve(&full, true) else {
                continue; // a dangling link
            };
            if !target.host.is_file() {
                continue;
            }
            std::os::unix::fs::symlink(&target.host, out.join(&name))?;
            names.insert(name);
        }
    }
    Ok(())
}

/// The file of a container's library directory that records what it was
/// built from.
pub use lpmx_union::upper::stamp::NAME as STAMP;

/// A container's own library directory, beside its writable layer
/// (`upper.libs`).
///
/// Once packages put libraries into the writable layer, its library
/// directories come first in the loader's path, and the loader probes
/// each with its ten hwcaps subdirectories (an open and a stat each)
/// before it reaches the image's directory: about 50 failed calls in every
/// exec. This directory holds both, as the loader would find them: the
/// writable layer's libraries first, then the image's, each resolved in
/// the container (so what the container deleted is left out), with the
/// `PROBED` names. lpmx-exec brings it up to date at start; libunion uses
/// it while its `STAMP` holds (the modification times of the writable
/// layer's library directories and of its whiteouts file, one
/// `PATH<TAB>TIME` line each) and searches as before when it does not.
pub fn container_farm_path(upper: &Path) -> PathBuf {
    crate::container::side_file(upper, lpmx_union::upper::LIBS)
}

/// `path`'s modification time, for the stamp (`None`: missing).
fn modified(path: &Path) -> Option<(i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).ok()?;
    Some((meta.mtime(), meta.mtime_nsec()))
}

/// Whether the stamp `text` still describes the files it names.
fn stamp_holds(text: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    lpmx_union::upper::stamp::lines(text).all(|line| {
        line.is_some_and(|(path, time)| {
            let path = Path::new(std::ffi::OsStr::from_bytes(path));
            lpmx_union::upper::stamp::holds(time, modified(path))
        })
    })
}

/// Brings the library directory of `stack`'s container up to date:
/// its path, or `None` when the writable layer has no library directory
/// (libunion then searches as before, at no cost).
pub fn refresh_container_farm(stack: &StackDocument) -> io::Result<Option<PathBuf>> {
    let farm = container_farm_path(&stack.upper);
    if let Ok(stamp) = fs::read(farm.join(STAMP))
        && stamp_holds(&stamp)
    {
        return Ok(Some(farm));
    }
    // Every library directory is below /usr, /lib or /lib64 (or where the
    // image's /lib points, below /usr): a fresh container needs no view.
    if !["usr", "lib", "lib64"]
        .iter()
        .any(|top| stack.upper.join(top).exists())
    {
        return Ok(None);
    }
    let view = View::of_stack(stack).map_err(io::Error::other)?;
    // Each library directory where the writable layer holds it (through
    // the image's symlinks: /lib is /usr/lib in a merged-/usr image).
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    for dir in LIBRARY_DIRS {
        let path = view
            .resolve(dir, true)
            .map_or_else(|_| (*dir).to_owned(), |r| r.path);
        let host = stack.upper.join(path.trim_start_matches('/'));
        if !dirs.iter().any(|(_, h)| *h == host) {
            dirs.push((path, host));
        }
    }
    if !dirs.iter().any(|(_, host)| host.is_dir()) {
        return Ok(None);
    }
    let mut stamp = Vec::new();
    let whiteouts = crate::container::Whiteouts::path(&stack.upper);
    // Each link names the file at the end of the library's symlinks; the
    // usual hop outside the library directories is Debian's alternatives
    // (`update-alternatives --set` for BLAS), so its directory counts too.
    let alternatives = stack.upper.join("etc/alternatives");
    let watched = [whiteouts.as_path(), alternatives.as_path()];
    for path in dirs.iter().map(|(_, host)| host.as_path()).chain(watched) {
        use std::os::unix::ffi::OsStrExt;
        let mut time = [0u8; lpmx_union::upper::stamp::TIME_LEN];
        stamp.extend_from_slice(path.as_os_str().as_bytes());
        stamp.push(b'\t');
        stamp.extend_from_slice(lpmx_union::upper::stamp::time(modified(path), &mut time));
        stamp.push(b'\n');
    }
    let index = Index::parse(fs::read(&stack.index)?).map_err(io::Error::other)?;
    // Each build is a directory of its own (`upper.libs.<unique>`), and
    // `upper.libs` a symlink to the current one, replaced by rename: the
    // many processes of a container (ranks of one job, on many nodes) may
    // rebuild at once while others start programs through it.
    let unique = format!(
        ".{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        host_name()
    );
    let temp = crate::container::beside(&farm, &unique);
    fs::create_dir_all(&temp)?;
    let mut names = BTreeSet::new();
    for (dir, host) in &dirs {
        let Ok(entries) = fs::read_dir(host) else {
            continue;
        };
        let mut found: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".so"))
            .collect();
        found.sort();
        for name in found {
            let Ok(target) = view.resolve(&format!("{dir}/{name}"), true) else {
                continue; // a dangling link
            };
            if target.host.is_file() && names.insert(name.clone()) {
                std::os::unix::fs::symlink(&target.host, temp.join(&name))?;
            }
        }
    }
    fill(&index, &view, &temp, &mut names)?;
    add_probed(&temp)?;
    fs::write(temp.join(STAMP), stamp)?;
    let link = crate::container::beside(&temp, ".link");
    std::os::unix::fs::symlink(temp.file_name().expect("a name"), &link)?;
    if let Err(e) = fs::rename(&link, &farm) {
        let _ = fs::remove_file(&link);
        let _ = fs::remove_dir_all(&temp);
        return Err(e);
    }
    remove_old_farms(&farm);
    Ok(Some(farm))
}

/// Removes the builds `farm` no longer points to, but for any made in the
/// last minute (another process's, still being built or just switched to).
fn remove_old_farms(farm: &Path) {
    let (Some(dir), Some(name)) = (farm.parent(), farm.file_name()) else {
        return;
    };
    let current = fs::read_link(farm).ok();
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name();
        let entry_name = entry_name.to_string_lossy();
        if !entry_name.starts_with(&prefix)
            || entry_name.ends_with(".link")
            || current.as_deref() == Some(Path::new(entry_name.as_ref()))
        {
            continue;
        }
        let recent = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < std::time::Duration::from_secs(60));
        if !recent {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// This machine's name, to tell apart builds of machines sharing a store.
fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}
