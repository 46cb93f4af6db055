//! The SIGSYS side of the trap, shared by the loader (`lpmx-loader`, which
//! lets trapped calls through) and the preload library (which translates
//! them): reading the trapped call, making it from the gadget, and what
//! keeps the trap working whatever the program does: no handler for
//! SIGSYS but the trap's, and SIGSYS never blocked (a blocked or default
//! SIGSYS from the trap would kill the program).

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use lpmx_sys as sys;

use crate::filter::{SYS_RT_SIGACTION, SYS_RT_SIGPROCMASK};

pub const SIGSYS: i32 = 31;
pub const SIGSYS_BIT: u64 = 1 << (SIGSYS - 1);

/// A SIGSYS handler (`SA_SIGINFO`).
pub type Handler = extern "C" fn(c_int, *mut c_void, *mut c_void);

/// The handler `install` was given, called by `entry`. Written at every
/// launch: with `lpmx_sys::GADGET_READY` (why there).
#[unsafe(link_section = ".data.lpmx.startup")]
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Makes `handler` this process's SIGSYS handler: on the alternate stack
/// where the program set one, moving to a stack of the trap's own
/// (`stack`), re-entrant, returning through the gadget's restorer.
pub fn install(handler: Handler) -> bool {
    const SA_SIGINFO: u64 = 4;
    const SA_ONSTACK: u64 = 0x0800_0000;
    const SA_RESTORER: u64 = 0x0400_0000;
    const SA_NODEFER: u64 = 0x4000_0000;
    HANDLER.store(handler as usize, Ordering::Release);
    let act: [u64; 4] = [
        entry as *const () as u64,
        SA_SIGINFO | SA_ONSTACK | SA_RESTORER | SA_NODEFER,
        sys::GADGET_RESTORER as u64,
        0,
    ];
    sys::rt_sigaction(SIGSYS, &act, core::ptr::null_mut()).is_ok()
}

extern "C" fn entry(signal: c_int, info: *mut c_void, context: *mut c_void) {
    let handler = HANDLER.load(Ordering::Acquire);
    if handler == 0 {
        return;
    }
    // SAFETY: `install` stored a `Handler`; the kernel's frame.
    unsafe {
        let handler: Handler = core::mem::transmute::<usize, Handler>(handler);
        crate::stack::call_on_own_stack(handler, signal, info, context);
    }
}

/// ucontext_t (x86_64): the registers from 40, the signal mask at 296.
const GREGS: usize = 40;
const SIGMASK_AT: usize = 296;
const REG_R8: usize = 0;
const REG_R9: usize = 1;
const REG_R10: usize = 2;
const REG_RDI: usize = 8;
const REG_RSI: usize = 9;
const REG_RDX: usize = 12;
const REG_RAX: usize = 13;
const REG_RIP: usize = 16;

/// A trapped call: its number and arguments, and where its result goes.
pub struct Call {
    pub nr: usize,
    pub args: [usize; 6],
    /// si_code: SYS_SECCOMP for a call the filter trapped,
    /// SYS_USER_DISPATCH for one syscall user dispatch caught (libunion's
    /// `iconv_open`); else the SIGSYS was sent (kill, tgkill) and names no
    /// call.
    code: i32,
    /// si_errno: the data of the filter's SECCOMP_RET_TRAP (0 in ours).
    data: i32,
    /// Where the program resumes: the address after its `syscall`.
    pub ip: usize,
    context: *mut c_void,
}

/// si_code of a SIGSYS from a seccomp filter, and from syscall user
/// dispatch.
const SYS_SECCOMP: i32 = 1;
const SYS_USER_DISPATCH: i32 = 2;

impl Call {
    /// The call SIGSYS reports (`info`, `context` as the handler got them).
    ///
    /// # Safety
    /// The kernel's siginfo and ucontext of a SIGSYS.
    pub unsafe fn of(info: *mut c_void, context: *mut c_void) -> Call {
        // SAFETY: si_syscall at 24 of the siginfo; the ucontext's registers.
        unsafe {
            let nr = info.cast::<u8>().add(24).cast::<i32>().read() as usize;
            let data = info.cast::<u8>().add(4).cast::<i32>().read();
            let code = info.cast::<u8>().add(8).cast::<i32>().read();
            let regs = context.cast::<u8>().add(GREGS).cast::<u64>();
            let reg = |i: usize| regs.add(i).read() as usize;
            Call {
                nr,
                args: [
                    reg(REG_RDI),
                    reg(REG_RSI),
                    reg(REG_RDX),
                    reg(REG_R10),
                    reg(REG_R8),
                    reg(REG_R9),
                ],
                code,
                data,
                ip: reg(REG_RIP),
                context,
            }
        }
    }

    /// Whether this SIGSYS was sent rather than trapped: it names no call
    /// to make (and no handler of the program's may take it).
    pub fn was_sent(&self) -> bool {
        self.code != SYS_SECCOMP && self.code != SYS_USER_DISPATCH
    }

    /// Whether the filter trapped this call (not syscall user dispatch,
    /// not a SIGSYS sent): its site may be rewritten (`rewrite`).
    pub fn is_filtered(&self) -> bool {
        self.code == SYS_SECCOMP
    }

    /// Whether another filter (the program's own) trapped this call: one
    /// the trap's filter lets through, or with data ours never gives. The
    /// trap cannot share SIGSYS with it, so the program is stopped with
    /// the reason (`stop_foreign`).
    pub fn is_foreign(&self, fake_root: bool) -> bool {
        self.code == SYS_SECCOMP && (self.data != 0 || !crate::filter::traps(self.nr, fake_root))
    }

