//! The index of a stack's lower layers: every path the merged image shows,
//! sorted, with the layer holding it and the attributes a container must
//! see (including those only `meta.json` records). Built once per stack of
//! layers, when `lpmx-unpack` has unpacked them, and shared by every
//! container of that image (`indexes/<hex>` in the store); libunion maps it
//! read-only so a lookup in the lower layers is a binary search, with no
//! system call, however many layers there are.
//!
//! Format, version 2, little-endian:
//!
//! ```text
//! header   magic "LPMXIDX\0", version u32, layer count u32,
//!          entry count u64, string table offset u64, string table length u64
//! layers   per layer, top first: root path offset u64, length u32, 0 u32
//! entries  per path, sorted by its bytes (56 bytes each):
//!          path offset u64, path length u32, layer u16, kind u8, 0 u8,
//!          mode u32 (st_mode: type and permission bits), uid u32, gid u32,
//!          device u32 (major << 20 | minor, for device nodes),
//!          inode u64 (of the layer's file), symlink target offset u64,
//!          target length u32, 0 u32
//! strings  the paths, relative without a leading `/` (the root is ""),
//!          and symlink targets
//! ```
//!
//! With the inodes and link targets in the index, libunion lists a lower
//! directory and follows a lower symlink without any system call. The
//! inodes are those of the store the index was built in: a store copied
//! file by file needs its indexes rebuilt (delete `indexes/`; lpmx-mkroot
//! builds them again).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};

use crate::document::parse_document;
use crate::layer::{DeviceKind, LayerDir, LayerMeta};

pub const MAGIC: &[u8; 8] = b"LPMXIDX\0";
pub const VERSION: u32 = 2;
const HEADER: usize = 40;
const LAYER: usize = 16;
const ENTRY: usize = 56;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Dir = 1,
    File = 2,
    Symlink = 3,
    Char = 4,
    Block = 5,
    Fifo = 6,
    Socket = 7,
}

/// One path of the merged lower layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index into the layers, top first.
    pub layer: u16,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub device: u32,
    /// The inode of the layer's file.
    pub ino: u64,
    /// A symlink's target; empty for anything else.
    pub link: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The index of the stack `diff_ids` (bottom first) in `store`, and its
