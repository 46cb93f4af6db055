//! Raw system calls (`lpmx-sys`), and the few libc symbols libunion calls
//! by name, all of them versioned no later than `GLIBC_2.17`.

use core::ffi::{c_char, c_int, c_void};

pub use lpmx_sys::*;

#[link(name = "c")]
unsafe extern "C" {
    fn __errno_location() -> *mut c_int;
    pub fn malloc(size: usize) -> *mut c_void;
    pub fn free(ptr: *mut c_void);
    pub fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    pub fn unsetenv(name: *const c_char) -> c_int;
    pub fn getenv(name: *const c_char) -> *mut c_char;
    pub fn qsort(
        base: *mut c_void,
        count: usize,
        size: usize,
        compare: unsafe extern "C" fn(*const c_void, *const c_void) -> c_int,
    );
    pub static mut environ: *const *const c_char;
}

/// Whether libunion was linked into a static program by the loader
/// (`lpmx_static_enter`): there is no libc then, and no libc's thread data.
static STANDALONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn set_standalone() {
    STANDALONE.store(true, core::sync::atomic::Ordering::Release);
}

pub fn standalone() -> bool {
    STANDALONE.load(core::sync::atomic::Ordering::Acquire)
}

/// This thread's errno: libc's, or in a static program the one of the
/// trap's handler stack this runs on.
fn errno_location() -> *mut c_int {
    if standalone() {
        lpmx_trap::stack::errno_location()
    } else {
        // SAFETY: libc's, for this thread.
        unsafe { __errno_location() }
    }
}

pub fn set_errno(errno: i32) {
    // SAFETY: this thread's errno.
    unsafe { *errno_location() = errno }
}

pub fn errno() -> i32 {
    // SAFETY: as above.
    unsafe { *errno_location() }
}

/// Turns a result into the C convention: the value, or -1 with errno set.
pub fn c_ret(result: Sys) -> c_int {
    match result {
        Ok(v) => v as c_int,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// The next definition of `name` (NUL-terminated) after libunion's.
pub fn next(name: &[u8]) -> *mut c_void {
    crate::symbols::next(name)
}

/// Looks up and caches the next definition of a libc function.
macro_rules! real {
    ($name:literal: $ty:ty) => {{
        static SLOT: core::sync::atomic::AtomicPtr<core::ffi::c_void> =
            core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
        let mut f = SLOT.load(core::sync::atomic::Ordering::Relaxed);
        if f.is_null() {
            f = $crate::sys::next(concat!($name, "\0").as_bytes());
            if f.is_null() {
                // The image's libc lacks it (closefrom before glibc 2.34):
                // remembered, so later calls do not search again.
                f = $crate::sys::ABSENT;
            }
            SLOT.store(f, core::sync::atomic::Ordering::Relaxed);
        }
        $crate::sys::as_fn::<$ty>(f)
    }};
}
pub(crate) use real;

/// What [`real!`] keeps for a function no object defines: never a
/// function's address (it is in the first page, which nothing maps).
pub const ABSENT: *mut c_void = core::ptr::without_provenance_mut(1);

/// A function pointer from `next`: callers name the libc function's
/// exact type, which is what makes calling it sound.
pub fn as_fn<F: Copy>(symbol: *mut c_void) -> Option<F> {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<*mut c_void>()) };
    // SAFETY: F is a function pointer type of the same size.
    (!symbol.is_null() && symbol != ABSENT).then(|| unsafe { core::mem::transmute_copy(&symbol) })
}
