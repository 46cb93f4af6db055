//! lpmx-exec: run a program inside a container (not built yet).
//!
//! This crate will start programs through the image's own loader with
//! libunion preloaded. Until then it builds no binary.
