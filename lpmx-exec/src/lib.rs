//! lpmx-exec: run a program inside a container.
//!
//! The last step of the pipeline. It gathers what the container's
//! programs need (environment, binds, working directory), then hands over
//! to libunion's own exec, loaded into this process: the first program
//! starts exactly as every later one started from inside does, through
//! the image's dynamic loader with libunion preloaded, and replaces
//! lpmx-exec, so its exit status, signals and terminal are its own.

pub mod cli;
pub mod elf;
pub mod ephemeral;
pub mod gpu;
pub mod host_libs;
pub mod identity;
pub mod launch;
pub mod launcher;
