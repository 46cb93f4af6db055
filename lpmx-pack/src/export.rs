//! `lpmx-pack NAME --oci DIR | --docker-archive FILE`: commit the writable
//! layer as a new image layer, on top of the image's own, and export the
//! image for other tools (skopeo, umoci, podman load, docker load).
//!
//! The new layer holds the writable layer's files with the owners, modes
//! and device nodes fake root recorded, and its whiteouts as OCI whiteout
//! entries (`.wh.NAME`, `.wh..wh..opq`). The image config gains the
//! layer's diff_id, a history entry, and the container's environment file
//! merged into `Env`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use lpmx_core::Digest;
use lpmx_core::container::{EnvFile, Whiteouts};
use lpmx_core::digest::Hasher;
use lpmx_core::oci::media;
use lpmx_core::store::Store;
use lpmx_unpack::stream::{Compression, LayerStream};
use serde_json::{Value, json};

use crate::layer_tar::LayerTar;
use crate::stream::Packable;
use crate::{PackError, read_error, write_error};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where the image goes.
#[derive(Clone, Debug)]
pub enum Export {
    /// An OCI image layout directory, made or added to.
    Oci(PathBuf),
    /// A `docker save` archive, as `docker load` and `podman load` read.
    DockerArchive(PathBuf),
}

/// Exports container `name` as an image named `tag` (`NAME[:TAG]`; an OCI
/// layout names it by TAG alone, as `skopeo` and `umoci` address it).
pub fn export(store: &Store, name: &str, target: &Export, tag: &str) -> Result<(), PackError> {
    let (repository, version) = split_tag(tag)?;
    let source = Packable::load(store, name)?;
    let store = &source.store;
    let upper = &source.stack.upper;
    let owners = lpmx_core::container::read_owners_log(upper).map_err(read_error(upper))?;
    let whiteouts = Whiteouts::read(upper).map_err(read_error(upper))?;
    let layer = LayerTar {
        upper,
        owners: &owners,
        whiteouts: Some(&whiteouts),
    };
    let env = EnvFile::parse(&source.env_text()?);
    match target {
        Export::Oci(dir) => {
            let blobs = dir.join("blobs/sha256");
            check_layout(dir)?;
            fs::create_dir_all(&blobs).map_err(write_error(&blobs))?;
            let temp = blobs.join(format!(".lpmx-layer.{}.tmp", std::process::id()));
            let written = write_layer(&layer, &temp, true);
            let (diff_id, digest, size) = match written {
                Ok(done) => done,
                Err(e) => {
                    let _ = fs::remove_file(&temp);
                    return Err(e);
                }
            };
            let layer_path = blobs.join(digest.hex());
            fs::rename(&temp, &layer_path).map_err(write_error(&layer_path))?;
            let config = new_config(&source.config, &diff_id, &env, name)?;
            let config_digest = put(&blobs, &config)?;
            let mut layers = Vec::new();
            for base in &source.layers {
                copy_blob(store, &base.digest, &blobs)?;
                let media_type = Compression::from_media_type(&base.media_type)
                    .map_or(base.media_type.clone(), |c| c.media_type().to_owned());
                layers.push(json!({
                    "mediaType": media_type,
                    "digest": base.digest,
                    "size": base.size,
                }));
            }
            layers.push(json!({
                "mediaType": media::OCI_LAYER_GZIP,
                "digest": digest,
                "size": size,
            }));
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media::OCI_MANIFEST,
                "config": {
                    "mediaType": media::OCI_CONFIG,
                    "digest": config_digest,
                    "size": config.len(),
                },
                "layers": layers,
            }))
            .expect("JSON");
            let manifest_digest = put(&blobs, &manifest)?;
            add_to_index(dir, &manifest_digest, manifest.len(), version)?;
            Ok(())
        }
        Export::DockerArchive(file) => {
            let temp = store.temp_path("export-layer");
            let result = (|| {
                let (diff_id, _, _) = write_layer(&layer, &temp, false)?;
                let config = new_config(&source.config, &diff_id, &env, name)?;
                write_docker_archive(
                    store,
                    &source,
                    (&diff_id, &temp),
                    &config,
                    &format!("{repository}:{version}"),
                    file,
                )
            })();
            let _ = fs::remove_file(&temp);
            result
        }
    }
}

/// `NAME[:TAG]` into its parts, `latest` by default.
fn split_tag(tag: &str) -> Result<(&str, &str), PackError> {
    let (name, version) = match tag.rsplit_once(':') {
        Some((name, version)) if !version.contains('/') => (name, version),
        _ => (tag, "latest"),
    };
    let valid = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
    };
    if valid(name, b"/:") && valid(version, b"") {
        Ok((name, version))
    } else {
        Err(PackError::Tag(tag.to_owned()))
    }
}

