//! The rules that resolve a container path (DESIGN.md, invariant 7), the
//! one definition every consumer walks by: the tools over `std`
//! (`lpmx_core::view`), libunion and the system-call trap over raw calls.
//!
//! - Component by component, on the canonical container path: `.` and
//!   empty components are skipped, `..` applies to what was resolved so far
//!   (after symlinks) and never climbs above `/`.
//! - A symlink met before the last component (and the last one too when
//!   following) is replaced by its target; an absolute target means the
//!   container's `/`, never the host's; more than 40 links is `ELOOP`.
//! - A component longer than 255 bytes is `ENAMETOOLONG`; a missing one
//!   before the last is `ENOENT`; a non-directory before the last is
//!   `ENOTDIR`, as is a trailing slash on one (a trailing slash also follows
//!   a last symlink, and one ending a last symlink's target asks for a
//!   directory too); the kernel checks search permission on every
//!   directory the walk enters except those above a relative path's start.
//!
//! Which layer holds a path (writable layer first, whiteouts, opaque
//! directories, binds) is the [`Layers`]' answer: each consumer looks its
//! layers up its own way (libunion in the index, the tools on disk) and
//! this walk applies the same rules to every answer.

use crate::path::{Buf, errno};

/// Symlinks followed in one resolution before giving up (Linux's limit).
pub const MAX_LINKS: usize = 40;
/// The longest name of one component (Linux's `NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// A node's kind as the walk sees it (the index's kind bytes).
pub const KIND_DIR: u8 = crate::index::KIND_DIR;
pub const KIND_SYMLINK: u8 = crate::index::KIND_SYMLINK;
/// A file whose kind is the kernel's to know (a `/proc` magic link): the
/// walk neither follows nor checks it.
pub const KIND_KERNELS: u8 = 0;

/// The layers a container path is resolved in.
pub trait Layers {
    /// What the walk found at a path: where it is and what it is.
    type Node: Copy;

    /// Its kind, or None when nothing is there.
    fn kind(&self, node: &Self::Node) -> Option<u8>;

    /// The container's root directory; `host` gets its file.
    fn root(&self, host: &mut Buf) -> Result<Self::Node, i32>;

    /// The file at canonical container path `canon` (`/a/b`), not following
    /// a symlink there, filling `host` with its file (or where it would be
    /// made, when nothing is there). `parent` is the node of the directory
    /// holding it, where the walk knows it (not after `..` or a symlink);
    /// `is_last`: no component follows.
    fn find(
        &self,
        canon: &[u8],
        parent: Option<&Self::Node>,
        is_last: bool,
        host: &mut Buf,
    ) -> Result<Self::Node, i32>;

    /// The target of the symlink `node` at `canon`, whose file is `host`.
    fn read_link(
        &self,
        node: &Self::Node,
        canon: &[u8],
        host: &Buf,
        target: &mut Buf,
    ) -> Result<(), i32>;

    /// Whether search permission is to be checked on every directory
    /// entered (by [`Layers::may_search`]) rather than left to the kernel.
    fn checking(&self) -> bool {
        false
    }

    /// Search permission on directory `node` at `canon` ("" for the root).
    fn may_search(&self, _node: &Self::Node, _canon: &[u8], _host: &Buf) -> Result<(), i32> {
        Ok(())
    }

    /// The whole of canonical `canon` in one lookup, where the layers know
    /// it holds by these rules (a path the index has, no symlink above it):
    /// None to walk. Only asked when not `checking`.
    fn whole(
        &self,
        _canon: &[u8],
        _follow: bool,
        _host: &mut Buf,
    ) -> Result<Option<Self::Node>, i32> {
        Ok(None)
    }

    /// Whether the layers can answer for the whole rest of a path below
    /// directory `dir` the walk found, in one lookup (`whole_below`): a
    /// directory only the image has. Asked when not `checking`.
    fn answers_below(&self, _dir: &Self::Node) -> bool {
        false
    }

