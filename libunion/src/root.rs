//! Fake root (`lpmx-exec --root`): the program sees itself as root, and
//! what root could do to owners and device nodes is recorded instead of
//! done, persistently, so later programs see it too.
//!
//! - Identities: the real, effective and saved user and group ids are kept
//!   in memory (all 0 at first), changed by the `set*id` family with the
//!   kernel's rules, and passed on to exec'd programs in `LPMX_IDS`.
//! - Owners: `upper.owners` beside `upper/` is an append-only log, a line
//!   per change: `INO UID GID MODE RDEV` for a file of the writable layer
//!   (by inode, so renames and hard links keep it), `INO -` when the file
//!   is gone. The image's files report what the index records (the owners,
//!   modes and devices lpmx-unpack saw in the image). Anything else owned
//!   by the real user reports root.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::buf::{Buf, cstr};
use crate::fs::export;
use crate::lock::SpinLock;
use crate::resolve::Place;
use crate::state::{self, State};
use crate::sys::{self, c_ret, real};

/// ruid, euid, suid, rgid, egid, sgid.
static IDS: [AtomicU32; 6] = [const { AtomicU32::new(0) }; 6];
static IDS_READY: AtomicU8 = AtomicU8::new(0);

pub fn active() -> bool {
    state::get().root
}

fn ids() -> &'static [AtomicU32; 6] {
    if IDS_READY.load(Ordering::Acquire) == 0 {
        // SAFETY: a NUL-terminated name; the value is read at once.
        let given = unsafe { cstr(sys::getenv(c"LPMX_IDS".as_ptr())) };
        for (slot, value) in IDS.iter().zip(given.split(|&b| b == b',')) {
            slot.store(parse(value), Ordering::Relaxed);
        }
        IDS_READY.store(1, Ordering::Release);
    }
    &IDS
}

fn parse(digits: &[u8]) -> u32 {
    digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u32, |n, b| {
            n.wrapping_mul(10).wrapping_add(u32::from(b - b'0'))
        })
}

