//! Fake root's view of open descriptors: what `fstat` reports of a file of
//! the image's layers (the image's record) or of the writable layer (its
//! own), and the attributes `fchmod` and `fchown` start from.

use core::ffi::{c_int, c_void};

use crate::buf::Buf;
use crate::export::export;
use crate::resolve::Place;
use crate::root::{Attrs, active, adjust_stat, adjust_statx_as, attrs};
use crate::state;
use crate::sys;

/// Fixes the `struct statx` of descriptor `fd` (`AT_EMPTY_PATH`).
pub fn adjust_fd_statx(fd: i32, buf: *mut c_void) {
    with_fd_image(fd, |image| adjust_statx_as(buf, image));
}

/// The container path (and host path) of `fd` when it is a file of the
/// image's layers, not of the writable layer: its record is then the
/// image's, and changing it changes a copy.
pub fn fd_image(fd: i32) -> Option<(Buf, Buf)> {
    let state = state::get();
    if !state.active || crate::fdpaths::is_upper_fd(fd) {
        return None;
    }
    let mut canon = Buf::new();
    if !crate::fdpaths::fd_path(state, fd, &mut canon) {
        return None;
    }
    let mut resolved = Buf::new();
    let mut host = Buf::new();
    let found =
        crate::resolve::resolve(state, canon.as_bytes(), false, &mut resolved, &mut host).ok()?;
    matches!(found.place, Place::Lower(_)).then_some((resolved, host))
}

fn image_path_of(fd: i32) -> Option<Buf> {
    fd_image(fd).map(|(canon, _)| canon)
}

/// Fixes the `struct stat` of descriptor `fd` (fake root).
pub fn adjust_fd_stat(fd: i32, buf: *mut c_void) {
    with_fd_image(fd, |image| adjust_stat(buf, image));
}

/// Calls `f` with the image path (`usr/bin/x`) of descriptor `fd` when it
/// is a file of the image's layers, `None` otherwise.
fn with_fd_image<T>(fd: i32, f: impl FnOnce(Option<&[u8]>) -> T) -> T {
    let image = image_path_of(fd);
    f(image
        .as_ref()
        .map(|canon| canon.as_bytes().get(1..).unwrap_or(b"")))
}

/// The attributes of open file `fd` as fake root sees them (`st` its
/// fstat), and its image path when it is a file of the image's layers.
pub fn fd_attrs(fd: i32, st: &mut [u64; 18]) -> Result<(Attrs, Option<(Buf, Buf)>), i32> {
    sys::fstat(fd, st.as_mut_ptr().cast())?;
    let image = fd_image(fd);
    let key = image
        .as_ref()
        .map(|(canon, _)| canon.as_bytes().get(1..).unwrap_or(b""));
    Ok((attrs(st, key), image))
}

export! {
    #[safe]
    fn fstat(fd: c_int, buf: *mut c_void) -> c_int {
        let result = sys::fstat(fd, buf);
        if result.is_ok() && active() {
            adjust_fd_stat(fd, buf);
        }
        sys::c_ret(result)
    }
    fn fstat64(fd: c_int, buf: *mut c_void) -> c_int { fstat(fd, buf) }
    fn __fxstat(_ver: c_int, fd: c_int, buf: *mut c_void) -> c_int { fstat(fd, buf) }
    fn __fxstat64(_ver: c_int, fd: c_int, buf: *mut c_void) -> c_int { fstat(fd, buf) }
}
