//! A whole pull: manifest (through indexes to one platform), config, layers.

use std::io::Read;

use reqwest::header::CONTENT_TYPE;

use lpmx_core::ImageRef;
use lpmx_core::digest::Digest;
use lpmx_core::document::{Document, ImageDocument, LayerBlob};
use lpmx_core::oci::{Descriptor, ImageConfig, ManifestKind, Platform, media};
use lpmx_core::parallel::map_bounded;
use lpmx_core::progress::Progress;
use lpmx_core::store::Store;

use crate::error::PullError;
use crate::fetch::{Fetched, fetch_blob};
use crate::registry::{Registry, RetryPolicy};

/// Manifests and indexes larger than this are refused (real ones are KiBs).
const MANIFEST_LIMIT: u64 = 4 << 20;
/// Indexes may point at indexes; this deep at most.
const MAX_NESTING: usize = 8;

#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The platform to select from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// Speak plain HTTP to a registry that is not on loopback.
    pub plain_http: bool,
    /// Blobs downloaded at once.
    pub jobs: usize,
    pub retry: RetryPolicy,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: None,
            plain_http: false,
            jobs: 4,
            retry: RetryPolicy::default(),
        }
    }
}

/// Pulls `image` into `store` and describes it for `lpmx-unpack`.
pub fn pull(
    store: &Store,
    image: &ImageRef,
    options: &PullOptions,
    progress: &Progress,
) -> Result<ImageDocument, PullError> {
    let registry = Registry::new(image, options.plain_http, options.retry)?;
    let wanted = options.platform.clone().unwrap_or_else(Platform::host);

    let (top_digest, mut manifest) = fetch_manifest(
        store,
        &registry,
        &image.manifest_reference(),
        image.digest.as_ref(),
    )?;
    let mut manifest_digest = top_digest.clone();
    let mut from_index = false;
    let mut depth = 0;
    let manifest = loop {
        match manifest {
            ManifestKind::Image(image_manifest) => break image_manifest,
            ManifestKind::Index(index) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(PullError::NestingTooDeep(MAX_NESTING));
                }
                let entry = index.select(&wanted).ok_or_else(|| PullError::NoPlatform {
                    reference: image.to_string(),
                    wanted: wanted.clone(),
                    available: index.platforms(),
                })?;
                from_index = true;
                manifest_digest = entry.digest.clone();
                manifest = fetch_manifest(
                    store,
                    &registry,
                    &entry.digest.to_string(),
                    Some(&entry.digest),
                )?
                .1;
            }
        }
    };

    let config_task = progress.task(format!("config {}", manifest.config.digest.short()), None);
    let (config_path, _) = fetch_blob(store, &registry, &manifest.config, &config_task)?;
    drop(config_task);
    let config_bytes = std::fs::read(&config_path).map_err(PullError::io(&config_path))?;
    let config = ImageConfig::parse(&config_bytes)?;
    let platform = if config.architecture.is_empty() {
        wanted.clone()
    } else {
        config.platform()
    };
    // An image without an index has one platform: it must be the one wanted.
    if !from_index && !config.architecture.is_empty() && !wanted.matches(&platform) {
        return Err(PullError::NoPlatform {
            reference: image.to_string(),
            wanted,
            available: vec![platform],
        });
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(PullError::LayerCount {
            diff_ids: config.rootfs.diff_ids.len(),
            layers: manifest.layers.len(),
        });
    }

    let paths = fetch_layers(store, &registry, &manifest.layers, options.jobs, progress)?;
    let layers = manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .zip(paths)
        .map(|((layer, diff_id), path)| LayerBlob {
            digest: layer.digest.clone(),
            diff_id: diff_id.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
            path,
        })
        .collect();
    Ok(ImageDocument {
        kind: ImageDocument::KIND.to_owned(),
        version: ImageDocument::VERSION,
        reference: image.to_string(),
        registry: image.registry.clone(),
        repository: image.repository.clone(),
        tag: image.tag.clone(),
        digest: top_digest,
        manifest_digest,
        platform,
        config_digest: manifest.config.digest.clone(),
        config_path,
        config: config.config.unwrap_or_default(),
        layers,
    })
}

/// Fetches a manifest or index, verifying it against `expected` when the
/// reference pins a digest, and keeps it in the store as a blob. A pinned
/// manifest already in the store is read from there, without the network.
fn fetch_manifest(
    store: &Store,
    registry: &Registry,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<(Digest, ManifestKind), PullError> {
    if let Some((digest, path)) = expected.and_then(|d| Some((d, store.find_blob(d)?))) {
        let body = std::fs::read(&path).map_err(PullError::io(&path))?;
        if Digest::of(&body) == *digest {
            return Ok((digest.clone(), ManifestKind::parse(None, &body)?));
        }
    }
    let url = registry.manifest_url(reference);
    let response = registry.get(&url, Some(media::MANIFEST_ACCEPT), None)?;
    if !response.status().is_success() {
        return Err(registry.status_error(response));
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    response
        .take(MANIFEST_LIMIT + 1)
        .read_to_end(&mut body)
        .map_err(|e| PullError::Download {
            digest: expected.cloned().unwrap_or_else(|| Digest::of(b"")),
            why: format!("reading manifest {reference}: {e}"),
        })?;
    if body.len() as u64 > MANIFEST_LIMIT {
        return Err(PullError::ManifestTooLarge {
            reference: reference.to_owned(),
            limit: MANIFEST_LIMIT,
        });
    }
    let digest = Digest::of(&body);
    if let Some(expected) = expected
        && *expected != digest
    {
        return Err(PullError::DigestMismatch {
            expected: expected.clone(),
            actual: digest,
        });
    }
    let kind = ManifestKind::parse(content_type.as_deref(), &body)?;
    store
        .put_blob(&body)
        .map_err(PullError::io(store.own_blob_path(&digest)))?;
    Ok((digest, kind))
}

/// Fetches `layers` with up to `jobs` downloads at once; returns their
/// store paths in order.
fn fetch_layers(
    store: &Store,
    registry: &Registry,
    layers: &[Descriptor],
    jobs: usize,
    progress: &Progress,
) -> Result<Vec<std::path::PathBuf>, PullError> {
    map_bounded(layers, jobs, |layer| {
        let task = progress.task(format!("layer {}", layer.digest.short()), Some(layer.size));
        let (path, how) = fetch_blob(store, registry, layer, &task)?;
        task.finish(&describe(how, layer.size));
        Ok(path)
    })
}

fn describe(how: Fetched, size: u64) -> String {
    let megabytes = size as f64 / 1e6;
    match how {
        Fetched::AlreadyPresent => "already present".to_owned(),
        Fetched::Downloaded => format!("fetched {megabytes:.1} MB"),
        Fetched::Resumed { from } => {
            format!(
                "fetched {megabytes:.1} MB (resumed at {:.1} MB)",
                from as f64 / 1e6
            )
        }
    }
}
