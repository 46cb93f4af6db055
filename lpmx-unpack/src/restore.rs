//! A pack stream (`lpmx-pack NAME | lpmx-unpack`) back into a container.
//!
//! Everything is staged under the store's `tmp/` first: the blobs, each
//! checked against its digest, and the writable layer. Only when the
//! stream's final digest matches are the blobs moved into the store, the
//! missing layers unpacked and the container renamed into place, so a
//! corrupt or cut-short transfer leaves the store as it was.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lpmx_core::Digest;
use lpmx_core::container::{
    ENV_FILE, HOST_PROGRAMS_FILE, OwnerRecord, S_IFBLK, S_IFCHR, StackDocument, UPPER_DIR,
    Whiteouts, check_name, make_dev,
};
use lpmx_core::digest::Hasher;
use lpmx_core::document::{Document, LayersDocument, UnpackedLayer, parse_document};
use lpmx_core::layer::{DeviceKind, EntryMeta, LayerMeta};
use lpmx_core::oci::{ImageConfig, ManifestKind};
use lpmx_core::pack::{PackDocument, PackReader, PackStreamError, Record};
use lpmx_core::parallel::map_bounded;
use lpmx_core::progress::Progress;
use lpmx_core::store::Store;

use crate::error::UnpackError;
use crate::extract::extract;
use crate::layer::{LayerSource, Outcome, unpack_layer};

const STAGE_PREFIX: &str = "pack-";

/// Whether `head`, the first bytes of an input, start a pack stream.
pub fn is_pack_stream(head: &[u8]) -> bool {
    head.starts_with(lpmx_core::pack::MAGIC)
}

/// Reads the pack stream `input` and makes its container, named `name` or
/// as on the source, in `store`.
pub fn restore(
    store: &Store,
    input: impl Read,
    name: Option<&str>,
    jobs: usize,
    progress: &Progress,
) -> Result<StackDocument, UnpackError> {
    remove_abandoned_stages(store);
    let mut pack = PackReader::new(input)?;
    let Record::Document(json) = pack.next_record()? else {
        return Err(corrupt("it does not start with its document"));
    };
    let text = String::from_utf8(json).map_err(|_| corrupt("its document is not UTF-8"))?;
    let document: PackDocument = parse_document(&text)?;
    let name = name.unwrap_or(&document.name).to_owned();
    check_name(&name).map_err(lpmx_mkroot::MkrootError::from)?;
    if store.container_dir(&name).exists() {
        return Err(lpmx_mkroot::MkrootError::Taken(name).into());
    }
    if !document.layers_included {
        // Fail before reading the rest: nothing can make up for them.
        for layer in &document.layers {
            if !store.layer_dir(&layer.diff_id).exists() && !store.has_blob(&layer.digest) {
                return Err(UnpackError::NotInStore(layer.diff_id.clone()));
            }
        }
    }
    let stage = store.temp_path(&format!("{STAGE_PREFIX}{name}"));
    let result = (|| {
        fs::create_dir_all(stage.join("blobs")).map_err(UnpackError::io(&stage))?;
        fs::create_dir(stage.join(UPPER_DIR)).map_err(UnpackError::io(&stage))?;
        let staged = read_records(store, &mut pack, &document, &stage, progress)?;
        check_image(&document, &staged)?;
        // The stream is whole and checked: from here on the store changes.
        for digest in &staged.blobs {
            let path = stage.join("blobs").join(digest.hex());
            store
                .commit_blob(digest, &path)
                .map_err(UnpackError::io(store.own_blob_path(digest)))?;
        }
        let layers = unpack_missing(store, &document, jobs, progress)?;
        write_container_files(&document, &staged.meta, &stage)?;
        let container = stage.join("container");
        fs::create_dir(&container).map_err(UnpackError::io(&container))?;
        let upper = Path::new(UPPER_DIR);
        for file in [
            upper.to_owned(),
            PathBuf::from(ENV_FILE),
            PathBuf::from(HOST_PROGRAMS_FILE),
            Whiteouts::path(upper),
            lpmx_core::container::owners_log_path(upper),
        ] {
            let from = stage.join(&file);
            if from.exists() {
                fs::rename(&from, container.join(&file)).map_err(UnpackError::io(&from))?;
            }
        }
        Ok(lpmx_mkroot::adopt(
            store,
            &name,
            &layers,
            Vec::new(),
            &container,
        )?)
    })();
    lpmx_mkroot::make_removable(&stage);
    let _ = fs::remove_dir_all(&stage);
    result
}

fn corrupt(why: &str) -> UnpackError {
    UnpackError::Pack(PackStreamError::Corrupt(why.to_owned()))
}

