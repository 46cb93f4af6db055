//! Importing a file the store has imported already is instant: a batch
//! script can run `lpmx-unpack image.sif` on every node of every job.
//!
//! After importing an image file (an archive, a SIF or squashfs image),
//! lpmx-unpack records its path, the image chosen in it and its identity
//! (`FileIdentity`: inode, size, modification and change times) with the
//! image document it made (`ImportRecord`, in `imports/`). Given the same
//! path again, it stats the file: an unchanged identity, and every blob the
//! document names still in the store, stand for the same image, which is
//! not read again. Any change to the file (a rewrite, even with its old
//! modification time restored, moves the change time) reads it anew.

use std::fs;
use std::path::{Path, PathBuf};

use lpmx_core::Store;
use lpmx_core::document::{
    Document, FileIdentity, ImageDocument, ImportRecord, parse_document, write_document,
};

use crate::source::Selection;

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn selection_key(selection: &Selection) -> String {
    format!(
        "{}\t{}",
        selection.name.as_deref().unwrap_or(""),
        selection.platform
    )
}

fn record_key(path: &Path, selection: &Selection) -> Vec<u8> {
    let mut key = absolute(path).into_os_string().into_encoded_bytes();
    key.push(0);
    key.extend_from_slice(selection_key(selection).as_bytes());
    key
}

/// The image document of file `path`, when the store imported it before
/// and neither the file nor the blobs changed since.
pub fn recall(store: &Store, path: &Path, selection: &Selection) -> Option<ImageDocument> {
    let text = fs::read_to_string(store.import_record_path(&record_key(path, selection))).ok()?;
    let record: ImportRecord = parse_document(&text).ok()?;
    let identity = FileIdentity::of(&fs::metadata(path).ok()?);
    let blobs_there = store.has_blob(&record.image.config_digest)
        && store.has_blob(&record.image.manifest_digest)
        && record
            .image
            .layers
            .iter()
            .all(|l| store.has_blob(&l.digest));
    let same = record.path == absolute(path)
        && record.selection == selection_key(selection)
        && record.identity == identity;
    (same && blobs_there).then_some(record.image)
}

/// Records the import of file `path` (identity `before`, taken before it
/// was read) as `image`; a file that changed while it was read is not
/// recorded. Best effort: without the record the next import reads it.
pub fn remember(
    store: &Store,
    path: &Path,
    selection: &Selection,
    before: FileIdentity,
    image: &ImageDocument,
) {
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    if FileIdentity::of(&meta) != before {
        return;
    }
    let record = ImportRecord {
        kind: ImportRecord::KIND.to_owned(),
        version: ImportRecord::VERSION,
        path: absolute(path),
        selection: selection_key(selection),
        identity: before,
        image: image.clone(),
    };
    let mut bytes = Vec::new();
    if write_document(&record, &mut bytes).is_err() {
        return;
    }
    let target = store.own_import_record_path(&record_key(path, selection));
    if let Some(dir) = target.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let _ = store.write_atomically(&target, &bytes);
}
