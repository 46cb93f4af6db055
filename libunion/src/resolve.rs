//! Container paths to host paths: the union core's walk
//! (`lpmx_union::resolve`, the rules every consumer shares) over this
//! process's layers: the writable layer first, then the index of the lower
//! layers; binds reached by their container path.
//!
//! What the layers answer here: a directory of the writable layer the
//! caller may not search is `EACCES` as the kernel reports it (under fake
//! root, by `perm`'s rules). Below a bind the host's files are looked up
//! component by component too, so a symlink there that points into the
//! container (an absolute target means the container's `/`) stays inside;
//! `/proc` is the exception, its links being the kernel's own.

pub use lpmx_union::resolve::Last;
use lpmx_union::resolve::{self as walk, Layers};

use crate::buf::{Buf, is_under};
use crate::index::{Index, KIND_DIR, KIND_SYMLINK};
use crate::perm::{self, MAY_EXEC};
use crate::state::{self, State};
use crate::sys;
use crate::upper::KnownDir;

pub use crate::place::Place;

#[derive(Clone, Copy)]
pub struct Found {
    pub place: Place,
    /// Index kind (1 dir, 2 file, 3 symlink, ...); 0 when missing.
    pub kind: u8,
    /// The `lstat` of the file when finding it took one (the writable
    /// layer's or a bind's): `stat` needs no second call then.
    pub stat: Option<[u64; 18]>,
    pub last: Last,
    /// The path as given ended in `/`.
    pub slash: bool,
    /// Below a bind (Place::Bind, or Missing there): a host file.
    pub under_bind: bool,
    /// The directory holding the final component, as the walk found it
    /// (None for the root).
    pub parent: Option<Parent>,
    /// Where the index has it (Place::Lower).
    pub position: Option<usize>,
}

/// Where the directory holding the final component is (its stat is
/// taken again when needed: only fake root's checks need it).
#[derive(Clone, Copy)]
pub struct Parent {
    pub place: Place,
}

impl Found {
    fn as_parent(&self) -> Parent {
        Parent { place: self.place }
    }
}

/// The device and inode of the host file `found` names, when known
/// without a system call: the writable layer's and a bind's from the
/// walk's lstat, a layer's from the index (and the layer's device, taken
/// once per process).
pub fn identity_of(state: &State, found: &Found, canon: &[u8]) -> Option<(u64, u64)> {
    match found.place {
        Place::Upper | Place::Bind => found.stat.map(|st| (st[0], st[1])),
        Place::Lower(layer) => {
            let index = state.index?;
            let i = crate::index::position(index, canon.get(1..).unwrap_or(b""))?;
            Some((layer_dev(index, layer)?, index.ino(i)))
        }
        Place::Missing => None,
    }
}

/// The `lstat` of the layer's file `found` names, from the index (no
/// system call: layers never change), where the index recorded it.
pub fn lower_stat(state: &State, found: &Found) -> Option<[u64; 18]> {
    let Place::Lower(layer) = found.place else {
        return None;
    };
    let index = state.index?;
    let entry = index.entry(found.position?);
    let disk = entry.disk;
    if !disk.is_recorded() {
        return None;
    }
    let mut st = [0u64; 18];
    st[0] = layer_dev(index, layer)?;
    st[1] = entry.ino;
    st[2] = u64::from(disk.nlink);
    st[3] = u64::from(disk.mode) | u64::from(disk.uid) << 32;
    st[4] = u64::from(disk.gid);
    st[6] = disk.size;
    st[7] = u64::from(disk.blksize);
    st[8] = disk.blocks;
    for (i, (seconds, nanoseconds)) in [disk.atime, disk.mtime, disk.ctime].into_iter().enumerate()
    {
        st[9 + 2 * i] = seconds as u64;
        st[10 + 2 * i] = u64::from(nanoseconds);
    }
    Some(st)
}