/// Writes what passes through it to `inner` and hashes it.
struct HashWriter<W: Write> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W: Write>(inner: W) -> HashWriter<W> {
    HashWriter {
        inner,
        hasher: Hasher::default(),
    }
}

/// Writes the layer tar to `path`, gzipped or not: its diff_id, the
/// digest of the file and the file's size.
fn write_layer(
    layer: &LayerTar<'_>,
    path: &Path,
    gzip: bool,
) -> Result<(Digest, Digest, u64), PackError> {
    let file = File::create(path).map_err(write_error(path))?;
    let stored = hashing(BufWriter::with_capacity(1 << 20, file));
    if gzip {
        let mut tar = hashing(GzEncoder::new(stored, GzLevel::fast()));
        layer.write(&mut tar)?;
        let diff_id = tar.hasher.finish();
        let mut stored = tar.inner.finish().map_err(write_error(path))?;
        stored.flush().map_err(write_error(path))?;
        let size = stored.hasher.len();
        Ok((diff_id, stored.hasher.finish(), size))
    } else {
        let mut stored = stored;
        layer.write(&mut stored)?;
        stored.flush().map_err(write_error(path))?;
        let size = stored.hasher.len();
        let digest = stored.hasher.finish();
        Ok((digest.clone(), digest, size))
    }
}

/// The image config with the new layer, a history entry and the
/// container's environment.
fn new_config(
    original: &[u8],
    diff_id: &Digest,
    env: &EnvFile,
    name: &str,
) -> Result<Vec<u8>, PackError> {
    let mut config: Value =
        serde_json::from_slice(original).map_err(|source| lpmx_core::oci::FormatError::Json {
            what: "image config",
            source,
        })?;
    let now = rfc3339(SystemTime::now());
    let object = config.as_object_mut().ok_or_else(|| {
        PackError::Format(lpmx_core::oci::FormatError::MediaType(
            "an image config that is not a JSON object".into(),
        ))
    })?;
    object.insert("created".into(), json!(now));
    let rootfs = object
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    if let Some(ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        ids.push(json!(diff_id));
    }
    let history = object.entry("history").or_insert_with(|| json!([]));
    if let Some(history) = history.as_array_mut() {
        history.push(json!({
            "created": now,
            "created_by": format!("lpmx-pack --export (container {name})"),
            "comment": "the container's writable layer",
        }));
    }
    let run = object.entry("config").or_insert_with(|| json!({}));
    if run.is_null() {
        *run = json!({});
    }
    if let Some(run) = run.as_object_mut() {
        let mut vars: Vec<String> = run
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for (key, value) in &env.vars {
            let prefix = format!("{key}=");
            vars.retain(|v| !v.starts_with(&prefix));
            vars.push(format!("{key}={value}"));
        }
        run.insert("Env".into(), json!(vars));
    }
    Ok(serde_json::to_vec(&config).expect("JSON"))
}

/// RFC 3339 in UTC, as image configs date things.
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Stores `bytes` as a blob of the layout; returns its digest.
fn put(blobs: &Path, bytes: &[u8]) -> Result<Digest, PackError> {
    let digest = Digest::of(bytes);
    let path = blobs.join(digest.hex());
    if !path.is_file() {
        let temp = blobs.join(format!(".lpmx.{}.tmp", std::process::id()));
        fs::write(&temp, bytes).map_err(write_error(&temp))?;
        fs::rename(&temp, &path).map_err(write_error(&path))?;
    }
    Ok(digest)
}

/// Puts the store's blob `digest` into the layout: a hard link when both
/// are on one file system, else a copy.
fn copy_blob(store: &Store, digest: &Digest, blobs: &Path) -> Result<(), PackError> {
    let target = blobs.join(digest.hex());
    if target.is_file() {
        return Ok(());
    }
    let source = store.blob_path(digest);
    if !source.is_file() {
        return Err(PackError::MissingBlob(digest.clone()));
    }
    if fs::hard_link(&source, &target).is_ok() {
        return Ok(());
    }
    let temp = blobs.join(format!(".lpmx-copy.{}.tmp", std::process::id()));
    fs::copy(&source, &temp).map_err(write_error(&temp))?;
    fs::rename(&temp, &target).map_err(write_error(&target))
}

/// A directory to make a layout in: missing, empty, or a layout already.
fn check_layout(dir: &Path) -> Result<(), PackError> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(read_error(dir)(e)),
        Ok(mut entries) => {
            if entries.next().is_none() || dir.join("oci-layout").is_file() {
                Ok(())
            } else {
                Err(PackError::NotALayout(dir.to_owned()))
            }
        }
    }
}

