//! libunion: the LD_PRELOAD union filesystem (not built yet).
//!
//! This crate will become a `no_std` cdylib that resolves every path a
//! process uses through the container's layer stack. Until then it builds
//! no shared object.
