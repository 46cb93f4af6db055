//! Call sites rewritten so that a trapped call raises no signal.
//!
//! Every call the filter traps costs a SIGSYS: the kernel builds a signal
//! frame with the whole register and vector state, runs the handler and
//! restores it all at sigreturn, about 1 us on a VM, three times the
//! `lstat` it serves. A static program makes its calls from a few wrapper
//! functions (`mov eax, NR; syscall` in glibc's and musl's), so the handler
//! rewrites the site of a call it served, once: the 5-byte `mov` before the
//! `syscall` becomes a `jmp` to a stub of its own that runs that `mov` and
//! enters the handler directly (`lpmx_trap_fast_entry`), on a stack of
//! the trap's pool, and returns after the `syscall`, with the result in
//! `rax` as the kernel would leave it.
//!
//! What keeps it safe:
//! - Only a `mov r32, imm32` right before the very `syscall` instruction
//!   the kernel reports, not after a prefix byte, and whose value is what
//!   the call shows in that register (`eax`, the number; `edi`, `esi`,
//!   `edx`, the first arguments), is taken for an instruction; the stub
//!   runs it as it was, and the `syscall` stays, so a jump to it still
//!   traps as before.
//! - The site is in a mapping that is `r-x` (`/proc/self/maps`) and the
//!   five bytes are written with one atomic store (8 or 16 bytes, aligned)
//!   while the page is `rwx`, so another thread runs the old instruction or
//!   the new one, never half of each. A site 12 bytes into 16 keeps its
//!   fifth byte: the stub goes where the `jmp`'s top displacement byte is
//!   that byte, and the first four are one aligned 8-byte store. A site
//!   nearer a 16-byte end stays as it is (a count of threads cannot tell a
//!   plain write is safe: a `vfork` child shares the memory of a parent
//!   whose other threads run on). A kernel or sandbox that
//!   refuses `rwx` pages leaves every site as it is.
//! - Only path and identity calls are served there, never exec,
//!   `rt_sigaction` or `rt_sigprocmask` (their handling needs the signal's
//!   frame), nor any call the filter lets through: a site whose `mov` set
//!   an argument may be reached with any number, and such a call is made
//!   at the site's own `syscall`, as before.
//! - The stub's `jmp` reaches 2 GiB: stubs live in pages mapped near the
//!   site (`[anon:lpmx-trap-stubs]`), none farther.
//! - A compiler treats the flags and `rcx`, `r11` as clobbered by a
//!   `syscall` (GCC and Clang on x86-64 clobber the flags of every `asm`), so
//!   the entry uses them freely; every other register comes back as it was,
//!   `xmm0`-`xmm15` included. The handler touches no other vector register
//!   in a static program (libunion and the loader's small C library are
//!   built for the baseline x86-64), so only static programs' sites are
//!   rewritten: in a dynamic one glibc's string functions use AVX.
//!
//! `LPMX_TRAP_REWRITE=0` turns it off (every trapped call then raises
//! SIGSYS, as before).

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use lpmx_sys as sys;

/// The handler a rewritten site enters: `(nr, args) -> result`, as the
/// kernel would return it (`-errno` on failure).
pub type FastHandler = extern "C" fn(usize, *const [usize; 6]) -> isize;

static FAST_HANDLER: AtomicUsize = AtomicUsize::new(0);
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Set once a kernel refused what rewriting needs: no site is tried again.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Turns rewriting on for this process image, with `handler` serving the
/// calls of rewritten sites; `fake_root`: the filter traps the id calls.
pub fn enable(handler: FastHandler, fake_root: bool) {
    FAKE_ROOT.store(fake_root, Ordering::Relaxed);
    FAST_HANDLER.store(handler as usize, Ordering::Release);
    ENABLED.store(true, Ordering::Release);
}

