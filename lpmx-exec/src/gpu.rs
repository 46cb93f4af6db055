//! `lpmx-exec --gpu`: the host's NVIDIA driver, usable inside without
//! writing anything host-specific into the container.
//!
//! The driver's libraries are found the way the host's loader finds them
//! (`ldconfig -p`, so split directories work) by the names the driver
//! installs; they go first in the loader's library path of every program
//! in the container (`crate::host_libs`). The driver's tools (`nvidia-smi`...) run as host programs at
//! their host paths. `/dev/nvidia*` and `/proc/driver/nvidia` come with the
//! default binds of /dev and /proc. `NVIDIA_VISIBLE_DEVICES` is honoured as
//! the NVIDIA container toolkit does: `none`/`void` inject nothing, a list
//! of indices or UUIDs becomes `CUDA_VISIBLE_DEVICES`.
//!
//! `LPMX_GPU_LIBRARY_PATH` (directories, ':'-separated) replaces the
//! loader cache as where to look: for hosts without ldconfig, and tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// File name prefixes of the NVIDIA driver's user-space libraries.
pub const DRIVER_LIBRARIES: &[&str] = &[
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-",
    "libnvcuvid.so",
    "libnvoptix.so",
    "libGLX_nvidia.so",
    "libEGL_nvidia.so",
    "libGLESv2_nvidia.so",
    "libGLESv1_CM_nvidia.so",
];

/// The driver's tools, run from the host.
pub const DRIVER_PROGRAMS: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];

fn is_driver_library(name: &str) -> bool {
    DRIVER_LIBRARIES.iter().any(|p| name.starts_with(p)) && name.contains(".so")
}

/// The host's driver libraries: file name -> path (the first found wins).
pub fn find_libraries() -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    if let Some(dirs) = std::env::var_os("LPMX_GPU_LIBRARY_PATH") {
        for dir in std::env::split_paths(&dirs) {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_driver_library(&name) {
                    found.entry(name).or_insert_with(|| entry.path());
                }
            }
        }
        return found;
    }
    for ldconfig in ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"] {
        let Ok(output) = Command::new(ldconfig).arg("-p").output() else {
            continue;
        };
        // "	libcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1"
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some((left, path)) = line.split_once(" => ") else {
                continue;
            };
            let name = left.split_whitespace().next().unwrap_or("");
            if is_driver_library(name) && left.contains("x86-64") {
                found
                    .entry(name.to_owned())
                    .or_insert_with(|| PathBuf::from(path));
            }
        }
        break;
    }
    found
}

/// The driver's tools on the host's PATH.
pub fn find_programs() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    DRIVER_PROGRAMS
        .iter()
        .filter_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .collect()
}

/// Whether NVIDIA_VISIBLE_DEVICES asks for no GPU.
pub fn disabled() -> bool {
    matches!(
        std::env::var("NVIDIA_VISIBLE_DEVICES").as_deref(),
        Ok("none") | Ok("void") | Ok("")
    )
}

/// CUDA_VISIBLE_DEVICES for a list in NVIDIA_VISIBLE_DEVICES.
pub fn visible_devices() -> Option<String> {
    std::env::var("NVIDIA_VISIBLE_DEVICES")
        .ok()
        .filter(|v| !v.is_empty() && v != "all" && v != "none" && v != "void")
}
