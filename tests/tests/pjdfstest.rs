//! pjdfstest, the POSIX file-system conformance suite, under fake root in
//! a container (`lpmx-exec --root`, as an unprivileged user), with the
//! same suite run natively as root as the reference. An assertion may fail
//! in the container only if it fails natively too, or the checked-in list
//! (`tests/pjdfstest-allowed.txt`) names it with the reason.

use std::collections::BTreeMap;

use lpmx_tests::Env;
use lpmx_tests::containers::debian_container;
use lpmx_tests::pjdfstest;
use lpmx_tests::rootfs::host_suite;

#[test]
fn pjdfstest_under_fake_root_fails_only_what_the_list_allows() {
    let suite = pjdfstest::build();
    let env = Env::new();
    // The suite is built here: its container is of this machine's Debian.
    let release = host_suite().unwrap_or("bookworm");
    // The scripts name files with `openssl md5`, which minbase lacks: the
    // host's, as a host program.
    let _registry = debian_container(&env, release, "c", &["--host-program", "/usr/bin/openssl"]);
    let bind = format!("{}:/pjdfstest", suite.display());
    let exec = |args: &[&str]| {
        let mut c = env.tool("lpmx-exec");
        c.args(["--root", "--bind", &bind]).args(args);
        c
    };
    let made = exec(&["c", "--", "/bin/mkdir", "/pjdtest"])
        .output()
        .expect("run lpmx-exec");
    assert!(made.status.success(), "mkdir /pjdtest: {made:?}");
    let in_container = |script: &std::path::Path| {
        let inside = format!(
            "/pjdfstest/{}",
            script
                .strip_prefix(&suite)
                .expect("script in the suite")
                .display()
        );
        let mut c = exec(&["--workdir", "/pjdtest", "c", "--", "/bin/sh"]);
        c.arg(inside);
        c
    };
    let (native, lpmx) = std::thread::scope(|scope| {
        let native = scope.spawn(|| pjdfstest::native(&suite, env.path()));
        let lpmx = pjdfstest::run_all(&suite, 8, in_container);
        (native.join().expect("native run"), lpmx)
    });
    let native = native.unwrap_or_default();
    let allowed = pjdfstest::allowed(include_str!("../pjdfstest-allowed.txt"));
    let unexpected: BTreeMap<&String, &String> = lpmx
        .failed
        .iter()
        .filter(|(name, _)| !allowed.contains_key(*name) && !native.failed.contains_key(*name))
        .collect();
    eprintln!(
        "pjdfstest ({release}): {} assertions; natively as root {} fail; in the container \
         under --root {} fail, {} of them on the allowed list",
        lpmx.assertions,
        native.failed.len(),
        lpmx.failed.len(),
        lpmx.failed
            .keys()
            .filter(|n| allowed.contains_key(*n))
            .count()
    );
    for name in native.failed.keys() {
        eprintln!("  fails natively too: {name}");
    }
    assert!(
        lpmx.assertions > 8000,
        "the suite ran too few assertions: {lpmx:?}"
    );
    assert!(
        unexpected.is_empty(),
        "pjdfstest assertions that fail in the container only, and are not on the list:\n{}",
        unexpected
            .iter()
            .map(|(name, line)| format!("  {name}: {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        lpmx.failed.len() <= 50,
        "{} failures: {:?}",
        lpmx.failed.len(),
        lpmx.failed
    );
}
