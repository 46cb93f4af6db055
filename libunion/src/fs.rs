//! The path functions: open, stat, access, readlink, realpath, the
//! current directory and dlopen. Each resolves its path through the stack
//! and calls the kernel (or the next libc) on the host file.

use core::ffi::{c_char, c_int, c_void};

use crate::buf::{Buf, cstr};
use crate::resolve::{Found, Place, resolve, resolve_at};
use crate::state::{self, is_self_exe};
use crate::sys::{self, c_ret, real, set_errno};

/// The host file for `path`; `Ok(None)` leaves the call to the kernel
/// unchanged (no container, an empty path, a descriptor outside it).
///
/// # Safety
/// `path` is null or a C string.
pub unsafe fn translate(
    dirfd: i32,
    path: *const c_char,
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Option<Found>, i32> {
    let state = state::get();
    // SAFETY: the caller passes a C string.
    let bytes = unsafe { cstr(path) };
    if !state.active || bytes.is_empty() {
        return Ok(None);
    }
    let found = match resolve_at(state, dirfd, bytes, follow, canon, host) {
        // A descriptor outside the container: the kernel answers.
        Err(sys::EBADF) => return Ok(None),
        other => other?,
    };
    if follow
        && found.place == Place::Bind
        && is_self_exe(canon.as_bytes())
        && !state.exe.is_empty()
    {
        let mut exe = Buf::new();
        return resolve(state, state.exe, true, &mut exe, host).map(Some);
    }
    Ok(Some(found))
}

fn writes(flags: i32) -> bool {
    flags & (sys::O_WRONLY | sys::O_RDWR | sys::O_TRUNC) != 0
        || flags & sys::O_TMPFILE == sys::O_TMPFILE
}

/// Where a file opened with `flags` is: `Ok(false)` passes through.
///
/// # Safety
/// `path` is null or a C string.
unsafe fn open_target(
    dirfd: i32,
    path: *const c_char,
    flags: i32,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<bool, i32> {
    let follow = flags & sys::O_NOFOLLOW == 0;
    // SAFETY: as the caller's.
    let Some(found) = (unsafe { translate(dirfd, path, follow, canon, host)? }) else {
        return Ok(false);
    };
    match found.place {
        Place::Lower(_) if writes(flags) => {
            *host = crate::write::copy_up(state::get(), canon.as_bytes(), host)?;
            Ok(true)
        }
        Place::Missing if flags & sys::O_CREAT == 0 => Err(sys::ENOENT),
        Place::Missing => crate::write::make_upper_parents(canon.as_bytes()).map(|()| true),
        _ => Ok(true),
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
        Ok(false) => c_ret(sys::openat(dirfd, path.cast(), flags, mode)),
        Ok(true) => {
            let result = sys::openat(sys::AT_FDCWD, host.c(), flags, mode);
            if let Ok(fd) = result {
                if flags & sys::O_CREAT != 0 {
                    crate::upper::changed_at(state::get(), canon.as_bytes());
                }
                if flags & sys::O_DIRECTORY != 0 {
                    state::remember_fd(fd as i32, canon.as_bytes());
                }
            }
            c_ret(result)
        }
        Err(e) => c_ret(Err(e)),
    }
}

macro_rules! export {
    ($($(#[$safe:ident])? fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block)*) => {$(
        $crate::fs::export!(@one $($safe)? $name ($($arg: $ty),*) $ret $body);
    )*};
    (@one safe $name:ident ($($arg:ident: $ty:ty),*) $ret:ty $body:block) => {
        /// # Safety
        /// As the libc function of this name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret $body
    };
    (@one $name:ident ($($arg:ident: $ty:ty),*) $ret:ty $body:block) => {
        /// # Safety
        /// As the libc function of this name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the caller keeps the libc contract.
            unsafe { $body }
        }
    };
}
pub(crate) use export;

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
    if mode.contains(&b'+') {
        flags = (flags & !sys::O_WRONLY) | sys::O_RDWR;
    }
    flags
}

type FopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut c_void;
type FreopenFn = unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void) -> *mut c_void;

