//! The index of a stack's lower layers: every path the merged image shows,
//! sorted, with the layer holding it and the attributes a container must
//! see (including those only `meta.json` records). Built once per stack of
//! layers, when `lpmx-unpack` has unpacked them, and shared by every
//! container of that image (`indexes/<hex>` in the store); libunion maps it
//! read-only so a lookup in the lower layers is a binary search, with no
//! system call, however many layers there are.
//!
//! The format is the union core's (`lpmx_union::index`): this builds it
//! from unpacked layers and reads it for the tools.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};

use crate::document::parse_document;
use crate::layer::{DeviceKind, LayerDir, LayerMeta};

use lpmx_union::index as format;
pub use lpmx_union::index::{Entry, Kind};

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

/// Whether the index at `path` is of the current format and has its whole
/// library directory: what a container needs of it.
pub fn is_complete(path: &Path) -> bool {
    let farm = crate::libraries::farm_path(path);
    farm.is_dir() && crate::libraries::has_probed(&farm) && is_current(path)
}

fn is_current(path: &Path) -> bool {
    let mut head = [0u8; 12];
    fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| format::is_current(&head))
}

/// The index of the stack of `layers` (bottom first) and its library
/// directory (`lpmx_core::libraries`): a complete one of this store or of
/// a shared store (used as it is), else one built in this store; each
/// appears by rename, whole.
pub fn ensure(
    store: &crate::Store,
    layers: &[crate::document::UnpackedLayer],
) -> Result<PathBuf, IndexError> {
    let paths = store.index_paths(layers);
    if let Some(found) = paths.iter().find(|path| is_complete(path)) {
        return Ok(found.clone());
    }
    let path = paths[0].clone();
    let farm = crate::libraries::farm_path(&path);
    let current = || is_current(&path);
    if farm.is_dir() && current() {
        crate::libraries::add_probed(&farm).map_err(io_error(&farm))?;
        return Ok(path);
    }
    let dirs: Vec<LayerDir> = layers.iter().map(|l| LayerDir::new(&l.path)).collect();
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
        let built = crate::libraries::build(&index, &view, &temp)
            .and_then(|()| store.share_tree(&temp))
            .and_then(|()| fs::rename(&temp, &farm));
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
    let mut entries: BTreeMap<Vec<u8>, (Entry, Vec<u8>)> = BTreeMap::new();
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
            let entry = Entry {
                layer: number as u16,
                kind,
                mode: kind.type_bits() | permissions,
                uid: record.and_then(|r| r.uid).unwrap_or(0),
                gid: record.and_then(|r| r.gid).unwrap_or(0),
                device,
                ino: disk.ino(),
                disk: disk_of(&disk, &root.join(std::ffi::OsStr::from_bytes(&key))),
            };
            entries.insert(key, (entry, link));
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
    let roots: Vec<&[u8]> = roots.iter().map(Vec::as_slice).collect();
    Ok(encode(&roots, &entries))
}

