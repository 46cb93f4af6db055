//! A call's path to the host file it names, and what the container
//! records of that file: what every path function starts with.

use core::ffi::c_char;

use crate::buf::Buf;
use crate::perm::Meta;
use crate::resolve::{Found, Place, resolve, resolve_at};
use crate::state::{self, is_self_exe};
use crate::sys;

/// The host file for `path`; `Ok(None)` leaves the call to the kernel
/// unchanged (no container, an empty path, a descriptor outside it).
///
/// # Safety
/// `path` is null or a C string.
pub unsafe fn translate(
    dirfd: i32,
    path: *const c_char,
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Option<Found>, i32> {
    if !state::get().active {
        return Ok(None);
    }
    translate_bytes(dirfd, lpmx_sys::user::path(path)?, follow, canon, host)
}

/// `translate` of a path already read.
pub fn translate_bytes(
    dirfd: i32,
    bytes: &[u8],
    follow: bool,
    canon: &mut Buf,
    host: &mut Buf,
) -> Result<Option<Found>, i32> {
    let state = state::get();
    if !state.active || bytes.is_empty() {
        return Ok(None);
    }
    let found = match resolve_at(state, dirfd, bytes, follow, canon, host) {
        // A descriptor outside the container: the kernel answers.
        Err(sys::EBADF) => return Ok(None),
        other => other?,
    };
    if follow && found.under_bind && is_self_exe(canon.as_bytes()) && !state.exe.is_empty() {
        let mut exe = Buf::new();
        return resolve(state, state.exe, true, &mut exe, host).map(Some);
    }
    Ok(Some(found))
}

/// What the container records of the file `found` (fake root).
pub fn meta_of(found: &Found, canon: &Buf, host: &Buf) -> Result<Meta, i32> {
    let state = state::get();
    crate::root::meta(
        state,
        found.place,
        canon.as_bytes().get(1..).unwrap_or(b""),
        found.stat.as_ref(),
        host,
    )
}

/// What the container records of the directory holding `found`'s final
/// component (fake root).
pub fn parent_meta(found: &Found, canon: &Buf, host: &Buf) -> Result<Meta, i32> {
    let state = state::get();
    let cut = canon
        .as_bytes()
        .iter()
        .rposition(|&b| b == b'/')
        .unwrap_or(0);
    let parent_canon = &canon.as_bytes()[..cut];
    let key = parent_canon.get(1..).unwrap_or(b"");
    if let Some(parent) = found.parent {
        let mut parent_host = Buf::new();
        match parent.place {
            Place::Upper => {
                parent_host.set(state.upper)?;
                parent_host.push(parent_canon)?;
            }
            _ => {
                let h = host.as_bytes();
                let end = h.iter().rposition(|&b| b == b'/').unwrap_or(0).max(1);
                parent_host.set(&h[..end])?;
            }
        }
        return crate::root::meta(state, parent.place, key, None, &parent_host);
    }
    let path = Buf::from(if parent_canon.is_empty() {
        b"/"
    } else {
        parent_canon
    })?;
    let (mut again, mut again_host) = (Buf::new(), Buf::new());
    let dir = resolve(state, path.as_bytes(), true, &mut again, &mut again_host)?;
    meta_of(&dir, &again, &again_host)
}
