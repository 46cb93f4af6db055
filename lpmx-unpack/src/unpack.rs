//! A whole image: its layers unpacked in parallel, then the layers document.

use lpmx_core::Digest;
use lpmx_core::document::{Document, ImageDocument, LayersDocument, UnpackedLayer};
use lpmx_core::oci::ImageConfig;
use lpmx_core::parallel::map_bounded;
use lpmx_core::progress::Progress;
use lpmx_core::store::Store;

use crate::error::UnpackError;
use crate::layer::{LayerSource, Outcome, unpack_layer};

/// Unpacks every layer of `image` (its blobs in `store`) and describes the
/// result for `lpmx-mkroot`. The layer digests come from the config blob,
/// verified here, not from the document.
pub fn unpack_image(
    store: &Store,
    image: &ImageDocument,
    jobs: usize,
    progress: &Progress,
) -> Result<LayersDocument, UnpackError> {
    let config = read_config(store, &image.config_digest)?;
    if config.rootfs.diff_ids.len() != image.layers.len() {
        return Err(UnpackError::LayerCount {
            diff_ids: config.rootfs.diff_ids.len(),
            layers: image.layers.len(),
        });
    }
    let sources: Vec<LayerSource> = image
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(layer, diff_id)| LayerSource {
            digest: layer.digest.clone(),
            diff_id: diff_id.clone(),
            media_type: layer.media_type.clone(),
        })
        .collect();
    let dirs = unpack_layers(store, &sources, jobs, progress)?;
    let layers: Vec<UnpackedLayer> = sources
        .iter()
        .zip(dirs)
        .map(|(source, path)| UnpackedLayer {
            diff_id: source.diff_id.clone(),
            path,
        })
        .collect();
    // The stack's index, for every container of this image (lpmx-mkroot).
    lpmx_core::index::ensure(store, &layers)?;
    Ok(LayersDocument {
        kind: LayersDocument::KIND.to_owned(),
        version: LayersDocument::VERSION,
        reference: image.reference.clone(),
        manifest_digest: image.manifest_digest.clone(),
        config_digest: image.config_digest.clone(),
        platform: image.platform.clone(),
        config: config.config.unwrap_or_default(),
        layers,
    })
}

/// Reads and verifies the config blob `digest` from the store.
pub fn read_config(store: &Store, digest: &Digest) -> Result<ImageConfig, UnpackError> {
    let path = store.blob_path(digest);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(UnpackError::MissingBlob(digest.clone()));
        }
        Err(e) => return Err(UnpackError::io(&path)(e)),
    };
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(UnpackError::DigestMismatch {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(ImageConfig::parse(&bytes)?)
}

fn unpack_layers(
    store: &Store,
    layers: &[LayerSource],
    jobs: usize,
    progress: &Progress,
) -> Result<Vec<std::path::PathBuf>, UnpackError> {
    map_bounded(layers, jobs, |layer| {
        let task = progress.task(format!("layer {}", layer.diff_id.short()), None);
        let (dir, outcome) = unpack_layer(store, layer)?;
        task.finish(match outcome {
            Outcome::AlreadyPresent => "already unpacked",
            Outcome::Unpacked => "unpacked",
        });
        Ok(dir.path().to_owned())
    })
}
