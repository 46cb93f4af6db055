//! Raw Linux system calls (x86_64), for code that runs without libc or
//! must not go through it: the preload library (`libunion`), whose own
//! file operations must stay out of its own wrappers and out of newer
//! glibc symbol versions, and the loader (`lpmx-loader`), which runs
//! before any libc exists.
//!
//! Every call is made from one page at a fixed address once it is mapped
//! (`map_gadget`): the system-call trap (`lpmx-trap`) lets calls from there
//! through.
#![no_std]

pub mod user;

use core::arch::asm;
use core::ffi::{c_char, c_void};

pub const AT_FDCWD: i32 = -100;
pub const AT_SYMLINK_NOFOLLOW: i32 = 0x100;
pub const AT_EMPTY_PATH: i32 = 0x1000;
pub const O_WRONLY: i32 = 1;
pub const O_RDWR: i32 = 2;
pub const O_CREAT: i32 = 0o100;
pub const O_EXCL: i32 = 0o200;
pub const O_TRUNC: i32 = 0o1000;
pub const O_APPEND: i32 = 0o2000;
pub const O_DIRECTORY: i32 = 0o200000;
pub const O_NOFOLLOW: i32 = 0o400000;
pub const O_CLOEXEC: i32 = 0o2000000;
pub const O_TMPFILE: i32 = 0o20200000;
pub const O_PATH: i32 = 0o10000000;
pub const O_ACCMODE: i32 = 3;

pub const ENOENT: i32 = 2;
pub const EBADF: i32 = 9;
pub const EACCES: i32 = 13;
pub const ENOTDIR: i32 = 20;
pub const EINVAL: i32 = 22;
pub const EROFS: i32 = 30;
pub const ERANGE: i32 = 34;
pub const ENAMETOOLONG: i32 = 36;
pub const ENOMEM: i32 = 12;
pub const ENOEXEC: i32 = 8;
pub const ELOOP: i32 = 40;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;

const SYS_WRITE: usize = 1;
const SYS_CLOSE: usize = 3;
const SYS_FSTAT: usize = 5;
const SYS_MMAP: usize = 9;
const SYS_PREAD64: usize = 17;
const SYS_GETPID: usize = 39;
const SYS_EXECVE: usize = 59;
const SYS_CHDIR: usize = 80;
const SYS_FCHDIR: usize = 81;
const SYS_GETCWD: usize = 79;
const SYS_GETDENTS64: usize = 217;
const SYS_OPENAT: usize = 257;
const SYS_NEWFSTATAT: usize = 262;
const SYS_READLINKAT: usize = 267;
const SYS_FACCESSAT: usize = 269;
const SYS_STATX: usize = 332;
const SYS_FACCESSAT2: usize = 439;

/// A system call's result: the value, or the errno it failed with.
pub type Sys = Result<usize, i32>;

#[inline]
fn check(ret: isize) -> Sys {
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

/// The page every libunion system call is made from, at a fixed address in
/// every process: the system-call trap (`trap`) lets calls from there
/// through and traps the same calls made anywhere else. Mapped by the
/// first libunion of a process image (`map_gadget`).
pub const GADGET: usize = 0x7e1a_0000_0000;
/// `syscall; ret`: where the trap lets calls through (it sees the address
/// after the `syscall`).
pub const GADGET_SYSCALL: usize = GADGET;
pub const GADGET_RETURN: usize = GADGET + 2;
/// Where the loader maps the ELF interpreter (`ld.so`): its own calls (the
/// search for the image's libraries, in the host directories libunion
/// hands it) are let through by the trap too.
pub const INTERP_BASE: usize = 0x7e1b_0000_0000;
pub const INTERP_SPAN: usize = 1 << 24;
/// `mov eax, 15; syscall`: the signal handlers' restorer (rt_sigreturn).
pub const GADGET_RESTORER: usize = GADGET + 16;
const GADGET_MAGIC: &[u8; 8] = b"LPMXGDGT";
const GADGET_MAGIC_AT: usize = GADGET + 64;

/// Statics that every launch writes are put in `.data.lpmx.startup`: in
/// `.data`, whose pages the loader writes anyway (relocations, the end of
/// the file's data), instead of one fresh `.bss` page each, every fresh
/// page being one or two page faults per exec.
#[unsafe(link_section = ".data.lpmx.startup")]
static GADGET_READY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// # Safety
/// The arguments must be valid for system call `n`.
#[inline]
pub unsafe fn syscall6(n: usize, a: [usize; 6]) -> Sys {
    let ret: isize;
    if GADGET_READY.load(core::sync::atomic::Ordering::Relaxed) {
        // SAFETY: the gadget is `syscall; ret`; the call needs the stack
        // (below the red zone) and clobbers what the kernel does.
        unsafe {
            asm!(
                "sub rsp, 128",
                "call {gadget}",
                "add rsp, 128",
                gadget = in(reg) GADGET_SYSCALL,
                inlateout("rax") n as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5],
                lateout("rcx") _, lateout("r11") _,
            );
        }
    } else {
        // SAFETY: the caller vouches for the arguments; the kernel clobbers
        // rcx and r11 only.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5],
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
    }
    check(ret)
}

