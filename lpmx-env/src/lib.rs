//! lpmx-env: edit a container's environment (not built yet).
//!
//! This crate will set, unset and list the variables of a container's
//! environment file. Until then it builds no binary.
