//! Starting a program the way the kernel's exec does, in the running
//! process: map the ELF file (and its interpreter), build the initial
//! stack (arguments, environment, auxiliary vector pointing at the
//! program) and jump to the entry point. The loader does this for every
//! program under the trap, with its SIGSYS handler already in place.

use core::ffi::{c_char, c_void};

use lpmx_sys as sys;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const AT_NULL: usize = 0;
const AT_PHDR: usize = 3;
const AT_PHENT: usize = 4;
const AT_PHNUM: usize = 5;
const AT_BASE: usize = 7;
const AT_ENTRY: usize = 9;
const AT_EXECFN: usize = 31;
const PAGE: usize = 4096;
/// Nested `#!` interpreters followed, as Linux does.
const MAX_SCRIPTS: usize = 4;

/// How the loader starts its file (`LPMX_LOADER_MODE`): a program (and
/// its ELF interpreter), as the kernel would.
pub const RUN: &core::ffi::CStr = c"run";
/// The same, for an ELF interpreter run as the program (the image's
/// `ld.so` running a container's program): mapped where interpreters go.
pub const RUN_INTERP: &core::ffi::CStr = c"interp";
/// The same, for a static program of the container: libunion is linked
/// into it by the loader (`link`), since no ELF interpreter will load it.
pub const RUN_STATIC: &core::ffi::CStr = c"static";

fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: a NUL-terminated string.
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}

/// The bytes of C string `s`.
///
/// # Safety
/// `s` is NUL-terminated and lives as long as the result is used.
pub unsafe fn bytes<'a>(s: *const u8) -> &'a [u8] {
    // SAFETY: as the caller vouches.
    unsafe { core::slice::from_raw_parts(s, strlen(s)) }
}

/// `bytes` of strings this module holds or the kernel gave the process.
fn text<'a>(s: *const u8) -> &'a [u8] {
    // SAFETY: the loader's own strings and the kernel's, NUL-terminated and
    // never freed.
    unsafe { bytes(s) }
}

/// Ends the process as a failed exec reads to a shell: 127 not found,
/// 126 not runnable.
pub fn fail(what: &[u8], path: &[u8], errno: i32) -> ! {
    sys::warn(&[b"lpmx: cannot run ", path, b": ", what, b"\n"]);
    sys::exit_group(if errno == sys::ENOENT { 127 } else { 126 })
}

/// The ELF file the program runs (after `#!` lines), for
/// `/proc/self/exe`: NUL-terminated once `run` has mapped it.
static mut EXE: [u8; 4096] = [0; 4096];

/// The program's file (`/proc/self/exe` names the loader's).
pub fn exe() -> &'static [u8] {
    // SAFETY: written once, before the program runs.
    text((&raw const EXE).cast())
}

/// A program mapped into memory.
pub(crate) struct Mapped {
    pub(crate) bias: usize,
    pub(crate) entry: usize,
    pub(crate) phdr: usize,
    pub(crate) phnum: usize,
}

pub(crate) fn read_at(fd: i32, buf: &mut [u8], at: u64) -> Result<usize, i32> {
    sys::pread(fd, buf.as_mut_ptr(), buf.len(), at)
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> usize {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v) as usize
}

const PROGRAM_HEADERS: usize = 64;

