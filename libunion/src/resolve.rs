//! Container paths to host paths, by the rules of `lpmx_core::view::View`
//! (its reference implementation, which the tests compare us with): the
//! upper layer first, then the index of the lower layers; symlinks
//! followed component by component inside the container; `..` applied
//! after resolution; binds reached by their container path.
//!
//! The kernel's own rules on top: a component longer than `NAME_MAX` is
//! `ENAMETOOLONG`; a directory the caller may not search is `EACCES`
//! (the writable layer's, as the kernel reports it; under fake root, by
//! `perm`'s rules); the final component's kind (`.`, `..`, `/`) and a
//! trailing slash are reported for the calls that create and remove.
//! Below a bind the host's files are walked component by component too,
//! so a symlink there that points into the container (an absolute target
//! means the container's `/`) stays inside; `/proc` is the exception, its
//! links being the kernel's own.

use crate::buf::{Buf, is_under};
use crate::index::{KIND_DIR, KIND_SYMLINK};
use crate::perm::{self, MAY_EXEC};
use crate::state::{self, State};
use crate::sys;

const MAX_LINKS: usize = 40;
const NAME_MAX: usize = 255;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Place {
    Upper,
    Lower(u16),
    /// Under a bind: a host file, seen as it is.
    Bind,
    /// Not there (the last component only): `host` is where the upper
    /// layer (or the bind) would create it.
    Missing,
}

/// The final component of the path as given, as the kernel classifies it
/// for the calls that create or remove a name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Last {
    Name,
    Dot,
    DotDot,
    Root,
}

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
            let i = index.position(canon.get(1..).unwrap_or(b""))?;
            Some((layer_dev(index, layer)?, index.ino(i)))
        }
        Place::Missing => None,
    }
}

const LAYER_DEVS: usize = 256;
static LAYER_DEV: [core::sync::atomic::AtomicU64; LAYER_DEVS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; LAYER_DEVS];

/// The device a layer's files are on (0 in the table: not taken yet).
fn layer_dev(index: crate::index::Index, layer: u16) -> Option<u64> {
    use core::sync::atomic::Ordering;
    let slot = LAYER_DEV.get(usize::from(layer))?;
    let known = slot.load(Ordering::Relaxed);
    if known != 0 {
        return Some(known - 1);
    }
    let root = Buf::from(index.layer_root(layer)).ok()?;
    let mut st = [0u64; 18];
    crate::host::lstat(&root, &mut st).ok()?;
    slot.store(st[0] + 1, Ordering::Relaxed);
    Some(st[0])
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
        }
    }
}

/// How the final component of `path` reads, and whether it ends in `/`.
fn last_of(path: &[u8]) -> (Last, bool) {
    let slash = path.len() > 1 && path.last() == Some(&b'/');
    let mut end = path.len();
    while end > 0 && path[end - 1] == b'/' {
        end -= 1;
    }
    if end == 0 {
        return (
            if path.is_empty() {
                Last::Name
            } else {
                Last::Root
            },
            false,
        );
    }
    let start = path[..end]
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    let last = match &path[start..end] {
        b"." => Last::Dot,
        b".." => Last::DotDot,
        _ => Last::Name,
    };
    (last, slash)
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
    let mut full = Buf::new();
    let mut base = 0;
    if path.first() != Some(&b'/') {
        if dirfd == sys::AT_FDCWD {
            state::cwd(&mut full)?;
        } else if !state::fd_path(state, dirfd, &mut full) {
            return Err(sys::EBADF);
        }
        full.push(b"/")?;
        // The kernel checks nothing above the directory it starts from.
        base = full.len();
    }
    full.push(path)?;
    let mut found = walk(state, full.as_bytes(), base, follow, canon, host, &mut 0)?;
    (found.last, found.slash) = last_of(path);
    Ok(found)
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
    let mut found = walk(state, path, 0, follow, canon, host, &mut 0)?;
    (found.last, found.slash) = last_of(path);
    Ok(found)
}

/// Splits off the next component of `rest[*at..]`, skipping `/` and `.`.
fn next_component<'a>(rest: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    loop {
        while *at < rest.len() && rest[*at] == b'/' {
            *at += 1;
        }
        if *at >= rest.len() {
            return None;
        }
        let start = *at;
        while *at < rest.len() && rest[*at] != b'/' {
            *at += 1;
        }
        let component = &rest[start..*at];
        if component != b"." {
            return Some(component);
        }
    }
}

