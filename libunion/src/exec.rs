//! Starting programs inside the container: every exec goes through the
//! image's own dynamic loader with libunion preloaded again, whatever the
//! caller did to its environment (`env -i`, an unset `LD_PRELOAD`).
//!
//! ```text
//! <loader> --inhibit-cache --library-path <library dirs in every layer> <program> args...
//! ```
//!
//! `#!` scripts run their interpreter, resolved in the container; static
//! binaries are refused, since no preload library can keep them inside.

use core::ffi::{CStr, c_char, c_int, c_void};

use lpmx_union::variables::{self, Variable};

use crate::buf::{Buf, CAPACITY, cstr, is_under};
use crate::export::export;
use crate::resolve::{Place, resolve_at};
use crate::state::{self, State};
use crate::sys::{self, real, set_errno};

const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Nested `#!` interpreters followed (Linux allows 4 too).
const MAX_SCRIPTS: usize = 4;
/// Pointers kept on the stack; longer lists (`find -exec ... +`) go to a
/// mapping. The stack part stays small: a forked child that execs writes
/// every stack page it touches, and each costs a copy.
const SLOTS: usize = 256;
const LIBPATH: usize = 8 * 1024;
/// The library path is kept after room for `LPMX_LOADER_ARG3=`, so that
/// under the trap it is the loader's argument without a copy.
const LIBPATH_ARG: u8 = 3;
const LIBPATH_AT: usize = variables::LOADER_ARG_ASSIGNMENT;
const STRINGS: usize = 32 * 1024;

/// A null-terminated array of C strings being built.
pub struct PtrList {
    inline: [*const c_char; SLOTS],
    mapped: *mut *const c_char,
    capacity: usize,
    len: usize,
}

impl PtrList {
    fn push(&mut self, value: *const c_char) -> Result<(), i32> {
        if self.len + 1 >= self.capacity.max(SLOTS) {
            self.grow()?;
        }
        let at = self.as_mut_ptr();
        // SAFETY: len + 1 is within the current storage.
        unsafe {
            *at.add(self.len) = value;
            *at.add(self.len + 1) = core::ptr::null();
        }
        self.len += 1;
        Ok(())
    }

    fn grow(&mut self) -> Result<(), i32> {
        let capacity = (self.capacity.max(SLOTS) * 4).max(1024);
        let bytes = capacity * core::mem::size_of::<*const c_char>();
        let mapped = sys::mmap_anonymous(bytes)? as *mut *const c_char;
        // SAFETY: the new mapping holds capacity pointers, the old storage len + 1.
        unsafe { core::ptr::copy_nonoverlapping(self.as_mut_ptr(), mapped, self.len + 1) };
        self.release();
        self.mapped = mapped;
        self.capacity = capacity;
        Ok(())
    }

    fn as_mut_ptr(&mut self) -> *mut *const c_char {
        if self.mapped.is_null() {
            self.inline.as_mut_ptr()
        } else {
            self.mapped
        }
    }

    pub fn as_ptr(&self) -> *const *const c_char {
        if self.mapped.is_null() {
            self.inline.as_ptr()
        } else {
            self.mapped
        }
    }

    fn release(&mut self) {
        if !self.mapped.is_null() {
            let _ = sys::munmap(
                self.mapped.cast(),
                self.capacity * core::mem::size_of::<*const c_char>(),
            );
            self.mapped = core::ptr::null_mut();
        }
    }
}

impl Drop for PtrList {
    fn drop(&mut self) {
        self.release();
    }
}

/// Everything an exec needs, built on the stack: an exec may run in a
/// `vfork` child, where allocating is not allowed.
pub struct Launch {
    pub loader: Buf,
    /// The directory relative paths start from (empty: the process's):
    /// posix_spawn's file actions may change it for the child.
    pub base: Buf,
    program: Buf,
    program_canon: Buf,
    /// The program's path as found: the `PATH` entry joined, or as given.
    found_as: Buf,
    /// Arguments the `#!` lines add before the caller's, in order (in
    /// `strings`).
    prefix: [*const c_char; 2 * MAX_SCRIPTS],
    prefix_count: usize,
    argv0: Buf,
    libpath: [u8; LIBPATH],
    libpath_len: usize,
    strings: [u8; STRINGS],
    strings_len: usize,
    pub argv: PtrList,
    pub envp: PtrList,
    /// Started by the trap's loader (`through_loader`), which is then the
    /// file exec'd.
    via_loader: bool,
    /// A static program, which the loader starts with libunion linked in
    /// (`lpmx_trap::exec::RUN_STATIC`): no ELF interpreter, no preload.
    standalone: bool,
    /// The container's library directory no longer holds (a run changed
    /// the writable layer's libraries): the program and its children
    /// search as before, without checking it again at every exec.
    container_libs_stale: bool,
}

#[expect(
    clippy::large_enum_variant,
    reason = "no allocator to box with; it lives briefly on the stack"
)]
enum Program {
    Dynamic,
    Static,
    Script {
        interpreter: Buf,
        argument: Option<Buf>,
    },
}

/// Reads what kind of executable host file `path` is; for a dynamic one
/// `loader` gets its `PT_INTERP`.
fn inspect(path: &Buf, loader: &mut Buf) -> Result<Program, i32> {
    let fd = sys::openat(sys::AT_FDCWD, path.c(), sys::O_CLOEXEC, 0)? as i32;
    let result = inspect_fd(fd, path, loader);
    let _ = sys::close(fd);
    result
}

