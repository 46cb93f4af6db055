//! Downloading one blob into the store: hashed while it streams, resumed
//! after an interruption, renamed into place only once verified.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use reqwest::StatusCode;
use reqwest::header::CONTENT_RANGE;

use lpmx_core::digest::Hasher;
use lpmx_core::oci::Descriptor;
use lpmx_core::progress::Task;
use lpmx_core::store::Store;

use crate::error::PullError;
use crate::registry::Registry;

/// Failed tries that still moved the download forward are allowed this many
/// times, on top of the retry policy's count of tries that moved nothing.
const PROGRESSING_RETRIES: u32 = 100;

const CHUNK: usize = 1 << 20;

/// How a blob came to be in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    AlreadyPresent,
    Downloaded,
    /// Continued from bytes a previous, interrupted run left.
    Resumed {
        from: u64,
    },
}

/// Makes sure blob `descriptor` is in the store, downloading what is missing.
pub fn fetch_blob(
    store: &Store,
    registry: &Registry,
    descriptor: &Descriptor,
    task: &Task,
) -> Result<(PathBuf, Fetched), PullError> {
    let digest = &descriptor.digest;
    if let Some(path) = store.find_blob(digest) {
        return Ok((path, Fetched::AlreadyPresent));
    }
    // Another process may be downloading the same blob: wait for it, then
    // find the blob present or take over its partial file.
    let _lock = store.lock_blob(digest)?;
    let path = store.own_blob_path(digest);
    if path.is_file() {
        return Ok((path, Fetched::AlreadyPresent));
    }
    let partial_path = store.partial_blob_path(digest);
    let mut partial = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&partial_path)
        .map_err(PullError::io(&partial_path))?;
    let mut hasher = Hasher::default();
    hasher
        .update_from(&mut partial)
        .map_err(PullError::io(&partial_path))?;
    if hasher.len() > descriptor.size {
        restart(&mut partial, &mut hasher).map_err(PullError::io(&partial_path))?;
    }
    let resumed_from = hasher.len();
    task.set_position(resumed_from);

    let url = registry.blob_url(digest);
    let mut idle_failures = 0;
    let mut progressing_failures = 0;
    let mut buf = vec![0; CHUNK];
    while hasher.len() < descriptor.size {
        let offset = hasher.len();
        let mut response = registry.get(&url, None, Some(offset))?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT if range_start(&response) == Some(offset) => {}
            StatusCode::OK => {
                if offset > 0 {
                    // The server ignored the range: start over.
                    restart(&mut partial, &mut hasher).map_err(PullError::io(&partial_path))?;
                    task.set_position(0);
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE | StatusCode::PARTIAL_CONTENT => {
                restart(&mut partial, &mut hasher).map_err(PullError::io(&partial_path))?;
                continue;
            }
            _ => return Err(registry.status_error(response)),
        }
        let before = hasher.len();
        let failure = loop {
            match response.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    if hasher.len() + n as u64 > descriptor.size {
                        drop(partial);
                        let _ = fs::remove_file(&partial_path);
                        return Err(PullError::TooLarge {
                            digest: digest.clone(),
                            expected: descriptor.size,
                        });
                    }
                    partial
                        .write_all(&buf[..n])
                        .map_err(PullError::io(&partial_path))?;
                    hasher.update(&buf[..n]);
                    task.advance(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e.to_string()),
            }
        };
        if hasher.len() == descriptor.size {
            break;
        }
        // The body ended early or broke: go again from where it stopped.
        let why = failure.unwrap_or_else(|| {
            format!(
                "the connection closed after {} of {} bytes",
                hasher.len(),
                descriptor.size
            )
        });
        let failures = if hasher.len() > before {
            progressing_failures += 1;
            progressing_failures > PROGRESSING_RETRIES
        } else {
            idle_failures += 1;
            idle_failures > registry.retry().retries
        };
        if failures {
            return Err(PullError::Download {
                digest: digest.clone(),
                why,
            });
        }
        std::thread::sleep(registry.retry().wait(idle_failures, None));
    }

    let actual = std::mem::take(&mut hasher).finish();
    if actual != *digest {
        drop(partial);
        let _ = fs::remove_file(&partial_path);
        return Err(PullError::DigestMismatch {
            expected: digest.clone(),
            actual,
        });
    }
    drop(partial);
    let path = store
        .commit_blob(digest, &partial_path)
        .map_err(PullError::io(&path))?;
    let how = if resumed_from > 0 {
        Fetched::Resumed { from: resumed_from }
    } else {
        Fetched::Downloaded
    };
    Ok((path, how))
}

fn restart(partial: &mut File, hasher: &mut Hasher) -> io::Result<()> {
    partial.set_len(0)?;
    partial.seek(SeekFrom::Start(0))?;
    *hasher = Hasher::default();
    Ok(())
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
fn range_start(response: &reqwest::blocking::Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}
