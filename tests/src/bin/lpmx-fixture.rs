//! Serves test images from a real local registry, for the README's first
//! command and the benchmarks:
//!
//! ```text
//! lpmx-fixture serve bench rootfs:/path/to/rootfs.tar
//! ```
//!
//! starts Debian's docker-registry on a free loopback port, pushes each
//! image, prints one reference per line and runs until killed.
//!
//! - `bench`: five layers of incompressible data, about 100 MB in all.
//! - `rootfs:FILE.tar`: one layer holding the root filesystem in FILE.
//! - `debian:SUITE`: one layer, a debootstrap'd Debian SUITE (bullseye,
//!   `debian:SUITE@N` the same split into N layers (`lpmx_tests::rootfs::split_rootfs`);
//!   bookworm, trixie; built once and cached, see `lpmx_tests::rootfs`),
//!   gzip at the default level as registries serve it.
//!
//! `lpmx-fixture rootfs SUITE [PACKAGE...]` prints the path of that cached
//! tar (with the Debian packages installed, `debootstrap --include`);
//! `lpmx-fixture squashfs SUITE` the path of a squashfs image of it with
//! Singularity's `/.singularity.d` added (`lpmx_tests::sif`), and
//! `lpmx-fixture sif SUITE OUT` writes a SIF image of that squashfs to OUT.
//! - `small`: three tiny layers.
//!
//! `lpmx-fixture slurm NODES` (as root) starts a Slurm cluster of NODES
//! nodes (`lpmx_tests::slurm`), prints its `slurm.conf` and runs until its
//! stdin closes.

use std::io::Write;

use anyhow::{Context, bail};
use flate2::Compression;
use lpmx_core::oci::Platform;
use lpmx_tests::image::{Format, Image, noise, small_image, tar_of};
use lpmx_tests::registry::{LocalRegistry, Target};
use lpmx_tests::rootfs::{debian_rootfs_tar, debian_rootfs_tar_with, split_rootfs};

fn image_for(spec: &str) -> anyhow::Result<(String, Image)> {
    let platform = Platform::host().to_string();
    if spec == "small" {
        return Ok((
            "lpmx/small:latest".to_owned(),
            small_image(Format::Oci, &platform, 3),
        ));
    }
    if spec == "bench" {
        let sizes_mb = [40, 25, 20, 10, 5];
        let tars = sizes_mb
            .iter()
            .enumerate()
            .map(|(i, mb)| tar_of(&[(&format!("data/{i}.bin"), &noise(i as u64, mb << 20))]))
            .collect();
        return Ok((
            "lpmx/bench:latest".to_owned(),
            Image::build(Format::Docker, &platform, tars),
        ));
    }
    if let Some(suite) = spec.strip_prefix("debian:") {
        // debian:SUITE@N: the same tree split into N layers.
        let (suite, layers) = match suite.split_once('@') {
            Some((suite, n)) => (suite, n.parse().context("debian:SUITE@LAYERS")?),
            None => (suite, 1),
        };
        let tar = std::fs::read(debian_rootfs_tar(suite))?;
        let tars = if layers == 1 {
            vec![tar]
        } else {
            split_rootfs(&tar, layers)
        };
        let image =
            Image::build_compressed(Format::Docker, &platform, tars, Compression::default());
        let tag = if layers == 1 {
            suite.to_owned()
        } else {
            format!("{suite}-{layers}layers")
        };
        return Ok((format!("debian:{tag}"), image));
    }
    if let Some(path) = spec.strip_prefix("rootfs:") {
        let tar = std::fs::read(path).with_context(|| format!("failed to read {path}"))?;
        let name = std::path::Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("rootfs")
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        return Ok((
            format!("lpmx/{name}:latest"),
            Image::build(Format::Docker, &platform, vec![tar]),
        ));
    }
    bail!("unknown image {spec:?}: expected small, bench, debian:SUITE or rootfs:FILE.tar")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, suite, packages @ ..] = args.as_slice()
        && command == "rootfs"
    {
        let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
        println!("{}", debian_rootfs_tar_with(suite, &packages).display());
        return Ok(());
    }
    if let [command, suite] = args.as_slice()
        && command == "squashfs"
    {
        println!("{}", lpmx_tests::sif::debian_squashfs(suite).display());
        return Ok(());
    }
    if let [command, suite, out] = args.as_slice()
        && command == "sif"
    {
        let squashfs = lpmx_tests::sif::debian_squashfs(suite);
        lpmx_tests::sif::write_sif(
            std::path::Path::new(out),
            &[lpmx_tests::sif::SifObject::rootfs(&squashfs)],
        );
        return Ok(());
    }
    if let [command, nodes] = args.as_slice()
        && command == "slurm"
    {
        // A cluster for bench/cluster.sh: prints its slurm.conf, runs
        // until stdin closes, then stops it.
        if let Some(why) = lpmx_tests::slurm::unavailable() {
            bail!("cannot start Slurm: {why}");
        }
        let slurm = lpmx_tests::slurm::Slurm::start(nodes.parse().context("slurm NODES")?);
        println!("{}", slurm.conf().display());
        std::io::stdout().flush()?;
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        return Ok(());
    }
    let Some(("serve", specs)) = args.split_first().map(|(a, rest)| (a.as_str(), rest)) else {
        bail!(
            "usage: lpmx-fixture serve IMAGE...  (IMAGE: small, bench, debian:SUITE, rootfs:FILE.tar)\n       lpmx-fixture rootfs SUITE | squashfs SUITE | sif SUITE OUT.sif | slurm NODES"
        );
    };
    let images = specs
        .iter()
        .map(|s| image_for(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let registry = LocalRegistry::start();
    let mut stdout = std::io::stdout().lock();
    for (name, image) in &images {
        let (repository, tag) = name.split_once(':').expect("name:tag");
        registry.push_image(repository, tag, image);
        writeln!(stdout, "{}/{name}", registry.host())?;
    }
    stdout.flush()?;
    drop(stdout);
    registry.wait();
    Ok(())
}