/// Whether call `nr`'s sites may be rewritten: calls the filter traps
/// whose handling needs no signal frame.
fn rewritable(nr: usize, fake_root: bool) -> bool {
    const EXECVE: usize = 59;
    const EXECVEAT: usize = 322;
    let frame_bound = [
        crate::filter::SYS_RT_SIGACTION as usize,
        crate::filter::SYS_RT_SIGPROCMASK as usize,
        EXECVE,
        EXECVEAT,
    ];
    !frame_bound.contains(&nr) && crate::filter::traps(nr, fake_root)
}

// --- The entry -------------------------------------------------------------

/// A rewritten site's state while its call is served: taken by `lock`.
#[repr(C, align(64))]
struct Slot {
    lock: AtomicU64,
    /// The top of this slot's stack, 0 until one is mapped.
    top: AtomicUsize,
    /// The program's stack pointer and where its call returns.
    rsp: AtomicUsize,
    ret: AtomicUsize,
    /// The call's number, and whether the handler refused it (then the
    /// site's own `syscall` makes it, trapped or let through as before).
    nr: AtomicUsize,
    refused: AtomicUsize,
}

const SLOTS: usize = 16;

/// The slots, aligned to their whole size so that the entry finds their
/// end by the address alone.
#[repr(C, align(1024))]
struct Slots([Slot; SLOTS]);
const _: () = assert!(core::mem::size_of::<Slots>() == 1024 && SLOTS * 64 == 1024);

static FAST_SLOTS: Slots = Slots(
    [const {
        Slot {
            lock: AtomicU64::new(0),
            top: AtomicUsize::new(0),
            rsp: AtomicUsize::new(0),
            ret: AtomicUsize::new(0),
            nr: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        }
    }; SLOTS],
);

/// Called by the entry on a slot's stack. A site whose `mov` set an
/// argument, not the number, may be reached with any number (code jumping
/// to the `mov`): a call that is not to be served here (`rewritable`) is
/// refused, and the entry makes it at the site's own `syscall`.
extern "C" fn dispatch(nr: usize, args: *const [usize; 6], slot: &Slot) -> isize {
    let handler = FAST_HANDLER.load(Ordering::Acquire);
    if handler == 0 || !rewritable(nr, FAKE_ROOT.load(Ordering::Relaxed)) {
        slot.refused.store(1, Ordering::Relaxed);
        return 0;
    }
    // SAFETY: `enable` stored a FastHandler.
    let handler: FastHandler = unsafe { core::mem::transmute::<usize, FastHandler>(handler) };
    handler(nr, args)
}

/// Whether the filter was built for fake root (its id calls trapped).
static FAKE_ROOT: AtomicBool = AtomicBool::new(false);

