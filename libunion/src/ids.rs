//! Fake root's identities (`lpmx-exec --root`): the user and group ids a
//! program sees and the kernel's rules for changing them, kept in memory
//! and passed on to exec'd programs in `LPMX_IDS`.
//!
//! As in the kernel, each of user and group has a real, effective, saved
//! and file-system id (the last follows the effective one unless
//! `setfsuid` sets it), and there is a list of supplementary groups. All
//! start as root's (0, and the groups `[0]`). File-system checks use the
//! file-system ids (`perm`); an effective user id of 0 is privileged for
//! changing ids, a file-system user id of 0 for files.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::buf::{Buf, cstr};
use crate::fs::export;
use crate::lock::SpinLock;
use crate::private;
use crate::state;
use crate::sys::{self, real};

pub const MAX_GROUPS: usize = 64;

#[derive(Clone, Copy)]
pub struct Ids {
    /// real, effective, saved, file-system
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: [u32; MAX_GROUPS],
    pub ngroups: usize,
}

const ROOT: Ids = Ids {
    uid: [0; 4],
    gid: [0; 4],
    groups: [0; MAX_GROUPS],
    ngroups: 1,
};

pub const REAL: usize = 0;
pub const EFFECTIVE: usize = 1;
pub const SAVED: usize = 2;
pub const FS: usize = 3;

static IDS: SpinLock<Ids> = SpinLock::new(ROOT);
/// A vfork child's own ids, per `private` slot (its parent keeps IDS).
struct Children(UnsafeCell<[Option<Ids>; private::SLOTS]>);
// SAFETY: each slot is used only by the one vfork child that holds it.
unsafe impl Sync for Children {}
static CHILDREN: Children = Children(UnsafeCell::new([None; private::SLOTS]));
static READY: AtomicU8 = AtomicU8::new(0);
/// The file-system user id, for the checks' fast path (`u32::MAX`: not
/// read yet).
static FSUID: AtomicU32 = AtomicU32::new(u32::MAX);

fn parse(digits: &[u8]) -> u32 {
    digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u32, |n, b| {
            n.wrapping_mul(10).wrapping_add(u32::from(b - b'0'))
        })
}

/// `LPMX_IDS`: `ruid,euid,suid,rgid,egid,sgid[,fsuid,fsgid,g1:g2:...]`.
fn load() {
    if READY.load(Ordering::Acquire) != 0 {
        return;
    }
    // SAFETY: a NUL-terminated name; the value is read at once.
    let given = unsafe { cstr(sys::getenv(c"LPMX_IDS".as_ptr())) };
    IDS.with(|ids| {
        if READY.load(Ordering::Acquire) != 0 {
            return;
        }
        let mut fields = given.split(|&b| b == b',');
        let mut next = || fields.next().map(parse);
        let mut parsed = ROOT;
        if !given.is_empty() {
            for slot in [0, 1, 2] {
                parsed.uid[slot] = next().unwrap_or(0);
            }
            for slot in [0, 1, 2] {
                parsed.gid[slot] = next().unwrap_or(0);
            }
            parsed.uid[FS] = next().unwrap_or(parsed.uid[EFFECTIVE]);
            parsed.gid[FS] = next().unwrap_or(parsed.gid[EFFECTIVE]);
            let groups = given.split(|&b| b == b',').nth(8);
            if let Some(groups) = groups {
                parsed.ngroups = 0;
                for g in groups.split(|&b| b == b':').filter(|g| !g.is_empty()) {
                    if parsed.ngroups < MAX_GROUPS {
                        parsed.groups[parsed.ngroups] = parse(g);
                        parsed.ngroups += 1;
                    }
                }
            } else {
                parsed.groups[0] = parsed.gid[EFFECTIVE];
            }
        }
        *ids = parsed;
        FSUID.store(parsed.uid[FS], Ordering::Release);
        READY.store(1, Ordering::Release);
    });
}

/// This process's ids now.
pub fn get() -> Ids {
    load();
    if let Some(slot) = private::vfork_slot() {
        // SAFETY: this slot is this child's alone.
        if let Some(ids) = unsafe { (*CHILDREN.0.get())[slot] } {
            return ids;
        }
    }
    IDS.with(|ids| *ids)
}

