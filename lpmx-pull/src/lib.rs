//! lpmx-pull: fetch an image from a Docker/OCI registry into the lpmx store.
//!
//! The first step of the pipeline: it resolves a reference to one
//! platform's manifest, downloads the config and layers as verified blobs,
//! and prints the image document that `lpmx-unpack` reads.

pub mod auth;
pub mod cli;
mod error;
mod fetch;
mod pull;
pub mod registry;

pub use error::PullError;
pub use fetch::{Fetched, fetch_blob};
pub use pull::{PullOptions, pull};