macro_rules! call {
    ($n:expr $(, $a:expr)*) => {{
        let mut args = [0usize; 6];
        let given = [$($a as usize),*];
        args[..given.len()].copy_from_slice(&given);
        // SAFETY: every caller passes pointers valid for the call.
        unsafe { syscall6($n, args) }
    }};
}

/// The gadget is mapped with the program (the loader carries it).
pub fn gadget_mapped() {
    GADGET_READY.store(true, core::sync::atomic::Ordering::Release);
}

/// Maps the gadget page, or finds it mapped by another libunion of this
/// process image; from then on every system call is made there. False
/// when the address is taken by something else (then the trap cannot be
/// used).
pub fn map_gadget() -> bool {
    use core::sync::atomic::Ordering;
    if GADGET_READY.load(Ordering::Acquire) {
        return true;
    }
    const PROT_READ_WRITE: usize = 3;
    const PROT_READ_EXEC: usize = 5;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    const MAP_FIXED_NOREPLACE: usize = 0x10_0000;
    const SYS_MPROTECT: usize = 10;
    let mapped = call!(
        SYS_MMAP,
        GADGET,
        4096usize,
        PROT_READ_WRITE,
        MAP_PRIVATE_ANONYMOUS | MAP_FIXED_NOREPLACE,
        -1isize,
        0usize
    );
    let ours = match mapped {
        Ok(GADGET) => {
            let code: [(usize, &[u8]); 3] = [
                (GADGET_SYSCALL, &[0x0f, 0x05, 0xc3]),
                (GADGET_RESTORER, &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05]),
                (GADGET_MAGIC_AT, GADGET_MAGIC),
            ];
            for (at, bytes) in code {
                // SAFETY: the page was just mapped writable.
                unsafe {
                    core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len())
                };
            }
            call!(SYS_MPROTECT, GADGET, 4096usize, PROT_READ_EXEC).is_ok()
        }
        // Kernels before 4.17 take the address as a hint only.
        Ok(elsewhere) => {
            let _ = call!(SYS_MUNMAP_NR, elsewhere, 4096usize);
            false
        }
        // Mapped already (by the loader, or this process's first
        // libunion): the page is there, so its magic can be read.
        Err(EEXIST) => {
            mincore(GADGET).is_ok()
                // SAFETY: a mapped page; the loader's and libunion's are
                // readable.
                && unsafe { core::slice::from_raw_parts(GADGET_MAGIC_AT as *const u8, 8) } == GADGET_MAGIC
        }
        Err(_) => false,
    };
    if ours {
        GADGET_READY.store(true, Ordering::Release);
    }
    ours
}

const SYS_MUNMAP_NR: usize = 11;

