//! The index of a stack's lower layers: every path the merged image shows,
//! sorted, with the layer holding it and the attributes a container must
//! see (including those only a layer's `meta.json` records). Built once per
//! stack of layers, when `lpmx-unpack` has unpacked them, and shared by
//! every container of that image (`indexes/<hex>` in the store); libunion
//! maps it read-only so a lookup in the lower layers is a binary search,
//! with no system call, however many layers there are.
//!
//! Format, version 4, little-endian:
//!
//! ```text
//! header   magic "LPMXIDX\0", version u32, layer count u32,
//!          entry count u64, string table offset u64, string table length u64
//! layers   per layer, top first: root path offset u64, length u32, 0 u32
//! entries  per path, sorted by its bytes (56 bytes each):
//!          path offset u64, path length u32, layer u16, kind u8, 0 u8,
//!          mode u32 (st_mode: type and permission bits), uid u32, gid u32,
//!          device u32 (major << 20 | minor, for device nodes),
//!          inode u64 (of the layer's file), symlink target offset u64,
//!          target length u32, 0 u32
//! disk     per entry, in the same order (80 bytes each): the layer's file
//!          as lstat showed it when the index was built: mode u32, uid u32,
//!          gid u32, nlink u32 (0: not recorded, ask the file), size u64,
//!          blocks u64, blksize u32, flags u32 (1: has extended
//!          attributes, or `llistxattr` could not tell), atime, mtime, ctime seconds
//!          i64 each, their nanoseconds u32 each, 0 u32
//! strings  the paths, relative without a leading `/` (the root is ""),
//!          and symlink targets
//! ```
//!
//! With the inodes and link targets in the index, a lower directory is
//! listed and a lower symlink followed without any system call; with the
//! disk attributes, a lower file's `stat` is answered without one (layers
//! never change; the access time is the one of the index's build). The inodes
//! are those of the store the index was built in: a store copied file by
//! file needs its indexes rebuilt (delete `indexes/`; lpmx-mkroot builds
//! them again).

use core::cmp::Ordering;
use core::fmt;

pub const MAGIC: &[u8; 8] = b"LPMXIDX\0";
pub const VERSION: u32 = 4;
const HEADER: usize = 40;
const LAYER: usize = 16;
const ENTRY: usize = 56;
const DISK: usize = 80;

/// What a path is. Its byte is the index's; 0 is no kind (a path that is
/// not there, or one whose kind the kernel decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Dir = 1,
    File = 2,
    Symlink = 3,
    Char = 4,
    Block = 5,
    Fifo = 6,
    Socket = 7,
}

pub const KIND_DIR: u8 = Kind::Dir as u8;
pub const KIND_FILE: u8 = Kind::File as u8;
pub const KIND_SYMLINK: u8 = Kind::Symlink as u8;

const S_IFMT: u32 = 0o170000;

impl Kind {
    /// The kind of an `st_mode`.
    pub const fn of_mode(mode: u32) -> Kind {
        match mode & S_IFMT {
            0o040000 => Kind::Dir,
            0o100000 => Kind::File,
            0o120000 => Kind::Symlink,
            0o020000 => Kind::Char,
            0o060000 => Kind::Block,
            0o010000 => Kind::Fifo,
            _ => Kind::Socket,
        }
    }

    /// The kind of the index's byte (an unknown byte reads as a socket,
    /// the kind nothing opens).
    pub const fn of_byte(byte: u8) -> Kind {
        match byte {
            1 => Kind::Dir,
            2 => Kind::File,
            3 => Kind::Symlink,
            4 => Kind::Char,
            5 => Kind::Block,
            6 => Kind::Fifo,
            _ => Kind::Socket,
        }
    }

    /// The `st_mode` type bits.
    pub const fn type_bits(self) -> u32 {
        match self {
            Kind::Dir => 0o040000,
            Kind::File => 0o100000,
            Kind::Symlink => 0o120000,
            Kind::Char => 0o020000,
            Kind::Block => 0o060000,
            Kind::Fifo => 0o010000,
            Kind::Socket => 0o140000,
        }
    }
}

/// One path of the merged lower layers (its symlink target: `Index::link`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index into the layers, top first.
    pub layer: u16,
    pub kind: Kind,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// major << 20 | minor, for device nodes.
    pub device: u32,
    /// The inode of the layer's file.
    pub ino: u64,
    /// The layer's file as `lstat` showed it.
    pub disk: Disk,
}

