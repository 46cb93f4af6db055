//! Directory listings that merge the layers: each name once, the top-most
//! layer's entry winning, names hidden by whiteouts left out (the index
//! already leaves them out). A `DIR` from libunion holds the whole merged
//! listing, read when it is opened; every libc function that takes a
//! `DIR` is libunion's too.

use core::ffi::{c_char, c_int, c_void};

use crate::buf::{Buf, cstr};
use crate::export::export;
use crate::fs::stat_at;
use crate::index::{Index, KIND_DIR};
use crate::paths::translate;
use crate::resolve::{Place, resolve};
use crate::state::{self, State};
use crate::sys::{self, c_ret, real, set_errno};

const MAGIC: u64 = 0x4c50_4d58_4449_5221; // "LPMXDIR!"
/// The size of glibc's `struct dirent` on x86_64.
const DIRENT_SIZE: usize = 280;

#[repr(C)]
pub struct Dir {
    magic: u64,
    fd: i32,
    pos: usize,
    len: usize,
    cap: usize,
    /// linux_dirent64 records, the layout of glibc's `struct dirent64`.
    records: *mut u8,
    /// Where the upper layer's records end (names that hide lower ones).
    upper_end: usize,
}

impl Dir {
    /// A listing with no records yet, of descriptor `fd`.
    const fn empty(fd: i32) -> Dir {
        Dir {
            magic: MAGIC,
            fd,
            pos: 0,
            len: 0,
            cap: 0,
            records: core::ptr::null_mut(),
            upper_end: 0,
        }
    }

    fn push(&mut self, ino: u64, kind: u8, name: &[u8]) -> Result<(), i32> {
        let size = (19 + name.len() + 1).next_multiple_of(8);
        // Room for a reader that copies a whole `struct dirent`.
        let needed = self.len + size + DIRENT_SIZE;
        if needed > self.cap {
            let cap = needed.max(self.cap * 2).max(4096);
            // SAFETY: records is null or a malloc'd block.
            let grown = unsafe { sys::realloc(self.records.cast(), cap) }.cast::<u8>();
            if grown.is_null() {
                return Err(sys::ENOMEM);
            }
            self.records = grown;
            self.cap = cap;
        }
        // SAFETY: the block holds len + size bytes and more.
        unsafe {
            let at = self.records.add(self.len);
            core::ptr::write_bytes(at, 0, size);
            at.cast::<u64>().write_unaligned(ino);
            at.add(8)
                .cast::<i64>()
                .write_unaligned((self.len + size) as i64);
            at.add(16).cast::<u16>().write_unaligned(size as u16);
            *at.add(18) = kind;
            core::ptr::copy_nonoverlapping(name.as_ptr(), at.add(19), name.len());
        }
        self.len += size;
        Ok(())
    }

    fn names(&self, from: usize, to: usize) -> impl Iterator<Item = &[u8]> {
        let mut at = from;
        core::iter::from_fn(move || {
            if at >= to {
                return None;
            }
            // SAFETY: records holds whole records up to len.
            unsafe {
                let record = self.records.add(at);
                at += usize::from(record.add(16).cast::<u16>().read_unaligned());
                Some(cstr(record.add(19).cast()))
            }
        })
    }