/// `statx` of the layer's file `found` names, from the index as
/// [`lower_stat`], into the caller's `struct statx`, where the caller asks
/// for no more than the basic fields (GNU ls, find and stat do). What the
/// kernel tells beyond them, the mount's id and the attributes it
/// supports, is the layer root's (one real statx per layer); a birth time
/// the index does not have is not claimed. False: ask the kernel.
pub fn lower_statx(state: &State, found: &Found, mask: u32, buf: *mut core::ffi::c_void) -> bool {
    const STATX_BASIC_STATS: u32 = 0x7ff;
    if mask & !STATX_BASIC_STATS != 0 {
        return false;
    }
    let Place::Lower(layer) = found.place else {
        return false;
    };
    let (Some(st), Some(index)) = (lower_stat(state, found), state.index) else {
        return false;
    };
    let Some(root) = layer_statx(index, layer) else {
        return false;
    };
    let mut x = [0u8; 256];
    let put32 =
        |x: &mut [u8; 256], at: usize, v: u32| x[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    let put64 =
        |x: &mut [u8; 256], at: usize, v: u64| x[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    put32(&mut x, 0, STATX_BASIC_STATS | (root.mask & STATX_MNT_ID));
    put32(&mut x, 4, st[7] as u32);
    put32(&mut x, 16, st[2] as u32);
    put32(&mut x, 20, (st[3] >> 32) as u32);
    put32(&mut x, 24, st[4] as u32);
    x[28..30].copy_from_slice(&(st[3] as u16).to_ne_bytes());
    put64(&mut x, 32, st[1]);
    put64(&mut x, 40, st[6]);
    put64(&mut x, 48, st[8]);
    put64(&mut x, 56, root.attributes_mask);
    // atime, (no btime), ctime, mtime: stat's order is atime, mtime, ctime.
    for (at, i) in [(64, 9), (96, 13), (112, 11)] {
        put64(&mut x, at, st[i]);
        put32(&mut x, at + 8, st[i + 1] as u32);
    }
    let (major, minor) = lpmx_union::dev::split_dev(st[5]);
    put32(&mut x, 128, major);
    put32(&mut x, 132, minor);
    let (major, minor) = lpmx_union::dev::split_dev(st[0]);
    put32(&mut x, 136, major);
    put32(&mut x, 140, minor);
    put64(&mut x, 144, root.mnt_id);
    // SAFETY: buf is the caller's struct statx, 256 bytes.
    unsafe { core::ptr::copy_nonoverlapping(x.as_ptr(), buf.cast::<u8>(), x.len()) };
    true
}

const STATX_MNT_ID: u32 = 0x1000;

/// What the kernel's `statx` of a layer's root says of the whole layer:
/// its device (`stat`'s and `statx`'s answers from the index), and for
/// `statx` the mask, the supported attributes and the mount id.
#[derive(Clone, Copy)]
struct LayerStatx {
    dev: u64,
    mask: u32,
    attributes_mask: u64,
    mnt_id: u64,
}

const LAYERS_KNOWN: usize = 256;
/// Each layer's root statx: the mask plus one (0: not taken yet, and
/// stored last), the device, the attributes mask and the mount id. Two
/// threads taking it at once store the same.
static LAYER_STATX: [[core::sync::atomic::AtomicU64; 4]; LAYERS_KNOWN] =
    [const { [const { core::sync::atomic::AtomicU64::new(0) }; 4] }; LAYERS_KNOWN];

fn layer_statx(index: crate::index::Index, layer: u16) -> Option<LayerStatx> {
    use core::sync::atomic::Ordering;
    let slot = LAYER_STATX.get(usize::from(layer))?;
    let mask = slot[0].load(Ordering::Acquire);
    if mask != 0 {
        return Some(LayerStatx {
            mask: (mask - 1) as u32,
            dev: slot[1].load(Ordering::Relaxed),
            attributes_mask: slot[2].load(Ordering::Relaxed),
            mnt_id: slot[3].load(Ordering::Relaxed),
        });
    }
    let root = Buf::from(index.layer_root(layer)).ok()?;
    let mut x = [0u8; 256];
    crate::host::statx(
        &root,
        sys::AT_SYMLINK_NOFOLLOW,
        0x7ff | STATX_MNT_ID,
        x.as_mut_ptr().cast(),
    )
    .ok()?;
    let get = |at: usize, n: usize| {
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&x[at..at + n]);
        u64::from_ne_bytes(v)
    };
    let known = LayerStatx {
        dev: lpmx_union::dev::make_dev(get(136, 4) as u32, get(140, 4) as u32),
        mask: get(0, 4) as u32,
        attributes_mask: get(56, 8),
        mnt_id: get(144, 8),
    };
    slot[1].store(known.dev, Ordering::Relaxed);
    slot[2].store(known.attributes_mask, Ordering::Relaxed);
    slot[3].store(known.mnt_id, Ordering::Relaxed);
    slot[0].store(u64::from(known.mask) + 1, Ordering::Release);
    Some(known)
}

/// The device a layer's files are on.
fn layer_dev(index: crate::index::Index, layer: u16) -> Option<u64> {
    layer_statx(index, layer).map(|root| root.dev)
}

impl Found {
    fn new(place: Place, kind: u8) -> Found {
        Found {
            place,
            kind,
            stat: None,
            last: Last::Name,
            slash: false,
            under_bind: place == Place::Bind,
            parent: None,
            position: None,
        }
    }
}

/// This process's layers, as the union core's walk asks for them.
struct Union<'a> {
    state: &'a State,
    index: Index,
    checking: bool,
    /// The `Made` counter before the walk looked at the writable layer:
    /// what the walk finds missing there is remembered as of then.
    made: Option<u64>,
}

