//! Offline image sources: `docker save` archives, OCI image layouts and OCI
//! layouts in a tar, and Singularity (SIF) and squashfs images (see
//! [`crate::squashfs`]), told apart by their first bytes. Their blobs go
//! into the store as if pulled, verified by digest, and the image is
//! described by the same image document that `lpmx-pull` prints.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use lpmx_core::ImageRef;
use lpmx_core::digest::{Digest, Hasher};
use lpmx_core::document::{Document, ImageDocument, LayerBlob};
use lpmx_core::oci::{Descriptor, ImageConfig, ManifestKind, Platform, media};
use lpmx_core::store::Store;
use serde::Deserialize;

use crate::error::UnpackError;
use crate::sif;
use crate::squashfs::{Origin, SQUASHFS_MAGIC, Window, import_squashfs};
use crate::stream::Compression;

/// Which image of a source holding several to take.
#[derive(Clone, Debug)]
pub struct Selection {
    /// A repo tag (docker-archive) or ref name (OCI layout).
    pub name: Option<String>,
    pub platform: Platform,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Metadata files of archives are read into memory, up to this size.
const SMALL_LIMIT: u64 = 16 << 20;
const INDEX_NESTING: usize = 8;

/// Imports the archive or layout at `path` into `store`.
pub fn import_archive(
    store: &Store,
    path: &Path,
    selection: &Selection,
) -> Result<ImageDocument, UnpackError> {
    let meta =
        fs::metadata(path).map_err(|e| archive_error(path, format!("cannot read it: {e}")))?;
    if meta.is_dir() {
        if !path.join("index.json").is_file() {
            return Err(archive_error(
                path,
                "is a directory without index.json, not an OCI image layout",
            ));
        }
        let blobs = |digest: &Digest| -> Result<PathBuf, UnpackError> {
            if let Some(found) = store.find_blob(digest) {
                return Ok(found);
            }
            let source = path.join("blobs/sha256").join(digest.hex());
            let file = File::open(&source)
                .map_err(|e| archive_error(&source, format!("cannot read blob {digest}: {e}")))?;
            copy_into_store(store, file, Some(digest), &source)?;
            Ok(store.own_blob_path(digest))
        };
        let index = fs::read(path.join("index.json")).map_err(UnpackError::io(path))?;
        return from_oci_index(store, path, &index, &blobs, selection);
    }
    let mut file = File::open(path).map_err(UnpackError::io(path))?;
    let mut head = [0u8; 64];
    let n = lpmx_core::read::read_full(&mut file, &mut head).map_err(UnpackError::io(path))?;
    let head = &head[..n];
    if sif::is_sif(head) {
        let image = sif::parse(&file, meta.len())?;
        let window = Window::new(file, image.rootfs_offset, image.rootfs_size)
            .map_err(UnpackError::io(path))?;
        let origin = Origin {
            kind: "sif",
            path,
            architecture: image.architecture,
            labels: image.labels,
        };
        return import_squashfs(store, window, &origin);
    }
    if head.starts_with(SQUASHFS_MAGIC) {
        let window = Window::new(file, 0, meta.len()).map_err(UnpackError::io(path))?;
        let origin = Origin {
            kind: "squashfs",
            path,
            architecture: None,
            labels: None,
        };
        return import_squashfs(store, window, &origin);
    }
    drop(file);
    import_tar(store, path, selection)
}

fn archive_error(path: &Path, why: impl Into<String>) -> UnpackError {
    UnpackError::Archive {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// One pass over a tar (docker-archive or OCI layout, maybe gzipped): blobs
/// into the store, the small metadata files into memory.
fn import_tar(
    store: &Store,
    path: &Path,
    selection: &Selection,
) -> Result<ImageDocument, UnpackError> {
    let mut file = BufReader::new(File::open(path).map_err(UnpackError::io(path))?);
    let head = {
        use std::io::BufRead;
        file.fill_buf().map_err(UnpackError::io(path))?.to_vec()
    };
    let reader: Box<dyn Read> = match Compression::sniff(&head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(file).map_err(UnpackError::io(path))?)
        }
        Compression::None => Box::new(file),
    };
    let mut archive = tar::Archive::new(reader);
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut members: HashMap<String, Digest> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let bad = |why: String| archive_error(path, why);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a valid tar archive: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = member_name(&raw) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink => {
                if let Some(target) = entry.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target);
                    let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                    if let Some(resolved) = member_name(&dir.join(&*target).to_string_lossy()) {
                        links.insert(name, resolved);
                    }
                }
                continue;
            }
            tar::EntryType::Link => {
                if let Some(target) = entry.link_name_bytes()
                    && let Some(target) = member_name(&String::from_utf8_lossy(&target))
                {
                    links.insert(name, target);
                }
                continue;
            }
            _ => continue,
        }
        if matches!(
            name.as_str(),
            "manifest.json" | "index.json" | "oci-layout" | "repositories"
        ) {
            let mut bytes = Vec::new();
            entry
                .by_ref()
                .take(SMALL_LIMIT)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(format!("cannot read {name}: {e}")))?;
            small.insert(name, bytes);
            continue;
        }
        if !is_blob_member(&name) {
            continue;
        }
        let expected = name
            .strip_prefix("blobs/sha256/")
            .map(|hex| format!("sha256:{hex}").parse::<Digest>())
            .transpose()
            .map_err(|_| bad(format!("member {name} is not named by a sha256 digest")))?;
        let digest = copy_into_store(store, &mut entry, expected.as_ref(), &path.join(&name))?;
        members.insert(name, digest);
    }
    let resolve = |name: &str| -> Result<Digest, UnpackError> {
        let mut name = member_name(name).unwrap_or_default();
        for _ in 0..16 {
            if let Some(digest) = members.get(&name) {
                return Ok(digest.clone());
            }
            match links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        Err(bad(format!("names {name}, which it does not contain")))
    };
    if let Some(manifest) = small.get("manifest.json") {
        return from_docker_manifest(store, path, manifest, &resolve, selection);
    }
    if let Some(index) = small.get("index.json") {
        let blobs = |digest: &Digest| -> Result<PathBuf, UnpackError> {
            store
                .find_blob(digest)
                .ok_or_else(|| bad(format!("lacks blob {digest}")))
        };
        return from_oci_index(store, path, index, &blobs, selection);
    }
    Err(bad(
        "is neither a docker-archive (no manifest.json) nor an OCI layout (no index.json)"
            .to_owned(),
    ))
}

