//! The rules on built-in trees: layers held in memory, no file system.

use std::collections::{BTreeMap, BTreeSet};
use std::string::String;
use std::vec::Vec;

use super::*;
use crate::index::KIND_FILE;

#[derive(Default)]
struct Layer {
    /// Path ("a/b") to kind and symlink target.
    files: BTreeMap<&'static str, (u8, &'static str)>,
    whiteouts: BTreeSet<&'static str>,
    opaque: BTreeSet<&'static str>,
}

/// Layers top first, a directory the caller may not search (when
/// checking), and a subtree whose kinds are the kernel's.
#[derive(Default)]
struct Tree {
    layers: Vec<Layer>,
    unsearchable: BTreeSet<&'static str>,
    checking: bool,
    kernels: Option<&'static str>,
    /// Answer `whole` and `whole_below` (as libunion's index does) for a
    /// path with only directories above it, and count the answers.
    whole: bool,
    answered: core::cell::Cell<usize>,
}

impl Tree {
    /// `canon` in one lookup when everything above it is a directory, as
    /// the index answers a path: None for a missing one, or a symlink to
    /// follow.
    fn answer(&self, canon: &[u8], follow: bool, host: &mut Buf) -> Result<Option<Node>, i32> {
        if !self.whole {
            return Ok(None);
        }
        let path = core::str::from_utf8(&canon[1..]).unwrap();
        for above in prefixes(path).filter(|p| *p != path) {
            let mut scratch = Buf::new();
            let dir = self.find(
                std::format!("/{above}").as_bytes(),
                None,
                false,
                &mut scratch,
            )?;
            if self.kind(&dir) != Some(KIND_DIR) {
                return Ok(None);
            }
        }
        let node = self.find(canon, None, true, host)?;
        if node.layer.is_none() || follow && node.kind == KIND_SYMLINK {
            return Ok(None);
        }
        self.answered.set(self.answered.get() + 1);
        Ok(Some(node))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    layer: Option<usize>,
    kind: u8,
}

fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .chain(core::iter::once(path))
}

impl Layers for Tree {
    type Node = Node;

    fn kind(&self, node: &Node) -> Option<u8> {
        node.layer.map(|_| node.kind)
    }

    fn root(&self, host: &mut Buf) -> Result<Node, i32> {
        host.set(b"0:/")?;
        Ok(Node {
            layer: Some(0),
            kind: KIND_DIR,
        })
    }

    fn find(&self, canon: &[u8], _: Option<&Node>, _: bool, host: &mut Buf) -> Result<Node, i32> {
        let path = core::str::from_utf8(&canon[1..]).unwrap();
        if let Some(top) = self.kernels
            && path != top
            && path.starts_with(top)
        {
            host.set(canon)?;
            return Ok(Node {
                layer: Some(0),
                kind: KIND_KERNELS,
            });
        }
        for (number, layer) in self.layers.iter().enumerate() {
            // A non-directory above hides the tree below it.
            if prefixes(path)
                .filter(|p| *p != path)
                .any(|p| layer.files.get(p).is_some_and(|f| f.0 != KIND_DIR))
            {
                break;
            }
            if let Some(&(kind, _)) = layer.files.get(path) {
                host.set(std::format!("{number}:{}", String::from_utf8_lossy(canon)).as_bytes())?;
                return Ok(Node {
                    layer: Some(number),
                    kind,
                });
            }
            if prefixes(path).any(|p| layer.whiteouts.contains(p))
                || prefixes(path)
                    .filter(|p| *p != path)
                    .any(|p| layer.opaque.contains(p))
            {
                break;
            }
        }
        host.set(b"missing")?;
        Ok(Node {
            layer: None,
            kind: 0,
        })
    }

    fn read_link(&self, node: &Node, canon: &[u8], _: &Buf, target: &mut Buf) -> Result<(), i32> {
        let path = core::str::from_utf8(&canon[1..]).unwrap();
        let layer = &self.layers[node.layer.unwrap()];
        target.set(layer.files[path].1.as_bytes())
    }

    fn checking(&self) -> bool {
        self.checking
    }

    fn whole(&self, canon: &[u8], follow: bool, host: &mut Buf) -> Result<Option<Node>, i32> {
        self.answer(canon, follow, host)
    }

    fn answers_below(&self, dir: &Node) -> bool {
        self.whole && dir.kind == KIND_DIR
    }

    fn whole_below(&self, canon: &[u8], follow: bool, host: &mut Buf) -> Result<Option<Node>, i32> {
        self.answer(canon, follow, host)
    }

