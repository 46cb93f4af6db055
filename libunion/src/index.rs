//! The lower layers' index (`lpmx_union::index`), mapped read-only once
//! per process: a lookup is a binary search with no system call, whatever
//! the number of layers.

use crate::sys;

pub use lpmx_union::index::{KIND_DIR, KIND_SYMLINK};

pub type Index = lpmx_union::index::Index<'static>;

/// Maps the index at NUL-terminated `path`; None when it cannot be read
/// or is not an index of this version.
pub fn map(path: &[u8]) -> Option<Index> {
    let fd = sys::openat(sys::AT_FDCWD, path.as_ptr(), sys::O_CLOEXEC, 0).ok()? as i32;
    let mut st = [0u64; 18];
    let size = sys::fstat(fd, st.as_mut_ptr().cast()).map(|_| st[6] as usize);
    let mapped = size.and_then(|size| sys::mmap_read(fd, size).map(|p| (p, size)));
    let _ = sys::close(fd);
    let (addr, size) = mapped.ok()?;
    // SAFETY: the mapping is `size` bytes, read-only, never unmapped.
    let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(addr as *const u8, size) };
    Index::parse(bytes).ok()
}

/// Where relative path `key` is in the index: the answer of a recent
/// lookup of the same path (a walk's directories, looked up for every file
/// below them), else a search outward from the last answer (a listing's
/// next file). The index never changes while mapped, so neither can go
/// stale.
pub fn position(index: Index, key: &[u8]) -> Option<usize> {
    use core::sync::atomic::{AtomicUsize, Ordering};
    const RECENT: usize = 64;
    static LAST: AtomicUsize = AtomicUsize::new(usize::MAX);
    static RECENT_POSITIONS: [AtomicUsize; RECENT] = [const { AtomicUsize::new(0) }; RECENT];
    let hash = crate::buf::hashes(key).0;
    let slot = &RECENT_POSITIONS[(hash as usize) % RECENT];
    let recent = slot.load(Ordering::Relaxed);
    if recent != 0 && recent <= index.len() && index.path(recent - 1) == key {
        return Some(recent - 1);
    }
    let found = index.position_near(key, LAST.load(Ordering::Relaxed));
    if let Some(i) = found {
        LAST.store(i, Ordering::Relaxed);
        slot.store(i + 1, Ordering::Relaxed);
    }
    found
}
