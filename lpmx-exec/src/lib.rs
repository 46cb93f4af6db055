//! lpmx-exec: run a program inside a container (no binary yet).
//!
//! It will start programs through the image's own dynamic loader with
//! libunion preloaded. What is here so far: reading a program's ELF
//! header to find that loader, and to refuse static binaries, which a
//! preload library cannot keep inside the container.

pub mod elf;
