//! The path functions: open, stat, access, readlink, realpath, the
//! current directory, dlopen, remove and mkstemp's family (the last two
//! over `write`'s operations). Each resolves its path through the stack
//! and calls the kernel (or the next libc) on the host file, answering as
//! the kernel would where the two differ (creation through a trailing
//! slash or a dangling symlink, fake root's access rules).

use core::ffi::{c_char, c_int, c_void};

use crate::buf::{Buf, cstr};
use crate::export::export;
use crate::index::{KIND_DIR, KIND_SYMLINK};
use crate::paths::{meta_of, parent_meta, translate};
use crate::perm::{self, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::resolve::{Found, Last, Place};
use crate::state::{self, is_self_exe};
use crate::sys::{self, c_ret, real, set_errno};

fn writes(flags: i32) -> bool {
    flags & (sys::O_WRONLY | sys::O_RDWR | sys::O_TRUNC) != 0
        || flags & sys::O_TMPFILE == sys::O_TMPFILE
}

/// The access an open with `flags` asks for.
fn wanted(flags: i32) -> u32 {
    let mut want = match flags & sys::O_ACCMODE {
        0 => MAY_READ,
        1 => MAY_WRITE,
        _ => MAY_READ | MAY_WRITE,
    };
    if flags & sys::O_TRUNC != 0 {
        want |= MAY_WRITE;
    }
    want
}

/// Where a file opened with `flags` is: `Ok(None)` passes through; the
/// found file otherwise (`host` the file to open).
///
/// # Safety
/// `path` is null or a C string.
unsafe fn open_target(
    dirfd: i32,
    path: *const c_char,
    flags: i32,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Option<Found>, i32> {
    let create = flags & sys::O_CREAT != 0;
    let exclusive = create && flags & sys::O_EXCL != 0;
    // With O_CREAT|O_EXCL a final symlink is not followed: it exists.
    let follow = flags & sys::O_NOFOLLOW == 0 && !exclusive;
    // SAFETY: as the caller's.
    let Some(found) = (unsafe { translate(dirfd, path, follow, canon, host)? }) else {
        return Ok(None);
    };
    let checking = perm::checking();
    if found.place == Place::Missing {
        if !create {
            return Err(sys::ENOENT);
        }
        if found.slash || found.last != Last::Name {
            return Err(sys::EISDIR);
        }
        if checking {
            perm::check_create(&parent_meta(&found, canon, host)?)?;
        }
        if !found.under_bind {
            crate::write::make_upper_parents(canon.as_bytes())?;
        }
        return Ok(Some(found));
    }
    if exclusive {
        return Err(sys::EEXIST);
    }
    let tmpfile = flags & sys::O_TMPFILE == sys::O_TMPFILE;
    if found.kind == KIND_DIR && !tmpfile && wanted(flags) & MAY_WRITE != 0 {
        return Err(sys::EISDIR);
    }
    if found.kind == KIND_SYMLINK && flags & sys::O_NOFOLLOW != 0 && flags & sys::O_PATH == 0 {
        return Err(sys::ELOOP);
    }
    if checking && flags & sys::O_PATH == 0 {
        let meta = meta_of(&found, canon, host)?;
        if !tmpfile {
            perm::check(&meta, wanted(flags))?;
        } else {
            perm::check_create(&meta)?;
        }
    }
    if let Place::Lower(_) = found.place
        && writes(flags)
    {
        *host = crate::write::copy_up(state::get(), canon.as_bytes(), host)?;
    }
    if checking && writes(flags) && !found.under_bind {
        // A write by anyone but root takes the set-user-ID and
        // set-group-ID bits off; libunion sees the open, not the writes.
        crate::write::drop_privileges_of(host);
    }
    Ok(Some(found))
}

/// After a successful open of `found`: what libunion remembers of the
/// descriptor, and a new file's owner under fake root.
fn opened(fd: i32, found: &Found, flags: i32, canon: &Buf, host: &Buf) {
    let state = state::get();
    if found.kind == KIND_DIR || flags & sys::O_DIRECTORY != 0 {
        match crate::resolve::identity_of(state, found, canon.as_bytes()) {
            Some(id) => crate::fdpaths::remember_fd_as(fd, id, canon.as_bytes()),
            None => crate::fdpaths::remember_fd(fd, canon.as_bytes()),
        }
    } else {
        crate::fdpaths::forget_fd(fd);
    }
    let upper = match found.place {
        Place::Upper => true,
        Place::Lower(_) => writes(flags),
        Place::Missing => !found.under_bind,
        Place::Bind => false,
    };
    if upper {
        crate::fdpaths::mark_upper_fd(fd);
    }
    if found.place == Place::Missing {
        if state.root && !found.under_bind {
            let parent = parent_meta(found, canon, host).ok();
            crate::write::created_as_root(Some(fd), host, parent.as_ref(), false);
        }
        crate::upper::changed_at(state, canon.as_bytes());
    }
}

/// open(2) through the stack.
///
/// # Safety
/// `path` is null or a C string.
pub unsafe fn open_at(dirfd: i32, path: *const c_char, flags: i32, mode: u32) -> c_int {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    match unsafe { open_target(dirfd, path, flags, &mut canon, &mut host) } {
        Ok(None) => {
            let result = sys::openat(dirfd, path.cast(), flags, mode);
            if let Ok(fd) = result {
                crate::fdpaths::forget_fd(fd as i32);
            }
            c_ret(result)
        }
        Ok(Some(mut found)) => {
            let mut result = if found.place == Place::Missing {
                // Made here: the final symlink, if any, was resolved.
                match crate::host::open(&host, flags | sys::O_EXCL, mode) {
                    // Another process made it first: open it as it is.
                    Err(sys::EEXIST) if flags & sys::O_EXCL == 0 => {
                        found.place = if found.under_bind {
                            Place::Bind
                        } else {
                            Place::Upper
                        };
                        Err(sys::EEXIST)
                    }
                    other => other,
                }
            } else {
                crate::host::open(&host, flags, mode)
            };
            if result == Err(sys::EEXIST) && flags & sys::O_EXCL == 0 {
                result = crate::host::open(&host, flags, mode);
            }
            if let Ok(fd) = result {
                opened(fd as i32, &found, flags, &canon, &host);
            }
            c_ret(result)
        }
        Err(e) => c_ret(Err(e)),
    }
}

// `open` and `openat` are variadic in C; on x86_64 the mode arrives in the
// register a fixed parameter reads.
export! {
    fn open(path: *const c_char, flags: c_int, mode: u32) -> c_int { open_at(sys::AT_FDCWD, path, flags, mode) }
    fn open64(path: *const c_char, flags: c_int, mode: u32) -> c_int { open_at(sys::AT_FDCWD, path, flags, mode) }
    fn __open_2(path: *const c_char, flags: c_int) -> c_int { open_at(sys::AT_FDCWD, path, flags, 0) }
    fn __open64_2(path: *const c_char, flags: c_int) -> c_int { open_at(sys::AT_FDCWD, path, flags, 0) }
    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: u32) -> c_int { open_at(dirfd, path, flags, mode) }
    fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: u32) -> c_int { open_at(dirfd, path, flags, mode) }
    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int { open_at(dirfd, path, flags, 0) }
    fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int { open_at(dirfd, path, flags, 0) }
    fn creat(path: *const c_char, mode: u32) -> c_int {
        open_at(sys::AT_FDCWD, path, sys::O_CREAT | sys::O_WRONLY | sys::O_TRUNC, mode)
    }
    fn creat64(path: *const c_char, mode: u32) -> c_int {
        open_at(sys::AT_FDCWD, path, sys::O_CREAT | sys::O_WRONLY | sys::O_TRUNC, mode)
    }
}

