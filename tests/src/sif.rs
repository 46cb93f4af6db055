//! Singularity images for the tests: squashfs images made with
//! `mksquashfs`, and SIF files assembled here from the format's
//! description (a global header, a descriptor table, the data objects).
//!
//! SIF layout (little-endian, packed): a 128-byte header (launch script
//! [32], "SIF_MAGIC\0" [10], version "01\0" [3], arch [3], uuid [16], then
//! the i64s ctime, mtime, free descriptors, total descriptors, descriptor
//! offset, descriptor size, data offset, data size), descriptors of 585
//! bytes (datatype i32, used u8, id u32, groupid u32, link u32, then the
//! i64s offset, size, size with padding, ctime, mtime, uid, gid, name
//! [128], extra [384]; a partition's extra is fstype i32, parttype i32,
//! arch [3]).

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::running_as_root;
use crate::rootfs::{cache_dir, debian_rootfs_tar};

pub const DATA_DEFFILE: i32 = 0x4001;
pub const DATA_LABELS: i32 = 0x4003;
pub const DATA_PARTITION: i32 = 0x4004;
pub const FS_SQUASH: i32 = 1;
pub const FS_EXT3: i32 = 2;
pub const PART_PRIMARY_SYSTEM: i32 = 2;
pub const PART_DATA: i32 = 3;

const HEADER_LEN: usize = 128;
const DESCRIPTOR_LEN: usize = 585;
const DESCRIPTORS: usize = 48;
const DESCRIPTOR_OFFSET: usize = 4096;
const DATA_OFFSET: usize = 32768;
const ALIGN: usize = 4096;

/// One data object of a SIF image.
pub struct SifObject {
    pub datatype: i32,
    /// Partitions only.
    pub fstype: i32,
    pub parttype: i32,
    pub name: String,
    pub data: Vec<u8>,
}

impl SifObject {
    pub fn deffile(text: &str) -> SifObject {
        SifObject {
            datatype: DATA_DEFFILE,
            fstype: 0,
            parttype: 0,
            name: String::new(),
            data: text.as_bytes().to_vec(),
        }
    }

    pub fn labels(json: &str) -> SifObject {
        SifObject {
            datatype: DATA_LABELS,
            fstype: 0,
            parttype: 0,
            name: String::new(),
            data: json.as_bytes().to_vec(),
        }
    }

    pub fn partition(fstype: i32, parttype: i32, data: Vec<u8>) -> SifObject {
        SifObject {
            datatype: DATA_PARTITION,
            fstype,
            parttype,
            name: "rootfs".to_owned(),
            data,
        }
    }

    /// The root filesystem: the squashfs image at `squashfs`.
    pub fn rootfs(squashfs: &Path) -> SifObject {
        let data =
            fs::read(squashfs).unwrap_or_else(|e| panic!("read {}: {e}", squashfs.display()));
        SifObject::partition(FS_SQUASH, PART_PRIMARY_SYSTEM, data)
    }
}

/// The bytes of a SIF image (amd64) holding `objects` in order, each data
/// object aligned to 4 KiB as Singularity aligns partitions.
pub fn sif_bytes(objects: &[SifObject]) -> Vec<u8> {
    assert!(objects.len() <= DESCRIPTORS);
    let mut out = vec![0u8; DATA_OFFSET];
    let put = |out: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut out, 0, b"#!/usr/bin/env run-singularity\n");
    put(&mut out, 32, b"SIF_MAGIC\0");
    put(&mut out, 42, b"01\0");
    put(&mut out, 45, b"02\0");
    put(&mut out, 48, &[0x5a; 16]);
    put(&mut out, 64, &1_700_000_000i64.to_le_bytes());
    put(&mut out, 72, &1_700_000_000i64.to_le_bytes());
    put(
        &mut out,
        80,
        &((DESCRIPTORS - objects.len()) as i64).to_le_bytes(),
    );
    put(&mut out, 88, &(DESCRIPTORS as i64).to_le_bytes());
    put(&mut out, 96, &(DESCRIPTOR_OFFSET as i64).to_le_bytes());
    put(
        &mut out,
        104,
        &((objects.len() * DESCRIPTOR_LEN) as i64).to_le_bytes(),
    );
    put(&mut out, 112, &(DATA_OFFSET as i64).to_le_bytes());
    const { assert!(HEADER_LEN <= DESCRIPTOR_OFFSET) };
    for (i, object) in objects.iter().enumerate() {
        let padding = (ALIGN - out.len() % ALIGN) % ALIGN;
        out.resize(out.len() + padding, 0);
        let offset = out.len();
        out.extend_from_slice(&object.data);
        let d = DESCRIPTOR_OFFSET + i * DESCRIPTOR_LEN;
        put(&mut out, d, &object.datatype.to_le_bytes());
        out[d + 4] = 1;
        put(&mut out, d + 5, &(i as u32 + 1).to_le_bytes());
        put(&mut out, d + 9, &0xf000_0001u32.to_le_bytes());
        put(&mut out, d + 17, &(offset as i64).to_le_bytes());
        put(&mut out, d + 25, &(object.data.len() as i64).to_le_bytes());
        put(
            &mut out,
            d + 33,
            &((object.data.len() + padding) as i64).to_le_bytes(),
        );
        put(&mut out, d + 41, &1_700_000_000i64.to_le_bytes());
        put(&mut out, d + 49, &1_700_000_000i64.to_le_bytes());
        let name = object.name.as_bytes();
        put(&mut out, d + 73, &name[..name.len().min(127)]);
        if object.datatype == DATA_PARTITION {
            put(&mut out, d + 201, &object.fstype.to_le_bytes());
            put(&mut out, d + 205, &object.parttype.to_le_bytes());
            put(&mut out, d + 209, b"02\0");
        }
    }
    let data_size = (out.len() - DATA_OFFSET) as i64;
    put(&mut out, 120, &data_size.to_le_bytes());
    out
}