// lpmx_trap_fast_entry: jumped to by a stub with the call's number in rax,
// where it returns in r11 (the address after the site's `syscall`), the
// arguments in rdi, rsi, rdx, r10, r8, r9. Takes a free slot (none free, or
// no stack yet: the site's own `syscall`, trapped, serves the call),
// switches to its stack, saves what the handler may change and the syscall
// keeps (the argument registers, xmm0-15), calls `dispatch`, and returns
// to the program with the result in rax. The program's stack, red zone
// included, is not touched.
core::arch::global_asm!(
    ".pushsection .text.lpmx_trap_fast_entry,\"ax\",@progbits",
    ".globl lpmx_trap_fast_entry",
    ".hidden lpmx_trap_fast_entry",
    ".type lpmx_trap_fast_entry,@function",
    "lpmx_trap_fast_entry:",
    "lea rcx, [rip + {slots}]",
    "2:",
    "lock bts qword ptr [rcx], 0",
    "jnc 3f",
    "add rcx, 64",
    "test ecx, 1023",
    "jnz 2b",
    "sub r11, 2",
    "jmp r11",
    "3:",
    "mov [rcx + 16], rsp",
    "mov [rcx + 24], r11",
    "mov [rcx + 32], rax",
    "mov r11, [rcx + 8]",
    "test r11, r11",
    "jnz 4f",
    "mov r11, [rcx + 24]",
    "mov qword ptr [rcx], 0",
    "sub r11, 2",
    "jmp r11",
    "4:",
    "mov rsp, r11",
    "push rcx",
    "push r9",
    "push r8",
    "push r10",
    "push rdx",
    "push rsi",
    "push rdi",
    "sub rsp, 264",
    "movdqu [rsp + 0], xmm0",
    "movdqu [rsp + 16], xmm1",
    "movdqu [rsp + 32], xmm2",
    "movdqu [rsp + 48], xmm3",
    "movdqu [rsp + 64], xmm4",
    "movdqu [rsp + 80], xmm5",
    "movdqu [rsp + 96], xmm6",
    "movdqu [rsp + 112], xmm7",
    "movdqu [rsp + 128], xmm8",
    "movdqu [rsp + 144], xmm9",
    "movdqu [rsp + 160], xmm10",
    "movdqu [rsp + 176], xmm11",
    "movdqu [rsp + 192], xmm12",
    "movdqu [rsp + 208], xmm13",
    "movdqu [rsp + 224], xmm14",
    "movdqu [rsp + 240], xmm15",
    "cld",
    "mov rdi, rax",
    "lea rsi, [rsp + 264]",
    "mov rdx, [rsp + 312]",
    "call {dispatch}",
    "movdqu xmm0, [rsp + 0]",
    "movdqu xmm1, [rsp + 16]",
    "movdqu xmm2, [rsp + 32]",
    "movdqu xmm3, [rsp + 48]",
    "movdqu xmm4, [rsp + 64]",
    "movdqu xmm5, [rsp + 80]",
    "movdqu xmm6, [rsp + 96]",
    "movdqu xmm7, [rsp + 112]",
    "movdqu xmm8, [rsp + 128]",
    "movdqu xmm9, [rsp + 144]",
    "movdqu xmm10, [rsp + 160]",
    "movdqu xmm11, [rsp + 176]",
    "movdqu xmm12, [rsp + 192]",
    "movdqu xmm13, [rsp + 208]",
    "movdqu xmm14, [rsp + 224]",
    "movdqu xmm15, [rsp + 240]",
    "add rsp, 264",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop r10",
    "pop r8",
    "pop r9",
    "pop rcx",
    "mov r11, [rcx + 24]",
    "mov rsp, [rcx + 16]",
    "cmp qword ptr [rcx + 40], 0",
    "jne 5f",
    "mov qword ptr [rcx], 0",
    "jmp r11",
    "5:",
    "mov rax, [rcx + 32]",
    "mov qword ptr [rcx + 40], 0",
    "mov qword ptr [rcx], 0",
    "sub r11, 2",
    "jmp r11",
    ".size lpmx_trap_fast_entry, .-lpmx_trap_fast_entry",
    ".popsection",
    slots = sym FAST_SLOTS,
    dispatch = sym dispatch,
);

unsafe extern "C" {
    fn lpmx_trap_fast_entry();
}

// --- Rewriting a site ------------------------------------------------------

const PAGE: usize = 4096;
const PROT_READ_EXEC: usize = 5;
const PROT_ALL: usize = 7;
const STUB: usize = 32;
const REGION: usize = 64 * 1024;
const REGIONS: usize = 16;
/// How far a `jmp rel32` reaches, with room for the stub's own length.
const REACH: usize = (1 << 31) - REGION - 2 * PAGE;

static REGION_BASE: [AtomicUsize; REGIONS] = [const { AtomicUsize::new(0) }; REGIONS];
static REGION_USED: [AtomicUsize; REGIONS] = [const { AtomicUsize::new(0) }; REGIONS];
/// One rewriter at a time (another thread trapping meanwhile just has its
/// call served, and its site rewritten at its next trap).
static BUSY: AtomicBool = AtomicBool::new(false);
/// Sites found unfit after reading the maps (so that they are not read
/// again for each of their calls).
static UNFIT: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

