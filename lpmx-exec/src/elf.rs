//! What `lpmx-exec` needs from an ELF file: whether it is one, and the
//! dynamic loader it asks for (`PT_INTERP`). A program without one is
//! static: LD_PRELOAD cannot reach it, so it would run against the host's
//! files, and lpmx refuses it instead.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const PT_INTERP: u32 = 3;
/// Longer loader paths than this are not real ones.
const MAX_INTERP: u64 = 4096;

#[derive(Debug, PartialEq, Eq)]
pub enum Program {
    /// Dynamically linked: the loader path it names (inside the container).
    Dynamic { interpreter: String },
    /// An ELF executable without a loader.
    Static,
    /// A `#!` script: the interpreter line, without `#!`.
    Script { line: String },
    /// Neither ELF nor script.
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{0}: truncated or malformed ELF file")]
    Malformed(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Inspects the executable at `path` (a host path).
pub fn inspect(path: &Path) -> Result<Program, ElfError> {
    let name = path.display().to_string();
    let io_error = |source| ElfError::Io {
        path: name.clone(),
        source,
    };
    let malformed = || ElfError::Malformed(name.clone());
    let mut file = File::open(path).map_err(io_error)?;
    let mut head = [0u8; 64];
    let n = lpmx_core::read::read_full(&mut file, &mut head).map_err(io_error)?;
    let head = &head[..n];
    if let Some(rest) = head.strip_prefix(b"#!") {
        let mut line = rest.to_vec();
        if !line.contains(&b'\n') {
            // Interpreter lines may be longer than what was read.
            let mut more = vec![0u8; 256];
            let m = lpmx_core::read::read_full(&mut file, &mut more).map_err(io_error)?;
            line.extend_from_slice(&more[..m]);
        }
        let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
        let line = String::from_utf8_lossy(&line[..end]).trim().to_owned();
        return Ok(Program::Script { line });
    }
    if !head.starts_with(b"\x7fELF") || head.len() < 52 {
        return Ok(Program::Other);
    }
    let class64 = match head[4] {
        1 => false,
        2 => true,
        _ => return Err(malformed()),
    };
    let little = match head[5] {
        1 => true,
        2 => false,
        _ => return Err(malformed()),
    };
    let u16_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1]];
        if little {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let u32_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if little {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let u64_at = |b: &[u8], at: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[at..at + 8]);
        if little {
            u64::from_le_bytes(v)
        } else {
            u64::from_be_bytes(v)
        }
    };
    if class64 && head.len() < 64 {
        return Err(malformed());
    }
    let (phoff, phentsize, phnum) = if class64 {
        (u64_at(head, 32), u16_at(head, 54), u16_at(head, 56))
    } else {
        (
            u64::from(u32_at(head, 28)),
            u16_at(head, 42),
            u16_at(head, 44),
        )
    };
    let entry_size = if class64 { 56 } else { 32 };
    if usize::from(phentsize) < entry_size {
        return Err(malformed());
    }
    let mut table = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
    file.seek(SeekFrom::Start(phoff)).map_err(io_error)?;
    file.read_exact(&mut table).map_err(|_| malformed())?;
    for entry in table.chunks_exact(usize::from(phentsize)) {
        if u32_at(entry, 0) != PT_INTERP {
            continue;
        }
        let (offset, size) = if class64 {
            (u64_at(entry, 8), u64_at(entry, 32))
        } else {
            (u64::from(u32_at(entry, 4)), u64::from(u32_at(entry, 16)))
        };
        if size == 0 || size > MAX_INTERP {
            return Err(malformed());
        }
        let mut interpreter = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        file.read_exact(&mut interpreter).map_err(|_| malformed())?;
        let end = interpreter
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(interpreter.len());
        let interpreter = String::from_utf8_lossy(&interpreter[..end]).into_owned();
        return Ok(Program::Dynamic { interpreter });
    }
    Ok(Program::Static)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_programs_are_told_apart() {
        // Debian's coreutils are dynamic; its ldconfig is static.
        match inspect(Path::new("/bin/true")).unwrap() {
            Program::Dynamic { interpreter } => {
                assert!(interpreter.contains("ld-linux"), "{interpreter}")
            }
            other => panic!("/bin/true: {other:?}"),
        }
        assert_eq!(
            inspect(Path::new("/sbin/ldconfig")).unwrap(),
            Program::Static
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh -e\necho hi\n").unwrap();
        assert_eq!(
            inspect(&script).unwrap(),
            Program::Script {
                line: "/bin/sh -e".to_owned()
            }
        );
        let text = dir.path().join("t");
        std::fs::write(&text, "plain text").unwrap();
        assert_eq!(inspect(&text).unwrap(), Program::Other);
        let truncated = dir.path().join("elf");
        let mut bytes = std::fs::read("/bin/true").unwrap();
        bytes.truncate(100);
        std::fs::write(&truncated, bytes).unwrap();
        assert!(matches!(inspect(&truncated), Err(ElfError::Malformed(_))));
    }
}
