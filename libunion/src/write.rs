//! The write side: every change lands in the writable layer. A file of the
//! image is copied up (bytes, holes, mode, times) before its first change;
//! deleting or renaming away an image path records a whiteout
//! (`upper::set_whiteout`); the image's layers are never written.
//!
//! Each call answers as the kernel does: the final component's kind
//! (`rmdir d/.` is EINVAL), trailing slashes, types (`unlink` of a
//! directory is EISDIR), and under fake root `perm`'s access rules, with
//! new owners and modes recorded (`root`).

use core::ffi::{c_char, c_int, c_void};

use crate::buf::{Buf, cstr};
use crate::export::export;
use crate::index::{KIND_DIR, KIND_SYMLINK};
use crate::paths::{meta_of, parent_meta, translate, translate_bytes};
use crate::perm::{self, MAY_READ, MAY_WRITE, Meta};
use crate::resolve::{Found, Last, Place};
use crate::root::{self, Attrs, disk_mode};
use crate::state::{self, State};
use crate::sys::{self, c_ret};
use crate::upper;

const AT_REMOVEDIR: i32 = 0x200;
const AT_SYMLINK_FOLLOW: i32 = 0x400;
const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;

/// The stat fields libunion reads (x86_64 `struct stat`).
struct Stat([u64; 18]);

impl Stat {
    fn of(path: &Buf) -> Result<Stat, i32> {
        let mut st = Stat([0; 18]);
        crate::host::lstat(path, &mut st.0)?;
        Ok(st)
    }
    fn mode(&self) -> u32 {
        (self.0[3] & 0xffff_ffff) as u32
    }
    fn size(&self) -> u64 {
        self.0[6]
    }
    /// atime and mtime as two timespecs.
    fn times(&self) -> [u64; 4] {
        [self.0[9], self.0[10], self.0[11], self.0[12]]
    }
}

fn image_key(canon: &[u8]) -> &[u8] {
    canon.get(1..).unwrap_or(b"")
}

/// Whether the image (below the writable layer) shows `canon`.
fn in_image(state: &State, canon: &[u8]) -> bool {
    let key = image_key(canon);
    state
        .index
        .is_some_and(|index| index.position(key).is_some())
        && !upper::hides(state, key)
}

/// The writable layer's directories above canonical `canon`, made like the
/// image's (mode, times, and under fake root its owners), writable by
/// their owner so files go in.
pub fn make_upper_parents(canon: &[u8]) -> Result<(), i32> {
    let state = state::get();
    let Some(index) = state.index else {
        return Err(sys::EROFS);
    };
    let mut dir = Buf::from(state.upper)?;
    let parent_end = canon.iter().rposition(|&b| b == b'/').unwrap_or(0);
    // Usually the parent is there already: one stat instead of a mkdir per
    // level.
    dir.push(&canon[..parent_end])?;
    if Stat::of(&dir).is_ok_and(|st| st.mode() & sys::S_IFMT == sys::S_IFDIR) {
        return Ok(());
    }
    dir.set(state.upper)?;
    let mut made = false;
    for component in canon[..parent_end]
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
    {
        dir.push(b"/")?;
        dir.push(component)?;
        let inside = &dir.as_bytes()[state.upper.len()..];
        let mut mode = 0o755;
        let in_index = index.lookup(image_key(inside));
        if let Some(entry) = in_index {
            let mut lower = Buf::from(index.layer_root(entry.layer))?;
            lower.push(inside)?;
            if let Ok(st) = Stat::of(&lower) {
                mode = (st.mode() & 0o7777) | 0o700;
            }
        }
        // Only a new top-level directory changes the processes' caches.
        let top_level = dir.len() == state.upper.len() + 1 + component.len();
        let change = top_level.then(|| upper::Change::begin(state));
        match crate::host::mkdir(&dir, mode) {
            Ok(_) => {
                made |= top_level;
                if state.root && in_index.is_some() {
                    root::inherit(&dir, inside);
                }
            }
            Err(sys::EEXIST) => {}
            Err(e) => return Err(e),
        }
        if change.is_some() && made {
            upper::changed(state);
        }
        drop(change);
    }
    Ok(())
}

