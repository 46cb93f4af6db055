//! An unpacked layer in the store, and what its tree on disk cannot show.
//!
//! ```text
//! layers/<diffid-hex>/root/       the layer's files, owned by the user
//! layers/<diffid-hex>/meta.json   LayerMeta: whiteouts, opaque dirs, and
//!                                 the modes, owners, device numbers and
//!                                 xattrs an ordinary user cannot set
//! ```
//!
//! Paths in the metadata are relative to the layer root, without a leading
//! `/` (`etc/shadow`). Entries not listed are owned by 0:0 and have the mode
//! they have on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::document::Document;

pub const ROOT_DIR: &str = "root";
pub const META_FILE: &str = "meta.json";

/// The directories of one unpacked layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDir {
    pub path: PathBuf,
}

impl LayerDir {
    pub fn new(path: impl Into<PathBuf>) -> LayerDir {
        LayerDir { path: path.into() }
    }

    /// The layer's file tree.
    pub fn root(&self) -> PathBuf {
        self.path.join(ROOT_DIR)
    }

    pub fn meta_path(&self) -> PathBuf {
        self.path.join(META_FILE)
    }

    pub fn exists(&self) -> bool {
        self.meta_path().is_file()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What an unprivileged unpack could not put on disk, so nothing is lost.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerMeta {
    pub kind: String,
    pub version: u32,
    pub diff_id: Option<Digest>,
    /// Paths this layer deletes from the layers below (`.wh.NAME`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub whiteouts: BTreeSet<String>,
    /// Directories whose contents in the layers below are hidden
    /// (`.wh..wh..opq`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub opaque: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entries: BTreeMap<String, EntryMeta>,
}

impl Document for LayerMeta {
    const KIND: &'static str = "lpmx.layer-meta";
    const VERSION: u32 = 1;
    const PRODUCER: &'static str = "lpmx-unpack";
}

impl LayerMeta {
    pub fn new() -> LayerMeta {
        LayerMeta {
            kind: LayerMeta::KIND.to_owned(),
            version: LayerMeta::VERSION,
            ..LayerMeta::default()
        }
    }

    /// The metadata of `path`, created empty if absent.
    pub fn entry(&mut self, path: &str) -> &mut EntryMeta {
        self.entries.entry(path.to_owned()).or_default()
    }

    /// Forgets `path` and everything under it (it was replaced).
    pub fn forget_tree(&mut self, path: &str) {
        let below = format!("{path}/");
        self.entries
            .retain(|p, _| p != path && !p.starts_with(&below));
    }
}

/// The original attributes of one entry, where they differ from disk.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryMeta {
    /// The original permission bits (`0o7777` part), when the file on disk
    /// has others (setuid, setgid, sticky, or bits the owner needs added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Original owner, when not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// A device node, stored on disk as an empty regular file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// Extended attributes that could not be set on disk, values base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
}

impl EntryMeta {
    pub fn is_empty(&self) -> bool {
        *self == EntryMeta::default()
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Device {
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Char,
    Block,
}