/// A member's name without `./`; `None` for names that leave the archive.
fn member_name(raw: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Members worth storing: OCI blobs, layer tars and configs.
fn is_blob_member(name: &str) -> bool {
    name.starts_with("blobs/sha256/")
        || name.ends_with(".tar")
        || name.ends_with(".tar.gz")
        || (name.ends_with(".json") && !name.contains('/'))
}

/// Streams `reader` into the store as a blob, verified against `expected`
/// when given; returns its digest.
fn copy_into_store(
    store: &Store,
    mut reader: impl Read,
    expected: Option<&Digest>,
    origin: &Path,
) -> Result<Digest, UnpackError> {
    let temp = store.temp_path("import");
    let result = (|| {
        let mut out = File::create(&temp).map_err(UnpackError::io(&temp))?;
        let mut hasher = Hasher::default();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(archive_error(origin, format!("cannot read it: {e}"))),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(UnpackError::io(&temp))?;
        }
        let digest = hasher.finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(UnpackError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        if !store.has_blob(&digest) {
            store
                .commit_blob(&digest, &temp)
                .map_err(UnpackError::io(store.own_blob_path(&digest)))?;
        }
        Ok(digest)
    })();
    let _ = fs::remove_file(&temp);
    result
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn from_docker_manifest(
    store: &Store,
    path: &Path,
    manifest: &[u8],
    resolve: &dyn Fn(&str) -> Result<Digest, UnpackError>,
    selection: &Selection,
) -> Result<ImageDocument, UnpackError> {
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest)
        .map_err(|e| archive_error(path, format!("has a malformed manifest.json: {e}")))?;
    let tags = |entry: &DockerManifestEntry| entry.repo_tags.clone().unwrap_or_default();
    let source_name = path.display().to_string();
    let all_tags: Vec<String> = entries.iter().flat_map(tags).collect();
    let entry = match &selection.name {
        Some(name) => entries
            .iter()
            .find(|entry| tags(entry).iter().any(|tag| same_reference(tag, name)))
            .ok_or_else(|| UnpackError::NoSuchImage {
                source_name: source_name.clone(),
                name: name.clone(),
                names: all_tags.clone(),
            })?,
        None => match entries.as_slice() {
            [only] => only,
            [] => return Err(archive_error(path, "has an empty manifest.json")),
            _ => {
                return Err(UnpackError::Ambiguous {
                    source_name,
                    names: all_tags,
                });
            }
        },
    };
    let config_digest = resolve(&entry.config)?;
    let config_bytes = fs::read(store.blob_path(&config_digest)).map_err(UnpackError::io(path))?;
    let mut layers = Vec::new();
    for name in &entry.layers {
        let digest = resolve(name)?;
        let blob = store.blob_path(&digest);
        let mut head = [0u8; 4];
        let n = File::open(&blob)
            .and_then(|mut f| f.read(&mut head))
            .map_err(UnpackError::io(&blob))?;
        let size = fs::metadata(&blob).map_err(UnpackError::io(&blob))?.len();
        layers.push(Descriptor {
            media_type: Compression::sniff(&head[..n]).media_type().to_owned(),
            digest,
            size,
            platform: None,
            annotations: Default::default(),
        });
    }
    let reference = tags(entry)
        .first()
        .cloned()
        .unwrap_or_else(|| format!("docker-archive:{}", path.display()));
    image_as_pulled(store, reference, &config_bytes, layers)
}

/// An image that came without a registry's manifest (a docker-archive, a
/// SIF or squashfs image), its layer blobs in the store: stores its config
/// and the OCI manifest a registry would have served, so the image is in
/// the store as if pulled, and describes it.
pub(crate) fn image_as_pulled(
    store: &Store,
    reference: String,
    config_bytes: &[u8],
    layers: Vec<Descriptor>,
) -> Result<ImageDocument, UnpackError> {
    let config = ImageConfig::parse(config_bytes)?;
    let config_digest = store
        .put_blob(config_bytes)
        .map_err(UnpackError::io(store.root()))?;
    let config_descriptor = Descriptor {
        media_type: media::OCI_CONFIG.to_owned(),
        digest: config_digest.clone(),
        size: config_bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config_descriptor,
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = store
        .put_blob(&manifest_bytes)
        .map_err(UnpackError::io(store.root()))?;
    image_document(
        store,
        reference,
        manifest_digest.clone(),
        manifest_digest,
        config_digest,
        config,
        &layers,
    )
}

/// `debian:bookworm` and `docker.io/library/debian:bookworm` are one image.
fn same_reference(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<ImageRef>(), b.parse::<ImageRef>()), (Ok(x), Ok(y)) if x == y)
}

