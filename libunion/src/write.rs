//! The write side: every change lands in the writable layer. A file of the
//! image is copied up (bytes, holes, mode, times) before its first change;
//! deleting or renaming away an image path records a whiteout
//! (`upper::set_whiteout`); the image's layers are never written.

use core::ffi::{c_char, c_int, c_void};

use crate::buf::{Buf, cstr};
use crate::fs::{export, translate};
use crate::index::KIND_DIR;
use crate::resolve::{Found, Place};
use crate::state::{self, State};
use crate::sys::{self, c_ret, set_errno};
use crate::upper;

/// The stat fields libunion reads (x86_64 `struct stat`).
struct Stat([u64; 18]);

impl Stat {
    fn of(path: *const u8) -> Result<Stat, i32> {
        let mut st = Stat([0; 18]);
        sys::fstatat(
            sys::AT_FDCWD,
            path,
            st.0.as_mut_ptr().cast(),
            sys::AT_SYMLINK_NOFOLLOW,
        )?;
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
/// image's (mode, times), writable by their owner so files go in.
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
    if Stat::of(dir.c()).is_ok_and(|st| st.mode() & sys::S_IFMT == sys::S_IFDIR) {
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
        if let Some(entry) = index.lookup(image_key(inside)) {
            let mut lower = Buf::from(index.layer_root(entry.layer))?;
            lower.push(inside)?;
            if let Ok(st) = Stat::of(lower.c()) {
                mode = (st.mode() & 0o7777) | 0o700;
            }
        }
        match sys::mkdir(dir.c(), mode) {
            // Only a new top-level directory changes the processes' caches.
            Ok(_) => made |= dir.len() == state.upper.len() + 1 + component.len(),
            Err(17) => {} // EEXIST
            Err(e) => return Err(e),
        }
    }
    if made {
        upper::changed(state);
    }
    Ok(())
}

/// Copies image file `canon` (at `lower` in its layer) into the writable
/// layer and returns its path there.
pub fn copy_up(state: &State, canon: &[u8], lower: &Buf) -> Result<Buf, i32> {
    make_upper_parents(canon)?;
    let mut target = Buf::from(state.upper)?;
    target.push(canon)?;
    let st = Stat::of(lower.c())?;
    match st.mode() & sys::S_IFMT {
        sys::S_IFLNK => {
            let mut link = Buf::new();
            let len =
                sys::readlinkat(sys::AT_FDCWD, lower.c(), link.spare(), crate::buf::CAPACITY)?;
            link.set_len(len);
            match sys::symlink(link.c(), target.c()) {
                Ok(_) | Err(17) => {}
                Err(e) => return Err(e),
            }
        }
        sys::S_IFDIR => match sys::mkdir(target.c(), (st.mode() & 0o7777) | 0o700) {
            Ok(_) | Err(17) => {}
            Err(e) => return Err(e),
        },
        _ => copy_file(lower, &target, &st)?,
    }
    crate::root::inherit(&target, canon);
    upper::changed_at(state, canon);
    Ok(target)
}

/// Copies a regular file's bytes (holes kept), mode and times, appearing
/// whole by rename.
fn copy_file(from: &Buf, to: &Buf, st: &Stat) -> Result<(), i32> {
    let mut temp = Buf::from(to.as_bytes())?;
    temp.push(b".lpmx-copy-up")?;
    let source = sys::openat(sys::AT_FDCWD, from.c(), sys::O_CLOEXEC, 0)? as i32;
    let result = (|| {
        let target = sys::openat(
            sys::AT_FDCWD,
            temp.c(),
            sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC | sys::O_CLOEXEC,
            0o600,
        )? as i32;
        let copied = copy_data(source, target, st.size())
            .and_then(|()| sys::ftruncate(target, st.size()).map(|_| ()))
            .and_then(|()| sys::fchmod(target, st.mode() & 0o7777).map(|_| ()))
            .and_then(|()| sys::futimens(target, &st.times()).map(|_| ()));
        let _ = sys::close(target);
        copied?;
        sys::rename(temp.c(), to.c()).map(|_| ())
    })();
    let _ = sys::close(source);
    if result.is_err() {
        let _ = sys::unlink(temp.c());
    }
    result
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

/// The host path to change for `path`: its writable-layer copy, made
/// first when it is the image's. `Ok(None)`: pass the call through.
///
/// # Safety
/// `path` is null or a C string.
pub unsafe fn for_change(
    dirfd: i32,
    path: *const c_char,
    follow: bool,
    canon: &mut Buf,
) -> Result<Option<Buf>, i32> {
    let mut host = Buf::new();
    // SAFETY: as the caller's.
    let Some(found) = (unsafe { translate(dirfd, path, follow, canon, &mut host)? }) else {
        return Ok(None);
    };
    match found.place {
        Place::Missing => Err(sys::ENOENT),
        Place::Lower(_) => copy_up(state::get(), canon.as_bytes(), &host).map(Some),
        _ => Ok(Some(host)),
    }
}

/// The host path where `path` (which must not exist) is to be created.
unsafe fn for_create(dirfd: i32, path: *const c_char, canon: &mut Buf) -> Result<Option<Buf>, i32> {
    let mut host = Buf::new();
    // SAFETY: as the caller's.
    let Some(found) = (unsafe { translate(dirfd, path, false, canon, &mut host)? }) else {
        return Ok(None);
    };
    match found.place {
        Place::Missing => {
            make_upper_parents(canon.as_bytes())?;
            Ok(Some(host))
        }
        Place::Bind => Ok(Some(host)),
        _ => Err(sys::EEXIST),
    }
}

/// A new non-directory at `canon` replaces whatever the image had there.
fn created(state: &State, canon: &[u8], dir: bool) {
    let key = image_key(canon);
    if upper::has_whiteout(state, key) {
        let kind = if dir && state.index.is_some_and(|i| i.position(key).is_some()) {
            Some(b'O')
        } else {
            None
        };
        let _ = upper::set_whiteout(state, key, kind);
    } else {
        upper::changed_at(state, canon);
    }
}

macro_rules! change {
    ($dirfd:expr, $path:expr, $follow:expr, |$host:ident| $call:expr, $pass:expr) => {{
        let mut canon = Buf::new();
        // Used inside `export!` bodies, which are unsafe blocks already.
        match for_change($dirfd, $path, $follow, &mut canon) {
            Ok(Some($host)) => c_ret($call),
            Ok(None) => c_ret($pass),
            Err(e) => c_ret(Err(e)),
        }
    }};
}

export! {
    fn truncate(path: *const c_char, length: i64) -> c_int {
        change!(sys::AT_FDCWD, path, true, |host| sys::truncate(host.c(), length), sys::truncate(path.cast(), length))
    }
    fn truncate64(path: *const c_char, length: i64) -> c_int {
        change!(sys::AT_FDCWD, path, true, |host| sys::truncate(host.c(), length), sys::truncate(path.cast(), length))
    }
    fn chmod(path: *const c_char, mode: u32) -> c_int {
        change!(sys::AT_FDCWD, path, true, |host| sys::fchmodat(sys::AT_FDCWD, host.c(), mode), sys::fchmodat(sys::AT_FDCWD, path.cast(), mode))
    }
    fn fchmodat(dirfd: c_int, path: *const c_char, mode: u32, flags: c_int) -> c_int {
        let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
        change!(dirfd, path, follow, |host| sys::fchmodat(sys::AT_FDCWD, host.c(), mode), sys::fchmodat(dirfd, path.cast(), mode))
    }
    fn utimensat(dirfd: c_int, path: *const c_char, times: *const c_void, flags: c_int) -> c_int {
        if path.is_null() {
            return c_ret(sys::utimensat(dirfd, core::ptr::null(), times, flags));
        }
        let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
        change!(dirfd, path, follow, |host| sys::utimensat(sys::AT_FDCWD, host.c(), times, flags), sys::utimensat(dirfd, path.cast(), times, flags))
    }
    fn utimes(path: *const c_char, times: *const [i64; 4]) -> c_int {
        let spec = timevals(times);
        let p = spec.as_ref().map_or(core::ptr::null(), |s| s.as_ptr().cast());
        change!(sys::AT_FDCWD, path, true, |host| sys::utimensat(sys::AT_FDCWD, host.c(), p, 0), sys::utimensat(sys::AT_FDCWD, path.cast(), p, 0))
    }
    fn lutimes(path: *const c_char, times: *const [i64; 4]) -> c_int {
        let spec = timevals(times);
        let p = spec.as_ref().map_or(core::ptr::null(), |s| s.as_ptr().cast());
        let nofollow = sys::AT_SYMLINK_NOFOLLOW;
        change!(sys::AT_FDCWD, path, false, |host| sys::utimensat(sys::AT_FDCWD, host.c(), p, nofollow), sys::utimensat(sys::AT_FDCWD, path.cast(), p, nofollow))
    }
    fn utime(path: *const c_char, times: *const [i64; 2]) -> c_int {
        let spec = if times.is_null() { None } else { let t = *times; Some([t[0], 0, t[1], 0]) };
        let p = spec.as_ref().map_or(core::ptr::null(), |s| s.as_ptr().cast());
        change!(sys::AT_FDCWD, path, true, |host| sys::utimensat(sys::AT_FDCWD, host.c(), p, 0), sys::utimensat(sys::AT_FDCWD, path.cast(), p, 0))
    }
}

// Owners: as the invoking user the kernel decides (chown to oneself
// succeeds); the writable layer's copy is what changes.
export! {
    fn chown(path: *const c_char, uid: u32, gid: u32) -> c_int {
        change!(sys::AT_FDCWD, path, true, |host| owner_change(&host, true, uid, gid), sys::fchownat(sys::AT_FDCWD, path.cast(), uid, gid, 0))
    }
    fn lchown(path: *const c_char, uid: u32, gid: u32) -> c_int {
        let nofollow = sys::AT_SYMLINK_NOFOLLOW;
        change!(sys::AT_FDCWD, path, false, |host| owner_change(&host, false, uid, gid), sys::fchownat(sys::AT_FDCWD, path.cast(), uid, gid, nofollow))
    }
    fn fchownat(dirfd: c_int, path: *const c_char, uid: u32, gid: u32, flags: c_int) -> c_int {
        if cstr(path).is_empty() {
            if crate::root::active() {
                return c_ret(crate::root::chown_fd(dirfd, uid, gid).map(|()| 0));
            }
            return c_ret(sys::fchownat(dirfd, path.cast(), uid, gid, flags));
        }
        let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
        change!(dirfd, path, follow, |host| owner_change(&host, follow, uid, gid), sys::fchownat(dirfd, path.cast(), uid, gid, flags))
    }
    fn setxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: usize, flags: c_int) -> c_int {
        change!(sys::AT_FDCWD, path, true, |host| sys::setxattr(sys::SYS_SETXATTR, host.c(), name, value, size, flags), sys::setxattr(sys::SYS_SETXATTR, path.cast(), name, value, size, flags))
    }
    fn lsetxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: usize, flags: c_int) -> c_int {
        change!(sys::AT_FDCWD, path, false, |host| sys::setxattr(sys::SYS_LSETXATTR, host.c(), name, value, size, flags), sys::setxattr(sys::SYS_LSETXATTR, path.cast(), name, value, size, flags))
    }
    fn removexattr(path: *const c_char, name: *const c_char) -> c_int {
        change!(sys::AT_FDCWD, path, true, |host| sys::removexattr(sys::SYS_REMOVEXATTR, host.c(), name), sys::removexattr(sys::SYS_REMOVEXATTR, path.cast(), name))
    }
    fn lremovexattr(path: *const c_char, name: *const c_char) -> c_int {
        change!(sys::AT_FDCWD, path, false, |host| sys::removexattr(sys::SYS_LREMOVEXATTR, host.c(), name), sys::removexattr(sys::SYS_LREMOVEXATTR, path.cast(), name))
    }
}

