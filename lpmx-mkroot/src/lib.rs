//! lpmx-mkroot: create a container from a layers document (not built yet).
//!
//! This crate will write a container's stack file and empty upper layer.
//! Until then it builds no binary.
