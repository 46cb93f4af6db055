//! The store: everything lpmx keeps on disk, under `$LPMX_HOME`.
//!
//! ```text
//! blobs/sha256/<hex>     compressed blobs, manifests and configs, by digest
//! layers/<diffid-hex>/   unpacked layers (lpmx-unpack)
//! indexes/<hex>          the index of one stack of layers (crate::index)
//! containers/<name>/     containers (lpmx-mkroot)
//! tmp/                   partial downloads and unpacks, never read as content
//! locks/                 lock files, one per entry being written
//! imports/<hex>.json     image files imported, by path (ImportRecord): the
//!                        same file again is recognised at once
//! ```
//!
//! Entries outside `tmp/` are immutable once they appear, and they appear
//! only by an atomic rename of a complete, verified temporary file, so no
//! reader ever sees half of one. Writers of one entry serialise on its lock.
//!
//! Shared stores: `LPMX_STORE_PATH` names other stores (a site's, a
//! group's), read-only to this user, searched after this one for what is
//! named by content (blobs, layers, indexes, import records). What one of
//! them has is used where it is, never copied; what none has is written
//! here. Containers always live in this store. A store is shared on
//! purpose: its owner puts the file `shared` in its root
//! ([`Store::SHARED_MARKER`]), and then layers unpacked into it are
//! readable by whom its root's mode lets in, its group or others
//! ([`Store::shared_bits`]). Without that file the root's mode says
//! nothing (stores made before shared stores existed are 0755 by the
//! umask), and a new store is made private (0700).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;

/// The store format; a store written by a newer format is refused.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no store location: set LPMX_HOME, XDG_DATA_HOME or HOME to a directory you can write")]
    NoLocation,
    #[error("cannot use store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store {path} has format {found}, this lpmx understands format {FORMAT_VERSION}")]
    Format { path: PathBuf, found: String },
    #[error("cannot use shared store {path} (named by {origin})")]
    Shared {
        path: PathBuf,
        /// Where the store was named: [`STORE_PATH_VAR`] or a container.
        origin: String,
        #[source]
        problem: SharedStoreProblem,
    },
}

/// Why a store of the search path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedStoreProblem {
    #[error("not an absolute path")]
    Relative,
    #[error("it is not an lpmx store (no version file)")]
    NotAStore,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

