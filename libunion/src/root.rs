//! Fake root (`lpmx-exec --root`): what root could do to owners, modes and
//! device nodes is recorded instead of done, persistently, so later
//! programs see it too; `stat` reports what is recorded.
//!
//! - Records: `upper.owners` beside `upper/` is an append-only log, a line
//!   per change: `INO UID GID MODE RDEV` for a file of the writable layer
//!   (by inode, so renames and hard links keep it; MODE is the whole
//!   `st_mode`, type included, or 0 for the file's own), `INO -` when the
//!   file is gone. The image's files report what the index records (the
//!   owners, modes and devices lpmx-unpack saw in the image). Files of the
//!   writable layer without a record report their own mode, and the real
//!   user as root.
//! - Modes on disk: the real user must be able to read and write every file
//!   (and search every directory) for fake root to, so a mode that would
//!   deny its owner is recorded and the disk keeps the owner's bits
//!   (`disk_mode`).
//! - Identities are `ids`'s; access checks `perm`'s.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::buf::Buf;
use crate::lock::SpinLock;
use crate::perm::Meta;
use crate::place::Place;
use crate::state::{self, State};
use crate::sys;

pub fn active() -> bool {
    state::get().root
}

/// What a file's `stat` says under fake root.
#[derive(Clone, Copy, Debug)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    /// The whole `st_mode`, type included.
    pub mode: u32,
    pub rdev: u64,
}

impl Attrs {
    pub fn meta(&self) -> Meta {
        Meta {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
        }
    }
}

/// The mode a file of the writable layer keeps on disk for virtual mode
/// `mode`: its owner (the real user) may read and write it, search it if
/// it is a directory and execute it if anyone may; the special bits stay
/// in the record only.
pub fn disk_mode(mode: u32) -> u32 {
    let perms = mode & 0o777;
    if mode & sys::S_IFMT == sys::S_IFDIR || perms & 0o111 != 0 {
        perms | 0o700
    } else {
        perms | 0o600
    }
}

// The real ids never change under fake root (set*id is emulated).
static REAL_IDS: [AtomicU32; 2] = [AtomicU32::new(u32::MAX), AtomicU32::new(u32::MAX)];

fn real_id(slot: usize, get: fn() -> u32) -> u32 {
    let id = REAL_IDS[slot].load(Ordering::Relaxed);
    if id != u32::MAX {
        return id;
    }
    let id = get();
    REAL_IDS[slot].store(id, Ordering::Relaxed);
    id
}

pub fn real_uid() -> u32 {
    real_id(0, sys::getuid_raw)
}

pub fn real_gid() -> u32 {
    real_id(1, sys::getgid_raw)
}

/// The writable layer's device: only its inodes have records.
static UPPER_DEV: AtomicU64 = AtomicU64::new(u64::MAX);

fn upper_dev(state: &State) -> u64 {
    let dev = UPPER_DEV.load(Ordering::Relaxed);
    if dev != u64::MAX {
        return dev;
    }
    let mut st = [0u64; 18];
    let dev = Buf::from(state.upper)
        .ok()
        .and_then(|upper| crate::host::lstat(&upper, &mut st).ok())
        .map_or(u64::MAX - 1, |_| st[0]);
    UPPER_DEV.store(dev, Ordering::Relaxed);
    dev
}

// --- The log ------------------------------------------------------------

#[derive(Clone, Copy)]
struct Owner {
    ino: u64,
    uid: u32,
    gid: u32,
    /// The whole st_mode; 0: keep the file's own.
    mode: u32,
    rdev: u64,
}

struct Owners {
    records: *mut Owner,
    count: usize,
    capacity: usize,
    /// How much of the log has been read.
    read: u64,
    /// The container's change counter when it was read: every record
    /// bumps it, so an unchanged counter means nothing new to read.
    generation: Option<u64>,
}

static OWNERS: SpinLock<Owners> = SpinLock::new(Owners {
    records: core::ptr::null_mut(),
    count: 0,
    capacity: 0,
    read: 0,
    generation: None,
});

fn log_path(state: &State) -> Result<Buf, i32> {
    let mut path = Buf::from(state.upper)?;
    path.push(lpmx_union::upper::OWNERS)?;
    Ok(path)
}

impl Owners {
    fn slice(&self) -> &[Owner] {
        if self.records.is_null() {
            return &[];
        }
        // SAFETY: count records are initialised.
        unsafe { core::slice::from_raw_parts(self.records, self.count) }
    }