    fn may_search(&self, _: &Node, canon: &[u8], _: &Buf) -> Result<(), i32> {
        let path = core::str::from_utf8(canon.get(1..).unwrap_or(b"")).unwrap();
        if self.unsearchable.contains(path) {
            Err(errno::EACCES)
        } else {
            Ok(())
        }
    }
}

fn layer(entries: &[(&'static str, &'static str)]) -> Layer {
    let mut layer = Layer::default();
    for &(path, what) in entries {
        let entry = match what {
            "dir" => (KIND_DIR, ""),
            "file" => (KIND_FILE, ""),
            "whiteout" => {
                layer.whiteouts.insert(path);
                continue;
            }
            "opaque" => {
                layer.opaque.insert(path);
                (KIND_DIR, "")
            }
            link => (KIND_SYMLINK, link.strip_prefix("-> ").unwrap()),
        };
        layer.files.insert(path, entry);
    }
    for &(path, _) in entries {
        let mut at = path;
        while let Some(cut) = at.rfind('/') {
            at = &at[..cut];
            layer.files.entry(at).or_insert((KIND_DIR, ""));
        }
    }
    layer.files.insert("", (KIND_DIR, ""));
    layer
}

/// The tree of the tools' and the agreement test's cases: an upper layer
/// over an image of two.
fn tree() -> Tree {
    let bottom = layer(&[
        ("usr/bin/tool", "file"),
        ("usr/lib/os-release", "file"),
        ("etc/marker", "file"),
        ("etc/a", "file"),
        ("etc/b", "file"),
        ("gone/x", "file"),
        ("opaque/old", "file"),
        ("dir-then-file/inner", "file"),
        ("bin", "-> usr/bin"),
        ("lib64", "-> usr/lib"),
        ("usr/etc-link", "-> /etc"),
        ("usr/bin/rel", "-> ../../etc/marker"),
        ("climb", "-> /../../../../etc/marker"),
        ("loop1", "-> loop2"),
        ("loop2", "-> loop1"),
        ("dangling", "-> /nowhere"),
        ("here", "-> ."),
        ("alternatives/awk", "-> /usr/bin/tool"),
        ("usr/bin/awk", "-> /alternatives/awk"),
        ("abs-link", "-> /etc/marker"),
        ("file-slash", "-> /etc/marker/"),
        ("file-dot", "-> etc/marker/."),
        ("dir-slash", "-> usr/bin/"),
        ("new-slash", "-> /etc/new/"),
        ("via-slash", "-> file-slash"),
    ]);
    let middle = layer(&[
        ("etc/b", "whiteout"),
        ("gone", "whiteout"),
        ("opaque", "opaque"),
        ("opaque/new", "file"),
        ("dir-then-file", "file"),
    ]);
    let upper = layer(&[("etc/a", "file")]);
    Tree {
        layers: std::vec![upper, middle, bottom],
        ..Tree::default()
    }
}

fn resolve_in(
    tree: &Tree,
    path: &str,
    follow: bool,
) -> Result<(String, Option<usize>, Last, bool), i32> {
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let found = resolve(tree, path.as_bytes(), 0, follow, &mut canon, &mut host)?;
    Ok((
        String::from_utf8(canon.as_bytes().to_vec()).unwrap(),
        found.node.layer,
        found.last,
        found.slash,
    ))
}

fn canonical(tree: &Tree, path: &str) -> Result<String, i32> {
    resolve_in(tree, path, true).map(|r| r.0)
}

#[test]
fn upper_layers_win_and_whiteouts_and_opaque_directories_hide() {
    let tree = tree();
    let layer_of = |p: &str| resolve_in(&tree, p, true).unwrap().1;
    assert_eq!(layer_of("/etc/a"), Some(0));
    assert_eq!(layer_of("/etc/b"), None, "whited out");
    assert_eq!(layer_of("/gone"), None);
    assert_eq!(resolve_in(&tree, "/gone/x", true), Err(errno::ENOENT));
    assert_eq!(layer_of("/opaque/new"), Some(1));
    assert_eq!(layer_of("/opaque/old"), None, "below an opaque directory");
    assert_eq!(layer_of("/opaque"), Some(1));
    assert_eq!(layer_of("/dir-then-file"), Some(1));
    assert_eq!(
        resolve_in(&tree, "/dir-then-file/inner", true),
        Err(errno::ENOTDIR),
        "a file above hides the directory below"
    );
}

