//! lpmx-mkroot: create, list and remove containers.
//!
//! The third step of the pipeline. A container is a stack file naming the
//! image's unpacked layers (shared, never copied), an empty writable layer
//! and an environment file, so creating one takes the same short time for
//! any image.

pub mod cli;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lpmx_core::cli::{Classify, Exit};
use lpmx_core::container::{
    Bind, ENV_FILE, HOST_PROGRAMS_FILE, HostPrograms, NameError, STACK_FILE, StackDocument,
    UPPER_DIR, check_name,
};
use lpmx_core::document::{
    Document, DocumentError, LayersDocument, parse_document, write_document,
};
use lpmx_core::index::IndexError;
use lpmx_core::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MkrootError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("container {0:?} exists already (remove it first with lpmx-mkroot --remove {0})")]
    Taken(String),
    #[error("no container {0:?} (lpmx-mkroot --list shows them)")]
    NoSuchContainer(String),
    #[error("layer {0} is not unpacked in this store (run lpmx-unpack first)")]
    MissingLayer(PathBuf),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Classify for MkrootError {
    fn exit(&self) -> Exit {
        match self {
            MkrootError::Name(_) => Exit::Usage,
            MkrootError::Store(e) => e.exit(),
            MkrootError::Document(e) => e.exit(),
            MkrootError::Taken(_) => Exit::CantCreate,
            MkrootError::NoSuchContainer(_) | MkrootError::MissingLayer(_) => Exit::NoInput,
            MkrootError::Io { .. } | MkrootError::Index(_) => Exit::IoErr,
        }
    }
}

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> MkrootError {
    let path = path.into();
    move |source| MkrootError::Io { path, source }
}

/// Creates container `name` from `layers`: writes it in `tmp/` and renames
/// it into `containers/`, so it appears whole or not at all.
pub fn create(
    store: &Store,
    name: &str,
    layers: &LayersDocument,
    binds: Vec<Bind>,
    host_programs: &HostPrograms,
) -> Result<StackDocument, MkrootError> {
    check_name(name)?;
    let temp = store.temp_path(&format!("container-{name}"));
    let result = (|| {
        fs::create_dir_all(temp.join(UPPER_DIR)).map_err(io(&temp))?;
        fs::write(temp.join(ENV_FILE), "").map_err(io(&temp))?;
        fs::write(temp.join(HOST_PROGRAMS_FILE), host_programs.render()).map_err(io(&temp))?;
        adopt(store, name, layers, binds, &temp)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&temp);
    }
    result
}

/// Makes `staged`, a directory under the store's `tmp/` holding a
/// container's writable layer and files (`upper/`, `env`, `host-programs`,
/// maybe `upper.whiteouts` and `upper.owners`), container `name` of
/// `layers`: writes its stack file and renames it into `containers/`.
/// On an error `staged` is left for the caller to remove.
pub fn adopt(
    store: &Store,
    name: &str,
    layers: &LayersDocument,
    binds: Vec<Bind>,
    staged: &Path,
) -> Result<StackDocument, MkrootError> {
    check_name(name)?;
    // Paths from this store (and the shared ones), not from the document:
    // it may come from another host (see lpmx-pack).
    let mut stack_layers = Vec::with_capacity(layers.layers.len());
    for layer in &layers.layers {
        let dir = store.layer_dir(&layer.diff_id);
        if !dir.exists() {
            return Err(MkrootError::MissingLayer(dir.path().to_owned()));
        }
        stack_layers.push(lpmx_core::document::UnpackedLayer {
            diff_id: layer.diff_id.clone(),
            path: dir.path().to_owned(),
        });
    }
    let _lock = store.lock(&format!("container-{name}"))?;
    let dir = store.container_dir(name);
    if dir.exists() {
        return Err(MkrootError::Taken(name.to_owned()));
    }
    // Built by lpmx-unpack already, normally: then this costs a few stats.
    let index = lpmx_core::index::ensure(store, &stack_layers)?;
    let stack = StackDocument {
        kind: StackDocument::KIND.to_owned(),
        version: StackDocument::VERSION,
        name: name.to_owned(),
        reference: layers.reference.clone(),
        manifest_digest: layers.manifest_digest.clone(),
        config_digest: layers.config_digest.clone(),
        platform: layers.platform.clone(),
        config: layers.config.clone(),
        layers: stack_layers,
        upper: dir.join(UPPER_DIR),
        env_file: dir.join(ENV_FILE),
        index,
        binds,
        created: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let mut text = Vec::new();
    write_document(&stack, &mut text).map_err(io(staged))?;
    fs::write(staged.join(STACK_FILE), text).map_err(io(staged))?;
    fs::rename(staged, &dir).map_err(io(&dir))?;
    Ok(stack)
}

/// Every container of the store, by name.
pub fn list(store: &Store) -> Result<Vec<StackDocument>, MkrootError> {
    let dir = store.containers_dir();
    let mut stacks = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if check_name(&name).is_ok() {
            stacks.push(read_stack(store, &name)?);
        }
    }
    stacks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(stacks)
}

/// The stack file of container `name`.
pub fn read_stack(store: &Store, name: &str) -> Result<StackDocument, MkrootError> {
    check_name(name)?;
    let path = store.container_dir(name).join(STACK_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MkrootError::NoSuchContainer(name.to_owned()));
        }
        Err(e) => return Err(io(&path)(e)),
    };
    Ok(parse_document(&text)?)
}

/// Container `name`'s stack, and `store` searching also the stores the
/// stack's layers and index are in: a container made with shared stores
/// (`LPMX_STORE_PATH`) runs and packs without the variable.
pub fn open_container(store: &Store, name: &str) -> Result<(Store, StackDocument), MkrootError> {
    let stack = read_stack(store, name)?;
    let origin = format!("container {name}'s {STACK_FILE}");
    let store = store.clone().with_shared(stack.stores(), &origin)?;
    Ok((store, stack))
}

/// Removes container `name`: its directory goes; the shared layers stay.
/// It is first renamed into `tmp/`, so no half-removed container is seen.
pub fn remove(store: &Store, name: &str) -> Result<(), MkrootError> {
    check_name(name)?;
    let _lock = store.lock(&format!("container-{name}"))?;
    let dir = store.container_dir(name);
    if !dir.is_dir() {
        return Err(MkrootError::NoSuchContainer(name.to_owned()));
    }
    let trash = store.temp_path(&format!("removed-{name}"));
    fs::rename(&dir, &trash).map_err(io(&dir))?;
    make_removable(&trash);
    fs::remove_dir_all(&trash).map_err(io(&trash))
}

/// Gives the owner write permission on every directory below `dir`, so a
/// writable layer holding read-only directories can be removed.
pub fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_removable(&entry.path());
        }
    }
}
