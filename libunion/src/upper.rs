//! What the top of the writable layer holds, cached per process: most
//! lookups then cost no system call at all for the writable layer.
//!
//! The cache is the list of names in the writable layer's root directory,
//! and the writable layer's whiteouts: `upper.whiteouts` beside `upper/`,
//! one line per path the container deleted from the image (`W usr/bin/x`)
//! or replaced by a new directory (`O etc/apt`), the format
//! `lpmx_core::container::Whiteouts` reads.
//! It stays valid while the container's change counter (`upper.gen` beside
//! `upper/`, a `u64` every process of the container maps shared) stays the
//! same: libunion bumps it after every change to the writable layer, so a
//! process sees the changes of any other at its next lookup.

use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};

use lpmx_union::upper::{self as upper_files, Counter};

use crate::buf::{Buf, Slot};
use crate::lock::SpinLock;
use crate::state::State;
use crate::sys;

const NAMES: usize = 16 * 1024;

struct Cache {
    generation: u64,
    whiteouts_generation: u64,
    valid: bool,
    len: usize,
    /// The root's names, each followed by a NUL.
    names: [u8; NAMES],
    /// The whiteouts file as read, and its lines sorted by path.
    text: *mut u8,
    lines: *mut Line,
    count: usize,
}

#[derive(Clone, Copy)]
struct Line {
    start: usize,
    len: usize,
    opaque: bool,
}

static CACHE: SpinLock<Cache> = SpinLock::new(Cache {
    generation: 0,
    whiteouts_generation: 0,
    valid: false,
    len: 0,
    names: [0; NAMES],
    text: core::ptr::null_mut(),
    lines: core::ptr::null_mut(),
    count: 0,
});
/// The container's change counters (`upper.gen`, mapped shared): for the
/// root's names, the whiteouts and the owners log. A writer bumps only the
/// one it changed, so most writes invalidate nothing.
static COUNTER: AtomicPtr<Counters> = AtomicPtr::new(core::ptr::null_mut());
type Counters = [AtomicU64; upper_files::COUNTER_SLOTS];
const ROOT: usize = Counter::Root as usize;
const WHITEOUTS: usize = Counter::Whiteouts as usize;
const OWNERS: usize = Counter::Owners as usize;
const DIRS: usize = Counter::Dirs as usize;
const BUSY: usize = Counter::Busy as usize;
const MADE: usize = Counter::Made as usize;
static COUNTER_STATE: AtomicU8 = AtomicU8::new(0);

/// The shared change counter, mapped on first use; None if it cannot be
/// (then nothing is cached).
fn counter(state: &State) -> Option<&'static Counters> {
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

fn map_counter(state: &State) -> Option<*mut Counters> {
    let mut path = Buf::from(state.upper).ok()?;
    path.push(upper_files::COUNTERS).ok()?;
    let fd = sys::openat(
        sys::AT_FDCWD,
        path.c(),
        sys::O_RDWR | sys::O_CREAT | sys::O_CLOEXEC,
        0o644,
    )
    .ok()? as i32;
    const BYTES: usize = upper_files::COUNTER_BYTES;
    let mut st = [0u64; 18];
    let sized = sys::fstat(fd, st.as_mut_ptr().cast()).is_ok()
        && (st[6] >= BYTES as u64 || sys::ftruncate(fd, BYTES as u64).is_ok());
    let mapped = if sized {
        sys::mmap_shared(fd, BYTES).ok()
    } else {
        None
    };
    let _ = sys::close(fd);
    mapped.map(|p| p as *mut Counters)
}

fn locked<T>(f: impl FnOnce(&mut Cache) -> T) -> T {
    CACHE.with(f)
}

/// Whether the writable layer may hold top-level name `name`: false only
/// when it surely does not.
pub fn may_hold(state: &State, name: &[u8]) -> bool {
    let Some(counter) = counter(state) else {
        return true;
    };
    let now = generations(counter);
    locked(|cache| {
        refresh(state, cache, now);
        if !cache.valid {
            return true;
        }
        cache.names[..cache.len]
            .split(|&b| b == 0)
            .any(|n| n == name)
    })
}

