//! The calls the trap catches in a container's programs (glibc's own, and
//! any program's that makes system calls itself), made through libunion's
//! functions so that they see the container.
//!
//! A path below the host directories libunion itself hands out (the
//! stores, with the layers, the writable layer and the loader's library
//! directories; libunion's and the lpmx tools' directories; the GPU
//! driver's) is the host's: the loader opens the image's libraries there.

use core::ffi::{c_char, c_int, c_void};

use crate::buf::is_under;
use crate::state;
use crate::sys;

fn int(r: c_int) -> isize {
    if r < 0 {
        -(sys::errno() as isize)
    } else {
        r as isize
    }
}

fn long(r: isize) -> isize {
    if r < 0 { -(sys::errno() as isize) } else { r }
}

/// Whether the C string at `p` names a path the host's own.
fn host(p: usize) -> bool {
    let Ok(path) = lpmx_sys::user::path(p as *const c_char) else {
        return false;
    };
    if path.first() != Some(&b'/') {
        return false;
    }
    let s = state::get();
    let under = |prefix: &[u8]| !prefix.is_empty() && is_under(path, prefix);
    s.store.split(|&b| b == b':').any(under)
        || [s.lib_dir, s.tools, s.host_libs, s.loader]
            .into_iter()
            .any(under)
}

/// An open of a host path lpmx passes as it is (`host`). A directory
/// opened so is that path to the calls made relative to it later
/// (`getdents64`, `fchdir`, `*at`), not the container path its host file
/// would map back to: the store is in the container where a bind shows it
/// (a home directory), and a writable layer's directory there is listed as
/// it is, not merged.
fn open_host(nr: usize, a: [usize; 6]) -> isize {
    let fd = lpmx_trap::handler::raw(nr, a);
    let path = if nr == 2 { a[0] } else { a[1] };
    if fd >= 0
        && let Ok(path) = lpmx_sys::user::path(path as *const c_char)
    {
        crate::fdpaths::remember_host_dir_fd(fd as i32, path);
    }
    fd
}

