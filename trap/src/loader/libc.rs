//! The libc symbols libunion.so names, for a static program, which has no
//! libc libunion could bind to (`lpmx_trap::link`). libunion's work is raw
//! system calls; from libc it takes memory (its directory listings and
//! fake root's records), the environment (its configuration), and, in
//! functions only a dynamic program can call, a few more. Each is what
//! the C library's function does, in its simplest correct form.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use lpmx_sys as sys;

/// The environment libunion reads its configuration from: a copy of the
/// program's (its own, `unsetenv`, changes only this copy).
static mut ENVIRON: *const *const c_char = core::ptr::null();
static mut PROGRAM_INVOCATION_NAME: *const c_char = c"".as_ptr();
static mut PROGRAM_INVOCATION_SHORT_NAME: *const c_char = c"".as_ptr();
/// libunion keeps its own errno in a static program (its handlers' stacks
/// each have one); this one is for anything else.
static ERRNO: AtomicI32 = AtomicI32::new(0);

/// Sets the environment libunion sees to a copy of `envp`.
///
/// # Safety
/// `envp` is a NULL-terminated array of C strings that lives for ever
/// (the kernel's).
pub unsafe fn set_environment(envp: *const *const u8) {
    let mut count = 0;
    // SAFETY: NULL-terminated.
    while !unsafe { *envp.add(count) }.is_null() {
        count += 1;
    }
    let copy = malloc(8 * (count + 1)).cast::<*const c_char>();
    if copy.is_null() {
        return;
    }
    // SAFETY: count + 1 pointers fit in the copy.
    unsafe {
        core::ptr::copy_nonoverlapping(envp.cast(), copy, count + 1);
        ENVIRON = copy;
    }
}

/// The address of each symbol libunion may name, by name.
pub fn symbol(name: &[u8]) -> Option<usize> {
    unsafe extern "C" {
        fn memcpy(to: *mut u8, from: *const u8, n: usize) -> *mut u8;
        fn memmove(to: *mut u8, from: *const u8, n: usize) -> *mut u8;
        fn memset(to: *mut u8, byte: c_int, n: usize) -> *mut u8;
        fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int;
        fn bcmp(a: *const u8, b: *const u8, n: usize) -> c_int;
        fn strlen(s: *const u8) -> usize;
    }
    Some(match name {
        b"memcpy" => memcpy as *const () as usize,
        b"memmove" => memmove as *const () as usize,
        b"memset" => memset as *const () as usize,
        b"memcmp" => memcmp as *const () as usize,
        b"bcmp" => bcmp as *const () as usize,
        b"strlen" => strlen as *const () as usize,
        b"malloc" => malloc as *const () as usize,
        b"free" => free as *const () as usize,
        b"realloc" => realloc as *const () as usize,
        b"qsort" => qsort as *const () as usize,
        b"getenv" => getenv as *const () as usize,
        b"unsetenv" => unsetenv as *const () as usize,
        b"environ" => (&raw const ENVIRON) as usize,
        b"program_invocation_name" => (&raw const PROGRAM_INVOCATION_NAME) as usize,
        b"program_invocation_short_name" => (&raw const PROGRAM_INVOCATION_SHORT_NAME) as usize,
        b"__errno_location" => errno_location as *const () as usize,
        b"_exit" => exit as *const () as usize,
        b"abort" => abort as *const () as usize,
        b"waitpid" => waitpid as *const () as usize,
        b"pipe2" => pipe2 as *const () as usize,
        b"dl_iterate_phdr" => dl_iterate_phdr as *const () as usize,
        b"fdopen" => fdopen as *const () as usize,
        b"fclose" => fclose as *const () as usize,
        _ => return None,
    })
}

/// Blocks are mappings of a power of two pages, their size in the 16
/// bytes before them; freed ones are kept a few per size for the next
/// (libunion allocates a listing per directory a static program reads).
const CLASSES: usize = 20;
const KEPT: usize = 8;
static FREE: [[AtomicUsize; KEPT]; CLASSES] =
    [const { [const { AtomicUsize::new(0) }; KEPT] }; CLASSES];

/// The size class of a block of `total` bytes: 4 KiB << class.
fn class_of(total: usize) -> usize {
    let pages = total.div_ceil(4096).next_power_of_two();
    pages.trailing_zeros() as usize
}