/// The bind `canon` is at or below (the outermost, as the walk enters it
/// first).
pub(crate) fn bind_of<'s>(state: &'s State, canon: &[u8]) -> Option<&'s state::Bind> {
    state.binds[..state.bind_count]
        .iter()
        .filter(|b| is_under(canon, b.container))
        .min_by_key(|b| b.container.len())
}

/// Whether `found`, at canonical `canon`, is a directory on the way to a
/// deeper bind (the empty one shown where the container has none), not a
/// bind's own.
pub(crate) fn on_way_to_bind(state: &State, found: &Found, canon: &[u8]) -> bool {
    found.place == Place::Bind && bind_of(state, canon).is_none()
}

/// Whether missing directory `canon` leads to a bind (a bind's container
/// path is below it): it is then shown as an empty directory, as a mount
/// point would be, so a bind needs no directory of the container's.
fn leads_to_bind(state: &State, canon: &[u8]) -> bool {
    state.binds[..state.bind_count].iter().any(|b| {
        b.container.len() > canon.len()
            && b.container.starts_with(canon)
            && (canon == b"/" || b.container[canon.len()] == b'/')
    })
}

impl Layers for Union<'_> {
    type Node = Found;

    fn kind(&self, node: &Found) -> Option<u8> {
        (node.place != Place::Missing).then_some(node.kind)
    }

    fn root(&self, host: &mut Buf) -> Result<Found, i32> {
        host.set(self.state.upper)?;
        // The image's root, for the checks; the writable layer's always
        // exists.
        Ok(match self.index.lookup(b"") {
            Some(root) => Found::new(Place::Lower(root.layer), KIND_DIR),
            None => Found::new(Place::Upper, KIND_DIR),
        })
    }

    fn find(
        &self,
        canon: &[u8],
        parent: Option<&Found>,
        is_last: bool,
        host: &mut Buf,
    ) -> Result<Found, i32> {
        let state = self.state;
        let holder = parent.map(Found::as_parent);
        if let Some(bind) = bind_of(state, canon) {
            return self.find_in_bind(bind, canon, holder, is_last, host);
        }
        let top_level = canon[1..].iter().all(|&b| b != b'/');
        // Once a directory is missing from the writable layer, so is all
        // below it.
        let mut upper_possible = top_level || parent.is_none_or(|p| p.place == Place::Upper);
        if upper_possible && top_level {
            upper_possible = crate::upper::may_hold(state, &canon[1..]);
        }
        let mut found = Found::new(Place::Missing, 0);
        found.parent = holder;
        if upper_possible && !is_last && !self.checking {
            match crate::upper::known(state, canon) {
                KnownDir::There => {
                    // A directory the writable layer surely has: no lstat.
                    host.set(state.upper)?;
                    host.push(canon)?;
                    found.place = Place::Upper;
                    found.kind = KIND_DIR;
                    return Ok(found);
                }
                // One it surely lacks: no lstat either.
                KnownDir::Missing => upper_possible = false,
                KnownDir::Unknown => {}
            }
        }
        if upper_possible {
            host.set(state.upper)?;
            host.push(canon)?;
            let mut stat = [0u64; 18];
            // Read before the lstat: a name made, or a directory removed,
            // after it is not missed.
            let generation = crate::upper::made_generation(state);
            let dirs = crate::upper::dirs_known_generation(state);
            match crate::host::lstat(host, &mut stat) {
                Ok(_) => {
                    found.place = Place::Upper;
                    found.kind = kind_of((stat[3] & 0xffff_ffff) as u32);
                    found.stat = Some(stat);
                    if found.kind == KIND_DIR {
                        crate::upper::remember_dir(canon, dirs);
                    }
                    return Ok(found);
                }
                Err(sys::ENOENT) => {
                    if !is_last {
                        crate::upper::remember_missing(canon, generation);
                    }
                }
                // A directory of the writable layer the real user may not
                // search: the kernel's answer is the answer.
                Err(e) => return Err(e),
            }
        }
        let key = &canon[1..];
        if let Some(i) = crate::index::position(self.index, key)
            && !crate::upper::hides(state, key)
        {
            let entry = self.index.entry(i);
            found.place = Place::Lower(entry.layer);
            found.kind = entry.kind as u8;
            found.position = Some(i);
            host.set(self.index.layer_root(entry.layer))?;
            host.push(canon)?;
            return Ok(found);
        }
        if leads_to_bind(state, canon) {
            state.way_to_bind(host)?;
            found.place = Place::Bind;
            found.kind = KIND_DIR;
            return Ok(found);
        }
        // Not there: where the writable layer would make it.
        host.set(state.upper)?;
        host.push(canon)?;
        Ok(found)
    }

    fn read_link(&self, node: &Found, _: &[u8], host: &Buf, target: &mut Buf) -> Result<(), i32> {
        match node.position {
            // The layers never change: the index has the target.
            Some(i) => target.set(self.index.link(i)),
            None => crate::host::read_link(host, target),
        }
    }

    fn checking(&self) -> bool {
        self.checking
    }

    fn may_search(&self, node: &Found, canon: &[u8], host: &Buf) -> Result<(), i32> {
        let key = canon.get(1..).unwrap_or(b"");
        let meta = crate::root::meta(self.state, node.place, key, node.stat.as_ref(), host)?;
        perm::check(&meta, MAY_EXEC)
    }

    /// The common case in one index lookup: a path outside the binds and
    /// the writable layer.
    fn whole(&self, canon: &[u8], follow: bool, host: &mut Buf) -> Result<Option<Found>, i32> {
        let top = canon[1..].split(|&b| b == b'/').next().unwrap_or(b"");
        // The binds first: they are in memory, and a path below one (/proc,
        // /dev, /tmp) needs nothing of the writable layer's records.
        if bind_of(self.state, canon).is_some() {
            return Ok(None);
        }
        // The writable layer's top-level names exclude this path's, or its
        // directory is one the writable layer lacks (a walk found it so:
        // the next file of a listing below /usr/share, after a write to
        // /usr/local).
        if crate::upper::may_hold(self.state, top)
            && !parent_of(canon).is_some_and(|dir| crate::upper::known_missing(self.state, dir))
        {
            return Ok(None);
        }
        self.lower_whole(canon, follow, host)
    }

    /// A directory only the image has: the writable layer has nothing
    /// below it either.
    fn answers_below(&self, dir: &Found) -> bool {
        matches!(dir.place, Place::Lower(_))
    }

    fn whole_below(
        &self,
        canon: &[u8],
        follow: bool,
        host: &mut Buf,
    ) -> Result<Option<Found>, i32> {
        if bind_of(self.state, canon).is_some() {
            return Ok(None);
        }
        let found = self.lower_whole(canon, follow, host)?;
        if found.is_some()
            && let Some(dir) = parent_of(canon)
        {
            // Below a directory the writable layer lacks, so does this
            // one's: `whole` answers its next file in one lookup.
            crate::upper::remember_missing(dir, self.made);
        }
        Ok(found)
    }
}

