//! The Singularity Image Format (SIF) of Singularity and Apptainer: just
//! enough of it to find the root filesystem partition and the labels.
//!
//! Layout (all integers little-endian, structures packed):
//!
//! ```text
//! global header, 128 bytes at offset 0:
//!   launch[32] "#!/usr/bin/env run-singularity\n"
//!   magic[10] "SIF_MAGIC\0"   version[3] "01\0"   arch[3] "02\0"   uuid[16]
//!   ctime i64  mtime i64  free i64  total i64
//!   descriptors_offset i64  descriptors_size i64  data_offset i64  data_size i64
//! descriptors, `total` of them from descriptors_offset, 585 bytes each:
//!   datatype i32  used u8  id u32  groupid u32  link u32
//!   offset i64  size i64  size_with_padding i64  ctime i64  mtime i64
//!   uid i64  gid i64  name[128]  extra[384]
//! a partition's extra: fstype i32 (1 squashfs)  parttype i32 (2 primary
//!   system)  arch[3]
//! ```

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::UnpackError;

const LAUNCH_LEN: usize = 32;
const MAGIC: &[u8] = b"SIF_MAGIC\0";
const HEADER_LEN: usize = 128;
const DESCRIPTOR_LEN: usize = 585;
/// More descriptors than any real image has (the default is 48).
const MAX_DESCRIPTORS: i64 = 1 << 16;

const DATA_DEFFILE: i32 = 0x4001;
const DATA_ENVVAR: i32 = 0x4002;
const DATA_LABELS: i32 = 0x4003;
const DATA_PARTITION: i32 = 0x4004;
const DATA_SIGNATURE: i32 = 0x4005;
const DATA_GENERIC_JSON: i32 = 0x4006;
const DATA_GENERIC: i32 = 0x4007;
const DATA_CRYPTO_MESSAGE: i32 = 0x4008;

const FS_SQUASH: i32 = 1;
const PART_SYSTEM: i32 = 1;
const PART_PRIMARY_SYSTEM: i32 = 2;

/// Whether `head` (a file's first bytes) is the start of a SIF image.
pub fn is_sif(head: &[u8]) -> bool {
    head.get(LAUNCH_LEN..LAUNCH_LEN + MAGIC.len()) == Some(MAGIC)
}

/// What lpmx takes from a SIF image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SifImage {
    /// Where the root filesystem's squashfs lies in the file.
    pub rootfs_offset: u64,
    pub rootfs_size: u64,
    /// The root filesystem's architecture, in Go's names (`amd64`).
    pub architecture: Option<String>,
    /// The JSON of the labels object, if the image has a readable one.
    pub labels: Option<Vec<u8>>,
}

/// A labels object larger than this is not read.
const LABELS_LIMIT: i64 = 1 << 20;

/// One data object, as the descriptor describes it.
#[derive(Clone, Debug)]
struct Object {
    datatype: i32,
    offset: i64,
    size: i64,
    fstype: i32,
    parttype: i32,
    arch: [u8; 3],
}