fn inspect_fd(fd: i32, path: &Buf, loader: &mut Buf) -> Result<Program, i32> {
    // One read for the common case: the ELF header, the program headers
    // and PT_INTERP's path all lie in the first KiB of an executable.
    let mut buffer = [0u8; 1024];
    let n = sys::pread(fd, buffer.as_mut_ptr(), buffer.len(), 0)?;
    let head = &buffer[..n];
    // The kernel reads a `#!` line from the first 256 bytes only.
    if let Some(line) = head[..n.min(256)].strip_prefix(b"#!") {
        let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
        let line = trim(&line[..end]);
        let split = line
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(line.len());
        let interpreter = Buf::from(&line[..split])?;
        let rest = trim(&line[split..]);
        let argument = if rest.is_empty() {
            None
        } else {
            Some(Buf::from(rest)?)
        };
        if interpreter.is_empty() {
            return Err(sys::ENOEXEC);
        }
        return Ok(Program::Script {
            interpreter,
            argument,
        });
    }
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err(sys::ENOEXEC);
    }
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]) as u64;
    let u32_at =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]) as u64;
    let wide = head[4] == 2;
    let (phoff, phentsize, phnum) = if wide {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[32..40]);
        (u64::from_le_bytes(b), u16_at(54), u16_at(56))
    } else {
        (u32_at(28), u16_at(42), u16_at(44))
    };
    for i in 0..phnum.min(256) {
        let mut header = [0u8; 56];
        let at = phoff + i * phentsize;
        if read_at(fd, head, at, &mut header)? < if wide { 56 } else { 32 } {
            break;
        }
        let field = |at: usize, size: usize| {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(&header[at..at + size]);
            u64::from_le_bytes(b)
        };
        if field(0, 4) != 3 {
            continue; // not PT_INTERP
        }
        let (offset, size) = if wide {
            (field(8, 8), field(32, 8))
        } else {
            (field(4, 4), field(16, 4))
        };
        let size = (size as usize).min(CAPACITY);
        // SAFETY: the buffer's spare room holds CAPACITY bytes.
        let spare = unsafe { core::slice::from_raw_parts_mut(loader.spare(), size) };
        let read = read_at(fd, head, offset, spare)?;
        loader.set_len(read);
        let len = loader
            .as_bytes()
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(read);
        loader.truncate(len);
        return Ok(Program::Dynamic);
    }
    let _ = path;
    Ok(Program::Static)
}

/// Where [`Launch::translate_library_path`] looks for a library directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Search {
    /// In every layer, the writable one and binds.
    Everywhere,
    /// In the writable layer and binds (the image's are elsewhere).
    UpperAndBinds,
    /// In binds only.
    Binds,
}

/// Whether the container's library directory `dir` still holds what the
/// writable layer has: every line of its stamp
/// (`lpmx_union::upper::stamp`) names a file with that modification time,
/// as when lpmx-exec built it.
fn container_libs_hold(dir: &[u8]) -> bool {
    use lpmx_union::upper::stamp;
    let Ok(mut path) = Buf::from(dir) else {
        return false;
    };
    if path
        .push(b"/")
        .and_then(|()| path.push(stamp::NAME.as_bytes()))
        .is_err()
    {
        return false;
    }
    let Ok(fd) = sys::openat(sys::AT_FDCWD, path.c(), sys::O_CLOEXEC, 0) else {
        return false;
    };
    let mut text = [0u8; 4096];
    let read = sys::pread(fd as i32, text.as_mut_ptr(), text.len(), 0);
    let _ = sys::close(fd as i32);
    let Ok(len) = read else {
        return false;
    };
    if len == text.len() {
        return false; // not a stamp lpmx-exec writes
    }
    stamp::lines(&text[..len]).all(|line| {
        let Some((file, time)) = line else {
            return false;
        };
        let Ok(file) = Buf::from(file) else {
            return false;
        };
        let mut st = [0u64; 18];
        let modified = crate::host::lstat(&file, &mut st)
            .ok()
            .map(|_| (st[11] as i64, st[12] as i64));
        stamp::holds(time, modified)
    })
}

/// Fills `out` from offset `at` of the file, from `head` (its first
/// bytes, already read) when it holds them all; returns the count read.
fn read_at(fd: i32, head: &[u8], at: u64, out: &mut [u8]) -> Result<usize, i32> {
    let start = at as usize;
    if let Some(bytes) = start
        .checked_add(out.len())
        .and_then(|end| head.get(start..end))
    {
        out.copy_from_slice(bytes);
        return Ok(out.len());
    }
    sys::pread(fd, out.as_mut_ptr(), out.len(), at)
}

