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
    let mut seen_dirs = BTreeSet::new();
    let mut names = BTreeSet::new();
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
    add_probed(out)
}