/// Maps the ELF file open as `fd` (its first bytes in `head`), as the
/// kernel does; `interp` gets its PT_INTERP, if any.
pub(crate) fn map_elf(
    fd: i32,
    head: &[u8],
    interp: &mut [u8; 4096],
    at: Option<usize>,
) -> Result<Mapped, &'static [u8]> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || u16_at(head, 18) != 62 {
        return Err(b"not an x86_64 ELF program");
    }
    let kind = u16_at(head, 16);
    if kind != 2 && kind != 3 {
        return Err(b"not an executable ELF file");
    }
    let (phoff, phentsize, phnum) = (u64_at(head, 32), u16_at(head, 54), u16_at(head, 56));
    if phentsize != 56 || phnum == 0 || phnum > PROGRAM_HEADERS {
        return Err(b"bad ELF program headers");
    }
    let mut table = [0u8; 56 * PROGRAM_HEADERS];
    let want = 56 * phnum;
    // Usually in the first bytes, already read.
    if phoff + want <= head.len() {
        table[..want].copy_from_slice(&head[phoff..phoff + want]);
    } else if read_at(fd, &mut table[..want], phoff as u64) != Ok(want) {
        return Err(b"truncated ELF program headers");
    }
    let header = |i: usize| &table[56 * i..56 * i + 56];
    let (mut low, mut high) = (usize::MAX, 0usize);
    interp[0] = 0;
    for i in 0..phnum {
        let h = header(i);
        match u32_at(h, 0) {
            PT_LOAD => {
                let (vaddr, memsz) = (u64_at(h, 16), u64_at(h, 40));
                low = low.min(vaddr & !(PAGE - 1));
                high = high.max((vaddr + memsz).next_multiple_of(PAGE));
            }
            PT_INTERP => {
                let (offset, size) = (u64_at(h, 8), u64_at(h, 32).min(4095));
                let got = read_at(fd, &mut interp[..size], offset as u64).unwrap_or(0);
                interp[got.min(4095)] = 0;
                if let Some(nul) = interp[..got].iter().position(|&b| b == 0) {
                    interp[nul] = 0;
                }
            }
            _ => {}
        }
    }
    if low >= high {
        return Err(b"no loadable ELF segments");
    }
    // A truncated file would map pages past its end: a bus error in the
    // program later, where the cause can be named now.
    let mut st = [0u64; 18];
    let size = sys::fstat(fd, st.as_mut_ptr().cast()).map_or(0, |_| st[6] as usize);
    let truncated = (0..phnum)
        .map(header)
        .any(|h| u32_at(h, 0) == PT_LOAD && u64_at(h, 8).saturating_add(u64_at(h, 32)) > size);
    if truncated {
        return Err(b"truncated: its ELF segments reach past the end of the file");
    }
    const PROT_NONE: usize = 0;
    const MAP_PRIVATE: usize = 2;
    const MAP_FIXED: usize = 0x10;
    const MAP_ANONYMOUS: usize = 0x20;
    const MAP_FIXED_NOREPLACE: usize = 0x10_0000;
    let span = high - low;
    // The whole span is taken at once, as the first segment (from the
    // start of the file, read-only); the others are mapped over it.
    let first = (0..phnum).map(header).find(|h| u32_at(h, 0) == PT_LOAD);
    let (first_offset, first_prot) = first.map_or((0, PROT_NONE), |h| {
        let flags = u32_at(h, 4);
        (
            u64_at(h, 8) & !(PAGE - 1),
            if flags & 4 != 0 { 1 } else { 0 },
        )
    });
    let take = |hint: usize, flags: usize| {
        sys::mmap(
            hint,
            span,
            first_prot,
            MAP_PRIVATE | flags,
            fd,
            first_offset,
        )
    };
    let reserved = if kind == 2 {
        take(low, MAP_FIXED_NOREPLACE)
    } else {
        // An interpreter where the trap lets its calls through, if it fits
        // and the place is free (kernels before 4.17 take it as a hint).
        let placed = at
            .filter(|_| span <= sys::INTERP_SPAN)
            .and_then(|at| take(at, MAP_FIXED_NOREPLACE).ok());
        match placed {
            Some(p) if Some(p) == at => Ok(p),
            Some(elsewhere) => {
                let _ = sys::munmap(elsewhere as *mut c_void, span);
                take(0, 0)
            }
            None => take(0, 0),
        }
    }
    .map_err(|_| &b"no room in memory"[..])?;
    if kind == 2 && reserved != low {
        return Err(b"its fixed address is taken");
    }
    let bias = reserved - low;
    let mut first_seen = false;
    for i in 0..phnum {
        let h = header(i);
        if u32_at(h, 0) != PT_LOAD {
            continue;
        }
        // The first segment is in place already, if it starts the file
        // and is only read (Go's first one is its code: mapped again,
        // executable).
        let already = !first_seen
            && u64_at(h, 8) == 0
            && u64_at(h, 32) == u64_at(h, 40)
            && u32_at(h, 4) & 3 == 0;
        first_seen = true;
        if already {
            continue;
        }
        let flags = u32_at(h, 4);
        let (offset, vaddr, filesz, memsz) =
            (u64_at(h, 8), u64_at(h, 16), u64_at(h, 32), u64_at(h, 40));
        let prot = (if flags & 4 != 0 { 1 } else { 0 })
            | (if flags & 2 != 0 { 2 } else { 0 })
            | (if flags & 1 != 0 { 4 } else { 0 });
        let start = bias + (vaddr & !(PAGE - 1));
        let file_end = bias + vaddr + filesz;
        let mem_end = bias + vaddr + memsz;
        if filesz > 0 {
            let length = file_end.next_multiple_of(PAGE) - start;
            sys::mmap(
                start,
                length,
                prot,
                MAP_PRIVATE | MAP_FIXED,
                fd,
                offset & !(PAGE - 1),
            )
            .map_err(|_| &b"cannot map an ELF segment"[..])?;
        }
        if memsz > filesz {
            // The bss: the rest of the last file page, then fresh pages.
            let page_end = file_end.next_multiple_of(PAGE);
            if filesz > 0 && prot & 2 != 0 && page_end > file_end {
                // SAFETY: the tail of a writable page just mapped.
                unsafe { core::ptr::write_bytes(file_end as *mut u8, 0, page_end - file_end) };
            }
            let fresh = if filesz > 0 { page_end } else { start };
            if mem_end > fresh {
                sys::mmap(
                    fresh,
                    mem_end.next_multiple_of(PAGE) - fresh,
                    prot,
                    MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS,
                    -1,
                    0,
                )
                .map_err(|_| &b"cannot map the bss"[..])?;
            }
        }
    }
    let mut phdr = 0;
    for i in 0..phnum {
        let h = header(i);
        let (offset, vaddr, filesz) = (u64_at(h, 8), u64_at(h, 16), u64_at(h, 32));
        match u32_at(h, 0) {
            PT_PHDR => phdr = bias + vaddr,
            PT_LOAD if phdr == 0 && offset <= phoff && phoff < offset + filesz => {
                phdr = bias + vaddr + (phoff - offset);
            }
            _ => {}
        }
    }
    Ok(Mapped {
        bias,
        entry: bias + u64_at(head, 24),
        phdr,
        phnum,
    })
}