/// ldconfig (static in Debian and others) only maintains
/// `/etc/ld.so.cache`, which programs in a container never read: the
/// loader runs with `--inhibit-cache`. Package scripts call it after every
/// library install, so it succeeds without doing anything.
fn is_ldconfig(canon: &[u8]) -> bool {
    let name = canon.rsplit(|&b| b == b'/').next().unwrap_or(b"");
    name == b"ldconfig" || name == b"ldconfig.real"
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The value of `name=` in the environment `envp`.
///
/// # Safety
/// `envp` is null or a null-terminated array of C strings.
unsafe fn env_value<'a>(envp: *const *const c_char, name: &[u8]) -> Option<&'a [u8]> {
    // SAFETY: as the caller vouches; the value is a C string in the entry.
    unsafe { sys::env_entry(envp, name).map(|(_, value)| cstr(value.cast())) }
}

/// The variables that carry libunion's state from exec to exec, with
/// their values for the next container program.
fn state_variables(state: &State, container_libs_stale: bool) -> [(Variable, &[u8]); 15] {
    [
        (variables::PRELOAD, state.lib),
        (variables::UPPER, state.upper),
        (variables::INDEX, state.index_var),
        (variables::BINDS, state.binds_var),
        (variables::LIBDIRS, state.libdirs),
        (variables::LIB, state.lib),
        (variables::HOST_PROGRAMS, state.host_programs),
        (variables::TOOLS, state.tools),
        (variables::HOST_LIBS, state.host_libs),
        (variables::HOST_EXEC, state.host_exec),
        (variables::LIBS, state.libs),
        (
            variables::CONTAINER_LIBS,
            if container_libs_stale {
                b""
            } else {
                state.container_libs
            },
        ),
        (variables::STORE, state.store),
        (variables::LOADER, state.loader),
        (
            variables::TRAP,
            if crate::state::trapped() { b"1" } else { b"" },
        ),
    ]
}

/// The variables [`Launch::build`] writes itself: from the environment
/// file, fake root's ids and the program started.
const PER_EXEC_VARIABLES: [Variable; 7] = [
    variables::ENV_KEYS,
    variables::ENV_FILE,
    variables::ROOT,
    variables::IDS,
    variables::EXE,
    variables::ARGV0,
    variables::CWD,
];

/// Variables libunion sets on every exec; the caller's copies are dropped
/// (and a host program gets none of them).
fn is_ours(entry: &[u8]) -> bool {
    // Most entries are the program's own: told by their first bytes.
    if !entry.starts_with(variables::PREFIX.as_bytes()) && !variables::PRELOAD.is_set_by(entry) {
        return false;
    }
    if variables::is_loader_entry(entry) {
        return true;
    }
    PER_EXEC_VARIABLES
        .iter()
        .chain(
            state_variables(state::get(), false)
                .iter()
                .map(|(variable, _)| variable),
        )
        .any(|variable| variable.is_set_by(entry))
}

/// Whether the program at `host` may be executed: by the kernel's check
/// for the real user, or fake root's rules under `--root`.
fn executable(found: &crate::resolve::Found, canon: &Buf, host: &Buf) -> Result<(), i32> {
    const X_OK: i32 = 1;
    if crate::root::active() && !found.under_bind {
        let meta = crate::paths::meta_of(found, canon, host)?;
        if meta.is_dir() {
            return Err(sys::EACCES);
        }
        return crate::perm::check(&meta, crate::perm::MAY_EXEC);
    }
    crate::host::access(host, X_OK, 0).map(|_| ())
}

impl Launch {
    /// Under the trap, every exec runs the loader first (`lpmx_trap`):
    /// the exec goes to the trap's loader, told in the environment how
    /// to start `self.loader` (`lpmx_union::variables::LOADER_MODE`); its
    /// argv stays the program's.
    fn through_loader(&mut self, mode: &CStr) -> Result<(), i32> {
        let mode = self.add_string(&[variables::LOADER_MODE.assignment, mode.to_bytes()])?;
        self.envp.push(mode)?;
        let file = Buf::from(self.loader.as_bytes())?;
        let file = self.add_string(&[variables::LOADER_FILE.assignment, file.as_bytes()])?;
        self.envp.push(file)?;
        self.via_loader = true;
        Ok(())
    }

    /// Argument `n` of the loader's, of those that stand for argv[0]
    /// (`LPMX_LOADER_ARG<n>`).
    fn add_loader_arg(&mut self, n: u8, arg: &[u8]) -> Result<(), i32> {
        let start = self.strings_len;
        self.add_raw(&variables::loader_arg_assignment(n))?;
        self.add_raw(arg)?;
        self.add_raw(b"\0")?;
        self.envp.push(self.strings[start..].as_ptr().cast())
    }

    /// The library path as the loader's argument `LIBPATH_ARG`: its own
    /// buffer, the entry's name written in the room kept before it.
    fn add_loader_libpath(&mut self) -> Result<(), i32> {
        self.libpath[..LIBPATH_AT].copy_from_slice(&variables::loader_arg_assignment(LIBPATH_ARG));
        self.envp.push(self.libpath.as_ptr().cast())
    }

    /// The library path built so far.
    fn libpath(&self) -> &[u8] {
        &self.libpath[LIBPATH_AT..LIBPATH_AT + self.libpath_len]
    }

    /// The file to exec: the loader under the trap, else the program's
    /// loader (or a host program) itself.
    pub fn exec_path(&self) -> *const u8 {
        if self.via_loader {
            state::get().loader.as_ptr()
        } else {
            self.loader.c()
        }
    }

    /// `path` made absolute from the base directory when it is relative
    /// and a base is set; as given otherwise.
    fn rooted(&self, path: &[u8]) -> Result<Buf, i32> {
        let mut full = Buf::new();
        if path.first() != Some(&b'/') {
            if self.base.is_empty() {
                state::cwd(&mut full)?;
            } else {
                full.set(self.base.as_bytes())?;
            }
            full.push(b"/")?;
        }
        full.push(path)?;
        Ok(full)
    }

    fn add_string(&mut self, parts: &[&[u8]]) -> Result<*const c_char, i32> {
        let start = self.strings_len;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if start + total + 1 > STRINGS {
            return Err(sys::ENAMETOOLONG);
        }
        for part in parts {
            self.strings[self.strings_len..self.strings_len + part.len()].copy_from_slice(part);
            self.strings_len += part.len();
        }
        self.strings[self.strings_len] = 0;
        self.strings_len += 1;
        Ok(self.strings[start..].as_ptr().cast())
    }

    /// Appends bytes to the string area without a NUL (see `add_string`).
    fn add_raw(&mut self, bytes: &[u8]) -> Result<(), i32> {
        if self.strings_len + bytes.len() > STRINGS {
            return Err(sys::E2BIG);
        }
        self.strings[self.strings_len..self.strings_len + bytes.len()].copy_from_slice(bytes);
        self.strings_len += bytes.len();
        Ok(())
    }

    fn add_libpath(&mut self, bytes: &[u8]) -> Result<(), i32> {
        if self.libpath().split(|&b| b == b':').any(|d| d == bytes) {
            return Ok(());
        }
        if LIBPATH_AT + self.libpath_len + bytes.len() + 2 > LIBPATH {
            return Err(sys::ENAMETOOLONG);
        }
        let at = LIBPATH_AT + self.libpath_len;
        let at = if self.libpath_len > 0 {
            self.libpath[at] = b':';
            at + 1
        } else {
            at
        };
        self.libpath[at..at + bytes.len()].copy_from_slice(bytes);
        self.libpath[at + bytes.len()] = 0;
        self.libpath_len = at + bytes.len() - LIBPATH_AT;
        Ok(())
    }

    /// The program's own `LD_LIBRARY_PATH` names container directories;
    /// the loader's library path needs them where `search` says: in
    /// every layer, or only in the writable layer and binds, or only in
    /// binds. A bind is a directory of its own whatever the layers, so it
    /// is always searched, as a mount there would be.
    fn translate_library_path(
        &mut self,
        state: &State,
        value: &[u8],
        search: Search,
    ) -> Result<(), i32> {
        let Some(index) = state.index else {
            return Ok(());
        };
        let layers = search == Search::Everywhere;
        for dir in value.split(|&b| b == b':').filter(|d| !d.is_empty()) {
            let first = dir
                .split(|&b| b == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"");
            let in_bind = || crate::resolve::bind_of(state, dir).is_some();
            let skip = match search {
                Search::Everywhere => false,
                // Nothing of it in the writable layer.
                Search::UpperAndBinds => !crate::upper::may_hold(state, first) && !in_bind(),
                Search::Binds => !in_bind(),
            };
            if skip {
                continue;
            }
            let (mut canon, mut host) = (Buf::new(), Buf::new());
            let Ok(found) = resolve_at(state, sys::AT_FDCWD, dir, true, &mut canon, &mut host)
            else {
                continue;
            };
            match found.place {
                Place::Missing => continue,
                Place::Bind => self.add_libpath(host.as_bytes())?,
                _ if search == Search::Binds => {}
                _ => {
                    let inside = if canon.as_bytes() == b"/" {
                        &b""[..]
                    } else {
                        canon.as_bytes()
                    };
                    if found.place == Place::Upper {
                        self.add_libpath(host.as_bytes())?;
                    }
                    if !layers {
                        continue;
                    }
                    let (layers, any) = index.contents(inside.get(1..).unwrap_or(b""));
                    if !any {
                        continue; // an empty directory holds no library
                    }
                    for layer in 0..(64 * 64) as u16 {
                        if layers[usize::from(layer) / 64] & (1 << (layer % 64)) != 0 {
                            host.set(index.layer_root(layer))?;
                            host.push(inside)?;
                            self.add_libpath(host.as_bytes())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Finds the program `path` (through `PATH` when `search`), follows
    /// `#!` lines, and builds the loader's argv and environment.
    ///
    /// # Safety
    /// `argv` and `envp` are null-terminated arrays of C strings (or null).
    pub unsafe fn prepare(
        &mut self,
        path: &[u8],
        search: bool,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> Result<(), i32> {
        let state = state::get();
        // SAFETY: the caller's environment.
        let env_path = unsafe { env_value(envp, b"PATH") }.unwrap_or(DEFAULT_PATH);
        if self.host_program(state, path, search, env_path)? {
            // SAFETY: the caller's arrays.
            return unsafe { self.build_host(argv, envp) };
        }
        self.find(state, path, search, env_path)?;
        // SAFETY: argv is null or null-terminated.
        let first = if argv.is_null() {
            core::ptr::null()
        } else {
            unsafe { *argv }
        };
        // SAFETY: a C string.
        self.argv0.set(if first.is_null() {
            path
        } else {
            unsafe { cstr(first) }
        })?;
        let mut scripts = 0;
        loop {
            let mut loader = Buf::new();
            match inspect(&self.program, &mut loader)? {
                Program::Static if is_ldconfig(self.program_canon.as_bytes()) => {
                    self.find(state, b"/bin/true", false, DEFAULT_PATH)?;
                    continue;
                }
                Program::Static if crate::state::trapped() => {
                    // Kept inside by the trap alone, libunion linked in.
                    self.loader = Buf::from(self.program.as_bytes())?;
                    self.standalone = true;
                    break;
                }
                Program::Static => {
                    sys::warn(&[
                        b"lpmx: ",
                        self.program_canon.as_bytes(),
                        b" is statically linked, and only the system-call trap keeps such a program inside the container; it is off (LPMX_TRAP=0, or the kernel or a sandbox refuses seccomp filters), so lpmx does not run it\n",
                    ]);
                    return Err(sys::EACCES);
                }
                Program::Dynamic => {
                    let (mut canon, mut host) = (Buf::new(), Buf::new());
                    let found = resolve_at(
                        state,
                        sys::AT_FDCWD,
                        loader.as_bytes(),
                        true,
                        &mut canon,
                        &mut host,
                    )?;
                    if found.place == Place::Missing {
                        return Err(sys::ENOENT);
                    }
                    self.loader = host;
                    break;
                }
                Program::Script {
                    interpreter,
                    argument,
                } => {
                    scripts += 1;
                    if scripts > MAX_SCRIPTS {
                        return Err(sys::ELOOP);
                    }
                    // As the kernel does at each level: the script's path as
                    // it was asked for (the earlier line's interpreter, as
                    // that line named it), then the line's argument; argv[0]
                    // is the last line's interpreter.
                    let script = if scripts == 1 {
                        Buf::from(self.found_as.as_bytes())?
                    } else {
                        Buf::from(self.argv0.as_bytes())?
                    };
                    self.insert_prefix(script)?;
                    if let Some(argument) = argument {
                        self.insert_prefix(argument)?;
                    }
                    self.argv0.set(interpreter.as_bytes())?;
                    self.find(state, interpreter.as_bytes(), false, DEFAULT_PATH)?;
                }
            }
        }
        if self.standalone {
            return self.build(state, argv, envp);
        }
        if !state.host_libs.is_empty() {
            // The host's GPU driver, before any stub an image may carry,
            // and library files bound into library directories, which
            // hide the image's of their names.
            self.add_libpath(state.host_libs)?;
        }
        // SAFETY: the caller's environment.
        if let Some(value) = unsafe { env_value(envp, b"LD_LIBRARY_PATH") } {
            self.translate_library_path(state, value, Search::Everywhere)?;
        }
        let container_libs = !state.container_libs.is_empty();
        if container_libs && container_libs_hold(state.container_libs) {
            // The writable layer's libraries and the image's, in one;
            // a bind over a library directory first, as it hides theirs.
            self.translate_library_path(state, state.libdirs, Search::Binds)?;
            self.add_libpath(state.container_libs)?;
            return self.build(state, argv, envp);
        }
        self.container_libs_stale = container_libs;
        if state.libs.is_empty() {
            self.translate_library_path(state, state.libdirs, Search::Everywhere)?;
        } else {
            // The image's libraries, one directory whatever the layers;
            // the writable layer's (installed later) and binds first.
            self.translate_library_path(state, state.libdirs, Search::UpperAndBinds)?;
            self.add_libpath(state.libs)?;
        }
        self.build(state, argv, envp)
    }

    /// Whether `path` is a host program (one the container's
    /// `host-programs` names, or an lpmx tool): then `loader` is its host
    /// path, to be run as it is.
    fn host_program(
        &mut self,
        state: &State,
        path: &[u8],
        search: bool,
        env_path: &[u8],
    ) -> Result<bool, i32> {
        let programs = MappedLines::map(state.host_programs);
        let lookup = |candidate: &[u8]| {
            programs
                .entries()
                .find(|(container, _)| *container == candidate)
                .map(|(container, line)| &line[container.len() + 1..])
        };
        if path.contains(&b'/') {
            let full = self.rooted(path)?;
            if !state.tools.is_empty() && is_under(full.as_bytes(), state.tools) {
                self.loader = full;
                return Ok(true);
            }
            if let Some(host) = lookup(full.as_bytes()) {
                self.loader.set(host)?;
                return Ok(true);
            }
            if state
                .host_exec
                .split(|&b| b == b':')
                .any(|p| p == full.as_bytes())
            {
                self.loader = full;
                return Ok(true);
            }
        } else if search {
            for dir in env_path.split(|&b| b == b':').filter(|d| !d.is_empty()) {
                let mut candidate = Buf::from(dir)?;
                candidate.push(b"/")?;
                candidate.push(path)?;
                if let Some(host) = lookup(candidate.as_bytes()) {
                    self.loader.set(host)?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// A host program's argv (as given) and environment (without
    /// libunion's variables): a host process, its children too.
    ///
    /// # Safety
    /// As `prepare`'s.
    unsafe fn build_host(
        &mut self,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> Result<(), i32> {
        if crate::state::trapped() {
            self.through_loader(lpmx_trap::exec::RUN)?;
        }
        for (list, source, filter) in [(&mut self.argv, argv, false), (&mut self.envp, envp, true)]
        {
            if source.is_null() {
                continue;
            }
            let mut at = 0;
            // SAFETY: null-terminated arrays of C strings.
            unsafe {
                while !(*source.add(at)).is_null() {
                    let entry = *source.add(at);
                    if !(filter && is_ours(cstr(entry))) {
                        list.push(entry)?;
                    }
                    at += 1;
                }
            }
        }
        if self.argv.len == 0 {
            self.argv.push(self.loader.c().cast())?;
        }
        if self.envp.len == 0 {
            // An empty environment is still a null-terminated array.
            self.envp.push(core::ptr::null())?;
        }
        Ok(())
    }

    fn insert_prefix(&mut self, arg: Buf) -> Result<(), i32> {
        if self.prefix_count == self.prefix.len() {
            return Err(sys::ELOOP);
        }
        let arg = self.add_string(&[arg.as_bytes()])?;
        for i in (0..self.prefix_count).rev() {
            self.prefix.swap(i, i + 1);
        }
        self.prefix[0] = arg;
        self.prefix_count += 1;
        Ok(())
    }

    fn find(
        &mut self,
        state: &State,
        name: &[u8],
        search: bool,
        env_path: &[u8],
    ) -> Result<(), i32> {
        if !search || name.contains(&b'/') {
            self.found_as.set(name)?;
            let mut full = self.rooted(name)?;
            if state::is_self_exe(full.as_bytes()) && !state.exe.is_empty() {
                // The program itself (busybox runs its applets so): /proc
                // would name the loader it was started by.
                full.set(state.exe)?;
            }
            let found = resolve_at(
                state,
                sys::AT_FDCWD,
                full.as_bytes(),
                true,
                &mut self.program_canon,
                &mut self.program,
            )?;
            if found.place == Place::Missing {
                return Err(sys::ENOENT);
            }
            return executable(&found, &self.program_canon, &self.program);
        }
        let mut error = sys::ENOENT;
        for dir in env_path.split(|&b| b == b':') {
            let mut candidate = Buf::from(if dir.is_empty() { b"." } else { dir })?;
            candidate.push(b"/")?;
            candidate.push(name)?;
            let full = self.rooted(candidate.as_bytes())?;
            match resolve_at(
                state,
                sys::AT_FDCWD,
                full.as_bytes(),
                true,
                &mut self.program_canon,
                &mut self.program,
            ) {
                Ok(found)
                    if found.place != Place::Missing && found.kind != crate::index::KIND_DIR =>
                {
                    match executable(&found, &self.program_canon, &self.program) {
                        Ok(()) => return self.found_as.set(candidate.as_bytes()),
                        Err(e) => error = e,
                    }
                }
                _ => {}
            }
        }
        Err(error)
    }

    fn build(
        &mut self,
        state: &State,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> Result<(), i32> {
        // The image's ld.so runs the program: `LDSO OPTIONS PROGRAM`.
        const LD_SO_OPTIONS: [&CStr; 2] = [c"--inhibit-cache", c"--library-path"];
        if self.standalone {
            // The loader starts the program itself, with its argv[0].
            self.through_loader(lpmx_trap::exec::RUN_STATIC)?;
        } else if crate::state::trapped() {
            // The loader runs ld.so with these in argv[0]'s place.
            self.through_loader(lpmx_trap::exec::RUN_INTERP)?;
            let ld_so = Buf::from(self.loader.as_bytes())?;
            self.add_loader_arg(0, ld_so.as_bytes())?;
            self.add_loader_arg(1, LD_SO_OPTIONS[0].to_bytes())?;
            self.add_loader_arg(2, LD_SO_OPTIONS[1].to_bytes())?;
            self.add_loader_libpath()?;
            let program = Buf::from(self.program.as_bytes())?;
            self.add_loader_arg(LIBPATH_ARG + 1, program.as_bytes())?;
        } else {
            self.argv.push(self.loader.c().cast())?;
            for option in LD_SO_OPTIONS {
                self.argv.push(option.as_ptr())?;
            }
            self.argv.push(self.libpath[LIBPATH_AT..].as_ptr().cast())?;
            self.argv.push(self.program.c().cast())?;
        }
        if self.via_loader {
            let argv0 = Buf::from(self.argv0.as_bytes())?;
            let argv0 = self.add_string(&[argv0.as_bytes()])?;
            self.argv.push(argv0)?;
        }
        for i in 0..self.prefix_count {
            self.argv.push(self.prefix[i])?;
        }
        if !argv.is_null() {
            // SAFETY: null-terminated; the first is argv[0], replaced.
            unsafe {
                if !(*argv).is_null() {
                    let mut at = 1;
                    while !(*argv.add(at)).is_null() {
                        self.argv.push(*argv.add(at))?;
                        at += 1;
                    }
                }
            }
        }
        // The container's environment file wins over what was inherited,
        // and variables it no longer sets (but set before) are dropped.
        let file = MappedLines::map(state.env_file);
        let managed = |key: &[u8]| {
            file.keys().any(|k| k == key) || state.env_keys.split(|&b| b == b':').any(|k| k == key)
        };
        if !envp.is_null() {
            let mut at = 0;
            // SAFETY: null-terminated array of C strings.
            unsafe {
                while !(*envp.add(at)).is_null() {
                    let entry = *envp.add(at);
                    let bytes = cstr(entry);
                    let key = bytes.split(|&b| b == b'=').next().unwrap_or(b"");
                    if !is_ours(bytes) && !managed(key) {
                        self.envp.push(entry)?;
                    }
                    at += 1;
                }
            }
        }
        for (i, (key, line)) in file.entries().enumerate() {
            // A key set twice: the last line wins, as in lpmx-env. The
            // loader's own entries are never the file's to set.
            if file.entries().skip(i + 1).any(|(k, _)| k == key) || variables::is_loader_entry(line)
            {
                continue;
            }
            let entry = self.add_string(&[line])?;
            self.envp.push(entry)?;
        }
        let keys_start = self.strings_len;
        self.add_raw(variables::ENV_KEYS.assignment)?;
        let mut first = true;
        for (key, _) in file.entries() {
            if !first {
                self.add_raw(b":")?;
            }
            first = false;
            self.add_raw(key)?;
        }
        self.add_raw(b"\0")?;
        self.envp.push(self.strings[keys_start..].as_ptr().cast())?;
        let env_file = self.add_string(&[variables::ENV_FILE.assignment, state.env_file])?;
        self.envp.push(env_file)?;
        if state.root {
            let root = self.add_string(&[variables::ROOT.assignment, b"1"])?;
            self.envp.push(root)?;
            let mut ids = Buf::new();
            crate::ids::var(&mut ids)?;
            let ids = self.add_string(&[ids.as_bytes()])?;
            self.envp.push(ids)?;
        }
        drop(file);
        for (variable, value) in state_variables(state, self.container_libs_stale) {
            let entry = self.add_string(&[variable.assignment, value])?;
            self.envp.push(entry)?;
        }
        let canon = Buf::from(self.program_canon.as_bytes())?;
        let exe = self.add_string(&[variables::EXE.assignment, canon.as_bytes()])?;
        self.envp.push(exe)?;
        let mut cwd = Buf::new();
        if state::known_cwd(&mut cwd) {
            let cwd = self.add_string(&[variables::CWD.assignment, cwd.as_bytes()])?;
            self.envp.push(cwd)?;
        }
        if !self.standalone {
            let argv0 = Buf::from(self.argv0.as_bytes())?;
            let argv0 = self.add_string(&[variables::ARGV0.assignment, argv0.as_bytes()])?;
            self.envp.push(argv0)?;
        }
        Ok(())
    }
}

/// A fresh launch, left uninitialised where it is filled before use.
macro_rules! launch {
    ($name:ident) => {
        let mut storage = core::mem::MaybeUninit::<Launch>::uninit();
        // SAFETY: the header fields are set here; the arrays are written
        // before they are read.
        let $name = unsafe {
            let p = storage.as_mut_ptr();
            core::ptr::addr_of_mut!((*p).loader).write(Buf::new());
            core::ptr::addr_of_mut!((*p).base).write(Buf::new());
            core::ptr::addr_of_mut!((*p).program).write(Buf::new());
            core::ptr::addr_of_mut!((*p).program_canon).write(Buf::new());
            core::ptr::addr_of_mut!((*p).found_as).write(Buf::new());
            core::ptr::addr_of_mut!((*p).argv0).write(Buf::new());
            core::ptr::addr_of_mut!((*p).prefix_count).write(0);
            for list in [
                core::ptr::addr_of_mut!((*p).argv),
                core::ptr::addr_of_mut!((*p).envp),
            ] {
                core::ptr::addr_of_mut!((*list).mapped).write(core::ptr::null_mut());
                core::ptr::addr_of_mut!((*list).capacity).write(0);
                core::ptr::addr_of_mut!((*list).len).write(0);
            }
            core::ptr::addr_of_mut!((*p).libpath_len).write(0);
            core::ptr::addr_of_mut!((*p).via_loader).write(false);
            core::ptr::addr_of_mut!((*p).standalone).write(false);
            core::ptr::addr_of_mut!((*p).container_libs_stale).write(false);
            core::ptr::addr_of_mut!((*p).strings_len).write(0);
            (*p).libpath[LIBPATH_AT] = 0;
            &mut *p
        };
    };
}

/// execve(2) inside the container; returns only on failure (-1, errno).
///
/// # Safety
/// As execve's.
pub unsafe fn exec(
    path: *const c_char,
    search: bool,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    if !state::get().active {
        // SAFETY: the caller's arguments.
        return unsafe { passthrough(path, search, argv, envp) };
    }
    launch!(launch);
    // SAFETY: the caller's arrays.
    match unsafe { launch.prepare(cstr(path), search, argv, envp) } {
        Ok(()) => sys::c_ret(sys::execve(
            launch.exec_path(),
            launch.argv.as_ptr(),
            launch.envp.as_ptr(),
        )),
        Err(e) => sys::c_ret(Err(e)),
    }
}

type ExecvpeFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;

unsafe fn passthrough(
    path: *const c_char,
    search: bool,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    if !search {
        return sys::c_ret(sys::execve(path.cast(), argv, envp));
    }
    match real!("execvpe": ExecvpeFn) {
        // SAFETY: the caller's arguments.
        Some(real) => unsafe { real(path, argv, envp) },
        None => sys::c_ret(Err(sys::ENOENT)),
    }
}

export! {
    fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        exec(path, false, argv, envp)
    }
    fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
        exec(path, false, argv, state::environ())
    }
    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
        exec(file, true, argv, state::environ())
    }
    fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        exec(file, true, argv, envp)
    }
    fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        let state = state::get();
        let mut canon = Buf::new();
        if state.active && crate::fdpaths::fd_path(state, fd, &mut canon) {
            return exec(canon.c().cast(), false, argv, envp);
        }
        sys::c_ret(sys::execveat(fd, c"".as_ptr().cast(), argv, envp, sys::AT_EMPTY_PATH))
    }
    fn execveat(dirfd: c_int, path: *const c_char, argv: *const *const c_char, envp: *const *const c_char, flags: c_int) -> c_int {
        let state = state::get();
        let given = cstr(path);
        if !state.active || (given.is_empty() && flags & sys::AT_EMPTY_PATH == 0) {
            return sys::c_ret(sys::execveat(dirfd, path.cast(), argv, envp, flags));
        }
        let mut full = Buf::new();
        if given.first() != Some(&b'/') && dirfd != sys::AT_FDCWD {
            if !crate::fdpaths::fd_path(state, dirfd, &mut full) {
                return sys::c_ret(sys::execveat(dirfd, path.cast(), argv, envp, flags));
            }
            if !given.is_empty() && (full.push(b"/").is_err() || full.push(given).is_err()) {
                return sys::c_ret(Err(sys::ENAMETOOLONG));
            }
        } else if full.set(given).is_err() {
            return sys::c_ret(Err(sys::ENAMETOOLONG));
        }
        exec(full.c().cast(), false, argv, envp)
    }
}

// execl, execle and execlp take their arguments as a list: these stubs lay
// the register arguments next to the stack ones, which makes an argv, and
// call `exec_list(path, argv, kind)`.
macro_rules! exec_list_stub {
    ($name:ident, $kind:literal) => {
        /// # Safety
        /// As the libc function of this name.
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!(
                "pop r11",
                "push r9", "push r8", "push rcx", "push rdx", "push rsi",
                "mov rsi, rsp",
                concat!("mov rdx, ", $kind),
                "push r11",
                "call {list}",
                "pop r11",
                "add rsp, 40",
                "push r11",
                "ret",
                list = sym exec_list,
            )
        }
    };
}
exec_list_stub!(execl, 0);
exec_list_stub!(execlp, 1);
exec_list_stub!(execle, 2);

/// `argv` is the argument list laid out by the stubs; `kind` 0 execl,
/// 1 execlp, 2 execle (the environment follows the list's null).
unsafe extern "C" fn exec_list(
    path: *const c_char,
    argv: *const *const c_char,
    kind: usize,
) -> c_int {
    let mut envp = state::environ();
    if kind == 2 {
        let mut at = 0;
        // SAFETY: the list is null-terminated and execle's envp follows it.
        unsafe {
            while !(*argv.add(at)).is_null() {
                at += 1;
            }
            envp = *argv.add(at + 1).cast::<*const *const c_char>();
        }
    }
    // SAFETY: the caller's list.
    unsafe { exec(path, kind == 1, argv, envp) }
}

type SpawnFn = unsafe extern "C" fn(
    *mut c_int,
    *const c_char,
    *const c_void,
    *const c_void,
    *const *const c_char,
    *const *const c_char,
) -> c_int;

unsafe fn spawn(
    pid: *mut c_int,
    path: *const c_char,
    actions: *const c_void,
    attributes: *const c_void,
    argv: *const *const c_char,
    envp: *const *const c_char,
    search: bool,
) -> c_int {
    let real = if search {
        real!("posix_spawnp": SpawnFn)
    } else {
        real!("posix_spawn": SpawnFn)
    };
    let Some(real) = real else {
        return sys::ENOSYS;
    };
    if !state::get().active {
        // SAFETY: the caller's arguments.
        return unsafe { real(pid, path, actions, attributes, argv, envp) };
    }
    launch!(launch);
    let failing = crate::spawn::for_spawn(actions, &mut launch.base);
    if failing != 0 {
        return failing;
    }
    let given = match lpmx_sys::user::path(path) {
        Ok(given) => given,
        Err(e) => return e,
    };
    // SAFETY: the caller's arrays.
    match unsafe { launch.prepare(given, search, argv, envp) } {
        Ok(()) => {
            // SAFETY: the prepared loader invocation.
            let result = unsafe {
                real(
                    pid,
                    launch.exec_path().cast(),
                    actions,
                    attributes,
                    launch.argv.as_ptr(),
                    launch.envp.as_ptr(),
                )
            };
            // The child's `addopen` actions, done by now (glibc's child
            // shares the memory until its exec), may have made a file in
            // the writable layer.
            if !actions.is_null() {
                crate::upper::made(state::get());
            }
            result
        }
        Err(e) => e,
    }
}

export! {
    fn posix_spawn(pid: *mut c_int, path: *const c_char, actions: *const c_void, attributes: *const c_void, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        spawn(pid, path, actions, attributes, argv, envp, false)
    }
    fn posix_spawnp(pid: *mut c_int, path: *const c_char, actions: *const c_void, attributes: *const c_void, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        spawn(pid, path, actions, attributes, argv, envp, true)
    }
}

unsafe extern "C" {
    fn _exit(status: c_int) -> !;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    fn dup2(from: c_int, to: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn fdopen(fd: c_int, mode: *const c_char) -> *mut c_void;
    fn fclose(stream: *mut c_void) -> c_int;
    fn sigaction(signal: c_int, action: *const SigAction, old: *mut SigAction) -> c_int;
    fn sigprocmask(how: c_int, set: *const u64, old: *mut u64) -> c_int;
}

#[repr(C)]
struct SigAction {
    handler: usize,
    mask: [u64; 16],
    flags: c_int,
    restorer: usize,
}

const SIGINT: c_int = 2;
const SIGQUIT: c_int = 3;
const SIGCHLD: c_int = 17;
const SIG_IGN: usize = 1;
const SIG_BLOCK: c_int = 0;
const SIG_SETMASK: c_int = 2;

/// Runs `/bin/sh -c command` of the container in a child, with standard
/// input or output redirected to `redirect` (fd, target) first.
unsafe fn shell_child(
    command: *const c_char,
    redirect: Option<(c_int, c_int)>,
    restore: Option<(&SigAction, &SigAction, u64)>,
) -> ! {
    // SAFETY: in the child, before exec.
    unsafe {
        if let Some((fd, target)) = redirect
            && fd != target
        {
            dup2(fd, target);
            close(fd);
        }
        if let Some((int, quit, mask)) = restore {
            sigaction(SIGINT, int, core::ptr::null_mut());
            sigaction(SIGQUIT, quit, core::ptr::null_mut());
            sigprocmask(SIG_SETMASK, &mask, core::ptr::null_mut());
        }
        let argv = [c"sh".as_ptr(), c"-c".as_ptr(), command, core::ptr::null()];
        exec(c"/bin/sh".as_ptr(), false, argv.as_ptr(), state::environ());
        _exit(127)
    }
}

type SystemFn = unsafe extern "C" fn(*const c_char) -> c_int;

export! {
    fn system(command: *const c_char) -> c_int {
        if !state::get().active {
            return match real!("system": SystemFn) {
                Some(real) => real(command),
                None => -1,
            };
        }
        if command.is_null() {
            return 1;
        }
        let ignore = SigAction { handler: SIG_IGN, mask: [0; 16], flags: 0, restorer: 0 };
        let mut old_int = SigAction { handler: 0, mask: [0; 16], flags: 0, restorer: 0 };
        let mut old_quit = SigAction { handler: 0, mask: [0; 16], flags: 0, restorer: 0 };
        sigaction(SIGINT, &ignore, &mut old_int);
        sigaction(SIGQUIT, &ignore, &mut old_quit);
        let block: u64 = 1 << (SIGCHLD - 1);
        let mut old_mask = 0u64;
        sigprocmask(SIG_BLOCK, &block, &mut old_mask);
        let pid = fork();
        if pid == 0 {
            shell_child(command, None, Some((&old_int, &old_quit, old_mask)));
        }
        let mut status = -1;
        if pid > 0 {
            while waitpid(pid, &mut status, 0) < 0 && sys::errno() == 4 {}
        }
        sigaction(SIGINT, &old_int, core::ptr::null_mut());
        sigaction(SIGQUIT, &old_quit, core::ptr::null_mut());
        sigprocmask(SIG_SETMASK, &old_mask, core::ptr::null_mut());
        status
    }
}

// popen(3)'s streams and their children, for pclose.
const POPEN_SLOTS: usize = 256;
static POPEN_LOCK: crate::lock::SpinLock<()> = crate::lock::SpinLock::new(());
static POPEN: [core::sync::atomic::AtomicUsize; 2 * POPEN_SLOTS] =
    [const { core::sync::atomic::AtomicUsize::new(0) }; 2 * POPEN_SLOTS];

fn with_popen<T>(f: impl FnOnce() -> T) -> T {
    POPEN_LOCK.with(|()| f())
}

type PopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut c_void;
type PcloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;

export! {
    fn popen(command: *const c_char, mode: *const c_char) -> *mut c_void {
        use core::sync::atomic::Ordering;
        if !state::get().active {
            return match real!("popen": PopenFn) {
                Some(real) => real(command, mode),
                None => core::ptr::null_mut(),
            };
        }
        let reading = match cstr(mode).first() {
            Some(b'r') => true,
            Some(b'w') => false,
            _ => {
                set_errno(sys::EINVAL);
                return core::ptr::null_mut();
            }
        };
        let mut fds = [0 as c_int; 2];
        const O_CLOEXEC: c_int = 0o2000000;
        if pipe2(fds.as_mut_ptr(), O_CLOEXEC) < 0 {
            return core::ptr::null_mut();
        }
        let (ours, theirs, target) = if reading { (fds[0], fds[1], 1) } else { (fds[1], fds[0], 0) };
        let pid = fork();
        if pid == 0 {
            // dup2 clears close-on-exec on the copy.
            if theirs == target {
                let _ = sys::fcntl_clear_cloexec(theirs);
            }
            shell_child(command, Some((theirs, target)), None);
        }
        close(theirs);
        if pid < 0 {
            close(ours);
            return core::ptr::null_mut();
        }
        let stream = fdopen(ours, if reading { c"r".as_ptr() } else { c"w".as_ptr() });
        if stream.is_null() {
            close(ours);
            waitpid(pid, core::ptr::null_mut(), 0);
            return stream;
        }
        with_popen(|| {
            for slot in 0..POPEN_SLOTS {
                if POPEN[2 * slot].load(Ordering::Relaxed) == 0 {
                    POPEN[2 * slot].store(stream as usize, Ordering::Relaxed);
                    POPEN[2 * slot + 1].store(pid as usize, Ordering::Relaxed);
                    break;
                }
            }
        });
        stream
    }
    fn pclose(stream: *mut c_void) -> c_int {
        use core::sync::atomic::Ordering;
        let pid = with_popen(|| {
            for slot in 0..POPEN_SLOTS {
                if POPEN[2 * slot].load(Ordering::Relaxed) == stream as usize {
                    POPEN[2 * slot].store(0, Ordering::Relaxed);
                    return Some(POPEN[2 * slot + 1].load(Ordering::Relaxed) as c_int);
                }
            }
            None
        });
        let Some(pid) = pid else {
            return match real!("pclose": PcloseFn) {
                Some(real) => real(stream),
                None => -1,
            };
        };
        fclose(stream);
        let mut status = -1;
        while waitpid(pid, &mut status, 0) < 0 {
            if sys::errno() != 4 {
                return -1;
            }
        }
        status
    }
}

/// The container's environment file, mapped for one exec (no allocation:
/// an exec may run in a `vfork` child).
struct MappedLines {
    bytes: &'static [u8],
}

impl MappedLines {
    fn map(path: &[u8]) -> MappedLines {
        let empty = MappedLines { bytes: &[] };
        let Ok(path) = Buf::from(path) else {
            return empty;
        };
        if path.is_empty() {
            return empty;
        }
        // Usually empty: one stat, then nothing more.
        let mut st = [0u64; 18];
        if sys::fstatat(sys::AT_FDCWD, path.c(), st.as_mut_ptr().cast(), 0)
            .map_or(true, |_| st[6] == 0)
        {
            return empty;
        }
        let Ok(fd) = sys::openat(sys::AT_FDCWD, path.c(), sys::O_CLOEXEC, 0) else {
            return empty;
        };
        let fd = fd as i32;
        let mut st = [0u64; 18];
        let size = sys::fstat(fd, st.as_mut_ptr().cast())
            .map(|_| st[6] as usize)
            .unwrap_or(0);
        let mapped = if size > 0 {
            sys::mmap_read(fd, size).ok()
        } else {
            None
        };
        let _ = sys::close(fd);
        match mapped {
            // SAFETY: a private read-only mapping of size bytes, unmapped on drop.
            Some(addr) => MappedLines {
                bytes: unsafe { core::slice::from_raw_parts(addr as *const u8, size) },
            },
            None => empty,
        }
    }

    /// `(key, whole line)` of each `KEY=VALUE` line, as `EnvFile` reads them.
    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.bytes.split(|&b| b == b'\n').filter_map(|line| {
            let trimmed = line
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .map(|i| &line[i..])?;
            if trimmed.starts_with(b"#") || line.contains(&0) {
                return None;
            }
            let eq = line.iter().position(|&b| b == b'=')?;
            (eq > 0).then(|| (&line[..eq], line))
        })
    }

    fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries().map(|(key, _)| key)
    }
}

impl Drop for MappedLines {
    fn drop(&mut self) {
        if !self.bytes.is_empty() {
            let _ = sys::munmap(self.bytes.as_ptr().cast_mut().cast(), self.bytes.len());
        }
    }
}

type ForkFn = unsafe extern "C" fn() -> c_int;

export! {
    fn fork() -> c_int {
        crate::upper::warm(state::get());
        match real!("fork": ForkFn) {
            Some(real) => real(),
            None => sys::c_ret(Err(sys::ENOSYS)),
        }
    }
}
