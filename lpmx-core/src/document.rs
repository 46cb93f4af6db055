//! The JSON documents the tools pass to one another.
//!
//! Every document carries `"kind"` and `"version"`, so a tool handed the
//! wrong one (or a newer one) says so instead of misreading it.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::oci::{Platform, RunConfig};

/// A document type: its kind, version and the tool that writes it.
pub trait Document: Serialize + DeserializeOwned {
    const KIND: &'static str;
    const VERSION: u32;
    /// The tool that prints this document, named in errors.
    const PRODUCER: &'static str;
}

/// What `lpmx-pull` prints: an image whose blobs are all in the store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageDocument {
    pub kind: String,
    pub version: u32,
    /// The reference as normalised: `docker.io/library/debian:bookworm`.
    pub reference: String,
    pub registry: String,
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Digest of what the reference names: the index when there is one.
    pub digest: Digest,
    /// Digest of the platform's image manifest, stored as a blob.
    pub manifest_digest: Digest,
    pub platform: Platform,
    pub config_digest: Digest,
    pub config_path: PathBuf,
    pub config: RunConfig,
    /// Bottom to top.
    pub layers: Vec<LayerBlob>,
}

/// What `lpmx-unpack` recorded of an image file (an archive, a SIF or
/// squashfs image) it imported, in the store's `imports/`: the same file
/// given again, unchanged, is the same image, and its import is instant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImportRecord {
    pub kind: String,
    pub version: u32,
    /// The file, as given, made absolute.
    pub path: PathBuf,
    /// The image chosen in it (`--image`, `--platform`).
    pub selection: String,
    pub identity: FileIdentity,
    pub image: ImageDocument,
}

/// What changes when a file's contents change: its inode, size and
/// modification and change times (the last set by the kernel alone). The
/// device number is left out: NFS clients number one file system
/// differently.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileIdentity {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileIdentity {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl Document for ImportRecord {
    const KIND: &'static str = "lpmx.import";
    const VERSION: u32 = 1;
    const PRODUCER: &'static str = "lpmx-unpack";
}

/// One layer of an image: its compressed blob and what it unpacks to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the blob as stored (usually compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

impl Document for ImageDocument {
    const KIND: &'static str = "lpmx.image";
    const VERSION: u32 = 1;
    const PRODUCER: &'static str = "lpmx-pull";
}

/// What `lpmx-unpack` prints: an image whose layers are unpacked in the
/// store, and how to run it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayersDocument {
    pub kind: String,
    pub version: u32,
    /// The image these layers came from, as the image document named it.
    pub reference: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub platform: Platform,
    pub config: RunConfig,
    /// Bottom to top.
    pub layers: Vec<UnpackedLayer>,
}

/// One unpacked layer: its directory holds `root/` and `meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnpackedLayer {
    pub diff_id: Digest,
    pub path: PathBuf,
}

impl Document for LayersDocument {
    const KIND: &'static str = "lpmx.layers";
    const VERSION: u32 = 1;
    const PRODUCER: &'static str = "lpmx-unpack";
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("cannot read the {expected} document: {source}")]
    Io {
        expected: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no input: expected an {expected} document (the output of {producer})")]
    Empty {
        expected: &'static str,
        producer: &'static str,
    },
    #[error(
        "input is not JSON: expected an {expected} document (the output of {producer}): {source}"
    )]
    NotJson {
        expected: &'static str,
        producer: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("expected an {expected} document (the output of {producer}), got {found}")]
    WrongKind {
        expected: &'static str,
        producer: &'static str,
        found: String,
    },
    #[error("{kind} document version {found} is newer than this tool understands ({supported})")]
    Version {
        kind: &'static str,
        found: u64,
        supported: u32,
    },
    #[error("malformed {kind} document: {source}")]
    Malformed {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl crate::cli::Classify for DocumentError {
    fn exit(&self) -> crate::cli::Exit {
        match self {
            DocumentError::Io { .. } => crate::cli::Exit::IoErr,
            _ => crate::cli::Exit::DataErr,
        }
    }
}

/// Reads one document of type `T`, checking its kind and version first.
pub fn read_document<T: Document>(mut reader: impl Read) -> Result<T, DocumentError> {
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|source| DocumentError::Io {
            expected: T::KIND,
            source,
        })?;
    parse_document(&text)
}

/// Parses one document of type `T` from `text`, checking kind and version.
pub fn parse_document<T: Document>(text: &str) -> Result<T, DocumentError> {
    if text.trim().is_empty() {
        return Err(DocumentError::Empty {
            expected: T::KIND,
            producer: T::PRODUCER,
        });
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| DocumentError::NotJson {
            expected: T::KIND,
            producer: T::PRODUCER,
            source,
        })?;
    let found = value.get("kind").and_then(|k| k.as_str());
    if found != Some(T::KIND) {
        return Err(DocumentError::WrongKind {
            expected: T::KIND,
            producer: T::PRODUCER,
            found: found.map_or_else(|| "a document without a kind".to_owned(), str::to_owned),
        });
    }
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version > u64::from(T::VERSION) {
        return Err(DocumentError::Version {
            kind: T::KIND,
            found: version,
            supported: T::VERSION,
        });
    }
    serde_json::from_value(value).map_err(|source| DocumentError::Malformed {
        kind: T::KIND,
        source,
    })
}

/// Writes `document` as one line of pretty JSON, as every tool prints it.
pub fn write_document<T: Document>(document: &T, mut writer: impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut writer, document)?;
    writer.write_all(b"\n")?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImageDocument {
        ImageDocument {
            kind: ImageDocument::KIND.to_owned(),
            version: ImageDocument::VERSION,
            reference: "docker.io/library/debian:bookworm".to_owned(),
            registry: "docker.io".to_owned(),
            repository: "library/debian".to_owned(),
            tag: Some("bookworm".to_owned()),
            digest: Digest::of(b"index"),
            manifest_digest: Digest::of(b"manifest"),
            platform: "linux/amd64".parse().unwrap(),
            config_digest: Digest::of(b"config"),
            config_path: "/s/blobs/sha256/c".into(),
            config: RunConfig::default(),
            layers: vec![LayerBlob {
                digest: Digest::of(b"layer"),
                diff_id: Digest::of(b"tar"),
                size: 5,
                media_type: crate::oci::media::OCI_LAYER_GZIP.to_owned(),
                path: "/s/blobs/sha256/l".into(),
            }],
        }
    }

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        write_document(&sample(), &mut out).unwrap();
        let back: ImageDocument = read_document(&out[..]).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn wrong_input_is_named() {
        let err = read_document::<ImageDocument>(&b""[..]).unwrap_err();
        assert!(err.to_string().contains("no input"), "{err}");
        let err = read_document::<ImageDocument>(&b"hello"[..]).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
        let err = read_document::<ImageDocument>(&br#"{"kind":"lpmx.layers","version":1}"#[..])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected an lpmx.image document (the output of lpmx-pull), got lpmx.layers"
        );
        let err = read_document::<ImageDocument>(&br#"{"kind":"lpmx.image","version":7}"#[..])
            .unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