/// The `#!` line of a script: interpreter and optional argument, as
/// slices of `head`.
fn shebang(head: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let line = head.strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let line = &line[..end];
    let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let line = &line[start..];
    let split = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let rest = &line[split..];
    let rest = match rest.iter().position(|&b| b != b' ' && b != b'\t') {
        Some(i) => {
            let r = &rest[i..];
            let e = r
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t' && b != b'\r')
                .map_or(0, |i| i + 1);
            Some(&r[..e])
        }
        None => None,
    };
    Some((&line[..split], rest.filter(|r| !r.is_empty())))
}

/// Strings the loader makes (a script's interpreter and argument), kept for
/// the program's life.
static mut STRINGS: [u8; 2 * MAX_SCRIPTS * 4097] = [0; 2 * MAX_SCRIPTS * 4097];

fn keep(at: &mut usize, s: &[u8]) -> *const u8 {
    // SAFETY: one thread, before the program starts; never freed.
    let strings = unsafe { &mut *(&raw mut STRINGS).cast::<[u8; 2 * MAX_SCRIPTS * 4097]>() };
    let len = s.len().min(4096);
    if *at + len + 1 > strings.len() {
        return c"".as_ptr().cast();
    }
    strings[*at..*at + len].copy_from_slice(&s[..len]);
    strings[*at + len] = 0;
    let p = strings[*at..].as_ptr();
    *at += len + 1;
    p
}

/// How many arguments may stand for argv[0] (`run`'s `in_place_of_argv0`).
pub const MAX_PREFIX: usize = 2 * MAX_SCRIPTS + 1;

