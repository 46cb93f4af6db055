//! examples/Makefile: an environment built from an image and a package
//! list, redone only where a setting changed, and packed.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use lpmx_tests::env::tool_dir;
use lpmx_tests::image::{Format, Image};
use lpmx_tests::registry::{LocalRegistry, Target};
use lpmx_tests::rootfs::debian_rootfs_tar;
use lpmx_tests::{Env, Run};

fn make(env: &Env, settings: &[&str]) -> Run {
    let makefile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/Makefile");
    let copy = env.path().join("Makefile");
    env.write_file(&copy, fs::read(makefile).expect("examples/Makefile"));
    let run = Run::from(
        env.command_as_user("make")
            .arg("-f")
            .arg(&copy)
            .arg(format!("OUT={}", env.home().join("build").display()))
            .args(settings)
            .current_dir(env.home())
            .env("PATH", format!("{}:/usr/bin:/bin", tool_dir().display()))
            .output()
            .expect("run make"),
    );
    run.success();
    run
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_example_makefile_builds_packs_and_redoes_only_what_changed() {
    let env = Env::new();
    let tar = fs::read(debian_rootfs_tar("bookworm")).expect("rootfs tar");
    let image = Image::build(
        Format::Oci,
        &lpmx_core::oci::Platform::host().to_string(),
        vec![tar],
    );
    let registry = LocalRegistry::start();
    registry.push_image("debian", "bookworm", &image);
    let image = format!("IMAGE={}/debian:bookworm", registry.host());
    let settings = [
        image.as_str(),
        "PACKAGES=hello",
        "NAME=made",
        "ENV=GREETING=hi",
    ];

    let first = make(&env, &settings);
    assert!(first.stdout.contains("apt-get install"), "{first:#?}");
    let packed = env.home().join("build/made.lpmx");
    let packed_at = modified(&packed);
    let run = env.run(
        "lpmx-exec",
        ["made", "--", "/bin/sh", "-c", "hello; echo $GREETING"],
    );
    assert_eq!(run.stdout, "Hello, world!\nhi\n", "{run:#?}");

    // Nothing changed: nothing is done.
    let again = make(&env, &settings);
    assert!(!again.stdout.contains("lpmx-"), "{again:#?}");
    assert_eq!(modified(&packed), packed_at);

    // A new environment: only the environment and the pack are redone.
    let changed = [
        image.as_str(),
        "PACKAGES=hello",
        "NAME=made",
        "ENV=GREETING=hello",
    ];
    let third = make(&env, &changed);
    assert!(!third.stdout.contains("apt-get"), "{third:#?}");
    assert!(!third.stdout.contains("lpmx-pull"), "{third:#?}");
    assert!(
        third.stdout.contains("lpmx-env made set GREETING=hello"),
        "{third:#?}"
    );
    assert_ne!(modified(&packed), packed_at);

    // The packed file makes the same environment for another user.
    let other = Env::other_user();
    let file = other.path().join("made.lpmx");
    other.write_file(&file, fs::read(&packed).expect("packed file"));
    other
        .run("lpmx-unpack", ["--quiet", file.to_str().unwrap()])
        .success();
    let run = other.run(
        "lpmx-exec",
        ["made", "--", "/bin/sh", "-c", "hello; echo $GREETING"],
    );
    assert_eq!(run.stdout, "Hello, world!\nhello\n", "{run:#?}");
}
