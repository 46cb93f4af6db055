//! Images built in memory: layers, config, manifest and index, in Docker
//! or OCI formats, ready to be pushed to a registry.

use lpmx_core::Digest;
use lpmx_core::oci::{Platform, media};
use serde_json::json;

/// A blob with its media type and digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: Digest,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_owned(),
            digest: Digest::of(&bytes),
            bytes,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.bytes.len()})
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Docker,
    Oci,
}

/// An image: config, gzip layers and the manifest that lists them.
#[derive(Clone, Debug)]
pub struct Image {
    pub platform: Platform,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// Digests of the uncompressed layer tars.
    pub diff_ids: Vec<Digest>,
    pub manifest: Blob,
}

impl Image {
    /// Builds an image from uncompressed layer tars, bottom first, with
    /// fast gzip layers.
    pub fn build(format: Format, platform: &str, layer_tars: Vec<Vec<u8>>) -> Image {
        Image::build_compressed(format, platform, layer_tars, flate2::Compression::fast())
    }

    /// As [`Image::build`], gzip at `level` (`Compression::default()` is
    /// what registries usually serve).
    pub fn build_compressed(
        format: Format,
        platform: &str,
        layer_tars: Vec<Vec<u8>>,
        level: flate2::Compression,
    ) -> Image {
        let layers = layer_tars
            .iter()
            .map(|tar| (gzip_at(tar, level), Digest::of(tar)))
            .collect();
        Image::from_gzip_layers(format, platform, layers)
    }

    /// An image from gzip'd layers and their diff_ids (the digests of the
    /// uncompressed tars), bottom first.
    pub fn from_gzip_layers(
        format: Format,
        platform: &str,
        gzip_layers: Vec<(Vec<u8>, Digest)>,
    ) -> Image {
        let platform: Platform = platform.parse().expect("platform");
        let layer_type = match format {
            Format::Docker => media::DOCKER_LAYER_GZIP,
            Format::Oci => media::OCI_LAYER_GZIP,
        };
        let diff_ids: Vec<Digest> = gzip_layers.iter().map(|(_, d)| d.clone()).collect();
        let layers: Vec<Blob> = gzip_layers
            .into_iter()
            .map(|(gz, _)| Blob::new(layer_type, gz))
            .collect();
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>()},
        });
        if let Some(variant) = &platform.variant {
            config["variant"] = json!(variant);
        }
        let (config_type, manifest_type) = match format {
            Format::Docker => (media::DOCKER_CONFIG, media::DOCKER_MANIFEST),
            Format::Oci => (media::OCI_CONFIG, media::OCI_MANIFEST),
        };
        let config = Blob::new(config_type, serde_json::to_vec(&config).expect("json"));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(manifest_type, serde_json::to_vec(&manifest).expect("json"));
        Image {
            platform,
            config,
            layers,
            diff_ids,
            manifest,
        }
    }

    /// The blobs a registry must hold for this image: config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// An index (OCI) or manifest list (Docker) over some images or indexes.
pub fn index(format: Format, entries: &[(&Blob, Option<&Platform>)]) -> Blob {
    let media_type = match format {
        Format::Docker => media::DOCKER_MANIFEST_LIST,
        Format::Oci => media::OCI_INDEX,
    };
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(blob, platform)| {
            let mut entry = blob.descriptor();
            if let Some(platform) = platform {
                entry["platform"] = serde_json::to_value(platform).expect("json");
            }
            entry
        })
        .collect();
    let body = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
    Blob::new(media_type, serde_json::to_vec(&body).expect("json"))
}

/// A tar of regular files (directories are implied), as `(path, contents)`.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *contents)
            .expect("append to tar");
    }
    builder.into_inner().expect("finish tar")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    gzip_at(bytes, flate2::Compression::fast())
}

pub fn gzip_at(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// `len` bytes that do not compress, the same for the same `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small image of `layers` layers with a few files each.
pub fn small_image(format: Format, platform: &str, layers: usize) -> Image {
    let tars = (0..layers)
        .map(|i| {
            let name = format!("layer{i}/file.txt");
            let contents = format!("layer {i} of a test image for {platform}\n");
            let noise = noise(i as u64, 4096);
            tar_of(&[
                (&name, contents.as_bytes()),
                (&format!("layer{i}/noise.bin"), &noise),
            ])
        })
        .collect();
    Image::build(format, platform, tars)
}

/// One entry of a hand-made tar, for archives the `tar` crate's builder
/// would refuse to write (`..`, absolute names, links out of the archive).
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub name: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub link: Option<String>,
    pub data: Vec<u8>,
    pub device: Option<(u32, u32)>,
    /// PAX records (`SCHILY.xattr.user.x`, ...) written before the entry.
    pub pax: Vec<(String, Vec<u8>)>,
}