/// `LPMX_IDS=r,e,s,r,e,s` for an exec, into `out`.
pub fn ids_var(out: &mut Buf) -> Result<(), i32> {
    out.set(b"LPMX_IDS=")?;
    for (i, id) in ids().iter().enumerate() {
        if i > 0 {
            out.push(b",")?;
        }
        let mut digits = [0u8; 12];
        out.push(state::format_int(
            i64::from(id.load(Ordering::Relaxed)),
            &mut digits,
        ))?;
    }
    Ok(())
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

fn real_uid() -> u32 {
    real_id(0, sys::getuid_raw)
}

fn real_gid() -> u32 {
    real_id(1, sys::getgid_raw)
}

/// Sets ids `at..at + 3` (real, effective, saved) by the kernel's rules
/// for `set*res*id`: root may set anything, others only values they hold.
fn set_ids(at: usize, wanted: [u32; 3]) -> c_int {
    let ids = ids();
    let privileged = ids[1].load(Ordering::Relaxed) == 0;
    let held = [
        ids[at].load(Ordering::Relaxed),
        ids[at + 1].load(Ordering::Relaxed),
        ids[at + 2].load(Ordering::Relaxed),
    ];
    for id in wanted {
        if id != u32::MAX && !privileged && !held.contains(&id) {
            return c_ret(Err(sys::EPERM));
        }
    }
    for (i, id) in wanted.into_iter().enumerate() {
        if id != u32::MAX {
            ids[at + i].store(id, Ordering::Relaxed);
        }
    }
    0
}

type SetId1 = unsafe extern "C" fn(u32) -> c_int;
type SetId2 = unsafe extern "C" fn(u32, u32) -> c_int;
type SetId3 = unsafe extern "C" fn(u32, u32, u32) -> c_int;
type SetGroups = unsafe extern "C" fn(usize, *const u32) -> c_int;
type InitGroups = unsafe extern "C" fn(*const c_void, u32) -> c_int;

/// setreuid(2): setting the real id, or an effective id other than the
/// real one, also sets the saved id to the new effective one.
fn saved_after_setre(at: usize, r: u32, e: u32) -> u32 {
    let real = ids()[at].load(Ordering::Relaxed);
    let effective = if e == u32::MAX {
        ids()[at + 1].load(Ordering::Relaxed)
    } else {
        e
    };
    if r != u32::MAX || (e != u32::MAX && e != real) {
        effective
    } else {
        u32::MAX
    }
}

macro_rules! id_or_real {
    ($index:expr, $real:expr) => {
        if active() {
            ids()[$index].load(Ordering::Relaxed)
        } else {
            $real
        }
    };
}

export! {
    #[safe]
    fn getuid() -> u32 { id_or_real!(0, real_uid()) }
    #[safe]
    fn geteuid() -> u32 { id_or_real!(1, sys::geteuid_raw()) }
    #[safe]
    fn getgid() -> u32 { id_or_real!(3, real_gid()) }
    #[safe]
    fn getegid() -> u32 { id_or_real!(4, sys::getegid_raw()) }
    fn getresuid(r: *mut u32, e: *mut u32, s: *mut u32) -> c_int {
        if !active() {
            return c_ret(sys::getresuid_raw(r, e, s));
        }
        *r = ids()[0].load(Ordering::Relaxed);
        *e = ids()[1].load(Ordering::Relaxed);
        *s = ids()[2].load(Ordering::Relaxed);
        0
    }
    fn getresgid(r: *mut u32, e: *mut u32, s: *mut u32) -> c_int {
        if !active() {
            return c_ret(sys::getresgid_raw(r, e, s));
        }
        *r = ids()[3].load(Ordering::Relaxed);
        *e = ids()[4].load(Ordering::Relaxed);
        *s = ids()[5].load(Ordering::Relaxed);
        0
    }
    fn getgroups(size: c_int, list: *mut u32) -> c_int {
        if !active() {
            return c_ret(sys::getgroups_raw(size, list));
        }
        if size > 0 {
            *list = ids()[4].load(Ordering::Relaxed);
        }
        1
    }
    fn setuid(id: u32) -> c_int {
        if !active() {
            return real!("setuid": SetId1).map_or(-1, |f| f(id));
        }
        if ids()[1].load(Ordering::Relaxed) == 0 { set_ids(0, [id, id, id]) } else { set_ids(0, [u32::MAX, id, u32::MAX]) }
    }
    fn seteuid(id: u32) -> c_int {
        if !active() {
            return real!("seteuid": SetId1).map_or(-1, |f| f(id));
        }
        set_ids(0, [u32::MAX, id, u32::MAX])
    }
    fn setreuid(r: u32, e: u32) -> c_int {
        if !active() {
            return real!("setreuid": SetId2).map_or(-1, |f| f(r, e));
        }
        set_ids(0, [r, e, saved_after_setre(0, r, e)])
    }
    fn setresuid(r: u32, e: u32, s: u32) -> c_int {
        if !active() {
            return real!("setresuid": SetId3).map_or(-1, |f| f(r, e, s));
        }
        set_ids(0, [r, e, s])
    }
    fn setgid(id: u32) -> c_int {
        if !active() {
            return real!("setgid": SetId1).map_or(-1, |f| f(id));
        }
        if ids()[1].load(Ordering::Relaxed) == 0 { set_ids(3, [id, id, id]) } else { set_ids(3, [u32::MAX, id, u32::MAX]) }
    }
    fn setegid(id: u32) -> c_int {
        if !active() {
            return real!("setegid": SetId1).map_or(-1, |f| f(id));
        }
        set_ids(3, [u32::MAX, id, u32::MAX])
    }
    fn setregid(r: u32, e: u32) -> c_int {
        if !active() {
            return real!("setregid": SetId2).map_or(-1, |f| f(r, e));
        }
        set_ids(3, [r, e, saved_after_setre(3, r, e)])
    }
    fn setresgid(r: u32, e: u32, s: u32) -> c_int {
        if !active() {
            return real!("setresgid": SetId3).map_or(-1, |f| f(r, e, s));
        }
        set_ids(3, [r, e, s])
    }
    fn setgroups(size: usize, list: *const u32) -> c_int {
        if !active() {
            return real!("setgroups": SetGroups).map_or(-1, |f| f(size, list));
        }
        if ids()[1].load(Ordering::Relaxed) == 0 { 0 } else { c_ret(Err(sys::EPERM)) }
    }
    fn initgroups(user: *const c_void, group: u32) -> c_int {
        if !active() {
            return real!("initgroups": InitGroups).map_or(-1, |f| f(user, group));
        }
        if ids()[1].load(Ordering::Relaxed) == 0 { 0 } else { c_ret(Err(sys::EPERM)) }
    }
}

// --- Owners of the writable layer's files ------------------------------

#[derive(Clone, Copy)]
struct Owner {
    ino: u64,
    uid: u32,
    gid: u32,
    /// Type and permission bits; 0: keep the file's own.
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

fn locked<T>(f: impl FnOnce(&mut Owners) -> T) -> T {
    OWNERS.with(f)
}

fn log_path(state: &State) -> Result<Buf, i32> {
    let mut path = Buf::from(state.upper)?;
    path.push(b".owners")?;
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
        let mut fields = line.split(|&b| b == b' ');
        let ino = u64::from(parse(fields.next().unwrap_or(b"")));
        let ino = if ino == 0 { return } else { ino };
        let rest: [&[u8]; 4] = core::array::from_fn(|_| fields.next().unwrap_or(b""));
        if rest[0] == b"-" {
            self.put(
                Owner {
                    ino,
                    uid: 0,
                    gid: 0,
                    mode: 0,
                    rdev: 0,
                },
                true,
            );
            return;
        }
        let owner = Owner {
            ino,
            uid: parse(rest[0]),
            gid: parse(rest[1]),
            mode: parse(rest[2]),
            rdev: u64::from(parse(rest[3])),
        };
        self.put(owner, false);
    }
}

/// Appends a line to the log.
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
}

