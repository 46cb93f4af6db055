//! The preload's side of the system-call trap (`lpmx_trap`, which has the
//! whole story): in a container's program, trapped calls are made through
//! libunion's own functions (`trapped`), so that glibc's own file accesses
//! see the container too; the trap is set up when lpmx-exec starts the
//! container's first program; and glibc's public signal functions never
//! block SIGSYS or replace the trap's handler (the filter catches the
//! calls glibc makes for itself).

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, Ordering};

use lpmx_trap::handler::{self, Call, SIGSYS, SIGSYS_BIT, set_mask};

use crate::sys;

/// Whether the handler translates (a container's program) or lets calls
/// through (lpmx-exec, between the filter and its exec). Written at every
/// launch: with `lpmx_sys::GADGET_READY` (why there).
#[unsafe(link_section = ".data.lpmx.startup")]
static TRANSLATE: AtomicBool = AtomicBool::new(false);

/// In a container's program (`LPMX_TRAP=1`): the filter is in place, so
/// the translating handler goes in at once.
pub fn inherit() {
    TRANSLATE.store(true, Ordering::Release);
    // The loader the program started under carries the gadget.
    sys::gadget_mapped();
    if handler::install(on_sigsys) {
        crate::state::set_trapped();
        // SAFETY: a NUL-terminated name; the value is read at once.
        let rewrite = unsafe {
            crate::buf::cstr(sys::getenv(
                lpmx_union::variables::TRAP_REWRITE.c_name.as_ptr(),
            ))
        };
        // Only in a static program (see `on_sigsys`).
        if rewrite != b"0" && sys::standalone() {
            lpmx_trap::rewrite::enable(on_rewritten_site, crate::state::get().root);
        }
    }
}

/// In lpmx-exec, before its first exec: the trap for the container's
/// process tree, unless it is turned off (`LPMX_TRAP=0`), the loader is
/// missing, or the kernel or a sandbox does not allow seccomp; then the
/// programs run with the preload alone, as before the trap existed.
pub fn begin() {
    // SAFETY: a NUL-terminated name; the value is read at once.
    let wanted =
        unsafe { crate::buf::cstr(sys::getenv(lpmx_union::variables::TRAP.c_name.as_ptr())) };
    let loader = crate::state::get().loader;
    if wanted == b"0"
        || loader.is_empty()
        || lpmx_trap::exec::runnable(loader.as_ptr().cast()).is_err()
    {
        return;
    }
    if !sys::map_gadget() || !handler::install(on_sigsys) {
        return;
    }
    if lpmx_trap::filter::install(crate::state::get().root).is_ok() {
        crate::state::set_trapped();
    }
}

/// In a static program, which the loader linked libunion into: no libc
/// and no glibc thread data (`sys::standalone`), the filter in place. The
/// configuration is read now, from the loader's copy of the environment,
/// before the program can change its own. 0, or -1 when the handler
/// cannot go in.
fn enter_static() -> c_int {
    sys::set_standalone();
    let _ = crate::state::get();
    inherit();
    if crate::state::trapped() { 0 } else { -1 }
}

crate::export::export! {
    // The entry point of the loader for a static program.
    #[safe]
    fn lpmx_static_enter() -> c_int {
        enter_static()
    }
    // The entry point of lpmx-exec, which dlopens libunion to start the
    // container's first program exactly as a program inside would.
    fn lpmx_exec(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        // The container's process tree starts here: the trap goes in now.
        begin();
        crate::exec::exec(file, true, argv, envp)
    }
}

extern "C" fn on_sigsys(_signal: c_int, info: *mut c_void, context: *mut c_void) {
    // SAFETY: the kernel's siginfo and ucontext of this SIGSYS.
    let call = unsafe { Call::of(info, context) };
    if call.was_sent() {
        return;
    }
    if call.is_foreign(crate::state::get().root) {
        call.stop_foreign();
    }
    let result = call.guard().unwrap_or_else(|| serve(call.nr, call.args));
    call.set_result(result);
    // Only in a static program: its handler runs on the loader's small C
    // library and libunion's own code, which touch no vector register
    // but xmm0-15 (the fast entry keeps those); glibc's functions use the
    // AVX ones, which a system call keeps too.
    if call.is_filtered() && sys::standalone() && TRANSLATE.load(Ordering::Acquire) {
        // Its next calls raise no signal.
        lpmx_trap::rewrite::site(call.ip, call.nr, &call.args, crate::state::get().root);
    }
}

/// A call of a site `lpmx_trap::rewrite` rewrote, served as if trapped.
extern "C" fn on_rewritten_site(nr: usize, args: *const [usize; 6]) -> isize {
    // SAFETY: the entry's copy of the call's arguments.
    serve(nr, unsafe { *args })
}

/// A trapped call, made in the container.
fn serve(nr: usize, args: [usize; 6]) -> isize {
    // libunion's functions use glibc's thread-local data: a thread glibc
    // did not make (Go without cgo) makes its calls as they are. In a
    // static program libunion has no libc to need.
    if !TRANSLATE.load(Ordering::Acquire) || !(sys::standalone() || sys::has_glibc_thread_pointer())
    {
        return handler::raw(nr, args);
    }
    // The program's errno is its own: libunion's functions set it.
    let saved = sys::errno();
    let result = crate::trapped::call(nr, args).unwrap_or_else(|| handler::raw(nr, args));
    sys::set_errno(saved);
    result
}

// --- Calls the loader makes for glibc -----------------------------------