/// Copies image file `canon` (at `lower` in its layer) into the writable
/// layer and returns its path there.
pub fn copy_up(state: &State, canon: &[u8], lower: &Buf) -> Result<Buf, i32> {
    make_upper_parents(canon)?;
    let mut target = Buf::from(state.upper)?;
    target.push(canon)?;
    let st = Stat::of(lower)?;
    match st.mode() & sys::S_IFMT {
        sys::S_IFLNK => {
            let mut link = Buf::new();
            crate::host::read_link(lower, &mut link)?;
            match crate::host::symlink(link.c(), &target) {
                Ok(_) | Err(sys::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        sys::S_IFDIR => match crate::host::mkdir(&target, (st.mode() & 0o7777) | 0o700) {
            Ok(_) | Err(sys::EEXIST) => {}
            Err(e) => return Err(e),
        },
        _ => copy_file(lower, &target, &st)?,
    }
    if state.root {
        root::inherit(&target, canon);
    }
    upper::changed_at(state, canon);
    Ok(target)
}

/// Copies a regular file's bytes (holes kept), mode and times, appearing
/// whole by rename. Processes copying the same file at once each make
/// their own copy; the first to finish wins and the others use it, so a
/// change made to the first is never replaced by a later copy.
fn copy_file(from: &Buf, to: &Buf, st: &Stat) -> Result<(), i32> {
    let mut temp = Buf::from(to.as_bytes())?;
    temp.push(lpmx_union::upper::COPY_UP_TEMP)?;
    let mut random = [0u8; 8];
    if sys::getrandom(&mut random).is_err() {
        random = (u64::from(sys::gettid().unsigned_abs()) << 32 | st.size()).to_le_bytes();
    }
    for byte in random {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        temp.push(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]])?;
    }
    let source = crate::host::open(from, sys::O_CLOEXEC, 0)? as i32;
    let result = (|| {
        let target = crate::host::open(
            &temp,
            sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC | sys::O_CLOEXEC,
            0o600,
        )? as i32;
        let copied = copy_data(source, target, st.size())
            .and_then(|()| sys::ftruncate(target, st.size()).map(|_| ()))
            .and_then(|()| sys::fchmod(target, st.mode() & 0o7777).map(|_| ()))
            .and_then(|()| sys::futimens(target, &st.times()).map(|_| ()));
        let _ = sys::close(target);
        copied?;
        publish(&temp, to)
    })();
    let _ = sys::close(source);
    if result.is_err() {
        let _ = crate::host::unlink(&temp, 0);
    }
    result
}

/// Puts the finished copy `temp` at `to` unless a file is there already
/// (another process's copy, maybe changed since): then `temp` goes.
fn publish(temp: &Buf, to: &Buf) -> Result<(), i32> {
    const RENAME_NOREPLACE: u32 = 1;
    let placed = match crate::host::rename(temp, to, RENAME_NOREPLACE) {
        // A file system without RENAME_NOREPLACE (NFS before 4.0 and
        // others): a hard link fails as well when the name is taken.
        Err(sys::EINVAL) | Err(sys::ENOSYS) => match crate::host::link(temp, to, 0) {
            Ok(_) => {
                let _ = crate::host::unlink(temp, 0);
                Ok(())
            }
            // Nor hard links: the copy takes the name as it is.
            Err(sys::EPERM) | Err(sys::EOPNOTSUPP) => crate::host::rename(temp, to, 0).map(|_| ()),
            Err(e) => Err(e),
        },
        other => other.map(|_| ()),
    };
    match placed {
        Err(sys::EEXIST) => {
            let _ = crate::host::unlink(temp, 0);
            Ok(())
        }
        other => other,
    }
}

/// The data of `source` into `target`, skipping holes.
fn copy_data(source: i32, target: i32, size: u64) -> Result<(), i32> {
    let mut at = 0u64;
    while at < size {
        let data = match sys::seek(source, at, sys::SEEK_DATA) {
            Ok(data) => data as u64,
            Err(6) => return Ok(()), // ENXIO: only a hole is left
            Err(_) => at,            // no hole support: copy everything
        };
        let end = match sys::seek(source, data, sys::SEEK_HOLE) {
            Ok(end) => end as u64,
            Err(_) => size,
        };
        let mut offset = data;
        while offset < end {
            let n = copy_range(source, target, offset, (end - offset) as usize)?;
            if n == 0 {
                return Ok(());
            }
            offset += n as u64;
        }
        at = end;
    }
    Ok(())
}

fn copy_range(source: i32, target: i32, offset: u64, len: usize) -> Result<usize, i32> {
    let (mut from, mut to) = (offset as i64, offset as i64);
    match sys::copy_file_range(source, &mut from, target, &mut to, len.min(1 << 30)) {
        Ok(n) => Ok(n),
        Err(_) => {
            let mut chunk = [0u8; 65536];
            let n = sys::pread(source, chunk.as_mut_ptr(), len.min(chunk.len()), offset)?;
            let mut done = 0;
            while done < n {
                done += sys::pwrite(
                    target,
                    chunk[done..n].as_ptr(),
                    n - done,
                    offset + done as u64,
                )?;
            }
            Ok(n)
        }
    }
}

/// Under fake root, after creating `host` (open as `fd`, if it is) in
/// directory `parent`: the new file is the caller's (a set-group-ID
/// directory gives its group), and a mode that would deny the real user
/// is recorded while the disk keeps the owner's bits.
pub fn created_as_root(fd: Option<i32>, host: &Buf, parent: Option<&Meta>, is_dir: bool) {
    let mut st = [0u64; 18];
    let taken = match fd {
        Some(fd) => sys::fstat(fd, st.as_mut_ptr().cast()),
        None => crate::host::lstat(host, &mut st),
    };
    if taken.is_err() {
        return;
    }
    let mode = (st[3] & 0xffff_ffff) as u32;
    let (uid, gid, virtual_mode) = perm::new_owner(parent, is_dir, mode);
    if mode & sys::S_IFMT != sys::S_IFLNK {
        let disk = disk_mode(virtual_mode);
        if disk != mode & 0o7777 {
            let changed = match fd {
                Some(fd) => sys::fchmod(fd, disk),
                None => crate::host::chmod(host, disk),
            };
            if changed.is_ok() {
                st[3] = (st[3] & !0xffff_ffff) | u64::from((mode & sys::S_IFMT) | disk);
            }
        }
    }
    root::update(
        &st,
        Attrs {
            uid,
            gid,
            mode: virtual_mode,
            rdev: 0,
        },
    );
}

/// A new entry at `canon` replaces whatever the image had there.
fn created(state: &State, canon: &[u8], dir: bool) {
    let key = image_key(canon);
    if upper::has_whiteout(state, key) {
        let kind = if dir && state.index.is_some_and(|i| i.position(key).is_some()) {
            Some(lpmx_union::upper::OPAQUE)
        } else {
            None
        };
        let _ = upper::set_whiteout(state, key, kind);
    } else {
        upper::changed_at(state, canon);
    }
}

/// The result of a call libunion handled, or the kernel's own.
enum Handled<T> {
    Done(Result<T, i32>),
    Pass,
}

/// Resolves `path` for a change of an existing file: the file, its
/// writable copy once `change` says it will change (`Lower` only), with
/// `check` run on its record first under fake root's checks.
///
/// # Safety
/// `path` is null or a C string.
unsafe fn existing(
    dirfd: i32,
    path: *const c_char,
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Option<Found>, i32> {
    // SAFETY: as the caller's.
    let Some(found) = (unsafe { translate(dirfd, path, follow, canon, host)? }) else {
        return Ok(None);
    };
    if found.place == Place::Missing {
        return Err(sys::ENOENT);
    }
    Ok(Some(found))
}

/// The writable copy of `found` (made now if it is the image's).
fn writable(found: &Found, canon: &Buf, host: &mut Buf) -> Result<(), i32> {
    if let Place::Lower(_) = found.place {
        *host = copy_up(state::get(), canon.as_bytes(), host)?;
    }
    Ok(())
}

unsafe fn truncate_path(path: *const c_char, length: i64) -> Handled<i32> {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    let found = match unsafe { existing(sys::AT_FDCWD, path, true, &mut canon, &mut host) } {
        Ok(Some(found)) => found,
        Ok(None) => return Handled::Pass,
        Err(e) => return Handled::Done(Err(e)),
    };
    Handled::Done((|| {
        if found.kind == KIND_DIR {
            return Err(sys::EISDIR);
        }
        if length < 0 {
            return Err(sys::EINVAL);
        }
        let checking = perm::checking();
        if checking {
            perm::check(&meta_of(&found, &canon, &host)?, MAY_WRITE)?;
        }
        writable(&found, &canon, &mut host)?;
        crate::host::truncate(&host, length)?;
        if checking && !found.under_bind {
            drop_privileges_of(&host);
        }
        Ok(0)
    })())
}

/// A write by someone other than root takes the set-user-ID and
/// set-group-ID bits off (`file_remove_privs`).
pub fn drop_privileges_of(host: &Buf) {
    if let Ok(st) = Stat::of(host) {
        let mut attrs = root::attrs(&st.0, None);
        if attrs.mode & perm::S_ISUID != 0
            || attrs.mode & (perm::S_ISGID | 0o010) == perm::S_ISGID | 0o010
        {
            attrs.mode &= !perm::S_ISUID;
            if attrs.mode & 0o010 != 0 {
                attrs.mode &= !perm::S_ISGID;
            }
            root::update(&st.0, attrs);
        }
    }
}

unsafe fn chmod_at(dirfd: i32, path: *const c_char, mode: u32, follow: bool) -> Handled<i32> {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    let found = match unsafe { existing(dirfd, path, follow, &mut canon, &mut host) } {
        Ok(Some(found)) => found,
        Ok(None) => return Handled::Pass,
        Err(e) => return Handled::Done(Err(e)),
    };
    Handled::Done((|| {
        if found.kind == KIND_SYMLINK {
            // Linux has no modes for symlinks.
            return Err(sys::EOPNOTSUPP);
        }
        if !root::active() || found.under_bind {
            writable(&found, &canon, &mut host)?;
            return crate::host::chmod(&host, mode & 0o7777).map(|_| 0);
        }
        let meta = meta_of(&found, &canon, &host)?;
        let perms = perm::chmod(&meta, mode)?;
        writable(&found, &canon, &mut host)?;
        set_mode(&host, (meta.mode & sys::S_IFMT) | perms).map(|()| 0)
    })())
}

/// Fake root's chmod of the writable layer's `host` to virtual `mode`.
fn set_mode(host: &Buf, mode: u32) -> Result<(), i32> {
    // The real chmod also updates the change time.
    crate::host::chmod(host, disk_mode(mode))?;
    let st = Stat::of(host)?;
    let mut attrs = root::attrs(&st.0, None);
    attrs.mode = mode;
    root::update(&st.0, attrs);
    Ok(())
}

unsafe fn chown_at(
    dirfd: i32,
    path: *const c_char,
    uid: u32,
    gid: u32,
    follow: bool,
) -> Handled<i32> {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    let found = match unsafe { existing(dirfd, path, follow, &mut canon, &mut host) } {
        Ok(Some(found)) => found,
        Ok(None) => return Handled::Pass,
        Err(e) => return Handled::Done(Err(e)),
    };
    let nofollow = if follow { 0 } else { sys::AT_SYMLINK_NOFOLLOW };
    Handled::Done((|| {
        if !root::active() {
            // As the invoking user the kernel decides (chown to oneself
            // succeeds); the writable layer's copy is what changes.
            writable(&found, &canon, &mut host)?;
            return crate::host::chown(&host, uid, gid, nofollow).map(|_| 0);
        }
        let meta = meta_of(&found, &canon, &host)?;
        let (new_uid, new_gid) = perm::chown(&meta, uid, gid)?;
        if found.under_bind {
            // A host file: nothing is recorded for it.
            return Ok(0);
        }
        writable(&found, &canon, &mut host)?;
        set_owner(&host, &meta, (uid, gid), (new_uid, new_gid))
    })())
}

/// Fake root's chown of the writable layer's `host`: `asked` as given
/// (-1 unchanged), `owner` what is recorded.
fn set_owner(host: &Buf, meta: &Meta, asked: (u32, u32), owner: (u32, u32)) -> Result<i32, i32> {
    // chown(-1, -1) updates the change time, as every chown does.
    crate::host::chown(host, u32::MAX, u32::MAX, sys::AT_SYMLINK_NOFOLLOW)?;
    let st = Stat::of(host)?;
    let mut attrs = root::attrs(&st.0, None);
    attrs.uid = owner.0;
    attrs.gid = owner.1;
    attrs.mode = perm::mode_after_chown(meta, asked.0, asked.1);
    root::update(&st.0, attrs);
    Ok(0)
}

/// The times argument of utimensat: `Some(true)` both to now, `Some(false)`
/// any other change, `None` nothing to change.
unsafe fn times_kind(times: *const c_void) -> Result<Option<bool>, i32> {
    if times.is_null() {
        return Ok(Some(true));
    }
    let mut t = [0i64; 4];
    // SAFETY: the caller's two timespecs, read as the kernel would.
    if sys::read_own_memory(t.as_mut_ptr().cast(), times.cast(), 32).is_err() {
        return Err(sys::EFAULT);
    }
    let (a, m) = (t[1], t[3]);
    if a == UTIME_OMIT && m == UTIME_OMIT {
        return Ok(None);
    }
    Ok(Some(
        (a == UTIME_NOW || a == UTIME_OMIT) && (m == UTIME_NOW || m == UTIME_OMIT),
    ))
}

unsafe fn utimens_at(
    dirfd: i32,
    path: *const c_char,
    times: *const c_void,
    flags: i32,
) -> Handled<i32> {
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    let found = match unsafe { existing(dirfd, path, follow, &mut canon, &mut host) } {
        Ok(Some(found)) => found,
        Ok(None) => return Handled::Pass,
        Err(e) => return Handled::Done(Err(e)),
    };
    Handled::Done((|| {
        // SAFETY: the caller's timespecs.
        let Some(to_now) = (unsafe { times_kind(times)? }) else {
            return Ok(0);
        };
        if perm::checking() && !found.under_bind {
            perm::set_times(&meta_of(&found, &canon, &host)?, to_now)?;
        }
        writable(&found, &canon, &mut host)?;
        crate::host::utimens(&host, times, flags & sys::AT_SYMLINK_NOFOLLOW).map(|_| 0)
    })())
}

/// setxattr-like calls: on the writable copy, by the kernel.
unsafe fn xattr_change(
    path: *const c_char,
    follow: bool,
    call: impl FnOnce(&Buf) -> sys::Sys,
) -> Handled<i32> {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    let found = match unsafe { existing(sys::AT_FDCWD, path, follow, &mut canon, &mut host) } {
        Ok(Some(found)) => found,
        Ok(None) => return Handled::Pass,
        Err(e) => return Handled::Done(Err(e)),
    };
    Handled::Done(
        writable(&found, &canon, &mut host)
            .and_then(|()| call(&host))
            .map(|n| n as i32),
    )
}

fn finish(handled: Handled<i32>, pass: impl FnOnce() -> sys::Sys) -> c_int {
    match handled {
        Handled::Done(result) => c_ret(result.map(|n| n as usize)),
        Handled::Pass => c_ret(pass()),
    }
}

/// `struct timeval[2]` as `struct timespec[2]`.
unsafe fn timevals(times: *const [i64; 4]) -> Option<[i64; 4]> {
    if times.is_null() {
        return None;
    }
    // SAFETY: the caller's two timevals.
    let t = unsafe { *times };
    Some([t[0], t[1] * 1000, t[2], t[3] * 1000])
}

export! {
    fn truncate(path: *const c_char, length: i64) -> c_int {
        finish(truncate_path(path, length), || sys::truncate(path.cast(), length))
    }
    fn truncate64(path: *const c_char, length: i64) -> c_int {
        finish(truncate_path(path, length), || sys::truncate(path.cast(), length))
    }
    fn chmod(path: *const c_char, mode: u32) -> c_int {
        finish(chmod_at(sys::AT_FDCWD, path, mode, true), || sys::fchmodat(sys::AT_FDCWD, path.cast(), mode))
    }
    fn fchmodat(dirfd: c_int, path: *const c_char, mode: u32, flags: c_int) -> c_int {
        let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
        finish(chmod_at(dirfd, path, mode, follow), || sys::fchmodat(dirfd, path.cast(), mode))
    }
    fn lchmod(path: *const c_char, mode: u32) -> c_int {
        finish(chmod_at(sys::AT_FDCWD, path, mode, false), || Err(sys::EOPNOTSUPP))
    }
    fn utimensat(dirfd: c_int, path: *const c_char, times: *const c_void, flags: c_int) -> c_int {
        if path.is_null() {
            return futimens_fd(dirfd, times);
        }
        finish(utimens_at(dirfd, path, times, flags), || sys::utimensat(dirfd, path.cast(), times, flags))
    }
    fn utimes(path: *const c_char, times: *const [i64; 4]) -> c_int {
        let spec = timevals(times);
        let p = spec.as_ref().map_or(core::ptr::null(), |s| s.as_ptr().cast());
        finish(utimens_at(sys::AT_FDCWD, path, p, 0), || sys::utimensat(sys::AT_FDCWD, path.cast(), p, 0))
    }
    fn lutimes(path: *const c_char, times: *const [i64; 4]) -> c_int {
        let spec = timevals(times);
        let p = spec.as_ref().map_or(core::ptr::null(), |s| s.as_ptr().cast());
        let nofollow = sys::AT_SYMLINK_NOFOLLOW;
        finish(utimens_at(sys::AT_FDCWD, path, p, nofollow), || sys::utimensat(sys::AT_FDCWD, path.cast(), p, nofollow))
    }
    fn utime(path: *const c_char, times: *const [i64; 2]) -> c_int {
        let spec = if times.is_null() { None } else { let t = *times; Some([t[0], 0, t[1], 0]) };
        let p = spec.as_ref().map_or(core::ptr::null(), |s| s.as_ptr().cast());
        finish(utimens_at(sys::AT_FDCWD, path, p, 0), || sys::utimensat(sys::AT_FDCWD, path.cast(), p, 0))
    }
    fn futimens(fd: c_int, times: *const c_void) -> c_int { futimens_fd(fd, times) }
    fn chown(path: *const c_char, uid: u32, gid: u32) -> c_int {
        finish(chown_at(sys::AT_FDCWD, path, uid, gid, true), || sys::fchownat(sys::AT_FDCWD, path.cast(), uid, gid, 0))
    }
    fn lchown(path: *const c_char, uid: u32, gid: u32) -> c_int {
        let nofollow = sys::AT_SYMLINK_NOFOLLOW;
        finish(chown_at(sys::AT_FDCWD, path, uid, gid, false), || sys::fchownat(sys::AT_FDCWD, path.cast(), uid, gid, nofollow))
    }
    fn fchownat(dirfd: c_int, path: *const c_char, uid: u32, gid: u32, flags: c_int) -> c_int {
        if !path.is_null() && cstr(path).is_empty() && flags & sys::AT_EMPTY_PATH != 0 {
            return fchown(dirfd, uid, gid);
        }
        let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
        finish(chown_at(dirfd, path, uid, gid, follow), || sys::fchownat(dirfd, path.cast(), uid, gid, flags))
    }
    fn setxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: usize, flags: c_int) -> c_int {
        finish(xattr_change(path, true, |host| crate::host::setxattr(sys::SYS_SETXATTR, host, name, value, size, flags)),
            || sys::setxattr(sys::SYS_SETXATTR, path.cast(), name, value, size, flags))
    }
    fn lsetxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: usize, flags: c_int) -> c_int {
        finish(xattr_change(path, false, |host| crate::host::setxattr(sys::SYS_LSETXATTR, host, name, value, size, flags)),
            || sys::setxattr(sys::SYS_LSETXATTR, path.cast(), name, value, size, flags))
    }
    fn removexattr(path: *const c_char, name: *const c_char) -> c_int {
        finish(xattr_change(path, true, |host| crate::host::removexattr(sys::SYS_REMOVEXATTR, host, name)),
            || sys::removexattr(sys::SYS_REMOVEXATTR, path.cast(), name))
    }
    fn lremovexattr(path: *const c_char, name: *const c_char) -> c_int {
        finish(xattr_change(path, false, |host| crate::host::removexattr(sys::SYS_LREMOVEXATTR, host, name)),
            || sys::removexattr(sys::SYS_LREMOVEXATTR, path.cast(), name))
    }
}