/// Records owner, group and (with `mode` not 0) type and permissions of
/// the writable layer's file `host`.
pub fn record(
    host: *const u8,
    follow: bool,
    uid: u32,
    gid: u32,
    mode: u32,
    rdev: u64,
) -> Result<(), i32> {
    let state = state::get();
    let mut st = [0u64; 18];
    let flags = if follow { 0 } else { sys::AT_SYMLINK_NOFOLLOW };
    sys::fstatat(sys::AT_FDCWD, host, st.as_mut_ptr().cast(), flags)?;
    record_ino(state, st[1], uid, gid, mode, rdev);
    Ok(())
}

fn record_ino(state: &State, ino: u64, uid: u32, gid: u32, mode: u32, rdev: u64) {
    let mut line = Buf::new();
    let mut digits = [0u8; 12];
    let mut field = |value: u64, last: bool| {
        let _ = line.push(state::format_int(value as i64, &mut digits));
        let _ = line.push(if last { b"\n" } else { b" " });
    };
    field(ino, false);
    field(u64::from(uid), false);
    field(u64::from(gid), false);
    field(u64::from(mode), false);
    field(rdev, true);
    append(state, line.as_bytes());
    crate::upper::owners_changed(state);
}

/// The current owner of an open file, for `fchown`'s "unchanged" (-1).
fn current_owner(st: &[u64; 18]) -> (u32, u32, u32, u64) {
    let mut copy = *st;
    adjust_stat(copy.as_mut_ptr().cast(), None);
    let word = copy[3];
    (
        (word >> 32) as u32,
        copy[4] as u32,
        (word & 0xffff_ffff) as u32,
        copy[5],
    )
}

/// Rewrites a `struct stat` as fake root sees it: recorded owners for the
/// writable layer's files, the index's for the image's (`image`: its
/// canonical path), root for the real user's own.
///
/// Layout (x86_64): st_mode u32 at 24, st_uid u32 at 28, st_gid u32 at 32,
/// st_rdev u64 at 40.
pub fn adjust_stat(buf: *mut c_void, image: Option<&[u8]>) {
    let state = state::get();
    let st = buf.cast::<u8>();
    // SAFETY: a struct stat the kernel just filled.
    let (ino, mode, uid, gid) = unsafe {
        (
            st.add(8).cast::<u64>().read_unaligned(),
            st.add(24).cast::<u32>().read_unaligned(),
            st.add(28).cast::<u32>().read_unaligned(),
            st.add(32).cast::<u32>().read_unaligned(),
        )
    };
    let write = |mode: u32, uid: u32, gid: u32, rdev: Option<u64>| {
        // SAFETY: as above.
        unsafe {
            st.add(24).cast::<u32>().write_unaligned(mode);
            st.add(28).cast::<u32>().write_unaligned(uid);
            st.add(32).cast::<u32>().write_unaligned(gid);
            if let Some(rdev) = rdev {
                st.add(40).cast::<u64>().write_unaligned(rdev);
            }
        }
    };
    if let (Some(key), Some(index)) = (image, state.index)
        && let Some(entry) = index.position(key).map(|i| index.full_entry(i))
    {
        let rdev = (entry.device != 0).then(|| {
            let (major, minor) = (
                u64::from(entry.device >> 20),
                u64::from(entry.device & 0xfffff),
            );
            (major << 8) | (minor & 0xff) | ((minor & !0xff) << 12)
        });
        write(entry.mode, entry.uid, entry.gid, rdev);
        return;
    }
    let recorded = locked(|owners| {
        owners.refresh(state);
        owners.find(ino).ok().map(|i| owners.slice()[i])
    });
    match recorded {
        Some(owner) => {
            let mode = if owner.mode != 0 { owner.mode } else { mode };
            write(
                mode,
                owner.uid,
                owner.gid,
                (owner.rdev != 0).then_some(owner.rdev),
            );
        }
        None => {
            let uid = if uid == real_uid() { 0 } else { uid };
            let gid = if gid == real_gid() { 0 } else { gid };
            write(mode, uid, gid, None);
        }
    }
}