/// The trapped call `nr` made through libunion, or None to make it as it
/// is.
pub fn call(nr: usize, a: [usize; 6]) -> Option<isize> {
    let p = |i: usize| a[i] as *const c_char;
    let v = |i: usize| a[i] as *mut c_void;
    let fd = |i: usize| a[i] as c_int;
    let path_args: &[usize] = match nr {
        2
        | 4
        | 6
        | 21
        | 59
        | 76
        | 80
        | 83
        | 84
        | 85
        | 87
        | 89
        | 90
        | 92
        | 94
        | 132
        | 133
        | 137
        | 188..=198
        | 235 => &[0],
        82 | 86 => &[0, 1],
        88 => &[1],
        257..=263 | 267..=269 | 280 | 322 | 332 | 439 | 452 => &[1],
        264 | 265 | 316 => &[1, 3],
        266 => &[2],
        _ => &[],
    };
    if path_args.iter().any(|&i| host(a[i])) {
        if matches!(nr, 2 | 257) {
            return Some(open_host(nr, a));
        }
        return None;
    }
    // SAFETY: the program's own arguments, passed as it gave them to the
    // kernel; each function checks them as the kernel would.
    let result = unsafe {
        use crate::{exec, fs, id_calls, net, write};
        match nr {
            2 => int(fs::open(p(0), a[1] as c_int, a[2] as u32)),
            5 => int(crate::open_files::fstat(fd(0), v(1))),
            91 => int(write::fchmod(fd(0), a[1] as u32)),
            93 => int(write::fchown(fd(0), a[1] as u32, a[2] as u32)),
            102 => id_calls::getuid() as isize,
            104 => id_calls::getgid() as isize,
            105 => int(id_calls::setuid(a[0] as u32)),
            106 => int(id_calls::setgid(a[0] as u32)),
            107 => id_calls::geteuid() as isize,
            108 => id_calls::getegid() as isize,
            113 => int(id_calls::setreuid(a[0] as u32, a[1] as u32)),
            114 => int(id_calls::setregid(a[0] as u32, a[1] as u32)),
            115 => int(id_calls::getgroups(a[0] as c_int, a[1] as *mut u32)),
            116 => int(id_calls::setgroups(a[0], a[1] as *const u32)),
            117 => int(id_calls::setresuid(a[0] as u32, a[1] as u32, a[2] as u32)),
            118 => int(id_calls::getresuid(a[0] as _, a[1] as _, a[2] as _)),
            119 => int(id_calls::setresgid(a[0] as u32, a[1] as u32, a[2] as u32)),
            120 => int(id_calls::getresgid(a[0] as _, a[1] as _, a[2] as _)),
            122 => int(id_calls::setfsuid(a[0] as u32)),
            123 => int(id_calls::setfsgid(a[0] as u32)),
            4 => int(fs::stat(p(0), v(1))),
            6 => int(fs::lstat(p(0), v(1))),
            21 => int(fs::access(p(0), a[1] as c_int)),
            42 => int(net::connect(fd(0), v(1), a[2] as u32)),
            49 => int(net::bind(fd(0), v(1), a[2] as u32)),
            59 => int(exec::exec(p(0), false, a[1] as _, a[2] as _)),
            76 => int(write::truncate(p(0), a[1] as i64)),
            79 => {
                let out = fs::getcwd(a[0] as *mut c_char, a[1]);
                if out.is_null() {
                    -(sys::errno() as isize)
                } else {
                    crate::buf::cstr(out).len() as isize + 1
                }
            }
            80 => int(fs::chdir(p(0))),
            81 => int(fs::fchdir(fd(0))),
            82 => int(write::rename(p(0), p(1))),
            83 => int(write::mkdir(p(0), a[1] as u32)),
            84 => int(write::rmdir(p(0))),
            85 => int(fs::creat(p(0), a[1] as u32)),
            86 => int(write::link(p(0), p(1))),
            87 => int(write::unlink(p(0))),
            88 => int(write::symlink(p(0), p(1))),
            89 => long(fs::readlink(p(0), a[1] as *mut c_char, a[2])),
            90 => int(write::chmod(p(0), a[1] as u32)),
            92 => int(write::chown(p(0), a[1] as u32, a[2] as u32)),
            94 => int(write::lchown(p(0), a[1] as u32, a[2] as u32)),
            132 => int(write::utime(p(0), a[1] as *const [i64; 2])),
            133 => int(write::mknod(p(0), a[1] as u32, a[2] as u64)),
            137 => int(fs::statfs(p(0), v(1))),
            217 => crate::dir::getdents64(fd(0), a[1] as *mut u8, a[2]),
            188 => int(write::setxattr(p(0), p(1), v(2), a[3], a[4] as c_int)),
            189 => int(write::lsetxattr(p(0), p(1), v(2), a[3], a[4] as c_int)),
            191 => long(fs::getxattr(p(0), p(1), v(2), a[3])),
            192 => long(fs::lgetxattr(p(0), p(1), v(2), a[3])),
            194 => long(fs::listxattr(p(0), a[1] as *mut c_char, a[2])),
            195 => long(fs::llistxattr(p(0), a[1] as *mut c_char, a[2])),
            197 => int(write::removexattr(p(0), p(1))),
            198 => int(write::lremovexattr(p(0), p(1))),
            235 => int(write::utimes(p(0), a[1] as *const [i64; 4])),
            257 => int(fs::openat(fd(0), p(1), a[2] as c_int, a[3] as u32)),
            258 => int(write::mkdirat(fd(0), p(1), a[2] as u32)),
            259 => int(write::mknodat(fd(0), p(1), a[2] as u32, a[3] as u64)),
            260 => int(write::fchownat(
                fd(0),
                p(1),
                a[2] as u32,
                a[3] as u32,
                a[4] as c_int,
            )),
            262 => int(fs::fstatat(fd(0), p(1), v(2), a[3] as c_int)),
            263 => int(write::unlinkat(fd(0), p(1), a[2] as c_int)),
            264 => int(write::renameat(fd(0), p(1), fd(2), p(3))),
            265 => int(write::linkat(fd(0), p(1), fd(2), p(3), a[4] as c_int)),
            266 => int(write::symlinkat(p(0), fd(1), p(2))),
            267 => long(fs::readlinkat(fd(0), p(1), a[2] as *mut c_char, a[3])),
            268 => int(write::fchmodat(fd(0), p(1), a[2] as u32, 0)),
            269 => int(fs::faccessat(fd(0), p(1), a[2] as c_int, 0)),
            280 => int(write::utimensat(fd(0), p(1), v(2), a[3] as c_int)),
            316 => int(write::renameat2(fd(0), p(1), fd(2), p(3), a[4] as u32)),
            322 => int(exec::execveat(
                fd(0),
                p(1),
                a[2] as _,
                a[3] as _,
                a[4] as c_int,
            )),
            332 => int(fs::statx(fd(0), p(1), a[2] as c_int, a[3] as u32, v(4))),
            437 => -(sys::ENOSYS as isize),
            439 => int(fs::faccessat(fd(0), p(1), a[2] as c_int, a[3] as c_int)),
            452 => int(write::fchmodat(fd(0), p(1), a[2] as u32, a[3] as c_int)),
            _ => return None,
        }
    };
    Some(result)
}
