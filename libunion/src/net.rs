//! Unix-domain sockets named by path: `bind` creates the socket file in the
//! container (in the writable layer, or a bind), `connect` and `sendto`
//! reach the one the container's path names. A host path too long for
//! `sun_path` (108 bytes) is reached through its directory's
//! `/proc/self/fd` link.

use core::ffi::{c_int, c_void};

use crate::buf::Buf;
use crate::export::export;
use crate::paths::translate_bytes;
use crate::resolve::Place;
use crate::state;
use crate::sys::{self, c_ret};

const AF_UNIX: u16 = 1;
const SUN_PATH: usize = 108;

#[repr(C)]
struct SockaddrUn {
    family: u16,
    path: [u8; SUN_PATH],
}

/// The host address for container address `addr` (`len` bytes), or None
/// when it is not a named Unix socket address of the container.
/// `creating`: bind, which makes the socket file.
fn host_address(
    addr: *const c_void,
    len: u32,
    creating: bool,
    out: &mut SockaddrUn,
    dirfd: &mut i32,
) -> Result<Option<u32>, i32> {
    let state = state::get();
    if !state.active || addr.is_null() || (len as usize) <= 2 || len as usize > 2 + SUN_PATH {
        return Ok(None);
    }
    let mut given = SockaddrUn {
        family: 0,
        path: [0; SUN_PATH],
    };
    lpmx_sys::user::check(addr.cast(), len as usize)?;
    // SAFETY: len readable bytes of the caller's address, at most a
    // sockaddr_un.
    unsafe {
        core::ptr::copy_nonoverlapping(
            addr.cast::<u8>(),
            (&raw mut given).cast::<u8>(),
            len as usize,
        )
    };
    // An abstract address (leading NUL) names no file.
    if given.family != AF_UNIX || given.path[0] == 0 {
        return Ok(None);
    }
    let path_len = given.path[..len as usize - 2]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(len as usize - 2);
    let path = &given.path[..path_len];
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let Some(found) = translate_bytes(sys::AT_FDCWD, path, !creating, &mut canon, &mut host)?
    else {
        return Ok(None);
    };
    if creating {
        if found.place != Place::Missing {
            return Err(sys::EADDRINUSE);
        }
        if !found.under_bind {
            crate::write::make_upper_parents(canon.as_bytes())?;
        }
    } else if found.place == Place::Missing {
        return Err(sys::ENOENT);
    }
    out.family = AF_UNIX;
    let bytes = host.as_bytes();
    let name: &[u8] = if bytes.len() < SUN_PATH {
        bytes
    } else {
        // Through the directory: /proc/self/fd/N/name.
        let cut = bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
        let dir = Buf::from(&bytes[..cut.max(1)])?;
        *dirfd =
            crate::host::open(&dir, sys::O_PATH | sys::O_DIRECTORY | sys::O_CLOEXEC, 0)? as i32;
        let mut via = Buf::new();
        let mut digits = [0u8; 12];
        via.set(b"/proc/self/fd/")?;
        via.push(crate::sys::format_int(i64::from(*dirfd), &mut digits))?;
        via.push(&bytes[cut..])?;
        if via.len() >= SUN_PATH {
            return Err(sys::ENAMETOOLONG);
        }
        out.path[..via.len()].copy_from_slice(via.as_bytes());
        out.path[via.len()] = 0;
        return Ok(Some(2 + via.len() as u32 + 1));
    };
    out.path[..name.len()].copy_from_slice(name);
    out.path[name.len()] = 0;
    if creating && !found.under_bind {
        crate::upper::changed_at(state, canon.as_bytes());
    }
    Ok(Some(2 + name.len() as u32 + 1))
}

/// Calls `f` with the address to use for `addr`.
fn with_address(
    addr: *const c_void,
    len: u32,
    creating: bool,
    f: impl FnOnce(*const c_void, u32) -> sys::Sys,
) -> c_int {
    let mut out = SockaddrUn {
        family: 0,
        path: [0; SUN_PATH],
    };
    let mut dirfd = -1;
    let result = match host_address(addr, len, creating, &mut out, &mut dirfd) {
        Ok(Some(len)) => {
            let result = f((&raw const out).cast(), len);
            if creating && result.is_ok() {
                // A socket's name was made (in the writable layer or a bind).
                crate::upper::made(crate::state::get());
            }
            result
        }
        Ok(None) => f(addr, len),
        Err(e) => Err(e),
    };
    if dirfd >= 0 {
        let _ = sys::close(dirfd);
    }
    c_ret(result)
}

export! {
    #[safe]
    fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int {
        with_address(addr, len, true, |a, l| sys::bind(fd, a, l))
    }
    #[safe]
    fn connect(fd: c_int, addr: *const c_void, len: u32) -> c_int {
        with_address(addr, len, false, |a, l| sys::connect(fd, a, l))
    }
    #[safe]
    fn sendto(fd: c_int, buf: *const c_void, size: usize, flags: c_int, addr: *const c_void, len: u32) -> isize {
        let mut sent = 0isize;
        let status = with_address(addr, len, false, |a, l| {
            sys::sendto(fd, buf, size, flags, a, l).map(|n| {
                sent = n as isize;
                0
            })
        });
        if status < 0 { -1 } else { sent }
    }
}
