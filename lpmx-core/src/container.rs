//! A container in the store: its stack file, writable layer and
//! environment file.
//!
//! ```text
//! containers/<name>/stack.json   StackDocument: the layers, bottom to top,
//!                                the image config, host paths passed through
//! containers/<name>/upper/       the container's own writable layer
//! containers/<name>/upper.*      its side files (`lpmx_union::upper`):
//!                                whiteouts, fake root's owners log, the
//!                                change counters
//! containers/<name>/env          its environment file (KEY=VALUE lines)
//! containers/<name>/host-programs  container paths run as host programs
//! ```
//!
//! Creating one copies nothing from the layers, whatever the image's size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lpmx_union::upper as upper_files;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::document::{Document, UnpackedLayer};
use crate::oci::{Platform, RunConfig};

pub const STACK_FILE: &str = "stack.json";
pub const UPPER_DIR: &str = "upper";
pub const ENV_FILE: &str = "env";

/// A host path seen inside the container at another (or the same) path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub container: PathBuf,
}

/// The stack file of a container: what `lpmx-exec` runs it from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackDocument {
    pub kind: String,
    pub version: u32,
    pub name: String,
    /// The image it was made from.
    pub reference: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub platform: Platform,
    pub config: RunConfig,
    /// The image's layers, bottom to top, shared with every other user.
    pub layers: Vec<UnpackedLayer>,
    /// The container's writable layer, above all of `layers`.
    pub upper: PathBuf,
    pub env_file: PathBuf,
    /// The index of `layers`, shared by the image's containers
    /// (`indexes/` in the store, see `lpmx_core::index`).
    pub index: PathBuf,
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// Seconds since the epoch.
    pub created: u64,
}

impl Document for StackDocument {
    const KIND: &'static str = "lpmx.stack";
    const VERSION: u32 = 1;
    const PRODUCER: &'static str = "lpmx-mkroot";
}

impl StackDocument {
    /// The roots of the stores the stack's layers and index are in
    /// (`STORE/layers/HEX`, `STORE/indexes/HEX`), each once, in order.
    pub fn stores(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = Vec::new();
        let entries = self.layers.iter().map(|layer| layer.path.as_path());
        for path in entries.chain([self.index.as_path()]) {
            if let Some(root) = crate::Store::root_of(path)
                && !roots.iter().any(|r| r == root)
            {
                roots.push(root.to_owned());
            }
        }
        roots
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid container name {0:?}: use letters, digits, `.`, `_` and `-`, starting with a letter or digit"
)]
pub struct NameError(pub String);

/// Container names are single path components of a safe alphabet.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(NameError(name.to_owned()))
    }
}