/// Names the manifest `version` in the layout's index.json, replacing
/// what had that name.
fn add_to_index(dir: &Path, digest: &Digest, size: usize, version: &str) -> Result<(), PackError> {
    let path = dir.join("index.json");
    let mut index = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| PackError::NotALayout(dir.to_owned()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []})
        }
        Err(e) => return Err(read_error(&path)(e)),
    };
    let manifests = index
        .as_object_mut()
        .expect("an object")
        .entry("manifests")
        .or_insert_with(|| json!([]));
    if let Some(list) = manifests.as_array_mut() {
        list.retain(|m| m["annotations"][REF_NAME].as_str() != Some(version));
        list.push(json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "annotations": { REF_NAME: version },
        }));
    }
    let layout = dir.join("oci-layout");
    fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(write_error(&layout))?;
    let temp = dir.join(".index.json.tmp");
    fs::write(&temp, serde_json::to_vec_pretty(&index).expect("JSON"))
        .map_err(write_error(&temp))?;
    fs::rename(&temp, &path).map_err(write_error(&path))
}

/// A `docker save` archive: `<config>.json`, `<diff_id>/layer.tar` for
/// each layer (uncompressed, so each file's digest is its diff_id) and
/// `manifest.json`, written through a temporary file.
fn write_docker_archive(
    store: &Store,
    source: &Packable,
    (new_diff_id, new_layer): (&Digest, &Path),
    config: &[u8],
    tag: &str,
    file: &Path,
) -> Result<(), PackError> {
    let temp = temp_beside(file);
    let result = (|| {
        let out = File::create(&temp).map_err(write_error(&temp))?;
        let mut archive = tar::Builder::new(BufWriter::with_capacity(1 << 20, out));
        let mut layer_names = Vec::new();
        let scratch = store.temp_path("export-base");
        for base in &source.layers {
            let name = format!("{}/layer.tar", base.diff_id.hex());
            decompress(store, base, &scratch)?;
            let appended = append_file(&mut archive, &name, &scratch);
            let _ = fs::remove_file(&scratch);
            appended.map_err(write_error(&temp))?;
            layer_names.push(name);
        }
        let name = format!("{}/layer.tar", new_diff_id.hex());
        append_file(&mut archive, &name, new_layer).map_err(write_error(&temp))?;
        layer_names.push(name);
        let config_name = format!("{}.json", Digest::of(config).hex());
        append_bytes(&mut archive, &config_name, config).map_err(write_error(&temp))?;
        let manifest = serde_json::to_vec(&json!([{
            "Config": config_name,
            "RepoTags": [tag],
            "Layers": layer_names,
        }]))
        .expect("JSON");
        append_bytes(&mut archive, "manifest.json", &manifest).map_err(write_error(&temp))?;
        let mut out = archive.into_inner().map_err(write_error(&temp))?;
        out.flush().map_err(write_error(&temp))?;
        fs::rename(&temp, file).map_err(write_error(file))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn temp_beside(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    file.with_file_name(name)
}

/// The uncompressed tar of base layer `layer` into `path`, checked
/// against its diff_id.
fn decompress(
    store: &Store,
    layer: &lpmx_core::pack::PackedLayer,
    path: &Path,
) -> Result<(), PackError> {
    let blob = store.blob_path(&layer.digest);
    if !blob.is_file() {
        return Err(PackError::MissingBlob(layer.digest.clone()));
    }
    let compression = Compression::from_media_type(&layer.media_type).unwrap_or(Compression::Gzip);
    let mut stream = LayerStream::open(&blob, compression).map_err(read_error(&blob))?;
    let mut out = File::create(path).map_err(write_error(path))?;
    io::copy(&mut stream, &mut out).map_err(read_error(&blob))?;
    let digests = stream.finish().map_err(read_error(&blob))?;
    if digests.uncompressed != layer.diff_id {
        return Err(PackError::CorruptBlob {
            expected: layer.diff_id.clone(),
            actual: digests.uncompressed,
        });
    }
    Ok(())
}

fn entry_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_file<W: Write>(archive: &mut tar::Builder<W>, name: &str, path: &Path) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut header = entry_header(file.metadata()?.len());
    archive.append_data(&mut header, name, &mut file)
}

fn append_bytes<W: Write>(
    archive: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let mut header = entry_header(bytes.len() as u64);
    archive.append_data(&mut header, name, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000);
        assert_eq!(rfc3339(t), "2026-11-30T00:53:20Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn tags_split_at_the_last_colon_after_the_last_slash() {
        assert_eq!(split_tag("a/b:1.0").unwrap(), ("a/b", "1.0"));
        assert_eq!(
            split_tag("localhost:5000/x").unwrap(),
            ("localhost:5000/x", "latest")
        );
        assert!(split_tag("bad tag").is_err());
    }
}
