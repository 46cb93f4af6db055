//! What each open descriptor names in the container: the directories
//! libunion opened, so that `*at` calls relative to them resolve without a
//! readlink in /proc, and the writable layer's descriptors.

use core::sync::atomic::Ordering;

use crate::buf::Buf;
use crate::lock::SpinLock;
use crate::state::{State, to_container};
use crate::sys;

// Directory descriptors' container paths, remembered when libunion opened
// them: `*at` calls relative to them (find, fts, Python's rmtree) then
// need one fstat to check the descriptor is still that directory instead
// of a readlink in /proc, which costs several times more. An entry is
// forgotten when its descriptor is closed or replaced (`fds`), and is
// stale once any directory of the container was removed or renamed (the
// change counter moved): a new directory can get both the descriptor
// number and the inode number of a deleted one.
const FD_SLOTS: usize = 64;
const FD_PATH: usize = 1024;

struct FdSlot {
    /// The descriptor plus one: an all-zero (empty) table lives in .bss.
    fd_plus_one: i32,
    dev: u64,
    ino: u64,
    generation: u64,
    len: usize,
    path: [u8; FD_PATH],
}

static FD_CACHE: SpinLock<[FdSlot; FD_SLOTS]> = SpinLock::new(
    [const {
        FdSlot {
            fd_plus_one: 0,
            dev: 0,
            ino: 0,
            generation: 0,
            len: 0,
            path: [0; FD_PATH],
        }
    }; FD_SLOTS],
);

fn identity(fd: i32) -> Option<(u64, u64)> {
    let mut st = [0u64; 18];
    sys::fstat(fd, st.as_mut_ptr().cast()).ok()?;
    Some((st[0], st[1]))
}

/// Remembers that `fd` (just opened) is container directory `path`.
pub fn remember_fd(fd: i32, path: &[u8]) {
    clear_host_fd(fd);
    if let Some(id) = identity(fd) {
        remember(fd, id, path);
    }
}

/// Remembers that `fd` (just opened by a host path lpmx passes as it is)
/// is the directory `path` when it is one; forgets what was known of `fd`
/// otherwise. Marked so, it keeps its host path when the cache has lost it
/// (`fd_path_of`), rather than the container path that path maps back to.
pub fn remember_host_dir_fd(fd: i32, path: &[u8]) {
    let mut st = [0u64; 18];
    if sys::fstat(fd, st.as_mut_ptr().cast()).is_ok() && st[3] as u32 & sys::S_IFMT == sys::S_IFDIR
    {
        remember(fd, (st[0], st[1]), path);
        if let Some((word, bit)) = bit_of(&HOST_FD, fd) {
            word.fetch_or(bit, Ordering::Relaxed);
        }
    } else {
        forget_fd(fd);
    }
}

/// Descriptors of directories opened by a host path lpmx passes as it is
/// (`remember_host_dir_fd`): a bit per descriptor below UPPER_FDS.
static HOST_FD: [core::sync::atomic::AtomicU64; UPPER_FDS / 64] =
    [const { core::sync::atomic::AtomicU64::new(0) }; UPPER_FDS / 64];

fn is_host_fd(fd: i32) -> bool {
    bit_of(&HOST_FD, fd).is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
}

fn clear_host_fd(fd: i32) {
    if let Some((word, bit)) = bit_of(&HOST_FD, fd) {
        word.fetch_and(!bit, Ordering::Relaxed);
    }
}

/// Remembers that `fd` (just opened) is container directory `path`, whose
/// device and inode are `id`.
pub fn remember_fd_as(fd: i32, id: (u64, u64), path: &[u8]) {
    clear_host_fd(fd);
    remember(fd, id, path);
}

fn remember(fd: i32, (dev, ino): (u64, u64), path: &[u8]) {
    if fd < 0 || path.len() > FD_PATH {
        forget_fd(fd);
        return;
    }
    let generation = crate::upper::dirs_generation(crate::state::get());
    FD_CACHE.with(|slots| {
        let slot = &mut slots[fd as usize % FD_SLOTS];
        slot.fd_plus_one = fd + 1;
        slot.dev = dev;
        slot.ino = ino;
        slot.generation = generation;
        slot.len = path.len();
        slot.path[..path.len()].copy_from_slice(path);
    });
}

