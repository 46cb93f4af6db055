//! lpmx-unpack: unpack image layers into the shared lpmx store.
//!
//! The second step of the pipeline. It reads the image document that
//! `lpmx-pull` prints (or imports an offline image archive), unpacks every
//! layer once into `layers/<diffid-hex>/` — rootless, verified against the
//! config's diff_ids, refusing entries that would escape the layer — and
//! prints the layers document that `lpmx-mkroot` reads.

pub mod cli;
mod error;
pub mod extract;
mod layer;
pub mod recall;
pub mod restore;
pub mod sif;
pub mod source;
pub mod squashfs;
pub mod stream;
mod unpack;

pub use error::UnpackError;
pub use layer::{LayerSource, Outcome, unpack_layer};
pub use unpack::{read_config, unpack_image};