pub fn openat(dirfd: i32, path: *const u8, flags: i32, mode: u32) -> Sys {
    call!(SYS_OPENAT, dirfd as isize, path, flags as isize, mode)
}
pub fn close(fd: i32) -> Sys {
    call!(SYS_CLOSE, fd as isize)
}
pub fn pread(fd: i32, buf: *mut u8, len: usize, at: u64) -> Sys {
    call!(SYS_PREAD64, fd as isize, buf, len, at)
}
pub fn write(fd: i32, buf: *const u8, len: usize) -> Sys {
    call!(SYS_WRITE, fd as isize, buf, len)
}
pub fn fstat(fd: i32, buf: *mut c_void) -> Sys {
    call!(SYS_FSTAT, fd as isize, buf)
}
pub fn fstatat(dirfd: i32, path: *const u8, buf: *mut c_void, flags: i32) -> Sys {
    call!(SYS_NEWFSTATAT, dirfd as isize, path, buf, flags as isize)
}
pub fn statx(dirfd: i32, path: *const u8, flags: i32, mask: u32, buf: *mut c_void) -> Sys {
    call!(SYS_STATX, dirfd as isize, path, flags as isize, mask, buf)
}
pub fn faccessat(dirfd: i32, path: *const u8, mode: i32, flags: i32) -> Sys {
    if flags == 0 {
        return call!(SYS_FACCESSAT, dirfd as isize, path, mode as isize);
    }
    call!(
        SYS_FACCESSAT2,
        dirfd as isize,
        path,
        mode as isize,
        flags as isize
    )
}
pub fn readlinkat(dirfd: i32, path: *const u8, buf: *mut u8, len: usize) -> Sys {
    call!(SYS_READLINKAT, dirfd as isize, path, buf, len)
}
pub fn chdir(path: *const u8) -> Sys {
    call!(SYS_CHDIR, path)
}
pub fn fchdir(fd: i32) -> Sys {
    call!(SYS_FCHDIR, fd as isize)
}
pub fn getcwd(buf: *mut u8, len: usize) -> Sys {
    call!(SYS_GETCWD, buf, len)
}
pub fn getdents64(fd: i32, buf: *mut u8, len: usize) -> Sys {
    call!(SYS_GETDENTS64, fd as isize, buf, len)
}
pub fn getpid() -> i32 {
    call!(SYS_GETPID).unwrap_or(0) as i32
}
pub fn execve(path: *const u8, argv: *const *const c_char, envp: *const *const c_char) -> Sys {
    call!(SYS_EXECVE, path, argv, envp)
}
pub fn mmap_read(fd: i32, len: usize) -> Sys {
    const PROT_READ: usize = 1;
    const MAP_PRIVATE: usize = 2;
    call!(
        SYS_MMAP,
        0usize,
        len,
        PROT_READ,
        MAP_PRIVATE,
        fd as isize,
        0usize
    )
}

/// Writes a message to standard error, whole or not at all.
pub fn warn(parts: &[&[u8]]) {
    for part in parts {
        let _ = write(2, part.as_ptr(), part.len());
    }
}

pub const ENOSYS: i32 = 38;

pub fn execveat(
    dirfd: i32,
    path: *const u8,
    argv: *const *const c_char,
    envp: *const *const c_char,
    flags: i32,
) -> Sys {
    const SYS_EXECVEAT: usize = 322;
    call!(
        SYS_EXECVEAT,
        dirfd as isize,
        path,
        argv,
        envp,
        flags as isize
    )
}

pub fn fcntl_clear_cloexec(fd: i32) -> Sys {
    const SYS_FCNTL: usize = 72;
    const F_SETFD: usize = 2;
    call!(SYS_FCNTL, fd as isize, F_SETFD, 0usize)
}

pub const SYS_GETXATTR: usize = 191;
pub const SYS_LGETXATTR: usize = 192;
pub const SYS_LISTXATTR: usize = 194;
pub const SYS_LLISTXATTR: usize = 195;

/// getxattr-style calls (path, name, value, size); the list calls take
/// (path, list, size), which `name` and `size` carry here.
pub fn xattr(
    n: usize,
    path: *const u8,
    name: *const c_char,
    value: *mut c_void,
    size: usize,
) -> Sys {
    if n == SYS_LISTXATTR || n == SYS_LLISTXATTR {
        return call!(n, path, name, size);
    }
    call!(n, path, name, value, size)
}

pub fn ftruncate(fd: i32, len: u64) -> Sys {
    const SYS_FTRUNCATE: usize = 77;
    call!(SYS_FTRUNCATE, fd as isize, len)
}

pub fn mmap_shared(fd: i32, len: usize) -> Sys {
    const SYS_MMAP: usize = 9;
    const PROT_READ_WRITE: usize = 3;
    const MAP_SHARED: usize = 1;
    call!(
        SYS_MMAP,
        0usize,
        len,
        PROT_READ_WRITE,
        MAP_SHARED,
        fd as isize,
        0usize
    )
}

pub fn mmap_anonymous(len: usize) -> Sys {
    const SYS_MMAP: usize = 9;
    const PROT_READ_WRITE: usize = 3;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    call!(
        SYS_MMAP,
        0usize,
        len,
        PROT_READ_WRITE,
        MAP_PRIVATE_ANONYMOUS,
        -1isize,
        0usize
    )
}

pub fn munmap(addr: *mut c_void, len: usize) -> Sys {
    const SYS_MUNMAP: usize = 11;
    call!(SYS_MUNMAP, addr, len)
}

