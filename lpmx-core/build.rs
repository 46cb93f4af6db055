//! Records the commit the tools are built from, for `--version`:
//! `LPMX_COMMIT` (short hash) and `LPMX_COMMIT_DATE` (its date).
//!
//! From `git` when the workspace is a git checkout; else from the
//! `LPMX_COMMIT` (and `LPMX_COMMIT_DATE`) environment variables, for builds
//! from a source tarball; else "unknown". Cargo runs this again when HEAD
//! moves (a commit, a checkout) or the variables change.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LPMX_COMMIT");
    println!("cargo:rerun-if-env-changed=LPMX_COMMIT_DATE");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest.parent().unwrap_or(&manifest);
    let from_git = if workspace.join(".git").exists() {
        git_commit(workspace)
    } else {
        None
    };
    let (commit, date) = from_git.unwrap_or_else(|| {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        (
            var("LPMX_COMMIT").unwrap_or_else(|| "unknown".to_owned()),
            var("LPMX_COMMIT_DATE").unwrap_or_else(|| "unknown date".to_owned()),
        )
    });
    println!("cargo:rustc-env=LPMX_COMMIT={commit}");
    println!("cargo:rustc-env=LPMX_COMMIT_DATE={date}");
}

/// `git` in `dir`, its output trimmed, or None when it fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The short hash and commit date of HEAD; asks Cargo to run this again
/// when HEAD or the branch it names changes. (In a worktree, HEAD lives in
/// the worktree's git dir and the branches in the common one.)
fn git_commit(workspace: &Path) -> Option<(String, String)> {
    let commit = git(workspace, &["rev-parse", "--short", "HEAD"])?;
    let date = git(workspace, &["log", "-1", "--format=%cs", "HEAD"])?;
    let absolute =
        |arg| git(workspace, &["rev-parse", "--path-format=absolute", arg]).map(PathBuf::from);
    let mut watched = Vec::new();
    if let Some(git_dir) = absolute("--git-dir") {
        watched.push(git_dir.join("HEAD"));
    }
    if let Some(common) = absolute("--git-common-dir") {
        watched.push(common.join("packed-refs"));
        if let Some(branch) = git(workspace, &["symbolic-ref", "-q", "HEAD"]) {
            watched.push(common.join(branch));
        }
    }
    // A path that does not exist would make Cargo run this every build.
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some((commit, date))
}