fn from_oci_index(
    store: &Store,
    path: &Path,
    index: &[u8],
    blobs: &dyn Fn(&Digest) -> Result<PathBuf, UnpackError>,
    selection: &Selection,
) -> Result<ImageDocument, UnpackError> {
    let source_name = path.display().to_string();
    let ManifestKind::Index(index) = ManifestKind::parse(Some(media::OCI_INDEX), index)? else {
        return Err(archive_error(path, "index.json is not an image index"));
    };
    let ref_name = |d: &Descriptor| d.annotations.get(REF_NAME).cloned();
    let names: Vec<String> = index.manifests.iter().filter_map(ref_name).collect();
    let top = match &selection.name {
        Some(name) => index
            .manifests
            .iter()
            .find(|d| ref_name(d).as_deref() == Some(name.as_str()))
            .ok_or_else(|| UnpackError::NoSuchImage {
                source_name: source_name.clone(),
                name: name.clone(),
                names: names.clone(),
            })?,
        None => match index.manifests.as_slice() {
            [only] => only,
            [] => return Err(archive_error(path, "has an empty index.json")),
            // Several entries, all platforms of one image: pick by platform.
            many if many.iter().all(|d| d.platform.is_some()) => index
                .select(&selection.platform)
                .ok_or_else(|| UnpackError::NoPlatform {
                    source_name: source_name.clone(),
                    wanted: selection.platform.clone(),
                    available: index.platforms(),
                })?,
            _ => {
                return Err(UnpackError::Ambiguous { source_name, names });
            }
        },
    };
    let reference = ref_name(top).unwrap_or_else(|| format!("oci:{}", path.display()));
    let top_digest = top.digest.clone();
    let mut descriptor = top.clone();
    for _ in 0..INDEX_NESTING {
        let blob = blobs(&descriptor.digest)?;
        let bytes = fs::read(&blob).map_err(UnpackError::io(&blob))?;
        let media_type = Some(descriptor.media_type.as_str()).filter(|m| !m.is_empty());
        match ManifestKind::parse(media_type, &bytes)? {
            ManifestKind::Index(inner) => {
                descriptor = inner
                    .select(&selection.platform)
                    .ok_or_else(|| UnpackError::NoPlatform {
                        source_name: source_name.clone(),
                        wanted: selection.platform.clone(),
                        available: inner.platforms(),
                    })?
                    .clone();
            }
            ManifestKind::Image(manifest) => {
                let config_path = blobs(&manifest.config.digest)?;
                let config_bytes = fs::read(&config_path).map_err(UnpackError::io(&config_path))?;
                let config = ImageConfig::parse(&config_bytes)?;
                for layer in &manifest.layers {
                    blobs(&layer.digest)?;
                }
                return image_document(
                    store,
                    reference,
                    top_digest,
                    descriptor.digest.clone(),
                    manifest.config.digest.clone(),
                    config,
                    &manifest.layers,
                );
            }
        }
    }
    Err(archive_error(path, "nests indexes too deeply"))
}

