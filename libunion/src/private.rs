//! State a `vfork` child must not share with its parent.
//!
//! A `vfork` child runs in its parent's memory until it execs or exits, so
//! whatever libunion remembers per process (the working directory, fake
//! root's ids) would change for the parent too: `subprocess.run(cwd=X)`
//! chdirs in such a child, and the parent's `getcwd` then said X. The
//! `vfork` entry point below marks the child (a slot holding its pid) and
//! clears the mark when the parent resumes; while marked, the child keeps
//! its own copies in its slot. Each claim of a slot starts a new epoch:
//! copies kept under an older one are a former child's, so the modules
//! keeping them (`state`, `ids`) need no call from here.

use core::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

use crate::sys;

/// vfork children alive at once (one per thread that vforks).
pub const SLOTS: usize = 8;
static CHILDREN: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static ALIVE: AtomicUsize = AtomicUsize::new(0);
/// Per slot, how many children have claimed it (0: none yet).
static EPOCHS: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

/// The current claim of `slot`: what a child's own copy records, and is
/// valid only while it is still the current one. Never 0.
pub fn epoch(slot: usize) -> u32 {
    EPOCHS[slot].load(Ordering::Acquire)
}

/// The slot of this process when it is a `vfork` child still sharing its
/// parent's memory.
pub fn vfork_slot() -> Option<usize> {
    if ALIVE.load(Ordering::Acquire) == 0 {
        return None;
    }
    let pid = sys::getpid();
    CHILDREN
        .iter()
        .position(|slot| slot.load(Ordering::Acquire) == pid)
}

/// Called in the child right after vfork: claims a slot.
extern "C" fn vfork_child() {
    let pid = sys::getpid();
    for slot in &CHILDREN {
        if slot
            .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let index = slot_index(slot);
            // The new epoch before the child can be found in the slot.
            let next = EPOCHS[index].load(Ordering::Relaxed).wrapping_add(1).max(1);
            EPOCHS[index].store(next, Ordering::Release);
            ALIVE.fetch_add(1, Ordering::AcqRel);
            return;
        }
    }
}

fn slot_index(slot: &AtomicI32) -> usize {
    CHILDREN
        .iter()
        .position(|s| core::ptr::eq(s, slot))
        .unwrap_or(0)
}

/// Called in the parent when vfork returns (the child has exec'd or
/// exited): frees the child's slot.
extern "C" fn vfork_parent(child: i32) {
    for slot in &CHILDREN {
        if slot
            .compare_exchange(child, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            ALIVE.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

extern "C" fn vfork_error(errno: i64) -> i64 {
    sys::set_errno(errno as i32);
    -1
}

/// vfork(2) as glibc's: the return address is kept in a register, since
/// the child's calls overwrite the stack slot it was in, and pushed back
/// for each of the two returns.
///
/// # Safety
/// As vfork(2).
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vfork() -> i32 {
    core::arch::naked_asm!(
        "pop rsi",
        "mov eax, 58",
        "syscall",
        "push rsi",
        "cmp rax, -4095",
        "jae 3f",
        "test rax, rax",
        "jnz 2f",
        // The child: rsp is as at entry, 8 off 16-byte alignment.
        "sub rsp, 8",
        "call {child}",
        "add rsp, 8",
        "xor eax, eax",
        "ret",
        "2:",
        "push rax",
        "mov edi, eax",
        "call {parent}",
        "pop rax",
        "ret",
        "3:",
        "neg rax",
        "mov rdi, rax",
        "sub rsp, 8",
        "call {error}",
        "add rsp, 8",
        "ret",
        child = sym vfork_child,
        parent = sym vfork_parent,
        error = sym vfork_error,
    )
}
