//! lpmx-pack: move a container to another host, or out to other tools.
//!
//! The last step of the pipeline, and the first on the other side:
//! `lpmx-pack dev | ssh host lpmx-unpack` writes container `dev` (its
//! stack, environment, host programs, writable layer with the owners fake
//! root recorded, and the image's blobs) as one self-checking stream that
//! `lpmx-unpack` turns back into a container there (the format:
//! `lpmx_core::pack`). `--oci` and `--docker-archive` commit the writable
//! layer as a new image layer and export the image for skopeo, podman and
//! docker.

pub mod cli;
mod export;
mod layer_tar;
mod stream;

use std::path::PathBuf;

use lpmx_core::Digest;
use lpmx_core::cli::{Classify, Exit};
use lpmx_mkroot::MkrootError;

pub use export::{Export, export};
pub use layer_tar::LayerTar;
pub use stream::{Layers, pack};

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Container(#[from] MkrootError),
    #[error(transparent)]
    Format(#[from] lpmx_core::oci::FormatError),
    #[error("blob {0} is not in this store (pull the image again, or pack with --layers=none)")]
    MissingBlob(Digest),
    #[error("blob {expected} in the store is corrupt: it hashes to {actual}")]
    CorruptBlob { expected: Digest, actual: Digest },
    #[error("the image's manifest lists {manifest} layers but the container has {stack}")]
    LayerCount { manifest: usize, stack: usize },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot put {path} into the layer: {source}")]
    Layer {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the stream: {0}")]
    Stream(#[source] std::io::Error),
    #[error("{0} exists and is not an OCI image layout")]
    NotALayout(PathBuf),
    #[error("invalid tag {0:?}: expected NAME[:TAG]")]
    Tag(String),
}

impl Classify for PackError {
    fn exit(&self) -> Exit {
        match self {
            PackError::Container(e) => e.exit(),
            PackError::MissingBlob(_) => Exit::NoInput,
            PackError::Format(_) | PackError::CorruptBlob { .. } | PackError::LayerCount { .. } => {
                Exit::DataErr
            }
            PackError::Read { .. }
            | PackError::Write { .. }
            | PackError::Layer { .. }
            | PackError::Stream(_) => Exit::IoErr,
            PackError::NotALayout(_) => Exit::CantCreate,
            PackError::Tag(_) => Exit::Usage,
        }
    }
}

pub(crate) fn read_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PackError {
    let path = path.into();
    move |source| PackError::Read { path, source }
}

pub(crate) fn write_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PackError {
    let path = path.into();
    move |source| PackError::Write { path, source }
}
