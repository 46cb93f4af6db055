//! What every lpmx tool shares.
//!
//! The tools of the pipeline (`lpmx-pull | lpmx-unpack | lpmx-mkroot`, ...)
//! pass JSON documents and share one store on disk. Each of those formats,
//! and the store's layout and locking, is defined once, here.

pub mod cli;
pub mod container;
pub mod digest;
pub mod document;
pub mod index;
pub mod layer;
pub mod libraries;
pub mod oci;
pub mod pack;
pub mod parallel;
pub mod progress;
pub mod read;
pub mod reference;
pub mod store;
pub mod view;

pub use digest::Digest;
/// The environment lpmx-exec hands libunion (defined in the union core).
pub use lpmx_union::variables;
pub use reference::ImageRef;
pub use store::Store;
