//! A container's writable layer as an image layer tar: its files with the
//! owners, modes and device nodes fake root recorded in the tar headers,
//! and (for an exported image) its whiteouts as OCI whiteout entries.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use lpmx_core::container::{OwnerRecord, Whiteouts, split_dev};
use lpmx_core::layer::DeviceKind;
use tar::{EntryType, Header};
use walkdir::WalkDir;

use crate::PackError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What to write besides the files.
pub struct LayerTar<'a> {
    pub upper: &'a Path,
    /// The owners log's records, by inode.
    pub owners: &'a HashMap<u64, OwnerRecord>,
    /// The whiteouts to write as `.wh.` entries; `None` leaves them out
    /// (the pack stream carries `upper.whiteouts` as it is).
    pub whiteouts: Option<&'a Whiteouts>,
}

/// How much of a file is read at once.
const FILE_BUFFER: usize = 1 << 20;

impl LayerTar<'_> {
    /// Writes the tar to `out` (buffered by the caller), files in name
    /// order so the same layer always gives the same bytes.
    pub fn write(&self, out: impl Write) -> Result<(), PackError> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        let opaque: HashSet<&str> = self
            .whiteouts
            .map(|w| w.opaque.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source: io::Error| PackError::Layer { path, source }
        };
        for entry in WalkDir::new(self.upper)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(self.upper).to_owned();
                PackError::Read {
                    path,
                    source: e.into(),
                }
            })?;
            let path = entry.path();
            let rel = path.strip_prefix(self.upper).expect("below the layer");
            // A copy not yet whole (or left by a killed process).
            if lpmx_core::container::is_copy_up_temp(entry.file_name()) {
                continue;
            }
            let meta = entry.metadata().map_err(|e| PackError::Read {
                path: path.to_owned(),
                source: e.into(),
            })?;
            let record = self.owners.get(&meta.ino());
            let mut header = Header::new_gnu();
            header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
            header.set_uid(record.map_or(0, |r| u64::from(r.uid)));
            header.set_gid(record.map_or(0, |r| u64::from(r.gid)));
            let mode = match record {
                Some(r) if r.mode != 0 => r.mode,
                _ => meta.mode(),
            };
            header.set_mode(mode & 0o7777);
            header.set_size(0);
            let kind = meta.file_type();
            let tar_io = io(path);
            let xattrs = xattrs(path).map_err(io(path))?;
            if !xattrs.is_empty() {
                let keys: Vec<String> = xattrs
                    .iter()
                    .map(|(name, _)| format!("SCHILY.xattr.{name}"))
                    .collect();
                builder
                    .append_pax_extensions(
                        keys.iter()
                            .map(String::as_str)
                            .zip(xattrs.iter().map(|(_, value)| value.as_slice())),
                    )
                    .map_err(io(path))?;
            }
            if kind.is_dir() {
                header.set_entry_type(EntryType::Directory);
                builder
                    .append_data(&mut header, rel, io::empty())
                    .map_err(tar_io)?;
                if opaque.contains(&*rel.to_string_lossy()) {
                    whiteout_entry(&mut builder, &rel.join(OPAQUE_MARKER)).map_err(io(path))?;
                }
            } else if kind.is_symlink() {
                let target = fs::read_link(path).map_err(io(path))?;
                header.set_entry_type(EntryType::Symlink);
                builder
                    .append_link(&mut header, rel, target)
                    .map_err(tar_io)?;
            } else if let Some(device) = record.and_then(lpmx_core::container::device_kind) {
                let (major, minor) = split_dev(record.map_or(0, |r| r.rdev));
                header.set_entry_type(match device {
                    DeviceKind::Char => EntryType::Char,
                    DeviceKind::Block => EntryType::Block,
                });
                header.set_device_major(major).map_err(io(path))?;
                header.set_device_minor(minor).map_err(io(path))?;
                builder
                    .append_data(&mut header, rel, io::empty())
                    .map_err(tar_io)?;
            } else if kind.is_fifo() {
                header.set_entry_type(EntryType::Fifo);
                builder
                    .append_data(&mut header, rel, io::empty())
                    .map_err(tar_io)?;
            } else if kind.is_file() {
                let key = (meta.dev(), meta.ino());
                if meta.nlink() > 1 {
                    if let Some(first) = links.get(&key) {
                        header.set_entry_type(EntryType::Link);
                        builder
                            .append_link(&mut header, rel, first)
                            .map_err(tar_io)?;
                        continue;
                    }
                    links.insert(key, rel.to_owned());
                }
                header.set_entry_type(EntryType::Regular);
                let file = File::open(path).map_err(io(path))?;
                header.set_size(meta.len());
                // A file growing while it is read must not overrun the
                // size its header gave (pack containers not in use). tar
                // copies in 8 KiB pieces: the buffer reads the file in
                // large ones.
                let mut limited =
                    io::Read::take(io::BufReader::with_capacity(FILE_BUFFER, file), meta.len());
                builder
                    .append_data(&mut header, rel, &mut limited)
                    .map_err(tar_io)?;
            }
            // Sockets are not files to carry: skipped, as tar does.
        }
        if let Some(whiteouts) = self.whiteouts {
            for deleted in &whiteouts.deleted {
                let deleted = Path::new(deleted);
                // Made again since: the new file or directory hides the
                // image's (a directory made again is opaque, above).
                if fs::symlink_metadata(self.upper.join(deleted)).is_ok() {
                    continue;
                }
                let (Some(parent), Some(name)) = (deleted.parent(), deleted.file_name()) else {
                    continue;
                };
                let mut marker = WHITEOUT_PREFIX.to_owned();
                marker.push_str(&name.to_string_lossy());
                whiteout_entry(&mut builder, &parent.join(marker)).map_err(io(deleted))?;
            }
        }
        builder.finish().map_err(io(self.upper))?;
        Ok(())
    }
}

fn whiteout_entry<W: Write>(builder: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(0);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    builder.append_data(&mut header, path, io::empty())
}

/// The extended attributes of `path` itself (not followed), as copy-up
/// keeps them; none where the file system has none.
fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: c_path is NUL-terminated; names has the length given.
        let n =
            unsafe { libc::llistxattr(c_path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(error),
        }
    };
    let mut found = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let c_name = std::ffi::CString::new(name).expect("no NUL inside");
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: both strings are NUL-terminated; value has the length given.
            let n = unsafe {
                libc::lgetxattr(
                    c_path.as_ptr(),
                    c_name.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if n >= 0 {
                value.truncate(n as usize);
                break;
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::ERANGE) => value.resize(value.len() * 16, 0),
                // Removed meanwhile.
                Some(libc::ENODATA) => {
                    value.clear();
                    break;
                }
                _ => return Err(error),
            }
        }
        found.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    Ok(found)
}
