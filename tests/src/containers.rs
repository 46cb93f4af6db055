//! Containers of real Debian images, made through the pipeline the way a
//! user makes them: a local registry serving the image, then
//! `lpmx-pull | lpmx-unpack | lpmx-mkroot`.

use std::fs;

use lpmx_core::oci::Platform;

use crate::Env;
use crate::image::{Format, Image};
use crate::registry::{LocalRegistry, Target};
use crate::rootfs::debian_rootfs_tar_with;

/// Container `name` of Debian `suite` (one layer) in `env`'s store, with
/// `mkroot_args` passed to lpmx-mkroot; the registry must outlive the test's
/// use of it.
pub fn debian_container(env: &Env, suite: &str, name: &str, mkroot_args: &[&str]) -> LocalRegistry {
    debian_container_with(env, suite, &[], name, mkroot_args)
}

/// As [`debian_container`], the image with Debian `packages` installed
/// (`lpmx_tests::rootfs::debian_rootfs_tar_with`).
pub fn debian_container_with(
    env: &Env,
    suite: &str,
    packages: &[&str],
    name: &str,
    mkroot_args: &[&str],
) -> LocalRegistry {
    let tar = fs::read(debian_rootfs_tar_with(suite, packages)).expect("rootfs tar");
    let image = Image::build(Format::Oci, &Platform::host().to_string(), vec![tar]);
    let registry = LocalRegistry::start();
    registry.push_image("debian", suite, &image);
    let unpacked = env.pull_and_unpack(&format!("{}/debian:{suite}", registry.host()));
    let mut args = mkroot_args.to_vec();
    args.push(name);
    env.run_with_input("lpmx-mkroot", &args, &unpacked.stdout)
        .success();
    registry
}
