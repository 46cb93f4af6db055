//! lpmx-loader: every exec under the system-call trap starts here.
//!
//! ```text
//! LPMX_LOADER_MODE=run    LPMX_LOADER_FILE=FILE  lpmx-loader ARGV0 ARGS...
//!     a program (and its ELF interpreter)
//! LPMX_LOADER_MODE=interp LPMX_LOADER_FILE=LDSO  LPMX_LOADER_ARG0=LDSO
//!     LPMX_LOADER_ARG1=OPTION... LPMX_LOADER_ARG<n>=PROGRAM  lpmx-loader ARGV0 ARGS...
//!     an ELF interpreter run as the program: LDSO OPTION... PROGRAM ARGS...
//! LPMX_LOADER_MODE=static LPMX_LOADER_FILE=FILE  lpmx-loader ARGV0 ARGS...
//!     a static program of the container
//! ```
//!
//! What the loader needs comes in its environment (and is dropped from
//! the program's), so that the arguments the kernel keeps for the process
//! (`/proc/PID/cmdline`, what `ps` shows) are the program's own.
//!
//! The kernel starts this small static program with no libc: it maps the
//! gadget, installs a SIGSYS handler that makes trapped calls as they are,
//! and starts FILE as the kernel would (`lpmx_trap::exec`). A container's
//! program then gets libunion's handler, which translates; a host program
//! keeps this one, so that its calls are the host's, its execs go through
//! the loader again, and `/proc/self/exe` names its file, not the loader.
//! A static program of the container has no ELF interpreter to preload
//! libunion: the loader links libunion into it (`lpmx_trap::link`, with
//! the libc symbols of `libc`), and libunion's handler then translates its
//! system calls.
#![no_std]
#![no_main]

use core::ffi::{c_char, c_int, c_void};

use lpmx_sys as sys;
use lpmx_trap::exec::{self, RUN, RUN_INTERP, RUN_STATIC, bytes};
use lpmx_trap::handler::{self, Call};
use lpmx_trap::link::{Failure, Library};
use lpmx_union::variables::{LOADER_ARGS, LOADER_FILE, LOADER_MODE, loader_arg};

mod libc;

// The loader's arguments go where `#!` lines put theirs.
const _: () = assert!(LOADER_ARGS <= exec::MAX_PREFIX);

/// This loader's path (the kernel's `AT_EXECFN`), NUL-terminated: execs go
/// through it.
static mut SELF_PATH: [u8; 4096] = [0; 4096];

/// What the loader's environment entries ask for.
struct Request {
    mode: &'static [u8],
    file: *const u8,
    /// The `LPMX_LOADER_ARG<n>` values, in place of argv[0].
    args: [*const u8; LOADER_ARGS],
    arg_count: usize,
}

/// Reads the loader's entries of `envp`.
///
/// # Safety
/// `envp` is the kernel's NULL-terminated environment array.
unsafe fn request(envp: *const *const u8) -> Request {
    let mut request = Request {
        mode: b"",
        file: core::ptr::null(),
        args: [core::ptr::null(); LOADER_ARGS],
        arg_count: 0,
    };
    let mut at = 0;
    // SAFETY: as the caller vouches; the strings live as long as the process.
    unsafe {
        while !(*envp.add(at)).is_null() {
            let entry = *envp.add(at);
            let text = bytes(entry);
            if let Some(mode) = text.strip_prefix(LOADER_MODE.assignment) {
                request.mode = mode;
            } else if LOADER_FILE.is_set_by(text) {
                request.file = entry.add(LOADER_FILE.assignment.len());
            } else if let Some((n, value)) = loader_arg(text) {
                request.args[n] = value.as_ptr();
                request.arg_count = request.arg_count.max(n + 1);
            }
            at += 1;
        }
    }
    request
}

/// The kernel's `AT_EXECFN`: the path this loader was exec'd by.
///
/// # Safety
/// `envp` is the kernel's environment array, the auxiliary vector after it.
unsafe fn exec_fn(envp: *const *const u8) -> &'static [u8] {
    const AT_NULL: usize = 0;
    const AT_EXECFN: usize = 31;
    // SAFETY: as the caller vouches.
    unsafe {
        let mut at = 0;
        while !(*envp.add(at)).is_null() {
            at += 1;
        }
        let mut auxv = envp.add(at + 1) as *const usize;
        while *auxv != AT_NULL {
            if *auxv == AT_EXECFN {
                return bytes(*auxv.add(1) as *const u8);
            }
            auxv = auxv.add(2);
        }
    }
    b""
}