/// The directory holding canonical `canon`, None for a top-level name.
fn parent_of(canon: &[u8]) -> Option<&[u8]> {
    let cut = canon.iter().rposition(|&b| b == b'/')?;
    (cut > 0).then(|| &canon[..cut])
}

impl Union<'_> {
    /// `canon` in the index, when nothing of the writable layer's or a
    /// bind's can be at or above it. The index holds no path below a
    /// symlink, so finding the whole path there means every directory
    /// above it is a real one.
    fn lower_whole(
        &self,
        canon: &[u8],
        follow: bool,
        host: &mut Buf,
    ) -> Result<Option<Found>, i32> {
        let key = &canon[1..];
        let Some(i) = crate::index::position(self.index, key) else {
            return Ok(None);
        };
        let entry = self.index.entry(i);
        if follow && entry.kind as u8 == KIND_SYMLINK || crate::upper::hides(self.state, key) {
            return Ok(None);
        }
        host.set(self.index.layer_root(entry.layer))?;
        host.push(canon)?;
        let mut found = Found::new(Place::Lower(entry.layer), entry.kind as u8);
        found.position = Some(i);
        found.parent = Some(Parent {
            place: Place::Lower(entry.layer),
        });
        Ok(Some(found))
    }
}

impl Union<'_> {
    /// Inside a bind the host's files are seen as they are, looked up here
    /// (the walk follows a symlink there inside the container, and `..`
    /// leaving the bind's top returns to the container); `/proc`'s are
    /// the kernel's.
    fn find_in_bind(
        &self,
        bind: &state::Bind,
        canon: &[u8],
        holder: Option<Parent>,
        is_last: bool,
        host: &mut Buf,
    ) -> Result<Found, i32> {
        host.set(bind.host)?;
        host.push(&canon[bind.container.len()..])?;
        if host.is_empty() {
            host.set(b"/")?;
        }
        let at_top = canon.len() == bind.container.len();
        let mut found = Found::new(Place::Bind, KIND_DIR);
        found.parent = if at_top {
            holder
        } else {
            Some(holder.unwrap_or(Parent { place: Place::Bind }))
        };
        if is_under(bind.container, b"/proc") {
            if !at_top {
                found.kind = walk::KIND_KERNELS;
            }
            return Ok(found);
        }
        if !is_last && !self.checking && (at_top || crate::upper::known_dir(self.state, canon)) {
            return Ok(found);
        }
        let mut stat = [0u64; 18];
        let dirs = crate::upper::dirs_known_generation(self.state);
        // A bind's host path is followed on the host, as a mount's source
        // is: a program bound from /bin/sh is the file it names.
        let flags = if at_top { 0 } else { sys::AT_SYMLINK_NOFOLLOW };
        match crate::host::fstatat(host, stat.as_mut_ptr().cast(), flags) {
            Ok(_) => {}
            Err(sys::ENOENT) if is_last => {
                found.place = Place::Missing;
                found.kind = 0;
                return Ok(found);
            }
            Err(e) => return Err(e),
        }
        found.kind = kind_of((stat[3] & 0xffff_ffff) as u32);
        found.stat = Some(stat);
        if found.kind == KIND_DIR {
            crate::upper::remember_dir(canon, dirs);
        }
        Ok(found)
    }
}