/// After serving trapped call `nr` with arguments `args`, whose `syscall`
/// instruction ends at `ip`: rewrites its site when it is one of the form
/// above.
pub fn site(ip: usize, nr: usize, args: &[usize; 6], fake_root: bool) {
    if !ENABLED.load(Ordering::Acquire)
        || REFUSED.load(Ordering::Relaxed)
        || !rewritable(nr, fake_root)
        || ip < PAGE
    {
        return;
    }
    let site = ip - 7;
    // The 7 bytes and the one before, readable (the syscall's own page is).
    if (ip - 8) / PAGE != (ip - 2) / PAGE && sys::user::check((ip - 8) as *const u8, 1).is_err() {
        return;
    }
    // SAFETY: the bytes are readable (checked above, or on the page of the
    // instruction that just ran).
    let bytes = unsafe { core::ptr::read_unaligned((ip - 8) as *const [u8; 8]) };
    let imm = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    // `mov r32, imm32` of a register whose value the call shows (it is
    // zero-extended into the whole register): the number or one of the
    // first three arguments (glibc's `open` ends in `mov edi, AT_FDCWD`).
    if bytes[1] == 0xe9 {
        // Already a `jmp` to a stub: the entry found no slot with a stack
        // free and let the site's own `syscall` trap (threads at once).
        if BUSY
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            grow_stacks();
            BUSY.store(false, Ordering::Release);
        }
        return;
    }
    let shown = match bytes[1] {
        0xb8 => nr,
        0xbf => args[0],
        0xbe => args[1],
        0xba => args[2],
        _ => return,
    };
    if shown != imm as usize || bytes[6..8] != [0x0f, 0x05] || is_prefix(bytes[0]) {
        return;
    }
    if UNFIT.iter().any(|s| s.load(Ordering::Relaxed) == site) || !seen_enough(site) {
        return;
    }
    if BUSY
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let mut mov = [0u8; 5];
    mov.copy_from_slice(&bytes[1..6]);
    if rewrite(site, &mov).is_none() {
        remember_unfit(site);
    }
    BUSY.store(false, Ordering::Release);
}

/// Bytes that would make the `mov`'s opcode a later byte of another
/// instruction: REX, operand and address size, lock and rep, segment
/// overrides, the two-byte opcode escape, and the VEX and EVEX prefixes.
fn is_prefix(byte: u8) -> bool {
    matches!(
        byte,
        0x40..=0x4f
            | 0x66
            | 0x67
            | 0xf0
            | 0xf2
            | 0xf3
            | 0x26
            | 0x2e
            | 0x36
            | 0x3e
            | 0x64
            | 0x65
            | 0x0f
            | 0xc4
            | 0xc5
            | 0x62
    )
}

/// Traps at a site before it is rewritten: a call a program makes once or
/// twice (a short-lived program's start) is not worth the rewrite (reading
/// the maps, mapping stub pages and stacks).
const TRAPS_BEFORE_REWRITE: usize = 4;
static SEEN_SITE: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static SEEN_COUNT: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Counts a trap at `site`: whether it trapped often enough to be
/// rewritten. (A count shared by two sites, or raced, only moves the
/// rewrite a few calls.)
fn seen_enough(site: usize) -> bool {
    let slot = (site ^ (site >> 8)) % SEEN_SITE.len();
    if SEEN_SITE[slot].load(Ordering::Relaxed) != site {
        SEEN_SITE[slot].store(site, Ordering::Relaxed);
        SEEN_COUNT[slot].store(1, Ordering::Relaxed);
        return TRAPS_BEFORE_REWRITE <= 1;
    }
    SEEN_COUNT[slot].fetch_add(1, Ordering::Relaxed) + 1 >= TRAPS_BEFORE_REWRITE
}

fn remember_unfit(site: usize) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % UNFIT.len();
    UNFIT[i].store(site, Ordering::Relaxed);
}