    /// The whole of canonical `canon`, below a directory `answers_below`
    /// accepted, in one lookup where the layers know it holds by these
    /// rules (a path the index has, no symlink above it): None to walk on.
    /// Asked once per walk, and again for a symlink's target.
    fn whole_below(
        &self,
        _canon: &[u8],
        _follow: bool,
        _host: &mut Buf,
    ) -> Result<Option<Self::Node>, i32> {
        Ok(None)
    }
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

/// A resolved path.
pub struct Resolved<N> {
    pub node: N,
    /// The directory holding the final component, where the walk knew it
    /// (not when `Layers::whole` answered).
    pub parent: Option<N>,
    pub last: Last,
    /// The path as given ended in `/`, or the target of a last symlink
    /// followed did: either asks for a directory.
    pub slash: bool,
}

/// How the final component of `path` reads, and whether it ends in `/`.
pub fn last_of(path: &[u8]) -> (Last, bool) {
    let slash = path.len() > 1 && path.last() == Some(&b'/');
    let mut end = path.len();
    while end > 0 && path[end - 1] == b'/' {
        end -= 1;
    }
    if end == 0 {
        let last = if path.is_empty() {
            Last::Name
        } else {
            Last::Root
        };
        return (last, false);
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

/// Splits off the next component of `rest[*at..]`, skipping `/` and `.`.
pub fn next_component<'a>(rest: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
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

/// Removes the last component of canonical `canon` (`/a/b` to `/a`).
pub fn pop(canon: &mut Buf) {
    let cut = canon
        .as_bytes()
        .iter()
        .rposition(|&b| b == b'/')
        .unwrap_or(0);
    canon.truncate(cut);
}

/// Resolves absolute container path `path`, following a last symlink when
/// `follow`; the components that start before `check_from` (the directory
/// a relative path starts from) are not checked for search permission.
/// `canon` gets the canonical container path (`/` for the root), `host`
/// the file.
pub fn resolve<L: Layers>(
    layers: &L,
    path: &[u8],
    check_from: usize,
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Resolved<L::Node>, i32> {
    let mut links = 0;
    let mut resolved = walk(layers, path, check_from, follow, canon, host, &mut links)?;
    let (last, slash) = last_of(path);
    resolved.last = last;
    // A trailing slash in the path, or in the target of a last symlink
    // followed (the walk says so).
    resolved.slash |= slash;
    Ok(resolved)
}

/// Whether a path (or a link's target) ending so asks for a directory.
fn asks_directory(path: &[u8]) -> bool {
    path.ends_with(b"/") || path.ends_with(b"/.") || path == b"."
}

/// `path` made canonical when it has no `..` and no trailing slash (so
/// that nothing but symlinks could change it); false when it has.
fn plain(path: &[u8], canon: &mut Buf) -> Result<bool, i32> {
    if asks_directory(path) {
        return Ok(false);
    }
    canon.clear();
    let mut at = 0;
    while let Some(component) = next_component(path, &mut at) {
        if component == b".." || component.len() > NAME_MAX {
            return Ok(false);
        }
        canon.push(b"/")?;
        canon.push(component)?;
    }
    Ok(!canon.is_empty())
}

/// Canonical `dir` followed by the components of `rest` (as `plain`
/// makes a path canonical); false when `rest` could not be taken so (or
/// the whole would not fit: the walk then goes on and reports).
fn plain_below(dir: &[u8], rest: &[u8], full: &mut Buf) -> bool {
    if asks_directory(rest) || full.set(dir).is_err() {
        return false;
    }
    let mut at = 0;
    while let Some(component) = next_component(rest, &mut at) {
        if component == b".."
            || component.len() > NAME_MAX
            || full.push(b"/").is_err()
            || full.push(component).is_err()
        {
            return false;
        }
    }
    full.len() > dir.len()
}

fn walk<L: Layers>(
    layers: &L,
    path: &[u8],
    check_from: usize,
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
    links: &mut usize,
) -> Result<Resolved<L::Node>, i32> {
    let checking = layers.checking();
    if !checking
        && plain(path, canon)?
        && let Some(node) = whole_following(layers, follow, canon, host, links)?
    {
        return Ok(Resolved {
            node,
            parent: None,
            last: Last::Name,
            slash: false,
        });
    }
    let mut check_from = check_from;
    // A trailing slash or `/.` asks for a directory, through a last
    // symlink too (`next_component` skips the `.`, so the component
    // before it is the last one walked).
    let (last, mut slash) = last_of(path);
    let mut directory = slash || last == Last::Dot;
    let follow = follow || directory;
    // Filled in place: a Buf returned by value is a 4.6 KiB copy, on
    // every lookup.
    let mut rest = Buf::new();
    rest.set(path)?;
    let mut at = 0;
    // canon holds "/a/b" ("" for the root) while resolving.
    canon.clear();
    let mut node = layers.root(host)?;
    let mut parent = None;
    // Whether `node` is the directory `canon` (not so after `..` or a
    // symlink, until a component is found below it).
    let mut known = true;
    let mut after_dotdot = false;
    let mut tried_below = checking;
    while let Some(component) = next_component(rest.as_bytes(), &mut at) {
        let mut peek = at;
        let is_last = next_component(rest.as_bytes(), &mut peek).is_none();
        if checking && at > check_from {
            if !known {
                let again = directory_again(layers, canon, host)?;
                node = again;
                known = true;
            }
            layers.may_search(&node, canon.as_bytes(), host)?;
        }
        if component == b".." {
            pop(canon);
            after_dotdot = true;
            known = false;
            continue;
        }
        if component.len() > NAME_MAX {
            return Err(errno::ENAMETOOLONG);
        }
        after_dotdot = false;
        let holder = known.then_some(node);
        canon.push(b"/")?;
        canon.push(component)?;
        node = layers.find(canon.as_bytes(), holder.as_ref(), is_last, host)?;
        parent = holder;
        known = true;
        let Some(kind) = layers.kind(&node) else {
            if is_last {
                return Ok(Resolved {
                    node,
                    parent,
                    last: Last::Name,
                    slash,
                });
            }
            return Err(errno::ENOENT);
        };
        if kind == KIND_SYMLINK && (!is_last || follow) {
            *links += 1;
            if *links > MAX_LINKS {
                return Err(errno::ELOOP);
            }
            let mut target = Buf::new();
            layers.read_link(&node, canon.as_bytes(), host, &mut target)?;
            pop(canon);
            if target.as_bytes().first() == Some(&b'/') {
                canon.clear();
            }
            // What follows the link, if anything: a link that was the last
            // component leaves no trailing slash (it would ask for a
            // directory, and keep the rest from one lookup).
            let after = &rest.as_bytes()[at..];
            if !after.is_empty() {
                target.push(b"/")?;
                target.push(after)?;
            } else if asks_directory(target.as_bytes()) {
                // The last link's own trailing slash asks for a directory
                // as one given in the path does (Linux: `ENOTDIR` for a
                // file, `EISDIR` to create).
                directory = true;
                slash = true;
            }
            rest = target;
            at = 0;
            // The target's components are all looked up and checked; the
            // directory holding the link is where they start.
            check_from = 0;
            known = false;
            // The target is a path of its own: its rest may be answered in
            // one lookup too.
            tried_below = checking;
        } else if !is_last && kind != KIND_DIR && kind != KIND_KERNELS {
            return Err(errno::ENOTDIR);
        } else if !is_last && kind == KIND_DIR && !tried_below && layers.answers_below(&node) {
            tried_below = true;
            let mut full = Buf::new();
            if plain_below(canon.as_bytes(), &rest.as_bytes()[at..], &mut full)
                && let Some(node) = layers.whole_below(full.as_bytes(), follow, host)?
            {
                canon.set(full.as_bytes())?;
                return Ok(Resolved {
                    node,
                    parent: None,
                    last: Last::Name,
                    slash: false,
                });
            }
        }
    }
    if canon.is_empty() {
        canon.set(b"/")?;
        let root = layers.root(host)?;
        return Ok(Resolved {
            node: root,
            parent: None,
            last: Last::Root,
            slash: false,
        });
    }
    if after_dotdot || !known {
        // Ended on `..` (or a link's `..`): look the canonical directory up
        // again.
        let again = Buf::from(canon.as_bytes())?;
        return walk(
            layers,
            again.as_bytes(),
            usize::MAX,
            false,
            canon,
            host,
            links,
        );
    }
    let kind = layers.kind(&node);
    if directory && !matches!(kind, None | Some(KIND_DIR) | Some(KIND_KERNELS)) {
        return Err(errno::ENOTDIR);
    }
    Ok(Resolved {
        node,
        parent,
        last: Last::Name,
        slash,
    })
}

/// Plain canonical `canon` by `Layers::whole`, and where it is a symlink
/// to be followed, its target the same way while each is plain (no `..`,
/// no trailing slash): `/etc/localtime`, which `localtime(3)` asks for on
/// every call, is a link into /usr/share/zoneinfo. `canon` ends as the
/// target's path. None, with `links` as it was, to walk instead.
fn whole_following<L: Layers>(
    layers: &L,
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
    links: &mut usize,
) -> Result<Option<L::Node>, i32> {
    if !follow {
        return layers.whole(canon.as_bytes(), false, host);
    }
    let mut hops = 0;
    let mut target = Buf::new();
    loop {
        let Some(node) = layers.whole(canon.as_bytes(), false, host)? else {
            return Ok(None);
        };
        if layers.kind(&node) != Some(KIND_SYMLINK) {
            *links += hops;
            return Ok(Some(node));
        }
        hops += 1;
        if *links + hops > MAX_LINKS {
            return Ok(None);
        }
        layers.read_link(&node, canon.as_bytes(), host, &mut target)?;
        let next = if target.as_bytes().first() == Some(&b'/') {
            plain(target.as_bytes(), canon)?
        } else {
            // Relative to the link's directory, a real one (`whole`
            // answered for the link).
            let mut dir = Buf::from(canon.as_bytes())?;
            pop(&mut dir);
            plain_below(dir.as_bytes(), target.as_bytes(), canon)
        };
        if !next {
            return Ok(None);
        }
    }
}

/// The directory `canon` (reached by `..` or a symlink), looked up again:
/// only the permission checks need it.
fn directory_again<L: Layers>(layers: &L, canon: &Buf, host: &mut Buf) -> Result<L::Node, i32> {
    let path = Buf::from(if canon.is_empty() {
        b"/"
    } else {
        canon.as_bytes()
    })?;
    let mut again = Buf::new();
    let mut links = 0;
    let found = walk(
        layers,
        path.as_bytes(),
        usize::MAX,
        true,
        &mut again,
        host,
        &mut links,
    )?;
    Ok(found.node)
}

#[cfg(test)]
mod tests;