/// A layer's file as `lstat` showed it when the index was built: what a
/// container's `stat` of it reports (with the layer's device and the
/// entry's inode). `nlink` 0: not recorded (a layer that may still change,
/// the writable layer an `--ephemeral` run reads): ask the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub blocks: u64,
    pub blksize: u32,
    /// `DISK_HAS_XATTRS` when the file has extended attributes.
    pub flags: u32,
    /// Seconds and nanoseconds.
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
}

/// `Disk::flags`: `llistxattr` of the file found extended attributes (or
/// could not tell). Without it, a file of the image has none.
pub const DISK_HAS_XATTRS: u32 = 1;

impl Disk {
    pub fn is_recorded(&self) -> bool {
        self.nlink != 0
    }

    /// Whether the file is recorded and has no extended attributes.
    pub fn has_no_xattrs(&self) -> bool {
        self.is_recorded() && self.flags & DISK_HAS_XATTRS == 0
    }

    fn read(bytes: &[u8], at: usize) -> Disk {
        let time = |i: usize| {
            (
                u64_at(bytes, at + 40 + 8 * i) as i64,
                u32_at(bytes, at + 64 + 4 * i),
            )
        };
        Disk {
            mode: u32_at(bytes, at),
            uid: u32_at(bytes, at + 4),
            gid: u32_at(bytes, at + 8),
            nlink: u32_at(bytes, at + 12),
            size: u64_at(bytes, at + 16),
            blocks: u64_at(bytes, at + 24),
            blksize: u32_at(bytes, at + 32),
            flags: u32_at(bytes, at + 36),
            atime: time(0),
            mtime: time(1),
            ctime: time(2),
        }
    }

    fn write(&self, out: &mut dyn FnMut(&[u8])) {
        for value in [self.mode, self.uid, self.gid, self.nlink] {
            out(&value.to_le_bytes());
        }
        out(&self.size.to_le_bytes());
        out(&self.blocks.to_le_bytes());
        out(&self.blksize.to_le_bytes());
        out(&self.flags.to_le_bytes());
        for (seconds, _) in [self.atime, self.mtime, self.ctime] {
            out(&seconds.to_le_bytes());
        }
        for (_, nanoseconds) in [self.atime, self.mtime, self.ctime] {
            out(&nanoseconds.to_le_bytes());
        }
        out(&0u32.to_le_bytes());
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexError {
    NotAnIndex,
    Version(u32),
    Inconsistent,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::NotAnIndex => f.write_str("not an lpmx index"),
            IndexError::Version(v) => write!(f, "index version {v} (this lpmx reads {VERSION})"),
            IndexError::Inconsistent => f.write_str("truncated or inconsistent index"),
        }
    }
}

impl core::error::Error for IndexError {}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Whether `head` (the first 12 bytes of a file, or more) begins an index
/// of this version.
pub fn is_current(head: &[u8]) -> bool {
    head.len() >= 12 && &head[..8] == MAGIC && u32_at(head, 8) == VERSION
}

/// `path` against `a` followed by `b`, in byte order.
fn cmp_joined(path: &[u8], a: &[u8], b: &[u8]) -> Ordering {
    if path.len() < a.len() {
        return match path.cmp(&a[..path.len()]) {
            Ordering::Equal => Ordering::Less,
            other => other,
        };
    }
    match path[..a.len()].cmp(a) {
        Ordering::Equal => path[a.len()..].cmp(b),
        other => other,
    }
}

/// A read index over its bytes, checked once: lookups never fail.
#[derive(Clone, Copy)]
pub struct Index<'a> {
    bytes: &'a [u8],
    layers: usize,
    count: usize,
    strings: usize,
}