    fn find(&self, ino: u64) -> Result<usize, usize> {
        self.slice().binary_search_by(|o| o.ino.cmp(&ino))
    }

    fn put(&mut self, owner: Owner, gone: bool) {
        match (self.find(owner.ino), gone) {
            (Ok(i), false) => {
                // SAFETY: i < count.
                unsafe { *self.records.add(i) = owner };
            }
            (Ok(i), true) => {
                // SAFETY: moving the records after i one down.
                unsafe {
                    core::ptr::copy(
                        self.records.add(i + 1),
                        self.records.add(i),
                        self.count - i - 1,
                    )
                };
                self.count -= 1;
            }
            (Err(_), true) => {}
            (Err(i), false) => {
                if self.count == self.capacity {
                    let capacity = (self.capacity * 2).max(256);
                    // SAFETY: records is null or malloc'd.
                    let grown = unsafe {
                        sys::realloc(
                            self.records.cast(),
                            capacity * core::mem::size_of::<Owner>(),
                        )
                    };
                    if grown.is_null() {
                        return;
                    }
                    self.records = grown.cast();
                    self.capacity = capacity;
                }
                // SAFETY: room for one more; records from i move up.
                unsafe {
                    core::ptr::copy(self.records.add(i), self.records.add(i + 1), self.count - i);
                    *self.records.add(i) = owner;
                }
                self.count += 1;
            }
        }
    }

    /// Reads what the log gained since the last time.
    fn refresh(&mut self, state: &State) {
        let now = crate::upper::generation(state);
        if now.is_some() && now == self.generation {
            return;
        }
        self.generation = now;
        let Ok(path) = log_path(state) else {
            return;
        };
        let Ok(fd) = sys::openat(sys::AT_FDCWD, path.c(), sys::O_CLOEXEC, 0) else {
            return;
        };
        let fd = fd as i32;
        let mut st = [0u64; 18];
        let size = sys::fstat(fd, st.as_mut_ptr().cast())
            .map(|_| st[6])
            .unwrap_or(0);
        if size < self.read {
            self.count = 0;
            self.read = 0;
        }
        let mut chunk = [0u8; 8192];
        let mut pending = 0usize;
        while self.read + (pending as u64) < size {
            let Ok(n) = sys::pread(
                fd,
                chunk[pending..].as_mut_ptr(),
                chunk.len() - pending,
                self.read + pending as u64,
            ) else {
                break;
            };
            if n == 0 {
                break;
            }
            let filled = pending + n;
            let mut start = 0;
            while let Some(end) = chunk[start..filled].iter().position(|&b| b == b'\n') {
                self.apply(&chunk[start..start + end]);
                start += end + 1;
            }
            self.read += start as u64;
            chunk.copy_within(start..filled, 0);
            pending = filled - start;
            if pending == chunk.len() {
                break;
            }
        }
        let _ = sys::close(fd);
    }

    fn apply(&mut self, line: &[u8]) {
        let Some((ino, record)) = lpmx_union::upper::owner(line) else {
            return;
        };
        let r = record.unwrap_or(lpmx_union::upper::Owner {
            uid: 0,
            gid: 0,
            mode: 0,
            rdev: 0,
        });
        let owner = Owner {
            ino,
            uid: r.uid,
            gid: r.gid,
            mode: r.mode,
            rdev: r.rdev,
        };
        self.put(owner, record.is_none());
    }
}

fn recorded(state: &State, ino: u64) -> Option<Owner> {
    OWNERS.with(|owners| {
        owners.refresh(state);
        owners.find(ino).ok().map(|i| owners.slice()[i])
    })
}

/// Appends a line to the log and tells every process.
fn append(state: &State, line: &[u8]) {
    let Ok(path) = log_path(state) else {
        return;
    };
    if let Ok(fd) = sys::openat(
        sys::AT_FDCWD,
        path.c(),
        sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND | sys::O_CLOEXEC,
        0o644,
    ) {
        let _ = sys::write(fd as i32, line.as_ptr(), line.len());
        let _ = sys::close(fd as i32);
    }
    crate::upper::owners_changed(state);
}

/// Records what `stat` is to say of the writable layer's inode `ino`.
pub fn record_ino(state: &State, ino: u64, attrs: Attrs) {
    let record = lpmx_union::upper::Owner {
        uid: attrs.uid,
        gid: attrs.gid,
        mode: attrs.mode,
        rdev: attrs.rdev,
    };
    let mut line = [0u8; lpmx_union::upper::OWNER_LINE];
    append(
        state,
        lpmx_union::upper::owner_line(ino, Some(&record), &mut line),
    );
}