extern "C" fn malloc(size: usize) -> *mut c_void {
    const PROT_READ_WRITE: usize = 3;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    let Some(total) = size
        .checked_add(16)
        .filter(|&t| t <= isize::MAX as usize / 2)
    else {
        set_errno(sys::ENOMEM);
        return core::ptr::null_mut();
    };
    let class = class_of(total);
    let length = 4096 << class;
    if class < CLASSES {
        for slot in &FREE[class] {
            let block = slot.swap(0, Ordering::Acquire);
            if block != 0 {
                return (block + 16) as *mut c_void;
            }
        }
    }
    match sys::mmap(0, length, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0) {
        Ok(block) => {
            // SAFETY: a fresh mapping of `length` bytes.
            unsafe { (block as *mut usize).write(length) };
            (block + 16) as *mut c_void
        }
        Err(_) => {
            set_errno(sys::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// The mapping's length of a block from malloc.
fn length_of(block: *mut c_void) -> usize {
    // SAFETY: a block from malloc: its length is in front of it.
    unsafe { ((block as usize - 16) as *const usize).read() }
}

extern "C" fn free(block: *mut c_void) {
    if block.is_null() {
        return;
    }
    let start = block as usize - 16;
    let length = length_of(block);
    let class = class_of(length);
    if class < CLASSES {
        for slot in &FREE[class] {
            if slot
                .compare_exchange(0, start, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
    let _ = sys::munmap(start as *mut c_void, length);
}

extern "C" fn realloc(block: *mut c_void, size: usize) -> *mut c_void {
    if block.is_null() {
        return malloc(size);
    }
    let room = length_of(block) - 16;
    if size <= room {
        return block;
    }
    let fresh = malloc(size);
    if fresh.is_null() {
        return fresh;
    }
    // SAFETY: the old block holds `room` bytes, the new one more.
    unsafe { core::ptr::copy_nonoverlapping(block.cast::<u8>(), fresh.cast::<u8>(), room) };
    free(block);
    fresh
}

type Compare = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

/// An insertion sort: libunion sorts only scandir's few names.
unsafe extern "C" fn qsort(base: *mut c_void, count: usize, size: usize, compare: Compare) {
    let at = |i: usize| (base as usize + i * size) as *mut u8;
    for i in 1..count {
        let mut j = i;
        // SAFETY: elements i and j - 1 lie in the caller's array.
        while j > 0 && unsafe { compare(at(j - 1).cast(), at(j).cast()) } > 0 {
            for b in 0..size {
                // SAFETY: as above, byte by byte.
                unsafe { core::ptr::swap(at(j - 1).add(b), at(j).add(b)) };
            }
            j -= 1;
        }
    }
}

/// The entry of `name` in the environment, and its index.
fn find(name: *const c_char) -> Option<(usize, *const c_char)> {
    // SAFETY: a C string; the loader's copy of the environment, set once
    // before libunion runs (null before).
    unsafe {
        let name = lpmx_trap::exec::bytes(name.cast());
        sys::env_entry(ENVIRON, name).map(|(i, value)| (i, value.cast()))
    }
}

/// The value of environment variable `name`, for the loader itself.
pub fn var(name: &core::ffi::CStr) -> Option<*const u8> {
    find(name.as_ptr()).map(|(_, value)| value.cast())
}

extern "C" fn getenv(name: *const c_char) -> *const c_char {
    find(name).map_or(core::ptr::null(), |(_, value)| value)
}

extern "C" fn unsetenv(name: *const c_char) -> c_int {
    while let Some((i, _)) = find(name) {
        // SAFETY: the loader's own copy: the entries after `i` move down,
        // the terminating NULL with them.
        unsafe {
            let environ = ENVIRON.cast_mut();
            let mut j = i;
            while !(*environ.add(j)).is_null() {
                *environ.add(j) = *environ.add(j + 1);
                j += 1;
            }
        }
    }
    0
}

fn set_errno(errno: i32) {
    ERRNO.store(errno, Ordering::Relaxed);
}

extern "C" fn errno_location() -> *mut c_int {
    ERRNO.as_ptr()
}

extern "C" fn exit(status: c_int) -> ! {
    sys::exit_group(status)
}

extern "C" fn abort() -> ! {
    const SIGABRT: usize = 6;
    // SAFETY: tgkill of this thread.
    let _ = unsafe {
        sys::syscall6(
            234,
            [
                sys::getpid() as usize,
                sys::gettid() as usize,
                SIGABRT,
                0,
                0,
                0,
            ],
        )
    };
    sys::exit_group(134)
}

extern "C" fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int {
    // SAFETY: wait4 with the caller's status pointer.
    let result = unsafe {
        sys::syscall6(
            61,
            [pid as usize, status as usize, options as usize, 0, 0, 0],
        )
    };
    ret(result)
}

extern "C" fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    // SAFETY: the caller's two descriptors' room.
    ret(unsafe { sys::syscall6(293, [fds as usize, flags as usize, 0, 0, 0, 0]) })
}

fn ret(result: Result<usize, i32>) -> c_int {
    match result {
        Ok(v) => v as c_int,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// A static program has no shared objects (libunion is not one of its
/// loaded objects: its interposed functions are nobody's to find).
extern "C" fn dl_iterate_phdr(_callback: *const c_void, _data: *mut c_void) -> c_int {
    0
}

/// libunion's popen takes streams of libc's stdio, which a static program
/// calling it would have: none here, so none is made.
extern "C" fn fdopen(_fd: c_int, _mode: *const c_char) -> *mut c_void {
    set_errno(sys::ENOSYS);
    core::ptr::null_mut()
}

extern "C" fn fclose(_stream: *mut c_void) -> c_int {
    set_errno(sys::ENOSYS);
    -1
}