// --- Changes through a descriptor -------------------------------------------

/// The writable copy of image file `canon`, made now.
fn copy_of(canon: &Buf, lower: &Buf) -> Result<Buf, i32> {
    copy_up(state::get(), canon.as_bytes(), lower)
}

/// fchmod(2): a descriptor of an image file changes its writable copy (the
/// descriptor keeps reading the image's file, as on overlayfs).
fn fchmod_fd(fd: i32, mode: u32) -> Result<(), i32> {
    if !root::active() {
        return match crate::open_files::fd_image(fd) {
            Some((canon, lower)) => {
                crate::host::chmod(&copy_of(&canon, &lower)?, mode & 0o7777).map(|_| ())
            }
            None => sys::fchmod(fd, mode & 0o7777).map(|_| ()),
        };
    }
    let mut st = [0u64; 18];
    let (attrs, image) = crate::open_files::fd_attrs(fd, &mut st)?;
    if image.is_none() && fd_in_bind(fd, &st) {
        // A bind's file is the kernel's to judge, as by path.
        return sys::fchmod(fd, mode & 0o7777).map(|_| ());
    }
    let perms = perm::chmod(&attrs.meta(), mode)?;
    let virtual_mode = (attrs.mode & sys::S_IFMT) | perms;
    match image {
        Some((canon, lower)) => set_mode(&copy_of(&canon, &lower)?, virtual_mode),
        None => {
            sys::fchmod(fd, disk_mode(virtual_mode))?;
            if root::on_upper(&st) {
                let mut new = attrs;
                new.mode = virtual_mode;
                root::update(&st, new);
            }
            Ok(())
        }
    }
}