/// Reads the SIF header and descriptors of `file` (`size` bytes long) and
/// finds its root filesystem partition.
pub fn parse(file: &File, size: u64) -> Result<SifImage, UnpackError> {
    let mut header = [0u8; HEADER_LEN];
    read_at(file, &mut header, 0, size, "global header")?;
    if !is_sif(&header) {
        return Err(UnpackError::Sif(
            "it lacks the SIF_MAGIC signature".to_owned(),
        ));
    }
    let version = text(&header[42..45]);
    if version != "01" {
        return Err(UnpackError::Sif(format!(
            "it has format version {version:?}; lpmx reads version \"01\""
        )));
    }
    let header_arch = arch_name(&header[45..48]);
    let total = i64_at(&header, 88);
    let descriptors_offset = i64_at(&header, 96);
    if !(0..=MAX_DESCRIPTORS).contains(&total) {
        return Err(UnpackError::Sif(format!(
            "its header says it has {total} descriptors"
        )));
    }
    let descriptors_offset = u64::try_from(descriptors_offset).map_err(|_| {
        UnpackError::Sif(format!(
            "its descriptors start at a negative offset ({descriptors_offset})"
        ))
    })?;
    let mut table = vec![0u8; total as usize * DESCRIPTOR_LEN];
    read_at(
        file,
        &mut table,
        descriptors_offset,
        size,
        "descriptor table",
    )?;
    let objects: Vec<Object> = table
        .chunks_exact(DESCRIPTOR_LEN)
        .filter(|raw| raw[4] != 0)
        .map(|raw| {
            let mut arch = [0u8; 3];
            arch.copy_from_slice(&raw[209..212]);
            Object {
                datatype: i32_at(raw, 0),
                offset: i64_at(raw, 17),
                size: i64_at(raw, 25),
                fstype: i32_at(raw, 201),
                parttype: i32_at(raw, 205),
                arch,
            }
        })
        .collect();
    let partitions = || {
        objects
            .iter()
            .filter(|o| o.datatype == DATA_PARTITION && o.fstype == FS_SQUASH)
    };
    let root = partitions()
        .find(|o| o.parttype == PART_PRIMARY_SYSTEM)
        .or_else(|| partitions().find(|o| o.parttype == PART_SYSTEM));
    let Some(root) = root else {
        let held: Vec<String> = objects.iter().map(describe).collect();
        let held = if held.is_empty() {
            "no data objects".to_owned()
        } else {
            held.join(", ")
        };
        return Err(UnpackError::SifNoRootFs(held));
    };
    let (Ok(offset), Ok(length)) = (u64::try_from(root.offset), u64::try_from(root.size)) else {
        return Err(UnpackError::Sif(format!(
            "its root filesystem partition has a negative offset or size ({}, {})",
            root.offset, root.size
        )));
    };
    let end = offset.checked_add(length).ok_or_else(|| {
        UnpackError::Sif("its root filesystem partition lies beyond any file size".to_owned())
    })?;
    if end > size {
        return Err(UnpackError::SifTruncated {
            what: "root filesystem partition".to_owned(),
            end,
            size,
        });
    }
    // Labels are metadata only: an unreadable object is left out.
    let labels = objects
        .iter()
        .find(|o| o.datatype == DATA_LABELS && (0..=LABELS_LIMIT).contains(&o.size))
        .and_then(|o| {
            let mut json = vec![0u8; o.size as usize];
            let offset = u64::try_from(o.offset).ok()?;
            read_at(file, &mut json, offset, size, "labels").ok()?;
            Some(json)
        });
    Ok(SifImage {
        rootfs_offset: offset,
        rootfs_size: length,
        architecture: arch_name(&root.arch).or(header_arch),
        labels,
    })
}

fn read_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    size: u64,
    what: &str,
) -> Result<(), UnpackError> {
    let end = offset.saturating_add(buf.len() as u64);
    if end > size {
        return Err(UnpackError::SifTruncated {
            what: what.to_owned(),
            end,
            size,
        });
    }
    file.read_exact_at(buf, offset)
        .map_err(|e| UnpackError::Sif(format!("cannot read its {what}: {e}")))
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    i32::from_le_bytes(raw)
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    i64::from_le_bytes(raw)
}

/// A NUL-padded text field.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A SIF architecture code as the Go name OCI uses.
fn arch_name(code: &[u8]) -> Option<String> {
    let name = match text(code).as_str() {
        "01" => "386",
        "02" => "amd64",
        "03" => "arm",
        "04" => "arm64",
        "05" => "ppc64",
        "06" => "ppc64le",
        "07" => "mips",
        "08" => "mipsle",
        "09" => "mips64",
        "10" => "mips64le",
        "11" => "s390x",
        "12" => "riscv64",
        _ => return None,
    };
    Some(name.to_owned())
}