#[test]
fn symlinks_resolve_inside_the_container() {
    let tree = tree();
    // The agreement test's probes, as `readlink -f` answers them.
    for (path, expected) in [
        ("/abs-link", "/etc/marker"),
        ("/bin/tool", "/usr/bin/tool"),
        ("/lib64/os-release", "/usr/lib/os-release"),
        ("/usr/bin/../lib/os-release", "/usr/lib/os-release"),
        ("/bin/../lib/./os-release", "/usr/lib/os-release"),
        ("/usr/bin/awk", "/usr/bin/tool"),
        ("/usr/etc-link/marker", "/etc/marker"),
        // `..` after resolution: /bin is /usr/bin, so /bin/../etc-link is /usr/etc-link.
        ("/bin/../etc-link/marker", "/etc/marker"),
        ("usr/bin/rel", "/etc/marker"),
        ("/climb", "/etc/marker"),
        ("/../..", "/"),
        ("/here/etc/a", "/etc/a"),
        ("/here", "/"),
        ("//etc///./a", "/etc/a"),
    ] {
        assert_eq!(canonical(&tree, path).as_deref(), Ok(expected), "{path}");
    }
    assert_eq!(resolve_in(&tree, "/bin", false).unwrap().0, "/bin");
    assert_eq!(resolve_in(&tree, "/loop1", true), Err(errno::ELOOP));
    assert_eq!(resolve_in(&tree, "/loop1", false).unwrap().1, Some(2));
    // A dangling last link names where its target would be made.
    assert_eq!(
        resolve_in(&tree, "/dangling", true).unwrap(),
        ("/nowhere".into(), None, Last::Name, false)
    );
}

/// The same answers when the layers answer whole paths, through a last
/// symlink's target too (localtime(3) stats /etc/localtime, a link, on
/// every call).
#[test]
fn whole_path_answers_agree_with_the_walk() {
    let walked = tree();
    let mut answering = tree();
    answering.whole = true;
    for path in [
        "/abs-link",
        "/bin/tool",
        "/lib64/os-release",
        "/usr/bin/awk",
        "/usr/etc-link/marker",
        "/usr/bin/rel",
        "/climb",
        "/here",
        "/dangling",
        "/loop1",
        "/etc/a",
        "/etc/b",
        "/gone/x",
        "/opaque/old",
        "/opaque/new",
        "/dir-then-file/inner",
        "/bin/",
        "/abs-link/",
        "/etc/marker/.",
        "/usr/bin/../lib/os-release",
    ] {
        for follow in [true, false] {
            assert_eq!(
                resolve_in(&answering, path, follow),
                resolve_in(&walked, path, follow),
                "{path} (follow {follow})"
            );
        }
    }
    // Both links of /usr/bin/awk -> /alternatives/awk -> /usr/bin/tool are
    // followed by whole answers, without a walk.
    answering.answered.set(0);
    assert_eq!(
        canonical(&answering, "/usr/bin/awk").as_deref(),
        Ok("/usr/bin/tool")
    );
    assert_eq!(answering.answered.get(), 3);
    // A link that is the last component of a walk leaves no trailing
    // slash: the target's rest is answered below a directory.
    answering.answered.set(0);
    let path = "/usr/bin/../bin/awk";
    assert_eq!(canonical(&answering, path).as_deref(), Ok("/usr/bin/tool"));
    assert_eq!(canonical(&walked, path).as_deref(), Ok("/usr/bin/tool"));
    assert_eq!(answering.answered.get(), 1, "/usr/bin/tool, below /usr");
}

#[test]
fn errors_are_the_kernels() {
    let tree = tree();
    assert_eq!(resolve_in(&tree, "/nothing/here", true), Err(errno::ENOENT));
    assert_eq!(
        resolve_in(&tree, "/etc/marker/x", true),
        Err(errno::ENOTDIR)
    );
    assert_eq!(resolve_in(&tree, "/etc/marker/", true), Err(errno::ENOTDIR));
    // A trailing `/.` names a directory, as a trailing slash does (the
    // kernel's `stat("file/.")` and `rmdir("file/.")`), even unfollowed.
    assert_eq!(
        resolve_in(&tree, "/etc/marker/.", false),
        Err(errno::ENOTDIR)
    );
    assert_eq!(resolve_in(&tree, "/bin/.", false).unwrap().0, "/usr/bin");
    assert_eq!(resolve_in(&tree, "/etc/.", false).unwrap().0, "/etc");
    let long = "x".repeat(NAME_MAX + 1);
    assert_eq!(
        resolve_in(&tree, &std::format!("/etc/{long}"), true),
        Err(errno::ENAMETOOLONG)
    );
    let fits = "x".repeat(NAME_MAX);
    assert_eq!(
        resolve_in(&tree, &std::format!("/etc/{fits}"), true)
            .unwrap()
            .1,
        None
    );
}