/// library directory (`lpmx_core::libraries`), built if they are not there
/// yet; each appears by rename, whole.
pub fn ensure(store: &crate::Store, diff_ids: &[crate::Digest]) -> Result<PathBuf, IndexError> {
    let path = store.index_path(diff_ids);
    let farm = crate::libraries::farm_path(&path);
    let current = || {
        let mut head = [0u8; 12];
        fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok_and(|()| &head[..8] == MAGIC && head[8..12] == VERSION.to_le_bytes())
    };
    if farm.is_dir() && current() {
        if !crate::libraries::has_probed(&farm) {
            crate::libraries::add_probed(&farm).map_err(io_error(&farm))?;
        }
        return Ok(path);
    }
    let dirs: Vec<LayerDir> = diff_ids.iter().map(|d| store.layer_dir(d)).collect();
    let bytes = if current() {
        fs::read(&path).map_err(io_error(&path))?
    } else {
        let bytes = build(&dirs)?;
        store
            .write_atomically(&path, &bytes)
            .map_err(io_error(&path))?;
        bytes
    };
    if !farm.is_dir() {
        let index = Index::parse(bytes).map_err(|why| IndexError::Invalid {
            path: path.clone(),
            why,
        })?;
        let view = crate::view::View::of_layers(&dirs).map_err(|e| IndexError::Invalid {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let temp = store.temp_path("libs");
        let built =
            crate::libraries::build(&index, &view, &temp).and_then(|()| fs::rename(&temp, &farm));
        if built.is_err() {
            let _ = fs::remove_dir_all(&temp);
        }
        match built {
            // Another process built it first.
            Err(_) if farm.is_dir() => {}
            other => other.map_err(io_error(&farm))?,
        }
    }
    Ok(path)
}

/// Builds the index of `layers` (bottom first, as documents list them).
pub fn build(layers: &[LayerDir]) -> Result<Vec<u8>, IndexError> {
    let top_first: Vec<&LayerDir> = layers.iter().rev().collect();
    let mut entries: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    // Paths below which lower layers are hidden by the layers seen so far.
    let mut hidden_below: HashSet<Vec<u8>> = HashSet::new();
    let mut hidden_exactly: HashSet<Vec<u8>> = HashSet::new();
    for (number, layer) in top_first.iter().enumerate() {
        let meta_path = layer.meta_path();
        let text = fs::read_to_string(&meta_path).map_err(io_error(&meta_path))?;
        let meta: LayerMeta = parse_document(&text).map_err(|e| IndexError::Invalid {
            path: meta_path.clone(),
            why: e.to_string(),
        })?;
        let root = layer.root();
        let mut hides_below = Vec::new();
        let found = {
            let skip = |key: &[u8]| {
                entries.contains_key(key) || is_hidden(key, &hidden_below, &hidden_exactly)
            };
            walk(&root, &skip)?
        };
        for Found { key, disk, link } in found {
            let file_type = disk.file_type();
            let record = meta
                .entries
                .get(&String::from_utf8_lossy(&key).into_owned());
            let mut kind = if file_type.is_dir() {
                Kind::Dir
            } else if file_type.is_symlink() {
                Kind::Symlink
            } else if file_type.is_fifo() {
                Kind::Fifo
            } else if file_type.is_socket() {
                Kind::Socket
            } else {
                Kind::File
            };
            let mut device = 0;
            if let Some(dev) = record.and_then(|r| r.device) {
                kind = match dev.kind {
                    DeviceKind::Char => Kind::Char,
                    DeviceKind::Block => Kind::Block,
                };
                device = (dev.major << 20) | (dev.minor & 0xfffff);
            }
            let permissions = record.and_then(|r| r.mode).unwrap_or(disk.mode() & 0o7777);
            if kind != Kind::Dir {
                hides_below.push(key.clone());
            }
            entries.insert(
                key,
                Entry {
                    layer: number as u16,
                    kind,
                    mode: type_bits(kind) | permissions,
                    uid: record.and_then(|r| r.uid).unwrap_or(0),
                    gid: record.and_then(|r| r.gid).unwrap_or(0),
                    device,
                    ino: disk.ino(),
                    link,
                },
            );
        }
        // This layer's deletions and replacements hide the layers below it.
        for path in &meta.whiteouts {
            hidden_exactly.insert(path.as_bytes().to_vec());
            hidden_below.insert(path.as_bytes().to_vec());
        }
        for dir in &meta.opaque {
            hidden_below.insert(dir.as_bytes().to_vec());
        }
        hidden_below.extend(hides_below);
    }
    let roots: Vec<Vec<u8>> = top_first
        .iter()
        .map(|layer| layer.root().as_os_str().as_bytes().to_vec())
        .collect();
    Ok(encode(&roots, &entries))
}

/// A path of a layer, as the walk found it.
struct Found {
    /// Relative to the layer's root, which is "".
    key: Vec<u8>,
    disk: fs::Metadata,
    /// A symlink's target; empty for anything else.
    link: Vec<u8>,
}

/// Threads walking a layer at most: the walk is system calls, one per
/// entry, and the layers of a freshly unpacked image are walked while
/// nothing else runs.
const WALKERS: usize = 4;

/// Every path of the tree at `root` that `skip` does not leave out (its
/// directories are still entered), in no particular order. Directories are
/// shared out among threads; each entry is `lstat`ed relative to the
/// directory being read (`DirEntry::metadata`), sparing a lookup of the
/// whole path.
fn walk(root: &Path, skip: &(dyn Fn(&[u8]) -> bool + Sync)) -> Result<Vec<Found>, IndexError> {
    let mut found = Vec::new();
    if !skip(b"") {
        let disk = fs::symlink_metadata(root).map_err(io_error(root))?;
        found.push(Found {
            key: Vec::new(),
            disk,
            link: Vec::new(),
        });
    }
    let queue = WalkQueue {
        state: Mutex::new(WalkState {
            pending: vec![(root.to_path_buf(), Vec::new())],
            busy: 0,
            failed: false,
        }),
        changed: Condvar::new(),
    };
    let walkers = std::thread::available_parallelism().map_or(1, |n| n.get().min(WALKERS));
    let results: Vec<Result<Vec<Found>, IndexError>> = std::thread::scope(|scope| {
        // Helpers that cannot be started are done without: this thread
        // walks too, and alone it walks everything.
        let helpers: Vec<_> = (1..walkers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, || queue.work(skip))
                    .ok()
            })
            .collect();
        let mut results = vec![queue.work(skip)];
        results.extend(helpers.into_iter().map(|helper| {
            helper.join().unwrap_or_else(|_| {
                Err(IndexError::Io {
                    path: root.to_owned(),
                    source: io::Error::other("a thread walking it panicked"),
                })
            })
        }));
        results
    });
    for result in results {
        found.extend(result?);
    }
    Ok(found)
}