fn rewrite(site: usize, mov: &[u8; 5]) -> Option<()> {
    if mapping_prot(site)? != *b"r-xp" || mapping_prot(site + 4)? != *b"r-xp" {
        return None;
    }
    if !ensure_stacks() {
        return None;
    }
    let window = if site % 16 > 11 {
        // No aligned store covers the five bytes: where the `mov`'s last
        // byte stays as it is (the `jmp`'s top displacement byte), the
        // first four are one aligned 8-byte store. The stub then lies in
        // the 16 MiB that top byte allows.
        if site % 16 != 12 {
            return None;
        }
        let low = (i64::from(mov[4] as i8) << 24) + site as i64 + 5;
        let high = low + (1 << 24);
        if high <= 1 << 16 {
            return None; // below the lowest address a mapping may have
        }
        (low.max(1 << 16) as usize, high as usize)
    } else {
        (site.saturating_sub(REACH), site.saturating_add(REACH))
    };
    let stub = stub_in(site, mov, window)?;
    let rel = i32::try_from(stub as i64 - (site as i64 + 5)).ok()?;
    let mut jump = [0u8; 5];
    jump[0] = 0xe9;
    jump[1..].copy_from_slice(&rel.to_le_bytes());
    let first = site & !(PAGE - 1);
    let last = (site + 4) & !(PAGE - 1);
    let span = last + PAGE - first;
    if sys::mprotect(first, span, PROT_ALL).is_err() {
        REFUSED.store(true, Ordering::Relaxed);
        return None;
    }
    let stored = store_atomically(site, mov, &jump);
    let _ = sys::mprotect(first, span, PROT_READ_EXEC);
    stored.then_some(())
}

/// Writes `bytes` (5) at `at`, where the `mov` `was` still is, with one
/// aligned atomic compare-and-swap: of the word or 16 bytes holding them,
/// or, for a site 12 bytes into 16, of the word holding the first four
/// when the fifth stays.
fn store_atomically(at: usize, was: &[u8; 5], bytes: &[u8; 5]) -> bool {
    if at % 8 <= 3 {
        return swap_in_word(at & !7, at % 8, was, bytes);
    }
    if at % 16 > 11 {
        // Only the first four bytes change (`rewrite` chose the stub so).
        // SAFETY: the fifth byte, on the readable page after the word.
        let fifth = unsafe { core::ptr::read_volatile((at + 4) as *const u8) };
        return at % 16 == 12
            && bytes[4] == was[4]
            && fifth == was[4]
            && swap_in_word(at - 4, 4, &was[..4], &bytes[..4]);
    }
    let block = at & !15;
    let offset = at - block;
    // SAFETY: an aligned, writable 16 bytes of code.
    let old = unsafe { core::ptr::read_volatile(block as *const [u8; 16]) };
    if old[offset..offset + 5] != *was {
        return false;
    }
    let mut new = old;
    new[offset..offset + 5].copy_from_slice(bytes);
    // SAFETY: as above.
    unsafe { cmpxchg16b(block as *mut u8, old, new) }
}

/// Replaces `was` by `bytes` at `offset` in the aligned 8-byte `word` of
/// code (rwx now), in one compare-and-swap: whether it was there and is
/// replaced.
fn swap_in_word(word: usize, offset: usize, was: &[u8], bytes: &[u8]) -> bool {
    // SAFETY: an aligned, writable word of code.
    let cell = unsafe { AtomicU64::from_ptr(word as *mut u64) };
    let old = cell.load(Ordering::Relaxed);
    let mut new = old.to_le_bytes();
    let span = offset..offset + bytes.len();
    if new[span.clone()] != *was {
        return false;
    }
    new[span].copy_from_slice(bytes);
    cell.compare_exchange(
        old,
        u64::from_le_bytes(new),
        Ordering::SeqCst,
        Ordering::Relaxed,
    )
    .is_ok()
}

