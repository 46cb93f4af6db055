//! Closing and replacing descriptors: libunion forgets what it remembered
//! of the old ones (`state::forget_fd`), so a new directory that gets a
//! closed one's number is never taken for it.

use core::ffi::c_int;

use crate::export::export;
use crate::sys::{self, real};

type CloseFromFn = unsafe extern "C" fn(c_int);

export! {
    #[safe]
    fn close(fd: c_int) -> c_int {
        // The system call itself: this may run in a vfork child.
        crate::fdpaths::forget_fd(fd);
        sys::c_ret(sys::close(fd))
    }
    #[safe]
    fn dup2(from: c_int, to: c_int) -> c_int {
        let result = sys::c_ret(sys::dup2(from, to));
        if result >= 0 && from != to {
            crate::fdpaths::forget_fd(to);
        }
        result
    }
    #[safe]
    fn dup3(from: c_int, to: c_int, flags: c_int) -> c_int {
        let result = sys::c_ret(sys::dup3(from, to, flags));
        if result >= 0 {
            crate::fdpaths::forget_fd(to);
        }
        result
    }
    #[safe]
    fn close_range(first: u32, last: u32, flags: c_int) -> c_int {
        const CLOSE_RANGE_CLOEXEC: c_int = 4;
        let result = sys::c_ret(sys::close_range(first, last, flags as u32));
        if result == 0 && flags & CLOSE_RANGE_CLOEXEC == 0 {
            crate::fdpaths::forget_fds(first, last);
        }
        result
    }
    fn closefrom(first: c_int) -> () {
        match real!("closefrom": CloseFromFn) {
            Some(real) => real(first),
            None => {
                let _ = sys::close_range(first.max(0) as u32, u32::MAX, 0);
            }
        }
        crate::fdpaths::forget_fds(first.max(0) as u32, u32::MAX);
    }
}
