//! What a built binary needs from the C library, as `objdump -T` shows it.

use std::path::Path;
use std::process::Command;

/// A glibc symbol version such as `GLIBC_2.17`, as numbers: `[2, 17]`.
pub type GlibcVersion = Vec<u32>;

/// The dynamic symbols of `file` (`objdump -T`), and the newest
/// `GLIBC_x.y` version among them (None when it names none).
pub fn newest_glibc(file: &Path) -> (Option<GlibcVersion>, String) {
    let output = Command::new("objdump")
        .arg("-T")
        .arg(file)
        .output()
        .expect("run objdump (binutils)");
    assert!(
        output.status.success(),
        "objdump -T {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let newest = text
        .split_whitespace()
        .filter_map(|word| {
            word.trim_matches(|c| c == '(' || c == ')')
                .strip_prefix("GLIBC_")
        })
        .map(|version| {
            version
                .split('.')
                .filter_map(|p| p.parse().ok())
                .collect::<GlibcVersion>()
        })
        .max();
    (newest, text)
}

/// Asserts that `file` names glibc symbol versions, none above 2.17: the
/// oldest glibc Rust supports, and the ceiling of everything lpmx ships.
/// Returns the `objdump -T` text.
#[track_caller]
pub fn assert_glibc_2_17_at_most(file: &Path) -> String {
    let (newest, text) = newest_glibc(file);
    let newest =
        newest.unwrap_or_else(|| panic!("no glibc versions in {}:\n{text}", file.display()));
    assert!(
        newest <= vec![2, 17],
        "{} needs GLIBC_{newest:?}, above the 2.17 ceiling:\n{text}",
        file.display()
    );
    text
}

/// What `file(1)` says of `path`: how it is linked, its interpreter.
pub fn describe(path: &Path) -> String {
    let output = Command::new("file")
        .arg("-b")
        .arg(path)
        .output()
        .expect("run file(1)");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
