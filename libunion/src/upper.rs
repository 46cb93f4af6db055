//! What the top of the writable layer holds, cached per process: most
//! lookups then cost no system call at all for the writable layer.
//!
//! The cache is the list of names in the writable layer's root directory.
//! It stays valid while the container's change counter (`upper.gen` beside
//! `upper/`, a `u64` every process of the container maps shared) stays the
//! same: libunion bumps it after every change to the writable layer, so a
//! process sees the changes of any other at its next lookup.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};

use crate::buf::Buf;
use crate::state::State;
use crate::sys;

const NAMES: usize = 16 * 1024;

struct Cache {
    generation: u64,
    valid: bool,
    len: usize,
    /// The root's names, each followed by a NUL.
    names: [u8; NAMES],
}

struct Cell(UnsafeCell<Cache>);
// SAFETY: accessed under LOCK only.
unsafe impl Sync for Cell {}

static CACHE: Cell = Cell(UnsafeCell::new(Cache {
    generation: 0,
    valid: false,
    len: 0,
    names: [0; NAMES],
}));
static LOCK: AtomicBool = AtomicBool::new(false);
static COUNTER: AtomicPtr<AtomicU64> = AtomicPtr::new(core::ptr::null_mut());
static COUNTER_STATE: AtomicU8 = AtomicU8::new(0);

/// The shared change counter, mapped on first use; None if it cannot be
/// (then nothing is cached).
fn counter(state: &State) -> Option<&'static AtomicU64> {
    match COUNTER_STATE.load(Ordering::Acquire) {
        2 => {
            // SAFETY: a mapping that is never unmapped.
            return unsafe { COUNTER.load(Ordering::Acquire).as_ref() };
        }
        3 => return None,
        _ => {}
    }
    if COUNTER_STATE
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        while COUNTER_STATE.load(Ordering::Acquire) == 1 {
            core::hint::spin_loop();
        }
        return counter(state);
    }
    let mapped = map_counter(state);
    if let Some(p) = mapped {
        COUNTER.store(p, Ordering::Release);
    }
    COUNTER_STATE.store(if mapped.is_some() { 2 } else { 3 }, Ordering::Release);
    // SAFETY: as above.
    mapped.and_then(|p| unsafe { p.as_ref() })
}

fn map_counter(state: &State) -> Option<*mut AtomicU64> {
    let mut path = Buf::from(state.upper).ok()?;
    path.push(b".gen").ok()?;
    let fd = sys::openat(
        sys::AT_FDCWD,
        path.c(),
        sys::O_RDWR | sys::O_CREAT | sys::O_CLOEXEC,
        0o644,
    )
    .ok()? as i32;
    let mut st = [0u64; 18];
    let sized = sys::fstat(fd, st.as_mut_ptr().cast()).is_ok()
        && (st[6] >= 8 || sys::ftruncate(fd, 8).is_ok());
    let mapped = if sized {
        sys::mmap_shared(fd, 8).ok()
    } else {
        None
    };
    let _ = sys::close(fd);
    mapped.map(|p| p as *mut AtomicU64)
}

fn locked<T>(f: impl FnOnce(&mut Cache) -> T) -> T {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    // SAFETY: the lock is held.
    let result = f(unsafe { &mut *CACHE.0.get() });
    LOCK.store(false, Ordering::Release);
    result
}

/// Whether the writable layer may hold top-level name `name`: false only
/// when it surely does not.
pub fn may_hold(state: &State, name: &[u8]) -> bool {
    let Some(counter) = counter(state) else {
        return true;
    };
    let now = counter.load(Ordering::Acquire);
    locked(|cache| {
        if !cache.valid || cache.generation != now {
            cache.valid = read_root(state, cache);
            cache.generation = now;
        }
        if !cache.valid {
            return true;
        }
        cache.names[..cache.len]
            .split(|&b| b == 0)
            .any(|n| n == name)
    })
}

fn read_root(state: &State, cache: &mut Cache) -> bool {
    cache.len = 0;
    let Ok(path) = Buf::from(state.upper) else {
        return false;
    };
    let Ok(fd) = sys::openat(
        sys::AT_FDCWD,
        path.c(),
        sys::O_DIRECTORY | sys::O_CLOEXEC,
        0,
    ) else {
        return false;
    };
    let fd = fd as i32;
    let mut chunk = [0u64; 1024];
    let complete = loop {
        let n = match sys::getdents64(fd, chunk.as_mut_ptr().cast(), 8 * chunk.len()) {
            Ok(0) => break true,
            Ok(n) => n,
            Err(_) => break false,
        };
        let bytes = chunk.as_ptr().cast::<u8>();
        let mut at = 0;
        let mut fits = true;
        while at < n {
            // SAFETY: whole records written by the kernel.
            let (reclen, name) = unsafe {
                let record = bytes.add(at);
                (
                    usize::from(record.add(16).cast::<u16>().read_unaligned()),
                    crate::buf::cstr(record.add(19).cast()),
                )
            };
            at += reclen.max(1);
            if cache.len + name.len() + 1 > NAMES {
                fits = false;
                break;
            }
            cache.names[cache.len..cache.len + name.len()].copy_from_slice(name);
            cache.names[cache.len + name.len()] = 0;
            cache.len += name.len() + 1;
        }
        if !fits {
            break false;
        }
    };
    let _ = sys::close(fd);
    complete
}

/// Tells every process of the container that the writable layer changed.
pub fn changed(state: &State) {
    if let Some(counter) = counter(state) {
        counter.fetch_add(1, Ordering::AcqRel);
    }
}