/// The directories still to read, shared by the walking threads.
struct WalkQueue {
    state: Mutex<WalkState>,
    changed: Condvar,
}

struct WalkState {
    /// Each directory with its key.
    pending: Vec<(PathBuf, Vec<u8>)>,
    /// Threads reading a directory, which may add more.
    busy: usize,
    failed: bool,
}

impl WalkQueue {
    /// One thread's part: reads directories until none are left.
    fn work(&self, skip: &(dyn Fn(&[u8]) -> bool + Sync)) -> Result<Vec<Found>, IndexError> {
        let mut found = Vec::new();
        loop {
            let (dir, key) = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if state.failed {
                        return Ok(found);
                    }
                    if let Some(job) = state.pending.pop() {
                        state.busy += 1;
                        break job;
                    }
                    if state.busy == 0 {
                        return Ok(found);
                    }
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            // Failed until it has read the directory, so a panic in between
            // stops the others rather than leaving them waiting.
            let mut busy = Busy {
                queue: self,
                subdirs: Vec::new(),
                failed: true,
            };
            let read = read_directory(&dir, &key, skip, &mut found, &mut busy.subdirs);
            busy.failed = read.is_err();
            drop(busy);
            read?;
        }
    }
}

/// A thread reading a directory; when done (or unwinding), it hands over
/// the subdirectories it found and wakes the others.
struct Busy<'q> {
    queue: &'q WalkQueue,
    subdirs: Vec<(PathBuf, Vec<u8>)>,
    failed: bool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self
            .queue
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.busy -= 1;
        state.failed |= self.failed;
        state.pending.append(&mut self.subdirs);
        self.queue.changed.notify_all();
    }
}

/// Reads one directory: its entries into `found`, its subdirectories
/// into `subdirs`.
fn read_directory(
    dir: &Path,
    key: &[u8],
    skip: &(dyn Fn(&[u8]) -> bool + Sync),
    found: &mut Vec<Found>,
    subdirs: &mut Vec<(PathBuf, Vec<u8>)>,
) -> Result<(), IndexError> {
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let mut child = Vec::with_capacity(key.len() + 1 + entry.file_name().len());
        child.extend_from_slice(key);
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(entry.file_name().as_bytes());
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error(&path))?;
        let skipped = skip(&child);
        if !skipped {
            let disk = entry.metadata().map_err(io_error(&path))?;
            let link = if file_type.is_symlink() {
                fs::read_link(&path)
                    .map_err(io_error(&path))?
                    .into_os_string()
                    .into_vec()
            } else {
                Vec::new()
            };
            found.push(Found {
                key: child.clone(),
                disk,
                link,
            });
        }
        if file_type.is_dir() {
            subdirs.push((path, child));
        }
    }
    Ok(())
}

