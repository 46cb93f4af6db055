//! Trapped calls are handled on a stack of the trap's own. The kernel puts
//! the SIGSYS frame on the thread's alternate signal stack where it has
//! one, and those are small (Go's 32 KiB, Rust's 8 KiB), as are
//! goroutine stacks; libunion's path work needs about 70 KiB and an exec
//! about 220 KiB (a debug build several times that). So the handler moves
//! to one of a pool of large stacks, mapped on first use and kept; only
//! the pages a handler touched cost memory.
//!
//! While it runs there, a nested signal the program handles on its
//! alternate stack is put at that stack's top, over the SIGSYS frame and
//! the handler's first frames: the switch copies those bytes (from its own
//! stack pointer to the frame's end) to the large stack, gives the handler
//! the copied siginfo and ucontext, and copies them back when it returns,
//! before sigreturn reads them.
//!
//! A stack is taken by a thread id and given back when the handler
//! returns. An exec the handler makes does not return: in a child that
//! shares its parent's memory (`vfork`, Go's `clone(CLONE_VM|CLONE_VFORK)`)
//! the stack stays taken in the parent, so when none is free, stacks whose
//! taker no longer shares this memory (kcmp) are taken back.

use core::ffi::c_void;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use lpmx_sys as sys;

const SLOTS: usize = 64;
/// Reserved, not committed (`MAP_NORESERVE`): room for a debug build's exec.
const STACK: usize = 2 * 1024 * 1024;
const GUARD: usize = 4096;
/// The most the switch copies: a frame with the largest xsave area (AMX,
/// about 11 KiB) and the handler's first frames.
const MOST_KEPT: usize = 32 * 1024;

/// The thread using each stack, 0 for none.
static TAKER: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
/// Each stack's mapping (a guard page, then the stack), 0 until mapped.
static MAPPING: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

/// ucontext_t (x86_64): `uc_mcontext.fpregs` at 224; the kernel's part of
/// the ucontext is 304 bytes; a siginfo is 128.
const FPREGS_AT: usize = 224;
const KERNEL_UCONTEXT: usize = 304;
const SIGINFO: usize = 128;
/// The xsave area's software bytes (in the fxsave area's unused part):
/// magic at 464, the whole size at 468.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FXSAVE: usize = 512;

/// The end of the signal frame the kernel built: the ucontext, the
/// siginfo and the floating-point state the ucontext points to.
///
/// # Safety
/// The kernel's siginfo and ucontext of a signal being handled.
unsafe fn frame_end(info: *mut c_void, context: *mut c_void) -> usize {
    let mut end = (info as usize + SIGINFO).max(context as usize + KERNEL_UCONTEXT);
    // SAFETY: the ucontext's fpregs pointer; the state it points to, its
    // software bytes where its magic says they are there.
    unsafe {
        let fp = context.cast::<u8>().add(FPREGS_AT).cast::<usize>().read();
        if fp != 0 {
            let magic = ((fp + 464) as *const u32).read();
            let size = if magic == FP_XSTATE_MAGIC1 {
                ((fp + 468) as *const u32).read() as usize
            } else {
                FXSAVE
            };
            end = end.max(fp + size);
        }
    }
    end
}

/// errno for the handlers running on each stack, and one more for a
/// handler running where none was free: in a static program, which has no
/// libc's per-thread errno for libunion's functions to set
/// (`errno_location`).
static ERRNO: [AtomicI32; SLOTS + 1] = [const { AtomicI32::new(0) }; SLOTS + 1];

/// The errno of the handler running on this thread's stack: each stack of
/// the pool has its own, so threads and nested handlers keep theirs apart.
pub fn errno_location() -> *mut i32 {
    let probe = 0u8;
    let sp = core::hint::black_box(&raw const probe) as usize;
    let on = |slot: usize| {
        let mapping = MAPPING[slot].load(Ordering::Relaxed);
        mapping != 0 && sp > mapping && sp <= mapping + GUARD + STACK
    };
    // The stack found last, first: one thread's calls find it at once.
    let hint = LAST_ERRNO_SLOT.load(Ordering::Relaxed);
    if on(hint) {
        return ERRNO[hint].as_ptr();
    }
    match (0..SLOTS).find(|&slot| on(slot)) {
        Some(slot) => {
            LAST_ERRNO_SLOT.store(slot, Ordering::Relaxed);
            ERRNO[slot].as_ptr()
        }
        None => ERRNO[SLOTS].as_ptr(),
    }
}

static LAST_ERRNO_SLOT: AtomicUsize = AtomicUsize::new(0);

fn take(tid: i32) -> Option<usize> {
    for round in 0..2 {
        if let Some(slot) = take_mapped(tid).or_else(|| take_unmapped(tid)) {
            return Some(slot);
        }
        if round == 0 {
            take_back();
        }
    }
    None
}

