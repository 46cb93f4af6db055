//! The lpmx test harness: drives the real binaries, as an unprivileged user,
//! against real registries and a fault-injecting one.
//!
//! - [`Env`]: a scratch store and home, and [`Env::tool`] to run a tool there.
//! - [`registry::LocalRegistry`]: Debian's `docker-registry` on a loopback port.
//! - [`faulty::FaultyRegistry`]: a small registry that misbehaves on demand.
//! - [`image`]: builds images (layers, config, manifest, index) in memory.
//! - [`oci_layout`]: writes them as OCI image layouts on disk.
//! - [`rootfs`]: real Debian root filesystems (debootstrap), cached as tars.
//! - [`sif`]: squashfs images (mksquashfs) and SIF files written here.
//! - [`umoci`]: the reference rootless unpacker, run as the test user.
//! - [`layers`]: layer metadata and the merged view of a stack of layers.
//! - [`elf`]: what a built binary needs of glibc (`objdump -T`).
//! - [`tree`]: directory trees as values to compare, and overlay merges.
//! - [`pjdfstest`]: the POSIX file-system conformance suite, built and run.

pub mod containers;
pub mod elf;
pub mod env;
pub mod faulty;
pub mod image;
pub mod layers;
pub mod oci_layout;
pub mod pjdfstest;
pub mod registry;
pub mod rootfs;
pub mod sif;
pub mod slurm;
pub mod tree;
pub mod umoci;

pub use env::{Env, Run};