impl crate::cli::Classify for StoreError {
    fn exit(&self) -> crate::cli::Exit {
        match self {
            StoreError::NoLocation => crate::cli::Exit::Usage,
            StoreError::Io { .. } | StoreError::Format { .. } | StoreError::Shared { .. } => {
                crate::cli::Exit::IoErr
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    /// Read-only stores searched after this one, in order.
    shared: Vec<PathBuf>,
    /// [`Store::shared_bits`], read once.
    sharing: std::sync::OnceLock<u32>,
}

/// The subdirectories of every store.
const STORE_DIRS: [&str; 7] = [
    "blobs/sha256",
    "layers",
    "indexes",
    "containers",
    "tmp",
    "locks",
    "imports",
];

/// What of them (and their parents, and the version file) the users a store
/// is shared with read; `containers/`, `tmp/` and `locks/` stay the owner's.
const SHARED_ENTRIES: [&str; 6] = [
    "version",
    "blobs",
    "blobs/sha256",
    "layers",
    "indexes",
    "imports",
];

/// The variable naming the shared stores, `:`-separated, searched in order.
pub const STORE_PATH_VAR: &str = "LPMX_STORE_PATH";

impl Store {
    /// Where the store lives: `$LPMX_HOME`, else `$XDG_DATA_HOME/lpmx`, else
    /// `~/.local/share/lpmx`. Empty values count as unset, as XDG says.
    pub fn default_location() -> Result<PathBuf, StoreError> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(home) = var("LPMX_HOME") {
            return Ok(home.into());
        }
        if let Some(data) = var("XDG_DATA_HOME") {
            return Ok(Path::new(&data).join("lpmx"));
        }
        var("HOME")
            .map(|home| Path::new(&home).join(".local/share/lpmx"))
            .ok_or(StoreError::NoLocation)
    }

    /// Opens the store at the default location, creating it if needed,
    /// with the shared stores `LPMX_STORE_PATH` names.
    pub fn open_default() -> Result<Store, StoreError> {
        let shared: Vec<PathBuf> = std::env::var_os(STORE_PATH_VAR)
            .map(|list| std::env::split_paths(&list).collect())
            .unwrap_or_default();
        Store::open(Store::default_location()?)?.with_shared(shared, STORE_PATH_VAR)
    }

    /// Opens (creating if needed) the store rooted at `root`. A relative
    /// root is taken from the current directory, once: documents name the
    /// store's entries by absolute paths.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        let root = std::path::absolute(&root).map_err(StoreError::io(&root))?;
        let store = Store {
            root,
            shared: Vec::new(),
            sharing: std::sync::OnceLock::new(),
        };
        if !store.root.exists() {
            // Private unless its owner opens it to others (see the module);
            // its parents are ordinary directories.
            use std::os::unix::fs::DirBuilderExt;
            if let Some(parent) = store.root.parent() {
                fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
            }
            match fs::DirBuilder::new().mode(0o700).create(&store.root) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(StoreError::io(&store.root)(e));
                }
                _ => {}
            }
        }
        for dir in STORE_DIRS {
            let path = store.root.join(dir);
            fs::create_dir_all(&path).map_err(StoreError::io(&path))?;
        }
        let version_path = store.root.join("version");
        match fs::read_to_string(&version_path) {
            Ok(found) if found.trim() == FORMAT_VERSION.to_string() => {}
            Ok(found) => {
                return Err(StoreError::Format {
                    path: store.root.clone(),
                    found: found.trim().to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                store
                    .write_atomically(&version_path, format!("{FORMAT_VERSION}\n").as_bytes())
                    .map_err(StoreError::io(&version_path))?;
            }
            Err(e) => return Err(StoreError::io(&version_path)(e)),
        }
        if store.shared_bits() != 0 {
            // Made before the store was shared, or under a strict umask.
            // Only its owner can change them; a member of a group that may
            // write to the store leaves them as they are.
            for entry in SHARED_ENTRIES {
                let _ = store.share(&store.root.join(entry));
            }
        }
        Ok(store)
    }

    /// Adds the read-only stores `roots` to search after this one; `origin`
    /// says where they were named, for errors. Each must be a store of this
    /// format; empty entries, this store itself and stores already on the
    /// search path are skipped before anything is read. Nothing is created
    /// or written in them.
    pub fn with_shared(
        mut self,
        roots: impl IntoIterator<Item = PathBuf>,
        origin: &str,
    ) -> Result<Store, StoreError> {
        let mut own = None;
        for root in roots {
            if root.as_os_str().is_empty() || root == self.root || self.shared.contains(&root) {
                continue;
            }
            let problem = |problem: SharedStoreProblem| StoreError::Shared {
                path: root.clone(),
                origin: origin.to_owned(),
                problem,
            };
            if !root.is_absolute() {
                return Err(problem(SharedStoreProblem::Relative));
            }
            // The same directory by another name (a symlink, `..`).
            let canonical = fs::canonicalize(&root).ok();
            let own = own.get_or_insert_with(|| fs::canonicalize(&self.root).ok());
            if canonical.is_some() && canonical == *own {
                continue;
            }
            let version_path = root.join("version");
            match fs::read_to_string(&version_path) {
                Ok(found) if found.trim() == FORMAT_VERSION.to_string() => {}
                Ok(found) => {
                    return Err(StoreError::Format {
                        path: root,
                        found: found.trim().to_owned(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && root.is_dir() => {
                    return Err(problem(SharedStoreProblem::NotAStore));
                }
                Err(e) => return Err(problem(e.into())),
            }
            self.shared.push(root);
        }
        Ok(self)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root of the store holding `entry`, a layer directory or an index
    /// (`STORE/layers/HEX`, `STORE/indexes/HEX`), as documents name them.
    pub fn root_of(entry: &Path) -> Option<&Path> {
        entry.parent()?.parent()
    }

    /// The shared stores searched after this one.
    pub fn shared(&self) -> &[PathBuf] {
        &self.shared
    }

    /// This store's root, then the shared stores', in search order.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.root.as_path()).chain(self.shared.iter().map(PathBuf::as_path))
    }

    /// Relative path `entry` in the first store of the search path where
    /// `found` holds for it, else in this store (where it is written).
    fn search(&self, entry: &Path, found: impl Fn(&Path) -> bool) -> PathBuf {
        if self.shared.is_empty() {
            return self.root.join(entry);
        }
        self.find(entry, found)
            .unwrap_or_else(|| self.root.join(entry))
    }

    /// Relative path `entry` in the first store of the search path where
    /// `found` holds for it; `None` when it holds in none.
    fn find(&self, entry: &Path, found: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        self.roots()
            .map(|root| root.join(entry))
            .find(|path| found(path))
    }

    /// Blob `digest` where the first store of the search path that has it
    /// keeps it; `None` when none has it.
    pub fn find_blob(&self, digest: &Digest) -> Option<PathBuf> {
        self.find(&Self::blob_entry(digest), Path::is_file)
    }

    /// Where this store keeps (or would write) blob `digest`.
    pub fn own_blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(Self::blob_entry(digest))
    }

    /// [`Store::find_blob`], else [`Store::own_blob_path`]: the path to read
    /// a blob from, which names a missing blob in errors.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.search(&Self::blob_entry(digest), Path::is_file)
    }

    fn blob_entry(digest: &Digest) -> PathBuf {
        Path::new("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.find_blob(digest).is_some()
    }

    /// The file whose presence in a store's root shares the store.
    pub const SHARED_MARKER: &str = "shared";

    /// The group and other permission bits (read, search) that this store's
    /// root grants, when its owner shared it (`SHARED_MARKER`): layers
    /// unpacked here give them too, so that users the store is shared with
    /// can read every layer. 0 for a store not shared: files an image keeps
    /// private stay owner-only, whatever the root's mode.
    pub fn shared_bits(&self) -> u32 {
        *self.sharing.get_or_init(|| {
            use std::os::unix::fs::PermissionsExt;
            if !self.root.join(Self::SHARED_MARKER).is_file() {
                return 0;
            }
            fs::metadata(&self.root).map_or(0, |m| m.permissions().mode() & 0o055)
        })
    }

    /// Gives `path`, written into this store by its owner, what the users
    /// the store is shared with need of it whatever the umask was: read,
    /// and search or run for directories and programs ([`Store::shared_bits`]).
    /// Nothing for a store not shared, or a symlink. Every writer of a
    /// shared entry calls this before the entry appears (its rename).
    pub fn share(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let bits = self.shared_bits();
        if bits == 0 {
            return Ok(());
        }
        let meta = fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() || mode & 0o100 != 0 {
            bits
        } else {
            bits & 0o044
        };
        if mode & wanted == wanted {
            return Ok(());
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode | wanted))
    }

    /// [`Store::share`] for `dir` and everything below it (a small tree: a
    /// library directory).
    pub fn share_tree(&self, dir: &Path) -> io::Result<()> {
        if self.shared_bits() == 0 {
            return Ok(());
        }
        self.share(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                self.share_tree(&entry.path())?;
            } else {
                self.share(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Where a download of `digest` accumulates until it is verified; it
    /// survives an interrupted run so the next one can resume.
    pub fn partial_blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{}.partial", digest.hex()))
    }

    /// Where the layer whose uncompressed digest is `diff_id` is unpacked:
    /// in the first store that has it, else where this store would.
    pub fn layer_dir(&self, diff_id: &Digest) -> crate::layer::LayerDir {
        let entry = Path::new("layers").join(diff_id.hex());
        crate::layer::LayerDir::new(
            self.search(&entry, |path| crate::layer::LayerDir::new(path).exists()),
        )
    }

    /// Where the index of the stack of `layers` (bottom first) is kept in
    /// each store of the search path, this one's first. The key names the
    /// layer directories as well as their digests: an index records the
    /// inodes of the files it was built over and its library directory
    /// links to them, so it serves only the very directories it was built
    /// over, not another store's copy of the same layers.
    pub fn index_paths(&self, layers: &[crate::document::UnpackedLayer]) -> Vec<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let mut list = Vec::new();
        for layer in layers {
            list.extend_from_slice(layer.diff_id.to_string().as_bytes());
            list.push(b'\t');
            list.extend_from_slice(layer.path.as_os_str().as_bytes());
            list.push(b'\n');
        }
        let key = Digest::of(&list);
        self.roots()
            .map(|root| root.join("indexes").join(key.hex()))
            .collect()
    }

    /// The lock that unpackers of layer `diff_id` hold.
    pub fn lock_layer(&self, diff_id: &Digest) -> Result<LockGuard, StoreError> {
        self.lock(&format!("layer-{}", diff_id.hex()))
    }

    /// Where container `name` lives (see [`crate::container`]).
    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.root.join("containers").join(name)
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh, unique path under `tmp/` for a file being written:
    /// `HINT.HOST.PID.N.tmp`, unique among the hosts sharing the store.
    pub fn temp_path(&self, hint: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!(
            "{hint}.{}.{}.{n}.tmp",
            host_tag(),
            std::process::id()
        ))
    }

    /// Entries of `tmp/` that `temp_path` named with a hint starting with
    /// `prefix` for a process of this host that is gone: what a killed
    /// process left, to be removed by the next one. (Another host's are
    /// left alone: whether its processes live is not known here.)
    pub fn abandoned_temps(&self, prefix: &str) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                // HINT.HOST.PID.N.tmp; the hint may hold dots.
                let mut parts = name.strip_suffix(".tmp")?.rsplitn(4, '.');
                let (_, pid, host, hint) =
                    (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                let pid: u32 = pid.parse().ok()?;
                (hint.starts_with(prefix) && host == host_tag() && !process_exists(pid))
                    .then(|| entry.path())
            })
            .collect()
    }

    /// Moves a complete, verified file into its place as blob `digest`.
    /// Its data reaches the disk first, so a crash cannot leave a short
    /// file under the digest.
    pub fn commit_blob(&self, digest: &Digest, complete: &Path) -> io::Result<PathBuf> {
        File::open(complete)?.sync_data()?;
        self.share(complete)?;
        let path = self.own_blob_path(digest);
        fs::rename(complete, &path)?;
        Ok(path)
    }

    /// Stores `bytes` as a blob (small ones: manifests, configs), returning
    /// its digest. A blob already present is left as it is.
    pub fn put_blob(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            self.write_atomically(&self.own_blob_path(&digest), bytes)?;
        }
        Ok(digest)
    }