/// `lock cmpxchg16b`: whether the 16 bytes at `at` were `old` and are now
/// `new`.
///
/// # Safety
/// `at` is 16-byte aligned and writable.
unsafe fn cmpxchg16b(at: *mut u8, old: [u8; 16], new: [u8; 16]) -> bool {
    let old_low = u64::from_le_bytes(old[..8].try_into().unwrap_or_default());
    let old_high = u64::from_le_bytes(old[8..].try_into().unwrap_or_default());
    let new_low = u64::from_le_bytes(new[..8].try_into().unwrap_or_default());
    let new_high = u64::from_le_bytes(new[8..].try_into().unwrap_or_default());
    let swapped: u8;
    // SAFETY: as the caller promises; rbx is the compiler's, so it is
    // exchanged in and out around the instruction.
    unsafe {
        core::arch::asm!(
            "xchg {new_low}, rbx",
            "lock cmpxchg16b [{at}]",
            "sete {swapped}",
            "xchg {new_low}, rbx",
            at = in(reg) at,
            new_low = inout(reg) new_low => _,
            swapped = out(reg_byte) swapped,
            inout("rax") old_low => _,
            inout("rdx") old_high => _,
            in("rcx") new_high,
        );
    }
    swapped != 0
}

/// The permissions (`r-xp`) of the mapping holding `addr`, from
/// `/proc/self/maps`.
fn mapping_prot(addr: usize) -> Option<[u8; 4]> {
    let fd = sys::openat(
        sys::AT_FDCWD,
        c"/proc/self/maps".as_ptr().cast(),
        sys::O_CLOEXEC,
        0,
    )
    .ok()? as i32;
    let found = scan_maps(fd, addr);
    let _ = sys::close(fd);
    found
}

fn scan_maps(fd: i32, addr: usize) -> Option<[u8; 4]> {
    let mut buf = [0u8; 4096];
    let mut held = 0;
    loop {
        // SAFETY: reading into the free part of buf.
        let got = unsafe {
            sys::syscall6(
                0,
                [
                    fd as usize,
                    buf.as_mut_ptr().add(held) as usize,
                    buf.len() - held,
                    0,
                    0,
                    0,
                ],
            )
        }
        .ok()?;
        if got == 0 {
            return None;
        }
        held += got;
        let mut start = 0;
        while let Some(end) = buf[start..held].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + end];
            if let Some(prot) = line_prot(line, addr) {
                return Some(prot);
            }
            start += end + 1;
        }
        buf.copy_within(start..held, 0);
        held -= start;
        if held == buf.len() {
            return None;
        }
    }
}

/// `start-end perms ...`: the perms when `addr` is in [start, end).
fn line_prot(line: &[u8], addr: usize) -> Option<[u8; 4]> {
    let dash = line.iter().position(|&b| b == b'-')?;
    let space = line.iter().position(|&b| b == b' ')?;
    let start = hex(&line[..dash])?;
    let end = hex(line.get(dash + 1..space)?)?;
    if addr < start || addr >= end {
        return None;
    }
    line.get(space + 1..space + 5)?.try_into().ok()
}

fn hex(digits: &[u8]) -> Option<usize> {
    let mut value = 0usize;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        value = value.checked_mul(16)?.checked_add(usize::from(v))?;
    }
    Some(value)
}

/// Stacks mapped for the slots when the first site is rewritten; more as
/// threads find none free.
const FIRST_STACKS: usize = 2;

/// Gives the first slots stacks (from the trap's pool): whether at least
/// one has one.
fn ensure_stacks() -> bool {
    let slots = &FAST_SLOTS.0;
    while slots
        .iter()
        .filter(|s| s.top.load(Ordering::Acquire) != 0)
        .count()
        < FIRST_STACKS
    {
        if !grow_stacks() {
            break;
        }
    }
    slots[0].top.load(Ordering::Acquire) != 0
}

/// Gives one more slot a stack: whether one could be. (Under `BUSY`.)
fn grow_stacks() -> bool {
    let Some(slot) = FAST_SLOTS
        .0
        .iter()
        .find(|s| s.top.load(Ordering::Acquire) == 0)
    else {
        return false;
    };
    match crate::stack::reserve() {
        Some(top) => {
            slot.top.store(top, Ordering::Release);
            true
        }
        None => false,
    }
}