/// The counters of what the cache holds, None while a writer is changing
/// it (then the cache is read again for every lookup). Busy is read
/// first: a change that began after it was 0 is not yet known to anyone.
fn generations(counter: &Counters) -> Option<(u64, u64)> {
    if counter[BUSY].load(Ordering::SeqCst) != 0 {
        return None;
    }
    Some((
        counter[ROOT].load(Ordering::Acquire),
        counter[WHITEOUTS].load(Ordering::Acquire),
    ))
}

fn refresh(state: &State, cache: &mut Cache, now: Option<(u64, u64)>) {
    let Some((root, whiteouts)) = now else {
        // Read now, trusted for this lookup only.
        cache.valid = read_root(state, cache) && read_whiteouts(state, cache);
        cache.generation = u64::MAX;
        cache.whiteouts_generation = u64::MAX;
        return;
    };
    if cache.valid && cache.generation == root && cache.whiteouts_generation == whiteouts {
        return;
    }
    let root_ok = if cache.valid && cache.generation == root {
        true
    } else {
        read_root(state, cache)
    };
    let whiteouts_ok = if cache.valid && cache.whiteouts_generation == whiteouts {
        true
    } else {
        read_whiteouts(state, cache)
    };
    cache.valid = root_ok && whiteouts_ok;
    cache.generation = root;
    cache.whiteouts_generation = whiteouts;
}

/// Reads `upper.whiteouts` into the cache; false when it cannot be read
/// (nothing is cached then, and every lookup checks the disk).
fn read_whiteouts(state: &State, cache: &mut Cache) -> bool {
    // SAFETY: malloc'd blocks of an earlier read, or null.
    unsafe {
        sys::free(cache.text.cast());
        sys::free(cache.lines.cast());
    }
    cache.text = core::ptr::null_mut();
    cache.lines = core::ptr::null_mut();
    cache.count = 0;
    let Some((text, len)) = read_file(&whiteouts_path(state)) else {
        return false;
    };
    cache.text = text;
    if len == 0 {
        return true;
    }
    // SAFETY: text holds len bytes.
    let bytes = unsafe { core::slice::from_raw_parts(text, len) };
    let count = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    // SAFETY: a plain allocation.
    let lines = unsafe { sys::malloc(count * core::mem::size_of::<Line>()) }.cast::<Line>();
    if lines.is_null() {
        return false;
    }
    let mut n = 0;
    let mut start = 0;
    for line in bytes.split(|&b| b == b'\n') {
        let here = start;
        start += line.len() + 1;
        let Some((path, opaque)) = upper_files::whiteout(line) else {
            continue;
        };
        // SAFETY: n < count.
        unsafe {
            lines.add(n).write(Line {
                start: here + 2,
                len: path.len(),
                opaque,
            })
        };
        n += 1;
    }
    cache.lines = lines;
    cache.count = n;
    sort_lines(cache);
    true
}