/// Resolves `path` against the container's current directory (or `dirfd`),
/// filling `canon` with the container path and `host` with the file.
pub fn resolve_at(
    state: &State,
    dirfd: i32,
    path: &[u8],
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Found, i32> {
    if path.first() == Some(&b'/') {
        return resolve(state, path, follow, canon, host);
    }
    let mut full = Buf::new();
    if dirfd == sys::AT_FDCWD {
        state::cwd(&mut full)?;
    } else if !crate::fdpaths::fd_path(state, dirfd, &mut full) {
        return Err(sys::EBADF);
    }
    full.push(b"/")?;
    // The kernel checks nothing above the directory it starts from.
    let base = full.len();
    full.push(path)?;
    let found = walk_with(state, full.as_bytes(), base, follow, canon, host)?;
    Ok(with_last(found, path))
}

/// Resolves absolute container path `path`. `canon` gets the canonical
/// container path (`/` for the root), `host` the host file.
pub fn resolve(
    state: &State,
    path: &[u8],
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Found, i32> {
    let found = walk_with(state, path, 0, follow, canon, host)?;
    Ok(with_last(found, path))
}

fn walk_with(
    state: &State,
    path: &[u8],
    check_from: usize,
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<walk::Resolved<Found>, i32> {
    let layers = Union {
        state,
        index: state.index.ok_or(sys::ENOENT)?,
        checking: perm::checking(),
        made: crate::upper::made_generation(state),
    };
    let mut resolved = walk::resolve(&layers, path, check_from, follow, canon, host)?;
    if canon.as_bytes() == b"/" {
        // The root: the writable layer's, which always exists.
        resolved.node = Found::new(Place::Upper, KIND_DIR);
    }
    Ok(resolved)
}

/// The walk's answer, with how the path as given ends.
fn with_last(resolved: walk::Resolved<Found>, path: &[u8]) -> Found {
    // The node knows its parent (`find` and `whole` record it).
    let mut found = resolved.node;
    (found.last, found.slash) = walk::last_of(path);
    // Or a last symlink's target ended in one (`path` itself may be
    // relative: the walk's own slash for "" is the directory's).
    found.slash |= resolved.slash && !path.is_empty();
    found
}

pub fn kind_of(mode: u32) -> u8 {
    lpmx_union::index::Kind::of_mode(mode) as u8
}