/// A new stub for the site at `site`, whose instruction was `mov`, in
/// stub pages within `window` (a `jmp`'s reach, or narrower).
fn stub_in(site: usize, mov: &[u8; 5], window: (usize, usize)) -> Option<usize> {
    let within = |base: usize| base >= window.0 && base.saturating_add(REGION) <= window.1;
    let index = (0..REGIONS).find(|&i| {
        let base = REGION_BASE[i].load(Ordering::Relaxed);
        base != 0 && within(base) && REGION_USED[i].load(Ordering::Relaxed) + STUB <= REGION
    });
    let index = match index {
        Some(i) => i,
        None => new_region(site, within)?,
    };
    let base = REGION_BASE[index].load(Ordering::Relaxed);
    let stub = base + REGION_USED[index].load(Ordering::Relaxed);
    let mut code = [0xccu8; STUB];
    code[..5].copy_from_slice(mov); // the site's own instruction
    code[5..8].copy_from_slice(&[0x4c, 0x8d, 0x1d]); // lea r11, [rip + rel]
    let back = (site as i64 + 7 - (stub as i64 + 12)) as i32;
    code[8..12].copy_from_slice(&back.to_le_bytes());
    code[12..18].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]); // jmp [rip]
    code[18..26].copy_from_slice(&(lpmx_trap_fast_entry as *const () as u64).to_le_bytes());
    if sys::mprotect(base, REGION, PROT_ALL).is_err() {
        REFUSED.store(true, Ordering::Relaxed);
        return None;
    }
    // SAFETY: the stub's bytes in the region, writable now, used by no
    // site yet.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), stub as *mut u8, STUB) };
    let _ = sys::mprotect(base, REGION, PROT_READ_EXEC);
    REGION_USED[index].fetch_add(STUB, Ordering::Relaxed);
    Some(stub)
}

/// Maps stub pages below `site` (or above it) where `within` allows.
fn new_region(site: usize, within: impl Fn(usize) -> bool) -> Option<usize> {
    const PROT_READ_WRITE: usize = 3;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    const MAP_FIXED_NOREPLACE: usize = 0x10_0000;
    const STEP: usize = 1 << 20;
    let index = (0..REGIONS).find(|&i| REGION_BASE[i].load(Ordering::Relaxed) == 0)?;
    let below = (site & !(STEP - 1)).saturating_sub(STEP);
    let tries = (0..64)
        .map(|k| below.saturating_sub(k * STEP))
        .chain((1..64).map(|k| (site & !(STEP - 1)) + k * STEP));
    for hint in tries {
        if hint < (1 << 16) || !within(hint) {
            continue;
        }
        let Ok(base) = sys::mmap(
            hint,
            REGION,
            PROT_READ_WRITE,
            MAP_PRIVATE_ANONYMOUS | MAP_FIXED_NOREPLACE,
            -1,
            0,
        ) else {
            continue;
        };
        if !within(base) {
            // A kernel without MAP_FIXED_NOREPLACE took the hint as a hint.
            let _ = sys::munmap(base as *mut c_void, REGION);
            continue;
        }
        name_region(base);
        REGION_BASE[index].store(base, Ordering::Relaxed);
        return Some(index);
    }
    None
}

/// Names the stub pages in `/proc/self/maps` (Linux 5.17; where the kernel
/// cannot, they are plain anonymous memory).
fn name_region(base: usize) {
    const PR_SET_VMA: usize = 0x5356_4d41;
    const PR_SET_VMA_ANON_NAME: usize = 0;
    let _ = sys::prctl5(
        PR_SET_VMA,
        PR_SET_VMA_ANON_NAME,
        base,
        REGION,
        c"lpmx-trap-stubs".as_ptr() as usize,
    );
}
