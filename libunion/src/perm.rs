//! The kernel's access rules for fake root's ids (`lpmx-exec --root`).
//!
//! On disk every file of the container belongs to the real user, who can
//! always read and write it: fake root must be able to, whatever the
//! modes say. So under `--root` libunion decides access itself, as the
//! kernel would for the fake ids, from the owners and modes the container
//! records (`root`): mode bits by owner, group (and the supplementary
//! groups) and others; search permission on every directory of a path;
//! sticky directories; who may chmod, chown and set times. A file-system
//! user id of 0 passes every check (as root with `CAP_DAC_OVERRIDE` and
//! `CAP_FOWNER` does) but the one on execute bits. Without `--root` the
//! kernel decides, for the real user.

use crate::ids::{self, FS, Ids, REAL};
use crate::sys;

pub const MAY_READ: u32 = 4;
pub const MAY_WRITE: u32 = 2;
pub const MAY_EXEC: u32 = 1;

pub const S_ISUID: u32 = 0o4000;
pub const S_ISGID: u32 = 0o2000;
pub const S_ISVTX: u32 = 0o1000;

/// What the container says of a file: owner, group, type and mode.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Meta {
    pub fn is_dir(&self) -> bool {
        self.mode & sys::S_IFMT == sys::S_IFDIR
    }
}

/// Whether libunion checks access itself: fake root whose file-system
/// user id is no longer 0. (Fake root as uid 0 passes all but `exec`,
/// which `check` handles when asked.)
pub fn checking() -> bool {
    crate::state::get().root && ids::fsuid() != 0
}

/// Which ids a check uses: the file-system ones, or (access(2) without
/// `AT_EACCESS`) the real ones.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum As {
    FileSystem,
    Real,
}

fn ids_for(ids: &Ids, who: As) -> (u32, u32) {
    match who {
        As::FileSystem => (ids.uid[FS], ids.gid[FS]),
        As::Real => (ids.uid[REAL], ids.gid[REAL]),
    }
}

fn in_group(ids: &Ids, who: As, gid: u32) -> bool {
    let (_, own) = ids_for(ids, who);
    own == gid || ids.groups[..ids.ngroups].contains(&gid)
}

/// generic_permission(): `want` is a mask of MAY_* bits.
pub fn check_as(meta: &Meta, want: u32, who: As) -> Result<(), i32> {
    let ids = ids::get();
    let (uid, _) = ids_for(&ids, who);
    if uid == 0 {
        // Root may execute only what some execute bit allows.
        if want & MAY_EXEC != 0 && !meta.is_dir() && meta.mode & 0o111 == 0 {
            return Err(sys::EACCES);
        }
        return Ok(());
    }
    let bits = if uid == meta.uid {
        meta.mode >> 6
    } else if in_group(&ids, who, meta.gid) {
        meta.mode >> 3
    } else {
        meta.mode
    } & 7;
    if bits & want == want {
        Ok(())
    } else {
        Err(sys::EACCES)
    }
}

pub fn check(meta: &Meta, want: u32) -> Result<(), i32> {
    check_as(meta, want, As::FileSystem)
}

fn fsuid() -> u32 {
    ids::get().uid[FS]
}

/// Whether the caller owns `meta`, or is root (CAP_FOWNER).
pub fn owns(meta: &Meta) -> bool {
    let uid = fsuid();
    uid == 0 || uid == meta.uid
}

/// Removing or renaming `victim` out of directory `dir` (may_delete()).
pub fn check_delete(dir: &Meta, victim: &Meta) -> Result<(), i32> {
    check(dir, MAY_WRITE | MAY_EXEC)?;
    let uid = fsuid();
    if dir.mode & S_ISVTX != 0 && uid != 0 && uid != victim.uid && uid != dir.uid {
        return Err(sys::EPERM);
    }
    Ok(())
}

/// Creating an entry in directory `dir` (may_create()).
pub fn check_create(dir: &Meta) -> Result<(), i32> {
    check(dir, MAY_WRITE | MAY_EXEC)
}

/// chmod(2) of `meta` to `mode`: the mode to record, or EPERM. A caller
/// who is not in the file's group cannot set its set-group-ID bit: it is
/// dropped, as the kernel drops it.
pub fn chmod(meta: &Meta, mode: u32) -> Result<u32, i32> {
    if !owns(meta) {
        return Err(sys::EPERM);
    }
    let ids = ids::get();
    let mut mode = mode & 0o7777;
    if ids.uid[FS] != 0 && !in_group(&ids, As::FileSystem, meta.gid) {
        mode &= !S_ISGID;
    }
    Ok(mode)
}

/// chown(2) of `meta` (u32::MAX: unchanged): the owner and group to
/// record, or EPERM. Only root gives a file away, or names an owner at all
/// unless it is the caller's own file and its own owner; a file's owner
/// may change its group to one of the owner's groups (chown_ok(),
/// chgrp_ok()).
pub fn chown(meta: &Meta, uid: u32, gid: u32) -> Result<(u32, u32), i32> {
    let ids = ids::get();
    let caller = ids.uid[FS];
    if caller != 0 {
        let owner = caller == meta.uid;
        if uid != u32::MAX && !(owner && uid == meta.uid) {
            return Err(sys::EPERM);
        }
        if gid != u32::MAX && !(owner && (gid == meta.gid || in_group(&ids, As::FileSystem, gid))) {
            return Err(sys::EPERM);
        }
    }
    let new_uid = if uid == u32::MAX { meta.uid } else { uid };
    let new_gid = if gid == u32::MAX { meta.gid } else { gid };
    Ok((new_uid, new_gid))
}

/// The mode after a successful chown: a changed owner or group takes the
/// set-user-ID bit off a non-directory, and the set-group-ID bit when
/// group execution is on (without it, the bit marks mandatory locking).
pub fn mode_after_chown(meta: &Meta, uid: u32, gid: u32) -> u32 {
    if meta.is_dir() || (uid == u32::MAX && gid == u32::MAX && fsuid() == 0) {
        return meta.mode;
    }
    let mut mode = meta.mode & !S_ISUID;
    if mode & 0o010 != 0 {
        mode &= !S_ISGID;
    }
    mode
}

/// utimensat(2): setting both times to now needs ownership or write
/// access; any other time, ownership.
pub fn set_times(meta: &Meta, to_now: bool) -> Result<(), i32> {
    if owns(meta) {
        return Ok(());
    }
    if to_now {
        return check(meta, MAY_WRITE).map_err(|_| sys::EACCES);
    }
    Err(sys::EPERM)
}

/// The owner, group and set-group-ID bit of a new file in directory
/// `dir`: the caller's ids, but a set-group-ID directory gives its group,
/// and to a new directory its set-group-ID bit too.
pub fn new_owner(dir: Option<&Meta>, is_dir: bool, mode: u32) -> (u32, u32, u32) {
    let ids = ids::get();
    let (uid, mut gid) = (ids.uid[FS], ids.gid[FS]);
    let mut mode = mode;
    if let Some(dir) = dir.filter(|d| d.mode & S_ISGID != 0) {
        gid = dir.gid;
        if is_dir {
            mode |= S_ISGID;
        }
    }
    if !is_dir && mode & S_ISGID != 0 && uid != 0 && !in_group(&ids, As::FileSystem, gid) {
        mode &= !S_ISGID;
    }
    (uid, gid, mode)
}
