//! System calls on host paths of any length.
//!
//! A container path the kernel accepts (under `PATH_MAX`) can become a
//! longer host path once the layer's directory is put in front of it. The
//! kernel refuses a path of `PATH_MAX` bytes or more, so such a host path
//! is reached in steps: its leading directories are opened (`O_PATH`) a
//! piece at a time, and the call is made relative to the last of them.
//! Paths that fit, nearly all of them, cost nothing extra.

use core::ffi::{c_char, c_void};
use core::marker::PhantomData;

use crate::buf::Buf;
use crate::sys::{self, Sys};

/// The kernel's limit on a path, its NUL included.
pub const PATH_MAX: usize = 4096;
/// The most bytes of a long path opened in one step.
const STEP: usize = 3072;

/// A host path as the kernel takes it: `path` relative to `dirfd`
/// (`AT_FDCWD`, or a directory opened for it and closed on drop).
pub struct Kernel<'a> {
    pub dirfd: i32,
    pub path: *const u8,
    owned: bool,
    _host: PhantomData<&'a Buf>,
}

impl Drop for Kernel<'_> {
    fn drop(&mut self) {
        if self.owned {
            let _ = sys::close(self.dirfd);
        }
    }
}

impl Kernel<'_> {
    /// The path for calls without an `*at` form: short, or through the
    /// opened directory's `/proc/self/fd` link.
    pub fn absolute(&self, out: &mut Buf) -> Result<*const u8, i32> {
        if !self.owned {
            return Ok(self.path);
        }
        let mut digits = [0u8; 12];
        out.set(b"/proc/self/fd/")?;
        out.push(crate::sys::format_int(i64::from(self.dirfd), &mut digits))?;
        out.push(b"/")?;
        // SAFETY: path points into the NUL-terminated host buffer.
        out.push(unsafe { crate::buf::cstr(self.path.cast()) })?;
        Ok(out.c())
    }
}

/// `host` in a form the kernel accepts.
pub fn kernel(host: &Buf) -> Result<Kernel<'_>, i32> {
    let bytes = host.as_bytes();
    let mut kernel = Kernel {
        dirfd: sys::AT_FDCWD,
        path: host.c(),
        owned: false,
        _host: PhantomData,
    };
    let mut start = 0;
    while bytes.len() - start >= PATH_MAX {
        let window = &bytes[start..start + STEP];
        let cut = match window.iter().rposition(|&b| b == b'/') {
            Some(0) if start == 0 => 1,
            Some(cut) if cut > 0 => cut,
            _ => return Err(sys::ENAMETOOLONG),
        };
        let prefix = Buf::from(&bytes[start..start + cut])?;
        let fd = sys::openat(
            kernel.dirfd,
            prefix.c(),
            sys::O_PATH | sys::O_DIRECTORY | sys::O_CLOEXEC,
            0,
        )? as i32;
        if kernel.owned {
            let _ = sys::close(kernel.dirfd);
        }
        kernel.dirfd = fd;
        kernel.owned = true;
        start += cut;
        while bytes.get(start) == Some(&b'/') {
            start += 1;
        }
        // SAFETY: start is within the NUL-terminated buffer.
        kernel.path = unsafe { host.c().add(start) };
    }
    Ok(kernel)
}

/// Tells the container's processes that a call may have made a name
/// (`upper::made`): what they found missing may be there now. EEXIST
/// tells too: the name may be another process's, made after this one
/// remembered it missing and not told yet (the maker tells once its call
/// has returned), and this process's next lookup below it must not trust
/// that memory (py_compile's makedirs, then its open in `__pycache__`, in
/// compileall's parallel workers).
fn made(result: Sys) -> Sys {
    if result.is_ok() || result == Err(sys::EEXIST) {
        crate::upper::made(crate::state::get());
    }
    result
}

pub fn open(host: &Buf, flags: i32, mode: u32) -> Sys {
    let k = kernel(host)?;
    let result = sys::openat(k.dirfd, k.path, flags, mode);
    if flags & sys::O_CREAT != 0 {
        return made(result);
    }
    result
}

pub fn lstat(host: &Buf, st: &mut [u64; 18]) -> Sys {
    fstatat(host, st.as_mut_ptr().cast(), sys::AT_SYMLINK_NOFOLLOW)
}