/// fopen(3) and freopen(3): `open` is the real one, given the path to use.
///
/// # Safety
/// `path` and `mode` are C strings (or a null path, for freopen).
unsafe fn stream_open(
    path: *const c_char,
    mode: *const c_char,
    open: impl FnOnce(*const c_char) -> *mut c_void,
) -> *mut c_void {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: the caller passes C strings.
    let flags = fopen_flags(unsafe { cstr(mode) });
    // SAFETY: as above.
    match unsafe { open_target(sys::AT_FDCWD, path, flags, &mut canon, &mut host) } {
        Ok(false) => open(path),
        Ok(true) => {
            let stream = open(host.c().cast());
            if !stream.is_null() && flags & sys::O_CREAT != 0 {
                crate::upper::changed_at(state::get(), canon.as_bytes());
            }
            stream
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
        let Some(real) = real!("fopen": FopenFn) else { return missing() };
        stream_open(path, mode, |p| real(p, mode))
    }
    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut c_void {
        let Some(real) = real!("fopen64": FopenFn) else { return missing() };
        stream_open(path, mode, |p| real(p, mode))
    }
    fn freopen(path: *const c_char, mode: *const c_char, stream: *mut c_void) -> *mut c_void {
        let Some(real) = real!("freopen": FreopenFn) else { return missing() };
        stream_open(path, mode, |p| real(p, mode, stream))
    }
    fn freopen64(path: *const c_char, mode: *const c_char, stream: *mut c_void) -> *mut c_void {
        let Some(real) = real!("freopen64": FreopenFn) else { return missing() };
        stream_open(path, mode, |p| real(p, mode, stream))
    }
}

/// fstatat(2) through the stack.
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
                    crate::root::adjust_fd_stat(dirfd, buf);
                } else {
                    crate::root::adjust_stat(buf, None);
                }
            }
            c_ret(result)
        }
        Ok(Some(found)) => {
            let result = match (found.place, found.upper_stat) {
                (Place::Missing, _) => Err(sys::ENOENT),
                (Place::Bind, _) => sys::fstatat(sys::AT_FDCWD, host.c(), buf, flags),
                // Resolving took this very lstat: no second call.
                (Place::Upper, Some(stat)) => {
                    // SAFETY: buf is the caller's struct stat, the 144 bytes
                    // the kernel filled into stat.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            stat.as_ptr().cast::<u8>(),
                            buf.cast::<u8>(),
                            core::mem::size_of_val(&stat),
                        );
                    }
                    Ok(0)
                }
                _ => sys::fstatat(
                    sys::AT_FDCWD,
                    host.c(),
                    buf,
                    flags | sys::AT_SYMLINK_NOFOLLOW,
                ),
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
        let (mut canon, mut host) = (Buf::new(), Buf::new());
        let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
        match translate(dirfd, path, follow, &mut canon, &mut host) {
            Ok(None) => {
                let result = sys::statx(dirfd, path.cast(), flags, mask, buf);
                if result.is_ok() && crate::root::active() {
                    if cstr(path).is_empty() && flags & sys::AT_EMPTY_PATH != 0 {
                        crate::root::adjust_fd_statx(dirfd, buf);
                    } else {
                        crate::root::adjust_statx(buf, Place::Bind, b"");
                    }
                }
                c_ret(result)
            }
            Ok(Some(found)) => {
                let result = match found.place {
                    Place::Missing => Err(sys::ENOENT),
                    Place::Bind => sys::statx(sys::AT_FDCWD, host.c(), flags, mask, buf),
                    _ => sys::statx(sys::AT_FDCWD, host.c(), flags | sys::AT_SYMLINK_NOFOLLOW, mask, buf),
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

unsafe fn access_at(dirfd: i32, path: *const c_char, mode: i32, flags: i32) -> c_int {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    let call =
        |dirfd: i32, path: *const u8, flags: i32| match sys::faccessat(dirfd, path, mode, flags) {
            // Kernels before 5.8 lack faccessat2; the plain call is right for
            // a real user anyway.
            Err(38) => sys::faccessat(dirfd, path, mode, 0),
            other => other,
        };
    // SAFETY: as the caller's.
    match unsafe { translate(dirfd, path, follow, &mut canon, &mut host) } {
        Ok(None) => c_ret(call(dirfd, path.cast(), flags)),
        Ok(Some(found)) if found.place == Place::Missing => c_ret(Err(sys::ENOENT)),
        Ok(Some(_)) => c_ret(call(sys::AT_FDCWD, host.c(), flags)),
        Err(e) => c_ret(Err(e)),
    }
}

const AT_EACCESS: i32 = 0x200;

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
                match sys::readlinkat(
                    sys::AT_FDCWD,
                    host.c(),
                    target.spare(),
                    crate::buf::CAPACITY,
                ) {
                    Ok(len) => {
                        target.set_len(len);
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
            Place::Lower(_) if found.kind == crate::index::KIND_SYMLINK => {
                match state
                    .index
                    .and_then(|index| index.position(&canon.as_bytes()[1..]))
                {
                    Some(i) => copy(state.index.map_or(&[][..], |index| index.link(i))),
                    None => {
                        c_ret(sys::readlinkat(sys::AT_FDCWD, host.c(), buf.cast(), size)) as isize
                    }
                }
            }
            _ => c_ret(sys::readlinkat(sys::AT_FDCWD, host.c(), buf.cast(), size)) as isize,
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
                Place::Bind => {
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
                _ if found.kind != 0 && found.kind != crate::index::KIND_DIR => c_ret(Err(sys::ENOTDIR)),
                _ => match sys::chdir(host.c()) {
                    Ok(_) => {
                        state::set_cwd(canon.as_bytes());
                        0
                    }
                    Err(e) => c_ret(Err(e)),
                },
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
        if state.active && state::fd_path(state, fd, &mut inside) {
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
    let call = |path: *const u8| sys::xattr(syscall, path, name, value, size);
    // SAFETY: as the caller's.
    let result = match unsafe { translate(sys::AT_FDCWD, path, follow, &mut canon, &mut host) } {
        Ok(None) => call(path.cast()),
        Ok(Some(found)) if found.place == Place::Missing => Err(sys::ENOENT),
        Ok(Some(_)) => call(host.c()),
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