/// A byte per thread (by thread id, modulo) that turns syscall user
/// dispatch on and off (`PR_SET_SYSCALL_USER_DISPATCH`, Linux 5.11).
static SELECTORS: [core::sync::atomic::AtomicU8; 64] =
    [const { core::sync::atomic::AtomicU8::new(0) }; 64];

/// Runs `f` with every system call of this thread made anywhere but the
/// gadget raising SIGSYS (syscall user dispatch), so that the loader's
/// own calls are translated too: glibc's gconv has the loader open its
/// modules by container path, past the filter (which lets the loader's
/// calls through). Where the kernel has no syscall user dispatch, `f`
/// runs as it is.
fn with_every_call_trapped<T>(f: impl FnOnce() -> T) -> T {
    const PR_SET_SYSCALL_USER_DISPATCH: usize = 59;
    const ON: usize = 1;
    const OFF: usize = 0;
    if !crate::state::trapped() || !TRANSLATE.load(Ordering::Acquire) {
        return f();
    }
    let selector = &SELECTORS[sys::gettid() as usize % SELECTORS.len()];
    selector.store(0, Ordering::SeqCst);
    let on = sys::prctl5(
        PR_SET_SYSCALL_USER_DISPATCH,
        ON,
        sys::GADGET,
        4096,
        selector.as_ptr() as usize,
    );
    if on.is_err() {
        return f();
    }
    selector.store(1, Ordering::SeqCst);
    let result = f();
    selector.store(0, Ordering::SeqCst);
    let _ = sys::prctl5(PR_SET_SYSCALL_USER_DISPATCH, OFF, 0, 0, 0);
    result
}

type IconvOpenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut c_void;

crate::export::export! {
    #[safe]
    fn iconv_open(to: *const c_char, from: *const c_char) -> *mut c_void {
        match crate::sys::real!("iconv_open": IconvOpenFn) {
            // SAFETY: glibc's own, with the caller's arguments.
            Some(real) => with_every_call_trapped(|| unsafe { real(to, from) }),
            None => {
                sys::set_errno(sys::ENOSYS);
                core::ptr::null_mut()
            }
        }
    }
}

// --- Signal functions -----------------------------------------------------

type SigprocmaskFn = unsafe extern "C" fn(c_int, *const u64, *mut u64) -> c_int;
type SigactionFn = unsafe extern "C" fn(c_int, *const c_void, *mut c_void) -> c_int;

/// sigsetmask/sigblock (`how` SIG_SETMASK or SIG_BLOCK): the old mask.
fn bsd_mask(how: c_int, mask: c_int) -> c_int {
    let set = u64::from(mask as u32);
    let mut old = 0u64;
    if !crate::state::trapped() {
        let _ = sys::rt_sigprocmask(how, &set, &mut old);
        return old as u32 as c_int;
    }
    // SAFETY: a set of ours and room for the old one.
    match unsafe { set_mask(how, &set, &mut old) } {
        0 => old as u32 as c_int,
        e => sys::c_ret(Err(e)),
    }
}

crate::export::export! {
    #[safe]
    fn sigprocmask(how: c_int, set: *const u64, old: *mut u64) -> c_int {
        if !crate::state::trapped() {
            return match crate::sys::real!("sigprocmask": SigprocmaskFn) {
                // SAFETY: glibc's own, with the caller's arguments.
                Some(real) => unsafe { real(how, set, old) },
                None => sys::c_ret(Err(sys::ENOSYS)),
            };
        }
        // SAFETY: the caller's sets, as sigprocmask takes them.
        match unsafe { set_mask(how, set, old) } {
            0 => 0,
            e => sys::c_ret(Err(e)),
        }
    }
    #[safe]
    fn pthread_sigmask(how: c_int, set: *const u64, old: *mut u64) -> c_int {
        if !crate::state::trapped() {
            return match crate::sys::real!("pthread_sigmask": SigprocmaskFn) {
                // SAFETY: as above.
                Some(real) => unsafe { real(how, set, old) },
                None => sys::ENOSYS,
            };
        }
        // SAFETY: as above.
        unsafe { set_mask(how, set, old) }
    }
    // The BSD calls: a mask of the first 31 signals as an int.
    #[safe]
    fn sigsetmask(mask: c_int) -> c_int { bsd_mask(2, mask) }
    #[safe]
    fn sigblock(mask: c_int) -> c_int { bsd_mask(0, mask) }
    fn sigaction(signal: c_int, act: *const c_void, old: *mut c_void) -> c_int {
        let Some(real) = crate::sys::real!("sigaction": SigactionFn) else {
            return sys::c_ret(Err(sys::ENOSYS));
        };
        if !crate::state::trapped() || act.is_null() {
            return real(signal, act, old);
        }
        if signal == SIGSYS {
            // The trap's handler stays: the program is told it changed.
            return real(signal, core::ptr::null(), old);
        }
        if lpmx_sys::user::check(act.cast(), 152).is_err() {
            return sys::c_ret(Err(sys::EFAULT));
        }
        // glibc's struct sigaction: handler, sa_mask (128 bytes), flags, restorer.
        let mut copy = [0u8; 152];
        core::ptr::copy_nonoverlapping(act.cast::<u8>(), copy.as_mut_ptr(), 152);
        let mask = u64::from_ne_bytes(copy[8..16].try_into().unwrap_or([0; 8])) & !SIGSYS_BIT;
        copy[8..16].copy_from_slice(&mask.to_ne_bytes());
        real(signal, copy.as_ptr().cast(), old)
    }
}