/// `path` + `suffix`, a sibling named after it: the files that travel
/// with a writable layer (`upper.whiteouts`, `upper.owners`), the library
/// directory of an index (`.libs`).
pub(crate) fn beside(upper: &Path, suffix: &str) -> PathBuf {
    let mut path = upper.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// Whether `name`, in a writable layer, is a copy being made into it (or
/// one a killed process left): not a file of the container.
pub fn is_copy_up_temp(name: &std::ffi::OsStr) -> bool {
    upper_files::is_copy_up_temp(name.as_encoded_bytes())
}

/// Makes writable layer `upper`'s empty directory (`upper.empty`, see
/// `lpmx_union::upper::EMPTY`) unless it is there.
pub fn make_empty_dir(upper: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let path = side_file(upper, upper_files::EMPTY);
    match std::fs::DirBuilder::new().mode(0o555).create(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// `upper` with a side file's suffix (`lpmx_union::upper`).
pub(crate) fn side_file(upper: &Path, suffix: &[u8]) -> PathBuf {
    beside(upper, &String::from_utf8_lossy(suffix))
}

/// A side file's text; empty when it is missing.
fn read_side_file(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

/// The writable layer's whiteouts, as libunion records them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Whiteouts {
    /// Deleted: the path and everything below it.
    pub deleted: Vec<String>,
    /// Made again as new directories: the image's entries below are hidden.
    pub opaque: Vec<String>,
}

impl Whiteouts {
    /// The whiteouts file of writable layer `upper` (`upper.whiteouts`).
    pub fn path(upper: &Path) -> PathBuf {
        side_file(upper, upper_files::WHITEOUTS)
    }

    /// Reads the whiteouts of writable layer `upper`; none if the file is
    /// missing.
    pub fn read(upper: &Path) -> std::io::Result<Whiteouts> {
        let text = read_side_file(&Whiteouts::path(upper))?;
        let mut whiteouts = Whiteouts::default();
        for (path, opaque) in upper_files::whiteouts(&text) {
            let path = String::from_utf8_lossy(path).into_owned();
            if opaque {
                whiteouts.opaque.push(path);
            } else {
                whiteouts.deleted.push(path);
            }
        }
        Ok(whiteouts)
    }
}

/// What `lpmx-exec --root` recorded of a file's owner, mode and device.
pub use lpmx_union::upper::Owner as OwnerRecord;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;

/// The fake-root owners log of writable layer `upper` (`upper.owners`).
pub fn owners_log_path(upper: &Path) -> PathBuf {
    side_file(upper, upper_files::OWNERS)
}

/// The records of writable layer `upper`'s owners log by inode, the last
/// line for an inode winning; none if there is no log.
pub fn read_owners_log(upper: &Path) -> std::io::Result<HashMap<u64, OwnerRecord>> {
    let text = read_side_file(&owners_log_path(upper))?;
    let mut records = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        match upper_files::owner(line) {
            Some((ino, Some(record))) => {
                records.insert(ino, record);
            }
            Some((ino, None)) => {
                records.remove(&ino);
            }
            None => {}
        }
    }
    Ok(records)
}

/// The owners log line recording `record` for inode `ino`.
pub fn owner_line(record: &OwnerRecord, ino: u64) -> String {
    let mut line = [0u8; upper_files::OWNER_LINE];
    String::from_utf8_lossy(upper_files::owner_line(ino, Some(record), &mut line)).into_owned()
}

/// Whether `record` makes the file a character or block device.
pub fn device_kind(record: &OwnerRecord) -> Option<crate::layer::DeviceKind> {
    match record.mode & S_IFMT {
        S_IFCHR => Some(crate::layer::DeviceKind::Char),
        S_IFBLK => Some(crate::layer::DeviceKind::Block),
        _ => None,
    }
}

pub use lpmx_union::dev::{make_dev, split_dev};

/// A container's environment file (`containers/<name>/env`): `KEY=VALUE`
/// lines, applied to every program started in the container, on top of
/// the environment it inherits (see lpmx-env(1)). Blank lines and lines
/// starting with `#` are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    /// In file order; a key appears once.
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("invalid variable name {0:?}: it must be non-empty, without '=', NUL or newline")]
    Key(String),
    #[error("invalid value for {0}: it must not contain a NUL or newline")]
    Value(String),
    #[error("expected KEY=VALUE, got {0:?}")]
    Assignment(String),
    #[error(
        "invalid host program {0:?}: expected an absolute HOST path or HOST:CONTAINER, without '=' or ':' inside"
    )]
    Program(String),
}

/// Checks a variable name.
pub fn check_env_key(key: &str) -> Result<(), EnvError> {
    if key.is_empty() || key.contains(['=', '\0', '\n']) {
        return Err(EnvError::Key(key.to_owned()));
    }
    Ok(())
}

/// Splits and checks `KEY=VALUE`.
pub fn parse_assignment(text: &str) -> Result<(String, String), EnvError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| EnvError::Assignment(text.to_owned()))?;
    check_env_key(key)?;
    if value.contains(['\0', '\n']) {
        return Err(EnvError::Value(key.to_owned()));
    }
    Ok((key.to_owned(), value.to_owned()))
}

impl EnvFile {
    /// Reads the environment file at `path`; empty when it is missing.
    pub fn read(path: &Path) -> std::io::Result<EnvFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(EnvFile::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EnvFile::default()),
            Err(e) => Err(e),
        }
    }

    pub fn parse(text: &str) -> EnvFile {
        let mut file = EnvFile::default();
        for line in text.lines() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if let Ok((key, value)) = parse_assignment(line) {
                file.set(&key, &value);
            }
        }
        file
    }

    pub fn render(&self) -> String {
        self.vars
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, key: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.vars.push((key.to_owned(), value.to_owned())),
        }
    }

    /// Whether `key` was there.
    pub fn unset(&mut self, key: &str) -> bool {
        let before = self.vars.len();
        self.vars.retain(|(k, _)| k != key);
        self.vars.len() != before
    }
}

