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
use core::ffi::c_int;
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::buf::{Buf, cstr};
use crate::lock::SpinLock;
use crate::private;
use crate::state;
use crate::sys;

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
/// Each with the slot's epoch it was set in (`private::epoch`).
struct Children(UnsafeCell<[(u32, Ids); private::SLOTS]>);
// SAFETY: each slot is used only by the one vfork child that holds it.
unsafe impl Sync for Children {}
static CHILDREN: Children = Children(UnsafeCell::new([(0, ROOT); private::SLOTS]));
static READY: AtomicU8 = AtomicU8::new(0);
/// The file-system user id, for the checks' fast path (`u32::MAX`: not
/// read yet).
static FSUID: AtomicU32 = AtomicU32::new(u32::MAX);

pub fn parse(digits: &[u8]) -> u32 {
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
    let given = unsafe { cstr(sys::getenv(lpmx_union::variables::IDS.c_name.as_ptr())) };
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
        let (epoch, ids) = unsafe { (*CHILDREN.0.get())[slot] };
        if epoch == private::epoch(slot) {
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
        unsafe { (*CHILDREN.0.get())[slot] = (private::epoch(slot), new) };
        return;
    }
    IDS.with(|ids| *ids = new);
    FSUID.store(new.uid[FS], Ordering::Release);
}

/// `LPMX_IDS=...` for an exec, into `out`.
pub fn var(out: &mut Buf) -> Result<(), i32> {
    let ids = get();
    out.set(lpmx_union::variables::IDS.assignment)?;
    let mut digits = [0u8; 12];
    let values = [
        ids.uid[0], ids.uid[1], ids.uid[2], ids.gid[0], ids.gid[1], ids.gid[2], ids.uid[3],
        ids.gid[3],
    ];
    for (i, id) in values.iter().enumerate() {
        if i > 0 {
            out.push(b",")?;
        }
        out.push(crate::sys::format_int(i64::from(*id), &mut digits))?;
    }
    out.push(b",")?;
    for (i, g) in ids.groups[..ids.ngroups].iter().enumerate() {
        if i > 0 {
            out.push(b":")?;
        }
        out.push(crate::sys::format_int(i64::from(*g), &mut digits))?;
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

pub fn active() -> bool {
    state::get().root
}