/// A last link whose target ends in `/` or `/.` asks for a directory, as
/// such a path does (Linux: `stat` of it is `ENOTDIR` for a file, and
/// `open(O_CREAT)` of a missing one `EISDIR`, told by the slash).
#[test]
fn a_last_links_trailing_slash_asks_for_a_directory() {
    let mut answering = tree();
    answering.whole = true;
    for tree in [tree(), answering] {
        for path in ["/file-slash", "/file-dot", "/via-slash"] {
            assert_eq!(resolve_in(&tree, path, true), Err(errno::ENOTDIR), "{path}");
            assert_eq!(resolve_in(&tree, path, false).unwrap().1, Some(2), "{path}");
        }
        assert_eq!(canonical(&tree, "/dir-slash").as_deref(), Ok("/usr/bin"));
        assert_eq!(
            resolve_in(&tree, "/new-slash", true).unwrap(),
            ("/etc/new".into(), None, Last::Name, true)
        );
        assert_eq!(
            resolve_in(&tree, "/new-slash", false).unwrap(),
            ("/new-slash".into(), Some(2), Last::Name, false)
        );
    }
}

#[test]
fn the_last_component_is_classified_as_the_kernel_does() {
    let tree = tree();
    let last = |p: &str| {
        let r = resolve_in(&tree, p, false).unwrap();
        (r.2, r.3)
    };
    assert_eq!(last("/etc/a"), (Last::Name, false));
    assert_eq!(last("/etc/"), (Last::Name, true));
    assert_eq!(last("/etc/."), (Last::Dot, false));
    assert_eq!(last("/etc/.."), (Last::DotDot, false));
    assert_eq!(last("/"), (Last::Root, false));
    assert_eq!(last("//"), (Last::Root, false));
    // A trailing slash follows a last symlink.
    assert_eq!(resolve_in(&tree, "/bin/", false).unwrap().0, "/usr/bin");
    assert_eq!(last_of(b""), (Last::Name, false));
}

#[test]
fn search_permission_is_checked_on_every_directory_entered() {
    let mut tree = tree();
    tree.checking = true;
    tree.unsearchable.insert("usr/bin");
    assert_eq!(resolve_in(&tree, "/usr/bin/tool", true), Err(errno::EACCES));
    // Through a symlink too.
    assert_eq!(resolve_in(&tree, "/bin/tool", true), Err(errno::EACCES));
    // The directory itself may be named.
    assert!(resolve_in(&tree, "/usr/bin", true).is_ok());
    // Not above where a relative path starts (the directory it starts
    // from is searched, so checked).
    tree.unsearchable.clear();
    tree.unsearchable.insert("usr");
    assert_eq!(resolve_in(&tree, "/usr/bin/tool", true), Err(errno::EACCES));
    let (mut canon, mut host) = (Buf::new(), Buf::new());
    let from = "/usr/bin/".len();
    let found = resolve(&tree, b"/usr/bin/tool", from, true, &mut canon, &mut host).unwrap();
    assert_eq!(found.node.kind, KIND_FILE);
    // After `..`, the directory reached is looked up again and checked:
    // the walk starts below `/usr/` (a relative path from there), so only
    // the look-up after `..` can meet the unsearchable root.
    tree.unsearchable.clear();
    tree.unsearchable.insert("");
    let from = "/usr/".len();
    let after_dotdot = resolve(&tree, b"/usr/../etc/a", from, true, &mut canon, &mut host);
    assert_eq!(after_dotdot.err(), Some(errno::EACCES));
    tree.unsearchable.clear();
    assert!(resolve(&tree, b"/usr/../etc/a", from, true, &mut canon, &mut host).is_ok());
}

#[test]
fn the_kernels_files_are_neither_followed_nor_checked() {
    let mut tree = tree();
    tree.layers[2].files.insert("proc", (KIND_DIR, ""));
    tree.kernels = Some("proc");
    let found = resolve_in(&tree, "/proc/self/fd/3/", true).unwrap();
    assert_eq!(found.0, "/proc/self/fd/3");
}
