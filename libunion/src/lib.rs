//! libunion: the LD_PRELOAD library that shows a process its container.
//!
//! Every path the process uses is resolved through the container's layers
//! (`resolve`), directory listings merge them (`dir`), and every exec goes
//! back through the image's loader with libunion preloaded (`exec`). The
//! library is `no_std` over raw system calls, so one build loads into
//! programs of any glibc from 2.17 on (see docs/runtime.md).
//!
//! The modules form layers, each using only those below it
//! (`tests/layers.rs` checks there is no import circle):
//!
//! ```text
//! entry points  fs dir exec spawn net fds write id_calls open_files, trap trapped
//! paths         paths: a call's path to its host file and what is recorded of it
//! rules         resolve (over lpmx_union's walk), root (fake root's records), perm
//! per process   state, fdpaths, upper (the side files), ids, private (vfork)
//! below         sys, symbols, host, index, buf, lock, place, export
//! ```
//!
//! One call goes up, by design: the first use of `state` arms the trap's
//! handler in a program started under it, since that first use can come
//! from another library's constructor, before libunion's own.
// Clippy's --all-targets also checks a test build, which brings std.
#![cfg_attr(not(test), no_std)]

mod buf;
mod dir;
mod exec;
mod export;
mod fdpaths;
mod fds;
mod fs;
mod host;
mod id_calls;
mod ids;
mod index;
mod lock;
mod net;
mod open_files;
mod paths;
mod perm;
mod place;
mod private;
mod resolve;
mod root;
mod spawn;
mod state;
mod symbols;
mod sys;
mod trap;
mod trapped;
mod upper;
mod write;

use core::ffi::{c_char, c_int};

use lpmx_union::variables;

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::warn(&[b"lpmx: libunion: internal error\n"]);
    // SAFETY: ends the process, as abort does.
    unsafe { abort() }
}

#[cfg(not(test))]
/// The precompiled `core` refers to the unwinder's personality routine;
/// nothing unwinds here (panic = "abort"), so it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

unsafe extern "C" {
    #[cfg(not(test))]
    fn abort() -> !;
    static mut program_invocation_name: *mut c_char;
    static mut program_invocation_short_name: *mut c_char;
}

/// Started through the loader, the program sees the loader's argv[0] (its
/// host path): give it back the one it was called by.
extern "C" fn on_load(argc: c_int, argv: *mut *mut c_char, _envp: *mut *mut c_char) {
    // SAFETY: the name is NUL-terminated.
    let given = unsafe { buf::cstr(sys::getenv(variables::ARGV0.c_name.as_ptr())) };
    let state = state::get();
    let kept = if state.active && !given.is_empty() && argc > 0 && !argv.is_null() {
        state::keep_for_argv0(given)
    } else {
        None
    };
    if let Some(kept) = kept {
        let short = kept.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        // SAFETY: argv is the process's argument array; the new string is
        // static.
        unsafe {
            *argv = kept.as_ptr().cast_mut().cast();
            program_invocation_name = kept.as_ptr().cast_mut().cast();
            program_invocation_short_name = kept[short..].as_ptr().cast_mut().cast();
        }
    }
    // One exec only: children get their own.
    // SAFETY: names are NUL-terminated; libc is initialised.
    unsafe {
        sys::unsetenv(variables::ARGV0.c_name.as_ptr());
        sys::unsetenv(variables::EXE.c_name.as_ptr());
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = on_load;