/// The file-system user id, cheaply (0 unless fake root dropped it).
pub fn fsuid() -> u32 {
    let id = FSUID.load(Ordering::Acquire);
    if id == u32::MAX || private::vfork_slot().is_some() {
        return get().uid[FS];
    }
    id
}

fn set(new: Ids) {
    if let Some(slot) = private::vfork_slot() {
        // SAFETY: as in get.
        unsafe { (*CHILDREN.0.get())[slot] = Some(new) };
        return;
    }
    IDS.with(|ids| *ids = new);
    FSUID.store(new.uid[FS], Ordering::Release);
}

/// A new vfork child starts with its parent's ids.
pub fn vfork_started(slot: usize) {
    // SAFETY: the child owns the slot from now on.
    unsafe { (*CHILDREN.0.get())[slot] = None };
}

/// `LPMX_IDS=...` for an exec, into `out`.
pub fn var(out: &mut Buf) -> Result<(), i32> {
    let ids = get();
    out.set(b"LPMX_IDS=")?;
    let mut digits = [0u8; 12];
    let values = [
        ids.uid[0], ids.uid[1], ids.uid[2], ids.gid[0], ids.gid[1], ids.gid[2], ids.uid[3],
        ids.gid[3],
    ];
    for (i, id) in values.iter().enumerate() {
        if i > 0 {
            out.push(b",")?;
        }
        out.push(state::format_int(i64::from(*id), &mut digits))?;
    }
    out.push(b",")?;
    for (i, g) in ids.groups[..ids.ngroups].iter().enumerate() {
        if i > 0 {
            out.push(b":")?;
        }
        out.push(state::format_int(i64::from(*g), &mut digits))?;
    }
    Ok(())
}

const UNCHANGED: u32 = u32::MAX;

/// The kernel's `setres*id`: a privileged caller (effective uid 0) may set
/// anything, others only to ids they hold. `which` is 0 for user ids, 1
/// for group ids. The file-system id follows the effective one.
fn set_res(which: usize, wanted: [u32; 3]) -> c_int {
    let mut ids = get();
    let privileged = ids.uid[EFFECTIVE] == 0;
    let held = if which == 0 { ids.uid } else { ids.gid };
    for id in wanted {
        if id != UNCHANGED && !privileged && !held[..3].contains(&id) {
            return sys::c_ret(Err(sys::EPERM));
        }
    }
    let set = if which == 0 {
        &mut ids.uid
    } else {
        &mut ids.gid
    };
    for (i, id) in wanted.into_iter().enumerate() {
        if id != UNCHANGED {
            set[i] = id;
        }
    }
    set[FS] = set[EFFECTIVE];
    self::set(ids);
    0
}

/// setreuid(2): setting the real id, or an effective id other than the
/// real one, also sets the saved id to the new effective one.
fn set_re(which: usize, r: u32, e: u32) -> c_int {
    let ids = get();
    let held = if which == 0 { ids.uid } else { ids.gid };
    let effective = if e == UNCHANGED { held[EFFECTIVE] } else { e };
    let saved = if r != UNCHANGED || (e != UNCHANGED && e != held[REAL]) {
        effective
    } else {
        UNCHANGED
    };
    if r != UNCHANGED && ids.uid[EFFECTIVE] != 0 && r != held[REAL] && r != held[EFFECTIVE] {
        return sys::c_ret(Err(sys::EPERM));
    }
    if e != UNCHANGED
        && ids.uid[EFFECTIVE] != 0
        && e != held[REAL]
        && e != held[EFFECTIVE]
        && e != held[SAVED]
    {
        return sys::c_ret(Err(sys::EPERM));
    }
    // The checks are done: set as root would.
    let mut new = ids;
    let set = if which == 0 {
        &mut new.uid
    } else {
        &mut new.gid
    };
    if r != UNCHANGED {
        set[REAL] = r;
    }
    set[EFFECTIVE] = effective;
    if saved != UNCHANGED {
        set[SAVED] = saved;
    }
    set[FS] = set[EFFECTIVE];
    self::set(new);
    0
}

/// setuid(2)/setgid(2): privileged, all three; otherwise the effective one,
/// to the real or saved id.
pub fn set_one(which: usize, id: u32) -> c_int {
    let ids = get();
    if ids.uid[EFFECTIVE] == 0 {
        set_res(which, [id, id, id])
    } else {
        set_res(which, [UNCHANGED, id, UNCHANGED])
    }
}