pub const EIO: i32 = 5;
pub const EINTR: i32 = 4;

pub fn flock(fd: i32, exclusive: bool) -> Sys {
    const SYS_FLOCK: usize = 73;
    call!(
        SYS_FLOCK,
        fd as isize,
        if exclusive { 2usize } else { 1usize }
    )
}

/// Waits for a lock on all of `fd`'s file: an open file description lock
/// (`F_OFD_SETLKW`), which NFS carries between hosts, or `flock` on a
/// kernel before 3.15. Released when the file is closed.
pub fn lock_whole(fd: i32, exclusive: bool) -> Sys {
    const SYS_FCNTL: usize = 72;
    const F_OFD_SETLKW: usize = 38;
    // struct flock: l_type i16, l_whence i16 (SEEK_SET), l_start i64,
    // l_len i64 (0: to the end, whatever it grows to), l_pid i32.
    let mut whole = [0u64; 4];
    whole[0] = if exclusive { 1 } else { 0 }; // F_WRLCK, F_RDLCK
    loop {
        match call!(SYS_FCNTL, fd as isize, F_OFD_SETLKW, whole.as_mut_ptr()) {
            Err(EINTR) => continue,
            Err(EINVAL) => return flock(fd, exclusive),
            other => return other,
        }
    }
}

pub fn rename(from: *const u8, to: *const u8) -> Sys {
    const SYS_RENAME: usize = 82;
    call!(SYS_RENAME, from, to)
}

pub const EEXIST: i32 = 17;
pub const EXDEV: i32 = 18;
pub const EISDIR: i32 = 21;
pub const ENOTEMPTY: i32 = 39;
pub const SEEK_DATA: usize = 3;
pub const SEEK_HOLE: usize = 4;

pub fn unlinkat(dirfd: i32, path: *const u8, flags: i32) -> Sys {
    call!(263usize, dirfd as isize, path, flags as isize)
}
pub fn mkdirat(dirfd: i32, path: *const u8, mode: u32) -> Sys {
    call!(258usize, dirfd as isize, path, mode)
}
pub fn symlinkat(target: *const u8, dirfd: i32, path: *const u8) -> Sys {
    call!(266usize, target, dirfd as isize, path)
}
pub fn mknodat(dirfd: i32, path: *const u8, mode: u32, device: u64) -> Sys {
    call!(259usize, dirfd as isize, path, mode, device)
}
pub fn linkat(olddir: i32, old: *const u8, newdir: i32, new: *const u8, flags: i32) -> Sys {
    call!(
        265usize,
        olddir as isize,
        old,
        newdir as isize,
        new,
        flags as isize
    )
}
pub fn renameat2(olddir: i32, old: *const u8, newdir: i32, new: *const u8, flags: u32) -> Sys {
    match call!(316usize, olddir as isize, old, newdir as isize, new, flags) {
        // Kernels before 3.15 have renameat only.
        Err(ENOSYS) if flags == 0 => call!(264usize, olddir as isize, old, newdir as isize, new),
        other => other,
    }
}
pub fn truncate(path: *const u8, length: i64) -> Sys {
    call!(76usize, path, length)
}
pub fn fchmodat(dirfd: i32, path: *const u8, mode: u32) -> Sys {
    call!(268usize, dirfd as isize, path, mode)
}
pub fn fchmod(fd: i32, mode: u32) -> Sys {
    call!(91usize, fd as isize, mode)
}
pub fn utimensat(dirfd: i32, path: *const u8, times: *const c_void, flags: i32) -> Sys {
    call!(280usize, dirfd as isize, path, times, flags as isize)
}
/// Sets an open file's atime and mtime (two timespecs, as u64 pairs).
pub fn futimens(fd: i32, times: &[u64; 4]) -> Sys {
    call!(280usize, fd as isize, 0usize, times.as_ptr(), 0usize)
}
pub fn seek(fd: i32, offset: u64, whence: usize) -> Sys {
    call!(8usize, fd as isize, offset, whence)
}
pub fn pwrite(fd: i32, buf: *const u8, len: usize, at: u64) -> Sys {
    call!(18usize, fd as isize, buf, len, at)
}
pub fn copy_file_range(from: i32, from_at: &mut i64, to: i32, to_at: &mut i64, len: usize) -> Sys {
    call!(
        326usize,
        from as isize,
        from_at as *mut i64,
        to as isize,
        to_at as *mut i64,
        len,
        0usize
    )
}
pub fn getrandom(buf: &mut [u8]) -> Sys {
    call!(318usize, buf.as_mut_ptr(), buf.len(), 0usize)
}

