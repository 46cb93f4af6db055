use std::path::PathBuf;

use lpmx_core::cli::{Classify, Exit};
use lpmx_core::digest::Digest;
use lpmx_core::oci::{FormatError, Platform};
use lpmx_core::reference::RefError;
use lpmx_core::store::StoreError;

use crate::auth::CredentialError;

/// Why a pull failed. Messages name what failed (a URL, a digest, a file)
/// and never carry a credential.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("cannot reach {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: {status}{detail}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        /// The registry's own error text, when it sent one.
        detail: String,
    },
    #[error(
        "{registry} requires authentication and no credentials for it were found (looked in {looked_in})"
    )]
    NoCredentials { registry: String, looked_in: String },
    #[error("{registry} refused the credentials from {source_name}")]
    CredentialsRefused {
        registry: String,
        source_name: String,
    },
    #[error("{registry} refused access to {repository} after authenticating: {why}")]
    AccessDenied {
        registry: String,
        repository: String,
        why: String,
    },
    #[error("token service {realm} answered without a usable token: {why}")]
    Token { realm: String, why: String },
    #[error(
        "blob {expected} does not match its digest: its content hashes to {actual}; nothing was stored"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(
        "blob {digest} is larger than the {expected} bytes its descriptor states; nothing was stored"
    )]
    TooLarge { digest: Digest, expected: u64 },
    #[error("download of {digest} kept failing: {why}")]
    Download { digest: Digest, why: String },
    #[error("manifest of {reference} is larger than {limit} bytes")]
    ManifestTooLarge { reference: String, limit: u64 },
    #[error("no image for platform {wanted} in {reference}; available: {}", list_platforms(.available))]
    NoPlatform {
        reference: String,
        wanted: Platform,
        available: Vec<Platform>,
    },
    #[error(
        "image config lists {diff_ids} layer digests (rootfs.diff_ids) but the manifest has {layers} layers"
    )]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("index nesting deeper than {0} levels")]
    NestingTooDeep(usize),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn list_platforms(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "none".to_owned();
    }
    platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl PullError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PullError {
        let path = path.into();
        move |source| PullError::Io { path, source }
    }
}

impl Classify for PullError {
    fn exit(&self) -> Exit {
        use reqwest::StatusCode;
        match self {
            PullError::Reference(_) => Exit::Usage,
            PullError::Store(_) | PullError::Io { .. } => Exit::IoErr,
            PullError::Credentials(_)
            | PullError::NoCredentials { .. }
            | PullError::CredentialsRefused { .. }
            | PullError::AccessDenied { .. } => Exit::NoPerm,
            PullError::Status { status, .. } => match *status {
                StatusCode::NOT_FOUND => Exit::NoInput,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Exit::NoPerm,
                _ => Exit::Unavailable,
            },
            PullError::Connect { .. } | PullError::Token { .. } | PullError::Download { .. } => {
                Exit::Unavailable
            }
            PullError::NoPlatform { .. } => Exit::NoInput,
            PullError::Format(_)
            | PullError::DigestMismatch { .. }
            | PullError::TooLarge { .. }
            | PullError::ManifestTooLarge { .. }
            | PullError::LayerCount { .. }
            | PullError::NestingTooDeep(_) => Exit::DataErr,
        }
    }
}