impl RawEntry {
    fn new(name: &str, kind: tar::EntryType, mode: u32) -> RawEntry {
        RawEntry {
            name: name.to_owned(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            link: None,
            data: Vec::new(),
            device: None,
            pax: Vec::new(),
        }
    }

    pub fn file(name: &str, data: &[u8]) -> RawEntry {
        RawEntry {
            data: data.to_vec(),
            ..RawEntry::new(name, tar::EntryType::Regular, 0o644)
        }
    }

    pub fn dir(name: &str) -> RawEntry {
        RawEntry::new(name, tar::EntryType::Directory, 0o755)
    }

    pub fn symlink(name: &str, target: &str) -> RawEntry {
        RawEntry {
            link: Some(target.to_owned()),
            ..RawEntry::new(name, tar::EntryType::Symlink, 0o777)
        }
    }

    pub fn hardlink(name: &str, target: &str) -> RawEntry {
        RawEntry {
            link: Some(target.to_owned()),
            ..RawEntry::new(name, tar::EntryType::Link, 0o644)
        }
    }

    pub fn device(name: &str, kind: tar::EntryType, major: u32, minor: u32) -> RawEntry {
        RawEntry {
            device: Some((major, minor)),
            ..RawEntry::new(name, kind, 0o666)
        }
    }

    pub fn fifo(name: &str) -> RawEntry {
        RawEntry::new(name, tar::EntryType::Fifo, 0o644)
    }

    pub fn mode(mut self, mode: u32) -> RawEntry {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> RawEntry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn xattr(mut self, name: &str, value: &[u8]) -> RawEntry {
        self.pax
            .push((format!("SCHILY.xattr.{name}"), value.to_vec()));
        self
    }
}

/// Writes `entries` as a ustar archive byte by byte: names go into the
/// header fields as given, unchecked.
pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    fn put(field: &mut [u8], value: &[u8]) {
        assert!(value.len() <= field.len(), "field too long for a raw tar");
        field[..value.len()].copy_from_slice(value);
    }
    fn pad(out: &mut Vec<u8>) {
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    let mut out = Vec::new();
    let header_for = |name: &str, kind: tar::EntryType, size: u64| {
        let mut header = tar::Header::new_ustar();
        put(&mut header.as_old_mut().name, name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mtime(1_700_000_000);
        header
    };
    for entry in entries {
        if !entry.pax.is_empty() {
            let mut records = Vec::new();
            for (key, value) in &entry.pax {
                // "LEN key=value\n", LEN counting itself.
                let body_len = key.len() + value.len() + 3;
                let mut len = body_len + 1;
                while len != body_len + len.to_string().len() {
                    len = body_len + len.to_string().len();
                }
                records.extend_from_slice(format!("{len} {key}=").as_bytes());
                records.extend_from_slice(value);
                records.push(b'\n');
            }
            let mut header = header_for("PaxHeader", tar::EntryType::XHeader, records.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(&records);
            pad(&mut out);
        }
        let mut header = header_for(&entry.name, entry.kind, entry.data.len() as u64);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        if let Some(link) = &entry.link {
            put(&mut header.as_old_mut().linkname, link.as_bytes());
        }
        if let Some((major, minor)) = entry.device {
            header.set_device_major(major).expect("ustar device");
            header.set_device_minor(minor).expect("ustar device");
        }
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&entry.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// A gzip'd layer holding one file `name`: `head`, `zeros` zero bytes,
/// `tail`, streamed so that a file of gigabytes never sits in memory.
/// Returns the blob and the layer's diff_id.
pub fn zeros_layer(name: &str, head: &[u8], zeros: u64, tail: &[u8]) -> (Vec<u8>, Digest) {
    use std::io::Write;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut hasher = lpmx_core::digest::Hasher::default();
    let mut put = |bytes: &[u8]| {
        gzip.write_all(bytes).expect("gzip");
        hasher.update(bytes);
    };
    let size = head.len() as u64 + zeros + tail.len() as u64;
    let mut header = tar::Header::new_gnu();
    header.set_path(name).expect("name");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    put(header.as_bytes());
    put(head);
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        put(&chunk[..n]);
        left -= n as u64;
    }
    put(tail);
    let padding = (512 - (size % 512) as usize) % 512;
    put(&vec![0u8; padding + 1024]);
    let digest = hasher.finish();
    (gzip.finish().expect("gzip"), digest)
}
