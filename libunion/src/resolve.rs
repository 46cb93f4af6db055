//! Container paths to host paths, by the rules of `lpmx_core::view::View`
//! (its reference implementation, which the tests compare us with): the
//! upper layer first, then the index of the lower layers; symlinks
//! followed component by component inside the container; `..` applied
//! after resolution; binds reached by their container path.

use crate::buf::{Buf, is_under};
use crate::index::{KIND_DIR, KIND_SYMLINK};
use crate::state::{self, State};
use crate::sys;

const MAX_LINKS: usize = 40;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Place {
    Upper,
    Lower(u16),
    /// Under a bind: the host resolves the rest.
    Bind,
    /// Not there (the last component only): `host` is where the upper
    /// layer would create it.
    Missing,
}

pub struct Found {
    pub place: Place,
    /// Index kind (1 dir, 2 file, 3 symlink, ...); 0 when unknown (binds)
    /// or missing.
    pub kind: u8,
    /// The `lstat` of the writable layer's file when finding it took one:
    /// `stat` needs no second call then.
    pub upper_stat: Option<[u64; 18]>,
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
    if path.first() != Some(&b'/') {
        if dirfd == sys::AT_FDCWD {
            state::cwd(&mut full)?;
        } else if !state::fd_path(state, dirfd, &mut full) {
            return Err(sys::EBADF);
        }
        full.push(b"/")?;
    }
    full.push(path)?;
    resolve(state, full.as_bytes(), follow, canon, host)
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

fn kind_of(mode: u32) -> u8 {
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

/// Resolves absolute container path `path`. `canon` gets the canonical
/// container path (`/` for the root), `host` the host file.
pub fn resolve(
    state: &State,
    path: &[u8],
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Found, i32> {
    let index = state.index.ok_or(sys::ENOENT)?;
    if let Some(found) = direct(state, index, path, follow, canon, host)? {
        return Ok(found);
    }
    // A trailing slash asks for a directory, through a last symlink too.
    let follow = follow || path.last() == Some(&b'/');
    let mut rest = Buf::from(path)?;
    let mut at = 0;
    let mut links = 0;
    // canon holds "/a/b" ("" for the root) while resolving.
    canon.clear();
    // Once a prefix is missing from the upper layer, so is all below it.
    let mut upper_possible = true;
    let mut found = Found {
        place: Place::Lower(0),
        kind: KIND_DIR,
        upper_stat: None,
    };
    if let Some(root) = index.lookup(b"") {
        found.place = Place::Lower(root.layer);
    }
    let mut stat = [0u64; 18];
    let mut after_dotdot = false;
    while let Some(component) = next_component(rest.as_bytes(), &mut at) {
        let mut peek = at;
        let is_last = next_component(rest.as_bytes(), &mut peek).is_none();
        if component == b".." {
            pop(canon);
            upper_possible = true;
            after_dotdot = true;
            continue;
        }
        after_dotdot = false;
        canon.push(b"/")?;
        canon.push(component)?;
        for bind in &state.binds[..state.bind_count] {
            if canon.as_bytes() == bind.container {
                return enter_bind(bind, &rest.as_bytes()[at..], canon, host);
            }
        }
        found = Found {
            place: Place::Missing,
            kind: 0,
            upper_stat: None,
        };
        if upper_possible && canon.as_bytes()[1..].iter().all(|&b| b != b'/') {
            upper_possible = crate::upper::may_hold(state, component);
        }
        if upper_possible && !is_last && crate::upper::known_dir(state, canon.as_bytes()) {
            // A directory the writable layer surely has: no lstat.
            host.set(state.upper)?;
            host.push(canon.as_bytes())?;
            found = Found {
                place: Place::Upper,
                kind: KIND_DIR,
                upper_stat: None,
            };
        } else if upper_possible {
            host.set(state.upper)?;
            host.push(canon.as_bytes())?;
            match sys::fstatat(
                sys::AT_FDCWD,
                host.c(),
                stat.as_mut_ptr().cast(),
                sys::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(_) => {
                    found = Found {
                        place: Place::Upper,
                        kind: kind_of((stat[3] & 0xffff_ffff) as u32),
                        upper_stat: is_last.then_some(stat),
                    };
                    if found.kind == KIND_DIR {
                        crate::upper::remember_dir(state, canon.as_bytes());
                    }
                }
                Err(_) => upper_possible = false,
            }
        }
        let mut position = None;
        if found.place == Place::Missing {
            let key = &canon.as_bytes()[1..];
            let visible = || !crate::upper::hides(state, key);
            if let Some(i) = index.position(key).filter(|_| visible()) {
                let entry = index.entry(i);
                position = Some(i);
                found = Found {
                    place: Place::Lower(entry.layer),
                    kind: entry.kind,
                    upper_stat: None,
                };
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
            links += 1;
            if links > MAX_LINKS {
                return Err(sys::ELOOP);
            }
            let mut target = Buf::new();
            match position {
                // The layers never change: the index has the target.
                Some(i) => target.set(index.link(i))?,
                None => {
                    let len = sys::readlinkat(
                        sys::AT_FDCWD,
                        host.c(),
                        target.spare(),
                        crate::buf::CAPACITY,
                    )?;
                    target.set_len(len);
                }
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
        } else if !is_last && found.kind != KIND_DIR {
            return Err(sys::ENOTDIR);
        }
    }
    if canon.is_empty() {
        canon.set(b"/")?;
        // The root: the upper layer's, which always exists.
        host.set(state.upper)?;
        return Ok(Found {
            place: Place::Upper,
            kind: KIND_DIR,
            upper_stat: None,
        });
    }
    if after_dotdot {
        // Ended on `..`: look the (canonical) directory up again.
        let again = Buf::from(canon.as_bytes())?;
        return resolve(state, again.as_bytes(), false, canon, host);
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
        if component == b".." {
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
            Ok(Some(Found {
                place: Place::Lower(entry.layer),
                kind: entry.kind,
                upper_stat: None,
            }))
        }
        _ => Ok(None),
    }
}

/// Inside a bind the host's files are seen as they are; `..` leaving the
/// bind's top returns to the container.
fn enter_bind(
    bind: &state::Bind,
    rest: &[u8],
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Found, i32> {
    host.set(bind.host)?;
    let mut at = 0;
    let mut back = Buf::new();
    while let Some(component) = next_component(rest, &mut at) {
        if component == b".." {
            if canon.as_bytes() == bind.container {
                // Out of the bind again: resolve the remainder in the container.
                pop(canon);
                back.set(if canon.is_empty() {
                    b"/"
                } else {
                    canon.as_bytes()
                })?;
                back.push(b"/")?;
                back.push(&rest[at..])?;
                let state = state::get();
                return resolve(state, back.as_bytes(), true, canon, host);
            }
            pop(canon);
            pop(host);
            continue;
        }
        canon.push(b"/")?;
        canon.push(component)?;
        host.push(b"/")?;
        host.push(component)?;
    }
    if host.is_empty() {
        host.set(b"/")?;
    }
    debug_assert!(is_under(canon.as_bytes(), bind.container));
    Ok(Found {
        place: Place::Bind,
        kind: 0,
        upper_stat: None,
    })
}