/// The entry point.
///
/// # Safety
/// Only the kernel calls this, at exec.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym start,
    )
}

// The gadget page is part of this program (build.rs puts the section at
// `lpmx_sys::GADGET`): the kernel maps it with the rest, no call needed.
core::arch::global_asm!(
    ".pushsection .lpmx_gadget, \"axR\", @progbits",
    ".balign 4096",
    "lpmx_gadget_page:",
    "    syscall",
    "    ret",
    ".balign 16",
    "    mov eax, 15",
    "    syscall",
    ".balign 64",
    ".ascii \"LPMXGDGT\"",
    ".balign 4096",
    ".popsection",
);

unsafe extern "C" fn start(sp: *mut usize) -> ! {
    sys::gadget_mapped();
    handler::install(on_sigsys);
    // SAFETY: the kernel's initial stack: argc, argv, NULL, envp, NULL, auxv.
    let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const u8) };
    // SAFETY: as above.
    let envp = unsafe { argv.add(argc + 1) };
    // SAFETY: as above.
    let request = unsafe { request(envp) };
    let interp = request.mode == RUN_INTERP.to_bytes();
    let standalone = request.mode == RUN_STATIC.to_bytes();
    if (!interp && !standalone && request.mode != RUN.to_bytes())
        || request.file.is_null()
        || argc == 0
        || request.args[..request.arg_count]
            .iter()
            .any(|arg| arg.is_null())
    {
        // SAFETY: as above.
        if argc > 1 && unsafe { bytes(*argv.add(1)) }.starts_with(b"--lpmx-") {
            sys::warn(&[
                b"lpmx-loader: started the way an older lpmx did (--lpmx- arguments): this loader takes its request in the environment; the container's libunion.so is not this loader's (run the program again from a new lpmx-exec)\n",
            ]);
        } else {
            sys::warn(&[b"lpmx-loader starts programs for lpmx-exec under its system-call trap\n"]);
        }
        sys::exit_group(2);
    }
    // SAFETY: as above.
    let own = unsafe { exec_fn(envp) };
    let len = own.len().min(4095);
    // SAFETY: written once, before anything reads it.
    unsafe {
        let copy = &mut *(&raw mut SELF_PATH).cast::<[u8; 4096]>();
        copy[..len].copy_from_slice(&own[..len]);
        copy[len] = 0;
        if len == 0 {
            // No AT_EXECFN (before Linux 2.6.27): the kernel's link.
            let n = sys::readlinkat(
                sys::AT_FDCWD,
                c"/proc/self/exe".as_ptr().cast(),
                copy.as_mut_ptr(),
                4095,
            );
            copy[n.map_or(0, |n| n.min(4095))] = 0;
        }
    }
    if standalone {
        // SAFETY: the kernel's environment and argument strings.
        unsafe { link_libunion(envp, request.file) };
    }
    // SAFETY: the kernel's arrays; the loader's arguments, from its
    // environment, stand for argv[0].
    unsafe {
        exec::run(
            request.file,
            interp,
            &request.args[..request.arg_count],
            argv,
            argc,
            envp,
        )
    }
}

/// Links libunion (`LPMX_LIB`) into this process and lets it take the
/// trap over: the static program `program` about to start then sees the
/// container as a dynamic one does.
///
/// # Safety
/// `envp` is the kernel's environment array; `program` a C string.
unsafe fn link_libunion(envp: *const *const u8, program: *const u8) {
    // SAFETY: the kernel's, for the process's life.
    unsafe { libc::set_environment(envp) };
    // SAFETY: as above.
    let name = unsafe { bytes(program) };
    let Some(lib) = libc::var(lpmx_union::variables::LIB.c_name) else {
        exec::fail(b"LPMX_LIB does not name libunion", name, sys::EINVAL);
    };
    // SAFETY: lpmx's own libunion.so, which lpmx-exec named.
    let library = match unsafe { Library::load(lib, &libc::symbol) } {
        Ok(library) => library,
        Err(Failure::Open(e)) => exec::fail(b"cannot open libunion.so (LPMX_LIB)", name, e),
        Err(Failure::Bad(why)) => {
            sys::warn(&[b"lpmx: libunion.so: ", why, b"\n"]);
            exec::fail(b"cannot link libunion into it", name, sys::ENOEXEC)
        }
        Err(Failure::Missing(symbol)) => {
            sys::warn(&[
                b"lpmx: libunion.so needs ",
                symbol,
                b", which the loader lacks\n",
            ]);
            exec::fail(b"cannot link libunion into it", name, sys::ENOEXEC)
        }
    };
    let Some(enter) = library.symbol(b"lpmx_static_enter") else {
        exec::fail(b"libunion.so has no lpmx_static_enter", name, sys::ENOEXEC);
    };
    // SAFETY: libunion's entry point for static programs.
    let enter: extern "C" fn() -> c_int = unsafe { core::mem::transmute::<usize, _>(enter) };
    if enter() != 0 {
        exec::fail(b"libunion cannot take the trap over", name, sys::EACCES);
    }
}

