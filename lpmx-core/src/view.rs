//! A container's merged view, resolved in userspace: which layer's file a
//! container path names, with symlinks followed inside the container.
//!
//! The layers (DESIGN.md, invariant 7): the writable layer first, then the
//! image's layers top to bottom; a layer's whiteout hides the path below it,
//! an opaque directory hides what lower layers hold under it, and a
//! non-directory hides lower directories of the same name. The walk over
//! them is the union core's (`lpmx_union::resolve`), the one libunion
//! walks by: symlinks resolve component by component, an absolute target
//! meaning the container's `/`; `..` applies after resolution and never
//! climbs above `/`.
//!
//! `lpmx-exec` uses this to read the container's files before starting a
//! program; it is also the reference libunion's lookups are tested against.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lpmx_union::index::Kind;
use lpmx_union::path::{Buf, errno};
use lpmx_union::resolve::{self as walk, Layers};

use crate::container::StackDocument;
use crate::document::parse_document;
use crate::layer::{LayerDir, LayerMeta};

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}: no such file or directory in the container")]
    NotFound(String),
    #[error("{0}: not a directory in the container")]
    NotADirectory(String),
    #[error("{0}: too many levels of symbolic links")]
    Loop(String),
    #[error("cannot read layer metadata {path}: {why}")]
    Meta { path: PathBuf, why: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

struct Layer {
    root: PathBuf,
    whiteouts: HashSet<String>,
    opaque: HashSet<String>,
}

/// The layers of one container, top first.
pub struct View {
    layers: Vec<Layer>,
}

/// A resolved container path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Canonical, absolute, inside the container: `/usr/bin/perl`.
    pub path: String,
    /// The file in the top-most layer holding it.
    pub host: PathBuf,
}

impl View {
    /// The view of a container: its upper layer over the image's layers.
    pub fn of_stack(stack: &StackDocument) -> Result<View, ViewError> {
        let recorded =
            crate::container::Whiteouts::read(&stack.upper).map_err(|source| ViewError::Io {
                path: crate::container::Whiteouts::path(&stack.upper),
                source,
            })?;
        let mut layers = vec![Layer {
            root: stack.upper.clone(),
            whiteouts: recorded.deleted.into_iter().collect(),
            opaque: recorded.opaque.into_iter().collect(),
        }];
        for unpacked in stack.layers.iter().rev() {
            layers.push(Layer::read(&LayerDir::new(&unpacked.path))?);
        }
        Ok(View { layers })
    }

    /// The view of unpacked layers alone, bottom first as documents list them.
    pub fn of_layers(dirs: &[LayerDir]) -> Result<View, ViewError> {
        let layers = dirs
            .iter()
            .rev()
            .map(Layer::read)
            .collect::<Result<_, _>>()?;
        Ok(View { layers })
    }

    /// The host file of canonical relative `path` (`usr/bin`), without
    /// following symlinks; `None` if the merged view has nothing there.
    pub fn lookup(&self, path: &str) -> Option<PathBuf> {
        let mut canon = Buf::from(b"/").ok()?;
        canon.push(path.trim_start_matches('/').as_bytes()).ok()?;
        let mut host = Buf::new();
        let node = self.find(canon.as_bytes(), None, true, &mut host).ok()?;
        node.layer.map(|_| host_path(&host))
    }