/// The open(2) flags of an fopen(3) mode.
fn fopen_flags(mode: &[u8]) -> i32 {
    let mut flags = match mode.first() {
        Some(b'w') => sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC,
        Some(b'a') => sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND,
        _ => 0,
    };
    let rest = mode.get(1..).unwrap_or(b"");
    if rest.contains(&b'+') {
        flags = (flags & !sys::O_WRONLY) | sys::O_RDWR;
    }
    if rest.contains(&b'x') {
        flags |= sys::O_EXCL;
    }
    if rest.contains(&b'e') {
        flags |= sys::O_CLOEXEC;
    }
    flags
}

type FdopenFn = unsafe extern "C" fn(c_int, *const c_char) -> *mut c_void;
type FreopenFn = unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void) -> *mut c_void;

/// fopen(3): libunion's open, then the real fdopen on the descriptor.
///
/// # Safety
/// `path` and `mode` are C strings.
unsafe fn stream_open(path: *const c_char, mode: *const c_char) -> *mut c_void {
    let Some(fdopen) = real!("fdopen": FdopenFn) else {
        set_errno(sys::ENOMEM);
        return core::ptr::null_mut();
    };
    let given = match lpmx_sys::user::c_str(mode, 64) {
        Ok(given) => given,
        Err(e) => {
            set_errno(e);
            return core::ptr::null_mut();
        }
    };
    if !matches!(given.first(), Some(b'r' | b'w' | b'a')) {
        set_errno(sys::EINVAL);
        return core::ptr::null_mut();
    }
    let flags = fopen_flags(given);
    // SAFETY: the caller's C path.
    let fd = unsafe { open_at(sys::AT_FDCWD, path, flags, 0o666) };
    if fd < 0 {
        return core::ptr::null_mut();
    }
    // fdopen's mode without what only fopen knows ('x'), with the rest.
    let mut stream_mode = [0u8; 16];
    let mut len = 0;
    for &b in given.iter().filter(|&&b| b != b'x') {
        if len + 1 < stream_mode.len() {
            stream_mode[len] = b;
            len += 1;
        }
    }
    // SAFETY: fd is ours, the mode a C string.
    let stream = unsafe { fdopen(fd, stream_mode.as_ptr().cast()) };
    if stream.is_null() {
        let errno = sys::errno();
        let _ = sys::close(fd);
        crate::fdpaths::forget_fd(fd);
        set_errno(errno);
    }
    stream
}