pub(crate) fn image_document(
    store: &Store,
    reference: String,
    digest: Digest,
    manifest_digest: Digest,
    config_digest: Digest,
    config: ImageConfig,
    layers: &[Descriptor],
) -> Result<ImageDocument, UnpackError> {
    if config.rootfs.diff_ids.len() != layers.len() {
        return Err(UnpackError::LayerCount {
            diff_ids: config.rootfs.diff_ids.len(),
            layers: layers.len(),
        });
    }
    let parsed = reference.parse::<ImageRef>().ok();
    Ok(ImageDocument {
        kind: ImageDocument::KIND.to_owned(),
        version: ImageDocument::VERSION,
        registry: parsed
            .as_ref()
            .map(|r| r.registry.clone())
            .unwrap_or_default(),
        repository: parsed
            .as_ref()
            .map(|r| r.repository.clone())
            .unwrap_or_default(),
        tag: parsed.and_then(|r| r.tag),
        reference,
        digest,
        manifest_digest,
        platform: config.platform(),
        config_path: store.blob_path(&config_digest),
        config_digest,
        layers: layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(layer, diff_id)| LayerBlob {
                digest: layer.digest.clone(),
                diff_id: diff_id.clone(),
                size: layer.size,
                media_type: layer.media_type.clone(),
                path: store.blob_path(&layer.digest),
            })
            .collect(),
        config: config.config.unwrap_or_default(),
    })
}