    /// Resolves container `path` (absolute, or relative to `/`), following
    /// symlinks inside the container; the last one too when `follow_last`.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<Resolved, ViewError> {
        let too_long = || ViewError::Io {
            path: PathBuf::from(path),
            source: io::Error::from_raw_os_error(errno::ENAMETOOLONG),
        };
        let mut absolute = Buf::from(b"/").map_err(|_| too_long())?;
        absolute.push(path.as_bytes()).map_err(|_| too_long())?;
        let (mut canon, mut host) = (Buf::new(), Buf::new());
        let found = walk::resolve(
            self,
            absolute.as_bytes(),
            0,
            follow_last,
            &mut canon,
            &mut host,
        );
        let at = || String::from_utf8_lossy(canon.as_bytes()).into_owned();
        match found {
            Ok(found) if found.node.layer.is_some() => Ok(Resolved {
                path: at(),
                host: host_path(&host),
            }),
            Ok(_) | Err(errno::ENOENT) => Err(ViewError::NotFound(at())),
            Err(errno::ENOTDIR) => Err(ViewError::NotADirectory(at())),
            Err(errno::ELOOP) => Err(ViewError::Loop(path.to_owned())),
            Err(e) => Err(ViewError::Io {
                path: host_path(&host),
                source: io::Error::from_raw_os_error(e),
            }),
        }
    }
}

fn host_path(host: &Buf) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(host.as_bytes()))
}

/// Where the walk found a path: the layer (top first), None for nothing.
#[derive(Clone, Copy)]
pub struct Node {
    layer: Option<usize>,
    kind: u8,
}

impl Layers for View {
    type Node = Node;

    fn kind(&self, node: &Node) -> Option<u8> {
        node.layer.map(|_| node.kind)
    }

    fn root(&self, host: &mut Buf) -> Result<Node, i32> {
        let top = self.layers.first().map_or(Path::new("/"), |l| &l.root);
        host.set(top.as_os_str().as_bytes())?;
        Ok(Node {
            layer: Some(0),
            kind: Kind::Dir as u8,
        })
    }

    fn find(&self, canon: &[u8], _: Option<&Node>, _: bool, host: &mut Buf) -> Result<Node, i32> {
        let key = String::from_utf8_lossy(&canon[1..]);
        let missing = Node {
            layer: None,
            kind: 0,
        };
        for (number, layer) in self.layers.iter().enumerate() {
            host.set(layer.root.as_os_str().as_bytes())?;
            host.push(canon)?;
            match fs::symlink_metadata(host_path(host)) {
                Ok(meta) => {
                    return Ok(Node {
                        layer: Some(number),
                        kind: Kind::of_mode(meta.mode()) as u8,
                    });
                }
                // A non-directory above hides the lower layers' tree.
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => break,
                Err(_) => {}
            }
            if layer.hides(&key) {
                break;
            }
        }
        // Not there: where the top layer would have it.
        let top = self.layers.first().map_or(Path::new("/"), |l| &l.root);
        host.set(top.as_os_str().as_bytes())?;
        host.push(canon)?;
        Ok(missing)
    }

    fn read_link(&self, _: &Node, _: &[u8], host: &Buf, target: &mut Buf) -> Result<(), i32> {
        let link = fs::read_link(host_path(host))
            .map_err(|e| e.raw_os_error().unwrap_or(errno::ENOENT))?;
        target.set(link.as_os_str().as_bytes())
    }
}

impl Layer {
    /// Whether this layer hides `path` (and all below) from the layers
    /// under it: a whiteout on it or above it, an opaque directory above.
    fn hides(&self, path: &str) -> bool {
        prefixes(path).any(|p| self.whiteouts.contains(p))
            || prefixes(path)
                .filter(|p| *p != path)
                .any(|p| self.opaque.contains(p))
    }

    fn read(dir: &LayerDir) -> Result<Layer, ViewError> {
        let path = dir.meta_path();
        let text = fs::read_to_string(&path).map_err(|source| ViewError::Io {
            path: path.clone(),
            source,
        })?;
        let meta: LayerMeta = parse_document(&text).map_err(|e| ViewError::Meta {
            path: path.clone(),
            why: e.to_string(),
        })?;
        Ok(Layer {
            root: dir.root(),
            whiteouts: meta.whiteouts.into_iter().collect(),
            opaque: meta.opaque.into_iter().collect(),
        })
    }
}

