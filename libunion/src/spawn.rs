//! posix_spawn's file actions, in the container.
//!
//! glibc carries out a spawn's file actions (`addopen`, `addchdir_np`) in
//! the child with its internal calls, on the paths as given: host paths,
//! past libunion. So libunion resolves each path when the action is added,
//! as the child would see it (relative to the directory an earlier
//! `addchdir` moved to), and hands glibc the host path. An action that
//! would fail in the child is remembered and the spawn returns its error,
//! as glibc reports a child's failed action.

use core::ffi::{c_char, c_int, c_void};

use crate::buf::Buf;
use crate::export::export;
use crate::index::KIND_DIR;
use crate::lock::SpinLock;
use crate::resolve::{Place, resolve_at};
use crate::state;
use crate::sys::{self, real};

const SLOTS: usize = 16;

struct Actions {
    /// The file actions object (its address), 0 when the slot is free.
    key: usize,
    /// The child's working directory after the actions so far (empty:
    /// the parent's).
    cwd: Buf,
    /// The first action that will fail in the child.
    error: i32,
}

static TABLE: SpinLock<[Actions; SLOTS]> = SpinLock::new(
    [const {
        Actions {
            key: 0,
            cwd: Buf::new(),
            error: 0,
        }
    }; SLOTS],
);

fn with_slot<T>(actions: *const c_void, f: impl FnOnce(&mut Actions) -> T) -> Option<T> {
    let key = actions as usize;
    TABLE.with(|table| {
        let at = table
            .iter()
            .position(|a| a.key == key)
            .or_else(|| table.iter().position(|a| a.key == 0))?;
        let slot = &mut table[at];
        if slot.key != key {
            slot.key = key;
            slot.cwd.clear();
            slot.error = 0;
        }
        Some(f(slot))
    })
}

fn forget(actions: *const c_void) {
    let key = actions as usize;
    TABLE.with(|table| {
        for slot in table.iter_mut().filter(|a| a.key == key) {
            slot.key = 0;
        }
    });
}

/// What a spawn with `actions` needs to know: the child's directory (into
/// `cwd`, left empty when unchanged) and the error an action will meet.
pub fn for_spawn(actions: *const c_void, cwd: &mut Buf) -> i32 {
    if actions.is_null() {
        return 0;
    }
    let key = actions as usize;
    TABLE.with(|table| match table.iter().find(|a| a.key == key) {
        Some(slot) => {
            let _ = cwd.set(slot.cwd.as_bytes());
            slot.error
        }
        None => 0,
    })
}

/// `path` as the child will see it after the actions so far.
fn child_path(slot: &Actions, path: &[u8]) -> Result<Buf, i32> {
    let mut full = Buf::new();
    if path.first() != Some(&b'/') && !slot.cwd.is_empty() {
        full.set(slot.cwd.as_bytes())?;
        full.push(b"/")?;
    }
    full.push(path)?;
    Ok(full)
}

type InitFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type AddOpenFn = unsafe extern "C" fn(*mut c_void, c_int, *const c_char, c_int, u32) -> c_int;
type AddChdirFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type AddFchdirFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;

/// The host path an `addopen` of `path` with `flags` opens in the child,
/// the writable copy or the parents of a new file made now.
fn open_path(slot: &Actions, path: &[u8], flags: i32, host: &mut Buf) -> Result<(), i32> {
    let state = state::get();
    let full = child_path(slot, path)?;
    let mut canon = Buf::new();
    let follow = flags & sys::O_NOFOLLOW == 0;
    let found = resolve_at(
        state,
        sys::AT_FDCWD,
        full.as_bytes(),
        follow,
        &mut canon,
        host,
    )?;
    let writes = flags & (sys::O_WRONLY | sys::O_RDWR | sys::O_TRUNC) != 0;
    match found.place {
        Place::Missing if flags & sys::O_CREAT == 0 => Err(sys::ENOENT),
        Place::Missing if !found.under_bind => crate::write::make_upper_parents(canon.as_bytes()),
        Place::Lower(_) if writes => {
            *host = crate::write::copy_up(state, canon.as_bytes(), host)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

export! {
    fn posix_spawn_file_actions_init(actions: *mut c_void) -> c_int {
        forget(actions);
        real!("posix_spawn_file_actions_init": InitFn).map_or(sys::ENOSYS, |f| f(actions))
    }
    fn posix_spawn_file_actions_destroy(actions: *mut c_void) -> c_int {
        forget(actions);
        real!("posix_spawn_file_actions_destroy": InitFn).map_or(sys::ENOSYS, |f| f(actions))
    }
    fn posix_spawn_file_actions_addopen(actions: *mut c_void, fd: c_int, path: *const c_char, flags: c_int, mode: u32) -> c_int {
        let Some(real) = real!("posix_spawn_file_actions_addopen": AddOpenFn) else { return sys::ENOSYS };
        if !state::get().active {
            return real(actions, fd, path, flags, mode);
        }
        let given = match lpmx_sys::user::path(path) {
            Ok(given) => given,
            Err(e) => return e,
        };
        let mut host = Buf::new();
        let ok = with_slot(actions, |slot| match open_path(slot, given, flags, &mut host) {
            Ok(()) => true,
            Err(e) => {
                if slot.error == 0 {
                    slot.error = e;
                }
                false
            }
        });
        match ok {
            // The action stays in the list (glibc checks its arguments).
            Some(true) => real(actions, fd, host.c().cast(), flags, mode),
            _ => real(actions, fd, path, flags, mode),
        }
    }
    fn posix_spawn_file_actions_addchdir_np(actions: *mut c_void, path: *const c_char) -> c_int {
        let Some(real) = real!("posix_spawn_file_actions_addchdir_np": AddChdirFn) else { return sys::ENOSYS };
        if !state::get().active {
            return real(actions, path);
        }
        let given = match lpmx_sys::user::path(path) {
            Ok(given) => given,
            Err(e) => return e,
        };
        let mut host = Buf::new();
        let ok = with_slot(actions, |slot| {
            let result = child_path(slot, given).and_then(|full| {
                let mut canon = Buf::new();
                let found = resolve_at(state::get(), sys::AT_FDCWD, full.as_bytes(), true, &mut canon, &mut host)?;
                match found.place {
                    Place::Missing => Err(sys::ENOENT),
                    _ if found.kind != KIND_DIR && found.kind != 0 => Err(sys::ENOTDIR),
                    _ => slot.cwd.set(canon.as_bytes()),
                }
            });
            match result {
                Ok(()) => true,
                Err(e) => {
                    if slot.error == 0 {
                        slot.error = e;
                    }
                    false
                }
            }
        });
        match ok {
            Some(true) => real(actions, host.c().cast()),
            _ => real(actions, path),
        }
    }
    fn posix_spawn_file_actions_addfchdir_np(actions: *mut c_void, fd: c_int) -> c_int {
        let Some(real) = real!("posix_spawn_file_actions_addfchdir_np": AddFchdirFn) else { return sys::ENOSYS };
        let state = state::get();
        if state.active {
            let mut canon = Buf::new();
            if crate::fdpaths::fd_path(state, fd, &mut canon) {
                with_slot(actions, |slot| {
                    let _ = slot.cwd.set(canon.as_bytes());
                });
            }
        }
        real(actions, fd)
    }
}