/// Runs `file` with `argv` (`argc` of them) and the environment `envp`:
/// maps it and its interpreter and jumps there. Never returns. A
/// non-empty `in_place_of_argv0` (the image's `ld.so`, its options and the
/// program, for an interpreter run as the program) replaces `argv[0]`.
///
/// # Safety
/// `file` is a C string; `argv` holds `argc` of them; `envp` is the
/// kernel's environment array, followed by the auxiliary vector.
pub unsafe fn run(
    file: *const u8,
    interp_itself: bool,
    in_place_of_argv0: &[*const u8],
    argv: *const *const u8,
    argc: usize,
    envp: *const *const u8,
) -> ! {
    let mut file = file;
    // Arguments before the program's own (in front, in order): those
    // given, or those `#!` lines add.
    let mut prefix: [*const u8; MAX_PREFIX] = [core::ptr::null(); MAX_PREFIX];
    let mut prefixed = in_place_of_argv0.len().min(MAX_PREFIX);
    prefix[..prefixed].copy_from_slice(&in_place_of_argv0[..prefixed]);
    let mut skip_argv0 = prefixed > 0;
    let mut kept = 0;
    let mut head = [0u8; 1024];
    let mut interp = [0u8; 4096];
    for level in 0..=MAX_SCRIPTS {
        let path = text(file);
        let fd = match sys::openat(sys::AT_FDCWD, file, sys::O_CLOEXEC, 0) {
            Ok(fd) => fd as i32,
            Err(e) => fail(b"cannot open it", path, e),
        };
        let n = read_at(fd, &mut head, 0).unwrap_or(0);
        if let Some((interpreter, argument)) = shebang(&head[..n]) {
            let _ = sys::close(fd);
            if level == MAX_SCRIPTS {
                fail(b"too many levels of #! interpreters", path, sys::ELOOP);
            }
            // The kernel's order: interpreter, its argument, the script,
            // then the arguments after argv[0].
            let script = file;
            let mut fresh: [*const u8; 3] = [core::ptr::null(); 3];
            let mut count = 0;
            fresh[count] = keep(&mut kept, interpreter);
            count += 1;
            if let Some(argument) = argument {
                fresh[count] = keep(&mut kept, argument);
                count += 1;
            }
            fresh[count] = script;
            count += 1;
            // The earlier prefix's first entry (an interpreter) is replaced
            // by the script chain: rebuild it in front.
            let mut rebuilt: [*const u8; 2 * MAX_SCRIPTS + 1] =
                [core::ptr::null(); 2 * MAX_SCRIPTS + 1];
            let mut r = 0;
            for p in &fresh[..count] {
                rebuilt[r] = *p;
                r += 1;
            }
            for p in prefix.iter().take(prefixed).skip(1) {
                if r < rebuilt.len() {
                    rebuilt[r] = *p;
                    r += 1;
                }
            }
            prefix = rebuilt;
            prefixed = r;
            skip_argv0 = true;
            file = fresh[0];
            continue;
        }
        let at = interp_itself.then_some(sys::INTERP_BASE);
        let mapped = match map_elf(fd, &head[..n], &mut interp, at) {
            Ok(mapped) => mapped,
            Err(why) => fail(why, path, sys::ENOEXEC),
        };
        let _ = sys::close(fd);
        let len = path.len().min(4095);
        // SAFETY: written before the program runs, by the one thread.
        unsafe {
            let exe = &mut *(&raw mut EXE).cast::<[u8; 4096]>();
            exe[..len].copy_from_slice(&path[..len]);
            exe[len] = 0;
        }
        let mut target = mapped.entry;
        let mut base = 0;
        if interp[0] != 0 {
            let ipath = text(interp.as_ptr());
            let ifd = match sys::openat(sys::AT_FDCWD, interp.as_ptr(), sys::O_CLOEXEC, 0) {
                Ok(fd) => fd as i32,
                Err(e) => fail(b"cannot open its ELF interpreter", ipath, e),
            };
            let mut ihead = [0u8; 1024];
            let got = read_at(ifd, &mut ihead, 0).unwrap_or(0);
            let mut none = [0u8; 4096];
            let loaded = match map_elf(ifd, &ihead[..got], &mut none, Some(sys::INTERP_BASE)) {
                Ok(loaded) => loaded,
                Err(why) => fail(why, ipath, sys::ENOEXEC),
            };
            let _ = sys::close(ifd);
            target = loaded.entry;
            base = loaded.bias;
        }
        // With a prefix, its last entry is what runs (the script, or the
        // program ld.so is given); else an interpreter's argv names it.
        name_process(
            if prefixed > 0 {
                prefix[prefixed - 1]
            } else {
                file
            },
            interp_itself && prefixed == 0,
            argv,
            argc,
        );
        // SAFETY: the arrays come from the kernel's stack or this loader.
        unsafe {
            jump(
                target,
                &mapped,
                base,
                file,
                &prefix[..prefixed],
                skip_argv0,
                argv,
                argc,
                envp,
            )
        }
    }
    fail(
        b"too many levels of #! interpreters",
        text(file),
        sys::ELOOP,
    )
}

/// The process's name (`ps`, `/proc/self/comm`): the program's, not the
/// loader's.
fn name_process(file: *const u8, interp_itself: bool, argv: *const *const u8, argc: usize) {
    const PR_SET_NAME: usize = 15;
    let mut path = text(file);
    if interp_itself {
        // ld.so OPTIONS PROGRAM ARGS: the program's name.
        let mut i = 1;
        while i < argc {
            // SAFETY: argv holds argc strings.
            let arg = text(unsafe { *argv.add(i) });
            if !arg.starts_with(b"--") {
                path = arg;
                break;
            }
            // The options that take a value.
            let valued: &[&[u8]] = &[b"--library-path", b"--preload", b"--argv0", b"--audit"];
            i += if valued.contains(&arg) { 2 } else { 1 };
        }
    }
    let start = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let mut name = [0u8; 16];
    let len = (path.len() - start).min(15);
    name[..len].copy_from_slice(&path[start..start + len]);
    let _ = sys::prctl(PR_SET_NAME, name.as_ptr() as usize);
}

