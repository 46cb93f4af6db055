//! Reading the strings a program passes, as the kernel does: a pointer to
//! memory it cannot read is `EFAULT`, not a crash inside libunion.
//!
//! Each page is checked once before its first byte is read
//! (`process_vm_readv` of one byte, else `mincore`), and remembered: path
//! strings live on a few stack, heap and data pages, so nearly every
//! string is read with no system call. A check of the page after the last
//! one checked asks for the next pages too: a program's heap grows into
//! them (`ls -lR` of a big tree reads paths on a thousand new pages). A page remembered as readable and
//! then unmapped by the program is read without a check again (the
//! program then passes a pointer it freed).

use core::ffi::c_char;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate as sys;

const PAGE: usize = 4096;
const SLOTS: usize = 1024;
/// Pages asked for in one check of the page after the last one checked:
/// the one needed and those after it.
const AHEAD: usize = 16;
/// The page last checked, plus one.
static LAST_CHECKED: AtomicUsize = AtomicUsize::new(0);
/// Page numbers known readable, plus one (0 is an empty slot).
static READABLE: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

fn readable(page: usize) -> bool {
    let slot = &READABLE[(page / PAGE) % SLOTS];
    if slot.load(Ordering::Relaxed) == page + 1 {
        return true;
    }
    // A first check asks for its page alone (a short-lived program checks
    // a few pages; each asked for costs the kernel a page walk).
    let ahead = if LAST_CHECKED.swap(page + 1, Ordering::Relaxed) == page.wrapping_sub(PAGE) + 1 {
        AHEAD
    } else {
        1
    };
    let readable = match sys::readable_pages(page, ahead) {
        Ok(pages) => pages,
        Err(sys::EFAULT) => 0,
        // process_vm_readv refused (a sandbox): at least something is mapped.
        Err(_) => usize::from(sys::mincore(page).is_ok()),
    };
    for i in 0..readable {
        let next = page + i * PAGE;
        READABLE[(next / PAGE) % SLOTS].store(next + 1, Ordering::Relaxed);
    }
    readable > 0
}

/// The C string at `p` (without its NUL), `EFAULT` when it cannot be read,
/// `ENAMETOOLONG` when it has `limit` bytes or more.
pub fn c_str<'a>(p: *const c_char, limit: usize) -> Result<&'a [u8], i32> {
    if p.is_null() {
        return Err(sys::EFAULT);
    }
    let start = p as usize;
    let mut len = 0;
    loop {
        let at = start + len;
        if (at.is_multiple_of(PAGE) || len == 0) && !readable(at & !(PAGE - 1)) {
            return Err(sys::EFAULT);
        }
        // SAFETY: the page holding this byte is readable.
        if unsafe { *(at as *const u8) } == 0 {
            break;
        }
        len += 1;
        if len >= limit {
            return Err(sys::ENAMETOOLONG);
        }
    }
    // SAFETY: len readable bytes were just read.
    Ok(unsafe { core::slice::from_raw_parts(p.cast(), len) })
}

/// A path argument: at most `PATH_MAX - 1` bytes, as the kernel takes.
pub fn path<'a>(p: *const c_char) -> Result<&'a [u8], i32> {
    c_str(p, sys::PATH_MAX)
}

/// Whether the `len` bytes at `p` may be read (EFAULT otherwise).
pub fn check(p: *const u8, len: usize) -> Result<(), i32> {
    if p.is_null() {
        return Err(sys::EFAULT);
    }
    let start = p as usize & !(PAGE - 1);
    let end = (p as usize).saturating_add(len.max(1));
    let mut page = start;
    while page < end {
        if !readable(page) {
            return Err(sys::EFAULT);
        }
        page += PAGE;
    }
    Ok(())
}