/// Before the last name of the writable layer's file `host` goes: its
/// record goes too (the inode number may be reused).
pub fn forget(host: &Buf) {
    let state = state::get();
    let mut st = [0u64; 18];
    if crate::host::lstat(host, &mut st).is_err() {
        return;
    }
    let is_dir = (st[3] as u32) & sys::S_IFMT == sys::S_IFDIR;
    if (st[2] <= 1 || is_dir) && recorded(state, st[1]).is_some() {
        let mut line = [0u8; lpmx_union::upper::OWNER_LINE];
        append(state, lpmx_union::upper::owner_line(st[1], None, &mut line));
    }
}

// --- What stat says -------------------------------------------------------

/// The device number the index stores (major << 20 | minor) as st_rdev.
fn rdev_of(device: u32) -> u64 {
    let (major, minor) = (u64::from(device >> 20), u64::from(device & 0xfffff));
    (major << 8) | (minor & 0xff) | ((minor & !0xff) << 12)
}

/// The attributes fake root sees for a file whose `lstat` is `st`:
/// `image` is its image path (`usr/bin/x`) when it is a file of the
/// image's layers.
pub fn attrs(st: &[u64; 18], image: Option<&[u8]>) -> Attrs {
    let state = state::get();
    let mode = (st[3] & 0xffff_ffff) as u32;
    let (uid, gid) = ((st[3] >> 32) as u32, st[4] as u32);
    if let (Some(key), Some(index)) = (image, state.index)
        && let Some(entry) = index.position(key).map(|i| index.entry(i))
    {
        return Attrs {
            uid: entry.uid,
            gid: entry.gid,
            mode: entry.mode,
            rdev: if entry.device != 0 {
                rdev_of(entry.device)
            } else {
                st[5]
            },
        };
    }
    if st[0] == upper_dev(state)
        && let Some(owner) = recorded(state, st[1])
    {
        return Attrs {
            uid: owner.uid,
            gid: owner.gid,
            mode: if owner.mode != 0 { owner.mode } else { mode },
            rdev: if owner.rdev != 0 { owner.rdev } else { st[5] },
        };
    }
    Attrs {
        uid: if uid == real_uid() { 0 } else { uid },
        gid: if gid == real_gid() { 0 } else { gid },
        mode,
        rdev: st[5],
    }
}

/// Records `new` for the writable layer's file whose `lstat` is `st`,
/// unless that is what `stat` says already.
pub fn update(st: &[u64; 18], new: Attrs) {
    let current = attrs(st, None);
    let same = current.uid == new.uid
        && current.gid == new.gid
        && current.mode == new.mode
        && current.rdev == new.rdev;
    if !same {
        record_ino(state::get(), st[1], new);
    }
}

/// What the container records of a file found at `place` (`key` its
/// image path): for the permission checks.
pub fn meta(
    state: &State,
    place: Place,
    key: &[u8],
    stat: Option<&[u64; 18]>,
    host: &Buf,
) -> Result<Meta, i32> {
    if let (Place::Lower(_), Some(index)) = (place, state.index)
        && let Some(entry) = index.position(key).map(|i| index.entry(i))
    {
        return Ok(Meta {
            uid: entry.uid,
            gid: entry.gid,
            mode: entry.mode,
        });
    }
    if place == Place::Missing {
        return Err(sys::ENOENT);
    }
    let mut st = [0u64; 18];
    match stat {
        Some(given) => st = *given,
        None => {
            crate::host::lstat(host, &mut st)?;
        }
    }
    if place == Place::Bind {
        return Ok(bind_meta(&st));
    }
    Ok(attrs(&st, None).meta())
}

/// What fake root's checks see of a bind's file, whose stat is `st`: a
/// host file, of which no record says who made it; the kernel lets the
/// real user, its owner, do what an owner may. So may every fake identity
/// (apt's `_apt` removing the files it made in /tmp).
pub fn bind_meta(st: &[u64; 18]) -> Meta {
    let ids = crate::ids::get();
    let (uid, gid) = ((st[3] >> 32) as u32, st[4] as u32);
    Meta {
        uid: if uid == real_uid() {
            ids.uid[crate::ids::FS]
        } else {
            uid
        },
        gid: if gid == real_gid() {
            ids.gid[crate::ids::FS]
        } else {
            gid
        },
        mode: (st[3] & 0xffff_ffff) as u32,
    }
}