    /// Ends the program that trapped calls with a filter of its own.
    pub fn stop_foreign(&self) -> ! {
        let mut digits = [0u8; 12];
        sys::warn(&[
            b"lpmx: the program installed a seccomp filter of its own that traps system calls (here call ",
            sys::format_int(self.nr as i64, &mut digits),
            b") with SIGSYS, which lpmx's system-call trap needs for itself: not supported\n",
        ]);
        sys::exit_group(126)
    }

    /// The value the call returns to the program.
    pub fn set_result(&self, value: isize) {
        // SAFETY: the ucontext's rax, restored by sigreturn.
        unsafe {
            self.context
                .cast::<u8>()
                .add(GREGS)
                .cast::<u64>()
                .add(REG_RAX)
                .write(value as u64)
        };
    }

    /// The calls that guard the trap, answered here: rt_sigaction of SIGSYS
    /// and rt_sigprocmask. None for any other.
    pub fn guard(&self) -> Option<isize> {
        match self.nr as u32 {
            SYS_RT_SIGACTION => Some(sigaction(self.args)),
            SYS_RT_SIGPROCMASK => Some(sigprocmask(self.args, self.context)),
            _ => None,
        }
    }

    /// The call made as it is, from the gadget.
    pub fn raw(&self) -> isize {
        raw(self.nr, self.args)
    }
}

pub fn raw(nr: usize, args: [usize; 6]) -> isize {
    // SAFETY: the trapped program's own arguments, as it made the call.
    match unsafe { sys::syscall6(nr, args) } {
        Ok(v) => v as isize,
        Err(e) => -(e as isize),
    }
}

/// The loader (`ld.so`) reads the host's `/etc/ld.so.preload` before any
/// libunion translates: none is read (a host's would load host libraries
/// into the container's programs).
pub fn is_ld_so_preload(nr: usize, args: [usize; 6]) -> bool {
    let path = match nr {
        2 | 21 => args[0],
        257 | 269 | 439 => args[1],
        _ => return false,
    };
    sys::user::path(path as *const c_char).is_ok_and(|p| p == b"/etc/ld.so.preload")
}

/// rt_sigaction: no handler for SIGSYS but the trap's, and SIGSYS out of
/// every handler's mask.
fn sigaction(args: [usize; 6]) -> isize {
    let (signal, act, old) = (args[0] as i32, args[1], args[2]);
    if signal == SIGSYS {
        if old != 0 && sys::user::check(old as *const u8, 32).is_ok() {
            // SAFETY: the caller's struct, checked writable... as far as
            // readable goes; the kernel would fault the same.
            unsafe { core::ptr::write_bytes(old as *mut u8, 0, 32) };
        }
        return 0;
    }
    if act == 0 || sys::user::check(act as *const u8, 32).is_err() {
        return raw(SYS_RT_SIGACTION as usize, args);
    }
    let mut copy = [0u64; 4];
    // SAFETY: 32 readable bytes of the caller's action.
    unsafe { core::ptr::copy_nonoverlapping(act as *const u64, copy.as_mut_ptr(), 4) };
    copy[3] &= !SIGSYS_BIT;
    let mut changed = args;
    changed[1] = copy.as_ptr() as usize;
    raw(SYS_RT_SIGACTION as usize, changed)
}

/// rt_sigprocmask: the new mask is put where sigreturn restores it from,
/// without SIGSYS.
fn sigprocmask(args: [usize; 6], context: *mut c_void) -> isize {
    const SIG_BLOCK: usize = 0;
    const SIG_UNBLOCK: usize = 1;
    const SIG_SETMASK: usize = 2;
    let (how, set, old) = (args[0], args[1], args[2]);
    // SAFETY: the ucontext's saved mask, the thread's mask before the call.
    let mask = unsafe { context.cast::<u8>().add(SIGMASK_AT).cast::<u64>() };
    // SAFETY: as above.
    let current = unsafe { mask.read() };
    let mut wanted = current;
    if set != 0 {
        if sys::user::check(set as *const u8, 8).is_err() {
            return -(sys::EFAULT as isize);
        }
        // SAFETY: 8 readable bytes.
        let given = unsafe { (set as *const u64).read() };
        wanted = match how {
            SIG_BLOCK => current | given,
            SIG_UNBLOCK => current & !given,
            SIG_SETMASK => given,
            _ => return -(sys::EINVAL as isize),
        };
    }
    if old != 0 {
        if sys::user::check(old as *const u8, 8).is_err() {
            return -(sys::EFAULT as isize);
        }
        // SAFETY: the caller's old set.
        unsafe { (old as *mut u64).write(current) };
    }
    // SIGKILL and SIGSTOP cannot be blocked either.
    wanted &= !(SIGSYS_BIT | (1 << 8) | (1 << 18));
    // SAFETY: as above.
    unsafe { mask.write(wanted) };
    0
}

/// SIGSYS, and glibc's own SIGCANCEL and SIGSETXID, are never blocked.
pub const NEVER_BLOCKED: u64 = SIGSYS_BIT | (1 << 31) | (1 << 32);

/// The mask change `set` (glibc's sigset_t, 128 bytes) with SIGSYS taken
/// out, made from the gadget; the kernel's error, or 0.
///
/// # Safety
/// `old` is null or room for a signal set.
pub unsafe fn set_mask(how: c_int, set: *const u64, old: *mut u64) -> i32 {
    let copy;
    let given = if set.is_null() {
        core::ptr::null()
    } else {
        if sys::user::check(set.cast(), 8).is_err() {
            return sys::EFAULT;
        }
        // SAFETY: 8 readable bytes: the kernel's part of the set.
        let bits = unsafe { set.read() };
        copy = if how != 1 {
            bits & !NEVER_BLOCKED
        } else {
            bits
        };
        &raw const copy
    };
    match sys::rt_sigprocmask(how, given, old) {
        Ok(_) => 0,
        Err(e) => e,
    }
}