pub fn fstatat(host: &Buf, buf: *mut c_void, flags: i32) -> Sys {
    let k = kernel(host)?;
    sys::fstatat(k.dirfd, k.path, buf, flags)
}

pub fn statx(host: &Buf, flags: i32, mask: u32, buf: *mut c_void) -> Sys {
    let k = kernel(host)?;
    sys::statx(k.dirfd, k.path, flags, mask, buf)
}

pub fn access(host: &Buf, mode: i32, flags: i32) -> Sys {
    let k = kernel(host)?;
    match sys::faccessat(k.dirfd, k.path, mode, flags) {
        // Kernels before 5.8 lack faccessat2; the plain call is right for
        // a real user anyway.
        Err(sys::ENOSYS) => sys::faccessat(k.dirfd, k.path, mode, 0),
        other => other,
    }
}

pub fn readlink(host: &Buf, out: *mut u8, len: usize) -> Sys {
    let k = kernel(host)?;
    sys::readlinkat(k.dirfd, k.path, out, len)
}

/// A symlink's target into `out`.
pub fn read_link(host: &Buf, out: &mut Buf) -> Result<(), i32> {
    let len = readlink(host, out.spare(), crate::buf::CAPACITY)?;
    out.set_len(len);
    Ok(())
}

pub fn mkdir(host: &Buf, mode: u32) -> Sys {
    let k = kernel(host)?;
    made(sys::mkdirat(k.dirfd, k.path, mode))
}

pub fn unlink(host: &Buf, flags: i32) -> Sys {
    let k = kernel(host)?;
    sys::unlinkat(k.dirfd, k.path, flags)
}

pub fn symlink(target: *const u8, host: &Buf) -> Sys {
    let k = kernel(host)?;
    made(sys::symlinkat(target, k.dirfd, k.path))
}

pub fn mknod(host: &Buf, mode: u32, device: u64) -> Sys {
    let k = kernel(host)?;
    made(sys::mknodat(k.dirfd, k.path, mode, device))
}

pub fn link(from: &Buf, to: &Buf, flags: i32) -> Sys {
    let (f, t) = (kernel(from)?, kernel(to)?);
    made(sys::linkat(f.dirfd, f.path, t.dirfd, t.path, flags))
}

pub fn rename(from: &Buf, to: &Buf, flags: u32) -> Sys {
    let (f, t) = (kernel(from)?, kernel(to)?);
    made(sys::renameat2(f.dirfd, f.path, t.dirfd, t.path, flags))
}

pub fn chmod(host: &Buf, mode: u32) -> Sys {
    let k = kernel(host)?;
    sys::fchmodat(k.dirfd, k.path, mode)
}

pub fn chown(host: &Buf, uid: u32, gid: u32, flags: i32) -> Sys {
    let k = kernel(host)?;
    sys::fchownat(k.dirfd, k.path, uid, gid, flags)
}

pub fn utimens(host: &Buf, times: *const c_void, flags: i32) -> Sys {
    let k = kernel(host)?;
    sys::utimensat(k.dirfd, k.path, times, flags)
}

pub fn truncate(host: &Buf, length: i64) -> Sys {
    let k = kernel(host)?;
    let mut long = Buf::new();
    sys::truncate(k.absolute(&mut long)?, length)
}

pub fn chdir(host: &Buf) -> Sys {
    let k = kernel(host)?;
    let mut long = Buf::new();
    sys::chdir(k.absolute(&mut long)?)
}

/// getxattr-style calls (see `sys::xattr`).
pub fn xattr(n: usize, host: &Buf, name: *const c_char, value: *mut c_void, size: usize) -> Sys {
    let k = kernel(host)?;
    let mut long = Buf::new();
    sys::xattr(n, k.absolute(&mut long)?, name, value, size)
}

pub fn setxattr(
    n: usize,
    host: &Buf,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: i32,
) -> Sys {
    let k = kernel(host)?;
    let mut long = Buf::new();
    sys::setxattr(n, k.absolute(&mut long)?, name, value, size, flags)
}

pub fn removexattr(n: usize, host: &Buf, name: *const c_char) -> Sys {
    let k = kernel(host)?;
    let mut long = Buf::new();
    sys::removexattr(n, k.absolute(&mut long)?, name)
}