/// freopen(3): the real one, given the host path, after libunion's checks.
///
/// # Safety
/// `path` is null or a C string, `mode` a C string.
unsafe fn stream_reopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut c_void,
    real: FreopenFn,
) -> *mut c_void {
    if path.is_null() {
        // SAFETY: the caller's arguments.
        return unsafe { real(path, mode, stream) };
    }
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: the caller passes C strings.
    let flags = fopen_flags(unsafe { cstr(mode) });
    // SAFETY: as above.
    match unsafe { open_target(sys::AT_FDCWD, path, flags, &mut canon, &mut host) } {
        // SAFETY: the caller's arguments.
        Ok(None) => unsafe { real(path, mode, stream) },
        Ok(Some(found)) => {
            // SAFETY: the host path is a C string.
            let reopened = unsafe { real(host.c().cast(), mode, stream) };
            if !reopened.is_null() && found.place == Place::Missing {
                let state = state::get();
                if state.root {
                    let parent = parent_meta(&found, &canon, &host).ok();
                    crate::write::created_as_root(None, &host, parent.as_ref(), false);
                }
                crate::upper::changed_at(state, canon.as_bytes());
            }
            reopened
        }
        Err(e) => {
            set_errno(e);
            core::ptr::null_mut()
        }
    }
}

fn missing<T>() -> *mut T {
    set_errno(sys::ENOMEM);
    core::ptr::null_mut()
}

export! {
    fn fopen(path: *const c_char, mode: *const c_char) -> *mut c_void {
        stream_open(path, mode)
    }
    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut c_void {
        stream_open(path, mode)
    }
    fn freopen(path: *const c_char, mode: *const c_char, stream: *mut c_void) -> *mut c_void {
        let Some(real) = real!("freopen": FreopenFn) else { return missing() };
        stream_reopen(path, mode, stream, real)
    }
    fn freopen64(path: *const c_char, mode: *const c_char, stream: *mut c_void) -> *mut c_void {
        let Some(real) = real!("freopen64": FreopenFn) else { return missing() };
        stream_reopen(path, mode, stream, real)
    }
}

/// Copies a `struct stat` (144 bytes, as the kernel fills it) to `buf`.
///
/// # Safety
/// `buf` is room for a `struct stat`.
unsafe fn copy_stat(stat: &[u64; 18], buf: *mut c_void) {
    // SAFETY: as the caller promises.
    unsafe {
        core::ptr::copy_nonoverlapping(
            stat.as_ptr().cast::<u8>(),
            buf.cast::<u8>(),
            core::mem::size_of_val(stat),
        )
    };
}

/// fstatat(2) through the stack.
///
/// # Safety
/// `path` is null or a C string; `buf` a `struct stat`.
pub unsafe fn stat_at(dirfd: i32, path: *const c_char, buf: *mut c_void, flags: i32) -> c_int {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: as the caller's.
    match unsafe { translate(dirfd, path, follow, &mut canon, &mut host) } {
        Ok(None) => {
            let result = sys::fstatat(dirfd, path.cast(), buf, flags);
            if result.is_ok() && crate::root::active() {
                // SAFETY: as the caller's.
                if unsafe { cstr(path) }.is_empty() && flags & sys::AT_EMPTY_PATH != 0 {
                    crate::open_files::adjust_fd_stat(dirfd, buf);
                } else {
                    crate::root::adjust_stat(buf, None);
                }
            }
            c_ret(result)
        }
        Ok(Some(found)) => {
            let result = match (found.place, found.stat) {
                (Place::Missing, _) => Err(sys::ENOENT),
                // Resolving took this very lstat: no second call.
                (Place::Upper | Place::Bind, Some(stat))
                    if !follow || found.kind != KIND_SYMLINK =>
                {
                    // SAFETY: buf is the caller's struct stat.
                    unsafe { copy_stat(&stat, buf) };
                    Ok(0)
                }
                (Place::Bind, _) => crate::host::fstatat(&host, buf, flags & !sys::AT_EMPTY_PATH),
                (Place::Lower(_), _) => match crate::resolve::lower_stat(state::get(), &found) {
                    // The index's record: no system call.
                    Some(stat) => {
                        // SAFETY: buf is the caller's struct stat.
                        unsafe { copy_stat(&stat, buf) };
                        Ok(0)
                    }
                    None => crate::host::fstatat(&host, buf, sys::AT_SYMLINK_NOFOLLOW),
                },
                _ => crate::host::fstatat(&host, buf, sys::AT_SYMLINK_NOFOLLOW),
            };
            if result.is_ok() {
                crate::root::adjust_found(buf, found.place, canon.as_bytes());
            }
            c_ret(result)
        }
        Err(e) => c_ret(Err(e)),
    }
}

