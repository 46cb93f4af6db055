//! A container's merged view, resolved in userspace: which layer's file a
//! container path names, with symlinks followed inside the container.
//!
//! The rules (DESIGN.md, invariant 7): the writable layer first, then the
//! image's layers top to bottom; a layer's whiteout hides the path below it,
//! an opaque directory hides what lower layers hold under it, and a
//! non-directory hides lower directories of the same name. Symlinks resolve
//! component by component, an absolute target meaning the container's `/`;
//! `..` applies after resolution and never climbs above `/`.
//!
//! `lpmx-exec` uses this to find a program and its loader before starting
//! it; it is also the reference that libunion's lookups are tested against.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::container::StackDocument;
use crate::document::parse_document;
use crate::layer::{LayerDir, LayerMeta};

/// Symlinks followed in one resolution before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

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
        for layer in &self.layers {
            let host = layer.root.join(path);
            match fs::symlink_metadata(&host) {
                Ok(_) => return Some(host),
                // A non-directory above hides the lower layers' tree.
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => return None,
                Err(_) => {}
            }
            if prefixes(path).any(|p| layer.whiteouts.contains(p))
                || prefixes(path)
                    .filter(|p| *p != path)
                    .any(|p| layer.opaque.contains(p))
            {
                return None;
            }
        }
        None
    }

    /// Resolves container `path` (absolute, or relative to `/`), following
    /// symlinks inside the container; the last one too when `follow_last`.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<Resolved, ViewError> {
        let mut pending: Vec<String> = components(path).rev().map(str::to_owned).collect();
        let mut current: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            if component == ".." {
                current.pop();
                continue;
            }
            current.push(component);
            let joined = current.join("/");
            let is_last = pending.is_empty();
            let Some(host) = self.lookup(&joined) else {
                return Err(ViewError::NotFound(format!("/{joined}")));
            };
            let meta = fs::symlink_metadata(&host).map_err(|source| ViewError::Io {
                path: host.clone(),
                source,
            })?;
            if meta.file_type().is_symlink() && (!is_last || follow_last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ViewError::Loop(path.to_owned()));
                }
                let target = fs::read_link(&host).map_err(|source| ViewError::Io {
                    path: host.clone(),
                    source,
                })?;
                let target = target.to_string_lossy().into_owned();
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                pending.extend(components(&target).rev().map(str::to_owned));
            } else if !is_last && !meta.is_dir() {
                return Err(ViewError::NotADirectory(format!("/{joined}")));
            }
        }
        let path = format!("/{}", current.join("/"));
        let host = if current.is_empty() {
            self.layers
                .last()
                .map(|l| l.root.clone())
                .unwrap_or_default()
        } else {
            self.lookup(&current.join("/"))
                .ok_or_else(|| ViewError::NotFound(path.clone()))?
        };
        Ok(Resolved { path, host })
    }
}

impl Layer {
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

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
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
