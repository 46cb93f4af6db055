//! What libunion knows about its container, read once from the
//! environment `lpmx-exec` (or the exec wrappers) set, and the current
//! directory as the container sees it.
//!
//! The variables are `lpmx_union::variables`.

use core::cell::UnsafeCell;
use core::ffi::c_char;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use lpmx_union::variables::{self, Variable};

use crate::buf::{Buf, cstr, is_under, starts_with};
use crate::index::Index;
use crate::lock::SpinLock;
use crate::sys;

pub const MAX_BINDS: usize = 64;

pub struct Bind {
    pub host: &'static [u8],
    pub container: &'static [u8],
}

pub struct State {
    pub active: bool,
    pub index: Option<Index>,
    pub upper: &'static [u8],
    pub binds: [Bind; MAX_BINDS],
    pub bind_count: usize,
    /// The raw environment values, for the exec wrappers to pass on.
    pub binds_var: &'static [u8],
    pub index_var: &'static [u8],
    pub libdirs: &'static [u8],
    pub lib: &'static [u8],
    /// The container's host programs file, and the lpmx tools' directory
    /// (both run as host programs).
    pub host_programs: &'static [u8],
    pub tools: &'static [u8],
    /// Host libraries first in the library path (the GPU driver's, bound
    /// library files: lpmx-exec's `host_libs`), and container paths run as
    /// host programs for this run (':'-separated).
    pub host_libs: &'static [u8],
    pub host_exec: &'static [u8],
    /// Fake root (`LPMX_ROOT=1`, lpmx-exec --root).
    pub root: bool,
    pub env_file: &'static [u8],
    pub env_keys: &'static [u8],
    pub libs: &'static [u8],
    pub container_libs: &'static [u8],
    pub exe: &'static [u8],
    pub started_in: &'static [u8],
    /// The stores the layers are in (`LPMX_STORE`, ':'-separated, the
    /// user's and the shared ones), and the directory libunion.so is in:
    /// host paths libunion hands out, the trap leaves them the host's.
    pub store: &'static [u8],
    pub lib_dir: &'static [u8],
    /// The loader every exec starts under the trap (`LPMX_LOADER`).
    pub loader: &'static [u8],
}

struct Cell<T>(UnsafeCell<T>);
// SAFETY: written once under the INIT protocol, read-only afterwards (the
// cwd has its own lock).
unsafe impl<T> Sync for Cell<T> {}

const NO_BIND: Bind = Bind {
    host: &[],
    container: &[],
};

static STATE: Cell<State> = Cell(UnsafeCell::new(State {
    active: false,
    index: None,
    upper: &[],
    binds: [NO_BIND; MAX_BINDS],
    bind_count: 0,
    binds_var: &[],
    index_var: &[],
    libdirs: &[],
    lib: &[],
    host_programs: &[],
    tools: &[],
    host_libs: &[],
    host_exec: &[],
    root: false,
    env_file: &[],
    env_keys: &[],
    libs: &[],
    container_libs: &[],
    exe: &[],
    started_in: &[],
    store: &[],
    lib_dir: &[],
    loader: &[],
}));
// Written at every launch: with `lpmx_sys::GADGET_READY` (why there).
#[unsafe(link_section = ".data.lpmx.startup")]
static INIT: AtomicU8 = AtomicU8::new(0);

/// Whether this process runs under the system-call trap (every exec then
/// goes through the loader): set when its handler is in (`trap`).
#[unsafe(link_section = ".data.lpmx.startup")]
static TRAPPED: AtomicBool = AtomicBool::new(false);

/// Copies of the environment's values live here: the program may change
/// its environment later.
static ARENA: Cell<[u8; 1 << 16]> = Cell(UnsafeCell::new([0; 1 << 16]));
/// How much of the arena is taken. Apart from it, so that the arena's
/// first write is its first touch (one page fault, not two); with
/// `lpmx_sys::GADGET_READY` (why there).
#[unsafe(link_section = ".data.lpmx.startup")]
static ARENA_USED: Cell<usize> = Cell(UnsafeCell::new(0));

/// Copies `bytes` (plus a NUL) into the arena.
fn keep(bytes: &[u8]) -> &'static [u8] {
    // SAFETY: only called during initialisation, by one thread.
    let (arena, used) = unsafe { (&mut *ARENA.0.get(), &mut *ARENA_USED.0.get()) };
    let end = *used + bytes.len() + 1;
    if end > arena.len() {
        sys::warn(&[b"lpmx: libunion: environment too large\n"]);
        return &[];
    }
    arena[*used..end - 1].copy_from_slice(bytes);
    arena[end - 1] = 0;
    let kept = &arena[*used..end - 1];
    *used = end;
    // SAFETY: the arena is static and this range is never written again.
    unsafe { core::slice::from_raw_parts(kept.as_ptr(), kept.len()) }
}