pub fn set_effective(which: usize, id: u32) -> c_int {
    set_res(which, [UNCHANGED, id, UNCHANGED])
}

pub fn set_real_effective(which: usize, r: u32, e: u32) -> c_int {
    set_re(which, r, e)
}

pub fn set_real_effective_saved(which: usize, ids: [u32; 3]) -> c_int {
    set_res(which, ids)
}

/// setfsuid(2)/setfsgid(2): returns the previous id; changes it when
/// privileged or to one of the ids held.
pub fn set_fs(which: usize, id: u32) -> c_int {
    let mut ids = get();
    let held = if which == 0 { ids.uid } else { ids.gid };
    let previous = held[FS];
    if ids.uid[EFFECTIVE] == 0 || held.contains(&id) {
        if which == 0 {
            ids.uid[FS] = id;
        } else {
            ids.gid[FS] = id;
        }
        set(ids);
    }
    previous as c_int
}

/// setgroups(2): privileged only.
pub fn set_groups(list: &[u32]) -> c_int {
    let mut ids = get();
    if ids.uid[EFFECTIVE] != 0 {
        return sys::c_ret(Err(sys::EPERM));
    }
    if list.len() > MAX_GROUPS {
        return sys::c_ret(Err(sys::EINVAL));
    }
    ids.groups[..list.len()].copy_from_slice(list);
    ids.ngroups = list.len();
    set(ids);
    0
}

fn active() -> bool {
    state::get().root
}

type SetId1 = unsafe extern "C" fn(u32) -> c_int;
type SetId2 = unsafe extern "C" fn(u32, u32) -> c_int;
type SetId3 = unsafe extern "C" fn(u32, u32, u32) -> c_int;
type SetGroups = unsafe extern "C" fn(usize, *const u32) -> c_int;
type InitGroups = unsafe extern "C" fn(*const c_char, u32) -> c_int;

const USER: usize = 0;
const GROUP: usize = 1;

macro_rules! id_or_real {
    ($field:ident, $slot:expr, $real:expr) => {
        if active() { get().$field[$slot] } else { $real }
    };
}