    /// Writes `path` through a temporary file and a rename.
    pub fn write_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let temp = self.temp_path("write");
        let result = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_data()?;
            self.share(&temp)?;
            fs::rename(&temp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Takes the exclusive lock named `name`, waiting for another holder.
    /// It is released when the guard is dropped, or when the process dies.
    pub fn lock(&self, name: &str) -> Result<LockGuard, StoreError> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        lock_file(&file).map_err(StoreError::io(&path))?;
        Ok(LockGuard { _file: file })
    }

    /// Where the record of an imported file with key `key` is
    /// (`lpmx_core::document::ImportRecord`): in the first store that has
    /// one, else where this store would.
    pub fn import_record_path(&self, key: &[u8]) -> PathBuf {
        self.search(&Self::import_entry(key), Path::is_file)
    }

    /// Where this store records an imported file with key `key`.
    pub fn own_import_record_path(&self, key: &[u8]) -> PathBuf {
        self.root.join(Self::import_entry(key))
    }

    fn import_entry(key: &[u8]) -> PathBuf {
        Path::new("imports").join(format!("{}.json", Digest::of(key).hex()))
    }

    /// The lock that writers of blob `digest` hold.
    pub fn lock_blob(&self, digest: &Digest) -> Result<LockGuard, StoreError> {
        self.lock(&format!("blob-{}", digest.hex()))
    }
}