    /// Appends every entry of directory `fd` that `keep` accepts.
    fn read_all(&mut self, fd: i32, mut keep: impl FnMut(&Dir, &[u8]) -> bool) -> Result<(), i32> {
        let mut chunk = [0u64; 4096];
        loop {
            let n = sys::getdents64(fd, chunk.as_mut_ptr().cast(), 8 * chunk.len())?;
            if n == 0 {
                return Ok(());
            }
            let bytes = chunk.as_ptr().cast::<u8>();
            let mut at = 0;
            while at < n {
                // SAFETY: the kernel wrote n bytes of whole records.
                let (ino, reclen, kind, name) = unsafe {
                    let record = bytes.add(at);
                    (
                        record.cast::<u64>().read_unaligned(),
                        usize::from(record.add(16).cast::<u16>().read_unaligned()),
                        *record.add(18),
                        cstr(record.add(19).cast()),
                    )
                };
                at += reclen.max(1);
                if keep(self, name) {
                    self.push(ino, kind, name)?;
                }
            }
        }
    }
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

fn open_dir(path: &Buf) -> Result<i32, i32> {
    crate::host::open(path, sys::O_DIRECTORY | sys::O_CLOEXEC, 0).map(|fd| fd as i32)
}

/// The `d_type` of an index kind; devices, fifos and sockets of the image
/// are plain files in its layers, so readers are sent to stat.
fn d_type(kind: u8) -> u8 {
    match kind {
        1 => 4,  // DT_DIR
        2 => 8,  // DT_REG
        3 => 10, // DT_LNK
        _ => 0,  // DT_UNKNOWN
    }
}

/// Fills `dir` with the merged listing of canonical container dir `canon`:
/// the writable layer's entries as they are on disk, then the image's from
/// the index (names, kinds and inodes), without a system call whatever the
/// number of layers, then the binds there that neither has.
/// `upper_lacks`: the walk that found `canon` found it only in the image
/// (`Place::Lower`), so the writable layer has no such directory to read.
fn merge(
    dir: &mut Dir,
    state: &State,
    index: Index,
    canon: &[u8],
    upper_lacks: bool,
) -> Result<(), i32> {
    merge_layers(dir, state, index, canon, upper_lacks)?;
    add_bind_points(dir, state, if canon == b"/" { b"" } else { canon })
}

/// The writable layer's and the image's part of [`merge`].
fn merge_layers(
    dir: &mut Dir,
    state: &State,
    index: Index,
    canon: &[u8],
    upper_lacks: bool,
) -> Result<(), i32> {
    let key = if canon == b"/" { &b""[..] } else { &canon[1..] };
    let inside = if canon == b"/" { &b""[..] } else { canon };
    let mut have_dots = false;
    let first = key.split(|&b| b == b'/').next().unwrap_or(b"");
    if key.is_empty() || !upper_lacks && crate::upper::may_hold(state, first) {
        let mut path = Buf::from(state.upper)?;
        path.push(inside)?;
        if let Ok(fd) = open_dir(&path) {
            // A copy into the writable layer not yet whole (or left by a
            // killed process) is not a file of the container.
            let read = dir.read_all(fd, |_, name| !lpmx_union::upper::is_copy_up_temp(name));
            let _ = sys::close(fd);
            read?;
            have_dots = true;
        }
    }
    dir.upper_end = dir.len;
    let Some(top) = index.position(key) else {
        return Ok(());
    };
    if crate::upper::hides_below(state, key) {
        // Deleted and made again, or below a deleted directory: the
        // writable layer's entries only.
        if !have_dots {
            dir.push(index.ino(top), 4, b".")?;
            dir.push(index.ino(top), 4, b"..")?;
        }
        return Ok(());
    }
    if index.entry(top).kind as u8 != KIND_DIR {
        return Ok(());
    }
    if !have_dots {
        let parent = key
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(&b""[..], |i| &key[..i]);
        let parent_ino = index
            .position(parent)
            .map_or(index.ino(top), |i| index.ino(i));
        dir.push(index.ino(top), 4, b".")?;
        dir.push(parent_ino, 4, b"..")?;
    }
    let upper_end = dir.upper_end;
    let mut result = Ok(());
    let mut child = Buf::from(key)?;
    if !key.is_empty() {
        child.push(b"/")?;
    }
    let base = child.len();
    index.children(key, |name, entry, i| {
        if result.is_err() || (upper_end > 0 && dir.names(0, upper_end).any(|n| n == name)) {
            return;
        }
        child.truncate(base);
        if child.push(name).is_err() || crate::upper::hides(state, child.as_bytes()) {
            return;
        }
        result = dir.push(index.ino(i), d_type(entry.kind as u8), name);
    });
    result
}

/// Adds the binds below `inside` (a container directory, "" for the root)
/// that neither the writable layer nor the image has: a mount point shows
/// in its directory's listing, as `stat` finds it (a bind's own file, or
/// the empty directory leading to a deeper one).
fn add_bind_points(dir: &mut Dir, state: &State, inside: &[u8]) -> Result<(), i32> {
    for bind in &state.binds[..state.bind_count] {
        let Some(rest) = bind
            .container
            .strip_prefix(inside)
            .and_then(|rest| rest.strip_prefix(b"/"))
        else {
            continue;
        };
        let (name, deeper) = match rest.iter().position(|&b| b == b'/') {
            Some(slash) => (&rest[..slash], true),
            None => (rest, false),
        };
        if name.is_empty() || is_dot(name) || dir.names(0, dir.len).any(|n| n == name) {
            continue;
        }
        let mut host = Buf::new();
        if deeper {
            state.way_to_bind(&mut host)?;
        } else {
            host.set(bind.host)?;
        }
        let mut stat = [0u64; 18];
        // The host path followed, as a mount's source is; one that is gone
        // is not shown, as stat finds nothing there.
        if crate::host::fstatat(&host, stat.as_mut_ptr().cast(), 0).is_ok() {
            let kind = crate::resolve::kind_of((stat[3] & 0xffff_ffff) as u32);
            dir.push(stat[1], d_type(kind), name)?;
        }
    }
    Ok(())
}

/// A new `DIR` for the directory open as `fd`, at canonical `canon`
/// (None: outside the container, read as it is).
fn new_dir(fd: i32, canon: Option<&[u8]>, id: Option<(u64, u64)>, upper_lacks: bool) -> *mut Dir {
    // SAFETY: a plain allocation, initialised below.
    let dir = unsafe { sys::malloc(core::mem::size_of::<Dir>()) }.cast::<Dir>();
    if dir.is_null() {
        let _ = sys::close(fd);
        set_errno(sys::ENOMEM);
        return dir;
    }
    // SAFETY: dir is a fresh allocation of a Dir.
    unsafe {
        dir.write(Dir::empty(fd));
    }
    // SAFETY: just written.
    let d = unsafe { &mut *dir };
    let state = state::get();
    let filled = match (canon, state.index) {
        (Some(canon), Some(index)) if state.active => {
            match id {
                Some(id) => crate::fdpaths::remember_fd_as(fd, id, canon),
                None => crate::fdpaths::remember_fd(fd, canon),
            }
            merge(d, state, index, canon, upper_lacks)
        }
        _ => d.read_all(fd, |_, _| true),
    };
    if let Err(e) = filled {
        // SAFETY: ours.
        unsafe { close_dir(dir) };
        set_errno(e);
        return core::ptr::null_mut();
    }
    dir
}

/// # Safety
/// `dir` was returned by `new_dir`.
unsafe fn close_dir(dir: *mut Dir) -> c_int {
    // SAFETY: the caller's promise.
    let d = unsafe { &mut *dir };
    crate::fdpaths::forget_fd(d.fd);
    let closed = sys::close(d.fd);
    d.magic = 0;
    // SAFETY: malloc'd blocks.
    unsafe {
        sys::free(d.records.cast());
        sys::free(dir.cast());
    }
    c_ret(closed)
}

fn checked<'a>(dir: *mut c_void) -> Option<&'a mut Dir> {
    // SAFETY: a DIR from opendir; libunion's carry the magic.
    let d = unsafe { dir.cast::<Dir>().as_mut()? };
    (d.magic == MAGIC).then_some(d)
}

/// # Safety
/// `path` is a C string.
pub unsafe fn open_dir_at(dirfd: i32, path: *const c_char) -> *mut c_void {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    // SAFETY: as the caller's.
    match unsafe { translate(dirfd, path, true, &mut canon, &mut host) } {
        Ok(None) => match sys::openat(dirfd, path.cast(), sys::O_DIRECTORY | sys::O_CLOEXEC, 0) {
            Ok(fd) => new_dir(fd as i32, None, None, false).cast(),
            Err(e) => {
                set_errno(e);
                core::ptr::null_mut()
            }
        },
        Ok(Some(found)) => {
            if found.place == Place::Missing {
                set_errno(sys::ENOENT);
                return core::ptr::null_mut();
            }
            if found.kind != KIND_DIR && found.kind != 0 {
                set_errno(sys::ENOTDIR);
                return core::ptr::null_mut();
            }
            if crate::perm::checking()
                && let Err(e) = crate::paths::meta_of(&found, &canon, &host)
                    .and_then(|meta| crate::perm::check(&meta, crate::perm::MAY_READ))
            {
                set_errno(e);
                return core::ptr::null_mut();
            }
            match open_dir(&host) {
                Ok(fd) if found.place == Place::Bind => {
                    let dir = new_dir(fd, None, None, false);
                    let state = state::get();
                    if !dir.is_null()
                        && crate::resolve::on_way_to_bind(state, &found, canon.as_bytes())
                    {
                        // The empty directory lists the way on.
                        // SAFETY: a fresh Dir of new_dir's.
                        let filled = add_bind_points(unsafe { &mut *dir }, state, canon.as_bytes());
                        if let Err(e) = filled {
                            // SAFETY: ours.
                            unsafe { close_dir(dir) };
                            set_errno(e);
                            return core::ptr::null_mut();
                        }
                    }
                    dir.cast()
                }
                Ok(fd) => {
                    let id = crate::resolve::identity_of(state::get(), &found, canon.as_bytes());
                    let upper_lacks = matches!(found.place, Place::Lower(_));
                    new_dir(fd, Some(canon.as_bytes()), id, upper_lacks).cast()
                }
                Err(e) => {
                    set_errno(e);
                    core::ptr::null_mut()
                }
            }
        }
        Err(e) => {
            set_errno(e);
            core::ptr::null_mut()
        }
    }
}

fn read_entry(dir: *mut c_void) -> *mut c_void {
    let Some(d) = checked(dir) else {
        set_errno(sys::EBADF);
        return core::ptr::null_mut();
    };
    if d.pos >= d.len {
        return core::ptr::null_mut();
    }
    // SAFETY: pos is at a whole record.
    unsafe {
        let record = d.records.add(d.pos);
        d.pos += usize::from(record.add(16).cast::<u16>().read_unaligned());
        record.cast()
    }
}

fn read_entry_r(dir: *mut c_void, entry: *mut c_void, result: *mut *mut c_void) -> c_int {
    let record = read_entry(dir);
    // SAFETY: the caller passes room for a struct dirent and a result pointer.
    unsafe {
        if record.is_null() {
            *result = core::ptr::null_mut();
        } else {
            let size = usize::from(record.cast::<u8>().add(16).cast::<u16>().read_unaligned());
            core::ptr::copy_nonoverlapping(
                record.cast::<u8>(),
                entry.cast::<u8>(),
                size.min(DIRENT_SIZE),
            );
            *result = entry;
        }
    }
    0
}

export! {
    fn opendir(path: *const c_char) -> *mut c_void { open_dir_at(sys::AT_FDCWD, path) }
    #[safe]
    fn fdopendir(fd: c_int) -> *mut c_void {
        let mut st = [0u64; 18];
        if let Err(e) = sys::fstat(fd, st.as_mut_ptr().cast()) {
            set_errno(e);
            return core::ptr::null_mut();
        }
        if (st[3] as u32) & sys::S_IFMT != sys::S_IFDIR {
            set_errno(sys::ENOTDIR);
            return core::ptr::null_mut();
        }
        let id = Some((st[0], st[1]));
        let state = state::get();
        let mut canon = Buf::new();
        if state.active && crate::fdpaths::fd_path_of(state, fd, id, &mut canon) {
            let mut resolved = Buf::new();
            let mut host = Buf::new();
            if let Ok(found) = resolve(state, canon.as_bytes(), true, &mut resolved, &mut host)
                && found.place != Place::Bind
                && found.place != Place::Missing
            {
                let upper_lacks = matches!(found.place, Place::Lower(_));
                return new_dir(fd, Some(resolved.as_bytes()), id, upper_lacks).cast();
            }
        }
        new_dir(fd, None, None, false).cast()
    }
    fn closedir(dir: *mut c_void) -> c_int {
        match checked(dir) {
            Some(_) => close_dir(dir.cast()),
            None => c_ret(Err(sys::EBADF)),
        }
    }
    #[safe]
    fn readdir(dir: *mut c_void) -> *mut c_void { read_entry(dir) }
    #[safe]
    fn readdir64(dir: *mut c_void) -> *mut c_void { read_entry(dir) }
    #[safe]
    fn readdir_r(dir: *mut c_void, entry: *mut c_void, result: *mut *mut c_void) -> c_int {
        read_entry_r(dir, entry, result)
    }
    #[safe]
    fn readdir64_r(dir: *mut c_void, entry: *mut c_void, result: *mut *mut c_void) -> c_int {
        read_entry_r(dir, entry, result)
    }
    #[safe]
    fn dirfd(dir: *mut c_void) -> c_int {
        match checked(dir) {
            Some(d) => d.fd,
            None => c_ret(Err(sys::EINVAL)),
        }
    }
    #[safe]
    fn rewinddir(dir: *mut c_void) -> () {
        if let Some(d) = checked(dir) {
            d.pos = 0;
        }
    }
    #[safe]
    fn telldir(dir: *mut c_void) -> i64 {
        checked(dir).map_or(-1, |d| d.pos as i64)
    }
    #[safe]
    fn seekdir(dir: *mut c_void, pos: i64) -> () {
        if let Some(d) = checked(dir) {
            d.pos = (pos.max(0) as usize).min(d.len);
        }
    }
}

type Filter = Option<unsafe extern "C" fn(*const c_void) -> c_int>;
type Compare = Option<unsafe extern "C" fn(*const c_void, *const c_void) -> c_int>;

/// scandir(3) over libunion's merged listings.
unsafe fn scan(
    dir: *mut c_void,
    list: *mut *mut *mut c_void,
    filter: Filter,
    compare: Compare,
) -> c_int {
    if dir.is_null() {
        return -1;
    }
    let mut names: *mut *mut c_void = core::ptr::null_mut();
    let (mut count, mut cap) = (0usize, 0usize);
    loop {
        let entry = read_entry(dir);
        if entry.is_null() {
            break;
        }
        // SAFETY: the filter is the caller's function of a dirent.
        if let Some(filter) = filter
            && unsafe { filter(entry) } == 0
        {
            continue;
        }
        if count == cap {
            cap = (cap * 2).max(16);
            // SAFETY: names is null or malloc'd.
            let grown = unsafe { sys::realloc(names.cast(), cap * 8) }.cast::<*mut c_void>();
            if grown.is_null() {
                set_errno(sys::ENOMEM);
                return -1;
            }
            names = grown;
        }
        // SAFETY: a copy of the record, as large as a struct dirent.
        unsafe {
            let copy = sys::malloc(DIRENT_SIZE);
            if copy.is_null() {
                set_errno(sys::ENOMEM);
                return -1;
            }
            let size = usize::from(entry.cast::<u8>().add(16).cast::<u16>().read_unaligned());
            core::ptr::copy_nonoverlapping(
                entry.cast::<u8>(),
                copy.cast::<u8>(),
                size.min(DIRENT_SIZE),
            );
            *names.add(count) = copy;
        }
        count += 1;
    }
    // SAFETY: our DIR.
    unsafe { close_dir(dir.cast()) };
    if let Some(compare) = compare
        && count > 1
    {
        // SAFETY: an array of count pointers, compared by the caller's function.
        unsafe { sys::qsort(names.cast(), count, 8, compare) };
    }
    // SAFETY: the caller's out pointer.
    unsafe { *list = names };
    count as c_int
}

export! {
    fn scandir(path: *const c_char, list: *mut *mut *mut c_void, filter: Filter, compare: Compare) -> c_int {
        scan(open_dir_at(sys::AT_FDCWD, path), list, filter, compare)
    }
    fn scandir64(path: *const c_char, list: *mut *mut *mut c_void, filter: Filter, compare: Compare) -> c_int {
        scan(open_dir_at(sys::AT_FDCWD, path), list, filter, compare)
    }
    fn scandirat(dirfd: c_int, path: *const c_char, list: *mut *mut *mut c_void, filter: Filter, compare: Compare) -> c_int {
        scan(open_dir_at(dirfd, path), list, filter, compare)
    }
    fn scandirat64(dirfd: c_int, path: *const c_char, list: *mut *mut *mut c_void, filter: Filter, compare: Compare) -> c_int {
        scan(open_dir_at(dirfd, path), list, filter, compare)
    }
}

// glob(3): glibc's walks directories with its internal functions unless
// given its own through GLOB_ALTDIRFUNC; libunion passes its own.
const GLOB_ALTDIRFUNC: c_int = 1 << 9;

#[repr(C)]
struct Glob {
    pathc: usize,
    pathv: *mut *mut c_char,
    offs: usize,
    flags: c_int,
    closedir: unsafe extern "C" fn(*mut c_void) -> c_int,
    readdir: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    opendir: unsafe extern "C" fn(*const c_char) -> *mut c_void,
    lstat: unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int,
    stat: unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int,
}

type GlobFn = unsafe extern "C" fn(*const c_char, c_int, *mut c_void, *mut Glob) -> c_int;

unsafe fn glob_with(
    real: Option<GlobFn>,
    pattern: *const c_char,
    flags: c_int,
    errfunc: *mut c_void,
    glob: *mut Glob,
) -> c_int {
    let Some(real) = real else {
        return 1; // GLOB_NOSPACE
    };
    if flags & GLOB_ALTDIRFUNC != 0 || !state::get().active {
        // SAFETY: the caller's arguments.
        return unsafe { real(pattern, flags, errfunc, glob) };
    }
    // SAFETY: the caller's glob_t.
    unsafe {
        (*glob).closedir = closedir;
        (*glob).readdir = readdir;
        (*glob).opendir = opendir;
        (*glob).lstat = lstat_for_glob;
        (*glob).stat = stat_for_glob;
        real(pattern, flags | GLOB_ALTDIRFUNC, errfunc, glob)
    }
}

unsafe extern "C" fn stat_for_glob(path: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: glob passes a path and a struct stat.
    unsafe { stat_at(sys::AT_FDCWD, path, buf, 0) }
}

unsafe extern "C" fn lstat_for_glob(path: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: as above.
    unsafe { stat_at(sys::AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW) }
}

export! {
    fn glob(pattern: *const c_char, flags: c_int, errfunc: *mut c_void, pglob: *mut c_void) -> c_int {
        glob_with(real!("glob": GlobFn), pattern, flags, errfunc, pglob.cast())
    }
    fn glob64(pattern: *const c_char, flags: c_int, errfunc: *mut c_void, pglob: *mut c_void) -> c_int {
        glob_with(real!("glob64": GlobFn), pattern, flags, errfunc, pglob.cast())
    }
}

// nftw(3) and ftw(3), walked with libunion's own directory functions.
const FTW_F: c_int = 0;
const FTW_D: c_int = 1;
const FTW_DNR: c_int = 2;
const FTW_NS: c_int = 3;
const FTW_SL: c_int = 4;
const FTW_DP: c_int = 5;
const FTW_SLN: c_int = 6;
const FTW_PHYS: c_int = 1;
const FTW_DEPTH: c_int = 8;
const FTW_ACTIONRETVAL: c_int = 16;
const FTW_SKIP_SUBTREE: c_int = 2;
const FTW_SKIP_SIBLINGS: c_int = 3;

#[repr(C)]
pub struct Ftw {
    pub base: c_int,
    pub level: c_int,
}

type NftwFn = unsafe extern "C" fn(*const c_char, *const c_void, c_int, *mut Ftw) -> c_int;
type FtwFn = unsafe extern "C" fn(*const c_char, *const c_void, c_int) -> c_int;

#[derive(Clone, Copy)]
enum Visit {
    Nftw(NftwFn),
    Ftw(FtwFn),
}

struct Walk {
    visit: Visit,
    flags: c_int,
}

impl Walk {
    /// Visits `path` (a C string in the buffer); its name starts at `base`.
    fn visit(&self, path: &mut Buf, base: usize, level: c_int) -> c_int {
        let mut st = [0u64; 18];
        let stat_buf = st.as_mut_ptr().cast();
        let physical = self.flags & FTW_PHYS != 0;
        let cpath = path.c().cast::<c_char>();
        // SAFETY: a C path and a struct stat.
        let stat_ok = unsafe {
            stat_at(
                sys::AT_FDCWD,
                cpath,
                stat_buf,
                if physical {
                    sys::AT_SYMLINK_NOFOLLOW
                } else {
                    0
                },
            ) == 0
        };
        let mode = (st[3] & 0xffff_ffff) as u32 & sys::S_IFMT;
        let kind = if !stat_ok {
            // SAFETY: as above.
            let dangling = !physical
                && unsafe {
                    stat_at(sys::AT_FDCWD, cpath, stat_buf, sys::AT_SYMLINK_NOFOLLOW) == 0
                };
            if dangling { FTW_SLN } else { FTW_NS }
        } else if mode == sys::S_IFLNK {
            FTW_SL
        } else if mode == sys::S_IFDIR {
            FTW_D
        } else {
            FTW_F
        };
        if kind != FTW_D {
            return self.call(path, stat_buf, kind, base, level);
        }
        // SAFETY: a C path.
        let dir = unsafe { open_dir_at(sys::AT_FDCWD, cpath) };
        if dir.is_null() {
            return self.call(path, stat_buf, FTW_DNR, base, level);
        }
        if self.flags & FTW_DEPTH == 0 {
            let result = self.call(path, stat_buf, FTW_D, base, level);
            if result != 0 {
                // SAFETY: ours.
                unsafe { close_dir(dir.cast()) };
                return if self.flags & FTW_ACTIONRETVAL != 0 && result == FTW_SKIP_SUBTREE {
                    0
                } else {
                    result
                };
            }
        }
        let length = path.len();
        let mut result = 0;
        loop {
            let entry = read_entry(dir);
            if entry.is_null() {
                break;
            }
            // SAFETY: a record's name.
            let name = unsafe { cstr(entry.cast::<u8>().add(19).cast()) };
            if is_dot(name) {
                continue;
            }
            path.truncate(length);
            if (length == 0 || path.as_bytes()[length - 1] != b'/') && path.push(b"/").is_err() {
                continue;
            }
            let child_base = path.len();
            if path.push(name).is_err() {
                continue;
            }
            result = self.visit(path, child_base, level + 1);
            if result != 0 {
                break;
            }
        }
        // SAFETY: ours.
        unsafe { close_dir(dir.cast()) };
        path.truncate(length);
        if self.flags & FTW_ACTIONRETVAL != 0 && result == FTW_SKIP_SIBLINGS {
            result = 0;
        }
        if result == 0 && self.flags & FTW_DEPTH != 0 {
            result = self.call(path, stat_buf, FTW_DP, base, level);
        }
        result
    }

