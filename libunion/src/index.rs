//! The `no_std` reader of the lower layers' index (format documented in
//! `lpmx_core::index`), mapped read-only once per process: a lookup is a
//! binary search with no system call, whatever the number of layers.

use crate::sys;

const MAGIC: &[u8; 8] = b"LPMXIDX\0";
const VERSION: u32 = 2;
const HEADER: usize = 40;
const LAYER: usize = 16;
const ENTRY: usize = 56;

pub const KIND_DIR: u8 = 1;
pub const KIND_SYMLINK: u8 = 3;

#[derive(Clone, Copy)]
pub struct Index {
    bytes: &'static [u8],
    layers: usize,
    count: usize,
    strings: usize,
}

#[derive(Clone, Copy)]
pub struct FullEntry {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub device: u32,
}

#[derive(Clone, Copy)]
pub struct Entry {
    pub layer: u16,
    pub kind: u8,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl Index {
    /// Maps the index at NUL-terminated `path`; None (with a warning) when
    /// it cannot be read or is not an index of this version.
    pub fn map(path: &[u8]) -> Option<Index> {
        let fd = sys::openat(sys::AT_FDCWD, path.as_ptr(), sys::O_CLOEXEC, 0).ok()? as i32;
        let mut st = [0u64; 18];
        let size = sys::fstat(fd, st.as_mut_ptr().cast()).map(|_| st[6] as usize);
        let mapped = size.and_then(|size| sys::mmap_read(fd, size).map(|p| (p, size)));
        let _ = sys::close(fd);
        let (addr, size) = mapped.ok()?;
        // SAFETY: the mapping is `size` bytes, read-only, never unmapped.
        let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(addr as *const u8, size) };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC || u32_at(bytes, 8) != VERSION {
            return None;
        }
        let layers = u32_at(bytes, 12) as usize;
        let count = u64_at(bytes, 16) as usize;
        let strings = u64_at(bytes, 24) as usize;
        let strings_len = u64_at(bytes, 32) as usize;
        let expected = HEADER
            .checked_add(layers.checked_mul(LAYER)?)?
            .checked_add(count.checked_mul(ENTRY)?)?;
        if strings != expected || bytes.len() != strings.checked_add(strings_len)? {
            return None;
        }
        Some(Index {
            bytes,
            layers,
            count,
            strings,
        })
    }

    pub fn layers(&self) -> usize {
        self.layers
    }

    fn string(&self, at: usize) -> &'static [u8] {
        let offset = u64_at(self.bytes, at) as usize;
        let len = u32_at(self.bytes, at + 8) as usize;
        let start = self.strings + offset;
        self.bytes.get(start..start + len).unwrap_or(&[])
    }

    fn entry_at(&self, i: usize) -> usize {
        HEADER + self.layers * LAYER + i * ENTRY
    }

    /// The root directory of `layer` (top first), without a trailing `/`.
    pub fn layer_root(&self, layer: u16) -> &'static [u8] {
        if usize::from(layer) >= self.layers {
            return &[];
        }
        self.string(HEADER + usize::from(layer) * LAYER)
    }

    pub fn path(&self, i: usize) -> &'static [u8] {
        self.string(self.entry_at(i))
    }

    /// The inode of entry `i`'s file in its layer.
    pub fn ino(&self, i: usize) -> u64 {
        u64_at(self.bytes, self.entry_at(i) + 32)
    }

    /// Entry `i`'s symlink target (empty for other kinds).
    pub fn link(&self, i: usize) -> &'static [u8] {
        self.string(self.entry_at(i) + 40)
    }

    /// Entry `i` with what the image records: mode (type and permissions),
    /// owner, group, device (major << 20 | minor).
    pub fn full_entry(&self, i: usize) -> FullEntry {
        let at = self.entry_at(i);
        FullEntry {
            mode: u32_at(self.bytes, at + 16),
            uid: u32_at(self.bytes, at + 20),
            gid: u32_at(self.bytes, at + 24),
            device: u32_at(self.bytes, at + 28),
        }
    }

    pub fn entry(&self, i: usize) -> Entry {
        let at = self.entry_at(i);
        Entry {
            layer: u16::from_le_bytes([self.bytes[at + 12], self.bytes[at + 13]]),
            kind: self.bytes[at + 14],
        }
    }

    /// The first position whose path is not below `key` in byte order.
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = (low + high) / 2;
            if self.path(middle) < key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The entry of relative path `key` (`usr/bin`; the root is empty).
    pub fn lookup(&self, key: &[u8]) -> Option<Entry> {
        self.position(key).map(|i| self.entry(i))
    }

    /// Where relative path `key` is in the index.
    pub fn position(&self, key: &[u8]) -> Option<usize> {
        let i = self.lower_bound(key);
        (i < self.count && self.path(i) == key).then_some(i)
    }

    /// The layers (a bit per layer, top first) holding directory `key` or
    /// any of its entries, and whether it has any entry.
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

    /// Calls `each(name, entry, position)` for every child of directory
    /// `key`, skipping the subtrees below the children.
    pub fn children(&self, key: &[u8], mut each: impl FnMut(&[u8], Entry, usize)) {
        let mut prefix = crate::buf::Buf::new();
        if !key.is_empty() && (prefix.push(key).is_err() || prefix.push(b"/").is_err()) {
            return;
        }
        let mut i = self.lower_bound(prefix.as_bytes());
        if key.is_empty() {
            i += 1; // the root itself
        }
        while i < self.count {
            let path = self.path(i);
            if !crate::buf::starts_with(path, prefix.as_bytes()) {
                break;
            }
            let rest = &path[prefix.len()..];
            match rest.iter().position(|&b| b == b'/') {
                // Below a child: jump past that child's subtree ('0' follows '/').
                Some(slash) => {
                    let mut next = crate::buf::Buf::new();
                    if next.push(&path[..prefix.len() + slash]).is_err() || next.push(b"0").is_err()
                    {
                        return;
                    }
                    i = self.lower_bound(next.as_bytes()).max(i + 1);
                }
                None => {
                    each(rest, self.entry(i), i);
                    i += 1;
                }
            }
        }
    }
}
