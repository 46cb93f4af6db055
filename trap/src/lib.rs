//! The system-call trap: what no symbol of a preload library reaches.
//!
//! glibc makes system calls for itself (NSS reading `/etc/passwd`, the
//! locale archive, gconv's configuration, `/etc/localtime`, `lckpwdf`'s
//! lock file), past every interposed function, and some programs make
//! system calls themselves. So a seccomp filter (`filter`), installed once
//! for a container's whole process tree, traps the calls that name a path
//! unless they come from libunion's gadget (`lpmx_sys::GADGET`), where all
//! of libunion's own calls are made, or from the ELF interpreter mapped
//! where the loader maps it (its library search uses the host paths
//! libunion gives it). A trapped call raises SIGSYS (`handler`), and the
//! preload library makes it through its own functions: in the container.
//!
//! The kernel resets signal handlers at exec, and a program's loader runs
//! before any preload library, so every exec under the trap starts the
//! small static loader (`lpmx-loader`, `exec`): it installs a handler that
//! lets trapped calls through, maps the program and its interpreter as the
//! kernel would, and jumps there; in a container's program the preloaded
//! libunion then takes the handler over. In a host program (one the
//! container runs on the host) the loader's handler stays: its calls are
//! the host's, and its own execs go through the loader again.
#![no_std]

pub mod exec;
pub mod filter;
pub mod handler;
pub mod link;
pub mod rewrite;
pub mod stack;