/// Holds a store lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// This host's name as temporary names carry it (no `.` or `/`).
pub fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let mut name = [0u8; 256];
        // SAFETY: gethostname writes at most name.len() bytes.
        let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
        let end = name.iter().position(|&b| b == 0).unwrap_or(0);
        let text = String::from_utf8_lossy(&name[..end]).replace(['.', '/'], "_");
        if ok && !text.is_empty() {
            text
        } else {
            "host".to_owned()
        }
    })
}

/// Takes an exclusive lock on all of `file`, waiting for it, as libunion
/// takes its own (`lpmx_sys::lock_whole`): an open file
/// description lock (`F_OFD_SETLKW`), which NFS carries to the server and
/// so between hosts, as it does not always carry `flock`; `flock` on
/// kernels before 3.15, which have no such locks. Either is released when
/// the file is closed or the process dies.
pub fn lock_file(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    lpmx_sys::lock_whole(file.as_raw_fd(), true)
        .map(|_| ())
        .map_err(io::Error::from_raw_os_error)
}

/// Whether process `pid` exists (one that may not be signalled does).
/// The umask, read from /proc (Linux 4.7+) since umask(2) cannot be read
/// without changing it under other threads' feet.
pub fn process_umask() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let signalled = unsafe { libc::kill(pid, 0) } == 0;
    signalled || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_layout_and_refuses_other_formats() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("a/s")).unwrap();
        assert!(store.root().join("blobs/sha256").is_dir());
        let mode = |path: &Path| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(path).unwrap().permissions().mode() & 0o077
        };
        assert_eq!(mode(store.root()), 0, "a new store is private");
        assert_eq!(
            mode(&dir.path().join("a")),
            0o777 & !process_umask().unwrap() & 0o077
        );
        let digest = store.put_blob(b"hello").unwrap();
        assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), b"hello");
        assert!(store.has_blob(&digest));
        Store::open(store.root()).unwrap();
        fs::write(store.root().join("version"), "99\n").unwrap();
        let err = Store::open(store.root()).unwrap_err();
        assert!(err.to_string().contains("format 99"), "{err}");
    }

    #[test]
    fn a_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let guard = store.lock("x").unwrap();
        let path = store.root().join("locks/x.lock");
        let other = OpenOptions::new().write(true).open(&path).unwrap();
        // The same kind of lock, not waiting.
        let try_lock = |file: &File| {
            use std::os::fd::AsRawFd;
            // SAFETY: as in lock_file.
            let mut whole: libc::flock = unsafe { std::mem::zeroed() };
            whole.l_type = libc::F_WRLCK as libc::c_short;
            // SAFETY: as in lock_file.
            unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &whole) == 0 }
        };
        assert!(!try_lock(&other));
        drop(guard);
        assert!(try_lock(&other));
    }

    #[test]
    fn shared_stores_are_searched_after_this_one_and_never_written() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let site = Store::open(dir.path().join("site")).unwrap();
        let shared_blob = site.put_blob(b"shared").unwrap();
        let layer = Digest::of(b"layer");
        fs::create_dir_all(site.root().join("layers").join(layer.hex())).unwrap();
        fs::write(site.layer_dir(&layer).meta_path(), "{}").unwrap();
        let own_root = dir.path().join("own");
        let store = Store::open(&own_root)
            .unwrap()
            .with_shared(
                [PathBuf::new(), site.root().to_owned(), own_root.clone()],
                STORE_PATH_VAR,
            )
            .unwrap();
        // Empty entries and the store itself are skipped.
        assert_eq!(store.shared(), [site.root().to_owned()]);
        // A new store is private.
        let mode = fs::metadata(&own_root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(store.shared_bits(), 0);
        // A root others may enter shares nothing until its owner says so.
        let reopened = || Store::open(&own_root).unwrap();
        fs::set_permissions(&own_root, fs::Permissions::from_mode(0o751)).unwrap();
        assert_eq!(reopened().shared_bits(), 0);
        fs::write(own_root.join(Store::SHARED_MARKER), "").unwrap();
        assert_eq!(reopened().shared_bits(), 0o051);
        fs::remove_file(own_root.join(Store::SHARED_MARKER)).unwrap();
        fs::set_permissions(&own_root, fs::Permissions::from_mode(0o700)).unwrap();

        assert_eq!(store.blob_path(&shared_blob), site.blob_path(&shared_blob));
        assert!(store.has_blob(&shared_blob));
        assert_eq!(store.put_blob(b"shared").unwrap(), shared_blob);
        assert!(
            !own_root
                .join("blobs/sha256")
                .join(shared_blob.hex())
                .exists()
        );
        let own_blob = store.put_blob(b"own").unwrap();
        assert_eq!(
            store.blob_path(&own_blob),
            own_root.join("blobs/sha256").join(own_blob.hex())
        );
        assert!(!site.has_blob(&own_blob));

        assert_eq!(store.layer_dir(&layer), site.layer_dir(&layer));
        let absent = Digest::of(b"absent");
        assert!(store.layer_dir(&absent).path().starts_with(&own_root));
        let stack = [crate::document::UnpackedLayer {
            path: store.layer_dir(&layer).path().to_owned(),
            diff_id: layer,
        }];
        let indexes = store.index_paths(&stack);
        assert!(indexes[0].starts_with(&own_root) && indexes[1].starts_with(site.root()));
        let record = store.import_record_path(b"key");
        assert_eq!(record, store.own_import_record_path(b"key"));
    }

    #[test]
    fn what_a_shared_store_holds_is_readable_by_its_sharers_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        Store::open(&root).unwrap();
        let mode = |path: &Path| fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777;
        let set = |path: &Path, mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        };
        // As a strict umask (077) made them, then shared to the group.
        for entry in SHARED_ENTRIES.iter().chain(&["tmp"]) {
            let path = root.join(entry);
            set(&path, if path.is_dir() { 0o700 } else { 0o600 });
        }
        set(&root, 0o750);
        fs::write(root.join(Store::SHARED_MARKER), "").unwrap();
        let store = Store::open(&root).unwrap();
        for entry in SHARED_ENTRIES {
            let path = root.join(entry);
            let wanted = if path.is_dir() { 0o750 } else { 0o640 };
            assert_eq!(mode(&path), wanted, "{entry}");
        }
        assert_eq!(mode(&root.join("tmp")), 0o700, "the owner's own stays so");
        let file = root.join("tmp/f");
        fs::write(&file, "").unwrap();
        set(&file, 0o600);
        store.share(&file).unwrap();
        assert_eq!(mode(&file), 0o640);
        set(&file, 0o700);
        store.share(&file).unwrap();
        assert_eq!(mode(&file), 0o750, "programs are run");
        let tree = root.join("tmp/tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/f"), "").unwrap();
        std::os::unix::fs::symlink("sub/f", tree.join("link")).unwrap();
        for (path, m) in [("sub/f", 0o600), ("sub", 0o700), ("", 0o700)] {
            set(&tree.join(path), m);
        }
        store.share_tree(&tree).unwrap();
        assert_eq!(
            [
                mode(&tree),
                mode(&tree.join("sub")),
                mode(&tree.join("sub/f"))
            ],
            [0o750, 0o750, 0o640]
        );
        let blob = store.put_blob(b"blob").unwrap();
        assert_eq!(mode(&store.blob_path(&blob)) & 0o040, 0o040);
    }

    #[test]
    fn a_shared_store_that_is_not_one_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = || Store::open(dir.path().join("own")).unwrap();
        let error = |root: PathBuf| {
            let error = store().with_shared([root], STORE_PATH_VAR).unwrap_err();
            format!("{:#}", anyhow::Error::new(error))
        };
        let missing = dir.path().join("missing");
        let text = error(missing.clone());
        assert!(
            text.contains(&missing.display().to_string()) && text.contains("LPMX_STORE_PATH"),
            "{text}"
        );
        let plain = dir.path().join("plain");
        fs::create_dir(&plain).unwrap();
        assert!(error(plain).contains("not an lpmx store"));
        assert!(error(PathBuf::from("relative/store")).contains("not an absolute path"));
        let newer = Store::open(dir.path().join("newer")).unwrap();
        fs::write(newer.root().join("version"), "7\n").unwrap();
        assert!(error(newer.root().to_owned()).contains("format 7"));
    }
}
