//! Extracting one layer's tar into a directory, as an ordinary user, safely.
//!
//! Nothing outside the directory is ever created, changed or followed:
//! names with `..` or a leading `/` are refused, every parent directory is
//! one this extraction made itself (never a symlink), and hardlinks may
//! only point at files already extracted. What an unprivileged user cannot
//! put on disk (owners, setuid bits, device nodes, some xattrs) and the
//! whiteouts are recorded in the returned [`LayerMeta`] instead.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tar::EntryType;

use lpmx_core::layer::{Device, DeviceKind, EntryMeta, LayerMeta};

use crate::error::UnpackError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Extracts the tar stream `reader` into `root` (an existing, empty
/// directory). `layer` names the layer in errors. `shared_bits` (group and
/// other read and search bits, `Store::shared_bits`) are added to every
/// entry on disk, so those the store is shared with can read it all; the
/// image's own modes are in the metadata either way.
pub fn extract(
    reader: impl Read,
    root: &Path,
    layer: &str,
    shared_bits: u32,
) -> Result<LayerMeta, UnpackError> {
    let mut extractor = Extractor {
        shared_bits: shared_bits & 0o055,
        root: root.to_owned(),
        layer: layer.to_owned(),
        known_dirs: HashSet::from([PathBuf::new()]),
        others: HashSet::new(),
        meta: LayerMeta::new(),
        dir_times: Vec::new(),
        buffer: vec![0; 1 << 20],
        umask: lpmx_core::store::process_umask(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut last = String::new();
    let entries = archive
        .entries()
        .map_err(|source| extractor.tar_error(&last, source))?;
    for entry in entries {
        let mut entry = entry.map_err(|source| extractor.tar_error(&last, source))?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        extractor.entry(&mut entry, &last)?;
    }
    extractor.finish()
}

struct Extractor {
    root: PathBuf,
    layer: String,
    /// Directories (relative) this extraction created and that are still
    /// directories: the only ones entries may be written into.
    known_dirs: HashSet<PathBuf>,
    /// Everything else this extraction created and that is still there.
    /// With `known_dirs` it says what exists in the (private) directory,
    /// so fresh entries cost no `lstat`.
    others: HashSet<PathBuf>,
    meta: LayerMeta,
    /// Directory times, set last (creating entries changes them).
    dir_times: Vec<(PathBuf, u64)>,
    /// For copying file data.
    buffer: Vec<u8>,
    /// The process umask, to skip a `chmod` when creation already gave the
    /// right mode; `None` when unknown.
    umask: Option<u32>,
    /// Added to the mode on disk (see `extract`).
    shared_bits: u32,
}

impl Extractor {
    fn tar_error(&self, entry: &str, source: io::Error) -> UnpackError {
        UnpackError::Tar {
            layer: self.layer.clone(),
            entry: entry.to_owned(),
            source,
        }
    }

    fn unsafe_entry(&self, entry: &str, why: impl Into<String>) -> UnpackError {
        UnpackError::Unsafe {
            layer: self.layer.clone(),
            entry: entry.to_owned(),
            why: why.into(),
        }
    }

    fn io_error(&self, path: &Path) -> impl FnOnce(io::Error) -> UnpackError {
        UnpackError::io(self.root.join(path))
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let Some(rel) = sanitize(&raw).map_err(|why| self.unsafe_entry(name, why))? else {
            // "./" itself: the layer root's attributes are the container's
            // root directory's, which lpmx does not keep per layer.
            return Ok(());
        };
        let file_name = rel.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new("")).to_owned();
        self.ensure_parent(&parent, name)?;

        if file_name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            if file_name == OPAQUE_MARKER.as_bytes() {
                self.meta.opaque.insert(meta_key(&parent));
            } else {
                let hidden = parent.join(std::ffi::OsStr::from_bytes(
                    &file_name[WHITEOUT_PREFIX.len()..],
                ));
                if hidden.file_name().is_none() || hidden == parent {
                    return Err(self.unsafe_entry(name, "is a whiteout without a name"));
                }
                self.meta.whiteouts.insert(meta_key(&hidden));
            }
            return Ok(());
        }

        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|source| self.tar_error(name, source))?
            & 0o7777;
        // Some writers leave owner fields empty: that is root.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let key = meta_key(&rel);
        let full = self.root.join(&rel);
        let is_dir = kind == EntryType::Directory;
        let existing_dir = self.clear(&rel, &full, is_dir)?;

        // The mode on disk: the owner may always read and replace, those
        // the store is shared with read (and run what the owner may); no
        // setuid, setgid or sticky bits.
        let shared = self.shared_bits;
        let stored = match kind {
            EntryType::Directory => (mode & 0o777) | 0o700 | shared,
            _ if mode & 0o100 != 0 => (mode & 0o777) | 0o600 | shared,
            _ => (mode & 0o777) | 0o600 | (shared & 0o044),
        };
        let mut record_mode = true;
        // What the layer's meta.json must say of this entry; most entries
        // need nothing, and the map is only touched for those that do.
        let mut record = EntryMeta::default();
        match kind {
            EntryType::Directory => {
                if existing_dir || self.needs_chmod(stored) {
                    if !existing_dir {
                        fs::create_dir(&full).map_err(self.io_error(&rel))?;
                    }
                    fs::set_permissions(&full, fs::Permissions::from_mode(stored))
                        .map_err(self.io_error(&rel))?;
                } else {
                    fs::DirBuilder::new()
                        .mode(stored)
                        .create(&full)
                        .map_err(self.io_error(&rel))?;
                }
                self.known_dirs.insert(rel.clone());
                self.dir_times.push((rel.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = create_file(&full, stored).map_err(self.io_error(&rel))?;
                copy_data(entry, &mut file, &mut self.buffer)
                    .map_err(|source| self.tar_error(name, source))?;
                if self.needs_chmod(stored) {
                    file.set_permissions(fs::Permissions::from_mode(stored))
                        .map_err(self.io_error(&rel))?;
                }
                let _ = file.set_modified(time(mtime));
                self.others.insert(rel.clone());
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(name, "is a symlink without a target"))?;
                // Stored as it is: an absolute or `..` target is resolved
                // inside the container at run time, never here.
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &full)
                    .map_err(self.io_error(&rel))?;
                set_mtime_nofollow(&full, mtime);
                self.others.insert(rel.clone());
                record_mode = false;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(name, "is a hardlink without a target"))?;
                let target = sanitize(&target)
                    .map_err(|why| {
                        self.unsafe_entry(name, format!("is a hardlink whose target {why}"))
                    })?
                    .ok_or_else(|| self.unsafe_entry(name, "is a hardlink to the layer root"))?;
                self.check_link_target(&target, name)?;
                fs::hard_link(self.root.join(&target), &full).map_err(self.io_error(&rel))?;
                self.others.insert(rel.clone());
            }
            EntryType::Char | EntryType::Block => {
                let device = Device {
                    kind: if kind == EntryType::Char {
                        DeviceKind::Char
                    } else {
                        DeviceKind::Block
                    },
                    major: header.device_major().ok().flatten().unwrap_or(0),
                    minor: header.device_minor().ok().flatten().unwrap_or(0),
                };
                // An ordinary user cannot make device nodes: an empty file
                // holds the name, the metadata the device.
                create_file(&full, stored).map_err(self.io_error(&rel))?;
                set_mtime_nofollow(&full, mtime);
                self.others.insert(rel.clone());
                record.device = Some(device);
            }
            EntryType::Fifo => {
                let path = c_path(&full);
                // SAFETY: path is a valid NUL-terminated string.
                if unsafe { libc::mkfifo(path.as_ptr(), stored) } != 0 {
                    return Err(self.io_error(&rel)(io::Error::last_os_error()));
                }
                fs::set_permissions(&full, fs::Permissions::from_mode(stored))
                    .map_err(self.io_error(&rel))?;
                set_mtime_nofollow(&full, mtime);
                self.others.insert(rel.clone());
            }
            other => {
                return Err(self.unsafe_entry(name, format!("has an unsupported type ({other:?})")));
            }
        }

        if record_mode && mode != stored {
            record.mode = Some(mode);
        }
        if uid != 0 {
            record.uid = Some(uid as u32);
        }
        if gid != 0 {
            record.gid = Some(gid as u32);
        }
        if let Ok(Some(extensions)) = entry.pax_extensions() {
            for extension in extensions.flatten() {
                let Ok(key) = extension.key() else { continue };
                let Some(xattr) = key.strip_prefix("SCHILY.xattr.") else {
                    continue;
                };
                let value = extension.value_bytes();
                if !(xattr.starts_with("user.") && set_xattr(&full, xattr, value)) {
                    record.xattrs.insert(xattr.to_owned(), BASE64.encode(value));
                }
            }
        }
        // A directory named again keeps its place but takes the attributes
        // the later entry gives.
        if !record.is_empty() {
            self.meta.entries.insert(key, record);
        } else if existing_dir {
            self.meta.entries.remove(&key);
        }
        Ok(())
    }

    /// Makes sure every directory above an entry exists and is a directory
    /// this extraction made, creating missing ones (`0755`, as tar does).
    fn ensure_parent(&mut self, parent: &Path, name: &str) -> Result<(), UnpackError> {
        if self.known_dirs.contains(parent) {
            return Ok(());
        }
        let mut prefix = PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            if self.known_dirs.contains(&prefix) {
                continue;
            }
            let full = self.root.join(&prefix);
            match fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    let what = if meta.file_type().is_symlink() {
                        "a symlink"
                    } else {
                        "not a directory"
                    };
                    return Err(self.unsafe_entry(
                        name,
                        format!(
                            "lies under {}, which is {what} in this layer",
                            prefix.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // 0755 holds every bit a shared store gives (0o055).
                    const IMPLIED: u32 = 0o755;
                    fs::DirBuilder::new()
                        .mode(IMPLIED)
                        .create(&full)
                        .map_err(self.io_error(&prefix))?;
                    if self.needs_chmod(IMPLIED) {
                        fs::set_permissions(&full, fs::Permissions::from_mode(IMPLIED))
                            .map_err(self.io_error(&prefix))?;
                    }
                }
                Err(e) => return Err(self.io_error(&prefix)(e)),
            }
            self.known_dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// Removes what is at `rel` so a later entry of the same name replaces
    /// it; a directory replaced by a directory stays. Returns whether it did.
    fn clear(&mut self, rel: &Path, full: &Path, keep_dir: bool) -> Result<bool, UnpackError> {
        if self.known_dirs.contains(rel) {
            if keep_dir {
                return Ok(true);
            }
            fs::remove_dir_all(full).map_err(self.io_error(rel))?;
            self.known_dirs.retain(|dir| !dir.starts_with(rel));
            self.others.retain(|path| !path.starts_with(rel));
            self.dir_times.retain(|(dir, _)| !dir.starts_with(rel));
        } else if self.others.remove(rel) {
            fs::remove_file(full).map_err(self.io_error(rel))?;
        } else {
            return Ok(false);
        }
        self.meta.forget_tree(&meta_key(rel));
        Ok(false)
    }

    /// A hardlink target must be a non-directory this layer already holds,
    /// reached through directories this extraction made.
    fn check_link_target(&self, target: &Path, name: &str) -> Result<(), UnpackError> {
        let parent = target.parent().unwrap_or(Path::new(""));
        if !self.known_dirs.contains(parent) {
            return Err(self.unsafe_entry(
                name,
                format!(
                    "is a hardlink to {}, which is not a file of this layer",
                    target.display()
                ),
            ));
        }
        match fs::symlink_metadata(self.root.join(target)) {
            Ok(meta) if !meta.is_dir() => Ok(()),
            _ => Err(self.unsafe_entry(
                name,
                format!(
                    "is a hardlink to {}, which is not a file of this layer",
                    target.display()
                ),
            )),
        }
    }

    fn needs_chmod(&self, mode: u32) -> bool {
        self.umask.is_none_or(|umask| mode & umask != 0)
    }

    fn finish(mut self) -> Result<LayerMeta, UnpackError> {
        // Deepest first, so setting a child's time does not disturb its parent's.
        self.dir_times
            .sort_by_key(|(dir, _)| std::cmp::Reverse(dir.components().count()));
        for (dir, mtime) in &self.dir_times {
            if let Ok(file) = File::open(self.root.join(dir)) {
                let _ = file.set_modified(time(*mtime));
            }
        }
        Ok(self.meta)
    }
}

/// Copies a file's data with big writes (io::copy writes 8 KiB at a time),
/// leaving holes where whole blocks are zeros: a file of gigabytes of
/// zeros (a disk image, a sparse file in the tar) takes no space.
fn copy_data(reader: &mut impl Read, file: &mut File, buf: &mut [u8]) -> io::Result<()> {
    const BLOCK: usize = 64 * 1024;
    let mut length = 0u64;
    let mut hole_at_end = false;
    loop {
        let mut n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Topped up to a BLOCK boundary, so blocks stay aligned to the file
        // whatever sizes the reader returns; no further, so a pipe's
        // writer is not kept waiting for a whole buffer.
        let aligned = n.next_multiple_of(BLOCK).min(buf.len());
        n += lpmx_core::read::read_full(reader, &mut buf[n..aligned])?;
        for block in buf[..n].chunks(BLOCK) {
            if block.len() == BLOCK && block.iter().all(|&b| b == 0) {
                file.seek(io::SeekFrom::Current(BLOCK as i64))?;
                hole_at_end = true;
            } else {
                file.write_all(block)?;
                hole_at_end = false;
            }
            length += block.len() as u64;
        }
    }
    if hole_at_end {
        file.set_len(length)?;
    }
    Ok(())
}

/// Normalises a tar entry name: `./a//b/` is `a/b`; `None` is the root.
/// Names with `..` or a leading `/` are refused.
fn sanitize(raw: &[u8]) -> Result<Option<PathBuf>, String> {
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("leaves the layer with `..`".to_owned()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("is an absolute name".to_owned());
            }
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

fn meta_key(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

fn create_file(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn time(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.min(i64::MAX as u64 / 2))
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// Sets the times of `path` itself, whatever it is (a symlink too).
fn set_mtime_nofollow(path: &Path, mtime: u64) {
    let path = c_path(path);
    let stamp = libc::timespec {
        tv_sec: mtime.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: 0,
    };
    let times = [stamp, stamp];
    // SAFETY: path is NUL-terminated and times has the two entries utimensat reads.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
}

/// Sets an xattr on `path` without following a symlink; false if refused.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    let (path, Ok(name)) = (c_path(path), CString::new(name)) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; value's pointer and length agree.
    unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_escapes_refused() {
        assert_eq!(sanitize(b"./a//b/").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(sanitize(b"./").unwrap(), None);
        assert!(sanitize(b"../x").is_err());
        assert!(sanitize(b"a/../../x").is_err());
        assert!(sanitize(b"/etc/passwd").is_err());
    }

    /// A tar of `entries` (name, type, mode), files empty.
    fn tar_of(entries: &[(&str, EntryType, u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for &(name, kind, mode) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(0);
            header.set_cksum();
            builder.append_data(&mut header, name, &[][..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_shared_store_gets_what_its_sharers_need_to_read_and_the_image_modes_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let tar = tar_of(&[
            ("root/", EntryType::Directory, 0o700),
            ("root/key", EntryType::Regular, 0o600),
            ("tool", EntryType::Regular, 0o750),
            ("doc", EntryType::Regular, 0o644),
        ]);
        let on_disk = |root: &Path, name: &str| {
            fs::symlink_metadata(root.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        let private = tempfile::tempdir().unwrap();
        let meta = extract(&tar[..], private.path(), "private", 0).unwrap();
        assert_eq!(on_disk(private.path(), "root"), 0o700);
        assert_eq!(on_disk(private.path(), "root/key"), 0o600);
        assert!(meta.entries.values().all(|e| e.mode.is_none()), "{meta:?}");

        let shared = tempfile::tempdir().unwrap();
        let meta = extract(&tar[..], shared.path(), "shared", 0o055).unwrap();
        assert_eq!(on_disk(shared.path(), "root"), 0o755);
        assert_eq!(on_disk(shared.path(), "root/key"), 0o644);
        assert_eq!(on_disk(shared.path(), "tool"), 0o755);
        assert_eq!(on_disk(shared.path(), "doc"), 0o644);
        let mode = |name: &str| meta.entries.get(name).and_then(|e| e.mode);
        assert_eq!(mode("root"), Some(0o700));
        assert_eq!(mode("root/key"), Some(0o600));
        assert_eq!(mode("tool"), Some(0o750));
        assert_eq!(mode("doc"), None);
    }
}
