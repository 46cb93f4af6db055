//! `lpmx-pack NAME`: the container as a pack stream (`lpmx_core::pack`).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};

use lpmx_core::Digest;
use lpmx_core::container::{HostPrograms, StackDocument, Whiteouts};
use lpmx_core::document::{Document, write_document};
use lpmx_core::oci::{ManifestKind, media};
use lpmx_core::pack::{PackDocument, PackWriter, PackedLayer};
use lpmx_core::store::Store;

use crate::layer_tar::LayerTar;
use crate::{PackError, read_error};

/// Which layers a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layers {
    /// Every layer's blob: the target needs nothing.
    All,
    /// References only: the target has the image already.
    None,
}

/// A container and its image, read and verified from the store.
pub(crate) struct Packable {
    /// The store, searching also the stores the container's layers are in.
    pub store: Store,
    pub stack: StackDocument,
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub layers: Vec<PackedLayer>,
}

impl Packable {
    pub fn load(store: &Store, name: &str) -> Result<Packable, PackError> {
        let (store, stack) = lpmx_mkroot::open_container(store, name)?;
        let manifest = read_blob(&store, &stack.manifest_digest)?;
        let config = read_blob(&store, &stack.config_digest)?;
        let ManifestKind::Image(parsed) = ManifestKind::parse(None, &manifest)? else {
            return Err(lpmx_core::oci::FormatError::MediaType(media::OCI_INDEX.into()).into());
        };
        if parsed.layers.len() != stack.layers.len() {
            return Err(PackError::LayerCount {
                manifest: parsed.layers.len(),
                stack: stack.layers.len(),
            });
        }
        let layers = parsed
            .layers
            .iter()
            .zip(&stack.layers)
            .map(|(blob, layer)| PackedLayer {
                diff_id: layer.diff_id.clone(),
                digest: blob.digest.clone(),
                media_type: blob.media_type.clone(),
                size: blob.size,
            })
            .collect();
        Ok(Packable {
            store,
            stack,
            manifest,
            config,
            layers,
        })
    }

    /// The container's environment file, as text.
    pub fn env_text(&self) -> Result<String, PackError> {
        read_text(&self.stack.env_file)
    }
}

/// Reads a small blob (a manifest or config) and checks its digest.
fn read_blob(store: &Store, digest: &Digest) -> Result<Vec<u8>, PackError> {
    let path = store.blob_path(digest);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PackError::MissingBlob(digest.clone()));
        }
        Err(e) => return Err(read_error(path)(e)),
    };
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(PackError::CorruptBlob {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// A file of the container as text; empty when missing.
fn read_text(path: &std::path::Path) -> Result<String, PackError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(read_error(path)(e)),
    }
}

/// Writes container `name` of `store` as a pack stream to `out`.
pub fn pack(store: &Store, name: &str, layers: Layers, out: impl Write) -> Result<(), PackError> {
    let source = Packable::load(store, name)?;
    let store = &source.store;
    let stack = &source.stack;
    let owners =
        lpmx_core::container::read_owners_log(&stack.upper).map_err(read_error(&stack.upper))?;
    let document = PackDocument {
        kind: PackDocument::KIND.to_owned(),
        version: PackDocument::VERSION,
        name: stack.name.clone(),
        reference: stack.reference.clone(),
        manifest_digest: stack.manifest_digest.clone(),
        config_digest: stack.config_digest.clone(),
        platform: stack.platform.clone(),
        config: stack.config.clone(),
        layers: source.layers.clone(),
        layers_included: layers == Layers::All,
        env: source.env_text()?,
        host_programs: read_text(&HostPrograms::path(stack))?,
        whiteouts: read_text(&Whiteouts::path(&stack.upper))?,
    };
    // Blobs first checked to be there, so a missing one fails before a
    // byte is written.
    let mut layer_files = Vec::new();
    if layers == Layers::All {
        for layer in &source.layers {
            let path = store.blob_path(&layer.digest);
            let file = File::open(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => PackError::MissingBlob(layer.digest.clone()),
                _ => read_error(&path)(e),
            })?;
            let len = file.metadata().map_err(read_error(&path))?.len();
            layer_files.push((layer.digest.clone(), len, file));
        }
    }
    let mut json = Vec::new();
    write_document(&document, &mut json).map_err(PackError::Stream)?;
    let mut pack = PackWriter::new(BufWriter::with_capacity(lpmx_core::pack::CHUNK, out))
        .map_err(PackError::Stream)?;
    pack.document(&json).map_err(PackError::Stream)?;
    for bytes in [&source.manifest, &source.config] {
        pack.blob(&Digest::of(bytes), bytes.len() as u64, &mut &bytes[..])
            .map_err(PackError::Stream)?;
    }
    for (digest, len, mut file) in layer_files {
        pack.blob(&digest, len, &mut file)
            .map_err(PackError::Stream)?;
    }
    let mut upper = pack.upper();
    LayerTar {
        upper: &stack.upper,
        owners: &owners,
        whiteouts: None,
    }
    .write(&mut upper)?;
    upper.finish().map_err(PackError::Stream)?;
    pack.end().map_err(PackError::Stream)?;
    Ok(())
}