    fn call(&self, path: &Buf, st: *mut c_void, kind: c_int, base: usize, level: c_int) -> c_int {
        let mut ftw = Ftw {
            base: base as c_int,
            level,
        };
        // SAFETY: the caller's callback, with a C path and a struct stat.
        unsafe {
            match self.visit {
                Visit::Nftw(f) => f(path.c().cast(), st, kind, &mut ftw),
                Visit::Ftw(f) => f(
                    path.c().cast(),
                    st,
                    if kind == FTW_DP { FTW_D } else { kind },
                ),
            }
        }
    }
}

fn walk(start: *const c_char, visit: Visit, flags: c_int) -> c_int {
    // SAFETY: a C string from the caller.
    let start = unsafe { cstr(start) };
    let Ok(mut path) = Buf::from(start) else {
        return c_ret(Err(sys::ENAMETOOLONG));
    };
    let base = start.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let base = if base == start.len() { 0 } else { base };
    Walk { visit, flags }.visit(&mut path, base, 0)
}

export! {
    #[safe]
    fn nftw(dir: *const c_char, f: NftwFn, _fds: c_int, flags: c_int) -> c_int { walk(dir, Visit::Nftw(f), flags) }
    #[safe]
    fn nftw64(dir: *const c_char, f: NftwFn, _fds: c_int, flags: c_int) -> c_int { walk(dir, Visit::Nftw(f), flags) }
    #[safe]
    fn ftw(dir: *const c_char, f: FtwFn, _fds: c_int) -> c_int { walk(dir, Visit::Ftw(f), 0) }
    #[safe]
    fn ftw64(dir: *const c_char, f: FtwFn, _fds: c_int) -> c_int { walk(dir, Visit::Ftw(f), 0) }
}

/// The merged listings `getdents64` serves, each kept from the call at
/// offset 0 (an open, a rewind) until the next such call: POSIX leaves it
/// open whether a name made or removed since the last rewind is listed, so
/// one merge per pass over a directory is enough.
struct Listing {
    /// The descriptor plus one, 0 for an empty slot; the directory it
    /// was open on.
    fd_plus_one: i32,
    dev: u64,
    ino: u64,
    records: *mut u8,
    len: usize,
}

const LISTINGS: usize = 16;

static LISTINGS_CACHE: crate::lock::SpinLock<[Listing; LISTINGS]> = crate::lock::SpinLock::new(
    [const {
        Listing {
            fd_plus_one: 0,
            dev: 0,
            ino: 0,
            records: core::ptr::null_mut(),
            len: 0,
        }
    }; LISTINGS],
);

/// Copies the whole records of `records[..len]` from byte offset
/// `position` (the first record at or after it) into `buf` of `size`:
/// the offset reached and the bytes copied.
fn copy_records(
    records: *const u8,
    len: usize,
    position: usize,
    buf: *mut u8,
    size: usize,
) -> (usize, usize) {
    let record_len = |at: usize| {
        // SAFETY: at is a whole record below len.
        usize::from(unsafe { records.add(at + 16).cast::<u16>().read_unaligned() })
    };
    let mut at = 0;
    while at < len && at < position {
        at += record_len(at);
    }
    let mut written = 0;
    while at < len {
        let length = record_len(at);
        if written + length > size {
            break;
        }
        // SAFETY: a whole record, into the caller's buffer of `size`.
        unsafe { core::ptr::copy_nonoverlapping(records.add(at), buf.add(written), length) };
        written += length;
        at += length;
    }
    (at, written)
}

/// getdents64(2) on a directory of the container (a program's own call,
/// caught by the trap): the merged listing, as `linux_dirent64` records.
/// The descriptor's offset is the byte offset in that listing, so a
/// rewind (lseek to 0), a seek to a `d_off`, and a descriptor shared by
/// `dup` or `fork` behave as the kernel's. A descriptor outside the layers
/// (a bind, the host) is read as it is. The bytes written, or -errno.
pub fn getdents64(fd: i32, buf: *mut u8, size: usize) -> isize {
    let raw = || match sys::getdents64(fd, buf, size) {
        Ok(n) => n as isize,
        Err(e) => -(e as isize),
    };
    let state = state::get();
    let Some(index) = state.index.filter(|_| state.active) else {
        return raw();
    };
    let mut st = [0u64; 18];
    if sys::fstat(fd, st.as_mut_ptr().cast()).is_err() {
        return raw();
    }
    let (dev, ino) = (st[0], st[1]);
    let position = match sys::seek(fd, 0, 1) {
        Ok(position) => position,
        Err(e) => return -(e as isize),
    };
    if lpmx_sys::user::check(buf.cast_const(), size).is_err() {
        return -(sys::EFAULT as isize);
    }
    let slot = fd as usize % LISTINGS;
    let finish = |(at, written): (usize, usize), len: usize| -> isize {
        if written == 0 && at < len {
            return -(sys::EINVAL as isize);
        }
        if at == position as usize {
            // The end, read again: the offset stays where it is.
            return written as isize;
        }
        match sys::seek(fd, at as u64, 0) {
            Ok(_) => written as isize,
            Err(e) => -(e as isize),
        }
    };
    if position > 0 {
        // Later in the same pass: from the listing kept at its start.
        let kept = LISTINGS_CACHE.with(|listings| {
            let l = &listings[slot];
            (l.fd_plus_one == fd + 1 && l.dev == dev && l.ino == ino)
                .then(|| (copy_records(l.records, l.len, position, buf, size), l.len))
        });
        if let Some((copied, len)) = kept {
            return finish(copied, len);
        }
    }
    let mut canon = Buf::new();
    if !crate::fdpaths::fd_path_of(state, fd, Some((dev, ino)), &mut canon) {
        return raw();
    }
    let (mut dir_canon, mut host) = (Buf::new(), Buf::new());
    // The empty directory on the way to a deeper bind lists the way on.
    let (way_to_bind, upper_lacks) =
        match resolve(state, canon.as_bytes(), true, &mut dir_canon, &mut host) {
            Ok(found)
                if matches!(found.place, Place::Upper | Place::Lower(_))
                    && (found.kind == KIND_DIR || found.kind == 0) =>
            {
                (false, matches!(found.place, Place::Lower(_)))
            }
            Ok(found) if crate::resolve::on_way_to_bind(state, &found, dir_canon.as_bytes()) => {
                (true, false)
            }
            _ => return raw(),
        };
    let mut dir = Dir::empty(-1);
    let filled = if way_to_bind {
        dir.push(ino, 4, b".")
            .and_then(|()| dir.push(ino, 4, b".."))
            .and_then(|()| add_bind_points(&mut dir, state, dir_canon.as_bytes()))
    } else {
        merge(&mut dir, state, index, dir_canon.as_bytes(), upper_lacks)
    };
    if let Err(e) = filled {
        // SAFETY: malloc'd by merge, or null.
        unsafe { sys::free(dir.records.cast()) };
        return -(e as isize);
    }
    let copied = copy_records(dir.records, dir.len, position as usize, buf, size);
    let old = LISTINGS_CACHE.with(|listings| {
        let l = &mut listings[slot];
        let old = l.records;
        *l = Listing {
            fd_plus_one: fd + 1,
            dev,
            ino,
            records: dir.records,
            len: dir.len,
        };
        old
    });
    // SAFETY: the replaced listing's block, malloc'd, no longer reachable.
    unsafe { sys::free(old.cast()) };
    finish(copied, dir.len)
}