/// The host programs of a container (`containers/<name>/host-programs`):
/// container paths whose exec runs a host program instead, with the host's
/// view of the files, as a host process. One `CONTAINER=HOST` line each,
/// both absolute, neither containing `=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPrograms {
    pub programs: Vec<(PathBuf, PathBuf)>,
}

pub const HOST_PROGRAMS_FILE: &str = "host-programs";

impl HostPrograms {
    /// The host programs file of the container `stack` describes.
    pub fn path(stack: &StackDocument) -> PathBuf {
        stack.env_file.with_file_name(HOST_PROGRAMS_FILE)
    }

    /// The host programs file at `path`; none when it is missing.
    pub fn read(path: &Path) -> std::io::Result<HostPrograms> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(HostPrograms::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostPrograms::default()),
            Err(e) => Err(e),
        }
    }

    pub fn parse(text: &str) -> HostPrograms {
        let programs = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .filter(|(c, h)| c.starts_with('/') && h.starts_with('/'))
            .map(|(c, h)| (PathBuf::from(c), PathBuf::from(h)))
            .collect();
        HostPrograms { programs }
    }

    pub fn render(&self) -> String {
        self.programs
            .iter()
            .map(|(c, h)| format!("{}={}\n", c.display(), h.display()))
            .collect()
    }

    /// Adds `HOST` or `HOST:CONTAINER` (the same path inside by default).
    pub fn add(&mut self, spec: &str) -> Result<(), EnvError> {
        let (host, container) = spec.split_once(':').unwrap_or((spec, spec));
        let valid = |p: &str| p.starts_with('/') && !p.contains(['=', '\n', '\0', ':']);
        if !valid(host) || !valid(container) {
            return Err(EnvError::Program(spec.to_owned()));
        }
        self.remove(Path::new(container));
        self.programs
            .push((PathBuf::from(container), PathBuf::from(host)));
        Ok(())
    }

    /// Whether `container` was there.
    pub fn remove(&mut self, container: &Path) -> bool {
        let before = self.programs.len();
        self.programs.retain(|(c, _)| c != container);
        before != self.programs.len()
    }
}

/// `lpmx-env NAME list --json`: a container's environment file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvDocument {
    pub kind: String,
    pub version: u32,
    pub name: String,
    pub env: std::collections::BTreeMap<String, String>,
}

impl Document for EnvDocument {
    const KIND: &'static str = "lpmx.env";
    const VERSION: u32 = 1;
    const PRODUCER: &'static str = "lpmx-env";
}

/// The stack file of the container directory `dir`.
pub fn stack_path(dir: &Path) -> PathBuf {
    dir.join(STACK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_keep_order_and_refuse_bad_assignments() {
        let mut file = EnvFile::parse("# comment\nA=1\n\nB=x=y\nA=2\n");
        assert_eq!(
            file.vars,
            [("A".into(), "2".into()), ("B".into(), "x=y".into())]
        );
        file.set("C", "");
        assert!(file.unset("B"));
        assert!(!file.unset("B"));
        assert_eq!(file.render(), "A=2\nC=\n");
        assert!(parse_assignment("NOEQUALS").is_err());
        assert!(parse_assignment("=v").is_err());
        assert_eq!(
            parse_assignment("K=a b").unwrap(),
            ("K".into(), "a b".into())
        );
    }

    #[test]
    fn owner_logs_keep_the_last_record_and_devices_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        let record = OwnerRecord {
            uid: 5,
            gid: 6,
            mode: S_IFCHR | 0o600,
            rdev: make_dev(4, 300),
        };
        let log = format!("{}7 1 1 0 0\n7 -\n8 1 2 3 4\nbad\n", owner_line(&record, 9));
        std::fs::write(owners_log_path(&upper), log).unwrap();
        let records = read_owners_log(&upper).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[&9], record);
        assert_eq!(
            device_kind(&records[&9]),
            Some(crate::layer::DeviceKind::Char)
        );
        assert_eq!(split_dev(records[&9].rdev), (4, 300));
        assert_eq!(records[&8].gid, 2);
    }

    #[test]
    fn names_are_single_safe_components() {
        for good in ["dev", "a.b_c-1", "X9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "sp ace", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