/// Takes for `taker` a free slot whose stack is mapped.
fn take_mapped(taker: i32) -> Option<usize> {
    (0..SLOTS).find(|&slot| {
        MAPPING[slot].load(Ordering::Acquire) != 0
            && TAKER[slot]
                .compare_exchange(0, taker, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    })
}

/// Takes for `taker` a slot whose stack is not mapped yet, and maps it
/// (None as well when the mapping fails).
fn take_unmapped(taker: i32) -> Option<usize> {
    for slot in 0..SLOTS {
        if MAPPING[slot].load(Ordering::Acquire) == 0
            && TAKER[slot]
                .compare_exchange(0, taker, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            if MAPPING[slot].load(Ordering::Acquire) == 0 {
                let Some(mapping) = map_stack() else {
                    TAKER[slot].store(0, Ordering::Release);
                    return None;
                };
                MAPPING[slot].store(mapping, Ordering::Release);
            }
            return Some(slot);
        }
    }
    None
}

/// The taker of a stack kept for a rewritten site's slot (`rewrite`).
const RESERVED: i32 = -1;

/// A stack of the pool kept for good (for `rewrite`'s slots, whose calls
/// find their errno as a handler's on the pool does): its top.
pub fn reserve() -> Option<usize> {
    let slot = take_mapped(RESERVED).or_else(|| take_unmapped(RESERVED))?;
    Some(MAPPING[slot].load(Ordering::Acquire) + GUARD + STACK)
}

fn map_stack() -> Option<usize> {
    const PROT_READ_WRITE: usize = 3;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    const MAP_NORESERVE: usize = 0x4000;
    let mapping = sys::mmap(
        0,
        GUARD + STACK,
        PROT_READ_WRITE,
        MAP_PRIVATE_ANONYMOUS | MAP_NORESERVE,
        -1,
        0,
    )
    .ok()?;
    // An overflow faults rather than writing over whatever lies below.
    let _ = sys::mprotect(mapping, GUARD, 0);
    Some(mapping)
}

/// Takes back the stacks held by threads that no longer share this
/// memory (a `vfork` child that exec'd, a thread of the parent in a
/// `fork` child).
fn take_back() {
    for taker in &TAKER {
        let tid = taker.load(Ordering::Acquire);
        if tid == 0 || tid == RESERVED {
            continue;
        }
        if matches!(sys::shares_memory(tid), Ok(false) | Err(sys::ESRCH)) {
            let _ = taker.compare_exchange(tid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// Calls `handler(signal, info, context)` on a stack of the pool (on the
/// current one where none is left).
///
/// # Safety
/// `info` and `context` are the kernel's for this signal, being handled.
pub unsafe fn call_on_own_stack(
    handler: crate::handler::Handler,
    signal: i32,
    info: *mut c_void,
    context: *mut c_void,
) {
    // SAFETY: the caller's frame.
    let end = unsafe { frame_end(info, context) };
    let here = &raw const end as usize;
    let tid = sys::gettid();
    let slot = if end > here && end - here <= MOST_KEPT {
        take(tid)
    } else {
        None
    };
    let Some(slot) = slot else {
        handler(signal, info, context);
        return;
    };
    let top = MAPPING[slot].load(Ordering::Acquire) + GUARD + STACK;
    // SAFETY: the frame ends at `end`, above this function's frame; the
    // stack is this thread's until given back below.
    unsafe { lpmx_trap_on_stack(handler, signal, info, context, end, top) };
    TAKER[slot].store(0, Ordering::Release);
}

unsafe extern "C" {
    fn lpmx_trap_on_stack(
        handler: crate::handler::Handler,
        signal: i32,
        info: *mut c_void,
        context: *mut c_void,
        end: usize,
        top: usize,
    );
}

// lpmx_trap_on_stack(handler, signal, info, context, end, top): copies
// [rsp, end) below `top`, calls the handler there with the copied info and
// context, and copies the bytes back once it is on its own stack again (a
// nested signal then goes below it).
core::arch::global_asm!(
    ".pushsection .text.lpmx_trap_on_stack,\"ax\",@progbits",
    ".globl lpmx_trap_on_stack",
    ".hidden lpmx_trap_on_stack",
    ".type lpmx_trap_on_stack,@function",
    "lpmx_trap_on_stack:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov r12, rsp", // the bytes to keep start here
    "mov r13, r8",
    "sub r13, r12", // and are this long
    "mov r14, r9",
    "sub r14, r13",
    "and r14, -64",  // where their copy goes
    "mov rbx, rdi",  // the handler
    "mov r15d, esi", // the signal
    "mov r8, rdx",   // info
    "mov r9, rcx",   // context
    "mov rsi, r12",
    "mov rdi, r14",
    "mov rcx, r13",
    "cld",
    "rep movsb",
    "mov rax, r14",
    "sub rax, r12", // from an original to its copy
    "lea rsi, [r8 + rax]",
    "lea rdx, [r9 + rax]",
    "mov edi, r15d",
    "lea rsp, [r14 - 64]",
    "call rbx",
    "mov rsp, r12",
    "mov rsi, r14",
    "mov rdi, r12",
    "mov rcx, r13",
    "cld",
    "rep movsb",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size lpmx_trap_on_stack, .-lpmx_trap_on_stack",
    ".popsection",
);