/// Whether a higher layer hid `path`: deleted it or a directory above it,
/// made a directory above it opaque, or put a non-directory above it.
fn is_hidden(path: &[u8], below: &HashSet<Vec<u8>>, exactly: &HashSet<Vec<u8>>) -> bool {
    if exactly.contains(path) {
        return true;
    }
    path.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .any(|(i, _)| below.contains(&path[..i]))
}

fn type_bits(kind: Kind) -> u32 {
    match kind {
        Kind::Dir => 0o040000,
        Kind::File => 0o100000,
        Kind::Symlink => 0o120000,
        Kind::Char => 0o020000,
        Kind::Block => 0o060000,
        Kind::Fifo => 0o010000,
        Kind::Socket => 0o140000,
    }
}

fn encode(roots: &[Vec<u8>], entries: &BTreeMap<Vec<u8>, Entry>) -> Vec<u8> {
    let strings_offset = HEADER + roots.len() * LAYER + entries.len() * ENTRY;
    let mut strings = Vec::new();
    let mut out = Vec::with_capacity(strings_offset);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(roots.len() as u32).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&(strings_offset as u64).to_le_bytes());
    let strings_len_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut add = |bytes: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(&(strings.len() as u64).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        strings.extend_from_slice(bytes);
    };
    for root in roots {
        add(root, &mut out);
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    for (path, entry) in entries {
        add(path, &mut out);
        out.extend_from_slice(&entry.layer.to_le_bytes());
        out.push(entry.kind as u8);
        out.push(0);
        for value in [entry.mode, entry.uid, entry.gid, entry.device] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&entry.ino.to_le_bytes());
        add(&entry.link, &mut out);
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    let strings_len = strings.len() as u64;
    out[strings_len_at..strings_len_at + 8].copy_from_slice(&strings_len.to_le_bytes());
    out.extend_from_slice(&strings);
    out
}

/// A read index (the Rust reader; libunion has a `no_std` one of its own).
pub struct Index {
    bytes: Vec<u8>,
    layers: usize,
    count: usize,
    strings: usize,
}