/// The index's bytes: layer `roots` (top first) and every path's entry and
/// symlink target.
fn encode(roots: &[&[u8]], entries: &BTreeMap<Vec<u8>, (Entry, Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::new();
    format::encode(
        roots,
        entries
            .iter()
            .map(|(path, (entry, link))| (path.as_slice(), entry, link.as_slice())),
        &mut |bytes: &[u8]| out.extend_from_slice(bytes),
    );
    out
}

/// The index of a container whose writable layer `upper` is made a lower
/// layer on top of the image's (`image`, the stack's index): for a run
/// whose writes go to a private layer of its own (`lpmx-exec
/// --ephemeral`). The writable layer's whiteouts hide what they hide in
/// the image, and what fake root recorded of its files (by inode) becomes
/// their owners, modes and devices, as `stat` showed them in the
/// container.
pub fn freeze(image: &Index, upper: &Path) -> Result<Vec<u8>, IndexError> {
    use crate::container::{Whiteouts, read_owners_log};
    let whiteouts = Whiteouts::read(upper).map_err(io_error(&Whiteouts::path(upper)))?;
    let owners =
        read_owners_log(upper).map_err(io_error(&crate::container::owners_log_path(upper)))?;
    let hidden_exactly: HashSet<Vec<u8>> = whiteouts
        .deleted
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    let mut hidden_below = hidden_exactly.clone();
    hidden_below.extend(whiteouts.opaque.iter().map(|p| p.as_bytes().to_vec()));
    let read = image.read();
    let mut entries: BTreeMap<Vec<u8>, (Entry, Vec<u8>)> = BTreeMap::new();
    for i in 0..read.len() {
        let path = read.path(i);
        if !path.is_empty() && is_hidden(path, &hidden_below, &hidden_exactly) {
            continue;
        }
        let mut entry = read.entry(i);
        entry.layer += 1;
        entries.insert(path.to_vec(), (entry, read.link(i).to_vec()));
    }
    // SAFETY: geteuid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut replaced_below = HashSet::new();
    for Found { key, disk, link } in walk(upper, &|key| is_copy_up_temp(key))? {
        let record = owners.get(&disk.ino());
        let mode = record.map_or(0, |r| r.mode);
        let mode = if mode != 0 { mode } else { disk.mode() };
        let kind = Kind::of_mode(mode);
        if kind != Kind::Dir {
            replaced_below.insert(key.clone());
        }
        let (major, minor) = crate::container::split_dev(record.map_or(disk.rdev(), |r| {
            if r.rdev != 0 { r.rdev } else { disk.rdev() }
        }));
        let entry = Entry {
            layer: 0,
            kind,
            mode: kind.type_bits() | (mode & 0o7777),
            uid: record.map_or(if disk.uid() == uid { 0 } else { disk.uid() }, |r| r.uid),
            gid: record.map_or(if disk.gid() == gid { 0 } else { disk.gid() }, |r| r.gid),
            device: match kind {
                Kind::Char | Kind::Block => (major << 20) | (minor & 0xfffff),
                _ => 0,
            },
            ino: disk.ino(),
            // The writable layer may change while the run reads it.
            disk: format::Disk::default(),
        };
        entries.insert(key, (entry, link));
    }
    // A file of the writable layer where the image has a directory hides
    // what the image has below it.
    entries.retain(|path, _| path.is_empty() || !is_hidden(path, &replaced_below, &HashSet::new()));
    let upper_root = upper.as_os_str().as_bytes().to_vec();
    let mut roots: Vec<&[u8]> = vec![&upper_root];
    roots.extend((0..read.layers()).map(|l| read.layer_root(l as u16)));
    Ok(encode(&roots, &entries))
}

/// A layer's file as `lstat` shows it, for the index.
fn disk_of(disk: &fs::Metadata, path: &Path) -> format::Disk {
    let time = |seconds: i64, nanoseconds: i64| (seconds, nanoseconds as u32);
    format::Disk {
        mode: disk.mode(),
        uid: disk.uid(),
        gid: disk.gid(),
        // Never 0, which reads as not recorded.
        nlink: (disk.nlink() as u32).max(1),
        size: disk.size(),
        blocks: disk.blocks(),
        blksize: disk.blksize() as u32,
        flags: if has_no_xattrs(path) {
            0
        } else {
            format::DISK_HAS_XATTRS
        },
        atime: time(disk.atime(), disk.atime_nsec()),
        mtime: time(disk.mtime(), disk.mtime_nsec()),
        ctime: time(disk.ctime(), disk.ctime_nsec()),
    }
}

/// Whether `llistxattr` finds no extended attribute on `path` (false when
/// it cannot tell): libunion then answers the attribute calls on the
/// image's file without asking the kernel each time.
fn has_no_xattrs(path: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a C string; a null list of size 0 asks for the size only.
    let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    size == 0 || size < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// Whether `key` is a copy being made into the writable layer (it appears
/// under its own name when whole).
fn is_copy_up_temp(key: &[u8]) -> bool {
    let name = key.rsplit(|&b| b == b'/').next().unwrap_or(key);
    crate::container::is_copy_up_temp(std::ffi::OsStr::from_bytes(name))
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

/// A read index, owned (the tools' reader over the union core's).
pub struct Index {
    bytes: Vec<u8>,
}

impl Index {
    pub fn parse(bytes: Vec<u8>) -> Result<Index, String> {
        format::Index::parse(&bytes).map_err(|e| e.to_string())?;
        Ok(Index { bytes })
    }

    /// The union core's reader over these bytes (checked in `parse`).
    pub fn read(&self) -> format::Index<'_> {
        format::Index::parse(&self.bytes).expect("checked when parsed")
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The root directory of layer `layer` (top first).
    pub fn layer_root(&self, layer: u16) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(self.read().layer_root(layer)))
    }

    /// The entry for relative `path` (`usr/bin`), by binary search.
    pub fn lookup(&self, path: &[u8]) -> Option<Entry> {
        self.read().lookup(path)
    }

    /// The symlink target of relative `path` (empty for other kinds).
    pub fn link(&self, path: &[u8]) -> Option<&[u8]> {
        let index = self.read();
        index.position(path).map(|i| index.link(i))
    }

    /// Every path, in order.
    pub fn paths(&self) -> impl Iterator<Item = &[u8]> {
        self.read().paths()
    }

    /// The names of directory `key`'s children (relative, `usr/lib`), in
    /// order.
    pub fn children(&self, key: &[u8]) -> Vec<&[u8]> {
        let mut names = Vec::new();
        self.read().children(key, |name, _, _| names.push(name));
        names
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
            (link.kind, index.link(b"link").unwrap()),
            (Kind::Symlink, &b"/etc/a"[..])
        );
        assert_eq!(
            index.lookup(b"etc/a").unwrap().ino,
            fs::metadata(upper_file).unwrap().ino()
        );
        assert!(index.link(b"etc/a").unwrap().is_empty());
        assert!(Index::parse(b"garbage".to_vec()).is_err());
    }

    #[test]
    fn an_index_serves_only_the_layer_directories_it_was_built_over() {
        use crate::document::UnpackedLayer;
        let base = tempfile::tempdir().unwrap();
        let site = crate::Store::open(base.path().join("site")).unwrap();
        let own = crate::Store::open(base.path().join("own"))
            .unwrap()
            .with_shared([site.root().to_owned()], crate::store::STORE_PATH_VAR)
            .unwrap();
        let diff_id = crate::Digest::of(b"one layer");
        let unpacked = |store: &crate::Store| {
            let dir = layer(
                &store.root().join("layers"),
                diff_id.hex(),
                LayerMeta::new(),
                &["etc/os-release"],
            );
            vec![UnpackedLayer {
                diff_id: diff_id.clone(),
                path: dir.path().to_owned(),
            }]
        };
        let in_site = unpacked(&site);
        let site_index = ensure(&site, &in_site).unwrap();
        assert!(site_index.starts_with(site.root()));
        // The same layer's copy in this store gets an index of its own,
        // over its own files; the site's copy keeps the site's index.
        let in_own = unpacked(&own);
        let own_index = ensure(&own, &in_own).unwrap();
        assert!(own_index.starts_with(own.root()), "{own_index:?}");
        let parsed = Index::parse(fs::read(&own_index).unwrap()).unwrap();
        assert_eq!(parsed.layer_root(0), LayerDir::new(&in_own[0].path).root());
        assert_eq!(
            parsed.lookup(b"etc/os-release").unwrap().ino,
            fs::metadata(LayerDir::new(&in_own[0].path).root().join("etc/os-release"))
                .unwrap()
                .ino()
        );
        assert_eq!(ensure(&own, &in_site).unwrap(), site_index);
    }
}