export! {
    fn stat(path: *const c_char, buf: *mut c_void) -> c_int { stat_at(sys::AT_FDCWD, path, buf, 0) }
    fn stat64(path: *const c_char, buf: *mut c_void) -> c_int { stat_at(sys::AT_FDCWD, path, buf, 0) }
    fn lstat(path: *const c_char, buf: *mut c_void) -> c_int {
        stat_at(sys::AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW)
    }
    fn lstat64(path: *const c_char, buf: *mut c_void) -> c_int {
        stat_at(sys::AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW)
    }
    fn fstatat(dirfd: c_int, path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int {
        stat_at(dirfd, path, buf, flags)
    }
    fn fstatat64(dirfd: c_int, path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int {
        stat_at(dirfd, path, buf, flags)
    }
    fn newfstatat(dirfd: c_int, path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int {
        stat_at(dirfd, path, buf, flags)
    }
    // glibc before 2.33 compiled stat() into calls of these; on x86_64 every
    // version number means the kernel's struct stat.
    fn __xstat(_ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
        stat_at(sys::AT_FDCWD, path, buf, 0)
    }
    fn __xstat64(_ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
        stat_at(sys::AT_FDCWD, path, buf, 0)
    }
    fn __lxstat(_ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
        stat_at(sys::AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW)
    }
    fn __lxstat64(_ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
        stat_at(sys::AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW)
    }
    fn __fxstatat(_ver: c_int, dirfd: c_int, path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int {
        stat_at(dirfd, path, buf, flags)
    }
    fn __fxstatat64(_ver: c_int, dirfd: c_int, path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int {
        stat_at(dirfd, path, buf, flags)
    }
    fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: u32, buf: *mut c_void) -> c_int {
        if !statx_arguments_valid(flags, mask) {
            // The kernel's answer, before any lookup (an answer from the
            // index would otherwise accept them).
            return c_ret(Err(sys::EINVAL));
        }
        let (mut canon, mut host) = (Buf::new(), Buf::new());
        let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
        match translate(dirfd, path, follow, &mut canon, &mut host) {
            Ok(None) => {
                let result = sys::statx(dirfd, path.cast(), flags, mask, buf);
                if result.is_ok() && crate::root::active() {
                    if cstr(path).is_empty() && flags & sys::AT_EMPTY_PATH != 0 {
                        crate::open_files::adjust_fd_statx(dirfd, buf);
                    } else {
                        crate::root::adjust_statx(buf, Place::Bind, b"");
                    }
                }
                c_ret(result)
            }
            Ok(Some(found)) => {
                let result = match found.place {
                    Place::Missing => Err(sys::ENOENT),
                    // The index's record: no system call.
                    Place::Lower(_) if crate::resolve::lower_statx(state::get(), &found, mask, buf) => Ok(0),
                    Place::Bind => crate::host::statx(&host, flags & !sys::AT_EMPTY_PATH, mask, buf),
                    _ => crate::host::statx(&host, (flags & !sys::AT_EMPTY_PATH) | sys::AT_SYMLINK_NOFOLLOW, mask, buf),
                };
                if result.is_ok() && crate::root::active() {
                    crate::root::adjust_statx(buf, found.place, canon.as_bytes());
                }
                c_ret(result)
            }
            Err(e) => c_ret(Err(e)),
        }
    }
}

const AT_EACCESS: i32 = 0x200;

/// Whether the kernel takes these `statx` flags and mask: only the lookup
/// and sync flags, one sync type, and no reserved mask bit.
fn statx_arguments_valid(flags: i32, mask: u32) -> bool {
    const AT_NO_AUTOMOUNT: i32 = 0x800;
    const AT_STATX_SYNC_TYPE: i32 = 0x6000;
    const STATX_RESERVED: u32 = 0x8000_0000;
    let known =
        sys::AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | sys::AT_EMPTY_PATH | AT_STATX_SYNC_TYPE;
    flags & !known == 0
        && flags & AT_STATX_SYNC_TYPE != AT_STATX_SYNC_TYPE
        && mask & STATX_RESERVED == 0
}

unsafe fn access_at(dirfd: i32, path: *const c_char, mode: i32, flags: i32) -> c_int {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    if mode & !7 != 0 {
        return c_ret(Err(sys::EINVAL));
    }
    // SAFETY: as the caller's.
    match unsafe { translate(dirfd, path, follow, &mut canon, &mut host) } {
        Ok(None) => c_ret(match sys::faccessat(dirfd, path.cast(), mode, flags) {
            Err(sys::ENOSYS) => sys::faccessat(dirfd, path.cast(), mode, 0),
            other => other,
        }),
        Ok(Some(found)) if found.place == Place::Missing => c_ret(Err(sys::ENOENT)),
        Ok(Some(found)) if crate::root::active() => {
            // Fake root's ids decide: the real ones, as access(2) uses, or
            // the effective ones with AT_EACCESS.
            let who = if flags & AT_EACCESS != 0 {
                perm::As::FileSystem
            } else {
                perm::As::Real
            };
            let result = meta_of(&found, &canon, &host)
                .and_then(|meta| perm::check_as(&meta, mode as u32, who));
            c_ret(result.map(|()| 0))
        }
        Ok(Some(_)) => c_ret(crate::host::access(
            &host,
            mode,
            flags & !sys::AT_SYMLINK_NOFOLLOW,
        )),
        Err(e) => c_ret(Err(e)),
    }
}

export! {
    fn access(path: *const c_char, mode: c_int) -> c_int { access_at(sys::AT_FDCWD, path, mode, 0) }
    fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int {
        access_at(dirfd, path, mode, flags)
    }
    fn eaccess(path: *const c_char, mode: c_int) -> c_int { access_at(sys::AT_FDCWD, path, mode, AT_EACCESS) }
    fn euidaccess(path: *const c_char, mode: c_int) -> c_int { access_at(sys::AT_FDCWD, path, mode, AT_EACCESS) }
}

unsafe fn readlink_at(dirfd: i32, path: *const c_char, buf: *mut c_char, size: usize) -> isize {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let state = state::get();
    if size == 0 || size > isize::MAX as usize {
        return c_ret(Err(sys::EINVAL)) as isize;
    }
    let copy = |bytes: &[u8]| {
        let n = bytes.len().min(size);
        // SAFETY: buf holds size bytes.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast(), n) };
        n as isize
    };
    // SAFETY: as the caller's.
    let result = unsafe { translate(dirfd, path, false, &mut canon, &mut host) };
    match result {
        Ok(None) => c_ret(sys::readlinkat(dirfd, path.cast(), buf.cast(), size)) as isize,
        Ok(Some(found)) => match found.place {
            Place::Missing => c_ret(Err(sys::ENOENT)) as isize,
            Place::Bind if is_self_exe(canon.as_bytes()) && !state.exe.is_empty() => {
                copy(state.exe)
            }
            // /proc's links name host paths: answer with container ones.
            Place::Bind if crate::buf::is_under(canon.as_bytes(), b"/proc") => {
                let mut target = Buf::new();
                match crate::host::read_link(&host, &mut target) {
                    Ok(()) => {
                        let mut inside = Buf::new();
                        if state::to_container(state, target.as_bytes(), &mut inside) {
                            copy(inside.as_bytes())
                        } else {
                            copy(target.as_bytes())
                        }
                    }
                    Err(e) => c_ret(Err(e)) as isize,
                }
            }
            _ if found.kind != KIND_SYMLINK && found.kind != 0 => c_ret(Err(sys::EINVAL)) as isize,
            // The walk found it in the index: its target is there.
            Place::Lower(_) => match found.position {
                Some(i) => copy(state.index.map_or(&[][..], |index| index.link(i))),
                None => c_ret(crate::host::readlink(&host, buf.cast(), size)) as isize,
            },
            _ => c_ret(crate::host::readlink(&host, buf.cast(), size)) as isize,
        },
        Err(e) => c_ret(Err(e)) as isize,
    }
}

export! {
    fn readlink(path: *const c_char, buf: *mut c_char, size: usize) -> isize {
        readlink_at(sys::AT_FDCWD, path, buf, size)
    }
    fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: usize) -> isize {
        readlink_at(dirfd, path, buf, size)
    }
}

/// Copies `bytes` as a C string into `out`, or a new malloc'd one when
/// `out` is null; `limit` bounds a caller's buffer.
pub fn give_string(bytes: &[u8], out: *mut c_char, limit: usize) -> *mut c_char {
    if !out.is_null() && bytes.len() + 1 > limit {
        set_errno(sys::ERANGE);
        return core::ptr::null_mut();
    }
    let out = if out.is_null() {
        // SAFETY: a plain allocation.
        let fresh = unsafe { sys::malloc(bytes.len() + 1) }.cast::<c_char>();
        if fresh.is_null() {
            set_errno(sys::ENOMEM);
            return fresh;
        }
        fresh
    } else {
        out
    };
    // SAFETY: out holds bytes.len() + 1 bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast(), bytes.len());
        *out.add(bytes.len()) = 0;
    }
    out
}

type RealpathFn = unsafe extern "C" fn(*const c_char, *mut c_char) -> *mut c_char;
const PATH_MAX: usize = 4096;

export! {
    fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
        let Some(real) = real!("realpath": RealpathFn) else {
            set_errno(sys::ENOMEM);
            return core::ptr::null_mut();
        };
        if path.is_null() {
            set_errno(sys::EINVAL);
            return core::ptr::null_mut();
        }
        let (mut canon, mut host) = (Buf::new(), Buf::new());
        match translate(sys::AT_FDCWD, path, true, &mut canon, &mut host) {
            Ok(None) => real(path, resolved),
            Ok(Some(found)) => match found.place {
                Place::Missing => {
                    set_errno(sys::ENOENT);
                    core::ptr::null_mut()
                }
                // /proc's magic links are the kernel's to follow.
                Place::Bind if crate::buf::is_under(canon.as_bytes(), b"/proc") => {
                    let mut on_host = [0u8; PATH_MAX];
                    if real(host.c().cast(), on_host.as_mut_ptr().cast()).is_null() {
                        return core::ptr::null_mut();
                    }
                    let on_host = cstr(on_host.as_ptr().cast());
                    let mut inside = Buf::new();
                    if state::to_container(state::get(), on_host, &mut inside) {
                        give_string(inside.as_bytes(), resolved, PATH_MAX)
                    } else {
                        give_string(on_host, resolved, PATH_MAX)
                    }
                }
                _ => give_string(canon.as_bytes(), resolved, PATH_MAX),
            },
            Err(e) => {
                set_errno(e);
                core::ptr::null_mut()
            }
        }
    }
    fn canonicalize_file_name(path: *const c_char) -> *mut c_char {
        realpath(path, core::ptr::null_mut())
    }
}

type GetcwdFn = unsafe extern "C" fn(*mut c_char, usize) -> *mut c_char;

export! {
    fn chdir(path: *const c_char) -> c_int {
        let (mut canon, mut host) = (Buf::new(), Buf::new());
        match translate(sys::AT_FDCWD, path, true, &mut canon, &mut host) {
            Ok(None) => c_ret(sys::chdir(path.cast())),
            Ok(Some(found)) => match found.place {
                Place::Missing => c_ret(Err(sys::ENOENT)),
                _ if found.kind != 0 && found.kind != KIND_DIR => c_ret(Err(sys::ENOTDIR)),
                _ => {
                    if perm::checking()
                        && let Err(e) = meta_of(&found, &canon, &host).and_then(|m| perm::check(&m, MAY_EXEC))
                    {
                        return c_ret(Err(e));
                    }
                    match crate::host::chdir(&host) {
                        Ok(_) => {
                            state::set_cwd(canon.as_bytes());
                            0
                        }
                        Err(e) => c_ret(Err(e)),
                    }
                }
            },
            Err(e) => c_ret(Err(e)),
        }
    }
    #[safe]
    fn fchdir(fd: c_int) -> c_int {
        if let Err(e) = sys::fchdir(fd) {
            return c_ret(Err(e));
        }
        let state = state::get();
        let mut inside = Buf::new();
        if state.active && crate::fdpaths::fd_path(state, fd, &mut inside) {
            state::set_cwd(inside.as_bytes());
        }
        0
    }
    fn getcwd(buf: *mut c_char, size: usize) -> *mut c_char {
        if !state::get().active {
            return match real!("getcwd": GetcwdFn) {
                Some(real) => real(buf, size),
                None => core::ptr::null_mut(),
            };
        }
        if !buf.is_null() && size == 0 {
            set_errno(sys::EINVAL);
            return core::ptr::null_mut();
        }
        let mut cwd = Buf::new();
        if let Err(e) = state::cwd(&mut cwd) {
            set_errno(e);
            return core::ptr::null_mut();
        }
        if buf.is_null() && size > cwd.len() {
            // glibc allocates `size` bytes when asked for them.
            let fresh = sys::malloc(size).cast::<c_char>();
            if fresh.is_null() {
                set_errno(sys::ENOMEM);
                return fresh;
            }
            return give_string(cwd.as_bytes(), fresh, size);
        }
        give_string(cwd.as_bytes(), buf, if buf.is_null() { usize::MAX } else { size })
    }
    fn get_current_dir_name() -> *mut c_char {
        getcwd(core::ptr::null_mut(), 0)
    }
    fn getwd(buf: *mut c_char) -> *mut c_char {
        getcwd(buf, PATH_MAX)
    }
}

type DlopenFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;

export! {
    fn dlopen(path: *const c_char, mode: c_int) -> *mut c_void {
        let Some(real) = real!("dlopen": DlopenFn) else {
            return core::ptr::null_mut();
        };
        // Bare names go through the loader's library path, set to the image's.
        if path.is_null() || !cstr(path).contains(&b'/') {
            return real(path, mode);
        }
        let (mut canon, mut host) = (Buf::new(), Buf::new());
        match translate(sys::AT_FDCWD, path, true, &mut canon, &mut host) {
            Ok(Some(found)) if found.place != Place::Missing => real(host.c().cast(), mode),
            _ => real(path, mode),
        }
    }
}

/// The read-only extended attribute calls, through the stack.
unsafe fn xattr_call(
    syscall: usize,
    path: *const c_char,
    follow: bool,
    name: *const c_char,
    value: *mut c_void,
    size: usize,
) -> isize {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    let result = match unsafe { translate(sys::AT_FDCWD, path, follow, &mut canon, &mut host) } {
        Ok(None) => sys::xattr(syscall, path.cast(), name, value, size),
        Ok(Some(found)) if found.place == Place::Missing => Err(sys::ENOENT),
        Ok(Some(found)) => match xattr_answer_key(syscall, &found, name) {
            Some(key) => xattr_answered(key).unwrap_or_else(|| {
                let result = crate::host::xattr(syscall, &host, name, value, size);
                remember_xattr_answer(key, result);
                result
            }),
            None => crate::host::xattr(syscall, &host, name, value, size),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(n) => n as isize,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

// The answers of attribute calls on image files that have none (the
// index's record says so): for such a file the kernel's answer depends on
// the layer's file system, the call, the attribute's name and the file's
// type only (GNU ls asks every file for its ACL and SELinux label, and
// each is a failure). Remembered by two hashes of those; only failures,
// and an empty list, are remembered, so a label the kernel makes up for
// every file (an SELinux host) is asked each time. Only `security.`,
// `system.` and `trusted.` names are remembered: reading any other needs
// read permission on the file.
// A slot (`Slot`) holds the key's first hash, then its second with the
// low 16 bits holding the answer.
const XATTR_ANSWERS: usize = 256;
static XATTR_ANSWER: [core::sync::atomic::AtomicU64; 2 * XATTR_ANSWERS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 2 * XATTR_ANSWERS];
const XATTR_ANSWER_BITS: u64 = 0xffff;

/// The key of an attribute call's answer on `found`, where it may be
/// remembered.
fn xattr_answer_key(syscall: usize, found: &Found, name: *const c_char) -> Option<(u64, u64)> {
    let Place::Lower(layer) = found.place else {
        return None;
    };
    let index = state::get().index?;
    let disk = index.entry(found.position?).disk;
    if !disk.has_no_xattrs() {
        return None;
    }
    let mut key = Buf::new();
    // The layer file's own type (an image's device node is a plain file
    // there): the kernel answers a symlink's ACL names differently.
    let class = match disk.mode & sys::S_IFMT {
        sys::S_IFDIR => b'd',
        sys::S_IFREG => b'f',
        sys::S_IFLNK => b'l',
        _ => b'o',
    };
    let [low, high] = layer.to_le_bytes();
    key.push(&[syscall as u8, class, low, high]).ok()?;
    if syscall == sys::SYS_GETXATTR || syscall == sys::SYS_LGETXATTR {
        let name = lpmx_sys::user::c_str(name, 256).ok()?;
        // Other names are checked against the file's permissions first.
        if ![&b"security."[..], b"system.", b"trusted."]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            return None;
        }
        key.push(name).ok()?;
    }
    let (a, b) = crate::buf::hashes(key.as_bytes());
    Some((a | 1, b & !XATTR_ANSWER_BITS))
}

fn xattr_answered((a, b): (u64, u64)) -> Option<sys::Sys> {
    let second = xattr_slot(a).second(a)?;
    if second & !XATTR_ANSWER_BITS != b {
        return None;
    }
    match second & XATTR_ANSWER_BITS {
        0 => None,
        1 => Some(Ok(0)),
        errno => Some(Err(errno as i32 - 1)),
    }
}

fn remember_xattr_answer((a, b): (u64, u64), result: sys::Sys) {
    let answer = match result {
        Ok(0) => 1,
        Err(e @ (sys::ENODATA | sys::EOPNOTSUPP)) => e as u64 + 1,
        _ => return,
    };
    xattr_slot(a).fill(a, b | answer);
}

fn xattr_slot(a: u64) -> crate::buf::Slot<'static> {
    crate::buf::Slot(&XATTR_ANSWER[2 * (a as usize % XATTR_ANSWERS)..][..2])
}

export! {
    fn getxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: usize) -> isize {
        xattr_call(sys::SYS_GETXATTR, path, true, name, value, size)
    }
    fn lgetxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: usize) -> isize {
        xattr_call(sys::SYS_LGETXATTR, path, false, name, value, size)
    }
    fn listxattr(path: *const c_char, list: *mut c_char, size: usize) -> isize {
        xattr_call(sys::SYS_LISTXATTR, path, true, list, core::ptr::null_mut(), size)
    }
    fn llistxattr(path: *const c_char, list: *mut c_char, size: usize) -> isize {
        xattr_call(sys::SYS_LLISTXATTR, path, false, list, core::ptr::null_mut(), size)
    }
}