/// `a`, `a/b`, `a/b/c` for `a/b/c`.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .chain(std::iter::once(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Document, write_document};
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn layer(base: &Path, name: &str, whiteouts: &[&str], opaque: &[&str]) -> LayerDir {
        let dir = LayerDir::new(base.join(name));
        fs::create_dir_all(dir.root()).unwrap();
        let mut meta = LayerMeta::new();
        meta.whiteouts = whiteouts.iter().map(|s| (*s).to_owned()).collect();
        meta.opaque = opaque.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(meta.kind, LayerMeta::KIND);
        write_document(&meta, fs::File::create(dir.meta_path()).unwrap()).unwrap();
        dir
    }

    fn file(dir: &LayerDir, path: &str, text: &str) {
        let full = dir.root().join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, text).unwrap();
    }

    #[test]
    fn upper_layers_win_and_whiteouts_and_opaque_dirs_hide() {
        let base = tempfile::tempdir().unwrap();
        let lower = layer(base.path(), "lower", &[], &[]);
        file(&lower, "etc/a", "lower a");
        file(&lower, "etc/b", "lower b");
        file(&lower, "gone/x", "x");
        file(&lower, "opaque/old", "old");
        file(&lower, "dir-then-file/inner", "inner");
        let upper = layer(base.path(), "upper", &["etc/b", "gone"], &["opaque"]);
        file(&upper, "etc/a", "upper a");
        file(&upper, "opaque/new", "new");
        file(&upper, "dir-then-file", "now a file");
        let view = View::of_layers(&[lower, upper]).unwrap();
        let read = |p: &str| view.lookup(p).map(|h| fs::read_to_string(h).unwrap());
        assert_eq!(read("etc/a").as_deref(), Some("upper a"));
        assert_eq!(read("etc/b"), None);
        assert_eq!(view.lookup("gone"), None);
        assert_eq!(view.lookup("gone/x"), None);
        assert_eq!(read("opaque/new").as_deref(), Some("new"));
        assert_eq!(view.lookup("opaque/old"), None);
        assert!(view.lookup("opaque").is_some());
        assert_eq!(view.lookup("dir-then-file/inner"), None);
    }

    #[test]
    fn symlinks_resolve_inside_the_container() {
        let base = tempfile::tempdir().unwrap();
        let lower = layer(base.path(), "lower", &[], &[]);
        file(&lower, "usr/bin/tool", "tool");
        file(&lower, "etc/marker", "container marker");
        let root = lower.root();
        symlink("usr/bin", root.join("bin")).unwrap();
        // An absolute link means the container's /, never the host's.
        symlink("/etc", root.join("usr/etc-link")).unwrap();
        symlink("../../etc/marker", root.join("usr/bin/rel")).unwrap();
        symlink("/../../../../etc/marker", root.join("climb")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let view = View::of_layers(&[lower]).unwrap();

        let tool = view.resolve("/bin/tool", true).unwrap();
        assert_eq!(tool.path, "/usr/bin/tool");
        assert_eq!(tool.host, root.join("usr/bin/tool"));
        let marker = view.resolve("/usr/etc-link/marker", true).unwrap();
        assert_eq!(marker.host, root.join("etc/marker"));
        // `..` after resolution: /bin is /usr/bin, so /bin/../etc-link is /usr/etc-link.
        assert_eq!(
            view.resolve("/bin/../etc-link/marker", true).unwrap().path,
            "/etc/marker"
        );
        assert_eq!(
            view.resolve("usr/bin/rel", true).unwrap().path,
            "/etc/marker"
        );
        assert_eq!(view.resolve("/climb", true).unwrap().path, "/etc/marker");
        assert_eq!(view.resolve("/bin", false).unwrap().path, "/bin");
        assert!(matches!(
            view.resolve("/loop1", true),
            Err(ViewError::Loop(_))
        ));
        assert!(matches!(
            view.resolve("/nothing/here", true),
            Err(ViewError::NotFound(_))
        ));
        assert!(matches!(
            view.resolve("/etc/marker/x", true),
            Err(ViewError::NotADirectory(_))
        ));
        assert_eq!(view.resolve("/../..", true).unwrap().path, "/");
    }
}
