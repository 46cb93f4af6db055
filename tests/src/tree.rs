//! Directory trees as comparable values: what each path is and holds, but
//! not modes, owners or times, which a rootless unpack cannot reproduce
//! (lpmx records them in metadata instead).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use lpmx_core::Digest;
use lpmx_core::digest::Hasher;

/// One path of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// A regular file, by the digest of its contents.
    File(Digest),
    /// A symlink, by its target (never followed).
    Symlink(PathBuf),
    /// A device node, fifo or socket.
    Other,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Dir => write!(f, "directory"),
            Entry::File(digest) => write!(f, "file {digest}"),
            Entry::Symlink(target) => write!(f, "symlink -> {}", target.display()),
            Entry::Other => write!(f, "device, fifo or socket"),
        }
    }
}

/// A tree: relative paths without a leading slash (`etc/passwd`), the root
/// itself left out.
pub type Tree = BTreeMap<String, Entry>;

/// Every path under `root`, symlinks not followed. Names that are not UTF-8
/// are kept lossily (`U+FFFD`).
pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item = item.unwrap_or_else(|e| panic!("walk {}: {e}", root.display()));
        let path = item.path();
        let name = path
            .strip_prefix(root)
            .expect("walked path under the root")
            .to_string_lossy()
            .into_owned();
        let kind = item.file_type();
        let entry = if kind.is_dir() {
            Entry::Dir
        } else if kind.is_symlink() {
            Entry::Symlink(
                std::fs::read_link(path)
                    .unwrap_or_else(|e| panic!("readlink {}: {e}", path.display())),
            )
        } else if kind.is_file() {
            let mut file =
                File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            let mut hasher = Hasher::default();
            hasher
                .update_from(&mut file)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            Entry::File(hasher.finish())
        } else {
            Entry::Other
        };
        tree.insert(name, entry);
    }
    tree
}

/// The differences between `a` and `b`, one line each, empty when equal:
/// `assert!(diff.is_empty(), "{diff:#?}")`.
pub fn diff(a: &Tree, b: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, entry) in a {
        match b.get(path) {
            None => out.push(format!("{path}: missing in b (a has {entry})")),
            Some(other) if other != entry => {
                out.push(format!("{path}: differs: a has {entry}, b has {other}"));
            }
            Some(_) => {}
        }
    }
    for (path, entry) in b {
        if !a.contains_key(path) {
            out.push(format!("{path}: missing in a (b has {entry})"));
        }
    }
    out.sort();
    out
}

/// One layer for [`merge_layers`]: its unpacked tree, the paths it whites
/// out and the directories it makes opaque, all relative (`etc/passwd`).
pub type Layer = (PathBuf, Vec<String>, Vec<String>);

/// The overlay view of `layers`, lowest first, as a container sees them:
/// - a whiteout hides that path and everything below it in lower layers;
/// - an opaque directory hides everything below it in lower layers (the
///   directory itself stays, as the layer that makes it opaque has it);
/// - a non-directory replaces whatever lower layers had at its path,
///   including a directory and its contents; directories merge.
pub fn merge_layers(layers: &[Layer]) -> Tree {
    let mut merged = Tree::new();
    for (root, whiteouts, opaques) in layers {
        for path in whiteouts {
            let path = normalise(path);
            merged.remove(path);
            remove_below(&mut merged, path);
        }
        for dir in opaques {
            remove_below(&mut merged, normalise(dir));
        }
        for (path, entry) in snapshot(root) {
            if entry != Entry::Dir {
                remove_below(&mut merged, &path);
            }
            merged.insert(path, entry);
        }
    }
    merged
}

fn normalise(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("./").unwrap_or(path);
    path.trim_end_matches('/')
}

/// Removes every path strictly below `dir`.
fn remove_below(tree: &mut Tree, dir: &str) {
    let prefix = format!("{dir}/");
    let below: Vec<String> = tree
        .range(prefix.clone()..)
        .map(|(path, _)| path)
        .take_while(|path| path.starts_with(&prefix))
        .cloned()
        .collect();
    for path in below {
        tree.remove(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn file(contents: &str) -> Entry {
        Entry::File(Digest::of(contents.as_bytes()))
    }

    fn layer(files: &[(&str, &str)], links: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, contents) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, contents).expect("write");
        }
        for (path, target) in links {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            symlink(target, path).expect("symlink");
        }
        dir
    }

    #[test]
    fn snapshot_records_kinds_contents_and_link_targets_without_following() {
        let dir = layer(&[("etc/passwd", "root\n")], &[("etc/alias", "/etc")]);
        std::os::unix::net::UnixListener::bind(dir.path().join("sock")).expect("socket");
        let tree = snapshot(dir.path());
        let expected = Tree::from([
            ("etc".to_owned(), Entry::Dir),
            ("etc/alias".to_owned(), Entry::Symlink("/etc".into())),
            ("etc/passwd".to_owned(), file("root\n")),
            ("sock".to_owned(), Entry::Other),
        ]);
        assert_eq!(tree, expected);
    }

    #[test]
    fn diff_names_missing_and_differing_paths() {
        let a = snapshot(layer(&[("x", "1"), ("y", "2")], &[]).path());
        let b = snapshot(layer(&[("y", "3"), ("z", "4")], &[]).path());
        let diff = diff(&a, &b);
        assert_eq!(diff.len(), 3, "{diff:#?}");
        assert!(diff[0].starts_with("x: missing in b"), "{diff:#?}");
        assert!(diff[1].starts_with("y: differs"), "{diff:#?}");
        assert!(diff[2].starts_with("z: missing in a"), "{diff:#?}");
        assert!(super::diff(&a, &a).is_empty());
    }

    #[test]
    fn merge_applies_whiteouts_opaque_dirs_and_replacements() {
        let lower = layer(
            &[
                ("keep", "lower"),
                ("gone/a", "a"),
                ("gone2", "b"),
                ("opq/old", "old"),
                ("dir2file/x", "x"),
                ("over", "lower"),
            ],
            &[],
        );
        let upper = layer(
            &[
                ("opq/new", "new"),
                ("dir2file", "now a file"),
                ("over", "upper"),
            ],
            &[],
        );
        let merged = merge_layers(&[
            (lower.path().to_owned(), vec![], vec![]),
            (
                upper.path().to_owned(),
                vec!["/gone".to_owned(), "gone2".to_owned()],
                vec!["opq/".to_owned()],
            ),
        ]);
        let expected = Tree::from([
            ("dir2file".to_owned(), file("now a file")),
            ("keep".to_owned(), file("lower")),
            ("opq".to_owned(), Entry::Dir),
            ("opq/new".to_owned(), file("new")),
            ("over".to_owned(), file("upper")),
        ]);
        assert!(
            diff(&merged, &expected).is_empty(),
            "{:#?}",
            diff(&merged, &expected)
        );
    }
}