/// What the records left in the stage.
struct Staged {
    /// Blobs under `stage/blobs/`, to move into the store.
    blobs: Vec<Digest>,
    manifest: Vec<u8>,
    config: Vec<u8>,
    meta: LayerMeta,
}

fn read_records(
    store: &Store,
    pack: &mut PackReader<impl Read>,
    document: &PackDocument,
    stage: &Path,
    progress: &Progress,
) -> Result<Staged, UnpackError> {
    let mut expected: HashSet<Digest> = HashSet::from([
        document.manifest_digest.clone(),
        document.config_digest.clone(),
    ]);
    if document.layers_included {
        expected.extend(document.layers.iter().map(|l| l.digest.clone()));
    }
    let mut staged = Staged {
        blobs: Vec::new(),
        manifest: Vec::new(),
        config: Vec::new(),
        meta: LayerMeta::new(),
    };
    let mut upper_done = false;
    loop {
        match pack.next_record()? {
            Record::Blob(digest, len) => {
                if !expected.remove(&digest) || upper_done {
                    return Err(corrupt(&format!("blob {digest} is not one it should hold")));
                }
                let task = progress.task(format!("blob {}", digest.short()), Some(len));
                let small = digest == document.manifest_digest || digest == document.config_digest;
                let mut data = pack.blob_data();
                let mut hasher = Hasher::default();
                if small {
                    let mut bytes = Vec::new();
                    data.read_to_end(&mut bytes)
                        .map_err(PackStreamError::from)?;
                    hasher.update(&bytes);
                    if !store.has_blob(&digest) {
                        let path = stage.join("blobs").join(digest.hex());
                        fs::write(&path, &bytes).map_err(UnpackError::io(&path))?;
                        staged.blobs.push(digest.clone());
                    }
                    if digest == document.manifest_digest {
                        staged.manifest = bytes;
                    } else {
                        staged.config = bytes;
                    }
                } else if store.has_blob(&digest) {
                    hasher
                        .update_from(&mut data)
                        .map_err(PackStreamError::from)?;
                } else {
                    let path = stage.join("blobs").join(digest.hex());
                    let file = File::create(&path).map_err(UnpackError::io(&path))?;
                    let mut out = BufWriter::with_capacity(1 << 20, file);
                    let mut buf = vec![0; 1 << 20];
                    loop {
                        let n = data.read(&mut buf).map_err(PackStreamError::from)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                        out.write_all(&buf[..n]).map_err(UnpackError::io(&path))?;
                        task.advance(n as u64);
                    }
                    out.flush().map_err(UnpackError::io(&path))?;
                    staged.blobs.push(digest.clone());
                }
                let actual = hasher.finish();
                if actual != digest {
                    return Err(UnpackError::DigestMismatch {
                        expected: digest,
                        actual,
                    });
                }
                task.finish("received");
            }
            Record::Upper(_) => {
                if upper_done {
                    return Err(corrupt("it holds two writable layers"));
                }
                let task = progress.task("writable layer", None);
                let mut upper = pack.upper();
                staged.meta = extract(&mut upper, &stage.join(UPPER_DIR), "the writable layer", 0)
                    .map_err(|e| match e {
                        // The tar reader saw the stream's own error.
                        UnpackError::Tar { source, .. } => stream_error(source),
                        other => other,
                    })?;
                upper.finish().map_err(stream_error)?;
                upper_done = true;
                task.finish("received");
            }
            Record::End => break,
            Record::Document(_) => return Err(corrupt("it holds two documents")),
        }
    }
    if !upper_done {
        return Err(corrupt("it holds no writable layer"));
    }
    if let Some(missing) = expected.iter().next() {
        return Err(corrupt(&format!("blob {missing} is missing")));
    }
    Ok(staged)
}

fn stream_error(e: io::Error) -> UnpackError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => UnpackError::Pack(PackStreamError::Truncated),
        io::ErrorKind::InvalidData => UnpackError::Pack(PackStreamError::Corrupt(e.to_string())),
        _ => UnpackError::Pack(PackStreamError::Corrupt(format!(
            "its writable layer is not a valid tar: {e}"
        ))),
    }
}

/// The document must describe the manifest and config the stream holds.
fn check_image(document: &PackDocument, staged: &Staged) -> Result<(), UnpackError> {
    let ManifestKind::Image(manifest) = ManifestKind::parse(None, &staged.manifest)? else {
        return Err(corrupt("its manifest is an index"));
    };
    let config = ImageConfig::parse(&staged.config)?;
    let digests: Vec<&Digest> = manifest.layers.iter().map(|l| &l.digest).collect();
    let listed: Vec<&Digest> = document.layers.iter().map(|l| &l.digest).collect();
    let diff_ids: Vec<&Digest> = document.layers.iter().map(|l| &l.diff_id).collect();
    let config_ids: Vec<&Digest> = config.rootfs.diff_ids.iter().collect();
    if manifest.config.digest != document.config_digest
        || digests != listed
        || config_ids != diff_ids
    {
        return Err(corrupt("its document does not match its image"));
    }
    Ok(())
}