/// statfs(2) of `path` in the container into `buf` (a `struct statfs`).
unsafe fn statfs_of(path: *const c_char, buf: *mut c_void) -> Result<(), i32> {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    match unsafe { translate(sys::AT_FDCWD, path, true, &mut canon, &mut host)? } {
        None => sys::statfs(path.cast(), buf).map(|_| ()),
        Some(found) if found.place == Place::Missing => Err(sys::ENOENT),
        Some(_) => {
            let k = crate::host::kernel(&host)?;
            let mut long = Buf::new();
            sys::statfs(k.absolute(&mut long)?, buf).map(|_| ())
        }
    }
}

/// glibc's `struct statvfs` from the kernel's `struct statfs`.
fn statvfs_from(fs: &[u64; 15], out: *mut c_void) {
    const ST_VALID: u64 = 0x20;
    let flags = if fs[10] & ST_VALID != 0 {
        fs[10] & !ST_VALID
    } else {
        0
    };
    let fsid = fs[7];
    let values: [u64; 14] = [
        fs[1],                                   // f_bsize
        if fs[9] != 0 { fs[9] } else { fs[1] },  // f_frsize
        fs[2],                                   // f_blocks
        fs[3],                                   // f_bfree
        fs[4],                                   // f_bavail
        fs[5],                                   // f_files
        fs[6],                                   // f_ffree
        fs[6],                                   // f_favail
        fsid & 0xffff_ffff | (fsid >> 32) << 32, // f_fsid
        flags,                                   // f_flag
        fs[8],                                   // f_namemax
        0,
        0,
        0,
    ];
    // SAFETY: the caller's struct statvfs (112 bytes).
    unsafe { core::ptr::copy_nonoverlapping(values.as_ptr().cast::<u8>(), out.cast::<u8>(), 112) };
}