extern "C" fn on_sigsys(_signal: c_int, info: *mut c_void, context: *mut c_void) {
    // SAFETY: the kernel's siginfo and ucontext of this SIGSYS.
    let call = unsafe { Call::of(info, context) };
    if call.was_sent() {
        return;
    }
    // A host program: fake root's calls may be trapped too.
    if call.is_foreign(true) {
        call.stop_foreign();
    }
    let result = match call.guard() {
        Some(result) => result,
        None => match call.nr {
            59 | 322 => reroute_exec(&call),
            _ if handler::is_ld_so_preload(call.nr, call.args) => -(sys::ENOENT as isize),
            _ => self_exe(&call).unwrap_or_else(|| call.raw()),
        },
    };
    call.set_result(result);
}

/// Whether `path` names this process's executable in /proc.
fn is_self_exe(path: &[u8]) -> bool {
    if path == b"/proc/self/exe" || path == b"/proc/thread-self/exe" {
        return true;
    }
    let Some(pid) = path
        .strip_prefix(b"/proc/")
        .and_then(|r| r.strip_suffix(b"/exe"))
    else {
        return false;
    };
    let mut digits = [0u8; 12];
    pid == sys::format_int(i64::from(sys::getpid()), &mut digits)
}

/// `/proc/self/exe` is the program's file, not the loader's: its readlink
/// names it and its open opens it.
fn self_exe(call: &Call) -> Option<isize> {
    let a = call.args;
    let (path, rest) = match call.nr {
        89 | 2 => (a[0], &a[1..]),
        267 | 257 => (a[1], &a[2..]),
        _ => return None,
    };
    let given = sys::user::path(path as *const c_char).ok()?;
    if !is_self_exe(given) {
        return None;
    }
    let exe = exec::exe();
    if exe.is_empty() {
        return None;
    }
    Some(match call.nr {
        89 | 267 => {
            let (buf, size) = (rest[0] as *mut u8, rest[1]);
            let n = exe.len().min(size);
            if sys::user::check(buf.cast_const(), n).is_err() {
                return Some(-(sys::EFAULT as isize));
            }
            // SAFETY: the caller's buffer of `size` bytes.
            unsafe { core::ptr::copy_nonoverlapping(exe.as_ptr(), buf, n) };
            n as isize
        }
        _ => match sys::openat(sys::AT_FDCWD, exe.as_ptr(), rest[0] as i32, rest[1] as u32) {
            Ok(fd) => fd as isize,
            Err(e) => -(e as isize),
        },
    })
}

