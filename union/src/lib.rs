//! The union core: what makes a container of layers, defined once for
//! every consumer. The tools use it over `std` (`lpmx_core::view`,
//! `lpmx_core::index`), the preload (`libunion`) and the system-call trap
//! inside programs, where nothing may allocate.
//!
//! - [`index`]: the format of a stack's index of its lower layers, with its
//!   writer and its reader;
//! - [`upper`]: the writable layer's side files (`upper.whiteouts`,
//!   `upper.owners`, `upper.gen`);
//! - [`resolve`]: the rules that turn a container path into a layer's
//!   file, over the few lookups a [`resolve::Layers`] answers;
//! - [`variables`]: the environment that carries a container from
//!   `lpmx-exec` into its programs.

#![cfg_attr(not(test), no_std)]

pub mod dev;
pub mod index;
pub mod path;
pub mod resolve;
pub mod upper;
pub mod variables;