type FpathconfFn = unsafe extern "C" fn(c_int, c_int) -> i64;

export! {
    fn statfs(path: *const c_char, buf: *mut c_void) -> c_int {
        c_ret(statfs_of(path, buf).map(|()| 0))
    }
    fn statfs64(path: *const c_char, buf: *mut c_void) -> c_int {
        c_ret(statfs_of(path, buf).map(|()| 0))
    }
    fn statvfs(path: *const c_char, buf: *mut c_void) -> c_int {
        let mut fs = [0u64; 15];
        let result = statfs_of(path, fs.as_mut_ptr().cast());
        if result.is_ok() {
            statvfs_from(&fs, buf);
        }
        c_ret(result.map(|()| 0))
    }
    fn statvfs64(path: *const c_char, buf: *mut c_void) -> c_int {
        statvfs(path, buf)
    }
    fn pathconf(path: *const c_char, name: c_int) -> i64 {
        let Some(fpathconf) = real!("fpathconf": FpathconfFn) else {
            set_errno(sys::ENOSYS);
            return -1;
        };
        let (mut canon, mut host) = (Buf::new(), Buf::new());
        let fd = match translate(sys::AT_FDCWD, path, true, &mut canon, &mut host) {
            Ok(None) => sys::openat(sys::AT_FDCWD, path.cast(), sys::O_PATH | sys::O_CLOEXEC, 0),
            Ok(Some(found)) if found.place == Place::Missing => Err(sys::ENOENT),
            Ok(Some(_)) => crate::host::open(&host, sys::O_PATH | sys::O_CLOEXEC, 0),
            Err(e) => Err(e),
        };
        match fd {
            Ok(fd) => {
                let value = fpathconf(fd as c_int, name);
                let errno = sys::errno();
                let _ = sys::close(fd as i32);
                set_errno(errno);
                value
            }
            Err(e) => {
                set_errno(e);
                -1
            }
        }
    }
}

// remove(3): unlink or rmdir, by what the path is.
export! {
    fn remove(path: *const c_char) -> c_int {
        let mut st = [0u64; 18];
        if stat_at(sys::AT_FDCWD, path, st.as_mut_ptr().cast(), sys::AT_SYMLINK_NOFOLLOW) != 0 {
            return -1;
        }
        let directory = (st[3] as u32) & sys::S_IFMT == sys::S_IFDIR;
        crate::write::remove_at(sys::AT_FDCWD, path, directory)
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
            unsafe { crate::write::mkdir_at(sys::AT_FDCWD, template, 0o700) }
        } else {
            // SAFETY: as above.
            unsafe {
                open_at(
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