/// Where the program's initial stack is built before it is copied into
/// place (larger ones get a mapping).
static mut STACK: [u8; 32 * 1024] = [0; 32 * 1024];

/// Builds the program's initial stack (below the one the kernel made for
/// the loader) and jumps to `target`.
///
/// # Safety
/// `argv` holds `argc` strings; `envp` is the kernel's environment array,
/// followed by the auxiliary vector.
#[expect(clippy::too_many_arguments, reason = "the exec's whole state")]
unsafe fn jump(
    target: usize,
    program: &Mapped,
    interp_base: usize,
    file: *const u8,
    prefix: &[*const u8],
    skip_argv0: bool,
    argv: *const *const u8,
    argc: usize,
    envp: *const *const u8,
) -> ! {
    let own = if skip_argv0 { 1.min(argc) } else { 0 };
    let new_argc = prefix.len() + argc - own;
    let mut envc = 0;
    let mut kept_envc = 0;
    // SAFETY: envp is NULL-terminated; the auxiliary vector follows.
    let auxv = unsafe {
        while !(*envp.add(envc)).is_null() {
            kept_envc += usize::from(!lpmx_union::variables::is_loader_entry(text(
                *envp.add(envc),
            )));
            envc += 1;
        }
        envp.add(envc + 1) as *const usize
    };
    let mut auxc = 0;
    // SAFETY: the auxiliary vector ends with AT_NULL.
    unsafe {
        while *auxv.add(2 * auxc) != AT_NULL {
            auxc += 1;
        }
    }
    let words = 1 + new_argc + 1 + kept_envc + 1 + 2 * (auxc + 1);
    let bytes_needed = (8 * words).next_multiple_of(16);
    const PROT_READ_WRITE: usize = 3;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    // SAFETY: the one thread, before the program starts.
    let buffer = unsafe { &mut *(&raw mut STACK).cast::<[u8; 32 * 1024]>() };
    let area = if bytes_needed <= buffer.len() {
        buffer.as_mut_ptr() as usize
    } else {
        match sys::mmap(
            0,
            bytes_needed.next_multiple_of(PAGE),
            PROT_READ_WRITE,
            MAP_PRIVATE_ANONYMOUS,
            -1,
            0,
        ) {
            Ok(area) => area,
            Err(_) => fail(b"no memory for its arguments", text(file), sys::ENOMEM),
        }
    };
    let out = area as *mut usize;
    let mut w = 0;
    let mut put = |value: usize| {
        // SAFETY: words slots were counted into the area.
        unsafe { *out.add(w) = value };
        w += 1;
    };
    put(new_argc);
    for p in prefix {
        put(*p as usize);
    }
    for i in own..argc {
        // SAFETY: argv holds argc entries.
        put(unsafe { *argv.add(i) } as usize);
    }
    put(0);
    for i in 0..envc {
        // SAFETY: envp holds envc entries.
        let entry = unsafe { *envp.add(i) };
        if !lpmx_union::variables::is_loader_entry(text(entry)) {
            put(entry as usize);
        }
    }
    put(0);
    for i in 0..=auxc {
        // SAFETY: auxc entries and AT_NULL.
        let (key, value) = unsafe { (*auxv.add(2 * i), *auxv.add(2 * i + 1)) };
        let value = match key {
            AT_PHDR => program.phdr,
            AT_PHENT => 56,
            AT_PHNUM => program.phnum,
            AT_BASE => interp_base,
            AT_ENTRY => program.entry,
            AT_EXECFN => file as usize,
            _ => value,
        };
        put(key);
        put(value);
    }
    // The new stack sits just below the kernel's, where the loader's own
    // frames are: they are overwritten by the copy, the last thing done.
    let top = envp as usize & !15;
    let stack = (top - bytes_needed - 256) & !15;
    // SAFETY: rsp moves below every live frame before the copy; the copy
    // and the jump use registers only.
    unsafe {
        core::arch::asm!(
            "mov rsp, rdi",
            "cld",
            "rep movsb",
            "xor edx, edx",
            "xor ebp, ebp",
            "jmp rax",
            in("rdi") stack,
            in("rsi") area,
            in("rcx") 8 * words,
            in("rax") target,
            options(noreturn),
        )
    }
}