fn fchown_fd(fd: i32, uid: u32, gid: u32) -> Result<(), i32> {
    if !root::active() {
        return match crate::open_files::fd_image(fd) {
            Some((canon, lower)) => {
                crate::host::chown(&copy_of(&canon, &lower)?, uid, gid, 0).map(|_| ())
            }
            None => sys::fchown(fd, uid, gid).map(|_| ()),
        };
    }
    let mut st = [0u64; 18];
    let (attrs, image) = crate::open_files::fd_attrs(fd, &mut st)?;
    if image.is_none() && fd_in_bind(fd, &st) {
        // A host file, judged as by path; nothing is recorded for it.
        perm::chown(&root::bind_meta(&st), uid, gid)?;
        return Ok(());
    }
    let meta = attrs.meta();
    let owner = perm::chown(&meta, uid, gid)?;
    match image {
        Some((canon, lower)) => {
            set_owner(&copy_of(&canon, &lower)?, &meta, (uid, gid), owner).map(|_| ())
        }
        None if root::on_upper(&st) => {
            // chown(-1, -1) updates the change time, as every chown does.
            let _ = sys::fchown(fd, u32::MAX, u32::MAX);
            let mut new = attrs;
            new.uid = owner.0;
            new.gid = owner.1;
            new.mode = perm::mode_after_chown(&meta, uid, gid);
            root::update(&st, new);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Whether descriptor `fd`, whose fstat is `st`, is of a file in a bind.
fn fd_in_bind(fd: i32, st: &[u64; 18]) -> bool {
    let mut canon = Buf::new();
    let state = state::get();
    crate::fdpaths::fd_path_of(state, fd, Some((st[0], st[1])), &mut canon)
        && crate::resolve::bind_of(state, canon.as_bytes()).is_some()
}

unsafe fn futimens_fd(fd: i32, times: *const c_void) -> c_int {
    // SAFETY: the caller's timespecs.
    let result = (|| {
        let Some(to_now) = (unsafe { times_kind(times)? }) else {
            return Ok(0);
        };
        if perm::checking() {
            let mut st = [0u64; 18];
            let (attrs, _) = crate::open_files::fd_attrs(fd, &mut st)?;
            // A bind's file is the kernel's to judge, as by path.
            if !fd_in_bind(fd, &st) {
                perm::set_times(&attrs.meta(), to_now)?;
            }
        }
        if let Some((canon, lower)) = crate::open_files::fd_image(fd) {
            let copy = copy_of(&canon, &lower)?;
            return crate::host::utimens(&copy, times, 0);
        }
        sys::utimensat(fd, core::ptr::null(), times, 0)
    })();
    c_ret(result)
}

export! {
    #[safe]
    fn fchmod(fd: c_int, mode: u32) -> c_int { c_ret(fchmod_fd(fd, mode).map(|()| 0)) }
    #[safe]
    fn fchown(fd: c_int, uid: u32, gid: u32) -> c_int { c_ret(fchown_fd(fd, uid, gid).map(|()| 0)) }
}

// --- Creating and removing names ------------------------------------------

/// Resolves `path` for creating a name there: `Ok(None)` passes the call
/// through; otherwise the place to create at (`Missing`), checked for the
/// caller's permission, its parents made in the writable layer.
/// `want_dir`: mkdir, which accepts a trailing slash.
///
/// # Safety
/// `path` is null or a C string.
unsafe fn for_create(
    dirfd: i32,
    path: *const c_char,
    want_dir: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Option<(Found, Option<Meta>)>, i32> {
    // SAFETY: as the caller's.
    let Some(found) = (unsafe { translate(dirfd, path, false, canon, host)? }) else {
        return Ok(None);
    };
    if found.last != Last::Name || found.place != Place::Missing {
        return Err(sys::EEXIST);
    }
    if found.slash && !want_dir {
        return Err(sys::ENOENT);
    }
    let state = state::get();
    let parent = if state.root {
        Some(parent_meta(&found, canon, host)?)
    } else {
        None
    };
    if perm::checking()
        && let Some(parent) = &parent
    {
        perm::check_create(parent)?;
    }
    if !found.under_bind {
        make_upper_parents(canon.as_bytes())?;
    }
    Ok(Some((found, parent)))
}

pub unsafe fn mkdir_at(dirfd: i32, path: *const c_char, mode: u32) -> c_int {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: the caller's C path.
    match unsafe { for_create(dirfd, path, true, &mut canon, &mut host) } {
        Ok(Some((found, parent))) => {
            let result = crate::host::mkdir(&host, mode);
            if result.is_ok() && !found.under_bind {
                let state = state::get();
                if state.root {
                    created_as_root(None, &host, parent.as_ref(), true);
                }
                created(state, canon.as_bytes(), true);
            }
            c_ret(result)
        }
        Ok(None) => c_ret(sys::mkdirat(dirfd, path.cast(), mode)),
        Err(e) => c_ret(Err(e)),
    }
}

unsafe fn symlink_at(target: *const c_char, dirfd: i32, path: *const c_char) -> c_int {
    let target_bytes = match lpmx_sys::user::path(target) {
        Ok(bytes) => bytes,
        Err(e) => return c_ret(Err(e)),
    };
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: the caller's C path.
    match unsafe { for_create(dirfd, path, false, &mut canon, &mut host) } {
        Ok(Some((found, parent))) => {
            if target_bytes.is_empty() {
                return c_ret(Err(sys::ENOENT));
            }
            let result = crate::host::symlink(target.cast(), &host);
            if result.is_ok() && !found.under_bind {
                let state = state::get();
                if state.root {
                    created_as_root(None, &host, parent.as_ref(), false);
                }
                created(state, canon.as_bytes(), false);
            }
            c_ret(result)
        }
        Ok(None) => c_ret(sys::symlinkat(target.cast(), dirfd, path.cast())),
        Err(e) => c_ret(Err(e)),
    }
}

unsafe fn mknod_at(dirfd: i32, path: *const c_char, mode: u32, device: u64) -> c_int {
    let kind = mode & sys::S_IFMT;
    let device_node = kind == 0o020000 || kind == 0o060000;
    match kind {
        0 | 0o100000 | 0o010000 | 0o140000 | 0o020000 | 0o060000 => {}
        0o040000 => return c_ret(Err(sys::EPERM)),
        _ => return c_ret(Err(sys::EINVAL)),
    }
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: the caller's C path.
    let (found, parent) = match unsafe { for_create(dirfd, path, false, &mut canon, &mut host) } {
        Ok(Some(place)) => place,
        Ok(None) => return c_ret(sys::mknodat(dirfd, path.cast(), mode, device)),
        Err(e) => return c_ret(Err(e)),
    };
    let state = state::get();
    let result = if device_node && state.root && !found.under_bind {
        if perm::checking() {
            // Only root makes device nodes (CAP_MKNOD).
            return c_ret(Err(sys::EPERM));
        }
        // A device node as root would make it: a placeholder file whose
        // type and number are recorded; its permissions are what the
        // umask left.
        crate::host::mknod(&host, 0o100000 | (mode & 0o7777), 0).and_then(|r| {
            let st = Stat::of(&host)?;
            let perms = st.mode() & 0o7777;
            let (uid, gid, perms) = perm::new_owner(parent.as_ref(), false, perms);
            let _ = crate::host::chmod(&host, disk_mode(perms));
            let st = Stat::of(&host)?;
            root::record_ino(
                state,
                st.0[1],
                Attrs {
                    uid,
                    gid,
                    mode: kind | perms,
                    rdev: device,
                },
            );
            Ok(r)
        })
    } else {
        let made = crate::host::mknod(&host, mode, device);
        if made.is_ok() && state.root && !found.under_bind {
            created_as_root(None, &host, parent.as_ref(), false);
        }
        made
    };
    if result.is_ok() && !found.under_bind {
        created(state, canon.as_bytes(), false);
    }
    c_ret(result)
}

unsafe fn link_at(
    olddir: i32,
    old: *const c_char,
    newdir: i32,
    new: *const c_char,
    flags: i32,
) -> c_int {
    if flags & !(AT_SYMLINK_FOLLOW | sys::AT_EMPTY_PATH) != 0 {
        return c_ret(Err(sys::EINVAL));
    }
    let (mut old_canon, mut old_host) = (Buf::new(), Buf::new());
    let (mut new_canon, mut new_host) = (Buf::new(), Buf::new());
    let follow = flags & AT_SYMLINK_FOLLOW != 0;
    // SAFETY: the caller's C paths.
    let from = unsafe { translate(olddir, old, follow, &mut old_canon, &mut old_host) };
    let from = match from {
        Ok(Some(found)) if found.place == Place::Missing => Err(sys::ENOENT),
        other => other,
    };
    // SAFETY: as above.
    let to = unsafe { translate(newdir, new, false, &mut new_canon, &mut new_host) };
    let result = (|| match (from?, to?) {
        (None, None) => Err(i32::MIN),
        (Some(from), Some(to)) => {
            if from.kind == KIND_DIR {
                return Err(sys::EPERM);
            }
            if to.last != Last::Name || to.place != Place::Missing {
                return Err(sys::EEXIST);
            }
            if to.slash {
                return Err(sys::ENOENT);
            }
            if from.under_bind != to.under_bind {
                return Err(sys::EXDEV);
            }
            let state = state::get();
            if perm::checking() {
                perm::check_create(&parent_meta(&to, &new_canon, &new_host)?)?;
                let meta = meta_of(&from, &old_canon, &old_host)?;
                // fs.protected_hardlinks: a link to someone else's file
                // needs a regular file one may read and write.
                let regular = meta.mode & sys::S_IFMT == 0o100000;
                let risky = meta.mode & perm::S_ISUID != 0
                    || meta.mode & (perm::S_ISGID | 0o010) == perm::S_ISGID | 0o010;
                if !perm::owns(&meta)
                    && (!regular || risky || perm::check(&meta, MAY_READ | MAY_WRITE).is_err())
                {
                    return Err(sys::EPERM);
                }
            }
            if !to.under_bind {
                writable(&from, &old_canon, &mut old_host)?;
                make_upper_parents(new_canon.as_bytes())?;
            }
            crate::host::link(&old_host, &new_host, 0)?;
            if !to.under_bind {
                created(state, new_canon.as_bytes(), false);
            }
            Ok(0)
        }
        _ => Err(sys::EXDEV),
    })();
    match result {
        Err(i32::MIN) => c_ret(sys::linkat(olddir, old.cast(), newdir, new.cast(), flags)),
        other => c_ret(other),
    }
}

/// `path` without its trailing slashes (the root stays `/`), and whether
/// it had any.
fn strip_slashes(path: &[u8]) -> Result<(Buf, bool), i32> {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    Ok((Buf::from(&path[..end])?, end < path.len()))
}

/// Whether the image shows any entry below directory `canon` (the
/// writable layer's entries aside).
fn image_has_entries(state: &State, canon: &[u8]) -> bool {
    let Some(index) = state.index else {
        return false;
    };
    let key = image_key(canon);
    if upper::hides_below(state, key) || index.position(key).is_none() {
        return false;
    }
    let mut child = Buf::new();
    let mut any = false;
    index.children(key, |name, _, _| {
        if any {
            return;
        }
        child.clear();
        let visible = (key.is_empty() || (child.push(key).is_ok() && child.push(b"/").is_ok()))
            && child.push(name).is_ok()
            && !upper::hides(state, child.as_bytes());
        any |= visible;
    });
    any
}

pub unsafe fn remove_at(dirfd: i32, path: *const c_char, directory: bool) -> c_int {
    let state = state::get();
    if !state.active {
        let flags = if directory { AT_REMOVEDIR } else { 0 };
        return c_ret(sys::unlinkat(dirfd, path.cast(), flags));
    }
    let given = match lpmx_sys::user::path(path) {
        Ok(given) => given,
        Err(e) => return c_ret(Err(e)),
    };
    let result = (|| {
        // The final component is never followed, a trailing slash or not.
        let (stripped, slash) = strip_slashes(given)?;
        let (mut canon, mut host) = (Buf::new(), Buf::new());
        let Some(found) =
            translate_bytes(dirfd, stripped.as_bytes(), false, &mut canon, &mut host)?
        else {
            return Err(i32::MIN);
        };
        match found.last {
            Last::Name => {}
            _ if !directory => return Err(sys::EISDIR),
            Last::Dot => return Err(sys::EINVAL),
            Last::DotDot => return Err(sys::ENOTEMPTY),
            Last::Root => return Err(sys::EBUSY),
        }
        if found.place == Place::Missing {
            return Err(sys::ENOENT);
        }
        let is_dir = found.kind == KIND_DIR;
        if directory && !is_dir {
            return Err(sys::ENOTDIR);
        }
        if !directory && is_dir {
            return Err(sys::EISDIR);
        }
        if !directory && slash {
            return Err(sys::ENOTDIR);
        }
        if perm::checking() {
            let dir = parent_meta(&found, &canon, &host)?;
            perm::check_delete(&dir, &meta_of(&found, &canon, &host)?)?;
        }
        let flags = if directory { AT_REMOVEDIR } else { 0 };
        match found.place {
            Place::Bind => {
                crate::host::unlink(&host, flags)?;
                if directory {
                    upper::dirs_changed(state);
                }
                Ok(0)
            }
            _ if directory && image_has_entries(state, canon.as_bytes()) => Err(sys::ENOTEMPTY),
            Place::Upper => {
                root::forget(&host);
                crate::host::unlink(&host, flags)?;
                if directory {
                    upper::dirs_changed(state);
                }
                whiteout_if_in_image(state, &canon)?;
                Ok(0)
            }
            _ => {
                make_upper_parents(canon.as_bytes())?;
                upper::set_whiteout(
                    state,
                    image_key(canon.as_bytes()),
                    Some(lpmx_union::upper::DELETED),
                )?;
                Ok(0)
            }
        }
    })();
    match result {
        Err(i32::MIN) => {
            let flags = if directory { AT_REMOVEDIR } else { 0 };
            c_ret(sys::unlinkat(dirfd, path.cast(), flags))
        }
        other => c_ret(other),
    }
}

fn whiteout_if_in_image(state: &State, canon: &Buf) -> Result<(), i32> {
    if in_image(state, canon.as_bytes()) {
        upper::set_whiteout(
            state,
            image_key(canon.as_bytes()),
            Some(lpmx_union::upper::DELETED),
        )
    } else {
        upper::changed_at(state, canon.as_bytes());
        Ok(())
    }
}

/// The device and inode of `found`'s file.
fn identity(found: &Found, host: &Buf) -> Option<(u64, u64)> {
    match found.stat {
        Some(st) => Some((st[0], st[1])),
        None => Stat::of(host).ok().map(|st| (st.0[0], st.0[1])),
    }
}

unsafe fn rename_at(
    olddir: i32,
    old: *const c_char,
    newdir: i32,
    new: *const c_char,
    flags: u32,
) -> c_int {
    const RENAME_NOREPLACE: u32 = 1;
    let state = state::get();
    let pass = || {
        c_ret(sys::renameat2(
            olddir,
            old.cast(),
            newdir,
            new.cast(),
            flags,
        ))
    };
    if !state.active {
        return pass();
    }
    let (old_given, new_given) = match (lpmx_sys::user::path(old), lpmx_sys::user::path(new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return c_ret(Err(e)),
    };
    let result = (|| {
        if flags & !RENAME_NOREPLACE != 0 {
            return Err(sys::EINVAL);
        }
        let (old_path, old_slash) = strip_slashes(old_given)?;
        let (new_path, new_slash) = strip_slashes(new_given)?;
        let (mut old_canon, mut old_host) = (Buf::new(), Buf::new());
        let (mut new_canon, mut new_host) = (Buf::new(), Buf::new());
        let from = translate_bytes(
            olddir,
            old_path.as_bytes(),
            false,
            &mut old_canon,
            &mut old_host,
        );
        let to = translate_bytes(
            newdir,
            new_path.as_bytes(),
            false,
            &mut new_canon,
            &mut new_host,
        );
        let (from, to) = match (from?, to?) {
            (Some(f), Some(t)) => (f, t),
            (None, None) => return Err(i32::MIN),
            _ => return Err(sys::EXDEV),
        };
        if from.last != Last::Name {
            return Err(sys::EBUSY);
        }
        if to.last != Last::Name {
            return Err(if flags & RENAME_NOREPLACE != 0 {
                sys::EEXIST
            } else {
                sys::EBUSY
            });
        }
        if from.place == Place::Missing {
            return Err(sys::ENOENT);
        }
        let from_dir = from.kind == KIND_DIR;
        if (old_slash || new_slash) && !from_dir {
            return Err(sys::ENOTDIR);
        }
        let target_exists = to.place != Place::Missing;
        if target_exists && flags & RENAME_NOREPLACE != 0 {
            return Err(sys::EEXIST);
        }
        if target_exists && identity(&from, &old_host) == identity(&to, &new_host) {
            // Two names of one file: nothing to do.
            return Ok(0);
        }
        if from_dir && crate::buf::is_under(new_canon.as_bytes(), old_canon.as_bytes()) {
            return Err(sys::EINVAL);
        }
        if target_exists {
            let to_dir = to.kind == KIND_DIR;
            if from_dir && !to_dir {
                return Err(sys::ENOTDIR);
            }
            if !from_dir && to_dir {
                return Err(sys::EISDIR);
            }
        }
        if perm::checking() {
            let from_parent = parent_meta(&from, &old_canon, &old_host)?;
            let from_meta = meta_of(&from, &old_canon, &old_host)?;
            perm::check_delete(&from_parent, &from_meta)?;
            let to_parent = parent_meta(&to, &new_canon, &new_host)?;
            if target_exists {
                perm::check_delete(&to_parent, &meta_of(&to, &new_canon, &new_host)?)?;
            } else {
                perm::check_create(&to_parent)?;
            }
            let same_parent = old_canon.as_bytes()[..old_canon
                .as_bytes()
                .iter()
                .rposition(|&b| b == b'/')
                .unwrap_or(0)]
                == new_canon.as_bytes()[..new_canon
                    .as_bytes()
                    .iter()
                    .rposition(|&b| b == b'/')
                    .unwrap_or(0)];
            if from_dir && !same_parent {
                // Its `..` changes.
                perm::check(&from_meta, MAY_WRITE)?;
            }
        }
        if from.under_bind || to.under_bind {
            if from.under_bind && to.under_bind {
                crate::host::rename(&old_host, &new_host, flags)?;
                if from_dir {
                    upper::dirs_changed(state);
                }
                return Ok(0);
            }
            return Err(sys::EXDEV);
        }
        // A directory of the image would need its whole tree copied up:
        // refused as overlayfs does, and mv copies instead.
        if from_dir && in_image(state, old_canon.as_bytes()) {
            return Err(sys::EXDEV);
        }
        if target_exists && to.kind == KIND_DIR && image_has_entries(state, new_canon.as_bytes()) {
            return Err(sys::ENOTEMPTY);
        }
        writable(&from, &old_canon, &mut old_host)?;
        make_upper_parents(new_canon.as_bytes())?;
        let mut target = Buf::from(state.upper)?;
        target.push(new_canon.as_bytes())?;
        // Replacing an entry: its record goes with its last name.
        root::forget(&target);
        let result = crate::host::rename(&old_host, &target, 0);
        if from_dir || to.kind == KIND_DIR {
            upper::dirs_changed(state);
        }
        result?;
        created(state, new_canon.as_bytes(), from_dir);
        let _ = whiteout_if_in_image(state, &old_canon);
        Ok(0)
    })();
    match result {
        Err(i32::MIN) => pass(),
        other => c_ret(other),
    }
}

export! {
    fn mkdir(path: *const c_char, mode: u32) -> c_int { mkdir_at(sys::AT_FDCWD, path, mode) }
    fn mkdirat(dirfd: c_int, path: *const c_char, mode: u32) -> c_int { mkdir_at(dirfd, path, mode) }
    fn symlink(target: *const c_char, path: *const c_char) -> c_int { symlink_at(target, sys::AT_FDCWD, path) }
    fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int { symlink_at(target, dirfd, path) }
    fn mknod(path: *const c_char, mode: u32, device: u64) -> c_int { mknod_at(sys::AT_FDCWD, path, mode, device) }
    fn mknodat(dirfd: c_int, path: *const c_char, mode: u32, device: u64) -> c_int { mknod_at(dirfd, path, mode, device) }
    fn __xmknod(_ver: c_int, path: *const c_char, mode: u32, device: *const u64) -> c_int {
        mknod_at(sys::AT_FDCWD, path, mode, if device.is_null() { 0 } else { *device })
    }
    fn __xmknodat(_ver: c_int, dirfd: c_int, path: *const c_char, mode: u32, device: *const u64) -> c_int {
        mknod_at(dirfd, path, mode, if device.is_null() { 0 } else { *device })
    }
    fn mkfifo(path: *const c_char, mode: u32) -> c_int { mknod_at(sys::AT_FDCWD, path, (mode & 0o7777) | 0o010000, 0) }
    fn mkfifoat(dirfd: c_int, path: *const c_char, mode: u32) -> c_int { mknod_at(dirfd, path, (mode & 0o7777) | 0o010000, 0) }
    fn link(old: *const c_char, new: *const c_char) -> c_int { link_at(sys::AT_FDCWD, old, sys::AT_FDCWD, new, 0) }
    fn linkat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_int) -> c_int {
        link_at(olddir, old, newdir, new, flags)
    }
    fn unlink(path: *const c_char) -> c_int { remove_at(sys::AT_FDCWD, path, false) }
    fn rmdir(path: *const c_char) -> c_int { remove_at(sys::AT_FDCWD, path, true) }
    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
        if flags & !AT_REMOVEDIR != 0 {
            return c_ret(Err(sys::EINVAL));
        }
        remove_at(dirfd, path, flags & AT_REMOVEDIR != 0)
    }
    fn rename(old: *const c_char, new: *const c_char) -> c_int { rename_at(sys::AT_FDCWD, old, sys::AT_FDCWD, new, 0) }
    fn renameat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char) -> c_int {
        rename_at(olddir, old, newdir, new, 0)
    }
    fn renameat2(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: u32) -> c_int {
        rename_at(olddir, old, newdir, new, flags)
    }
}