/// Writes a SIF image holding `objects` to `path`, readable by everyone.
pub fn write_sif(path: &Path, objects: &[SifObject]) {
    fs::write(path, sif_bytes(objects)).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod sif");
}

/// Runs `mksquashfs DIR IMAGE -noappend ARGS...`, the image readable by all.
pub fn mksquashfs(dir: &Path, image: &Path, args: &[&str]) {
    let status = Command::new("mksquashfs")
        .arg(dir)
        .arg(image)
        .args(["-noappend", "-quiet", "-no-progress"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run mksquashfs (install squashfs-tools: scripts/install-deps)");
    assert!(status.success(), "mksquashfs {} failed", dir.display());
    fs::set_permissions(image, fs::Permissions::from_mode(0o644)).expect("chmod image");
}

/// The environment script and runscript the Debian Singularity image has.
pub const ENVIRONMENT_SH: &str = "#!/bin/sh\n# Custom environment shell code should follow\nexport GREETING=\"hello from sif\"\nexport PATH=\"/opt/sif/bin:$PATH\"\n";
pub const DOCKER_ENV_SH: &str =
    "#!/bin/sh\nexport PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n";
pub const RUNSCRIPT: &str = "#!/bin/sh\necho \"runscript: $GREETING\" \"$@\"\n";

/// Extracts the cached Debian `suite` tar into `dir` (as root: owners and
/// device nodes as they are) and adds Singularity's `/.singularity.d`.
pub fn debian_tree(suite: &str, dir: &Path) {
    assert!(
        running_as_root(),
        "a Debian tree with its owners needs root"
    );
    fs::create_dir_all(dir).expect("create tree dir");
    let tar = debian_rootfs_tar(suite);
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "-xpf"])
        .arg(&tar)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar -xpf {} failed", tar.display());
    let sd = dir.join(".singularity.d");
    fs::create_dir_all(sd.join("env")).expect("mkdir .singularity.d/env");
    for (name, text, mode) in [
        ("env/10-docker2singularity.sh", DOCKER_ENV_SH, 0o755),
        ("env/90-environment.sh", ENVIRONMENT_SH, 0o755),
        ("runscript", RUNSCRIPT, 0o755),
    ] {
        fs::write(sd.join(name), text).expect("write singularity file");
        fs::set_permissions(sd.join(name), fs::Permissions::from_mode(mode)).expect("chmod");
    }
    std::os::unix::fs::symlink(".singularity.d/runscript", dir.join("singularity"))
        .expect("symlink /singularity");
}

/// A squashfs image (gzip, mksquashfs's default) of [`debian_tree`],
/// made once and cached beside the Debian tars.
pub fn debian_squashfs(suite: &str) -> PathBuf {
    let cache = cache_dir();
    let image = cache.join(format!("debian-{suite}-singularity-v1.sqfs"));
    if image.is_file() {
        return image;
    }
    let tar = debian_rootfs_tar(suite);
    let lock_path = cache.join(format!(".debian-{suite}-sqfs.lock"));
    let lock = File::create(&lock_path).expect("create squashfs lock");
    lock.lock().expect("lock the squashfs cache");
    if !image.is_file() {
        let scratch = tempfile::Builder::new()
            .prefix(".sqfs-build-")
            .tempdir_in(&cache)
            .expect("scratch dir");
        let tree = scratch.path().join("tree");
        debian_tree(suite, &tree);
        let partial = scratch.path().join("image.sqfs");
        mksquashfs(&tree, &partial, &[]);
        fs::rename(&partial, &image).expect("install squashfs image");
        assert!(tar.is_file());
    }
    image
}