fn pop(canon: &mut Buf) {
    let bytes = canon.as_bytes();
    let cut = bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
    canon.truncate(cut);
}

pub fn kind_of(mode: u32) -> u8 {
    match mode & sys::S_IFMT {
        0o040000 => 1,
        0o100000 => 2,
        0o120000 => 3,
        0o020000 => 4,
        0o060000 => 5,
        0o010000 => 6,
        _ => 7,
    }
}

/// Search permission on the directory `found` at `canon` ("" for the
/// root), by fake root's rules.
fn may_search(state: &State, found: &Found, canon: &[u8], host: &Buf) -> Result<(), i32> {
    let key = canon.get(1..).unwrap_or(b"");
    let meta = crate::root::meta(state, found.place, key, found.stat.as_ref(), host)?;
    perm::check(&meta, MAY_EXEC)
}

/// The directory `canon` (just reached by `..`), looked up again for its
/// place: only fake root's checks need it.
fn directory_again(state: &State, canon: &Buf) -> Result<(Found, Buf), i32> {
    let path = Buf::from(if canon.is_empty() {
        b"/"
    } else {
        canon.as_bytes()
    })?;
    let (mut again, mut host) = (Buf::new(), Buf::new());
    let found = walk(
        state,
        path.as_bytes(),
        usize::MAX,
        true,
        &mut again,
        &mut host,
        &mut 0,
    )?;
    Ok((found, host))
}

/// The walk itself. Components starting before `check_from` in `path` (the
/// directory a relative path starts from) are not checked for search
/// permission; `links` counts the symlinks followed so far.
fn walk(
    state: &State,
    path: &[u8],
    check_from: usize,
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
    links: &mut usize,
) -> Result<Found, i32> {
    let index = state.index.ok_or(sys::ENOENT)?;
    let checking = perm::checking();
    if !checking && let Some(found) = direct(state, index, path, follow, canon, host)? {
        return Ok(found);
    }
    let mut check_from = check_from;
    // A trailing slash asks for a directory, through a last symlink too.
    let slash = path.len() > 1 && path.last() == Some(&b'/');
    let follow = follow || slash;
    let mut rest = Buf::from(path)?;
    let mut at = 0;
    // canon holds "/a/b" ("" for the root) while resolving.
    canon.clear();
    // Once a prefix is missing from the upper layer, so is all below it.
    let mut upper_possible = true;
    let mut found = Found::new(Place::Upper, KIND_DIR);
    if let Some(root) = index.lookup(b"") {
        found.place = Place::Lower(root.layer);
    }
    host.set(state.upper)?;
    let mut after_dotdot = false;
    // Under fake root's checks: whether `found`/`host` describe the
    // directory `canon` (not so after `..`).
    let mut dir_known = true;
    let mut stat = [0u64; 18];
    while let Some(component) = next_component(rest.as_bytes(), &mut at) {
        let mut peek = at;
        let is_last = next_component(rest.as_bytes(), &mut peek).is_none();
        if checking && at > check_from {
            if !dir_known {
                let (again, again_host) = directory_again(state, canon)?;
                found = again;
                *host = again_host;
                dir_known = true;
            }
            may_search(state, &found, canon.as_bytes(), host)?;
        }
        if component == b".." {
            pop(canon);
            upper_possible = true;
            after_dotdot = true;
            dir_known = false;
            continue;
        }
        if component.len() > NAME_MAX {
            return Err(sys::ENAMETOOLONG);
        }
        after_dotdot = false;
        // What `found` says of the directory holding this component.
        let parent = dir_known.then(|| found.as_parent());
        dir_known = true;
        canon.push(b"/")?;
        canon.push(component)?;
        for bind in &state.binds[..state.bind_count] {
            if canon.as_bytes() == bind.container {
                let remaining = Buf::from(&rest.as_bytes()[at..])?;
                return enter_bind(
                    state,
                    bind,
                    remaining.as_bytes(),
                    follow,
                    canon,
                    host,
                    links,
                    checking,
                );
            }
        }
        found = Found::new(Place::Missing, 0);
        found.parent = parent;
        if upper_possible && canon.as_bytes()[1..].iter().all(|&b| b != b'/') {
            upper_possible = crate::upper::may_hold(state, component);
        }
        if upper_possible
            && !is_last
            && !checking
            && crate::upper::known_dir(state, canon.as_bytes())
        {
            // A directory the writable layer surely has: no lstat.
            host.set(state.upper)?;
            host.push(canon.as_bytes())?;
            found = Found::new(Place::Upper, KIND_DIR);
            found.parent = parent;
        } else if upper_possible {
            host.set(state.upper)?;
            host.push(canon.as_bytes())?;
            match crate::host::lstat(host, &mut stat) {
                Ok(_) => {
                    found = Found::new(Place::Upper, kind_of((stat[3] & 0xffff_ffff) as u32));
                    found.stat = Some(stat);
                    found.parent = parent;
                    if found.kind == KIND_DIR {
                        crate::upper::remember_dir(state, canon.as_bytes());
                    }
                }
                Err(sys::ENOENT) => upper_possible = false,
                // A directory of the writable layer the real user may not
                // search: the kernel's answer is the answer.
                Err(e) => return Err(e),
            }
        }
        let mut position = None;
        if found.place == Place::Missing {
            let key = &canon.as_bytes()[1..];
            let visible = || !crate::upper::hides(state, key);
            if let Some(i) = index.position(key).filter(|_| visible()) {
                let entry = index.entry(i);
                position = Some(i);
                found = Found::new(Place::Lower(entry.layer), entry.kind);
                found.parent = parent;
                host.set(index.layer_root(entry.layer))?;
                host.push(canon.as_bytes())?;
            } else if is_last {
                host.set(state.upper)?;
                host.push(canon.as_bytes())?;
                return Ok(found);
            } else {
                return Err(sys::ENOENT);
            }
        }
        if found.kind == KIND_SYMLINK && (!is_last || follow) {
            *links += 1;
            if *links > MAX_LINKS {
                return Err(sys::ELOOP);
            }
            let mut target = Buf::new();
            match position {
                // The layers never change: the index has the target.
                Some(i) => target.set(index.link(i))?,
                None => crate::host::read_link(host, &mut target)?,
            }
            pop(canon);
            if target.as_bytes().first() == Some(&b'/') {
                canon.clear();
            }
            target.push(b"/")?;
            target.push(&rest.as_bytes()[at..])?;
            rest = target;
            at = 0;
            upper_possible = true;
            // The target's components are all looked up and checked; the
            // directory holding the link is where they start.
            check_from = 0;
            dir_known = false;
        } else if !is_last && found.kind != KIND_DIR {
            return Err(sys::ENOTDIR);
        }
    }
    if canon.is_empty() {
        canon.set(b"/")?;
        // The root: the upper layer's, which always exists.
        host.set(state.upper)?;
        return Ok(Found::new(Place::Upper, KIND_DIR));
    }
    if after_dotdot {
        // Ended on `..`: look the (canonical) directory up again.
        let again = Buf::from(canon.as_bytes())?;
        return walk(
            state,
            again.as_bytes(),
            usize::MAX,
            false,
            canon,
            host,
            links,
        );
    }
    if slash && found.kind != KIND_DIR && found.place != Place::Missing {
        return Err(sys::ENOTDIR);
    }
    Ok(found)
}