/// A static copy of the program's argv[0] (at most 4096 bytes) with its
/// NUL; none when the arena is full.
pub fn keep_for_argv0(bytes: &[u8]) -> Option<&'static [u8]> {
    let kept = keep(&bytes[..bytes.len().min(4096)]);
    // SAFETY: keep puts a NUL after what it keeps.
    (!kept.is_empty())
        .then(|| unsafe { core::slice::from_raw_parts(kept.as_ptr(), kept.len() + 1) })
}

fn var(variable: Variable) -> &'static [u8] {
    // SAFETY: a C string; getenv's result is copied at once.
    let value = unsafe { cstr(sys::getenv(variable.c_name.as_ptr())) };
    if value.is_empty() { &[] } else { keep(value) }
}

pub fn trapped() -> bool {
    TRAPPED.load(Ordering::Acquire)
}

pub fn set_trapped() {
    TRAPPED.store(true, Ordering::Release);
}

/// The container's state, read from the environment on first use.
pub fn get() -> &'static State {
    if INIT.load(Ordering::Acquire) != 2 {
        init();
    }
    // SAFETY: initialised and never written again.
    unsafe { &*STATE.0.get() }
}

fn init() {
    if INIT
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        while INIT.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
        return;
    }
    // SAFETY: this thread won the right to initialise.
    let state = unsafe { &mut *STATE.0.get() };
    // Under the trap, libunion's calls from the start are the gadget's.
    let trapped = var(variables::TRAP) == b"1";
    if trapped {
        // Started by the loader, which carries the gadget.
        sys::gadget_mapped();
    }
    state.upper = trim_slash(var(variables::UPPER));
    state.index_var = var(variables::INDEX);
    state.binds_var = var(variables::BINDS);
    state.libdirs = var(variables::LIBDIRS);
    state.lib = var(variables::LIB);
    state.host_programs = var(variables::HOST_PROGRAMS);
    state.tools = trim_slash(var(variables::TOOLS));
    state.host_libs = var(variables::HOST_LIBS);
    state.host_exec = var(variables::HOST_EXEC);
    state.root = var(variables::ROOT) == b"1";
    state.env_file = var(variables::ENV_FILE);
    state.env_keys = var(variables::ENV_KEYS);
    state.libs = var(variables::LIBS);
    state.container_libs = trim_slash(var(variables::CONTAINER_LIBS));
    state.exe = var(variables::EXE);
    state.started_in = var(variables::CWD);
    state.store = trim_slash(var(variables::STORE));
    state.loader = var(variables::LOADER);
    state.lib_dir = state
        .lib
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(&[][..], |i| &state.lib[..i.max(1)]);
    if !state.upper.is_empty() && !state.index_var.is_empty() {
        // The arena keeps a NUL after each value.
        // SAFETY: index_var is followed by its NUL in the arena.
        let with_nul = unsafe {
            core::slice::from_raw_parts(state.index_var.as_ptr(), state.index_var.len() + 1)
        };
        state.index = crate::index::map(with_nul);
        if state.index.is_none() {
            sys::warn(&[
                b"lpmx: libunion: cannot read the layer index ",
                state.index_var,
                b"; run lpmx-unpack again\n",
            ]);
        }
        state.active = state.index.is_some();
    }
    let mut rest = state.binds_var;
    while !rest.is_empty() && state.bind_count < MAX_BINDS {
        let end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
        let pair = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if let Some(eq) = pair.iter().position(|&b| b == b'=') {
            state.binds[state.bind_count] = Bind {
                host: trim_slash(&pair[..eq]),
                container: trim_slash(&pair[eq + 1..]),
            };
            state.bind_count += 1;
        }
    }
    INIT.store(2, Ordering::Release);
    if state.active && trapped {
        crate::trap::inherit();
    }
}

impl State {
    /// The writable layer's empty, read-only directory (lpmx-exec makes
    /// it): every directory on the way to a deeper bind is this one on the
    /// host.
    pub fn way_to_bind(&self, out: &mut Buf) -> Result<(), i32> {
        out.set(self.upper)?;
        out.push(lpmx_union::upper::EMPTY)
    }
}

