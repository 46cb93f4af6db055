use std::path::PathBuf;

use lpmx_core::cli::{Classify, Exit};
use lpmx_core::digest::Digest;
use lpmx_core::document::DocumentError;
use lpmx_core::oci::{FormatError, Platform};
use lpmx_core::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Index(#[from] lpmx_core::index::IndexError),
    #[error("refused layer {layer}: entry {entry:?} {why}; nothing was unpacked")]
    Unsafe {
        layer: String,
        entry: String,
        why: String,
    },
    #[error("layer {layer} is not a valid tar archive (near entry {entry:?}): {source}")]
    Tar {
        layer: String,
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer} cannot be decompressed: {source}")]
    Decompress {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "layer {layer} unpacks to {actual}, but the image config says {expected} (rootfs.diff_ids); nothing was kept"
    )]
    DiffIdMismatch {
        layer: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {expected} does not match its digest: its content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {0} is not in the store (pull it again)")]
    MissingBlob(Digest),
    #[error(
        "layer {layer} has media type {media_type:?}, which lpmx cannot unpack (gzip, zstd and plain tar layers only)"
    )]
    MediaType { layer: String, media_type: String },
    #[error("{path}: {why}")]
    Archive { path: PathBuf, why: String },
    #[error("no image for platform {wanted} in {source_name}; available: {}", list(.available))]
    NoPlatform {
        source_name: String,
        wanted: Platform,
        available: Vec<Platform>,
    },
    #[error("{source_name} holds several images ({}); choose one with --image", .names.join(", "))]
    Ambiguous {
        source_name: String,
        names: Vec<String>,
    },
    #[error("{source_name} has no image named {name:?}; it has: {}", .names.join(", "))]
    NoSuchImage {
        source_name: String,
        name: String,
        names: Vec<String>,
    },
    #[error("image config lists {diff_ids} layer digests but the image has {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("{0}")]
    Pack(#[from] lpmx_core::pack::PackStreamError),
    #[error(transparent)]
    Container(#[from] lpmx_mkroot::MkrootError),
    #[error(
        "layer {0} is not in this store and the stream does not carry it (pack it with --layers=all)"
    )]
    NotInStore(Digest),
    #[error("not a usable SIF image: {0}")]
    Sif(String),
    #[error(
        "the SIF image is truncated: its {what} ends at byte {end}, but the file has only {size} bytes"
    )]
    SifTruncated { what: String, end: u64, size: u64 },
    #[error(
        "the SIF image has no root filesystem partition (a squashfs data partition of type primary system); it holds: {0}"
    )]
    SifNoRootFs(String),
    #[error("the squashfs image cannot be read: {0}")]
    Squashfs(String),
    #[error("refused the squashfs image: entry {entry:?} {why}; nothing was imported")]
    SquashfsUnsafe { entry: String, why: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn list(platforms: &[Platform]) -> String {
    let names: Vec<String> = platforms.iter().map(ToString::to_string).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

impl UnpackError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> UnpackError {
        let path = path.into();
        move |source| UnpackError::Io { path, source }
    }
}

impl Classify for UnpackError {
    fn exit(&self) -> Exit {
        match self {
            UnpackError::Store(e) => e.exit(),
            UnpackError::Document(e) => e.exit(),
            UnpackError::Io { .. } | UnpackError::Index(_) => Exit::IoErr,
            UnpackError::Pack(lpmx_core::pack::PackStreamError::Io(_)) => Exit::IoErr,
            UnpackError::Pack(_) => Exit::DataErr,
            UnpackError::Container(e) => e.exit(),
            UnpackError::NotInStore(_) => Exit::NoInput,
            UnpackError::MissingBlob(_)
            | UnpackError::NoPlatform { .. }
            | UnpackError::NoSuchImage { .. } => Exit::NoInput,
            UnpackError::Ambiguous { .. } => Exit::Usage,
            UnpackError::Format(_)
            | UnpackError::Unsafe { .. }
            | UnpackError::Tar { .. }
            | UnpackError::Decompress { .. }
            | UnpackError::DiffIdMismatch { .. }
            | UnpackError::DigestMismatch { .. }
            | UnpackError::MediaType { .. }
            | UnpackError::Archive { .. }
            | UnpackError::Sif(_)
            | UnpackError::SifTruncated { .. }
            | UnpackError::SifNoRootFs(_)
            | UnpackError::Squashfs(_)
            | UnpackError::SquashfsUnsafe { .. }
            | UnpackError::LayerCount { .. } => Exit::DataErr,
        }
    }
}