/// The common case in one index lookup: a path without `..` or a trailing
/// slash, outside the binds and the writable layer. The index holds no
/// path below a symlink, so finding the whole path there means every
/// directory above it is a real one. `None`: take the long way.
fn direct(
    state: &State,
    index: crate::index::Index,
    path: &[u8],
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Option<Found>, i32> {
    if path.last() == Some(&b'/') {
        return Ok(None);
    }
    canon.clear();
    let mut at = 0;
    let mut first = true;
    while let Some(component) = next_component(path, &mut at) {
        if component == b".." || component.len() > NAME_MAX {
            return Ok(None);
        }
        if first && crate::upper::may_hold(state, component) {
            return Ok(None);
        }
        first = false;
        canon.push(b"/")?;
        canon.push(component)?;
    }
    if canon.is_empty()
        || state.binds[..state.bind_count]
            .iter()
            .any(|b| is_under(canon.as_bytes(), b.container))
    {
        return Ok(None);
    }
    match index.lookup(&canon.as_bytes()[1..]) {
        Some(entry)
            if !(follow && entry.kind == KIND_SYMLINK
                || crate::upper::hides(state, &canon.as_bytes()[1..])) =>
        {
            host.set(index.layer_root(entry.layer))?;
            host.push(canon.as_bytes())?;
            let mut found = Found::new(Place::Lower(entry.layer), entry.kind);
            // Every directory above is the image's (and not the writable
            // layer's, whose top-level names exclude this path's).
            found.parent = Some(Parent {
                place: Place::Lower(entry.layer),
            });
            Ok(Some(found))
        }
        _ => Ok(None),
    }
}

/// Inside a bind the host's files are seen as they are, but walked here:
/// a symlink is followed inside the container, and `..` leaving the
/// bind's top returns to the container. `/proc` is left to the kernel.
#[expect(
    clippy::too_many_arguments,
    reason = "the walk's state, passed on as it is"
)]
fn enter_bind(
    state: &State,
    bind: &state::Bind,
    rest: &[u8],
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
    links: &mut usize,
    checking: bool,
) -> Result<Found, i32> {
    host.set(bind.host)?;
    let magic = is_under(bind.container, b"/proc");
    let mut at = 0;
    let mut stat = [0u64; 18];
    let mut found = Found::new(Place::Bind, KIND_DIR);
    let slash = rest.last() == Some(&b'/');
    let follow = follow || slash;
    let mut taken = false;
    while let Some(component) = next_component(rest, &mut at) {
        let mut peek = at;
        let is_last = next_component(rest, &mut peek).is_none();
        if checking {
            if !taken {
                crate::host::lstat(host, &mut stat)?;
                found.stat = Some(stat);
            }
            may_search(state, &found, canon.as_bytes(), host)?;
        }
        if component == b".." {
            if canon.as_bytes() == bind.container {
                // Out of the bind again: resolve the remainder in the container.
                let mut back = Buf::new();
                pop(canon);
                back.set(if canon.is_empty() {
                    b"/"
                } else {
                    canon.as_bytes()
                })?;
                back.push(b"/")?;
                back.push(&rest[at..])?;
                return walk(state, back.as_bytes(), 0, follow, canon, host, links);
            }
            pop(canon);
            pop(host);
            taken = false;
            found = Found::new(Place::Bind, KIND_DIR);
            continue;
        }
        if component.len() > NAME_MAX {
            return Err(sys::ENAMETOOLONG);
        }
        let parent = if taken || checking {
            Some(found.as_parent())
        } else {
            Some(Parent { place: Place::Bind })
        };
        canon.push(b"/")?;
        canon.push(component)?;
        host.push(b"/")?;
        host.push(component)?;
        if magic {
            found = Found::new(Place::Bind, 0);
            taken = false;
            continue;
        }
        if !is_last && !checking && crate::upper::known_dir(state, canon.as_bytes()) {
            found = Found::new(Place::Bind, KIND_DIR);
            taken = false;
            continue;
        }
        match crate::host::lstat(host, &mut stat) {
            Ok(_) => {}
            Err(sys::ENOENT) if is_last => {
                let mut missing = Found::new(Place::Missing, 0);
                missing.under_bind = true;
                missing.parent = parent;
                return Ok(missing);
            }
            Err(e) => return Err(e),
        }
        taken = true;
        found = Found::new(Place::Bind, kind_of((stat[3] & 0xffff_ffff) as u32));
        found.stat = Some(stat);
        found.parent = parent;
        if found.kind == KIND_SYMLINK && (!is_last || follow) {
            *links += 1;
            if *links > MAX_LINKS {
                return Err(sys::ELOOP);
            }
            let mut target = Buf::new();
            crate::host::read_link(host, &mut target)?;
            pop(canon);
            let mut next = Buf::new();
            if target.as_bytes().first() != Some(&b'/') {
                next.set(if canon.is_empty() {
                    b"/"
                } else {
                    canon.as_bytes()
                })?;
                next.push(b"/")?;
            }
            next.push(target.as_bytes())?;
            next.push(&rest[at..])?;
            return walk(state, next.as_bytes(), 0, follow, canon, host, links);
        }
        if found.kind == KIND_DIR {
            crate::upper::remember_dir(state, canon.as_bytes());
        } else if !is_last {
            return Err(sys::ENOTDIR);
        }
    }
    if host.is_empty() {
        host.set(b"/")?;
    }
    if !taken && !magic {
        match crate::host::lstat(host, &mut stat) {
            Ok(_) => {
                found = Found::new(Place::Bind, kind_of((stat[3] & 0xffff_ffff) as u32));
                found.stat = Some(stat);
            }
            Err(sys::ENOENT) => {
                let mut missing = Found::new(Place::Missing, 0);
                missing.under_bind = true;
                return Ok(missing);
            }
            Err(e) => return Err(e),
        }
    }
    if slash && found.kind != KIND_DIR && found.kind != 0 {
        return Err(sys::ENOTDIR);
    }
    debug_assert!(is_under(canon.as_bytes(), bind.container));
    Ok(found)
}
