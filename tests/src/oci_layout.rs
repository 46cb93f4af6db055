//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/`), written
//! from images built in memory, for tools that read layouts (umoci,
//! `lpmx-unpack DIR`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lpmx_core::oci::media;
use serde_json::json;

use crate::image::{Blob, Image};

/// The annotation that names an image in a layout's index (`layout:NAME`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Writes an OCI image layout holding `images` into `dir` (created if
/// needed), each listed in `index.json` under its ref name with its
/// platform. Everything is readable by all (dirs 0755, files 0644), as the
/// tools under test run as another user.
pub fn write_oci_layout(dir: &Path, images: &[(&str, &Image)]) {
    let blobs = dir.join("blobs/sha256");
    for d in [dir, &dir.join("blobs"), &blobs] {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod layout dir");
    }
    let mut manifests = Vec::new();
    for (name, image) in images {
        for blob in image.blobs().chain([&image.manifest]) {
            let path = blobs.join(blob.digest.hex());
            // Blobs are content-addressed: one already there is this one.
            if !path.exists() {
                write_public(&path, &blob.bytes);
            }
        }
        let mut entry = descriptor(&image.manifest);
        entry["platform"] = serde_json::to_value(&image.platform).expect("json");
        entry["annotations"] = json!({ REF_NAME: name });
        manifests.push(entry);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    write_public(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    write_public(
        &dir.join("index.json"),
        &serde_json::to_vec(&index).expect("json"),
    );
}

fn descriptor(blob: &Blob) -> serde_json::Value {
    json!({
        "mediaType": blob.media_type,
        "digest": blob.digest.to_string(),
        "size": blob.bytes.len(),
    })
}

fn write_public(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod layout file");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Format, small_image};
    use lpmx_core::Digest;

    #[test]
    fn layout_lists_each_image_by_name_and_holds_every_blob() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = small_image(Format::Oci, "linux/amd64", 2);
        let b = small_image(Format::Oci, "linux/arm64/v8", 1);
        write_oci_layout(dir.path(), &[("a", &a), ("b", &b)]);

        let layout: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("oci-layout")).expect("oci-layout"))
                .expect("json");
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("index.json")).expect("index"))
                .expect("json");
        let entries = index["manifests"].as_array().expect("manifests");
        assert_eq!(entries.len(), 2);
        for (entry, (name, image)) in entries.iter().zip([("a", &a), ("b", &b)]) {
            assert_eq!(entry["annotations"][REF_NAME], name);
            assert_eq!(entry["digest"], image.manifest.digest.to_string());
            assert_eq!(
                entry["platform"]["architecture"],
                image.platform.architecture
            );
            for blob in image.blobs().chain([&image.manifest]) {
                let bytes = fs::read(dir.path().join("blobs/sha256").join(blob.digest.hex()))
                    .expect("blob");
                assert_eq!(Digest::of(&bytes), blob.digest);
            }
        }
    }
}
