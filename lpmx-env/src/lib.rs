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
use lpmx_core::container::{EnvError, EnvFile, HOST_PROGRAMS_FILE, HostPrograms, StackDocument};
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

/// The host programs file of `stack`'s container.
pub fn host_programs_path(stack: &StackDocument) -> PathBuf {
    stack
        .env_file
        .parent()
        .map(|dir| dir.join(HOST_PROGRAMS_FILE))
        .unwrap_or_default()
}

pub fn read_host_programs(stack: &StackDocument) -> Result<HostPrograms, EnvEditError> {
    let path = host_programs_path(stack);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(HostPrograms::parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostPrograms::default()),
        Err(source) => Err(EnvEditError::Io { path, source }),
    }
}

/// Changes the host programs of `stack`'s container, as [`edit`] does the
/// environment.
pub fn edit_host_programs(
    store: &Store,
    stack: &StackDocument,
    change: impl FnOnce(&mut HostPrograms) -> Result<(), EnvEditError>,
) -> Result<HostPrograms, EnvEditError> {
    let _lock = store.lock(&format!("env-{}", stack.name))?;
    let mut programs = read_host_programs(stack)?;
    change(&mut programs)?;
    let path = host_programs_path(stack);
    let io = |source| EnvEditError::Io {
        path: path.clone(),
        source,
    };
    let temp = store.temp_path(&format!("host-programs-{}", stack.name));
    fs::write(&temp, programs.render()).map_err(io)?;
    fs::rename(&temp, &path).map_err(|e| {
        let _ = fs::remove_file(&temp);
        io(e)
    })?;
    Ok(programs)
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