/// Sorts the lines by path, for binary search; insertion sort, as whiteout
/// lists are short and mostly written in order.
fn sort_lines(cache: &mut Cache) {
    let text = cache.text;
    let path = |line: &Line| {
        // SAFETY: within the text read.
        unsafe { core::slice::from_raw_parts(text.add(line.start), line.len) }
    };
    // SAFETY: count lines were written.
    let lines = unsafe { core::slice::from_raw_parts_mut(cache.lines, cache.count) };
    for i in 1..lines.len() {
        let mut j = i;
        while j > 0 && path(&lines[j - 1]) > path(&lines[j]) {
            lines.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// What the whiteouts say of `key`: None, or Some(opaque).
fn whiteout_of(cache: &Cache, key: &[u8]) -> Option<bool> {
    if cache.count == 0 {
        return None;
    }
    // SAFETY: count lines over the text read.
    let lines = unsafe { core::slice::from_raw_parts(cache.lines, cache.count) };
    let path = |line: &Line| {
        // SAFETY: within the text read.
        unsafe { core::slice::from_raw_parts(cache.text.add(line.start), line.len) }
    };
    let (mut low, mut high) = (0, lines.len());
    while low < high {
        let middle = (low + high) / 2;
        match path(&lines[middle]).cmp(key) {
            core::cmp::Ordering::Less => low = middle + 1,
            core::cmp::Ordering::Greater => high = middle,
            core::cmp::Ordering::Equal => return Some(lines[middle].opaque),
        }
    }
    None
}

fn whiteouts<T>(state: &State, none: T, f: impl FnOnce(&Cache) -> T) -> T {
    let Some(counter) = counter(state) else {
        return none;
    };
    let now = generations(counter);
    locked(|cache| {
        refresh(state, cache, now);
        if cache.count == 0 { none } else { f(cache) }
    })
}

/// Whether a directory above `key` was deleted or replaced.
fn above(cache: &Cache, key: &[u8]) -> bool {
    key.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .any(|(i, _)| whiteout_of(cache, &key[..i]).is_some())
}

/// Whether the container deleted image path `key` (`usr/bin/x`): a
/// whiteout on it or above it, or an opaque directory above it.
pub fn hides(state: &State, key: &[u8]) -> bool {
    whiteouts(state, false, |cache| {
        above(cache, key) || whiteout_of(cache, key) == Some(false)
    })
}

/// Whether none of the image's entries below directory `key` show.
pub fn hides_below(state: &State, key: &[u8]) -> bool {
    !key.is_empty()
        && whiteouts(state, false, |cache| {
            above(cache, key) || whiteout_of(cache, key).is_some()
        })
}

pub fn whiteouts_path(state: &State) -> Buf {
    let mut path = Buf::from(state.upper).unwrap_or_else(|_| Buf::new());
    let _ = path.push(upper_files::WHITEOUTS);
    path
}

/// A whole small file, malloc'd (with its length); a missing file is empty.
fn read_file(path: &Buf) -> Option<(*mut u8, usize)> {
    let fd = match sys::openat(sys::AT_FDCWD, path.c(), sys::O_CLOEXEC, 0) {
        Ok(fd) => fd as i32,
        // SAFETY: a plain allocation.
        Err(sys::ENOENT) => return Some((unsafe { sys::malloc(1) }.cast(), 0)),
        Err(_) => return None,
    };
    let mut st = [0u64; 18];
    let size = sys::fstat(fd, st.as_mut_ptr().cast()).map(|_| st[6] as usize);
    let result = size.ok().and_then(|size| {
        // SAFETY: a plain allocation.
        let buf = unsafe { sys::malloc(size + 1) }.cast::<u8>();
        if buf.is_null() {
            return None;
        }
        let mut got = 0;
        while got < size {
            // SAFETY: buf holds size bytes.
            let at = unsafe { buf.add(got) };
            match sys::pread(fd, at, size - got, got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        Some((buf, got))
    });
    let _ = sys::close(fd);
    result
}

/// Records (kind `W` or `O`) or, with None, forgets the whiteout of `key`,
/// under the container's lock, and tells every process.
pub fn set_whiteout(state: &State, key: &[u8], kind: Option<u8>) -> Result<(), i32> {
    let mut lock_path = Buf::from(state.upper)?;
    lock_path.push(upper_files::COUNTERS)?;
    let lock = sys::openat(
        sys::AT_FDCWD,
        lock_path.c(),
        sys::O_RDWR | sys::O_CREAT | sys::O_CLOEXEC,
        0o644,
    )? as i32;
    let _ = sys::lock_whole(lock, true);
    let change = Change::begin(state);
    let result = rewrite_whiteouts(state, key, kind);
    bump(state, WHITEOUTS);
    drop(change);
    let _ = sys::close(lock);
    result
}

/// A change to what every process caches (the root's names, the
/// whiteouts) in progress: from before the change is made until after its
/// counter is bumped (see `Counter::Busy`).
pub struct Change(Option<&'static Counters>);

impl Change {
    pub fn begin(state: &State) -> Change {
        let counter = counter(state);
        if let Some(counter) = counter {
            counter[BUSY].fetch_add(1, Ordering::SeqCst);
        }
        Change(counter)
    }
}

impl Drop for Change {
    fn drop(&mut self) {
        if let Some(counter) = self.0 {
            counter[BUSY].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Whether `key` has a whiteout line of its own.
pub fn has_whiteout(state: &State, key: &[u8]) -> bool {
    whiteouts(state, false, |cache| whiteout_of(cache, key).is_some())
}

fn rewrite_whiteouts(state: &State, key: &[u8], kind: Option<u8>) -> Result<(), i32> {
    let path = whiteouts_path(state);
    let (text, len) = read_file(&path).ok_or(sys::EIO)?;
    // SAFETY: text holds len bytes.
    let old = unsafe { core::slice::from_raw_parts(text, len) };
    let mut temp = Buf::from(path.as_bytes())?;
    temp.push(b".new")?;
    let fd = sys::openat(
        sys::AT_FDCWD,
        temp.c(),
        sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC | sys::O_CLOEXEC,
        0o644,
    );
    let result = fd.and_then(|fd| {
        let fd = fd as i32;
        let mut written = Ok(());
        for line in old.split(|&b| b == b'\n').filter(|l| l.len() > 2) {
            if &line[2..] != key {
                written = written.and(write_all(fd, line)).and(write_all(fd, b"\n"));
            }
        }
        if let Some(kind) = kind {
            written = written
                .and(write_all(fd, &[kind, b' ']))
                .and(write_all(fd, key))
                .and(write_all(fd, b"\n"));
        }
        let _ = sys::close(fd);
        written?;
        sys::rename(temp.c(), path.c()).map(|_| ())
    });
    // SAFETY: from read_file.
    unsafe { sys::free(text.cast()) };
    result
}

fn write_all(fd: i32, mut bytes: &[u8]) -> Result<(), i32> {
    while !bytes.is_empty() {
        let n = sys::write(fd, bytes.as_ptr(), bytes.len())?;
        bytes = &bytes[n..];
    }
    Ok(())
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

fn bump(state: &State, which: usize) {
    if let Some(counter) = counter(state) {
        counter[which].fetch_add(1, Ordering::AcqRel);
    }
}

/// Tells every process of the container that the writable layer's root
/// changed (a name appeared or went).
pub fn changed(state: &State) {
    bump(state, ROOT);
}

/// After creating or removing canonical `canon` in the writable layer:
/// only a top-level name changes what the processes cache.
pub fn changed_at(state: &State, canon: &[u8]) {
    let top_level = canon.len() > 1 && !canon[1..].contains(&b'/');
    if top_level {
        changed(state);
    }
}

/// After an append to the owners log.
pub fn owners_changed(state: &State) {
    bump(state, OWNERS);
}

/// Reads the cache now, if it is stale: called before `fork`, so that a
/// child (a shell's command, about to exec) finds it ready instead of
/// reading the writable layer again.
pub fn warm(state: &State) {
    if !state.active {
        return;
    }
    let Some(counter) = counter(state) else {
        return;
    };
    let now = generations(counter);
    locked(|cache| refresh(state, cache, now));
}

/// The owners log's change counter now (None: not shared, check always).
pub fn generation(state: &State) -> Option<u64> {
    counter(state).map(|c| c[OWNERS].load(Ordering::Acquire))
}

/// After a directory of the writable layer was removed or renamed.
pub fn dirs_changed(state: &State) {
    bump(state, DIRS);
}

// Directories known to exist in the writable layer (real directories, not
// symlinks), by two 64-bit hashes of their container path: looking a path
// up then costs no lstat for the directories above it. Directories only
// go away through rmdir and rename, which bump DIRS: each entry holds
// under the DIRS count read before the lstat that found it (`tagged`).
const KNOWN: usize = 4096;
static KNOWN_DIRS: [AtomicU64; 2 * KNOWN] = [const { AtomicU64::new(0) }; 2 * KNOWN];

fn hashes(path: &[u8]) -> (u64, u64) {
    let (a, b) = crate::buf::hashes(path);
    (a | 1, b)
}

/// A remembered entry's second word: the path's second hash tagged with
/// the counter it holds under: an entry of an older count matches no
/// lookup, with no clearing (a torn slot matches none either, `Slot`).
fn tagged(b: u64, generation: u64) -> u64 {
    b ^ generation
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The DIRS counter now, read before looking a directory up (None: not
/// shared, nothing is remembered).
pub fn dirs_known_generation(state: &State) -> Option<u64> {
    counter(state).map(|c| c[DIRS].load(Ordering::Acquire))
}

/// What the caches know of directory `path` in the writable layer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KnownDir {
    There,
    Missing,
    Unknown,
}

/// `known_dir` and `known_missing` with the path hashed once.
pub fn known(state: &State, path: &[u8]) -> KnownDir {
    let hashes = hashes(path);
    if known_dir_hashed(state, hashes) {
        KnownDir::There
    } else if known_missing_hashed(state, hashes) {
        KnownDir::Missing
    } else {
        KnownDir::Unknown
    }
}

/// Whether canonical `path` is known to be a directory of the writable layer.
pub fn known_dir(state: &State, path: &[u8]) -> bool {
    known_dir_hashed(state, hashes(path))
}

fn known_dir_hashed(state: &State, (a, b): (u64, u64)) -> bool {
    let Some(now) = dirs_known_generation(state) else {
        return false;
    };
    known_slot(a).second(a) == Some(tagged(b, now))
}

fn known_slot(a: u64) -> Slot<'static> {
    Slot(&KNOWN_DIRS[2 * (a as usize % KNOWN)..][..2])
}

/// Remembers that canonical `path` is a directory of the writable layer
/// (or a bind's), found so after the DIRS counter read `generation`.
pub fn remember_dir(path: &[u8], generation: Option<u64>) {
    let Some(generation) = generation else {
        return;
    };
    let (a, b) = hashes(path);
    known_slot(a).fill(a, tagged(b, generation));
}

/// After a name was made in the writable layer (or may have been: every
/// creating call on a host path tells, a bind's too).
pub fn made(state: &State) {
    bump(state, MADE);
}

// Directories known to be missing from the writable layer, by the same
// hashes, each with the `Made` counter read before the lstat that found
// it missing: valid while no name was made since. So a path below an
// image directory the writable layer lacks (`/usr/share/...` after a
// write to `/usr/local`) costs no lstat there.
const MISSING: usize = 1024;
static MISSING_DIRS: [AtomicU64; 2 * MISSING] = [const { AtomicU64::new(0) }; 2 * MISSING];

/// The `Made` counter now, read before looking a directory up (None: not
/// shared, nothing is remembered).
pub fn made_generation(state: &State) -> Option<u64> {
    counter(state).map(|c| c[MADE].load(Ordering::Acquire))
}

/// Whether canonical directory `path` is known to be missing from the
/// writable layer (and so, all below it).
pub fn known_missing(state: &State, path: &[u8]) -> bool {
    known_missing_hashed(state, hashes(path))
}

fn known_missing_hashed(state: &State, (a, b): (u64, u64)) -> bool {
    let Some(now) = made_generation(state) else {
        return false;
    };
    missing_slot(a).second(a) == Some(tagged(b, now))
}

fn missing_slot(a: u64) -> Slot<'static> {
    Slot(&MISSING_DIRS[2 * (a as usize % MISSING)..][..2])
}

/// Remembers that `path` was missing from the writable layer when the
/// `Made` counter read `generation`.
pub fn remember_missing(path: &[u8], generation: Option<u64>) {
    let Some(generation) = generation else {
        return;
    };
    let (a, b) = hashes(path);
    missing_slot(a).fill(a, tagged(b, generation));
}

/// The counter of removed and renamed directories (0 when not shared).
pub fn dirs_generation(state: &State) -> u64 {
    counter(state).map_or(0, |c| c[DIRS].load(Ordering::Acquire))
}