/// Rewrites a `struct stat` as fake root sees it (`image`: see `attrs`).
///
/// Layout (x86_64): st_mode u32 at 24, st_uid u32 at 28, st_gid u32 at 32,
/// st_rdev u64 at 40.
pub fn adjust_stat(buf: *mut c_void, image: Option<&[u8]>) {
    let mut st = [0u64; 18];
    // SAFETY: a struct stat the kernel just filled (144 bytes).
    unsafe { core::ptr::copy_nonoverlapping(buf.cast::<u64>(), st.as_mut_ptr(), 18) };
    let a = attrs(&st, image);
    let p = buf.cast::<u8>();
    // SAFETY: as above.
    unsafe {
        p.add(24).cast::<u32>().write_unaligned(a.mode);
        p.add(28).cast::<u32>().write_unaligned(a.uid);
        p.add(32).cast::<u32>().write_unaligned(a.gid);
        p.add(40).cast::<u64>().write_unaligned(a.rdev);
    }
}

fn image_key(place: Place, canon: &[u8]) -> Option<&[u8]> {
    matches!(place, Place::Lower(_)).then(|| canon.get(1..).unwrap_or(b""))
}

/// Fixes a stat result for a resolved path in fake-root mode.
pub fn adjust_found(buf: *mut c_void, place: Place, canon: &[u8]) {
    if active() {
        adjust_stat(buf, image_key(place, canon));
    }
}

/// Fixes a `struct statx` as `adjust_found` does a `struct stat`.
pub fn adjust_statx(buf: *mut c_void, place: Place, canon: &[u8]) {
    adjust_statx_as(buf, image_key(place, canon));
}

/// Fixes a `struct statx` through a `struct stat` of the same file.
pub fn adjust_statx_as(buf: *mut c_void, image: Option<&[u8]>) {
    let sx = buf.cast::<u8>();
    let mut st = [0u64; 18];
    // SAFETY: a struct statx the kernel filled.
    unsafe {
        let major = u64::from(sx.add(128).cast::<u32>().read_unaligned());
        let minor = u64::from(sx.add(132).cast::<u32>().read_unaligned());
        let dev_major = u64::from(sx.add(136).cast::<u32>().read_unaligned());
        let dev_minor = u64::from(sx.add(140).cast::<u32>().read_unaligned());
        st[0] = (dev_major << 8) | (dev_minor & 0xff) | ((dev_minor & !0xff) << 12);
        st[1] = sx.add(32).cast::<u64>().read_unaligned();
        let mode = u64::from(sx.add(28).cast::<u16>().read_unaligned());
        let uid = u64::from(sx.add(20).cast::<u32>().read_unaligned());
        st[3] = mode | (uid << 32);
        st[4] = u64::from(sx.add(24).cast::<u32>().read_unaligned());
        st[5] = (major << 8) | (minor & 0xff) | ((minor & !0xff) << 12);
    }
    let a = attrs(&st, image);
    // SAFETY: as above.
    unsafe {
        sx.add(20).cast::<u32>().write_unaligned(a.uid);
        sx.add(24).cast::<u32>().write_unaligned(a.gid);
        sx.add(28).cast::<u16>().write_unaligned(a.mode as u16);
        sx.add(128)
            .cast::<u32>()
            .write_unaligned(((a.rdev >> 8) & 0xfff) as u32);
        sx.add(132)
            .cast::<u32>()
            .write_unaligned(((a.rdev & 0xff) | ((a.rdev >> 12) & !0xff)) as u32);
    }
}

/// Whether a `stat` result is of the writable layer's device (only its
/// inodes have records).
pub fn on_upper(st: &[u64; 18]) -> bool {
    st[0] == upper_dev(state::get())
}

/// A file of the image copied up keeps what the image records: owner,
/// group and (when the disk cannot hold it) its mode.
pub fn inherit(host: &Buf, canon: &[u8]) {
    let state = state::get();
    let Some(index) = state.index else {
        return;
    };
    let Some(entry) = index
        .position(canon.get(1..).unwrap_or(b""))
        .map(|i| index.entry(i))
    else {
        return;
    };
    let mut st = [0u64; 18];
    if crate::host::lstat(host, &mut st).is_err() {
        return;
    }
    let disk = (st[3] & 0xffff_ffff) as u32;
    let default_owner = entry.uid == 0 && entry.gid == 0;
    if default_owner && disk == entry.mode && entry.device == 0 {
        return;
    }
    record_ino(
        state,
        st[1],
        Attrs {
            uid: entry.uid,
            gid: entry.gid,
            mode: entry.mode,
            rdev: if entry.device != 0 {
                rdev_of(entry.device)
            } else {
                0
            },
        },
    );
}