export! {
    #[safe]
    fn getuid() -> u32 { id_or_real!(uid, REAL, crate::root::real_uid()) }
    #[safe]
    fn geteuid() -> u32 { id_or_real!(uid, EFFECTIVE, sys::geteuid_raw()) }
    #[safe]
    fn getgid() -> u32 { id_or_real!(gid, REAL, crate::root::real_gid()) }
    #[safe]
    fn getegid() -> u32 { id_or_real!(gid, EFFECTIVE, sys::getegid_raw()) }
    fn getresuid(r: *mut u32, e: *mut u32, s: *mut u32) -> c_int {
        if !active() {
            return sys::c_ret(sys::getresuid_raw(r, e, s));
        }
        let ids = get();
        *r = ids.uid[REAL];
        *e = ids.uid[EFFECTIVE];
        *s = ids.uid[SAVED];
        0
    }
    fn getresgid(r: *mut u32, e: *mut u32, s: *mut u32) -> c_int {
        if !active() {
            return sys::c_ret(sys::getresgid_raw(r, e, s));
        }
        let ids = get();
        *r = ids.gid[REAL];
        *e = ids.gid[EFFECTIVE];
        *s = ids.gid[SAVED];
        0
    }
    fn getgroups(size: c_int, list: *mut u32) -> c_int {
        if !active() {
            return sys::c_ret(sys::getgroups_raw(size, list));
        }
        let ids = get();
        if size == 0 {
            return ids.ngroups as c_int;
        }
        if (size as usize) < ids.ngroups {
            return sys::c_ret(Err(sys::EINVAL));
        }
        core::ptr::copy_nonoverlapping(ids.groups.as_ptr(), list, ids.ngroups);
        ids.ngroups as c_int
    }
    fn setuid(id: u32) -> c_int {
        if !active() {
            return real!("setuid": SetId1).map_or(-1, |f| f(id));
        }
        set_one(USER, id)
    }
    fn seteuid(id: u32) -> c_int {
        if !active() {
            return real!("seteuid": SetId1).map_or(-1, |f| f(id));
        }
        set_effective(USER, id)
    }
    fn setreuid(r: u32, e: u32) -> c_int {
        if !active() {
            return real!("setreuid": SetId2).map_or(-1, |f| f(r, e));
        }
        set_real_effective(USER, r, e)
    }
    fn setresuid(r: u32, e: u32, s: u32) -> c_int {
        if !active() {
            return real!("setresuid": SetId3).map_or(-1, |f| f(r, e, s));
        }
        set_real_effective_saved(USER, [r, e, s])
    }
    fn setgid(id: u32) -> c_int {
        if !active() {
            return real!("setgid": SetId1).map_or(-1, |f| f(id));
        }
        set_one(GROUP, id)
    }
    fn setegid(id: u32) -> c_int {
        if !active() {
            return real!("setegid": SetId1).map_or(-1, |f| f(id));
        }
        set_effective(GROUP, id)
    }
    fn setregid(r: u32, e: u32) -> c_int {
        if !active() {
            return real!("setregid": SetId2).map_or(-1, |f| f(r, e));
        }
        set_real_effective(GROUP, r, e)
    }
    fn setresgid(r: u32, e: u32, s: u32) -> c_int {
        if !active() {
            return real!("setresgid": SetId3).map_or(-1, |f| f(r, e, s));
        }
        set_real_effective_saved(GROUP, [r, e, s])
    }
    fn setfsuid(id: u32) -> c_int {
        if !active() {
            return real!("setfsuid": SetId1).map_or(-1, |f| f(id));
        }
        set_fs(USER, id)
    }
    fn setfsgid(id: u32) -> c_int {
        if !active() {
            return real!("setfsgid": SetId1).map_or(-1, |f| f(id));
        }
        set_fs(GROUP, id)
    }
    fn setgroups(size: usize, list: *const u32) -> c_int {
        if !active() {
            return real!("setgroups": SetGroups).map_or(-1, |f| f(size, list));
        }
        let given = if size == 0 || list.is_null() { &[][..] } else { core::slice::from_raw_parts(list, size) };
        set_groups(given)
    }
    fn initgroups(user: *const c_char, group: u32) -> c_int {
        if !active() {
            return real!("initgroups": InitGroups).map_or(-1, |f| f(user, group));
        }
        let mut list = [0u32; MAX_GROUPS];
        let mut count = 1;
        list[0] = group;
        let name = cstr(user);
        container_groups_of(name, |gid| {
            if count < MAX_GROUPS && !list[..count].contains(&gid) {
                list[count] = gid;
                count += 1;
            }
        });
        set_groups(&list[..count])
    }
}

/// Calls `each` with the id of every group of the container's
/// `/etc/group` that lists `user` as a member.
fn container_groups_of(user: &[u8], mut each: impl FnMut(u32)) {
    let state = state::get();
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let Ok(found) = crate::resolve::resolve(state, b"/etc/group", true, &mut canon, &mut host)
    else {
        return;
    };
    if found.place == crate::resolve::Place::Missing {
        return;
    }
    let Ok(fd) = crate::host::open(&host, sys::O_CLOEXEC, 0) else {
        return;
    };
    let fd = fd as i32;
    let mut st = [0u64; 18];
    let size = sys::fstat(fd, st.as_mut_ptr().cast()).map_or(0, |_| st[6] as usize);
    // SAFETY: a plain allocation, freed below.
    let text = unsafe { sys::malloc(size + 1) }.cast::<u8>();
    if !text.is_null() {
        let mut got = 0;
        while got < size {
            // SAFETY: text holds size bytes.
            match sys::pread(fd, unsafe { text.add(got) }, size - got, got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        // SAFETY: got bytes were read.
        let bytes = unsafe { core::slice::from_raw_parts(text, got) };
        for line in bytes.split(|&b| b == b'\n') {
            let fields: [&[u8]; 4] = {
                let mut it = line.split(|&b| b == b':');
                core::array::from_fn(|_| it.next().unwrap_or(b""))
            };
            if fields[3].split(|&b| b == b',').any(|m| m == user) {
                each(parse(fields[2]));
            }
        }
        // SAFETY: malloc'd above.
        unsafe { sys::free(text.cast::<c_void>()) };
    }
    let _ = sys::close(fd);
}