pub const SYS_SETXATTR: usize = 188;
pub const SYS_LSETXATTR: usize = 189;
pub const SYS_REMOVEXATTR: usize = 197;
pub const SYS_LREMOVEXATTR: usize = 198;

pub fn fchownat(dirfd: i32, path: *const u8, uid: u32, gid: u32, flags: i32) -> Sys {
    call!(260usize, dirfd as isize, path, uid, gid, flags as isize)
}
pub fn setxattr(
    n: usize,
    path: *const u8,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: i32,
) -> Sys {
    call!(n, path, name, value, size, flags as isize)
}
pub fn removexattr(n: usize, path: *const u8, name: *const c_char) -> Sys {
    call!(n, path, name)
}

pub const E2BIG: i32 = 7;

pub const EPERM: i32 = 1;

pub fn getuid_raw() -> u32 {
    call!(102usize).unwrap_or(0) as u32
}
pub fn getgid_raw() -> u32 {
    call!(104usize).unwrap_or(0) as u32
}
pub fn geteuid_raw() -> u32 {
    call!(107usize).unwrap_or(0) as u32
}
pub fn getegid_raw() -> u32 {
    call!(108usize).unwrap_or(0) as u32
}
pub fn getresuid_raw(r: *mut u32, e: *mut u32, s: *mut u32) -> Sys {
    call!(118usize, r, e, s)
}
pub fn getresgid_raw(r: *mut u32, e: *mut u32, s: *mut u32) -> Sys {
    call!(120usize, r, e, s)
}
pub fn getgroups_raw(size: i32, list: *mut u32) -> Sys {
    call!(115usize, size as isize, list)
}
pub fn fchown(fd: i32, uid: u32, gid: u32) -> Sys {
    call!(93usize, fd as isize, uid, gid)
}

pub const EFAULT: i32 = 14;
pub const EBUSY: i32 = 16;

/// Copies `len` bytes at `remote` in this process to `local`: EFAULT when
/// they are not readable, where touching them would crash.
pub fn read_own_memory(local: *mut u8, remote: *const u8, len: usize) -> Sys {
    let local_iov = [local as usize, len];
    let remote_iov = [remote as usize, len];
    call!(
        310usize,
        getpid() as isize,
        local_iov.as_ptr(),
        1usize,
        remote_iov.as_ptr(),
        1usize,
        0usize
    )
}

/// process_vm_readv(2) of the first byte of each of `count` (at most 16)
/// pages from `page` on: the number of leading pages that could be read
/// (the kernel stops at the first that cannot).
pub fn readable_pages(page: usize, count: usize) -> Sys {
    const MOST: usize = 16;
    let count = count.min(MOST);
    let mut bytes = [0u8; MOST];
    let mut local = [[0usize; 2]; MOST];
    let mut remote = [[0usize; 2]; MOST];
    for i in 0..count {
        local[i] = [bytes.as_mut_ptr() as usize + i, 1];
        remote[i] = [page + i * 4096, 1];
    }
    call!(
        310usize,
        getpid() as isize,
        local.as_ptr(),
        count,
        remote.as_ptr(),
        count,
        0usize
    )
}

/// mincore(2) of one page: ENOMEM when nothing is mapped there.
pub fn mincore(page: usize) -> Sys {
    let mut vec = [0u8; 1];
    call!(27usize, page, 4096usize, vec.as_mut_ptr())
}

pub fn dup3(from: i32, to: i32, flags: i32) -> Sys {
    call!(292usize, from as isize, to as isize, flags as isize)
}

pub fn dup2(from: i32, to: i32) -> Sys {
    call!(33usize, from as isize, to as isize)
}

pub fn close_range(first: u32, last: u32, flags: u32) -> Sys {
    call!(436usize, first, last, flags)
}

pub fn statfs(path: *const u8, buf: *mut c_void) -> Sys {
    call!(137usize, path, buf)
}

pub const EOPNOTSUPP: i32 = 95;
pub const ENODATA: i32 = 61;

pub const EADDRINUSE: i32 = 98;

pub fn bind(fd: i32, addr: *const c_void, len: u32) -> Sys {
    call!(49usize, fd as isize, addr, len)
}

pub fn connect(fd: i32, addr: *const c_void, len: u32) -> Sys {
    call!(42usize, fd as isize, addr, len)
}