/// Fixes a stat result for `found` (a resolved path) in fake-root mode.
pub fn adjust_found(buf: *mut c_void, place: Place, canon: &[u8]) {
    if !active() {
        return;
    }
    let image = matches!(place, Place::Lower(_)).then(|| canon.get(1..).unwrap_or(b""));
    adjust_stat(buf, image);
}

/// Fixes a `struct statx` as `adjust_found` does a `struct stat`.
pub fn adjust_statx(buf: *mut c_void, place: Place, canon: &[u8]) {
    let image = matches!(place, Place::Lower(_)).then(|| canon.get(1..).unwrap_or(b""));
    adjust_statx_as(buf, image);
}

/// Fixes the `struct statx` of descriptor `fd` (`AT_EMPTY_PATH`), as
/// `adjust_fd_stat` does a `struct stat`.
pub fn adjust_fd_statx(fd: i32, buf: *mut c_void) {
    with_fd_image(fd, |image| adjust_statx_as(buf, image));
}

/// Fixes a `struct statx`: `image` is the image path whose record it
/// reports, if it is a file of the image's layers.
fn adjust_statx_as(buf: *mut c_void, image: Option<&[u8]>) {
    let sx = buf.cast::<u8>();
    let mut st = [0u64; 18];
    let tmp = st.as_mut_ptr().cast::<u8>();
    // SAFETY: a struct statx the kernel filled; a struct stat of our own.
    unsafe {
        let major = u64::from(sx.add(128).cast::<u32>().read_unaligned());
        let minor = u64::from(sx.add(132).cast::<u32>().read_unaligned());
        tmp.add(8)
            .cast::<u64>()
            .write_unaligned(sx.add(32).cast::<u64>().read_unaligned());
        tmp.add(24)
            .cast::<u32>()
            .write_unaligned(u32::from(sx.add(28).cast::<u16>().read_unaligned()));
        tmp.add(28)
            .cast::<u32>()
            .write_unaligned(sx.add(20).cast::<u32>().read_unaligned());
        tmp.add(32)
            .cast::<u32>()
            .write_unaligned(sx.add(24).cast::<u32>().read_unaligned());
        tmp.add(40)
            .cast::<u64>()
            .write_unaligned((major << 8) | (minor & 0xff) | ((minor & !0xff) << 12));
    }
    adjust_stat(tmp.cast(), image);
    // SAFETY: as above.
    unsafe {
        let rdev = tmp.add(40).cast::<u64>().read_unaligned();
        sx.add(20)
            .cast::<u32>()
            .write_unaligned(tmp.add(28).cast::<u32>().read_unaligned());
        sx.add(24)
            .cast::<u32>()
            .write_unaligned(tmp.add(32).cast::<u32>().read_unaligned());
        sx.add(28)
            .cast::<u16>()
            .write_unaligned(tmp.add(24).cast::<u32>().read_unaligned() as u16);
        sx.add(128)
            .cast::<u32>()
            .write_unaligned(((rdev >> 8) & 0xfff) as u32);
        sx.add(132)
            .cast::<u32>()
            .write_unaligned(((rdev & 0xff) | ((rdev >> 12) & !0xff)) as u32);
    }
}

