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
    /// Builds an image from uncompressed layer tars, bottom first.
    pub fn build(format: Format, platform: &str, layer_tars: Vec<Vec<u8>>) -> Image {
        let platform: Platform = platform.parse().expect("platform");
        let diff_ids: Vec<Digest> = layer_tars.iter().map(|t| Digest::of(t)).collect();
        let layer_type = match format {
            Format::Docker => media::DOCKER_LAYER_GZIP,
            Format::Oci => media::OCI_LAYER_GZIP,
        };
        let layers: Vec<Blob> = layer_tars
            .iter()
            .map(|tar| Blob::new(layer_type, gzip(tar)))
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
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *contents)
            .expect("append to tar");
    }
    builder.into_inner().expect("finish tar")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
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