/// A data object in words, for the error that lists what an image holds.
fn describe(object: &Object) -> String {
    let kind = match object.datatype {
        DATA_DEFFILE => "definition file",
        DATA_ENVVAR => "environment",
        DATA_LABELS => "labels",
        DATA_SIGNATURE => "signature",
        DATA_GENERIC_JSON => "JSON",
        DATA_GENERIC => "generic data",
        DATA_CRYPTO_MESSAGE => "cryptographic message",
        DATA_PARTITION => {
            let fs = match object.fstype {
                FS_SQUASH => "squashfs",
                2 => "ext3",
                3 => "archive",
                4 => "raw",
                5 => "encrypted squashfs",
                _ => "unknown",
            };
            let part = match object.parttype {
                PART_SYSTEM => "system",
                PART_PRIMARY_SYSTEM => "primary system",
                3 => "data",
                4 => "overlay",
                _ => "unknown",
            };
            return format!("{fs} partition ({part})");
        }
        _ => "unknown object",
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A SIF image holding `objects` (datatype, fstype, parttype, data).
    fn sif(objects: &[(i32, i32, i32, &[u8])]) -> Vec<u8> {
        let descriptors_offset = 4096usize;
        let data_offset = descriptors_offset + objects.len() * DESCRIPTOR_LEN;
        let mut out = vec![0u8; data_offset];
        out[..32].copy_from_slice(b"#!/usr/bin/env run-singularity\n\0");
        out[32..42].copy_from_slice(MAGIC);
        out[42..45].copy_from_slice(b"01\0");
        out[45..48].copy_from_slice(b"02\0");
        out[88..96].copy_from_slice(&(objects.len() as i64).to_le_bytes());
        out[96..104].copy_from_slice(&(descriptors_offset as i64).to_le_bytes());
        let mut offset = data_offset;
        for (i, (datatype, fstype, parttype, data)) in objects.iter().enumerate() {
            let d = descriptors_offset + i * DESCRIPTOR_LEN;
            out[d..d + 4].copy_from_slice(&datatype.to_le_bytes());
            out[d + 4] = 1;
            out[d + 17..d + 25].copy_from_slice(&(offset as i64).to_le_bytes());
            out[d + 25..d + 33].copy_from_slice(&(data.len() as i64).to_le_bytes());
            out[d + 201..d + 205].copy_from_slice(&fstype.to_le_bytes());
            out[d + 205..d + 209].copy_from_slice(&parttype.to_le_bytes());
            out[d + 209..d + 212].copy_from_slice(b"04\0");
            offset += data.len();
        }
        for (_, _, _, data) in objects {
            out.extend_from_slice(data);
        }
        out
    }

    fn parse_bytes(bytes: &[u8]) -> Result<SifImage, UnpackError> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        parse(&file, bytes.len() as u64)
    }

    #[test]
    fn finds_the_primary_system_partition() {
        let bytes = sif(&[
            (DATA_DEFFILE, 0, 0, b"bootstrap: docker"),
            (DATA_PARTITION, FS_SQUASH, 3, b"data"),
            (DATA_PARTITION, FS_SQUASH, PART_PRIMARY_SYSTEM, b"hsqs...."),
        ]);
        assert!(is_sif(&bytes));
        let image = parse_bytes(&bytes).unwrap();
        assert_eq!(image.rootfs_size, 8);
        let start = image.rootfs_offset as usize;
        assert_eq!(&bytes[start..start + 8], b"hsqs....");
        assert_eq!(image.architecture.as_deref(), Some("arm64"));
    }

    #[test]
    fn refuses_truncated_images_and_images_without_a_root_filesystem() {
        let bytes = sif(&[(DATA_PARTITION, FS_SQUASH, PART_PRIMARY_SYSTEM, b"hsqs....")]);
        let err = parse_bytes(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(matches!(err, UnpackError::SifTruncated { .. }), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = parse_bytes(&bytes[..100]).unwrap_err();
        assert!(err.to_string().contains("global header"), "{err}");
        let err = parse_bytes(&bytes[..4200]).unwrap_err();
        assert!(err.to_string().contains("descriptor table"), "{err}");
        let bytes = sif(&[(DATA_DEFFILE, 0, 0, b"x"), (DATA_PARTITION, 2, 2, b"ext3")]);
        let err = parse_bytes(&bytes).unwrap_err();
        assert!(
            err.to_string()
                .contains("it holds: definition file, ext3 partition (primary system)"),
            "{err}"
        );
    }
}
