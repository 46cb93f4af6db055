//! libc's user and group id functions over fake root's identities (`ids`):
//! `getuid` and the others answer from them, `setuid` and the others
//! change them by the kernel's rules; without fake root, the real calls.

use core::ffi::{c_char, c_int, c_void};

use crate::buf::{Buf, cstr};
use crate::export::export;
use crate::ids::*;
use crate::state;
use crate::sys::{self, real};

type SetId1 = unsafe extern "C" fn(u32) -> c_int;
type SetId2 = unsafe extern "C" fn(u32, u32) -> c_int;
type SetId3 = unsafe extern "C" fn(u32, u32, u32) -> c_int;
type SetGroups = unsafe extern "C" fn(usize, *const u32) -> c_int;
type InitGroups = unsafe extern "C" fn(*const c_char, u32) -> c_int;

const USER: usize = 0;
const GROUP: usize = 1;

macro_rules! id_or_real {
    ($field:ident, $slot:expr, $real:expr) => {
        if active() { get().$field[$slot] } else { $real }
    };
}

export! {
    #[safe]
    fn getuid() -> u32 { id_or_real!(uid, REAL, crate::root::real_uid()) }
    #[safe]
    fn geteuid() -> u32 { id_or_real!(uid, EFFECTIVE, sys::geteuid_raw()) }
    #[safe]
    fn getgid() -> u32 { id_or_real!(gid, REAL, crate::root::real_gid()) }
    #[safe]
    fn getegid() -> u32 { id_or_real!(gid, EFFECTIVE, sys::getegid_raw()) }
    fn getresuid(r: *mut u32, e: *mut u32, s: *mut u32) -> c_int {
        if !active() {
            return sys::c_ret(sys::getresuid_raw(r, e, s));
        }
        let ids = get();
        *r = ids.uid[REAL];
        *e = ids.uid[EFFECTIVE];
        *s = ids.uid[SAVED];
        0
    }
    fn getresgid(r: *mut u32, e: *mut u32, s: *mut u32) -> c_int {
        if !active() {
            return sys::c_ret(sys::getresgid_raw(r, e, s));
        }
        let ids = get();
        *r = ids.gid[REAL];
        *e = ids.gid[EFFECTIVE];
        *s = ids.gid[SAVED];
        0
    }
    fn getgroups(size: c_int, list: *mut u32) -> c_int {
        if !active() {
            return sys::c_ret(sys::getgroups_raw(size, list));
        }
        let ids = get();
        if size == 0 {
            return ids.ngroups as c_int;
        }
        if (size as usize) < ids.ngroups {
            return sys::c_ret(Err(sys::EINVAL));
        }
        core::ptr::copy_nonoverlapping(ids.groups.as_ptr(), list, ids.ngroups);
        ids.ngroups as c_int
    }
    fn setuid(id: u32) -> c_int {
        if !active() {
            return real!("setuid": SetId1).map_or(-1, |f| f(id));
        }
        set_one(USER, id)
    }
    fn seteuid(id: u32) -> c_int {
        if !active() {
            return real!("seteuid": SetId1).map_or(-1, |f| f(id));
        }
        set_effective(USER, id)
    }
    fn setreuid(r: u32, e: u32) -> c_int {
        if !active() {
            return real!("setreuid": SetId2).map_or(-1, |f| f(r, e));
        }
        set_real_effective(USER, r, e)
    }
    fn setresuid(r: u32, e: u32, s: u32) -> c_int {
        if !active() {
            return real!("setresuid": SetId3).map_or(-1, |f| f(r, e, s));
        }
        set_real_effective_saved(USER, [r, e, s])
    }
    fn setgid(id: u32) -> c_int {
        if !active() {
            return real!("setgid": SetId1).map_or(-1, |f| f(id));
        }
        set_one(GROUP, id)
    }
    fn setegid(id: u32) -> c_int {
        if !active() {
            return real!("setegid": SetId1).map_or(-1, |f| f(id));
        }
        set_effective(GROUP, id)
    }
    fn setregid(r: u32, e: u32) -> c_int {
        if !active() {
            return real!("setregid": SetId2).map_or(-1, |f| f(r, e));
        }
        set_real_effective(GROUP, r, e)
    }
    fn setresgid(r: u32, e: u32, s: u32) -> c_int {
        if !active() {
            return real!("setresgid": SetId3).map_or(-1, |f| f(r, e, s));
        }
        set_real_effective_saved(GROUP, [r, e, s])
    }
    fn setfsuid(id: u32) -> c_int {
        if !active() {
            return real!("setfsuid": SetId1).map_or(-1, |f| f(id));
        }
        set_fs(USER, id)
    }
    fn setfsgid(id: u32) -> c_int {
        if !active() {
            return real!("setfsgid": SetId1).map_or(-1, |f| f(id));
        }
        set_fs(GROUP, id)
    }
    fn setgroups(size: usize, list: *const u32) -> c_int {
        if !active() {
            return real!("setgroups": SetGroups).map_or(-1, |f| f(size, list));
        }
        let given = if size == 0 || list.is_null() { &[][..] } else { core::slice::from_raw_parts(list, size) };
        set_groups(given)
    }
    fn initgroups(user: *const c_char, group: u32) -> c_int {
        if !active() {
            return real!("initgroups": InitGroups).map_or(-1, |f| f(user, group));
        }
        let mut list = [0u32; MAX_GROUPS];
        let mut count = 1;
        list[0] = group;
        let name = cstr(user);
        container_groups_of(name, |gid| {
            if count < MAX_GROUPS && !list[..count].contains(&gid) {
                list[count] = gid;
                count += 1;
            }
        });
        set_groups(&list[..count])
    }
}

/// Calls `each` with the id of every group of the container's
/// `/etc/group` that lists `user` as a member.
fn container_groups_of(user: &[u8], mut each: impl FnMut(u32)) {
    let state = state::get();
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let Ok(found) = crate::resolve::resolve(state, b"/etc/group", true, &mut canon, &mut host)
    else {
        return;
    };
    if found.place == crate::resolve::Place::Missing {
        return;
    }
    let Ok(fd) = crate::host::open(&host, sys::O_CLOEXEC, 0) else {
        return;
    };
    let fd = fd as i32;
    let mut st = [0u64; 18];
    let size = sys::fstat(fd, st.as_mut_ptr().cast()).map_or(0, |_| st[6] as usize);
    // SAFETY: a plain allocation, freed below.
    let text = unsafe { sys::malloc(size + 1) }.cast::<u8>();
    if !text.is_null() {
        let mut got = 0;
        while got < size {
            // SAFETY: text holds size bytes.
            match sys::pread(fd, unsafe { text.add(got) }, size - got, got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        // SAFETY: got bytes were read.
        let bytes = unsafe { core::slice::from_raw_parts(text, got) };
        for line in bytes.split(|&b| b == b'\n') {
            let fields: [&[u8]; 4] = {
                let mut it = line.split(|&b| b == b':');
                core::array::from_fn(|_| it.next().unwrap_or(b""))
            };
            if fields[3].split(|&b| b == b',').any(|m| m == user) {
                each(parse(fields[2]));
            }
        }
        // SAFETY: malloc'd above.
        unsafe { sys::free(text.cast::<c_void>()) };
    }
    let _ = sys::close(fd);
}