/// chown of the writable layer's `host`: recorded under fake root, done by
/// the kernel otherwise.
fn owner_change(host: &Buf, follow: bool, uid: u32, gid: u32) -> sys::Sys {
    if crate::root::active() {
        return crate::root::chown_host(host, follow, uid, gid).map(|()| 0);
    }
    let flags = if follow { 0 } else { sys::AT_SYMLINK_NOFOLLOW };
    sys::fchownat(sys::AT_FDCWD, host.c(), uid, gid, flags)
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

unsafe fn mkdir_at(dirfd: i32, path: *const c_char, mode: u32) -> c_int {
    let mut canon = Buf::new();
    // SAFETY: the caller's C path.
    match unsafe { for_create(dirfd, path, &mut canon) } {
        Ok(Some(host)) => {
            let result = sys::mkdir(host.c(), mode);
            if result.is_ok() {
                created(state::get(), canon.as_bytes(), true);
            }
            c_ret(result)
        }
        Ok(None) => c_ret(sys::mkdirat(dirfd, path.cast(), mode)),
        Err(e) => c_ret(Err(e)),
    }
}

unsafe fn symlink_at(target: *const c_char, dirfd: i32, path: *const c_char) -> c_int {
    let mut canon = Buf::new();
    // SAFETY: the caller's C path.
    match unsafe { for_create(dirfd, path, &mut canon) } {
        Ok(Some(host)) => {
            let result = sys::symlink(target.cast(), host.c());
            if result.is_ok() {
                created(state::get(), canon.as_bytes(), false);
            }
            c_ret(result)
        }
        Ok(None) => c_ret(sys::symlinkat(target.cast(), dirfd, path.cast())),
        Err(e) => c_ret(Err(e)),
    }
}

unsafe fn mknod_at(dirfd: i32, path: *const c_char, mode: u32, device: u64) -> c_int {
    let mut canon = Buf::new();
    // SAFETY: the caller's C path.
    match unsafe { for_create(dirfd, path, &mut canon) } {
        Ok(Some(host)) => {
            let kind = mode & sys::S_IFMT;
            let device_node = kind == 0o020000 || kind == 0o060000;
            let result = if device_node && crate::root::active() {
                // A device node as root would make it: a placeholder file
                // whose type and number are recorded.
                // The placeholder's permissions are what the umask left.
                sys::mknodat(sys::AT_FDCWD, host.c(), 0o100000 | (mode & 0o7777), 0).and_then(|r| {
                    let mut st = [0u64; 18];
                    sys::fstatat(
                        sys::AT_FDCWD,
                        host.c(),
                        st.as_mut_ptr().cast(),
                        sys::AT_SYMLINK_NOFOLLOW,
                    )?;
                    let perms = (st[3] & 0o7777) as u32;
                    crate::root::record(host.c(), false, 0, 0, kind | perms, device).map(|()| r)
                })
            } else {
                sys::mknodat(sys::AT_FDCWD, host.c(), mode, device)
            };
            if result.is_ok() {
                created(state::get(), canon.as_bytes(), false);
            }
            c_ret(result)
        }
        Ok(None) => c_ret(sys::mknodat(dirfd, path.cast(), mode, device)),
        Err(e) => c_ret(Err(e)),
    }
}

unsafe fn link_at(
    olddir: i32,
    old: *const c_char,
    newdir: i32,
    new: *const c_char,
    flags: i32,
) -> c_int {
    const AT_SYMLINK_FOLLOW: i32 = 0x400;
    let (mut old_canon, mut new_canon) = (Buf::new(), Buf::new());
    // SAFETY: the caller's C paths.
    let from = unsafe { for_change(olddir, old, flags & AT_SYMLINK_FOLLOW != 0, &mut old_canon) };
    // SAFETY: as above.
    let to = unsafe { for_create(newdir, new, &mut new_canon) };
    match (from, to) {
        (Ok(Some(from)), Ok(Some(to))) => {
            let result = sys::linkat(sys::AT_FDCWD, from.c(), sys::AT_FDCWD, to.c(), 0);
            if result.is_ok() {
                created(state::get(), new_canon.as_bytes(), false);
            }
            c_ret(result)
        }
        (Ok(None), Ok(None)) => c_ret(sys::linkat(olddir, old.cast(), newdir, new.cast(), flags)),
        (Err(e), _) | (_, Err(e)) => c_ret(Err(e)),
        _ => c_ret(Err(sys::EXDEV)),
    }
}

/// Whether merged directory `canon` has no entry.
fn merged_empty(canon: &Buf) -> bool {
    // SAFETY: a C path.
    let dir = unsafe { crate::dir::open_dir_at(sys::AT_FDCWD, canon.c().cast()) };
    if dir.is_null() {
        return false;
    }
    let empty = crate::dir::is_empty(dir);
    // SAFETY: ours.
    unsafe { crate::dir::closedir(dir) };
    empty
}

unsafe fn remove_at(dirfd: i32, path: *const c_char, directory: bool) -> c_int {
    const AT_REMOVEDIR: i32 = 0x200;
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let state = state::get();
    // SAFETY: the caller's C path.
    let found = match unsafe { translate(dirfd, path, false, &mut canon, &mut host) } {
        Ok(Some(found)) => found,
        Ok(None) => {
            return c_ret(sys::unlinkat(
                dirfd,
                path.cast(),
                if directory { AT_REMOVEDIR } else { 0 },
            ));
        }
        Err(e) => return c_ret(Err(e)),
    };
    let is_dir = found.kind == KIND_DIR;
    let result = match found.place {
        Place::Missing => Err(sys::ENOENT),
        Place::Bind => sys::unlinkat(
            sys::AT_FDCWD,
            host.c(),
            if directory { AT_REMOVEDIR } else { 0 },
        )
        .map(|_| 0),
        _ if directory && !is_dir => Err(sys::ENOTDIR),
        _ if !directory && is_dir => Err(sys::EISDIR),
        _ if directory && !merged_empty(&canon) => Err(sys::ENOTEMPTY),
        Place::Upper => {
            crate::root::forget(host.c());
            let removed = if directory {
                remove_upper_dir(&host)
            } else {
                sys::unlink(host.c()).map(|_| ())
            };
            removed
                .and_then(|()| whiteout_if_in_image(state, &canon))
                .map(|()| 0)
        }
        Place::Lower(_) => make_upper_parents(canon.as_bytes())
            .and_then(|()| upper::set_whiteout(state, image_key(canon.as_bytes()), Some(b'W')))
            .map(|()| 0),
    };
    c_ret(result)
}

/// Removes an upper directory that shows nothing (the merged view is
/// empty, so nothing in it is visible).
fn remove_upper_dir(host: &Buf) -> Result<(), i32> {
    let result = sys::unlinkat(sys::AT_FDCWD, host.c(), 0x200).map(|_| ());
    crate::upper::dirs_changed(state::get());
    result
}

fn whiteout_if_in_image(state: &State, canon: &Buf) -> Result<(), i32> {
    if in_image(state, canon.as_bytes()) {
        upper::set_whiteout(state, image_key(canon.as_bytes()), Some(b'W'))
    } else {
        upper::changed_at(state, canon.as_bytes());
        Ok(())
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
    let (mut old_canon, mut old_host) = (Buf::new(), Buf::new());
    let (mut new_canon, mut new_host) = (Buf::new(), Buf::new());
    // SAFETY: the caller's C paths.
    let from = unsafe { translate(olddir, old, false, &mut old_canon, &mut old_host) };
    // SAFETY: as above.
    let to = unsafe { translate(newdir, new, false, &mut new_canon, &mut new_host) };
    let (from, to): (Found, Found) = match (from, to) {
        (Ok(Some(f)), Ok(Some(t))) => (f, t),
        (Ok(None), Ok(None)) => {
            return c_ret(sys::renameat2(
                olddir,
                old.cast(),
                newdir,
                new.cast(),
                flags,
            ));
        }
        (Err(e), _) | (_, Err(e)) => return c_ret(Err(e)),
        _ => return c_ret(Err(sys::EXDEV)),
    };
    if flags & !RENAME_NOREPLACE != 0 {
        return c_ret(Err(sys::EINVAL));
    }
    if from.place == Place::Missing {
        return c_ret(Err(sys::ENOENT));
    }
    if flags & RENAME_NOREPLACE != 0 && to.place != Place::Missing {
        return c_ret(Err(sys::EEXIST));
    }
    if from.place == Place::Bind || to.place == Place::Bind {
        if from.place == Place::Bind && to.place == Place::Bind {
            return c_ret(sys::renameat2(
                sys::AT_FDCWD,
                old_host.c(),
                sys::AT_FDCWD,
                new_host.c(),
                flags,
            ));
        }
        return c_ret(Err(sys::EXDEV));
    }
    // A directory of the image would need its whole tree copied up:
    // refused as overlayfs does, and mv copies instead.
    let from_dir = from.kind == KIND_DIR;
    if from_dir && in_image(state, old_canon.as_bytes()) {
        return c_ret(Err(sys::EXDEV));
    }
    if to.kind == KIND_DIR && in_image(state, new_canon.as_bytes()) {
        if !from_dir {
            return c_ret(Err(sys::EISDIR));
        }
        if !merged_empty(&new_canon) {
            return c_ret(Err(sys::ENOTEMPTY));
        }
    }
    if let Place::Lower(_) = from.place {
        match copy_up(state, old_canon.as_bytes(), &old_host) {
            Ok(host) => old_host = host,
            Err(e) => return c_ret(Err(e)),
        }
    }
    if let Err(e) = make_upper_parents(new_canon.as_bytes()) {
        return c_ret(Err(e));
    }
    let mut target = match Buf::from(state.upper) {
        Ok(b) => b,
        Err(e) => return c_ret(Err(e)),
    };
    if let Err(e) = target.push(new_canon.as_bytes()) {
        return c_ret(Err(e));
    }
    // Replacing an image entry: the upper copy shadows it.
    crate::root::forget(target.c());
    let result = sys::rename(old_host.c(), target.c());
    if from_dir || to.kind == KIND_DIR {
        crate::upper::dirs_changed(state);
    }
    if result.is_ok() {
        created(state, new_canon.as_bytes(), from_dir);
        let _ = whiteout_if_in_image(state, &old_canon);
    }
    c_ret(result)
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
    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int { remove_at(dirfd, path, flags & 0x200 != 0) }
    fn remove(path: *const c_char) -> c_int {
        let mut st = [0u64; 18];
        if crate::fs::stat_at(sys::AT_FDCWD, path, st.as_mut_ptr().cast(), sys::AT_SYMLINK_NOFOLLOW) != 0 {
            return -1;
        }
        let directory = (st[3] as u32) & sys::S_IFMT == sys::S_IFDIR;
        remove_at(sys::AT_FDCWD, path, directory)
    }
    fn rename(old: *const c_char, new: *const c_char) -> c_int { rename_at(sys::AT_FDCWD, old, sys::AT_FDCWD, new, 0) }
    fn renameat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char) -> c_int {
        rename_at(olddir, old, newdir, new, 0)
    }
    fn renameat2(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: u32) -> c_int {
        rename_at(olddir, old, newdir, new, flags)
    }
}

// mkstemp and friends: glibc creates the file with its internal open,
// past libunion, so they are libunion's own.
unsafe fn temp_at(template: *mut c_char, suffix: usize, flags: i32, directory: bool) -> c_int {
    // SAFETY: the caller's writable C string.
    let bytes = unsafe { cstr(template) };
    let len = bytes.len();
    if len < 6 + suffix || &bytes[len - 6 - suffix..len - suffix] != b"XXXXXX" {
        set_errno(sys::EINVAL);
        return -1;
    }
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for _ in 0..1000 {
        let mut random = [0u8; 6];
        let _ = sys::getrandom(&mut random);
        for (i, r) in random.iter().enumerate() {
            // SAFETY: within the template.
            unsafe {
                *template.add(len - 6 - suffix + i) =
                    LETTERS[usize::from(*r) % LETTERS.len()] as c_char
            };
        }
        let result = if directory {
            // SAFETY: a C path.
            unsafe { mkdir_at(sys::AT_FDCWD, template, 0o700) }
        } else {
            // SAFETY: as above.
            unsafe {
                crate::fs::open_at(
                    sys::AT_FDCWD,
                    template,
                    sys::O_RDWR | sys::O_CREAT | sys::O_EXCL | flags,
                    0o600,
                )
            }
        };
        if result >= 0 || sys::errno() != 17 {
            return result;
        }
    }
    set_errno(17);
    -1
}

export! {
    fn mkstemp(template: *mut c_char) -> c_int { temp_at(template, 0, 0, false) }
    fn mkstemp64(template: *mut c_char) -> c_int { temp_at(template, 0, 0, false) }
    fn mkostemp(template: *mut c_char, flags: c_int) -> c_int { temp_at(template, 0, flags, false) }
    fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int { temp_at(template, 0, flags, false) }
    fn mkstemps(template: *mut c_char, suffix: c_int) -> c_int { temp_at(template, suffix.max(0) as usize, 0, false) }
    fn mkstemps64(template: *mut c_char, suffix: c_int) -> c_int { temp_at(template, suffix.max(0) as usize, 0, false) }
    fn mkostemps(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int { temp_at(template, suffix.max(0) as usize, flags, false) }
    fn mkostemps64(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int { temp_at(template, suffix.max(0) as usize, flags, false) }
    fn mkdtemp(template: *mut c_char) -> *mut c_char {
        if temp_at(template, 0, 0, true) == 0 { template } else { core::ptr::null_mut() }
    }
}