impl Index {
    pub fn parse(bytes: Vec<u8>) -> Result<Index, String> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err("not an lpmx index".to_owned());
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if u32_at(8) != VERSION {
            return Err(format!(
                "index version {} (this lpmx reads {VERSION})",
                u32_at(8)
            ));
        }
        let layers = u32_at(12) as usize;
        let count = u64_at(16) as usize;
        let strings = u64_at(24) as usize;
        let strings_len = u64_at(32) as usize;
        let expected = HEADER + layers * LAYER + count * ENTRY;
        if strings != expected || bytes.len() != strings + strings_len {
            return Err("truncated or inconsistent index".to_owned());
        }
        Ok(Index {
            bytes,
            layers,
            count,
            strings,
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn string(&self, at: usize) -> &[u8] {
        let offset =
            u64::from_le_bytes(self.bytes[at..at + 8].try_into().expect("8 bytes")) as usize;
        let len =
            u32::from_le_bytes(self.bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        &self.bytes[self.strings + offset..self.strings + offset + len]
    }

    fn entry_at(&self, i: usize) -> usize {
        HEADER + self.layers * LAYER + i * ENTRY
    }

    /// The root directory of layer `layer` (top first).
    pub fn layer_root(&self, layer: u16) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(
            self.string(HEADER + usize::from(layer) * LAYER),
        ))
    }

    /// The entry for relative `path` (`usr/bin`), by binary search.
    pub fn lookup(&self, path: &[u8]) -> Option<Entry> {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = (low + high) / 2;
            let at = self.entry_at(middle);
            match self.string(at).cmp(path) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => {
                    let u32_at = |o: usize| {
                        u32::from_le_bytes(
                            self.bytes[at + o..at + o + 4].try_into().expect("4 bytes"),
                        )
                    };
                    let kind = match self.bytes[at + 14] {
                        1 => Kind::Dir,
                        2 => Kind::File,
                        3 => Kind::Symlink,
                        4 => Kind::Char,
                        5 => Kind::Block,
                        6 => Kind::Fifo,
                        _ => Kind::Socket,
                    };
                    return Some(Entry {
                        layer: u16::from_le_bytes([self.bytes[at + 12], self.bytes[at + 13]]),
                        kind,
                        mode: u32_at(16),
                        uid: u32_at(20),
                        gid: u32_at(24),
                        device: u32_at(28),
                        ino: u64::from_le_bytes(
                            self.bytes[at + 32..at + 40].try_into().expect("8 bytes"),
                        ),
                        link: self.string(at + 40).to_vec(),
                    });
                }
            }
        }
        None
    }

    /// Every path, in order.
    pub fn paths(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count).map(|i| self.string(self.entry_at(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::write_document;
    use crate::layer::{Device, EntryMeta};

    fn layer(base: &Path, name: &str, meta: LayerMeta, files: &[&str]) -> LayerDir {
        let dir = LayerDir::new(base.join(name));
        for file in files {
            let path = dir.root().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, name).unwrap();
        }
        fs::create_dir_all(dir.root()).unwrap();
        write_document(&meta, fs::File::create(dir.meta_path()).unwrap()).unwrap();
        dir
    }

    #[test]
    fn the_index_holds_the_merged_view_with_recorded_attributes() {
        let base = tempfile::tempdir().unwrap();
        let mut lower_meta = LayerMeta::new();
        lower_meta.entries.insert(
            "bin/su".to_owned(),
            EntryMeta {
                mode: Some(0o4755),
                uid: Some(0),
                ..EntryMeta::default()
            },
        );
        lower_meta.entries.insert(
            "dev/null".to_owned(),
            EntryMeta {
                device: Some(Device {
                    kind: DeviceKind::Char,
                    major: 1,
                    minor: 3,
                }),
                ..EntryMeta::default()
            },
        );
        let lower = layer(
            base.path(),
            "lower",
            lower_meta,
            &[
                "bin/su", "dev/null", "etc/a", "etc/b", "gone/x", "opq/old", "d/inner",
            ],
        );
        let mut upper_meta = LayerMeta::new();
        upper_meta.whiteouts.insert("etc/b".to_owned());
        upper_meta.whiteouts.insert("gone".to_owned());
        upper_meta.opaque.insert("opq".to_owned());
        let upper = layer(base.path(), "upper", upper_meta, &["etc/a", "opq/new", "d"]);
        std::os::unix::fs::symlink("/etc/a", upper.root().join("link")).unwrap();
        let upper_file = upper.root().join("etc/a");
        let index = Index::parse(build(&[lower, upper]).unwrap()).unwrap();
        let paths: Vec<String> = index
            .paths()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "", "bin", "bin/su", "d", "dev", "dev/null", "etc", "etc/a", "link", "opq",
                "opq/new"
            ]
        );
        assert_eq!(
            index.lookup(b"etc/a").unwrap().layer,
            0,
            "the upper copy wins"
        );
        assert_eq!(index.layer_root(0), base.path().join("upper/root"));
        assert_eq!(index.lookup(b"bin/su").unwrap().mode, 0o104755);
        let null = index.lookup(b"dev/null").unwrap();
        assert_eq!((null.kind, null.device), (Kind::Char, (1 << 20) | 3));
        assert_eq!(index.lookup(b"d").unwrap().kind, Kind::File);
        assert!(index.lookup(b"gone/x").is_none());
        let link = index.lookup(b"link").unwrap();
        assert_eq!(
            (link.kind, link.link.as_slice()),
            (Kind::Symlink, &b"/etc/a"[..])
        );
        assert_eq!(
            index.lookup(b"etc/a").unwrap().ino,
            fs::metadata(upper_file).unwrap().ino()
        );
        assert!(index.lookup(b"etc/a").unwrap().link.is_empty());
        assert!(Index::parse(b"garbage".to_vec()).is_err());
    }
}