/// `/a/b/` as `/a/b`; `/` stays.
fn trim_slash(path: &'static [u8]) -> &'static [u8] {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

// The current directory in the container: the process's real one is the
// host directory it resolved to. Empty until first asked for (most
// programs never need it: a getcwd per exec saved), or set by a chdir.
static CWD: SpinLock<Buf> = SpinLock::new(Buf::new());

/// A vfork child's own working directory, per `private` slot: the child's
/// chdir must not change its parent's (`subprocess.run(cwd=...)`).
/// Each with the slot's epoch it was set in (`private::epoch`; 0: unset):
/// a child starts in its parent's directory.
struct ChildCwds(UnsafeCell<[(u32, Buf); crate::private::SLOTS]>);
// SAFETY: each slot is used by the one vfork child holding it.
unsafe impl Sync for ChildCwds {}
static CHILD_CWDS: ChildCwds = ChildCwds(UnsafeCell::new(
    [const { (0, Buf::new()) }; crate::private::SLOTS],
));

/// The container path of the process's real working directory (`/` when
/// it is outside the container).
fn real_cwd(state: &State, container: &mut Buf) {
    let mut host = Buf::new();
    let known = match sys::getcwd(host.spare(), crate::buf::CAPACITY) {
        Ok(len) => {
            host.set_len(len.saturating_sub(1));
            let mut empty = Buf::new();
            let in_empty =
                state.way_to_bind(&mut empty).is_ok() && host.as_bytes() == empty.as_bytes();
            if in_empty {
                // Every directory on the way to a deeper bind is this one
                // on the host: the one it was started in says which.
                !state.started_in.is_empty() && container.set(state.started_in).is_ok()
            } else {
                to_container(state, host.as_bytes(), container)
            }
        }
        Err(_) => false,
    };
    if !known {
        let _ = container.set(b"/");
    }
}

pub fn set_cwd(path: &[u8]) {
    if let Some(slot) = crate::private::vfork_slot() {
        // SAFETY: this child's slot.
        let (epoch, cwd) = unsafe { &mut (*CHILD_CWDS.0.get())[slot] };
        *epoch = if cwd.set(path).is_ok() {
            crate::private::epoch(slot)
        } else {
            0
        };
        return;
    }
    CWD.with(|cwd| {
        let _ = cwd.set(path);
    });
}

/// The working directory when already known (no system call), for the
/// next program (`LPMX_CWD`).
pub fn known_cwd(out: &mut Buf) -> bool {
    if crate::private::vfork_slot().is_some() {
        return cwd(out).is_ok();
    }
    CWD.with(|cwd| !cwd.is_empty() && out.set(cwd.as_bytes()).is_ok())
}

pub fn cwd(out: &mut Buf) -> Result<(), i32> {
    if let Some(slot) = crate::private::vfork_slot() {
        // SAFETY: this child's slot.
        let (epoch, cwd) = unsafe { &(*CHILD_CWDS.0.get())[slot] };
        if *epoch == crate::private::epoch(slot) {
            return out.set(cwd.as_bytes());
        }
    }
    if CWD.with(|cwd| cwd.is_empty()) {
        // Outside the lock: a system call and the container's binds.
        let mut real = Buf::new();
        real_cwd(get(), &mut real);
        // A vfork child's directory may no longer be its parent's: it
        // answers for itself only.
        if crate::private::vfork_slot().is_some() {
            return out.set(real.as_bytes());
        }
        CWD.with(|cwd| {
            if cwd.is_empty() {
                let _ = cwd.set(real.as_bytes());
            }
        });
    }
    CWD.with(|cwd| out.set(cwd.as_bytes()))
}

/// The container path of host path `host`, if it lies in the container's
/// layers or a bind; `out` is then absolute and canonical.
pub fn to_container(state: &State, host: &[u8], out: &mut Buf) -> bool {
    let mut place = |root: &[u8], at: &[u8]| -> bool {
        if !is_under(host, root) || root.is_empty() {
            return false;
        }
        let rest = &host[root.len()..];
        let ok = if at == b"/" || at.is_empty() {
            out.set(if rest.is_empty() { b"/" } else { rest })
        } else {
            out.set(at).and_then(|()| out.push(rest))
        };
        ok.is_ok()
    };
    if place(state.upper, b"/") {
        return true;
    }
    if let Some(index) = state.index {
        for layer in 0..index.layers() {
            if place(index.layer_root(layer as u16), b"/") {
                return true;
            }
        }
    }
    // The longest matching bind wins.
    let mut best: Option<&Bind> = None;
    for bind in &state.binds[..state.bind_count] {
        if is_under(host, bind.host) && best.is_none_or(|b| bind.host.len() > b.host.len()) {
            best = Some(bind);
        }
    }
    match best {
        Some(bind) => place(bind.host, bind.container),
        None => false,
    }
}

pub use lpmx_sys::format_int;

/// Whether `path` (the container's) names this process's executable.
pub fn is_self_exe(path: &[u8]) -> bool {
    if path == b"/proc/self/exe" {
        return true;
    }
    let Some(rest) = path.strip_prefix(b"/proc/") else {
        return false;
    };
    let Some(pid) = rest.strip_suffix(b"/exe") else {
        return false;
    };
    let mut number = [0u8; 12];
    pid == format_int(i64::from(sys::getpid()), &mut number) || starts_with(pid, b"thread-self")
}

/// The environment of this process, for the exec wrappers.
pub fn environ() -> *const *const c_char {
    // SAFETY: reading the libc global.
    unsafe { sys::environ }
}
