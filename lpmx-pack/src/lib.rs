//! lpmx-pack: write a container and its layers as one stream (not built yet).
//!
//! This crate will write the self-checking stream that `lpmx-unpack`
//! restores on another host. Until then it builds no binary.
