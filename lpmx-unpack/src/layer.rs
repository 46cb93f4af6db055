//! One layer into the store: unpacked into `tmp/`, verified, then renamed
//! to `layers/<diffid-hex>/` whole, so it is there complete or not at all.

use std::fs;
use std::io;
use std::path::Path;

use lpmx_core::Digest;
use lpmx_core::document::write_document;
use lpmx_core::layer::{LayerDir, LayerMeta, ROOT_DIR};
use lpmx_core::store::Store;

use crate::error::UnpackError;
use crate::extract::extract;
use crate::stream::{Compression, LayerStream};

/// A layer to unpack: its blob in the store and what it must unpack to.
#[derive(Clone, Debug)]
pub struct LayerSource {
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    AlreadyPresent,
    Unpacked,
}

pub fn unpack_layer(
    store: &Store,
    layer: &LayerSource,
) -> Result<(LayerDir, Outcome), UnpackError> {
    let dir = store.layer_dir(&layer.diff_id);
    if dir.exists() {
        return Ok((dir, Outcome::AlreadyPresent));
    }
    let _lock = store.lock_layer(&layer.diff_id)?;
    if dir.exists() {
        return Ok((dir, Outcome::AlreadyPresent));
    }
    remove_leftovers(store, &layer.diff_id)?;
    let name = layer.digest.to_string();
    let compression =
        Compression::from_media_type(&layer.media_type).ok_or_else(|| UnpackError::MediaType {
            layer: name.clone(),
            media_type: layer.media_type.clone(),
        })?;
    let blob = store
        .find_blob(&layer.digest)
        .ok_or_else(|| UnpackError::MissingBlob(layer.digest.clone()))?;
    let temp = store.temp_path(&format!("layer-{}", layer.diff_id.hex()));
    let root = temp.join(ROOT_DIR);
    fs::create_dir_all(&root).map_err(UnpackError::io(&root))?;
    let result = (|| {
        let mut stream = LayerStream::open(&blob, compression).map_err(UnpackError::io(&blob))?;
        let mut meta = extract(&mut stream, &root, &name, store.shared_bits())?;
        let digests = stream.finish().map_err(|source| UnpackError::Decompress {
            layer: name.clone(),
            source,
        })?;
        if digests.compressed != layer.digest {
            return Err(UnpackError::DigestMismatch {
                expected: layer.digest.clone(),
                actual: digests.compressed,
            });
        }
        if digests.uncompressed != layer.diff_id {
            return Err(UnpackError::DiffIdMismatch {
                layer: name.clone(),
                expected: layer.diff_id.clone(),
                actual: digests.uncompressed,
            });
        }
        meta.diff_id = Some(layer.diff_id.clone());
        write_meta(store, &temp, &meta)?;
        fs::rename(&temp, dir.path()).map_err(UnpackError::io(dir.path()))
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&temp);
        return Err(e);
    }
    Ok((dir, Outcome::Unpacked))
}

/// Writes a layer's metadata into `temp`, about to become the layer, and
/// gives the layer's own directories and metadata the store's sharing
/// (the extraction gave its entries theirs).
fn write_meta(store: &Store, temp: &Path, meta: &LayerMeta) -> Result<(), UnpackError> {
    let meta_path = temp.join(lpmx_core::layer::META_FILE);
    let file = fs::File::create(&meta_path).map_err(UnpackError::io(&meta_path))?;
    write_document(meta, io::BufWriter::new(file)).map_err(UnpackError::io(&meta_path))?;
    for path in [temp.to_owned(), temp.join(ROOT_DIR), meta_path] {
        store.share(&path).map_err(UnpackError::io(&path))?;
    }
    Ok(())
}

/// Puts a layer extracted elsewhere (`temp`, holding `root/`, in the
/// store's `tmp/`) in its place as layer `diff_id`, with its metadata; when
/// the layer is already there, `temp` goes. Either way `temp` is gone after.
pub(crate) fn install_layer(
    store: &Store,
    temp: &Path,
    diff_id: &Digest,
    mut meta: LayerMeta,
) -> Result<(), UnpackError> {
    let result = (|| {
        let dir = store.layer_dir(diff_id);
        if dir.exists() {
            return Ok(());
        }
        let _lock = store.lock_layer(diff_id)?;
        if dir.exists() {
            return Ok(());
        }
        meta.diff_id = Some(diff_id.clone());
        write_meta(store, temp, &meta)?;
        fs::rename(temp, dir.path()).map_err(UnpackError::io(dir.path()))
    })();
    if temp.exists() {
        let _ = fs::remove_dir_all(temp);
    }
    result
}

/// Removes what an interrupted unpack of this layer left in `tmp/`. Only
/// the holder of the layer's lock calls this, so nobody is writing there.
fn remove_leftovers(store: &Store, diff_id: &Digest) -> Result<(), UnpackError> {
    let prefix = format!("layer-{}.", diff_id.hex());
    let tmp = store.tmp_dir();
    let entries = fs::read_dir(&tmp).map_err(UnpackError::io(&tmp))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(UnpackError::io(&path))?;
        }
    }
    Ok(())
}