impl<'a> Index<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Index<'a>, IndexError> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(IndexError::NotAnIndex);
        }
        if u32_at(bytes, 8) != VERSION {
            return Err(IndexError::Version(u32_at(bytes, 8)));
        }
        let layers = u32_at(bytes, 12) as usize;
        let count = u64_at(bytes, 16) as usize;
        let strings = u64_at(bytes, 24) as usize;
        let strings_len = u64_at(bytes, 32) as usize;
        let expected = layers
            .checked_mul(LAYER)
            .zip(count.checked_mul(ENTRY + DISK))
            .and_then(|(l, e)| HEADER.checked_add(l)?.checked_add(e));
        if expected != Some(strings) || strings.checked_add(strings_len) != Some(bytes.len()) {
            return Err(IndexError::Inconsistent);
        }
        Ok(Index {
            bytes,
            layers,
            count,
            strings,
        })
    }

    /// The number of layers.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// The number of paths.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn string(&self, at: usize) -> &'a [u8] {
        let offset = u64_at(self.bytes, at) as usize;
        let len = u32_at(self.bytes, at + 8) as usize;
        let start = self.strings.saturating_add(offset);
        self.bytes
            .get(start..start.saturating_add(len))
            .unwrap_or(&[])
    }

    fn entry_at(&self, i: usize) -> usize {
        HEADER + self.layers * LAYER + i * ENTRY
    }

    /// The root directory of `layer` (top first), without a trailing `/`.
    pub fn layer_root(&self, layer: u16) -> &'a [u8] {
        if usize::from(layer) >= self.layers {
            return &[];
        }
        self.string(HEADER + usize::from(layer) * LAYER)
    }

    /// The path of entry `i`.
    pub fn path(&self, i: usize) -> &'a [u8] {
        self.string(self.entry_at(i))
    }

    /// Every path, in order.
    pub fn paths(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let index = *self;
        (0..self.count).map(move |i| index.path(i))
    }

    /// The inode of entry `i`'s file in its layer.
    pub fn ino(&self, i: usize) -> u64 {
        u64_at(self.bytes, self.entry_at(i) + 32)
    }

    /// Entry `i`'s symlink target (empty for other kinds).
    pub fn link(&self, i: usize) -> &'a [u8] {
        self.string(self.entry_at(i) + 40)
    }

    pub fn entry(&self, i: usize) -> Entry {
        let at = self.entry_at(i);
        let bytes = self.bytes;
        Entry {
            layer: u16::from_le_bytes([bytes[at + 12], bytes[at + 13]]),
            kind: Kind::of_byte(bytes[at + 14]),
            mode: u32_at(bytes, at + 16),
            uid: u32_at(bytes, at + 20),
            gid: u32_at(bytes, at + 24),
            device: u32_at(bytes, at + 28),
            ino: u64_at(bytes, at + 32),
            disk: self.disk(i),
        }
    }

    /// Entry `i`'s file as `lstat` showed it.
    pub fn disk(&self, i: usize) -> Disk {
        Disk::read(
            self.bytes,
            HEADER + self.layers * LAYER + self.count * ENTRY + i * DISK,
        )
    }

    /// The first position whose path is not below `a` followed by `b` in
    /// byte order.
    fn lower_bound_joined(&self, a: &[u8], b: &[u8]) -> usize {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = low + (high - low) / 2;
            if cmp_joined(self.path(middle), a, b) == Ordering::Less {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The first position whose path is not below `key` in byte order.
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        self.lower_bound_joined(key, b"")
    }

    /// Where relative path `key` (`usr/bin`; the root is "") is.
    pub fn position(&self, key: &[u8]) -> Option<usize> {
        let i = self.lower_bound(key);
        (i < self.count && self.path(i) == key).then_some(i)
    }

    /// `position`, searched outward from position `hint` (an earlier
    /// answer): a lookup of a path near the last one (the next entry of a
    /// listing) touches a few neighbouring entries instead of a path
    /// through the whole table. Any hint gives the same answer.
    pub fn position_near(&self, key: &[u8], hint: usize) -> Option<usize> {
        let i = self.lower_bound_near(key, hint);
        (i < self.count && self.path(i) == key).then_some(i)
    }

    fn lower_bound_near(&self, key: &[u8], hint: usize) -> usize {
        if hint >= self.count {
            return self.lower_bound(key);
        }
        let below = |i: usize| self.path(i) < key;
        let (mut low, mut high);
        let mut step = 1;
        if below(hint) {
            low = hint + 1;
            loop {
                let probe = hint + step;
                if probe >= self.count {
                    high = self.count;
                    break;
                }
                if !below(probe) {
                    high = probe;
                    break;
                }
                low = probe + 1;
                step *= 2;
            }
        } else {
            high = hint;
            loop {
                if step > hint {
                    low = 0;
                    break;
                }
                let probe = hint - step;
                if below(probe) {
                    low = probe + 1;
                    break;
                }
                high = probe;
                step *= 2;
            }
        }
        while low < high {
            let middle = low + (high - low) / 2;
            if below(middle) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The entry of relative path `key`.
    pub fn lookup(&self, key: &[u8]) -> Option<Entry> {
        self.position(key).map(|i| self.entry(i))
    }

    /// Calls `each(name, entry, position)` for every child of directory
    /// `key`, in order, skipping the subtrees below the children.
    pub fn children(&self, key: &[u8], mut each: impl FnMut(&'a [u8], Entry, usize)) {
        let slash: &[u8] = if key.is_empty() { b"" } else { b"/" };
        let prefix_len = key.len() + slash.len();
        let mut i = self.lower_bound_joined(key, slash);
        if key.is_empty() && i < self.count && self.path(i).is_empty() {
            i += 1; // the root itself
        }
        while i < self.count {
            let path = self.path(i);
            if path.len() < prefix_len
                || &path[..key.len()] != key
                || &path[key.len()..prefix_len] != slash
            {
                break;
            }
            let rest = &path[prefix_len..];
            match rest.iter().position(|&b| b == b'/') {
                // Below a child: jump past that child's subtree ('0' follows '/').
                Some(at) => {
                    let next = self.lower_bound_joined(&path[..prefix_len + at], b"0");
                    i = next.max(i + 1);
                }
                None => {
                    each(rest, self.entry(i), i);
                    i += 1;
                }
            }
        }
    }

    /// The layers (a bit per layer, top first) holding directory `key` or
    /// any of its children, and whether it has any child.
    pub fn contents(&self, key: &[u8]) -> ([u64; 64], bool) {
        let mut any = false;
        let mut layers = [0u64; 64];
        let mut mark = |layer: u16| {
            if let Some(word) = layers.get_mut(usize::from(layer) / 64) {
                *word |= 1 << (layer % 64);
            }
        };
        if let Some(top) = self.lookup(key) {
            mark(top.layer);
        }
        self.children(key, |_, entry, _| {
            any = true;
            mark(entry.layer)
        });
        (layers, any)
    }
}

/// Writes an index to `out`, piece by piece: `roots` are the layers' root
/// directories, top first; `entries` every path (relative, sorted by its
/// bytes, the root "" first) with its entry and its symlink target. (No
/// allocation: the strings are laid out in the order they are named.)
pub fn encode<'e, I>(roots: &[&[u8]], entries: I, out: &mut impl FnMut(&[u8]))
where
    I: ExactSizeIterator<Item = (&'e [u8], &'e Entry, &'e [u8])> + Clone,
{
    let count = entries.len();
    let strings_offset = HEADER + roots.len() * LAYER + count * (ENTRY + DISK);
    let strings_len: usize = roots.iter().map(|r| r.len()).sum::<usize>()
        + entries
            .clone()
            .map(|(path, _, link)| path.len() + link.len())
            .sum::<usize>();
    out(MAGIC);
    out(&VERSION.to_le_bytes());
    out(&(roots.len() as u32).to_le_bytes());
    out(&(count as u64).to_le_bytes());
    out(&(strings_offset as u64).to_le_bytes());
    out(&(strings_len as u64).to_le_bytes());
    let mut next = 0u64;
    let mut string = |bytes: &[u8], out: &mut dyn FnMut(&[u8])| {
        out(&next.to_le_bytes());
        out(&(bytes.len() as u32).to_le_bytes());
        next += bytes.len() as u64;
    };
    for root in roots {
        string(root, out);
        out(&0u32.to_le_bytes());
    }
    for (path, entry, link) in entries.clone() {
        string(path, out);
        out(&entry.layer.to_le_bytes());
        out(&[entry.kind as u8, 0]);
        for value in [entry.mode, entry.uid, entry.gid, entry.device] {
            out(&value.to_le_bytes());
        }
        out(&entry.ino.to_le_bytes());
        string(link, out);
        out(&0u32.to_le_bytes());
    }
    for (_, entry, _) in entries.clone() {
        entry.disk.write(out);
    }
    for root in roots {
        out(root);
    }
    for (path, _, link) in entries {
        out(path);
        out(link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn entry(layer: u16, kind: Kind) -> Entry {
        Entry {
            layer,
            kind,
            mode: kind.type_bits() | 0o755,
            uid: 0,
            gid: 0,
            device: 0,
            ino: u64::from(layer) + 100,
            disk: Disk {
                mode: kind.type_bits() | 0o700,
                nlink: 1,
                size: u64::from(layer) * 7 + kind as u64,
                flags: u32::from(layer == 1) * DISK_HAS_XATTRS,
                mtime: (1_700_000_000, 5),
                ctime: (-3, 999_999_999),
                ..Disk::default()
            },
        }
    }

    fn tree() -> Vec<u8> {
        let paths: &[(&[u8], Entry, &[u8])] = &[
            (b"", entry(1, Kind::Dir), b""),
            (b"a", entry(0, Kind::Dir), b""),
            (b"a-b", entry(1, Kind::File), b""),
            (b"a/b", entry(1, Kind::Dir), b""),
            (b"a/b/c", entry(1, Kind::File), b""),
            (b"a/b0", entry(0, Kind::File), b""),
            (b"a/l", entry(0, Kind::Symlink), b"../a-b"),
            (b"z", entry(1, Kind::File), b""),
        ];
        let mut out = Vec::new();
        encode(
            &[b"/top", b"/bottom"],
            paths.iter().map(|(p, e, l)| (*p, e, *l)),
            &mut |bytes: &[u8]| out.extend_from_slice(bytes),
        );
        out
    }

    #[test]
    fn written_indexes_read_back() {
        let bytes = tree();
        assert!(is_current(&bytes));
        let index = Index::parse(&bytes).unwrap();
        assert_eq!((index.layers(), index.len()), (2, 8));
        assert_eq!(index.layer_root(1), b"/bottom");
        assert_eq!(index.layer_root(2), b"");
        let l = index.position(b"a/l").unwrap();
        assert_eq!(index.link(l), b"../a-b");
        assert_eq!(index.entry(l).kind, Kind::Symlink);
        assert_eq!(index.lookup(b"a/b/c").unwrap().ino, 101);
        let disk = index.lookup(b"a/b/c").unwrap().disk;
        assert_eq!((disk.size, disk.mode, disk.nlink), (9, 0o100700, 1));
        assert_eq!(
            (disk.mtime, disk.ctime, disk.atime),
            ((1_700_000_000, 5), (-3, 999_999_999), (0, 0))
        );
        assert!(disk.is_recorded() && !Disk::default().is_recorded());
        assert!(index.lookup(b"a/b/").is_none());
        assert!(index.lookup(b"nothing").is_none());
        assert_eq!(index.paths().count(), 8);
    }

    #[test]
    fn lookups_near_a_hint_agree_with_the_whole_search() {
        let bytes = tree();
        let index = Index::parse(&bytes).unwrap();
        let keys: &[&[u8]] = &[
            b"", b"a", b"a-b", b"a/b", b"a/b/c", b"a/b0", b"a/l", b"z", b"0", b"a/", b"a/a",
            b"a/b/d", b"zz", b"a.",
        ];
        for key in keys {
            for hint in 0..index.len() + 2 {
                assert_eq!(
                    index.position_near(key, hint),
                    index.position(key),
                    "{:?} from {hint}",
                    std::str::from_utf8(key)
                );
            }
        }
    }

    #[test]
    fn children_skip_subtrees_and_siblings_sharing_a_prefix() {
        let bytes = tree();
        let index = Index::parse(&bytes).unwrap();
        let mut seen = Vec::new();
        index.children(b"", |name, _, _| seen.push(name));
        assert_eq!(seen, [&b"a"[..], b"a-b", b"z"]);
        seen.clear();
        index.children(b"a", |name, _, _| seen.push(name));
        assert_eq!(seen, [&b"b"[..], b"b0", b"l"]);
        seen.clear();
        index.children(b"a/b/c", |name, _, _| seen.push(name));
        assert!(seen.is_empty());
        let (layers, any) = index.contents(b"a");
        assert!(any);
        assert_eq!(layers[0], 0b11);
    }

    #[test]
    fn damaged_indexes_are_refused() {
        let bytes = tree();
        assert_eq!(Index::parse(b"garbage").err(), Some(IndexError::NotAnIndex));
        assert_eq!(
            Index::parse(&bytes[..bytes.len() - 1]).err(),
            Some(IndexError::Inconsistent)
        );
        let mut other = bytes.clone();
        other[8] = 9;
        assert_eq!(Index::parse(&other).err(), Some(IndexError::Version(9)));
        assert!(!is_current(&other));
        let mut huge = bytes.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Index::parse(&huge).err(), Some(IndexError::Inconsistent));
    }

    #[test]
    fn kinds_round_trip_through_modes_and_bytes() {
        for kind in [
            Kind::Dir,
            Kind::File,
            Kind::Symlink,
            Kind::Char,
            Kind::Block,
            Kind::Fifo,
            Kind::Socket,
        ] {
            assert_eq!(Kind::of_mode(kind.type_bits() | 0o644), kind);
            assert_eq!(Kind::of_byte(kind as u8), kind);
        }
    }
}