/// Whether `path` (a host program about to be exec'd) can be run by this
/// loader: the checks an exec makes before the caller's image is gone,
/// so that a failure is the caller's errno and not the loader's exit.
pub fn runnable(path: *const c_char) -> Result<(), i32> {
    const X_OK: i32 = 1;
    sys::faccessat(sys::AT_FDCWD, path.cast(), X_OK, 0)?;
    let fd = sys::openat(sys::AT_FDCWD, path.cast(), sys::O_CLOEXEC, 0)? as i32;
    let mut head = [0u8; 64];
    let n = read_at(fd, &mut head, 0).unwrap_or(0);
    let _ = sys::close(fd);
    let head = &head[..n];
    if head.starts_with(b"#!") || (head.len() >= 20 && &head[..4] == b"\x7fELF") {
        Ok(())
    } else {
        Err(sys::ENOEXEC)
    }
}

/// `execve(file, argv, envp)` through the loader: `loader` runs with the
/// same `argv` (the process's command line stays the program's) and the
/// environment plus `LPMX_LOADER_MODE=run` and `LPMX_LOADER_FILE=file`.
///
/// # Safety
/// As execve's: C strings and NULL-terminated arrays of them.
pub unsafe fn through_loader(
    loader: *const u8,
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Result<(), i32> {
    use lpmx_union::variables::{LOADER_FILE, LOADER_MODE, is_loader_entry};
    runnable(file)?;

    // The program's arrays, read as the kernel would: EFAULT, not a crash.
    let count = |list: *const *const c_char| -> Result<usize, i32> {
        let mut n = 0;
        if !list.is_null() {
            loop {
                // SAFETY: checked readable first; NULL-terminated.
                let slot = unsafe { list.add(n) };
                sys::user::check(slot.cast(), 8)?;
                if unsafe { *slot }.is_null() {
                    break;
                }
                n += 1;
            }
        }
        Ok(n)
    };
    let (argc, envc) = (count(argv)?, count(envp)?);
    let file_bytes = text(file.cast());
    // "LPMX_LOADER_MODE=run", "LPMX_LOADER_FILE=<file>", each with a NUL.
    let mode_len = LOADER_MODE.assignment.len() + RUN.to_bytes().len() + 1;
    let file_len = LOADER_FILE.assignment.len() + file_bytes.len() + 1;
    let words = (argc.max(1) + 1) + (envc + 3);
    let size = 8 * words + mode_len + file_len;
    const PROT_READ_WRITE: usize = 3;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    let area = sys::mmap(0, size, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0)?;
    let list = area as *mut *const c_char;
    // SAFETY: the mapping holds words pointers and then both strings.
    unsafe {
        let strings = (area + 8 * words) as *mut u8;
        let mut at = 0;
        let mut add = |parts: [&[u8]; 2]| {
            let start = strings.add(at);
            for part in parts {
                core::ptr::copy_nonoverlapping(part.as_ptr(), strings.add(at), part.len());
                at += part.len();
            }
            *strings.add(at) = 0;
            at += 1;
            start as *const c_char
        };
        let mode_entry = add([LOADER_MODE.assignment, RUN.to_bytes()]);
        let file_entry = add([LOADER_FILE.assignment, file_bytes]);
        if argc == 0 {
            *list = file;
        } else {
            core::ptr::copy_nonoverlapping(argv, list, argc);
        }
        *list.add(argc.max(1)) = core::ptr::null();
        let env = list.add(argc.max(1) + 1);
        // The caller's copies of the loader's entries would be taken for
        // this exec's.
        let mut kept = 0;
        for i in 0..envc {
            let entry = *envp.add(i);
            if !sys::user::path(entry).is_ok_and(is_loader_entry) {
                *env.add(kept) = entry;
                kept += 1;
            }
        }
        *env.add(kept) = mode_entry;
        *env.add(kept + 1) = file_entry;
        *env.add(kept + 2) = core::ptr::null();
    }
    // SAFETY: the environment array follows argv's in the mapping.
    let env = unsafe { list.add(argc.max(1) + 1) };
    let result = sys::execve(loader, list.cast_const(), env.cast_const());
    let _ = sys::munmap(area as *mut c_void, size);
    result.map(|_| ())
}
