//! Every tool's `--version` (and `-V`) names the package version and the
//! commit it was built from; the man pages keep the plain version.

use std::fs;
use std::path::Path;
use std::process::Command;

use lpmx_tests::Env;
use lpmx_tests::env::tool_dir;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Built binaries named lpmx-* that are not tools: the test fixture, the
/// man page generator, and the loader libunion starts programs through
/// (installed beside libunion.so, never run by hand).
const NOT_TOOLS: [&str; 3] = ["lpmx-fixture", "lpmx-man", "lpmx-loader"];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

#[test]
fn every_tool_prints_its_version_and_commit() {
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace())
        .output()
        .expect("run git");
    assert!(head.status.success(), "the tests run in a git checkout");
    let commit = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let mut tools: Vec<String> = fs::read_dir(tool_dir())
        .expect("tool dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("lpmx-") && !NOT_TOOLS.contains(&name.as_str()))
        .collect();
    tools.sort();
    for tool in [
        "lpmx-pull",
        "lpmx-unpack",
        "lpmx-mkroot",
        "lpmx-exec",
        "lpmx-env",
        "lpmx-pack",
    ] {
        assert!(tools.iter().any(|t| t == tool), "{tool} in {tools:?}");
    }
    let env = Env::new();
    for tool in &tools {
        let expected = format!("{tool} {VERSION} (commit {commit}, ");
        for flag in ["--version", "-V"] {
            let run = env.run(tool, [flag]);
            run.success();
            assert!(
                run.stdout.starts_with(&expected) && run.stdout.ends_with(")\n"),
                "{tool} {flag}: expected {expected:?}...: {run:#?}"
            );
        }
    }
}

#[test]
fn man_pages_carry_the_plain_version() {
    let page = fs::read_to_string(workspace().join("man/man1/lpmx-exec.1")).expect("man page");
    assert!(
        page.contains(&format!(".SH VERSION\nv{VERSION}\n")),
        "{page}"
    );
    assert!(!page.contains("commit"), "no commit in the man page");
}