/// Unpacks the layers the store does not have yet; the layers document
/// of the image, with this store's paths.
fn unpack_missing(
    store: &Store,
    document: &PackDocument,
    jobs: usize,
    progress: &Progress,
) -> Result<LayersDocument, UnpackError> {
    let paths = map_bounded(&document.layers, jobs, |layer| {
        let source = LayerSource {
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            media_type: layer.media_type.clone(),
        };
        let task = progress.task(format!("layer {}", layer.diff_id.short()), None);
        let (dir, outcome) = unpack_layer(store, &source)?;
        task.finish(match outcome {
            Outcome::AlreadyPresent => "already unpacked",
            Outcome::Unpacked => "unpacked",
        });
        Ok::<PathBuf, UnpackError>(dir.path().to_owned())
    })?;
    Ok(LayersDocument {
        kind: LayersDocument::KIND.to_owned(),
        version: LayersDocument::VERSION,
        reference: document.reference.clone(),
        manifest_digest: document.manifest_digest.clone(),
        config_digest: document.config_digest.clone(),
        platform: document.platform.clone(),
        config: document.config.clone(),
        layers: document
            .layers
            .iter()
            .zip(paths)
            .map(|(layer, path)| UnpackedLayer {
                diff_id: layer.diff_id.clone(),
                path,
            })
            .collect(),
    })
}

/// The environment, host programs and whiteouts files as they were, and
/// the owners log again, by this host's inodes; the writable layer's
/// modes exactly as they were (extraction gives the owner access it may
/// not have had).
fn write_container_files(
    document: &PackDocument,
    meta: &LayerMeta,
    stage: &Path,
) -> Result<(), UnpackError> {
    let upper = stage.join(UPPER_DIR);
    let write = |name: &str, text: &str| {
        let path = stage.join(name);
        fs::write(&path, text).map_err(UnpackError::io(&path))
    };
    write(ENV_FILE, &document.env)?;
    write(HOST_PROGRAMS_FILE, &document.host_programs)?;
    if !document.whiteouts.is_empty() {
        let path = Whiteouts::path(&upper);
        fs::write(&path, &document.whiteouts).map_err(UnpackError::io(&path))?;
    }
    let mut log = String::new();
    let mut modes: BTreeMap<usize, Vec<(PathBuf, u32)>> = BTreeMap::new();
    for (rel, entry) in &meta.entries {
        let path = upper.join(rel);
        let disk = fs::symlink_metadata(&path).map_err(UnpackError::io(&path))?;
        if let Some(record) = owner_record(entry, disk.mode()) {
            log.push_str(&lpmx_core::container::owner_line(&record, disk.ino()));
        }
        if let Some(mode) = entry.mode
            && entry.device.is_none()
            && !disk.file_type().is_symlink()
        {
            let depth = Path::new(rel).components().count();
            modes.entry(depth).or_default().push((path, mode));
        }
    }
    if !log.is_empty() {
        let path = lpmx_core::container::owners_log_path(&upper);
        fs::write(&path, log).map_err(UnpackError::io(&path))?;
    }
    // Deepest first: a directory losing its owner's access comes last.
    for (path, mode) in modes.into_values().rev().flatten() {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(UnpackError::io(&path))?;
    }
    Ok(())
}

/// The owners log record for an extracted entry, if it needs one.
fn owner_record(entry: &EntryMeta, disk_mode: u32) -> Option<OwnerRecord> {
    let mode = match entry.device {
        Some(device) => {
            let kind = match device.kind {
                DeviceKind::Char => S_IFCHR,
                DeviceKind::Block => S_IFBLK,
            };
            kind | (entry.mode.unwrap_or(disk_mode) & 0o7777)
        }
        None => 0,
    };
    let rdev = entry.device.map_or(0, |d| make_dev(d.major, d.minor));
    let (uid, gid) = (entry.uid.unwrap_or(0), entry.gid.unwrap_or(0));
    (uid != 0 || gid != 0 || mode != 0).then_some(OwnerRecord {
        uid,
        gid,
        mode,
        rdev,
    })
}

/// Stages of restores whose process died (killed, or the machine went
/// down) hold nothing anyone will finish: removed.
fn remove_abandoned_stages(store: &Store) {
    for stage in store.abandoned_temps(STAGE_PREFIX) {
        lpmx_mkroot::make_removable(&stage);
        let _ = fs::remove_dir_all(stage);
    }
}
