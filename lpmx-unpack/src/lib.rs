//! lpmx-unpack: unpack image layers into the shared store (not built yet).
//!
//! This crate will read an image document from `lpmx-pull` (or an offline
//! archive) and unpack each layer once into `$LPMX_HOME/layers/`. Until
//! then it builds no binary.