// Descriptors known to name files of the writable layer (opened or made
// there through libunion): a change through one needs no lookup of its
// path. A bit per descriptor below UPPER_FDS, cleared with the cache.
const UPPER_FDS: usize = 4096;
static UPPER_FD: [core::sync::atomic::AtomicU64; UPPER_FDS / 64] =
    [const { core::sync::atomic::AtomicU64::new(0) }; UPPER_FDS / 64];

fn upper_bit(fd: i32) -> Option<(&'static core::sync::atomic::AtomicU64, u64)> {
    bit_of(&UPPER_FD, fd)
}

fn bit_of(
    bits: &'static [core::sync::atomic::AtomicU64; UPPER_FDS / 64],
    fd: i32,
) -> Option<(&'static core::sync::atomic::AtomicU64, u64)> {
    let fd = usize::try_from(fd).ok().filter(|&fd| fd < UPPER_FDS)?;
    Some((&bits[fd / 64], 1 << (fd % 64)))
}

/// `fd` (just opened) names a file of the writable layer.
pub fn mark_upper_fd(fd: i32) {
    if let Some((word, bit)) = upper_bit(fd) {
        word.fetch_or(bit, Ordering::Relaxed);
    }
}

/// Whether `fd` is known to name a file of the writable layer.
pub fn is_upper_fd(fd: i32) -> bool {
    upper_bit(fd).is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
}

/// `fd` was closed, or now names something else.
pub fn forget_fd(fd: i32) {
    if fd < 0 {
        return;
    }
    if let Some((word, bit)) = upper_bit(fd) {
        word.fetch_and(!bit, Ordering::Relaxed);
    }
    clear_host_fd(fd);
    FD_CACHE.with(|slots| {
        let slot = &mut slots[fd as usize % FD_SLOTS];
        if slot.fd_plus_one == fd + 1 {
            slot.fd_plus_one = 0;
        }
    });
}

/// Descriptors `first..=last` were closed.
pub fn forget_fds(first: u32, last: u32) {
    for fd in first..=last.min(UPPER_FDS as u32 - 1) {
        if let Some((word, bit)) = upper_bit(fd as i32) {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
        clear_host_fd(fd as i32);
    }
    FD_CACHE.with(|slots| {
        for slot in slots.iter_mut() {
            let fd = (slot.fd_plus_one - 1) as u32;
            if slot.fd_plus_one > 0 && fd >= first && fd <= last {
                slot.fd_plus_one = 0;
            }
        }
    });
}

/// The container path of open file descriptor `fd`.
pub fn fd_path(state: &State, fd: i32, out: &mut Buf) -> bool {
    let id = if fd >= 0 { identity(fd) } else { None };
    fd_path_of(state, fd, id, out)
}

/// `fd_path` when the descriptor's device and inode (`id`) are known.
pub fn fd_path_of(state: &State, fd: i32, id: Option<(u64, u64)>, out: &mut Buf) -> bool {
    if let Some((dev, ino)) = id {
        let generation = crate::upper::dirs_generation(state);
        let hit = FD_CACHE.with(|slots| {
            let slot = &slots[fd as usize % FD_SLOTS];
            slot.fd_plus_one == fd + 1
                && slot.dev == dev
                && slot.ino == ino
                && slot.generation == generation
                && out.set(&slot.path[..slot.len]).is_ok()
        });
        if hit {
            return true;
        }
    }
    let mut link = Buf::new();
    let mut number = [0u8; 12];
    let digits = sys::format_int(fd as i64, &mut number);
    if link.push(b"/proc/self/fd/").is_err() || link.push(digits).is_err() {
        return false;
    }
    let mut host = Buf::new();
    match sys::readlinkat(sys::AT_FDCWD, link.c(), host.spare(), crate::buf::CAPACITY) {
        Ok(len) => host.set_len(len),
        Err(_) => return false,
    }
    // A directory opened by a host path lpmx passed as it is keeps it.
    let known = if is_host_fd(fd) {
        out.set(host.as_bytes()).is_ok()
    } else {
        to_container(state, host.as_bytes(), out)
    };
    if let (true, Some(id)) = (known, id) {
        remember(fd, id, out.as_bytes());
    }
    known
}
