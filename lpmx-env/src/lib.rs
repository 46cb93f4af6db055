//! lpmx-env: change a container's environment while it is in use.
//!
//! The container's environment file (`lpmx_core::container::EnvFile`) is
//! read by libunion at every exec inside the container, so a change takes
//! effect for every program started afterwards, even from a shell that
//! was already running. Edits take the container's lock and replace the
//! file by rename: concurrent edits never lose one another's changes.

pub mod cli;

use std::fs;
use std::path::{Path, PathBuf};

use lpmx_core::cli::{Classify, Exit};
use lpmx_core::container::{EnvError, EnvFile, HostPrograms, StackDocument};
use lpmx_core::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EnvEditError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Classify for EnvEditError {
    fn exit(&self) -> Exit {
        match self {
            EnvEditError::Env(_) => Exit::Usage,
            EnvEditError::Store(e) => e.exit(),
            EnvEditError::Io { .. } => Exit::IoErr,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EnvEditError + '_ {
    move |source| EnvEditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Applies `change` to a file of `stack`'s container under the container's
/// lock; the new file appears by rename, whole.
fn edit_file<T>(
    store: &Store,
    stack: &StackDocument,
    path: &Path,
    read: fn(&Path) -> std::io::Result<T>,
    render: fn(&T) -> String,
    change: impl FnOnce(&mut T) -> Result<(), EnvEditError>,
) -> Result<T, EnvEditError> {
    let _lock = store.lock(&format!("env-{}", stack.name))?;
    let mut file = read(path).map_err(io_error(path))?;
    change(&mut file)?;
    store
        .write_atomically(path, render(&file).as_bytes())
        .map_err(io_error(path))?;
    Ok(file)
}

/// Reads the environment file of `stack`.
pub fn read(stack: &StackDocument) -> Result<EnvFile, EnvEditError> {
    EnvFile::read(&stack.env_file).map_err(io_error(&stack.env_file))
}

/// Changes the environment file of `stack`.
pub fn edit(
    store: &Store,
    stack: &StackDocument,
    change: impl FnOnce(&mut EnvFile) -> Result<(), EnvEditError>,
) -> Result<EnvFile, EnvEditError> {
    edit_file(
        store,
        stack,
        &stack.env_file,
        EnvFile::read,
        EnvFile::render,
        change,
    )
}

pub fn read_host_programs(stack: &StackDocument) -> Result<HostPrograms, EnvEditError> {
    let path = HostPrograms::path(stack);
    HostPrograms::read(&path).map_err(io_error(&path))
}

/// Changes the host programs of `stack`'s container.
pub fn edit_host_programs(
    store: &Store,
    stack: &StackDocument,
    change: impl FnOnce(&mut HostPrograms) -> Result<(), EnvEditError>,
) -> Result<HostPrograms, EnvEditError> {
    let path = HostPrograms::path(stack);
    edit_file(
        store,
        stack,
        &path,
        HostPrograms::read,
        HostPrograms::render,
        change,
    )
}

/// Writes `bin/NAME`, a host command running `program` in container
/// `container` of the store at `store` with the arguments, stdin, stdout
/// and exit status passed through.
pub fn write_wrapper(
    bin: &std::path::Path,
    name: &str,
    container: &str,
    program: &str,
    store: &std::path::Path,
    lpmx_exec: &std::path::Path,
) -> Result<PathBuf, EnvEditError> {
    use std::os::unix::fs::PermissionsExt;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let text = format!(
        "#!/bin/sh\n# {program} of lpmx container {container} (lpmx-env {container} expose)\n\
         LPMX_HOME={store} exec {exec} {container} -- {program} \"$@\"\n",
        store = quote(&store.display().to_string()),
        exec = quote(&lpmx_exec.display().to_string()),
        container = quote(container),
        program = quote(program),
    );
    let path = bin.join(name);
    let io = |source| EnvEditError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(bin).map_err(io)?;
    let temp = bin.join(format!(".{name}.lpmx-new"));
    fs::write(&temp, text).map_err(io)?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).map_err(io)?;
    fs::rename(&temp, &path).map_err(io)?;
    Ok(path)
}
