//! Host libraries put first in the loader's library path of every program
//! in the container: the GPU driver's (`--gpu`) and library files bound
//! into a library directory (`--bind /site/libfabric.so.1:/usr/lib/x86_64-linux-gnu/libfabric.so.1`).
//!
//! The loader runs with `--inhibit-cache` and searches directories of the
//! layers (or the image's library directory), where a file bound over a
//! library, or next to them, is not: a directory of symlinks to them
//! (`host-libs/<hash>/` in the store, made once per set) comes first, as
//! the bound file hides the image's of that name.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use lpmx_core::container::Bind;
use lpmx_core::libraries::LIBRARY_DIRS;

/// The libraries `binds` put into a library directory, by file name: each
/// bind of a file (or a symlink to one) whose container path lies directly
/// in one of [`LIBRARY_DIRS`].
pub fn bound(binds: &[Bind]) -> BTreeMap<String, PathBuf> {
    binds
        .iter()
        .filter(|bind| {
            bind.container
                .parent()
                .is_some_and(|dir| LIBRARY_DIRS.iter().any(|lib| dir == Path::new(lib)))
                && bind.host.is_file()
        })
        .filter_map(|bind| {
            let name = bind.container.file_name()?.to_str()?.to_owned();
            Some((name, bind.host.clone()))
        })
        .collect()
}

/// The directory of symlinks to `libraries` under `host-libs/` in `store`,
/// made once per set of libraries, appearing by rename.
pub fn library_dir(
    store: &lpmx_core::Store,
    libraries: &BTreeMap<String, PathBuf>,
) -> std::io::Result<PathBuf> {
    let listing: String = libraries
        .iter()
        .map(|(name, path)| format!("{name}={}\n", path.display()))
        .collect();
    let key = lpmx_core::Digest::of(listing.as_bytes());
    let parent = parent_dir(store);
    let dir = parent.join(key.short());
    if dir.is_dir() {
        return Ok(dir);
    }
    let temp = store.temp_path(&format!("host-libs-{}", key.short()));
    let made = (|| {
        fs::create_dir(&temp)?;
        for (name, path) in libraries {
            std::os::unix::fs::symlink(path, temp.join(name))?;
        }
        fs::create_dir_all(&parent)?;
        fs::rename(&temp, &dir)
    })();
    match made {
        Ok(()) => Ok(dir),
        // Another process made it first.
        Err(_) if dir.is_dir() => {
            let _ = fs::remove_dir_all(&temp);
            Ok(dir)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&temp);
            Err(e)
        }
    }
}

/// Where [`library_dir`] keeps its directories.
pub fn parent_dir(store: &lpmx_core::Store) -> PathBuf {
    store.root().join("host-libs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_bound_directly_into_a_library_directory_are_libraries() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libfabric.so.1");
        fs::write(&lib, "").unwrap();
        let bind = |host: &Path, container: &str| Bind {
            host: host.to_owned(),
            container: container.into(),
        };
        let binds = [
            bind(&lib, "/usr/lib/x86_64-linux-gnu/libfabric.so.1"),
            bind(&lib, "/usr/lib/x86_64-linux-gnu/sub/libx.so"),
            bind(&lib, "/opt/libx.so"),
            bind(dir.path(), "/usr/local/lib/dir"),
            bind(&dir.path().join("missing.so"), "/usr/lib/libm.so"),
        ];
        let found = bound(&binds);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [("libfabric.so.1".to_owned(), lib.clone())]
        );
        let store = lpmx_core::Store::open(dir.path().join("store")).unwrap();
        let made = library_dir(&store, &bound(&binds)).unwrap();
        assert_eq!(fs::read_link(made.join("libfabric.so.1")).unwrap(), lib);
        assert_eq!(library_dir(&store, &bound(&binds)).unwrap(), made);
    }
}