pub fn sendto(
    fd: i32,
    buf: *const c_void,
    len: usize,
    flags: i32,
    addr: *const c_void,
    alen: u32,
) -> Sys {
    call!(44usize, fd as isize, buf, len, flags as isize, addr, alen)
}

pub fn mmap(addr: usize, len: usize, prot: usize, flags: usize, fd: i32, offset: usize) -> Sys {
    call!(SYS_MMAP, addr, len, prot, flags, fd as isize, offset)
}

pub fn exit_group(status: i32) -> ! {
    let _ = call!(231usize, status as isize);
    loop {
        core::hint::spin_loop();
    }
}

pub fn prctl(option: usize, arg: usize) -> Sys {
    call!(157usize, option, arg, 0usize, 0usize, 0usize)
}

pub fn prctl5(option: usize, a: usize, b: usize, c: usize, d: usize) -> Sys {
    call!(157usize, option, a, b, c, d)
}

/// rt_sigaction(2) with the kernel's struct (handler, flags, restorer, mask).
pub fn rt_sigaction(signal: i32, act: *const [u64; 4], old: *mut [u64; 4]) -> Sys {
    call!(13usize, signal as isize, act, old, 8usize)
}

pub fn seccomp(operation: usize, flags: usize, args: *const c_void) -> Sys {
    call!(317usize, operation, flags, args)
}

pub fn rt_sigprocmask(how: i32, set: *const u64, old: *mut u64) -> Sys {
    call!(14usize, how as isize, set, old, 8usize)
}

/// The kernel's limit on a path, its NUL included.
pub const PATH_MAX: usize = 4096;

/// The entry `NAME=value` of environment `envp` (null, or a null-terminated
/// array of C strings): its index and a pointer to its value. Each entry is
/// compared only up to `name`'s length and its `=`.
///
/// # Safety
/// `envp` is null or a null-terminated array of C strings.
pub unsafe fn env_entry(envp: *const *const c_char, name: &[u8]) -> Option<(usize, *const u8)> {
    if envp.is_null() {
        return None;
    }
    let mut at = 0;
    loop {
        // SAFETY: the array is null-terminated.
        let entry = unsafe { *envp.add(at) }.cast::<u8>();
        if entry.is_null() {
            return None;
        }
        // A NUL in the entry differs from every byte of `name`, so no byte
        // past it is read.
        // SAFETY: the entry is a C string.
        let matches = unsafe {
            name.iter()
                .enumerate()
                .all(|(i, &byte)| *entry.add(i) == byte)
                && *entry.add(name.len()) == b'='
        };
        if matches {
            // SAFETY: inside the entry.
            return Some((at, unsafe { entry.add(name.len() + 1) }));
        }
        at += 1;
    }
}

/// `value` in decimal, into the end of `out`.
pub fn format_int(mut value: i64, out: &mut [u8; 12]) -> &[u8] {
    let negative = value < 0;
    value = value.abs();
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 || at == 1 {
            break;
        }
    }
    if negative {
        at -= 1;
        out[at] = b'-';
    }
    &out[at..]
}

pub fn gettid() -> i32 {
    call!(186usize).unwrap_or(0) as i32
}

pub fn mprotect(addr: usize, len: usize, prot: usize) -> Sys {
    call!(10usize, addr, len, prot)
}

/// Whether thread or process `other` shares this process's memory
/// (kcmp(2) `KCMP_VM`): Ok(true) or Ok(false), or the kernel's error
/// (`ESRCH`: it is gone; `EPERM`, `ENOSYS`: cannot tell).
pub fn shares_memory(other: i32) -> Result<bool, i32> {
    const KCMP_VM: usize = 1;
    call!(
        312usize,
        getpid() as isize,
        other as isize,
        KCMP_VM,
        0usize,
        0usize
    )
    .map(|v| v == 0)
}

pub const ESRCH: i32 = 3;

/// Whether this thread's thread pointer is a glibc thread's (its TCB
/// points to itself at 0 and at 16), so that glibc's thread-local data
/// (`errno`) can be used: Go without cgo sets one of its own.
pub fn has_glibc_thread_pointer() -> bool {
    const ARCH_GET_FS: usize = 0x1003;
    let mut base = 0usize;
    if call!(158usize, ARCH_GET_FS, &raw mut base).is_err() || base == 0 {
        return false;
    }
    // SAFETY: the thread pointer the program set: its first words.
    unsafe { (base as *const usize).read() == base && ((base + 16) as *const usize).read() == base }
}