/// An exec in a host program: through the loader again, which puts this
/// handler back in the new program.
fn reroute_exec(call: &Call) -> isize {
    const AT_EMPTY_PATH: usize = 0x1000;
    let a = call.args;
    let mut path = [0u8; 4096];
    let (file, argv, envp) = if call.nr == 59 {
        (a[0] as *const c_char, a[1], a[2])
    } else {
        let (dirfd, file, argv, envp, flags) = (a[0] as i32, a[1], a[2], a[3], a[4]);
        let given = match sys::user::path(file as *const c_char) {
            Ok(given) => given,
            Err(e) => return -(e as isize),
        };
        if given.first() == Some(&b'/') {
            (file as *const c_char, argv, envp)
        } else {
            // Relative to a descriptor: through its /proc/self/fd link.
            let mut digits = [0u8; 12];
            let fd = sys::format_int(i64::from(dirfd), &mut digits);
            let parts: [&[u8]; 4] = [
                b"/proc/self/fd/",
                fd,
                if given.is_empty() && flags & AT_EMPTY_PATH != 0 {
                    b""
                } else {
                    b"/"
                },
                given,
            ];
            let mut at = 0;
            for part in parts {
                if at + part.len() >= path.len() {
                    return -(sys::ENAMETOOLONG as isize);
                }
                path[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            path[at] = 0;
            (path.as_ptr().cast(), argv, envp)
        }
    };
    // The loader's path, set at start.
    let loader = (&raw const SELF_PATH).cast::<u8>();
    // SAFETY: the program's own exec arguments, which the kernel would
    // have read the same.
    match unsafe { exec::through_loader(loader, file, argv as _, envp as _) } {
        Ok(()) => 0,
        Err(e) => -(e as isize),
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::warn(&[b"lpmx-loader: internal error\n"]);
    sys::exit_group(127)
}

/// The precompiled `core` refers to the unwinder's personality routine;
/// nothing unwinds here (panic = "abort"), so it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

// What the compiler calls for copies and comparisons, in assembly so that
// it cannot turn them back into calls of themselves; there is no libc.
core::arch::global_asm!(
    ".globl memcpy",
    "memcpy:",
    // Short copies (libunion's path buffers and lookup results, a few
    // hundred bytes) in 16-byte moves, the last one overlapping: `rep
    // movsb` starts slowly; long ones by `rep movsb`.
    "    mov rax, rdi",
    "    cmp rdx, 16",
    "    jb 11f",
    "    cmp rdx, 512",
    "    ja 10f",
    "    movdqu xmm1, [rsi + rdx - 16]",
    "    lea rcx, [rdi + rdx - 16]",
    "9:",
    "    movdqu xmm0, [rsi]",
    "    movdqu [rdi], xmm0",
    "    add rsi, 16",
    "    add rdi, 16",
    "    sub rdx, 16",
    "    cmp rdx, 16",
    "    ja 9b",
    "    movdqu [rcx], xmm1",
    "    ret",
    "10:",
    "    mov rcx, rdx",
    "    rep movsb",
    "    ret",
    "11:",
    "    cmp rdx, 8",
    "    jb 12f",
    "    mov rcx, [rsi]",
    "    mov r8, [rsi + rdx - 8]",
    "    mov [rdi], rcx",
    "    mov [rdi + rdx - 8], r8",
    "    ret",
    "12:",
    "    cmp rdx, 4",
    "    jb 13f",
    "    mov ecx, [rsi]",
    "    mov r8d, [rsi + rdx - 4]",
    "    mov [rdi], ecx",
    "    mov [rdi + rdx - 4], r8d",
    "    ret",
    "13:",
    "    test rdx, rdx",
    "    jz 14f",
    "    movzx ecx, byte ptr [rsi]",
    "    movzx r8d, byte ptr [rsi + rdx - 1]",
    "    cmp rdx, 2",
    "    jbe 15f",
    "    movzx r9d, byte ptr [rsi + 1]",
    "    mov [rdi + 1], r9b",
    "15:",
    "    mov [rdi], cl",
    "    mov [rdi + rdx - 1], r8b",
    "14:",
    "    ret",
    ".globl memmove",
    "memmove:",
    "    mov rax, rdi",
    "    mov rcx, rdx",
    "    cmp rdi, rsi",
    "    jbe 2f",
    "    lea rsi, [rsi + rdx - 1]",
    "    lea rdi, [rdi + rdx - 1]",
    "    std",
    "    rep movsb",
    "    cld",
    "    ret",
    "2:",
    "    rep movsb",
    "    ret",
    ".globl memset",
    "memset:",
    "    mov r8, rdi",
    "    mov eax, esi",
    "    mov rcx, rdx",
    "    rep stosb",
    "    mov rax, r8",
    "    ret",
    ".globl memcmp",
    ".globl bcmp",
    "memcmp:",
    "bcmp:",
    // Eight bytes at a time (libunion's index search compares names),
    // the first differing word's bytes in order by bswap; then the rest.
    "    xor eax, eax",
    "7:",
    "    cmp rdx, 8",
    "    jb 3f",
    "    mov r8, [rdi]",
    "    mov r9, [rsi]",
    "    cmp r8, r9",
    "    jne 8f",
    "    add rdi, 8",
    "    add rsi, 8",
    "    sub rdx, 8",
    "    jmp 7b",
    "8:",
    "    bswap r8",
    "    bswap r9",
    "    cmp r8, r9",
    "    sbb eax, eax",
    "    or eax, 1",
    "    ret",
    "3:",
    "    test rdx, rdx",
    "    jz 4f",
    "    movzx eax, byte ptr [rdi]",
    "    movzx ecx, byte ptr [rsi]",
    "    sub eax, ecx",
    "    jnz 4f",
    "    inc rdi",
    "    inc rsi",
    "    dec rdx",
    "    jmp 3b",
    "4:",
    "    ret",
    ".globl strlen",
    "strlen:",
    "    mov rax, rdi",
    "5:",
    "    cmp byte ptr [rax], 0",
    "    je 6f",
    "    inc rax",
    "    jmp 5b",
    "6:",
    "    sub rax, rdi",
    "    ret",
);
