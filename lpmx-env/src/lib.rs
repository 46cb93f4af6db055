//! lpmx-env: change a container's environment while it is in use.
//!
//! The container's environment file (`lpmx_core::container::EnvFile`) is
//! read by libunion at every exec inside the container, so a change takes
//! effect for every program started afterwards, even from a shell that
//! was already running. Edits take the container's lock and replace the
//! file by rename: concurrent edits never lose one another's changes.

pub mod cli;

use std::fs;
use std::path::PathBuf;

use lpmx_core::cli::{Classify, Exit};
use lpmx_core::container::{EnvError, EnvFile, StackDocument};
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

/// Reads the environment file of `stack`.
pub fn read(stack: &StackDocument) -> Result<EnvFile, EnvEditError> {
    match fs::read_to_string(&stack.env_file) {
        Ok(text) => Ok(EnvFile::parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EnvFile::default()),
        Err(source) => Err(EnvEditError::Io {
            path: stack.env_file.clone(),
            source,
        }),
    }
}

/// Applies `change` to the environment file of `stack` under the
/// container's lock; the new file appears by rename, whole.
pub fn edit(
    store: &Store,
    stack: &StackDocument,
    change: impl FnOnce(&mut EnvFile) -> Result<(), EnvEditError>,
) -> Result<EnvFile, EnvEditError> {
    let _lock = store.lock(&format!("env-{}", stack.name))?;
    let mut file = read(stack)?;
    change(&mut file)?;
    let io = |source| EnvEditError::Io {
        path: stack.env_file.clone(),
        source,
    };
    let temp = store.temp_path(&format!("env-{}", stack.name));
    fs::write(&temp, file.render()).map_err(io)?;
    fs::rename(&temp, &stack.env_file).map_err(|e| {
        let _ = fs::remove_file(&temp);
        io(e)
    })?;
    Ok(file)
}
