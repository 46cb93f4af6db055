//! Fixed-size path buffers on the stack: the preload and the trap never
//! allocate to translate a path (they may run in a `vfork` child or a
//! signal handler); and the errors path work reports, as Linux numbers them.

use core::ffi::c_char;
use core::mem::MaybeUninit;

/// Linux's numbers for the errors of path resolution.
pub mod errno {
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const ENOTDIR: i32 = 20;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ELOOP: i32 = 40;
}

/// Room for a container path (`PATH_MAX`) under a layer's root.
pub const CAPACITY: usize = 4096 + 512;

/// Only `bytes[..=len]` is initialised (the contents and a NUL): paths
/// are translated millions of times, and clearing 4 KiB each time would
/// cost more than the translation.
pub struct Buf {
    len: usize,
    bytes: [MaybeUninit<u8>; CAPACITY + 1],
}

impl Default for Buf {
    fn default() -> Buf {
        Buf::new()
    }
}

impl Buf {
    pub const fn new() -> Buf {
        let mut bytes = [MaybeUninit::uninit(); CAPACITY + 1];
        bytes[0] = MaybeUninit::new(0);
        Buf { len: 0, bytes }
    }

    pub fn from(bytes: &[u8]) -> Result<Buf, i32> {
        let mut buf = Buf::new();
        buf.push(bytes)?;
        Ok(buf)
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the first len bytes are initialised.
        unsafe { core::slice::from_raw_parts(self.bytes.as_ptr().cast(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.bytes[0] = MaybeUninit::new(0);
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = len.min(self.len);
        self.bytes[self.len] = MaybeUninit::new(0);
    }

    pub fn set(&mut self, bytes: &[u8]) -> Result<(), i32> {
        self.clear();
        self.push(bytes)
    }

    /// Appends, keeping a NUL after the contents; ENAMETOOLONG if full.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), i32> {
        let end = self.len + bytes.len();
        if end > CAPACITY {
            return Err(errno::ENAMETOOLONG);
        }
        // SAFETY: end <= CAPACITY; the source and the buffer do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.bytes.as_mut_ptr().add(self.len).cast(),
                bytes.len(),
            )
        };
        self.len = end;
        self.bytes[end] = MaybeUninit::new(0);
        Ok(())
    }

    /// The contents as a C string.
    pub fn c(&self) -> *const u8 {
        self.bytes.as_ptr().cast()
    }

    /// The whole buffer, for a system call to fill; then `set_len` with
    /// what it wrote.
    pub fn spare(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr().cast()
    }

    /// Declares the first `len` bytes written (by a system call).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(CAPACITY);
        self.bytes[self.len] = MaybeUninit::new(0);
    }
}

/// The bytes of a C string (without its NUL).
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string that outlives the result.
pub unsafe fn cstr<'a>(p: *const c_char) -> &'a [u8] {
    if p.is_null() {
        return &[];
    }
    let mut len = 0;
    // SAFETY: the string is NUL-terminated.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: len bytes were just read.
    unsafe { core::slice::from_raw_parts(p.cast(), len) }
}

pub fn starts_with(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && &bytes[..prefix.len()] == prefix
}

/// Whether `path` is `prefix` or below it (component-wise).
pub fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    if prefix == b"/" {
        return path.first() == Some(&b'/');
    }
    starts_with(path, prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}