/// The container path of `fd` when it is a file of the image's layers (not
/// of the writable layer): its record is then the image's.
fn image_path_of(fd: i32) -> Option<Buf> {
    let state = state::get();
    let mut canon = Buf::new();
    if !state::fd_path(state, fd, &mut canon) {
        return None;
    }
    let mut resolved = Buf::new();
    let mut host = Buf::new();
    let found =
        crate::resolve::resolve(state, canon.as_bytes(), false, &mut resolved, &mut host).ok()?;
    matches!(found.place, Place::Lower(_)).then_some(resolved)
}

/// Fixes the `struct stat` of descriptor `fd` (fake root).
pub fn adjust_fd_stat(fd: i32, buf: *mut c_void) {
    with_fd_image(fd, |image| adjust_stat(buf, image));
}

/// Calls `f` with the image path (`usr/bin/x`) of descriptor `fd` when it
/// is a file of the image's layers, `None` otherwise.
fn with_fd_image<T>(fd: i32, f: impl FnOnce(Option<&[u8]>) -> T) -> T {
    let image = image_path_of(fd);
    f(image
        .as_ref()
        .map(|canon| canon.as_bytes().get(1..).unwrap_or(b"")))
}

/// A file of the image copied up keeps the owner the image records.
pub fn inherit(host: &Buf, canon: &[u8]) {
    let state = state::get();
    if !state.root {
        return;
    }
    let Some(index) = state.index else {
        return;
    };
    if let Some(entry) = index
        .position(canon.get(1..).unwrap_or(b""))
        .map(|i| index.full_entry(i))
    {
        let _ = record(host.c(), false, entry.uid, entry.gid, 0, 0);
    }
}

/// Before a file of the writable layer disappears (its last link).
pub fn forget(host: *const u8) {
    let state = state::get();
    if !state.root {
        return;
    }
    let mut st = [0u64; 18];
    if sys::fstatat(
        sys::AT_FDCWD,
        host,
        st.as_mut_ptr().cast(),
        sys::AT_SYMLINK_NOFOLLOW,
    )
    .is_ok()
        && st[2] <= 1
    {
        let mut line = Buf::new();
        let mut digits = [0u8; 12];
        let _ = line.push(state::format_int(st[1] as i64, &mut digits));
        let _ = line.push(b" -\n");
        append(state, line.as_bytes());
        crate::upper::owners_changed(state);
    }
}

/// fchown in fake-root mode: records, keeping what -1 leaves unchanged.
pub fn chown_fd(fd: i32, uid: u32, gid: u32) -> Result<(), i32> {
    let mut st = [0u64; 18];
    sys::fstat(fd, st.as_mut_ptr().cast())?;
    let (old_uid, old_gid, _, _) = current_owner(&st);
    let uid = if uid == u32::MAX { old_uid } else { uid };
    let gid = if gid == u32::MAX { old_gid } else { gid };
    record_ino(state::get(), st[1], uid, gid, 0, 0);
    Ok(())
}

/// chown of a path in fake-root mode (the writable layer's copy).
pub fn chown_host(host: &Buf, follow: bool, uid: u32, gid: u32) -> Result<(), i32> {
    let mut st = [0u64; 18];
    let flags = if follow { 0 } else { sys::AT_SYMLINK_NOFOLLOW };
    sys::fstatat(sys::AT_FDCWD, host.c(), st.as_mut_ptr().cast(), flags)?;
    let (old_uid, old_gid, _, _) = current_owner(&st);
    let uid = if uid == u32::MAX { old_uid } else { uid };
    let gid = if gid == u32::MAX { old_gid } else { gid };
    record_ino(state::get(), st[1], uid, gid, 0, 0);
    Ok(())
}

export! {
    #[safe]
    fn fstat(fd: c_int, buf: *mut c_void) -> c_int {
        let result = sys::fstat(fd, buf);
        if result.is_ok() && active() {
            adjust_fd_stat(fd, buf);
        }
        c_ret(result)
    }
    fn fstat64(fd: c_int, buf: *mut c_void) -> c_int { fstat(fd, buf) }
    fn __fxstat(_ver: c_int, fd: c_int, buf: *mut c_void) -> c_int { fstat(fd, buf) }
    fn __fxstat64(_ver: c_int, fd: c_int, buf: *mut c_void) -> c_int { fstat(fd, buf) }
    #[safe]
    fn fchown(fd: c_int, uid: u32, gid: u32) -> c_int {
        if active() {
            return c_ret(chown_fd(fd, uid, gid).map(|()| 0));
        }
        c_ret(sys::fchown(fd, uid, gid))
    }
}
